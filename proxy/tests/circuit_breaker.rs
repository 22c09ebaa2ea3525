//! The circuit breaker rejects requests past `maxRequests` at once with 503
//! and `x-gitmesh-overloaded`, and admits again when load drops.

mod support;

use std::sync::Arc;

use serde_json::json;
use support::*;
use tokio::sync::Semaphore;

#[tokio::test]
async fn rejects_past_max_requests() {
    tokio::time::timeout(TEST_LIMIT, async {
        // The upstream holds each request until the test releases it.
        let gate = Arc::new(Semaphore::new(0));
        let g = gate.clone();
        let up = upstream(move |_| {
            let g = g.clone();
            async move {
                g.acquire().await.unwrap().forget();
                text(200, "ok")
            }
        })
        .await;
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [{
                "name": "slow",
                "endpoints": [{"address": up.addr.to_string()}],
                "circuitBreaker": {"maxRequests": 2, "maxConnections": 100, "maxPendingRequests": 100}
            }]
        })))
        .await;
        let addr = proxy.outbound_addr();
        let held: Vec<_> = (0..2)
            .map(|_| tokio::spawn(async move { get(&client(), addr, "slow", "/").await.status }))
            .collect();
        while up.hits() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let c = client();
        for _ in 0..5 {
            let r = get(&c, addr, "slow", "/").await;
            assert_eq!(r.status, 503);
            assert_eq!(r.headers["x-gitmesh-overloaded"], "max-requests");
        }
        assert_eq!(up.hits(), 2, "rejected requests must not reach the upstream");
        gate.add_permits(10);
        for h in held {
            assert_eq!(h.await.unwrap(), 200);
        }
        assert_eq!(get(&c, addr, "slow", "/").await.status, 200);
        assert!(proxy.metrics_text().contains(
            r#"gitmesh_circuit_breaker_rejections_total{service="slow",limit="max-requests"} 5"#
        ));
    })
    .await
    .expect("test finished in time");
}
