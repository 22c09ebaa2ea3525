//! Request bodies without a content-length (chunked) are buffered up to the
//! replay bound like any other, so they can be retried and mirrored; past
//! the bound they stream through whole, once, and the reason is counted.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitmesh_proxy::{Proxy, ProxySettings};
use http_body_util::BodyExt;
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upstream that records each request body and fails the first
/// `failures` requests with 503.
async fn recording(failures: usize) -> (Upstream, Arc<Mutex<Vec<String>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let up = upstream(move |req: http::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(String::from_utf8_lossy(&body).into_owned());
                seen.len()
            };
            if n <= failures {
                text(503, "down")
            } else {
                text(200, "ok")
            }
        }
    })
    .await;
    (up, bodies)
}

/// A chunked POST of `chunks` to `host`, answered with the status line.
async fn chunked_post(addr: std::net::SocketAddr, host: &str, chunks: &[&str]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for c in chunks {
        req.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    req.push_str("0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    out.lines().next().unwrap_or_default().to_string()
}

fn retry_config(addr: std::net::SocketAddr) -> serde_json::Value {
    json!({
        "version": "c1", "service": "web",
        "upstreams": [{
            "name": "up",
            "endpoints": [{"address": addr.to_string()}],
            "retries": {
                "attempts": 2,
                "retryOn": ["5xx"],
                "backoff": {"baseInterval": "1ms", "maxInterval": "2ms"},
                "budget": {"percent": 100.0, "minRetriesPerSecond": 100}
            }
        }]
    })
}

#[tokio::test]
async fn chunked_request_body_is_retried() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (up, bodies) = recording(1).await;
        let proxy = start(config(retry_config(up.addr))).await;
        let status = chunked_post(
            proxy.outbound_addr(),
            "up",
            &["hello ", "chunked ", "world"],
        )
        .await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let bodies = bodies.lock().unwrap().clone();
        assert_eq!(bodies, vec!["hello chunked world"; 2]);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn chunked_body_over_the_bound_streams_through_once_and_is_counted() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (up, bodies) = recording(1).await;
        let settings = ProxySettings {
            replay_buffer_bytes: 8,
            ..ProxySettings::loopback()
        };
        let proxy = Proxy::start(settings, config(retry_config(up.addr)))
            .await
            .unwrap();
        let status = chunked_post(
            proxy.outbound_addr(),
            "up",
            &["hello ", "chunked ", "world"],
        )
        .await;
        // No retry: the first (failing) answer is relayed.
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        let bodies = bodies.lock().unwrap().clone();
        assert_eq!(bodies, vec!["hello chunked world"]);
        let m = proxy.metrics_text();
        assert!(
            m.contains(
                r#"gitmesh_errors_total{direction="outbound",reason="replay-body-too-large"} 1"#
            ),
            "{m}"
        );
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn chunked_request_body_is_mirrored() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (main, main_bodies) = recording(0).await;
        let (shadow, shadow_bodies) = recording(0).await;
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [
                {"name": "api", "endpoints": [{"address": main.addr.to_string()}],
                 "routes": [{"name": "m", "rules": [{
                    "filters": [{"type": "RequestMirror", "backend": {"service": "shadow"}, "percent": 100}],
                    "backends": [{"service": "api"}]}]}]},
                {"name": "shadow", "endpoints": [{"address": shadow.addr.to_string()}]}
            ]
        })))
        .await;
        let status = chunked_post(proxy.outbound_addr(), "api", &["abc", "def"]).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        for _ in 0..100 {
            if !shadow_bodies.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(main_bodies.lock().unwrap().clone(), vec!["abcdef"]);
        assert_eq!(shadow_bodies.lock().unwrap().clone(), vec!["abcdef"]);
    })
    .await
    .expect("test finished in time");
}
