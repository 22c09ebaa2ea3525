//! The per-endpoint HTTP/1.1 keep-alive pool: sequential requests reuse one
//! upstream connection, and an upstream that closes its kept-alive
//! connections between requests costs no failed request.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::*;

/// A raw HTTP/1.1 upstream answering with 200 "ok", counting accepted
/// connections; with `close_after_each`, it closes the connection after
/// each response (without saying so in a header).
async fn raw_upstream(close_after_each: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    scripted_upstream(move |_, _| {
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        (reply.to_vec(), close_after_each)
    })
    .await
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (addr, accepted) = raw_upstream(false).await;
        let proxy = start_outbound_to(addr).await;
        let c = client();
        for _ in 0..50 {
            let r = get(&c, proxy.outbound_addr(), "up", "/").await;
            assert_eq!(r.status, 200);
            assert_eq!(r.body, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn upstream_closing_kept_alive_connections_fails_no_request() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (addr, accepted) = raw_upstream(true).await;
        let proxy = start_outbound_to(addr).await;
        let c = client();
        for i in 0..30 {
            let r = get(&c, proxy.outbound_addr(), "up", "/").await;
            assert_eq!(r.status, 200, "request {i}: {}", r.body);
            // Let the close reach the proxy sometimes, and race it other times.
            if i % 2 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        assert!(accepted.load(Ordering::SeqCst) >= 30);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn inbound_requests_reuse_one_connection_to_the_app() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (app, accepted) = raw_upstream(false).await;
        let proxy = start_inbound_to(app).await;
        let c = client();
        for _ in 0..20 {
            let r = get(&c, proxy.inbound_addr(), "web", "/").await;
            assert_eq!(r.status, 200);
            assert_eq!(r.body, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    })
    .await
    .expect("test finished in time");
}
