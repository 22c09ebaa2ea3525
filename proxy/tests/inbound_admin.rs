//! The inbound listener forwards to the local app; the admin listener serves
//! /ready, /config and Prometheus /metrics for both directions.

mod support;

use gitmesh_proxy::{Proxy, ProxySettings};
use serde_json::json;
use support::*;

#[tokio::test]
async fn inbound_forwards_to_app_and_admin_reports() {
    tokio::time::timeout(TEST_LIMIT, async {
        let app = named("app").await;
        let settings = ProxySettings {
            app: Some(app.addr.to_string()),
            ..ProxySettings::loopback()
        };
        let proxy = Proxy::start(settings, config(json!({"version": "v9", "service": "web"})))
            .await
            .unwrap();
        let c = client();
        let r = get(&c, proxy.inbound_addr(), "web", "/hello?x=1").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "app");
        assert_eq!(r.headers["x-echo-path"], "/hello?x=1");
        assert_eq!(r.headers["x-echo-host"], "web");

        assert_eq!(admin_get(&proxy, "/ready").await.status, 200);
        let cfg = admin_get(&proxy, "/config").await;
        let v: serde_json::Value = serde_json::from_str(&cfg.body).unwrap();
        assert_eq!(v["version"], "v9");
        assert_eq!(v["config"]["service"], "web");
        let m = admin_get(&proxy, "/metrics").await.body;
        assert!(m.contains(r#"gitmesh_requests_total{direction="inbound",service="web",subset="",class="2xx"} 1"#), "{m}");
        assert!(m.contains("gitmesh_request_duration_seconds_bucket"));
        assert!(m.contains(r#"gitmesh_config_info{version="v9"} 1"#));
        assert!(m.contains(r#"gitmesh_active_connections{listener="inbound"}"#));
        assert_eq!(admin_get(&proxy, "/nope").await.status, 404);
    })
    .await
    .expect("test finished in time");
}
