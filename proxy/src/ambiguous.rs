//! Requests refused before routing because the next hop could read them
//! differently from the proxy: the root of request smuggling and of routing
//! on one host while the upstream serves another.
//!
//! Only hyper's path calls this: the HTTP/1.1 fast path hands every such
//! request over to it (a transfer coding, a second `Host`), and serves the
//! rest. HTTP/2 has no framing headers on the wire (`transfer-encoding` is
//! forbidden there), but a second `Host` is refused there too. A request
//! with both `content-length` and chunked never gets here as such: hyper
//! reads it as chunked, drops the length and closes the connection after
//! the answer (RFC 9112 §6.1), which is what a proxy must do.

use http::{HeaderMap, Method, StatusCode, Uri, header};

use crate::h1::decode::chunked_alone;

/// Whether a request target names its destination in a way the proxy
/// and the next hop could read differently:
/// - authority form (`GET reviews HTTP/1.1`), which is for CONNECT alone
///   (RFC 9112 §3.2.3): read as a destination, it would route somewhere
///   `Host` does not say;
/// - userinfo in an absolute target (`http://evil@reviews/`), which RFC
///   9110 §4.2.4 says to treat as an error: the proxy routes on the host,
///   and the `Host` it would send on (`evil@reviews`) is anyone's guess.
pub(crate) fn bad_target(method: &Method, uri: &Uri) -> bool {
    let Some(authority) = uri.authority() else {
        return false;
    };
    (uri.scheme().is_none() && method != Method::CONNECT) || authority.as_str().contains('@')
}

/// Whether a `Host` value is `host[:port]` as RFC 3986 writes it (names,
/// IPv4, `[IPv6]`, percent-encoding): no userinfo, path, query or space.
/// An empty value passes (RFC 9112 §3.2 allows one for a target without
/// an authority; the outbound side answers it `missing-host`).
pub(crate) fn valid_host(value: &[u8]) -> bool {
    value.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b':'
                    | b'['
                    | b']'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    })
}

/// Why a request is refused, if it is: the status and the counted reason.
/// The caller closes the connection after the answer: an unread body of
/// unknown framing leaves no way to find the next request.
pub fn refusal(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<(StatusCode, &'static str)> {
    if bad_target(method, uri) {
        return Some((StatusCode::BAD_REQUEST, "bad-request-target"));
    }
    // RFC 9112 §3.2: more than one `Host` line is a 400. The proxy routes
    // on one; an upstream taking the other would serve (and authorize) a
    // different host.
    let mut hosts = headers.get_all(header::HOST).iter();
    if let Some(host) = hosts.next() {
        if hosts.next().is_some() {
            return Some((StatusCode::BAD_REQUEST, "duplicate-host"));
        }
        // One the upstream could read as another host (`evil@reviews`).
        if !valid_host(host.as_bytes()) {
            return Some((StatusCode::BAD_REQUEST, "bad-host"));
        }
    }
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let first = codings.next()?;
    // RFC 9112 §6.1: 501 for a coding the server does not understand; a
    // second line is a second coding.
    if codings.next().is_some() || !chunked_alone(first.as_bytes()) {
        return Some((StatusCode::NOT_IMPLEMENTED, "unsupported-transfer-coding"));
    }
    None
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    /// A GET of `/` with these header lines.
    fn refusal_of(lines: &[(&'static str, &'static str)]) -> Option<(StatusCode, &'static str)> {
        refusal(&Method::GET, &Uri::from_static("/"), &headers(lines))
    }

    #[test]
    fn one_host_and_chunked_alone_pass() {
        assert_eq!(refusal_of(&[("host", "a")]), None);
        assert_eq!(refusal_of(&[]), None);
        assert_eq!(
            refusal_of(&[("host", "a"), ("transfer-encoding", " Chunked ")]),
            None
        );
        assert_eq!(refusal_of(&[("host", "a"), ("content-length", "3")]), None);
        for (method, target) in [
            (Method::GET, "http://reviews/x"),
            (Method::OPTIONS, "*"),
            (Method::CONNECT, "reviews:443"),
        ] {
            let uri: Uri = target.parse().unwrap();
            assert_eq!(refusal(&method, &uri, &HeaderMap::new()), None, "{target}");
        }
    }

    #[test]
    fn hosts_are_host_and_port() {
        for good in [
            "reviews",
            "reviews:9080",
            "10.0.0.1:80",
            "[::1]:8080",
            "a-b.c_d~e",
            "",
        ] {
            assert_eq!(refusal_of(&[("host", good)]), None, "{good:?}");
        }
        for bad in [
            "evil@reviews",
            "reviews/x",
            "reviews?x",
            "a b",
            "reviews#x",
            "\"r\"",
        ] {
            assert_eq!(
                refusal_of(&[("host", bad)]),
                Some((StatusCode::BAD_REQUEST, "bad-host")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn targets_that_hide_their_destination_are_refused() {
        for (method, target) in [
            (Method::GET, "reviews:9080"),
            (Method::GET, "http://evil@reviews/x"),
            (Method::GET, "http://user:pass@reviews:9080/"),
            (Method::CONNECT, "evil@reviews:443"),
        ] {
            let uri: Uri = target.parse().unwrap();
            assert_eq!(
                refusal(&method, &uri, &HeaderMap::new()),
                Some((StatusCode::BAD_REQUEST, "bad-request-target")),
                "{method} {target}"
            );
        }
    }

    #[test]
    fn ambiguous_requests_are_refusal_of() {
        assert_eq!(
            refusal_of(&[("host", "a"), ("host", "b")]),
            Some((StatusCode::BAD_REQUEST, "duplicate-host"))
        );
        assert_eq!(
            refusal_of(&[("host", "a"), ("host", "a")]),
            Some((StatusCode::BAD_REQUEST, "duplicate-host"))
        );
        for codings in [
            &[("transfer-encoding", "gzip, chunked")][..],
            &[("transfer-encoding", "chunked, chunked")],
            &[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked"),
            ],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "identity")],
        ] {
            assert_eq!(
                refusal_of(codings),
                Some((StatusCode::NOT_IMPLEMENTED, "unsupported-transfer-coding")),
                "{codings:?}"
            );
        }
    }
}
