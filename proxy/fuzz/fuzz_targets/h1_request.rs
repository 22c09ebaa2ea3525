//! Fuzz target: arbitrary bytes as what a caller sends the HTTP/1.1 fast
//! path, through `gitmesh_proxy::h1::decode::parse_request`.
//!
//! Beyond "no panic", it checks the two properties the proxy relies on:
//!
//! - a head the fast path does not serve (or not yet: partial) is left in
//!   the buffer byte for byte, for hyper to take over;
//! - a head it serves, written out again as the proxy writes it upstream
//!   (`encode::request_head`), reads back as the same request: method,
//!   target, fields in order and body length. A request two hops could
//!   read differently would fail here.

#![no_main]

use bytes::BytesMut;
use gitmesh_proxy::h1::decode::{RequestLimits, RequestParse, parse_request};
use gitmesh_proxy::h1::encode::{self, BodyLength};
use libfuzzer_sys::fuzz_target;

const LIMITS: RequestLimits = RequestLimits {
    max_headers: 99,
    max_head_bytes: 16 * 1024,
    max_body: 64 * 1024,
};

/// Room for the framing line the writer may add (`content-length: 0` on a
/// POST without one) and the `: ` it puts after every name.
const ONWARD: RequestLimits = RequestLimits {
    max_headers: 100,
    max_head_bytes: 20 * 1024,
    ..LIMITS
};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let head = match parse_request(&mut buf, LIMITS) {
        RequestParse::Partial | RequestParse::Unsupported => {
            assert_eq!(&buf[..], data, "left whole for hyper");
            return;
        }
        RequestParse::Ready(head) => head,
    };
    // Exactly the head was taken.
    assert!(buf.len() < data.len());
    assert_eq!(&data[data.len() - buf.len()..], &buf[..]);

    let request = &head.request;
    // Sent upstream in origin form (an absolute-form target's authority
    // becomes `Host`, which the request path sets; not this codec's job).
    let target = encode::origin_form(request.uri());
    let target = target.as_str();
    let length = match head.body_length {
        0 => encode::body_length(request.method(), Some(0)),
        n => BodyLength::Known(n as u64),
    };
    let mut wire = Vec::new();
    encode::request_head(&mut wire, request.method(), target, request.headers(), length);

    let mut again = BytesMut::from(&wire[..]);
    let RequestParse::Ready(reread) = parse_request(&mut again, ONWARD) else {
        panic!(
            "what the proxy writes is refused by its own parser: {:?}",
            String::from_utf8_lossy(&wire)
        );
    };
    assert!(again.is_empty(), "one request in, one request out");
    assert_eq!(reread.request.method(), request.method());
    assert_eq!(
        reread.request.uri().path_and_query().map(|p| p.as_str()),
        Some(target)
    );
    assert_eq!(reread.body_length, head.body_length);
    // Same fields, same order (the framing ones restated by the writer).
    let fields = |r: &http::Request<()>| {
        r.headers()
            .iter()
            .filter(|(n, _)| *n != http::header::CONTENT_LENGTH)
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(fields(&reread.request), fields(request));
});
