//! A sticky split hashes a header (or cookie) so each user stays on one
//! version, while users overall still follow the weights.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use support::*;

#[tokio::test]
async fn sticky_header_keeps_each_user_on_one_version() {
    tokio::time::timeout(TEST_LIMIT, async {
        let v1 = named("v1").await;
        let v2 = named("v2").await;
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [{
                "name": "reviews",
                "endpoints": [
                    {"address": v1.addr.to_string(), "subset": "v1"},
                    {"address": v2.addr.to_string(), "subset": "v2"}
                ],
                "routes": [{"name": "canary", "rules": [{
                    "sticky": {"kind": "header", "name": "x-user"},
                    "backends": [
                        {"service": "reviews", "subset": "v1", "weight": 50},
                        {"service": "reviews", "subset": "v2", "weight": 50}
                    ]}]}]
            }]
        })))
        .await;
        let c = client();
        let mut on_v2 = 0;
        for user in 0..100 {
            let mut seen = Vec::new();
            for _ in 0..5 {
                let req = Request::get("/")
                    .header("x-user", format!("user-{user}"))
                    .body(Full::<Bytes>::default())
                    .unwrap();
                seen.push(send(&c, proxy.outbound_addr(), "reviews", req).await.body);
            }
            assert!(
                seen.iter().all(|s| *s == seen[0]),
                "user-{user} moved: {seen:?}"
            );
            on_v2 += usize::from(seen[0] == "v2");
        }
        // Users spread over both versions.
        assert!((25..=75).contains(&on_v2), "{on_v2} of 100 users on v2");
    })
    .await
    .expect("test finished in time");
}
