//! Retries recover a flaky upstream, and the retry budget caps how much a
//! failing upstream's load can be amplified.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use support::*;

fn retry_config(
    addr: std::net::SocketAddr,
    attempts: u32,
    percent: f64,
    min: u32,
) -> serde_json::Value {
    json!({
        "version": "c1", "service": "web",
        "upstreams": [{
            "name": "flaky",
            "endpoints": [{"address": addr.to_string()}],
            "retries": {
                "attempts": attempts,
                "retryOn": ["5xx"],
                "backoff": {"baseInterval": "1ms", "maxInterval": "2ms"},
                "budget": {"percent": percent, "minRetriesPerSecond": min}
            }
        }]
    })
}

#[tokio::test]
async fn retries_recover_a_flaky_upstream() {
    tokio::time::timeout(TEST_LIMIT, async {
        // Every other request fails.
        let n = Arc::new(AtomicUsize::new(0));
        let up = upstream(move |_| {
            let n = n.clone();
            async move {
                if n.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                    text(503, "down")
                } else {
                    text(200, "ok")
                }
            }
        })
        .await;
        let proxy = start(config(retry_config(up.addr, 2, 100.0, 100))).await;
        let c = client();
        for _ in 0..50 {
            let r = get(&c, proxy.outbound_addr(), "flaky", "/").await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
        assert_eq!(up.hits(), 100);
        let metrics = proxy.metrics_text();
        assert!(
            metrics.contains(
                r#"gitmesh_retries_total{direction="outbound",service="flaky",subset=""} 50"#
            ),
            "{metrics}"
        );
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn budget_caps_retry_amplification() {
    tokio::time::timeout(TEST_LIMIT, async {
        let up = upstream(|_| async { text(503, "down") }).await;
        // Up to 3 retries per request, but only 20% extra load allowed.
        let proxy = start(config(retry_config(up.addr, 3, 20.0, 0))).await;
        let c = client();
        for _ in 0..200 {
            let r = get(&c, proxy.outbound_addr(), "flaky", "/").await;
            assert_eq!(r.status, 503);
        }
        let hits = up.hits();
        // Without the budget there would be 800 tries.
        assert!((200..=240).contains(&hits), "{hits} tries for 200 requests");
        assert!(
            proxy
                .metrics_text()
                .contains(r#"gitmesh_retry_budget_exhausted_total{service="flaky"}"#)
        );
    })
    .await
    .expect("test finished in time");
}
