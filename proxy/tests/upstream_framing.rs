//! gitmesh's own HTTP/1.1 client against a raw upstream that writes exact
//! bytes: every way a response body can be delimited arrives whole, interim
//! 1xx answers reach fast-path callers (not `100 Continue`, and not hyper's
//! callers), a broken answer becomes a counted 502, and the upstream's
//! header lines reach HTTP/1.1 and HTTP/2 callers whether they are relayed
//! raw or edited by a filter. Trailers go through both ways, and a request's
//! go again with a retry.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the raw upstream answers for a request path, and whether it then
/// closes the connection.
fn answer(path: &str) -> (&'static [u8], bool) {
    match path {
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-trailer\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n",
            false,
        ),
        "/until-close" => (b"HTTP/1.1 200 OK\r\n\r\nall of it until the close", true),
        "/no-content" => (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        "/continue" => (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
            false,
        ),
        "/early-hints" => (
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            false,
        ),
        "/head" => (b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n", false),
        "/garbage" => (b"HTTP/1.1 2x0 what\r\n\r\n", true),
        "/cut-head" => (b"HTTP/1.1 200 OK\r\ncontent-le", true),
        "/cut-body" => (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort", true),
        "/echo-length" => (b"", false),
        p if p.ends_with("/headers") => (
            b"HTTP/1.1 200 OK\r\nServer: raw\r\nSet-Cookie: a=1\r\nConnection: keep-alive\r\n\
              set-cookie: b=2\r\nX-Empty:\r\nX-Replace:  upstream \r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        _ => (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
    }
}

/// A raw HTTP/1.1 upstream answering from [`answer`]; counts connections.
/// `/echo-length` answers with the request's body, read by content-length.
async fn raw_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    scripted_upstream(|path, body| {
        if path == "/echo-length" {
            let mut r =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
            r.extend_from_slice(body);
            return (r, false);
        }
        let (reply, close) = answer(path);
        (reply.to_vec(), close)
    })
    .await
}

async fn setup() -> (gitmesh_proxy::RunningProxy, Arc<AtomicUsize>) {
    let (addr, accepted) = raw_upstream().await;
    (start_outbound_to(addr).await, accepted)
}

#[tokio::test]
async fn every_body_framing_arrives_whole() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (proxy, accepted) = setup().await;
        let c = client();
        let at = proxy.outbound_addr();

        let r = get(&c, at, "up", "/chunked").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "hello, world"));
        let r = get(&c, at, "up", "/continue").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "final"));
        let r = get(&c, at, "up", "/no-content").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (204, ""));
        let head = Request::builder()
            .method(Method::HEAD)
            .uri("/head")
            .body(Full::default())
            .unwrap();
        let r = send(&c, at, "up", head).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-length"], "1234", "HEAD keeps the length");
        // Those four kept one connection open.
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        let r = get(&c, at, "up", "/until-close").await;
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "all of it until the close")
        );
        // A body delimited by the close cannot leave its connection reusable.
        let r = get(&c, at, "up", "/").await;
        assert_eq!(r.body, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn request_bodies_keep_their_length() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (proxy, _) = setup().await;
        let c = client();
        let big = "x".repeat(100_000);
        for body in ["", "small", big.as_str()] {
            let req = Request::post("/echo-length")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap();
            let r = send(&c, proxy.outbound_addr(), "up", req).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.body.len(), body.len());
        }
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn broken_answers_become_counted_502s() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (proxy, _) = setup().await;
        let c = client();
        // A head that is no HTTP, and one cut by the upstream's close.
        for (path, reason) in [
            ("/garbage", "upstream-malformed-response"),
            ("/cut-head", "upstream-reset"),
        ] {
            let r = get(&c, proxy.outbound_addr(), "up", path).await;
            assert_eq!(r.status, 502, "{path}");
            assert_eq!(r.headers["x-gitmesh-error"], reason, "{path}");
            let metrics = admin_get(&proxy, "/metrics").await.body;
            assert!(
                metrics.contains(&format!(r#"reason="{reason}"}} 1"#)),
                "the reason is counted:\n{metrics}"
            );
        }
        // A body cut short after its head: the client's exchange fails (at
        // the head or in the body, as the bytes happen to be flushed)
        // instead of passing a short body off as whole.
        let req = Request::get(format!("http://{}/cut-body", proxy.outbound_addr()))
            .header("host", "up")
            .body(Full::<Bytes>::default())
            .unwrap();
        if let Ok(response) = c.request(req).await {
            let body = http_body_util::BodyExt::collect(response.into_body()).await;
            assert!(body.is_err(), "a truncated body is not passed off as whole");
        }
        // And the proxy keeps serving.
        assert_eq!(get(&c, proxy.outbound_addr(), "up", "/").await.body, "ok");
    })
    .await
    .expect("test finished in time");
}

/// What a raw HTTP/1.1 client reads for `request` until `end`.
async fn wire(at: SocketAddr, request: &[u8], end: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
    s.write_all(request).await.unwrap();
    read_until(&mut s, end).await
}

/// The bytes read from `s` up to and including `end`.
async fn read_until(s: &mut tokio::net::TcpStream, end: &[u8]) -> String {
    let mut wire = Vec::new();
    while !wire.ends_with(end) {
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&wire));
        wire.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(wire).unwrap()
}

#[tokio::test]
async fn early_hints_reach_fast_path_callers_on_both_sides() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (addr, _) = raw_upstream().await;
        let outbound = start_outbound_to(addr).await;
        // The inbound side, with the raw upstream as its local app.
        let inbound = start_inbound_to(addr).await;
        for at in [outbound.outbound_addr(), inbound.inbound_addr()] {
            let wire = wire(
                at,
                b"GET /early-hints HTTP/1.1\r\nHost: up\r\n\r\n",
                b"\r\n\r\nok",
            )
            .await;
            assert!(
                wire.starts_with(
                    "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                     HTTP/1.1 200 OK\r\n"
                ),
                "{wire}"
            );
            assert!(!wire.contains(" 100 "), "{wire}");
        }

        // hyper's callers get the final response only.
        let at = outbound.outbound_addr();
        let r = get(&client(), at, "up", "/early-hints").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "ok"));
        let mut h2 = h2_connection(at).await;
        let req = Request::get("http://up/early-hints")
            .body(Full::<Bytes>::default())
            .unwrap();
        assert_eq!(h2.send_request(req).await.unwrap().status(), 200);
    })
    .await
    .expect("test finished in time");
}

/// The bytes read from `s` through the end of a chunked body: its last
/// chunk and trailer section.
async fn read_chunked_end(s: &mut tokio::net::TcpStream) -> String {
    let mut wire = read_until(s, b"\r\n\r\n").await;
    while !wire.contains("\r\n0\r\n") {
        wire.push_str(&read_until(s, b"\r\n").await);
    }
    if !wire.ends_with("\r\n\r\n") {
        wire.push_str(&read_until(s, b"\r\n\r\n").await);
    }
    wire
}

#[tokio::test]
async fn response_trailers_reach_callers_on_both_sides() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (addr, _) = raw_upstream().await;
        let outbound = start_outbound_to(addr).await;
        let inbound = start_inbound_to(addr).await;
        // The fast path on both sides, then hyper's HTTP/1.1 path (a
        // request with `Expect` hands the connection to hyper, which sends
        // trailers to callers that accept them with `TE: trailers`).
        let requests: [&[u8]; 2] = [
            b"GET /chunked HTTP/1.1\r\nHost: up\r\n\r\n",
            b"GET /chunked HTTP/1.1\r\nHost: up\r\nExpect: 100-continue\r\nTE: trailers\r\n\
              content-length: 0\r\n\r\n",
        ];
        for request in requests {
            for at in [outbound.outbound_addr(), inbound.inbound_addr()] {
                let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
                s.write_all(request).await.unwrap();
                let wire = read_chunked_end(&mut s).await;
                let wire = wire.to_ascii_lowercase();
                assert!(wire.contains("transfer-encoding: chunked\r\n"), "{wire}");
                assert!(wire.contains("\r\ntrailer: x-trailer\r\n"), "{wire}");
                assert!(wire.ends_with("\r\n0\r\nx-trailer: t\r\n\r\n"), "{wire}");
            }
        }

        // An HTTP/2 caller gets them as a trailing HEADERS frame.
        let mut h2 = h2_connection(outbound.outbound_addr()).await;
        let req = Request::get("http://up/chunked")
            .body(Full::<Bytes>::default())
            .unwrap();
        let body = h2.send_request(req).await.unwrap().into_body();
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-trailer"], "t");
        assert_eq!(collected.to_bytes(), "hello, world");
    })
    .await
    .expect("test finished in time");
}

/// A chunked upload ending in a trailer, and how its body ends on the wire
/// when it reaches the upstream whole.
const TRAILERED_UPLOAD: &[u8] =
    b"POST /upload HTTP/1.1\r\nHost: up\r\ntransfer-encoding: chunked\r\n\r\n\
    5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n";
const TRAILERED_BODY_END: &str = "\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n";

#[tokio::test]
async fn request_trailers_reach_the_upstream() {
    tokio::time::timeout(TEST_LIMIT, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen) = tokio::sync::oneshot::channel::<String>();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let wire = read_chunked_end(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            seen_tx.send(wire).unwrap();
        });
        let proxy = start_outbound_to(addr).await;
        let answer = wire(proxy.outbound_addr(), TRAILERED_UPLOAD, b"\r\n\r\nok").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        let upstream_saw = seen.await.unwrap();
        assert!(
            upstream_saw.starts_with("POST /upload HTTP/1.1\r\n"),
            "{upstream_saw}"
        );
        assert!(upstream_saw.ends_with(TRAILERED_BODY_END), "{upstream_saw}");
    })
    .await
    .expect("test finished in time");
}

/// A request body buffered for a retry keeps its trailers: the second try
/// ends in the same trailer section as the first.
#[tokio::test]
async fn request_trailers_go_again_with_a_retry() {
    tokio::time::timeout(TEST_LIMIT, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tries = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = tries.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    loop {
                        let wire = read_chunked_end(&mut s).await;
                        let first = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(wire);
                            seen.len() == 1
                        };
                        let answer: &[u8] = if first {
                            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        };
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [{
                "name": "up",
                "endpoints": [{"address": addr.to_string()}],
                "retries": {
                    "attempts": 1,
                    "retryOn": ["5xx"],
                    "backoff": {"baseInterval": "1ms", "maxInterval": "2ms"},
                    "budget": {"percent": 100.0, "minRetriesPerSecond": 10}
                }
            }]
        })))
        .await;
        let answer = wire(proxy.outbound_addr(), TRAILERED_UPLOAD, b"\r\n\r\nok").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        let tries = tries.lock().unwrap().clone();
        assert_eq!(tries.len(), 2, "{tries:?}");
        for t in &tries {
            assert!(t.starts_with("POST /upload HTTP/1.1\r\n"), "{t}");
            assert!(t.ends_with(TRAILERED_BODY_END), "{t}");
        }
    })
    .await
    .expect("test finished in time");
}

/// The 103 goes out while the final response is still awaited: this
/// upstream sends its 200 only once the client has read the 103.
#[tokio::test]
async fn early_hints_go_out_before_the_final_response_exists() {
    tokio::time::timeout(TEST_LIMIT, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hints_read, final_due) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                s.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a.js>\r\n\r\n")
                .await
                .unwrap();
            final_due.await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
        });
        let proxy = start_outbound_to(addr).await;
        let mut s = tokio::net::TcpStream::connect(proxy.outbound_addr())
            .await
            .unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: up\r\n\r\n")
            .await
            .unwrap();
        let hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.js>\r\n\r\n";
        let mut got = vec![0u8; hints.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, hints);
        hints_read.send(()).unwrap();
        let rest = read_until(&mut s, b"\r\n\r\nok").await;
        assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    })
    .await
    .expect("the 103 arrived before the final response was sent");
}

#[tokio::test]
async fn upstream_header_lines_reach_every_caller() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (addr, _) = raw_upstream().await;
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [{"name": "up", "endpoints": [{"address": addr.to_string()}],
                "routes": [{"name": "main", "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/edited"}}],
                     "filters": [{"type": "ResponseHeaderModifier",
                                  "set": [{"name": "X-Replace", "value": "proxy"}],
                                  "remove": ["server"]}],
                     "backends": [{"service": "up"}]},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                     "backends": [{"service": "up"}]}
                ]}]}]
        })))
        .await;
        let at = proxy.outbound_addr();

        // The fast path relays the lines as they came, less the
        // connection-level ones, with its own framing and a date.
        let wire = wire(
            at,
            b"GET /headers HTTP/1.1\r\nHost: up\r\n\r\n",
            b"\r\n\r\nok",
        )
        .await;
        for line in [
            "Server: raw\r\n",
            "Set-Cookie: a=1\r\n",
            "set-cookie: b=2\r\n",
            "X-Empty:\r\n",
            "X-Replace:  upstream \r\n",
            "content-length: 2\r\n",
            "date: ",
        ] {
            assert!(wire.contains(line), "{line:?} in\n{wire}");
        }
        assert!(!wire.to_ascii_lowercase().contains("connection:"), "{wire}");
        assert_eq!(wire.matches("ontent-").count(), 1, "{wire}");

        // hyper's callers, HTTP/1.1 and h2c (which names the service in
        // :authority), get the same fields, and a filter edits them.
        let mut h2 = h2_connection(at).await;
        let h1 = client();
        for path in ["/headers", "/edited/headers"] {
            let r1 = get(&h1, at, "up", path).await;
            let req = Request::get(format!("http://up{path}"))
                .body(Full::<Bytes>::default())
                .unwrap();
            let r2 = h2.send_request(req).await.unwrap();
            assert_eq!(r2.version(), http::Version::HTTP_2);
            let headers2 = r2.headers().clone();
            let body2 = http_body_util::BodyExt::collect(r2.into_body())
                .await
                .unwrap()
                .to_bytes();
            for (headers, body) in [(&r1.headers, r1.body.as_bytes()), (&headers2, &body2[..])] {
                assert_eq!(body, b"ok", "{path}");
                assert_eq!(headers.get_all("set-cookie").iter().count(), 2, "{path}");
                assert_eq!(headers["x-empty"], "", "{path}");
                assert!(headers.get("connection").is_none(), "{path}");
                if path == "/headers" {
                    assert_eq!(headers["server"], "raw");
                    assert_eq!(headers["x-replace"], "upstream");
                } else {
                    assert!(headers.get("server").is_none());
                    assert_eq!(headers.get_all("x-replace").iter().count(), 1);
                    assert_eq!(headers["x-replace"], "proxy");
                }
            }
        }
    })
    .await
    .expect("test finished in time");
}
