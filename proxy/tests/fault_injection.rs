//! Fault injection aborts or delays the configured share of a rule's
//! requests, before any upstream is contacted.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[tokio::test]
async fn abort_and_delay_by_percent() {
    tokio::time::timeout(TEST_LIMIT, async {
        let up = named("ok").await;
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [{"name": "api", "endpoints": [{"address": up.addr.to_string()}],
                "routes": [{"name": "chaos", "rules": [
                    {"matches": [{"path": {"value": "/abort"}}],
                     "fault": {"abort": {"status": 418, "percent": 50}},
                     "backends": [{"service": "api"}]},
                    {"matches": [{"path": {"value": "/delay"}}],
                     "fault": {"delay": {"duration": "200ms", "percent": 100}},
                     "backends": [{"service": "api"}]}
                ]}]}]
        })))
        .await;
        let c = client();
        let mut aborted = 0;
        for _ in 0..400 {
            let r = get(&c, proxy.outbound_addr(), "api", "/abort").await;
            if r.status == 418 {
                assert_eq!(r.headers["x-gitmesh-fault"], "abort");
                aborted += 1;
            } else {
                assert_eq!(r.status, 200);
            }
        }
        assert!((140..=260).contains(&aborted), "{aborted} of 400 aborted");
        assert_eq!(up.hits(), 400 - aborted);
        let started = Instant::now();
        assert_eq!(
            get(&c, proxy.outbound_addr(), "api", "/delay").await.status,
            200
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
    })
    .await
    .expect("test finished in time");
}
