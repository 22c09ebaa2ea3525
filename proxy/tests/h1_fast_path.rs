//! The downstream HTTP/1.1 fast path over raw sockets: pipelined requests
//! are answered in order, a request the fast path leaves to hyper takes the
//! rest of the connection over without losing a byte, `Connection: close`
//! is honoured, a body that never arrives is cut off with a counted 408, and
//! shutdown lets a request in progress finish while idle connections close.

mod support;

use std::time::Duration;

use gitmesh_proxy::{ListenerLimits, Proxy, ProxySettings};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy in front of an upstream that answers each request with its
/// method, path and body.
async fn setup(header_read_timeout: Duration) -> (gitmesh_proxy::RunningProxy, Upstream) {
    let up = upstream(|req: http::Request<hyper::body::Incoming>| async move {
        let (parts, body) = req.into_parts();
        if parts.uri.path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let body = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        let text = format!(
            "{} {} [{}]",
            parts.method,
            parts.uri.path(),
            String::from_utf8_lossy(&body)
        );
        text_reply(&text)
    })
    .await;
    let settings = ProxySettings {
        limits: ListenerLimits {
            header_read_timeout,
            ..ListenerLimits::default()
        },
        ..ProxySettings::loopback()
    };
    let proxy = Proxy::start(
        settings,
        config(json!({
            "version": "c1", "service": "web",
            "upstreams": [{"name": "up", "endpoints": [{"address": up.addr.to_string()}]}]
        })),
    )
    .await
    .unwrap();
    (proxy, up)
}

fn text_reply(body: &str) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    text(200, body)
}

/// Writes `requests` in one go and reads until the proxy closes (after
/// `Connection: close`).
async fn exchange(proxy: &gitmesh_proxy::RunningProxy, requests: &str) -> String {
    raw_exchange(proxy.outbound_addr(), requests.as_bytes()).await
}

/// The positions of `parts` in `text`, which must all be there, in order.
fn assert_in_order(text: &str, parts: &[&str]) {
    let mut from = 0;
    for part in parts {
        let at = text[from..]
            .find(part)
            .unwrap_or_else(|| panic!("{part:?} missing after byte {from} of:\n{text}"));
        from += at + part.len();
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (proxy, up) = setup(Duration::from_secs(10)).await;
        let out = exchange(
            &proxy,
            "GET /one HTTP/1.1\r\nHost: up\r\n\r\n\
             POST /two HTTP/1.1\r\nHost: up\r\nContent-Length: 5\r\n\r\nhello\
             HEAD /three HTTP/1.1\r\nHost: up\r\n\r\n\
             GET /four HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_in_order(
            &out,
            &[
                "HTTP/1.1 200 OK\r\n",
                "GET /one []",
                "HTTP/1.1 200 OK\r\n",
                "POST /two [hello]",
                "HTTP/1.1 200 OK\r\n",
                "HTTP/1.1 200 OK\r\n",
                "GET /four []",
            ],
        );
        assert!(
            !out.contains("HEAD /three"),
            "a HEAD answer has no body:\n{out}"
        );
        assert_eq!(out.matches("HTTP/1.1 ").count(), 4, "{out}");
        assert_eq!(up.hits(), 4);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn hyper_takes_over_mid_connection_without_losing_bytes() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (proxy, up) = setup(Duration::from_secs(10)).await;
        // A chunked body is not the fast path's: from there on, hyper
        // serves the connection, starting with the bytes already read.
        let out = exchange(
            &proxy,
            "GET /one HTTP/1.1\r\nHost: up\r\n\r\n\
             POST /two HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
             GET /three HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_in_order(&out, &["GET /one []", "POST /two [abcde]", "GET /three []"]);
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
        assert_eq!(up.hits(), 3);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn a_body_that_never_arrives_is_cut_off_with_408() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (proxy, up) = setup(Duration::from_millis(200)).await;
        let mut s = TcpStream::connect(proxy.outbound_addr()).await.unwrap();
        s.write_all(b"POST /x HTTP/1.1\r\nHost: up\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
            .await
            .expect("the stalled client is cut off")
            .unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(out.contains("x-gitmesh-error: body-read-timeout"), "{out}");
        assert_eq!(up.hits(), 0, "a partial body is never forwarded");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            proxy.metrics_text().contains(
                r#"gitmesh_errors_total{direction="outbound",reason="body-read-timeout"} 1"#
            ),
            "{}",
            proxy.metrics_text()
        );
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_progress_and_closes_idle_connections() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (proxy, _up) = setup(Duration::from_secs(10)).await;
        let at = proxy.outbound_addr();
        // An idle kept-alive connection, after one request.
        let mut idle = TcpStream::connect(at).await.unwrap();
        idle.write_all(b"GET /one HTTP/1.1\r\nHost: up\r\n\r\n")
            .await
            .unwrap();
        let mut first = vec![0u8; 1024];
        let n = idle.read(&mut first).await.unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).contains("GET /one []"));
        // A request in progress when shutdown starts.
        let mut busy = TcpStream::connect(at).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: up\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopping = tokio::spawn(proxy.shutdown());

        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), busy.read_to_end(&mut answer))
            .await
            .expect("the busy connection ends after its response")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("GET /slow []"), "{answer}");
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest))
            .await
            .expect("the idle connection is closed")
            .unwrap();
        assert!(rest.is_empty(), "nothing more on the idle connection");
        tokio::time::timeout(Duration::from_secs(5), stopping)
            .await
            .expect("shutdown finished before the drain timeout")
            .unwrap();
    })
    .await
    .expect("test finished in time");
}
