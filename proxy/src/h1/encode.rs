//! Writing HTTP/1.1: request and response heads with the framing header
//! their body needs, and chunked framing for a body of unknown length.

use std::io::Write as _;

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, StatusCode, Uri, header};

use super::raw::RawHeaders;

/// How a request body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// No body, and no framing header.
    None,
    /// `content-length: n` (also 0, for methods that carry a body).
    Known(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
}

/// The framing of a body whose exact length is `exact` (when known), for a
/// request with `method`. An empty body of a method that usually carries one
/// still says `content-length: 0`, as curl and hyper do.
pub fn body_length(method: &Method, exact: Option<u64>) -> BodyLength {
    match exact {
        Some(0) if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) => {
            BodyLength::None
        }
        Some(n) => BodyLength::Known(n),
        None => BodyLength::Chunked,
    }
}

/// The request target to send onward in origin form (RFC 9112 §3.2.1):
/// the URI's path and query, with the path `/` when it has none (an
/// absolute-form `http://host?x` is `/?x`, not `?x`, which no server reads
/// as a request). HTTP/2's `:path` has the same rule. `OPTIONS *` keeps
/// its asterisk.
pub fn origin_form(uri: &Uri) -> PathAndQuery {
    match uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') || pq.as_str() == "*" => pq.clone(),
        Some(pq) if !pq.as_str().is_empty() => format!("/{}", pq.as_str())
            .parse()
            .unwrap_or_else(|_| PathAndQuery::from_static("/")),
        _ => PathAndQuery::from_static("/"),
    }
}

/// Appends `METHOD target HTTP/1.1`, the headers (without any framing
/// header of their own) and the framing header for `length`.
pub fn request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    length: BodyLength,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    fields(out, headers, true);
    length_header(out, length);
    out.extend_from_slice(b"\r\n");
}

/// Appends `HTTP/1.1 status reason`, the headers (those in the map, then
/// an upstream's `raw` lines) and the framing header for `length`. `None`:
/// a response without a body (to HEAD, or 1xx, 204, 304), whose headers go
/// out as they are (a HEAD answer keeps its `content-length`). A `date`
/// header is added when there is none, as hyper's server does.
pub fn response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    raw: Option<&RawHeaders>,
    length: Option<BodyLength>,
) {
    status_and_fields(out, status, headers, raw, length.is_some());
    let mut length = length;
    let mut has_date = false;
    if let Some(raw) = raw {
        has_date = raw.has_date();
        if length.is_none() {
            // The map's `content-length` would have gone out as it is.
            length = raw.content_length().map(BodyLength::Known);
        }
    }
    if !has_date && (headers.is_empty() || !headers.contains_key(header::DATE)) {
        out.extend_from_slice(b"date: ");
        http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    length_header(out, length.unwrap_or(BodyLength::None));
    out.extend_from_slice(b"\r\n");
}

/// Appends an interim (1xx) head: the status line and the fields as they
/// came (map, then `raw` lines), nothing added.
pub fn interim_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    raw: Option<&RawHeaders>,
) {
    status_and_fields(out, status, headers, raw, false);
    out.extend_from_slice(b"\r\n");
}

/// The status line, the map's fields (less its framing ones when the
/// writer states the framing itself) and the `raw` lines.
fn status_and_fields(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    raw: Option<&RawHeaders>,
    own_framing: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    fields(out, headers, own_framing);
    if let Some(raw) = raw {
        raw.write(out);
    }
}

/// The map's fields as `name: value` lines, less its framing ones when
/// the writer states the framing itself.
fn fields(out: &mut Vec<u8>, headers: &HeaderMap, own_framing: bool) {
    for (name, value) in headers {
        if own_framing && (name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn length_header(out: &mut Vec<u8>, length: BodyLength) {
    match length {
        BodyLength::None => {}
        BodyLength::Known(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyLength::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
}

/// `n` in decimal, without the formatting machinery (once per message).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

thread_local! {
    /// The current second's IMF-fixdate, formatted once per second.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends the current time as an HTTP date.
fn http_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *cached = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// The line that opens a chunk of `len` bytes.
pub fn chunk_start(out: &mut Vec<u8>, len: usize) {
    let _ = write!(out, "{len:x}\r\n");
}

/// What follows each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk of a chunked body (no trailers).
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The last chunk of a chunked body with its trailer fields, if any.
pub fn last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    match trailers {
        Some(trailers) if !trailers.is_empty() => {
            out.extend_from_slice(b"0\r\n");
            fields(out, trailers, true);
            out.extend_from_slice(b"\r\n");
        }
        _ => out.extend_from_slice(LAST_CHUNK),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn targets_go_onward_in_origin_form() {
        for (uri, target) in [
            ("/reviews/1?x=y", "/reviews/1?x=y"),
            ("http://reviews:9080/x", "/x"),
            ("http://reviews", "/"),
            ("http://reviews?/x", "/?/x"),
            ("http://reviews:90310?q", "/?q"),
            ("*", "*"),
        ] {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(super::origin_form(&uri).as_str(), target, "{uri}");
        }
    }

    use super::*;
    use http::HeaderValue;

    #[test]
    fn last_chunk_carries_trailers() {
        let mut out = Vec::new();
        last_chunk(&mut out, None);
        last_chunk(&mut out, Some(&HeaderMap::new()));
        let mut t = HeaderMap::new();
        t.insert("x-checksum", HeaderValue::from_static("abc"));
        last_chunk(&mut out, Some(&t));
        assert_eq!(out, b"0\r\n\r\n0\r\n\r\n0\r\nx-checksum: abc\r\n\r\n");
    }

    #[test]
    fn head_drops_framing_headers_and_adds_its_own() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("reviews"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        request_head(&mut out, &Method::POST, "/p?q=1", &h, BodyLength::Known(3));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: reviews\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 3\r\n\r\n"
        );
        let mut out = Vec::new();
        request_head(
            &mut out,
            &Method::GET,
            "/",
            &HeaderMap::new(),
            BodyLength::Chunked,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
    }

    #[test]
    fn empty_bodies_by_method() {
        assert_eq!(body_length(&Method::GET, Some(0)), BodyLength::None);
        assert_eq!(body_length(&Method::POST, Some(0)), BodyLength::Known(0));
        assert_eq!(body_length(&Method::GET, Some(4)), BodyLength::Known(4));
        assert_eq!(body_length(&Method::PUT, None), BodyLength::Chunked);
    }

    #[test]
    fn response_heads() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert(
            header::DATE,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        let mut out = Vec::new();
        response_head(
            &mut out,
            StatusCode::OK,
            &h,
            None,
            Some(BodyLength::Known(2)),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\ncontent-length: 2\r\n\r\n"
        );
        // No body: the headers as they are; a date is added.
        let mut out = Vec::new();
        h.remove(header::DATE);
        response_head(&mut out, StatusCode::NOT_FOUND, &h, None, None);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\ndate: "),
            "{text}"
        );
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
    }

    #[test]
    fn response_heads_with_raw_upstream_lines() {
        let upstream = "HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 5\r\nDate: X\r\n\r\n";
        let head = crate::h1::decode::parse_response(&mut upstream.into(), &Method::GET)
            .unwrap()
            .unwrap();
        let raw = head.raw.as_ref();
        let mut map = HeaderMap::new();
        map.insert("x-added", HeaderValue::from_static("1"));
        let mut out = Vec::new();
        response_head(
            &mut out,
            StatusCode::OK,
            &map,
            raw,
            Some(BodyLength::Chunked),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nx-added: 1\r\nServer: up\r\nDate: X\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
        // Without a body (the answer to HEAD), the upstream's length.
        let mut out = Vec::new();
        response_head(&mut out, StatusCode::OK, &HeaderMap::new(), raw, None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nServer: up\r\nDate: X\r\ncontent-length: 5\r\n\r\n"
        );
    }

    #[test]
    fn decimal_lengths() {
        for n in [0, 7, 10, 1234, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn chunk_lines_are_hex() {
        let mut out = Vec::new();
        chunk_start(&mut out, 255);
        assert_eq!(out, b"ff\r\n");
    }
}
