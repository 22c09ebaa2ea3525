//! The HTTP/1.1 codec's per-message work, without sockets: reading a
//! request head, and relaying a response head (parse it, write it for the
//! downstream) either raw, as the proxy does when no filter edits it, or
//! through an `http::HeaderMap`, as it does when one does (and as it did
//! for every response before `h1::raw`).
//!
//!     cargo bench -p gitmesh-proxy --bench codec

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use gitmesh_proxy::h1::decode::{RequestLimits, RequestParse, parse_request, parse_response};
use gitmesh_proxy::h1::encode::{BodyLength, response_head};
use http::{HeaderMap, Method};

/// What nginx answers (the load benchmark's upstream).
const NGINX: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 18:08:14 GMT\r\n\
Content-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n";

/// A typical application answer: a dozen headers.
const APP: &[u8] = b"HTTP/1.1 200 OK\r\nDate: Fri, 04 Dec 2026 18:08:14 GMT\r\n\
Content-Type: application/json; charset=utf-8\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\
Cache-Control: no-store\r\nETag: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n\
Vary: Accept-Encoding\r\nSet-Cookie: session=38afes7a8; HttpOnly; Path=/\r\n\
X-Request-Id: 6f1c2a0e-8f7b-4d1e-9a0c-3e2b1d4c5f6a\r\nX-Content-Type-Options: nosniff\r\n\
Strict-Transport-Security: max-age=63072000\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\nhello\n";

const REQUEST: &[u8] = b"GET /api/v1/reviews?product=42 HTTP/1.1\r\nHost: reviews\r\n\
User-Agent: curl/8.5.0\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n\
traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";

/// Parses `wire` and writes the head for the downstream; `map`: through a
/// header map.
fn relay(wire: &[u8], map: bool, out: &mut Vec<u8>) {
    let mut buf = BytesMut::from(wire);
    let head = parse_response(&mut buf, &Method::GET)
        .expect("a valid head")
        .expect("a whole head");
    let length = Some(BodyLength::Known(6));
    out.clear();
    match head.raw {
        Some(raw) if map => {
            let mut headers = HeaderMap::new();
            raw.append_to(&mut headers);
            response_head(out, head.response.status(), &headers, None, length);
        }
        raw => response_head(
            out,
            head.response.status(),
            head.response.headers(),
            raw.as_ref(),
            length,
        ),
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("response-head");
    let mut out = Vec::with_capacity(1024);
    for (name, wire) in [("nginx", NGINX), ("app", APP)] {
        group.bench_function(format!("{name}/raw"), |b| {
            b.iter(|| relay(wire, false, &mut out))
        });
        group.bench_function(format!("{name}/header-map"), |b| {
            b.iter(|| relay(wire, true, &mut out))
        });
    }
    group.finish();

    let limits = RequestLimits {
        max_headers: 100,
        max_head_bytes: 64 * 1024,
        max_body: 64 * 1024,
    };
    c.bench_function("request-head/parse", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(REQUEST);
            match parse_request(&mut buf, limits) {
                RequestParse::Ready(head) => head,
                other => panic!("{other:?}"),
            }
        })
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
