//! Requests two hops could read differently (request smuggling, host
//! confusion) are refused, or made unambiguous, before they leave the
//! proxy, on the outbound and the inbound side. A caller's broken request
//! body is answered as the caller's fault and never charged to the
//! upstream. An upstream's answer of unknown framing is a counted 502, and
//! a connection on which an upstream said more than its answer is never
//! reused (its surplus would answer the next caller). HTTP/2 requests with
//! fields HTTP/1.1 would read differently (CR/LF in a value, connection
//! fields) are refused too; they are sent as raw frames, since client
//! libraries will not send them.
//!
//! The upstream here records every byte it receives, per connection, so
//! each case says exactly what reached it.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one upstream connection received, and whether the proxy closed it.
#[derive(Default)]
struct ConnLog {
    bytes: Vec<u8>,
    closed: bool,
}

/// An HTTP/1.1 upstream that answers `200 ok` to each complete request
/// (framed by `content-length` or chunked, as the proxy writes them) and
/// keeps what it received.
struct Recorder {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<Mutex<ConnLog>>>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<Mutex<ConnLog>>>>> = Arc::default();
        let all = conns.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let log = Arc::new(Mutex::new(ConnLog::default()));
                all.lock().unwrap().push(log.clone());
                tokio::spawn(record(s, log));
            }
        });
        Recorder { addr, conns }
    }

    /// Everything received, all connections, in order of their opening.
    fn received(&self) -> String {
        let conns = self.conns.lock().unwrap();
        let all: Vec<u8> = conns
            .iter()
            .flat_map(|c| c.lock().unwrap().bytes.clone())
            .collect();
        String::from_utf8_lossy(&all).into_owned()
    }

    /// (bytes received, closed) of each connection.
    fn connections(&self) -> Vec<(String, bool)> {
        let conns = self.conns.lock().unwrap();
        conns
            .iter()
            .map(|c| {
                let c = c.lock().unwrap();
                (String::from_utf8_lossy(&c.bytes).into_owned(), c.closed)
            })
            .collect()
    }

    fn forget(&self) {
        self.conns.lock().unwrap().clear();
    }
}

async fn record(mut s: TcpStream, log: Arc<Mutex<ConnLog>>) {
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        log.lock().unwrap().bytes.extend_from_slice(&chunk[..n]);
        pending.extend_from_slice(&chunk[..n]);
        while let Some(len) = complete_request(&pending) {
            pending.drain(..len);
            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .is_err()
            {
                break;
            }
        }
    }
    log.lock().unwrap().closed = true;
}

/// The length of the first complete request in `buf`, if it is there.
fn complete_request(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let value = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    if value("transfer-encoding").is_some() {
        // No trailers in these cases: the last chunk ends the body.
        let end = buf[head..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(head + end + 5);
    }
    let length: usize = value("content-length").map_or(0, |v| v.trim().parse().unwrap());
    (buf.len() >= head + length).then_some(head + length)
}

/// Every case ends with a close: the proxy's, or the caller's
/// `Connection: close`.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    raw_exchange(addr, request).await
}

/// The status codes of every response in `text`.
fn statuses(text: &str) -> Vec<u16> {
    text.split("\r\n")
        .filter_map(|l| l.strip_prefix("HTTP/1.1 "))
        .map(|l| l[..3].parse().unwrap())
        .collect()
}

/// A proxy's outbound side to `up` and a second proxy's inbound side to the
/// same app: each case runs through both.
async fn both_sides(up: SocketAddr) -> Vec<(&'static str, gitmesh_proxy::RunningProxy)> {
    vec![
        ("outbound", start_outbound_to(up).await),
        ("inbound", start_inbound_to(up).await),
    ]
}

fn addr_of(side: &str, proxy: &gitmesh_proxy::RunningProxy) -> SocketAddr {
    match side {
        "outbound" => proxy.outbound_addr(),
        _ => proxy.inbound_addr(),
    }
}

#[tokio::test]
async fn requests_two_hops_could_read_differently_are_refused() {
    tokio::time::timeout(TEST_LIMIT, async {
        let up = Recorder::start().await;
        let cases: [(&str, &[u8], u16, &str); 9] = [
            (
                "a Host that is not host:port",
                b"GET / HTTP/1.1\r\nHost: internal@up\r\n\r\n",
                400,
                "bad-host",
            ),
            (
                "a target in authority form",
                b"GET internal:8080 HTTP/1.1\r\nHost: up\r\n\r\n",
                400,
                "bad-request-target",
            ),
            (
                "userinfo in the target",
                b"GET http://internal@up/ HTTP/1.1\r\nHost: up\r\n\r\n",
                400,
                "bad-request-target",
            ),
            (
                "a second Host",
                b"GET /admin HTTP/1.1\r\nHost: up\r\nHost: internal\r\n\r\n",
                400,
                "duplicate-host",
            ),
            (
                "the same Host twice",
                b"GET / HTTP/1.1\r\nHost: up\r\nHost: up\r\n\r\n",
                400,
                "duplicate-host",
            ),
            (
                "a coding besides chunked",
                b"POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                501,
                "unsupported-transfer-coding",
            ),
            (
                "chunked on two lines",
                b"POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                501,
                "unsupported-transfer-coding",
            ),
            (
                "lengths that disagree",
                b"POST / HTTP/1.1\r\nHost: up\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                400,
                "",
            ),
            (
                "a folded header line",
                b"GET / HTTP/1.1\r\nHost: up\r\nX-A: a\r\n b\r\n\r\n",
                400,
                "",
            ),
        ];
        for (side, proxy) in both_sides(up.addr).await {
            for (case, request, status, reason) in cases {
                let answer = exchange(addr_of(side, &proxy), request).await;
                assert_eq!(statuses(&answer), [status], "{side}, {case}: {answer}");
                // hyper's parser refuses the last two itself, and the
                // connection error is counted as `malformed-request`.
                assert!(
                    reason.is_empty() || answer.contains(&format!("x-gitmesh-error: {reason}")),
                    "{side}, {case}: {answer}"
                );
                assert_eq!(up.received(), "", "{side}, {case} reached the upstream");
            }
            let metrics = proxy.metrics_text();
            for (reason, count) in [
                ("bad-request-target", 2),
                ("bad-host", 1),
                ("duplicate-host", 2),
                ("unsupported-transfer-coding", 2),
                ("malformed-request", 2),
            ] {
                assert!(
                    metrics.contains(&format!(
                        "gitmesh_errors_total{{direction=\"{side}\",reason=\"{reason}\"}} {count}"
                    )),
                    "{side} counts {reason}: {metrics}"
                );
            }
        }
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn an_absolute_target_without_a_path_goes_onward_as_slash() {
    tokio::time::timeout(TEST_LIMIT, async {
        let up = Recorder::start().await;
        for (side, proxy) in both_sides(up.addr).await {
            up.forget();
            let request = b"GET http://up?q=1 HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n";
            let answer = exchange(addr_of(side, &proxy), request).await;
            assert_eq!(statuses(&answer), [200], "{side}: {answer}");
            let received = up.received();
            assert!(
                received.starts_with("GET /?q=1 HTTP/1.1\r\n"),
                "{side}: {received}"
            );
        }
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn a_length_beside_chunked_is_dropped_and_the_connection_closed() {
    tokio::time::timeout(TEST_LIMIT, async {
        let up = Recorder::start().await;
        // A hop trusting the length would take the 5 bytes `0\r\n\r\n` as
        // the body and `GET /smuggled` as the next request.
        let request = b"POST /upload HTTP/1.1\r\nHost: up\r\nContent-Length: 5\r\n\
                        Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
                        GET /smuggled HTTP/1.1\r\nHost: up\r\n\r\n";
        for (side, proxy) in both_sides(up.addr).await {
            up.forget();
            let answer = exchange(addr_of(side, &proxy), request).await;
            assert_eq!(statuses(&answer), [200], "{side}: {answer}");
            assert!(answer.contains("connection: close"), "{side}: {answer}");
            let received = up.received().to_ascii_lowercase();
            assert!(
                received.starts_with("post /upload http/1.1\r\n"),
                "{side}: {received}"
            );
            assert!(
                received.contains("transfer-encoding: chunked\r\n"),
                "{side}: {received}"
            );
            assert!(!received.contains("content-length"), "{side}: {received}");
            assert!(
                received.ends_with("\r\n\r\n0\r\n\r\n"),
                "{side}: {received}"
            );
            assert!(!received.contains("smuggled"), "{side}: {received}");
        }
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn a_broken_request_body_is_the_callers_fault() {
    tokio::time::timeout(TEST_LIMIT, async {
        let up = Recorder::start().await;
        // `ZZ` is no chunk size: the body breaks after the proxy has sent
        // the head and the first chunk upstream.
        let broken = b"POST /upload HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n\
                       2\r\nab\r\nZZ\r\n\r\n";
        let next = b"GET /next HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n";
        for (side, proxy) in both_sides(up.addr).await {
            up.forget();
            let answer = exchange(addr_of(side, &proxy), broken).await;
            assert_eq!(statuses(&answer), [400], "{side}: {answer}");
            assert!(
                answer.contains("x-gitmesh-error: request-body-error"),
                "{side}: {answer}"
            );
            assert_eq!(
                statuses(&exchange(addr_of(side, &proxy), next).await),
                [200]
            );
            // The upstream connection that carried the cut request was
            // closed, not reused: the next request came on another.
            let conns = up.connections();
            let cut = conns
                .iter()
                .position(|(bytes, _)| bytes.starts_with("POST /upload"))
                .unwrap_or_else(|| panic!("{side}: the upload reached the upstream"));
            assert!(
                conns[cut].1,
                "{side}: the cut request's connection is closed"
            );
            assert!(
                !conns[cut].0.contains("/next"),
                "{side}: {conns:?}",
                conns = conns[cut].0
            );
            assert!(
                conns
                    .iter()
                    .any(|(bytes, _)| bytes.starts_with("GET /next"))
            );
            let metrics = proxy.metrics_text();
            assert!(
                metrics.contains(&format!(
                    "gitmesh_errors_total{{direction=\"{side}\",reason=\"request-body-error\"}} 1"
                )),
                "{metrics}"
            );
            assert!(!metrics.contains("reset\"}"), "{side}: {metrics}");
        }
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn broken_request_bodies_never_eject_an_endpoint() {
    tokio::time::timeout(TEST_LIMIT, async {
        // Both upstream protocols: HTTP/1.1 (gitmesh's client sees the
        // body fail) and HTTP/2 (hyper's client only sees its stream reset).
        let h1 = [Recorder::start().await, Recorder::start().await];
        let h2 = [named("a").await, named("b").await];
        let endpoints = |addrs: [SocketAddr; 2]| {
            json!([{"address": addrs[0].to_string()}, {"address": addrs[1].to_string()}])
        };
        let outlier = json!({
            "consecutive5xx": 1, "consecutiveConnectFailures": 1,
            "baseEjectionTime": "1m", "maxEjectionPercent": 50
        });
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [
                {"name": "up", "endpoints": endpoints([h1[0].addr, h1[1].addr]),
                 "outlierDetection": outlier},
                {"name": "grpc", "protocol": "http2", "endpoints": endpoints([h2[0].addr, h2[1].addr]),
                 "outlierDetection": outlier}
            ]
        })))
        .await;
        for host in ["up", "grpc"] {
            for _ in 0..4 {
                let broken = format!(
                    "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n\
                     2\r\nab\r\nZZ\r\n\r\n"
                );
                let answer = exchange(proxy.outbound_addr(), broken.as_bytes()).await;
                assert_eq!(statuses(&answer), [400], "{host}: {answer}");
            }
        }
        let metrics = proxy.metrics_text();
        assert!(!metrics.contains("gitmesh_outlier_ejections_total{service=\"up\"} 1"), "{metrics}");
        assert!(!metrics.contains("gitmesh_outlier_ejections_total{service=\"grpc\"} 1"), "{metrics}");
        assert!(
            metrics.contains(
                "gitmesh_errors_total{direction=\"outbound\",reason=\"request-body-error\"} 8"
            ),
            "{metrics}"
        );
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn an_upstream_answer_of_unknown_framing_is_a_counted_502() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (app, _) = scripted_upstream(|path, _| {
            let answer: &[u8] = match path {
                // Relayed unchunked, the caller would get gzip it cannot
                // know about.
                "/gzip" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                "/lengths" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            };
            (answer.to_vec(), true)
        })
        .await;
        for (side, proxy) in both_sides(app).await {
            let reason = match side {
                "outbound" => "upstream-malformed-response",
                _ => "app-malformed-response",
            };
            for path in ["/gzip", "/lengths"] {
                let request = format!("GET {path} HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n");
                let answer = exchange(addr_of(side, &proxy), request.as_bytes()).await;
                assert_eq!(statuses(&answer), [502], "{side} {path}: {answer}");
                assert!(answer.contains(&format!("x-gitmesh-error: {reason}")), "{answer}");
            }
            assert!(
                proxy.metrics_text().contains(&format!(
                    "gitmesh_errors_total{{direction=\"{side}\",reason=\"{reason}\"}} 2"
                )),
                "{side}"
            );
        }
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn an_upstream_that_says_more_than_its_answer_is_not_reused() {
    tokio::time::timeout(TEST_LIMIT, async {
        // Bytes after an answer's end (a body sent to HEAD, more than the
        // length) would be read as the answer to the next request on that
        // connection: another caller's, perhaps.
        const POISON: &[u8] = b"HTTP/1.1 404 Poison\r\ncontent-length: 6\r\n\r\npoison";
        let (app, connections) = scripted_upstream(|path, _| {
            let mut answer = match path {
                "/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec(),
                "/extra" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                _ => {
                    return (
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nclean".to_vec(),
                        false,
                    );
                }
            };
            answer.extend_from_slice(POISON);
            (answer, false)
        })
        .await;
        for (side, proxy) in both_sides(app).await {
            let before = connections.load(std::sync::atomic::Ordering::SeqCst);
            for (method, path) in [
                ("HEAD", "/head"),
                ("GET", "/clean"),
                ("GET", "/extra"),
                ("GET", "/clean"),
            ] {
                let request =
                    format!("{method} {path} HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n");
                let answer = exchange(addr_of(side, &proxy), request.as_bytes()).await;
                assert_eq!(statuses(&answer), [200], "{side} {method} {path}: {answer}");
                assert!(
                    !answer.contains("poison"),
                    "{side} {method} {path}: {answer}"
                );
                if path == "/clean" {
                    assert!(answer.ends_with("clean"), "{side}: {answer}");
                }
            }
            // The two connections that said too much were dropped.
            let used = connections.load(std::sync::atomic::Ordering::SeqCst) - before;
            assert!(used >= 3, "{side}: {used} upstream connections");
        }
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn a_second_host_is_refused_over_http2_too() {
    tokio::time::timeout(TEST_LIMIT, async {
        let up = Recorder::start().await;
        let proxy = start_outbound_to(up.addr).await;
        let mut h2 = h2_connection(proxy.outbound_addr()).await;
        let mut req = http::Request::get("http://up/")
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap();
        req.headers_mut().append("host", "up".parse().unwrap());
        req.headers_mut()
            .append("host", "internal".parse().unwrap());
        let r = h2.send_request(req).await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["x-gitmesh-error"], "duplicate-host");
        assert!(!r.headers().contains_key("connection"));
        assert_eq!(up.received(), "");
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn an_http2_body_longer_than_its_length_never_reaches_http1() {
    tokio::time::timeout(TEST_LIMIT, async {
        // Downgraded to HTTP/1.1 as it came, `content-length: 0` followed
        // by a DATA frame would put a second request on the upstream's
        // connection. RFC 9113 §8.1.1: the length and the DATA frames
        // must agree, or the stream is malformed.
        let up = Recorder::start().await;
        for (side, proxy) in both_sides(up.addr).await {
            up.forget();
            let tcp = TcpStream::connect(addr_of(side, &proxy)).await.unwrap();
            let (mut h2, conn) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(conn);
            let req = http::Request::post("http://up/upload")
                .header("content-length", "0")
                .body(())
                .unwrap();
            let (response, mut body) = h2.send_request(req, false).unwrap();
            let smuggled = bytes::Bytes::from_static(b"GET /smuggled HTTP/1.1\r\nHost: up\r\n\r\n");
            let _ = body.send_data(smuggled, true);
            match response.await {
                Ok(r) => assert!(r.status().is_client_error(), "{side}: {}", r.status()),
                Err(e) => assert!(e.is_reset() || e.is_go_away(), "{side}: {e}"),
            }
            // Refused before anything went on.
            assert_eq!(up.received(), "", "{side}");
        }
    })
    .await
    .expect("test finished in time");
}

/// An HPACK field as a literal without indexing and with a new name
/// (RFC 7541 §6.2.2), for names and values under 127 bytes: what a client
/// library would refuse to send is encoded as it stands.
fn hpack_literal(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    assert!(name.len() < 127 && value.len() < 127);
    block.push(0x00);
    block.push(name.len() as u8);
    block.extend_from_slice(name);
    block.push(value.len() as u8);
    block.extend_from_slice(value);
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Sends one HTTP/2 GET (prior knowledge) carrying `fields` after the
/// pseudo-headers, as raw frames, and tells what came back on its stream:
/// `status 200`, `reset`, or `goaway`.
async fn raw_h2_get(addr: SocketAddr, fields: &[(&[u8], &[u8])]) -> String {
    let mut block = Vec::new();
    for (name, value) in [
        (&b":method"[..], &b"GET"[..]),
        (b":scheme", b"http"),
        (b":path", b"/"),
        (b":authority", b"up"),
    ]
    .into_iter()
    .chain(fields.iter().copied())
    {
        hpack_literal(&mut block, name, value);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(h2_frame(0x1, 0x5, 1, &block)); // HEADERS, END_STREAM | END_HEADERS
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&out).await.unwrap();
    loop {
        let mut head = [0u8; 9];
        if s.read_exact(&mut head).await.is_err() {
            return "closed".into();
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, stream) = (
            head[3],
            u32::from_be_bytes(head[5..9].try_into().unwrap()) & !(1 << 31),
        );
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        match (kind, stream) {
            (0x4, 0) if head[4] & 1 == 0 => {
                s.write_all(&h2_frame(0x4, 0x1, 0, &[])).await.unwrap(); // SETTINGS ACK
            }
            (0x1, 1) => {
                // The status as an indexed field of the static table
                // (RFC 7541 Appendix A): 8 is 200, 12 is 400.
                return match payload.first() {
                    Some(0x88) => "status 200".into(),
                    Some(0x8c) => "status 400".into(),
                    other => format!("status field {other:?}"),
                };
            }
            (0x3, 1) => return "reset".into(),
            (0x7, _) => return "goaway".into(),
            _ => {}
        }
    }
}

#[tokio::test]
async fn http2_fields_that_http1_would_read_differently_are_refused() {
    tokio::time::timeout(TEST_LIMIT, async {
        // RFC 9113 §8.2.1 and §8.2.2: a field with CR, LF or NUL in its
        // value, an upper-case or otherwise invalid name, or a
        // connection-specific field makes the request malformed. Written
        // onward as HTTP/1.1 each could split or reframe the request.
        let cases: [(&str, &[u8], &[u8]); 8] = [
            ("transfer-encoding", b"transfer-encoding", b"chunked"),
            ("connection", b"connection", b"keep-alive"),
            ("te other than trailers", b"te", b"gzip"),
            ("CRLF in a value", b"x-a", b"b\r\nx-smuggled: 1"),
            ("LF in a value", b"x-a", b"b\nx-smuggled: 1"),
            ("NUL in a value", b"x-a", b"b\0c"),
            ("upper-case name", b"X-Upper", b"1"),
            ("space in a name", b"x a", b"1"),
        ];
        // The outbound side goes on over HTTP/1.1 (the downgrade), to an
        // upstream that keeps every byte; the inbound side goes on to the
        // app in the caller's protocol, HTTP/2 here, to an app that counts
        // requests.
        let recorder = Recorder::start().await;
        let app = upstream(|req: http::Request<hyper::body::Incoming>| async move {
            let ok = req.headers().get("x-ok").is_some_and(|v| v == "fine");
            text(if ok { 200 } else { 500 }, "")
        })
        .await;
        let outbound = start_outbound_to(recorder.addr).await;
        let inbound = start_inbound_to(app.addr).await;
        let got = || recorder.received();
        let sides: [(&str, SocketAddr, &dyn Fn() -> usize); 2] = [
            ("outbound", outbound.outbound_addr(), &|| got().len()),
            ("inbound", inbound.inbound_addr(), &|| app.hits()),
        ];
        for (side, addr, reached) in sides {
            // The encoding itself is sound: the same request with a valid
            // field goes through, the field with it.
            let before = reached();
            assert_eq!(
                raw_h2_get(addr, &[(b"x-ok", b"fine")]).await,
                "status 200",
                "{side}"
            );
            assert!(reached() > before, "{side}");
            for (what, name, value) in cases {
                let before = reached();
                let answer = raw_h2_get(addr, &[(name, value)]).await;
                assert!(
                    matches!(answer.as_str(), "reset" | "goaway" | "status 400"),
                    "{side}, {what}: {answer}"
                );
                assert_eq!(reached(), before, "{side}, {what}: it went on");
            }
        }
        assert!(got().contains("x-ok: fine\r\n"), "{}", got());
        assert!(!got().contains("smuggled"), "{}", got());
    })
    .await
    .expect("test finished in time");
}
