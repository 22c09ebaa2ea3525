//! The last accepted config is persisted to the state directory and a
//! restarted proxy serves it without being given a config.

mod support;

use gitmesh_proxy::{Proxy, ProxySettings, StateDir};
use serde_json::json;
use support::*;

#[tokio::test]
async fn persisted_config_is_loaded_after_restart() {
    tokio::time::timeout(TEST_LIMIT, async {
        let v1 = named("v1").await;
        let v2 = named("v2").await;
        let dir = tempfile::tempdir().unwrap();
        let settings = ProxySettings {
            state_dir: Some(dir.path().to_path_buf()),
            ..ProxySettings::loopback()
        };
        let cfg = |version: &str, up: &Upstream| {
            config(json!({
                "version": version, "service": "web",
                "upstreams": [{"name": "api", "endpoints": [{"address": up.addr.to_string()}]}]
            }))
        };
        let proxy = Proxy::start(settings.clone(), cfg("first", &v1))
            .await
            .unwrap();
        proxy.apply(cfg("second", &v2)).unwrap();
        // A refused config is not persisted.
        let mut bad = cfg("third", &v1);
        bad.upstreams[0].endpoints[0].address = "nowhere".into();
        assert!(proxy.apply(bad).is_err());
        proxy.shutdown().await;

        let state = StateDir::new(dir.path());
        let restored = state.load().unwrap().expect("a persisted config");
        assert_eq!(restored.version, "second");
        let proxy = Proxy::start(settings, restored).await.unwrap();
        let r = get(&client(), proxy.outbound_addr(), "api", "/").await;
        assert_eq!(r.body, "v2");
        let cfg = admin_get(&proxy, "/config").await;
        assert_eq!(cfg.headers["x-gitmesh-config-version"], "second");
        assert!(cfg.body.contains("\"digest\": \"sha256:"), "{}", cfg.body);
    })
    .await
    .expect("test finished in time");
}
