//! An endpoint answering 5xx is ejected by outlier detection and then
//! receives nothing while its ejection lasts.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn failing_endpoint_is_ejected_then_gets_no_traffic() {
    tokio::time::timeout(TEST_LIMIT, async {
        let good = named("good").await;
        let bad = upstream(|_| async { text(500, "broken") }).await;
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [{
                "name": "api",
                "endpoints": [
                    {"address": good.addr.to_string()},
                    {"address": bad.addr.to_string()}
                ],
                "outlierDetection": {
                    "consecutive5xx": 3,
                    "baseEjectionTime": "1m",
                    "maxEjectionPercent": 50
                }
            }]
        })))
        .await;
        let c = client();
        let mut errors = 0;
        for _ in 0..10 {
            errors += usize::from(get(&c, proxy.outbound_addr(), "api", "/").await.status == 500);
        }
        // Round robin: the bad endpoint saw 3 requests, then was ejected.
        assert_eq!(errors, 3);
        assert_eq!(bad.hits(), 3);
        for _ in 0..100 {
            assert_eq!(get(&c, proxy.outbound_addr(), "api", "/").await.status, 200);
        }
        assert_eq!(bad.hits(), 3, "an ejected endpoint got traffic");
        assert!(
            proxy
                .metrics_text()
                .contains(r#"gitmesh_outlier_ejections_total{service="api"} 1"#)
        );
    })
    .await
    .expect("test finished in time");
}
