//! A mirror that hangs neither slows nor fails the real request; a healthy
//! mirror receives its copies.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[tokio::test]
async fn hanging_mirror_does_not_slow_the_caller() {
    tokio::time::timeout(TEST_LIMIT, async {
        let main = named("main").await;
        let shadow = upstream(|_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            text(200, "never")
        })
        .await;
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
        let c = client();
        let started = Instant::now();
        for _ in 0..20 {
            let r = get(&c, proxy.outbound_addr(), "api", "/x").await;
            assert_eq!(r.status, 200);
            assert_eq!(r.body, "main");
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "20 requests took {:?}",
            started.elapsed()
        );
        // The copies did go out (and are still hanging).
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(shadow.hits(), 20);
    })
    .await
    .expect("test finished in time");
}
