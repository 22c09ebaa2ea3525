//! Hot swaps under continuous load lose no request: in-flight requests finish
//! on the old config and new ones see the new config.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use support::*;

fn cfg(version: &str, subset: &str, v1: &Upstream, v2: &Upstream) -> serde_json::Value {
    json!({
        "version": version, "service": "web",
        "upstreams": [{
            "name": "reviews",
            "endpoints": [
                {"address": v1.addr.to_string(), "subset": "v1"},
                {"address": v2.addr.to_string(), "subset": "v2"}
            ],
            "routes": [{"name": "r", "rules": [{"backends": [{"service": "reviews", "subset": subset}]}]}]
        }]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_load_lose_nothing() {
    tokio::time::timeout(TEST_LIMIT, async {
        let v1 = named("v1").await;
        let v2 = upstream(|_| async {
            // Slow enough that swaps happen while requests are in flight.
            tokio::time::sleep(Duration::from_millis(2)).await;
            text(200, "v2")
        })
        .await;
        let proxy = Arc::new(start(config(cfg("c0", "v1", &v1, &v2))).await);
        let stop = Arc::new(AtomicBool::new(false));
        let addr = proxy.outbound_addr();
        let mut load = Vec::new();
        for _ in 0..8 {
            let stop = stop.clone();
            load.push(tokio::spawn(async move {
                let c = client();
                let (mut ok, mut failed) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let r = get(&c, addr, "reviews", "/").await;
                    if r.status == 200 {
                        ok += 1
                    } else {
                        failed += 1
                    }
                }
                (ok, failed)
            }));
        }
        for i in 1..=40u32 {
            let subset = if i.is_multiple_of(2) { "v1" } else { "v2" };
            proxy
                .apply(config(cfg(&format!("c{i}"), subset, &v1, &v2)))
                .expect("valid config applies");
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let (mut ok, mut failed) = (0, 0);
        for l in load {
            let (o, f) = l.await.unwrap();
            ok += o;
            failed += f;
        }
        assert_eq!(failed, 0, "{failed} requests failed during swaps");
        assert!(ok > 100, "only {ok} requests ran");
        assert!(v1.hits() > 0 && v2.hits() > 0);
        assert_eq!(proxy.version(), "c40");
        // After the last swap, new requests see the new config.
        assert_eq!(get(&client(), addr, "reviews", "/").await.body, "v1");
    })
    .await
    .expect("test finished in time");
}
