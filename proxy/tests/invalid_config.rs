//! An invalid config is refused with every problem (the NACK) and the old
//! config keeps serving.

mod support;

use gitmesh_proxy_config::ProxyConfig;
use serde_json::json;
use support::*;

#[tokio::test]
async fn invalid_config_is_refused_and_old_one_serves() {
    tokio::time::timeout(TEST_LIMIT, async {
        let up = named("v1").await;
        let good = json!({
            "version": "good", "service": "web",
            "upstreams": [{"name": "api", "endpoints": [{"address": up.addr.to_string()}]}]
        });
        let proxy = start(config(good.clone())).await;

        // Fails validation: a backend naming no upstream, a bad regex.
        let mut bad: ProxyConfig = serde_json::from_value(good.clone()).unwrap();
        bad.version = "bad".into();
        bad.upstreams[0].routes = serde_json::from_value(json!([{"name": "r", "rules": [{
            "matches": [{"path": {"type": "RegularExpression", "value": "("}}],
            "backends": [{"service": "nowhere"}]}]}]))
        .unwrap();
        let nack = proxy.apply(bad).unwrap_err();
        assert_eq!(nack.problems.len(), 2, "{nack}");

        // Passes validation but not compilation: a header name with a space.
        let mut bad: ProxyConfig = serde_json::from_value(good).unwrap();
        bad.version = "bad2".into();
        bad.upstreams[0].routes = serde_json::from_value(json!([{"name": "r", "rules": [{
            "filters": [{"type": "RequestHeaderModifier", "set": [{"name": "bad name", "value": "1"}]}],
            "backends": [{"service": "api"}]}]}]))
        .unwrap();
        let nack = proxy.apply(bad).unwrap_err();
        assert!(nack.to_string().contains("bad name"), "{nack}");

        assert_eq!(proxy.version(), "good");
        let r = get(&client(), proxy.outbound_addr(), "api", "/").await;
        assert_eq!(r.status, 200);
        assert!(proxy.metrics_text().contains("gitmesh_config_rejected_total 2"));
        assert!(proxy.metrics_text().contains(r#"gitmesh_config_info{version="good"} 1"#));
    })
    .await
    .expect("test finished in time");
}
