//! A 90/10 weighted split measured over 10,000 requests lands within ±2%.

mod support;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ninety_ten_split_within_two_percent() {
    tokio::time::timeout(TEST_LIMIT, async {
        let v1 = named("v1").await;
        let v2 = named("v2").await;
        let proxy = start(config(json!({
            "version": "c1", "service": "productpage",
            "upstreams": [{
                "name": "reviews",
                "endpoints": [
                    {"address": v1.addr.to_string(), "subset": "v1"},
                    {"address": v2.addr.to_string(), "subset": "v2"}
                ],
                "routes": [{"name": "split", "rules": [{"backends": [
                    {"service": "reviews", "subset": "v1", "weight": 90},
                    {"service": "reviews", "subset": "v2", "weight": 10}
                ]}]}]
            }]
        })))
        .await;
        let addr = proxy.outbound_addr();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            tasks.push(tokio::spawn(async move {
                let c = client();
                let mut v2 = 0;
                for _ in 0..625 {
                    let r = get(&c, addr, "reviews", "/").await;
                    assert_eq!(r.status, 200);
                    v2 += usize::from(r.body == "v2");
                }
                v2
            }));
        }
        let mut v2_total = 0;
        for t in tasks {
            v2_total += t.await.unwrap();
        }
        assert_eq!(v1.hits() + v2.hits(), 10_000);
        let share = v2_total as f64 / 10_000.0;
        assert!((0.08..=0.12).contains(&share), "v2 got {share}");
        assert_eq!(v2.hits(), v2_total);
    })
    .await
    .expect("test finished in time");
}
