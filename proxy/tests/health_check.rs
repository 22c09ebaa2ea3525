//! Active health checks take an endpoint whose health path fails out of
//! rotation, and bring it back when it recovers.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use support::*;

#[tokio::test]
async fn failing_health_check_removes_endpoint() {
    tokio::time::timeout(TEST_LIMIT, async {
        let good = named("good").await;
        let sick = Arc::new(AtomicBool::new(true));
        let s = sick.clone();
        let flaky = upstream(move |req| {
            let s = s.clone();
            async move {
                if req.uri().path() == "/healthz" && s.load(Ordering::SeqCst) {
                    text(503, "sick")
                } else {
                    text(200, "flaky")
                }
            }
        })
        .await;
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [{"name": "api",
                "endpoints": [{"address": good.addr.to_string()}, {"address": flaky.addr.to_string()}],
                "healthCheck": {"path": "/healthz", "interval": "20ms", "timeout": "500ms",
                                "unhealthyThreshold": 2, "healthyThreshold": 1}}]
        })))
        .await;
        let c = client();
        // Two failed probes at 20ms intervals: give it a little longer.
        tokio::time::sleep(Duration::from_millis(150)).await;
        for _ in 0..20 {
            assert_eq!(get(&c, proxy.outbound_addr(), "api", "/").await.body, "good");
        }
        sick.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut flaky_seen = 0;
        for _ in 0..20 {
            flaky_seen += usize::from(get(&c, proxy.outbound_addr(), "api", "/").await.body == "flaky");
        }
        assert_eq!(flaky_seen, 10, "the recovered endpoint is back in round robin");
    })
    .await
    .expect("test finished in time");
}
