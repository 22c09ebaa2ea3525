//! Bad input gets a clear 4xx/5xx and a counted reason, never a panic:
//! malformed requests, oversized headers, slow clients, refused and reset
//! upstream connections.

mod support;

use std::time::Duration;

use gitmesh_proxy::{ListenerLimits, Proxy, ProxySettings};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_without_408() {
    tokio::time::timeout(TEST_LIMIT, async {
        let settings = ProxySettings {
            limits: ListenerLimits {
                header_read_timeout: Duration::from_millis(200),
                ..ListenerLimits::default()
            },
            ..ProxySettings::loopback()
        };
        let proxy = Proxy::start(settings, config(json!({"version": "c1", "service": "web"})))
            .await
            .unwrap();
        // One complete request (an unknown destination: 404), then silence.
        let mut s = TcpStream::connect(proxy.outbound_addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: nowhere\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "idle keep-alive connection was not closed");
        let answer = String::from_utf8_lossy(&buf).into_owned();
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(!answer.contains("408"), "{answer}");
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn malformed_oversized_and_slow_clients() {
    tokio::time::timeout(TEST_LIMIT, async {
        let settings = ProxySettings {
            limits: ListenerLimits {
                max_header_bytes: 8192,
                max_headers: 10,
                header_read_timeout: Duration::from_millis(200),
                ..ListenerLimits::default()
            },
            ..ProxySettings::loopback()
        };
        let proxy = Proxy::start(settings, config(json!({"version": "c1", "service": "web"})))
            .await
            .unwrap();
        let addr = proxy.outbound_addr();

        let out = raw_exchange(addr, b"NOT A REQUEST\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");

        let mut big = b"GET / HTTP/1.1\r\nHost: web\r\n".to_vec();
        for i in 0..20 {
            big.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        let out = raw_exchange(addr, &big).await;
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");

        let huge = format!(
            "GET / HTTP/1.1\r\nHost: web\r\nx-big: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let out = raw_exchange(addr, huge.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");

        // A slow client: half a request head, then nothing. The proxy
        // answers 408 and hangs up.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "slow client was not cut off");
        let answer = String::from_utf8_lossy(&buf).into_owned();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("x-gitmesh-error: header-read-timeout"),
            "{answer}"
        );
        buf.clear();
        // A client that sends nothing at all is cut off too.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "idle client was not cut off");
        assert!(buf.is_empty(), "a client that sent nothing gets nothing");

        tokio::time::sleep(Duration::from_millis(50)).await;
        let m = proxy.metrics_text();
        for reason in [
            "malformed-request",
            "headers-too-large",
            "header-read-timeout",
        ] {
            assert!(
                m.contains(&format!(
                    r#"gitmesh_errors_total{{direction="outbound",reason="{reason}"}}"#
                )),
                "{reason}: {m}"
            );
        }
        // Still serving.
        assert_eq!(admin_get(&proxy, "/ready").await.status, 200);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn refused_and_reset_upstreams() {
    tokio::time::timeout(TEST_LIMIT, async {
        // A port with nothing listening.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = closed.local_addr().unwrap();
        drop(closed);
        // A server that accepts, reads, and closes without answering.
        let resetter = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let reset_addr = resetter.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = resetter.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                drop(s);
            }
        });
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [
                {"name": "refused", "endpoints": [{"address": refused.to_string()}]},
                {"name": "reset", "endpoints": [{"address": reset_addr.to_string()}]}
            ]
        })))
        .await;
        let c = client();
        let r = get(&c, proxy.outbound_addr(), "refused", "/").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.headers["x-gitmesh-error"], "connect-failure");
        let r = get(&c, proxy.outbound_addr(), "reset", "/").await;
        assert_eq!(r.status, 502);
        assert_eq!(r.headers["x-gitmesh-error"], "upstream-reset");
        let m = proxy.metrics_text();
        assert!(
            m.contains(r#"gitmesh_errors_total{direction="outbound",reason="connect-failure"} 1"#),
            "{m}"
        );
        assert!(
            m.contains(r#"gitmesh_errors_total{direction="outbound",reason="upstream-reset"} 1"#),
            "{m}"
        );
    })
    .await
    .expect("test finished in time");
}
