//! Answers the proxy writes itself (errors, redirects, injected aborts), and
//! the hop-by-hop headers that must not cross the proxy.

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::ProxyBody;

pub static X_GITMESH_ERROR: HeaderName = HeaderName::from_static("x-gitmesh-error");
pub static X_GITMESH_OVERLOADED: HeaderName = HeaderName::from_static("x-gitmesh-overloaded");
pub static X_GITMESH_FAULT: HeaderName = HeaderName::from_static("x-gitmesh-fault");
/// On a 403, the intention rule that denied the request.
pub static X_GITMESH_RULE: HeaderName = HeaderName::from_static("x-gitmesh-rule");

/// An error answer naming its reason in `x-gitmesh-error` and the body.
pub fn error(status: StatusCode, reason: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Full(Some(Bytes::from_static(reason.as_bytes()))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(&X_GITMESH_ERROR, HeaderValue::from_static(reason));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Whether `name` is one of the standard hop-by-hop headers. `Trailer` is
/// not: it announces the trailer fields at a chunked body's end, which pass
/// end to end (RFC 9110 §6.6.2), and hyper's HTTP/1 writer sends only the
/// trailer fields it names.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::TE
        || name == header::PROXY_AUTHORIZATION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

// Not among `http`'s standard names: compared as names (a cheap mismatch
// for every standard header), not as strings.
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including any that
/// `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The common cases (none present, or just `Connection: keep-alive`) cost
    // one pass over the names and a removal per header actually present,
    // instead of a hashed removal per possible name.
    let (mut connection_seen, mut others) = (false, false);
    for name in headers.keys() {
        if name == header::CONNECTION {
            connection_seen = true;
        } else if is_hop_by_hop(name) {
            others = true;
        }
    }
    if !connection_seen && !others {
        return;
    }
    if let Some(connection) = headers.remove(header::CONNECTION)
        && let Ok(list) = connection.to_str()
    {
        for token in list.split(',') {
            let token = token.trim();
            // `close` names no header; `keep-alive` is a standard
            // hop-by-hop header, removed below anyway.
            if token.is_empty()
                || token.eq_ignore_ascii_case("close")
                || token.eq_ignore_ascii_case("keep-alive")
            {
                continue;
            }
            // `from_bytes` lowercases.
            if let Ok(n) = HeaderName::from_bytes(token.as_bytes())
                && headers.keys().any(|k| *k == n)
            {
                headers.remove(n);
            }
        }
    }
    if !others {
        // Connection was the only standard one.
        return;
    }
    while let Some(name) = headers.keys().find(|k| is_hop_by_hop(k)).cloned() {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_listed_and_standard_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("traceparent", "00-abc-def-01".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["traceparent"], "00-abc-def-01");
    }

    #[test]
    fn strips_without_connection_header_and_keeps_end_to_end_ones() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        h.insert(header::TRAILER, "x-checksum".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        assert_eq!(h[header::TRAILER], "x-checksum");
        let mut clean = HeaderMap::new();
        clean.insert(header::ACCEPT, "*/*".parse().unwrap());
        strip_hop_by_hop(&mut clean);
        assert_eq!(clean.len(), 1);
    }
}
