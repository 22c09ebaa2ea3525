//! Answers the proxy writes itself (errors, redirects, injected aborts), and
//! the hop-by-hop headers that must not cross the proxy.

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::ProxyBody;

pub static X_GITMESH_ERROR: HeaderName = HeaderName::from_static("x-gitmesh-error");
pub static X_GITMESH_OVERLOADED: HeaderName = HeaderName::from_static("x-gitmesh-overloaded");
pub static X_GITMESH_FAULT: HeaderName = HeaderName::from_static("x-gitmesh-fault");

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

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including any that
/// `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(connection) = headers.remove(header::CONNECTION)
        && let Ok(list) = connection.to_str()
    {
        for name in list.split(',') {
            if let Ok(n) = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()) {
                headers.remove(n);
            }
        }
    }
    for name in [
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
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
}
