//! Request timeout answers 504; a per-try timeout with retries moves on to
//! another endpoint and recovers.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[tokio::test]
async fn request_timeout_answers_504() {
    tokio::time::timeout(TEST_LIMIT, async {
        let slow = upstream(|_| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            text(200, "late")
        })
        .await;
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [{"name": "slow", "endpoints": [{"address": slow.addr.to_string()}],
                           "timeouts": {"request": "100ms"}}]
        })))
        .await;
        let started = std::time::Instant::now();
        let r = get(&client(), proxy.outbound_addr(), "slow", "/").await;
        assert_eq!(r.status, 504);
        assert_eq!(r.headers["x-gitmesh-error"], "request-timeout");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(proxy.metrics_text().contains(
            r#"gitmesh_timeouts_total{direction="outbound",service="slow",kind="request"} 1"#
        ));
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn per_try_timeout_retries_on_another_endpoint() {
    tokio::time::timeout(TEST_LIMIT, async {
        let slow = upstream(|_| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            text(200, "late")
        })
        .await;
        let fast = named("fast").await;
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [{"name": "api",
                "endpoints": [{"address": slow.addr.to_string()}, {"address": fast.addr.to_string()}],
                "retries": {"attempts": 1, "perTryTimeout": "50ms", "retryOn": ["per-try-timeout"],
                            "backoff": {"baseInterval": "1ms", "maxInterval": "1ms"}}}]
        })))
        .await;
        let c = client();
        for _ in 0..4 {
            let r = get(&c, proxy.outbound_addr(), "api", "/").await;
            assert_eq!(r.status, 200);
            assert_eq!(r.body, "fast");
        }
        assert_eq!(fast.hits(), 4);
        assert!(slow.hits() >= 1, "the slow endpoint was tried and timed out");
        assert!(proxy.metrics_text().contains(
            r#"gitmesh_timeouts_total{direction="outbound",service="api",kind="per-try"}"#
        ));
    })
    .await
    .expect("test finished in time");
}
