//! Gateway API routing end to end: matches and precedence, 404s with a
//! reason, absolute-form URIs (HTTP_PROXY), filters (header modifiers,
//! redirect, rewrite), and `traceparent` passing through untouched.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use support::*;

async fn proxy_with_routes() -> (gitmesh_proxy::RunningProxy, Upstream, Upstream) {
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
            "routes": [{"name": "main", "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
                 "filters": [{"type": "URLRewrite", "path": {"type": "ReplacePrefixMatch", "value": "/api"}},
                             {"type": "RequestHeaderModifier", "set": [{"name": "X-Set", "value": "yes"}], "remove": ["x-drop"]},
                             {"type": "ResponseHeaderModifier", "add": [{"name": "x-served-by", "value": "gitmesh"}]}],
                 "backends": [{"service": "reviews", "subset": "v2"}]},
                {"matches": [{"path": {"type": "Exact", "value": "/old"}}],
                 "filters": [{"type": "RequestRedirect", "path": {"type": "ReplaceFullPath", "value": "/new"}, "statusCode": 301}],
                 "backends": []},
                {"matches": [{"headers": [{"name": "X-Canary", "value": "1"}], "path": {"value": "/app"}}],
                 "backends": [{"service": "reviews", "subset": "v2"}]},
                {"matches": [{"path": {"value": "/app"}}],
                 "backends": [{"service": "reviews", "subset": "v1"}]}
            ]}]
        }]
    })))
    .await;
    (proxy, v1, v2)
}

#[tokio::test]
async fn matches_precedence_and_not_found() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (proxy, _v1, _v2) = proxy_with_routes().await;
        let c = client();
        let addr = proxy.outbound_addr();
        assert_eq!(get(&c, addr, "reviews", "/app/x").await.body, "v1");
        let canary = Request::get("/app")
            .header("x-canary", "1")
            .body(Full::<Bytes>::default())
            .unwrap();
        assert_eq!(send(&c, addr, "reviews", canary).await.body, "v2");
        // Prefix matches whole segments only.
        let r = get(&c, addr, "reviews", "/appx").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.headers["x-gitmesh-error"], "no-route");
        // The port in Host is ignored; an unknown service is a 404 with a reason.
        assert_eq!(get(&c, addr, "reviews:9080", "/app").await.body, "v1");
        let r = get(&c, addr, "ratings", "/app").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.headers["x-gitmesh-error"], "unknown-destination");
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn filters_rewrite_modify_and_redirect() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (proxy, _v1, _v2) = proxy_with_routes().await;
        let c = client();
        let addr = proxy.outbound_addr();
        let req = Request::get("/v2/items?id=7")
            .header("x-drop", "secret")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(Full::<Bytes>::default())
            .unwrap();
        let r = send(&c, addr, "reviews", req).await;
        assert_eq!(r.body, "v2");
        assert_eq!(r.headers["x-echo-path"], "/api/items?id=7");
        assert_eq!(r.headers["x-echo-x-set"], "yes");
        assert!(!r.headers.contains_key("x-echo-x-drop"));
        assert_eq!(r.headers["x-served-by"], "gitmesh");
        assert_eq!(
            r.headers["x-echo-traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        let r = get(&c, addr, "reviews", "/old?q=1").await;
        assert_eq!(r.status, 301);
        assert_eq!(r.headers["location"], "http://reviews/new?q=1");
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn absolute_form_uri_works_as_http_proxy() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (proxy, _v1, _v2) = proxy_with_routes().await;
        // Write the request by hand: absolute-form target, as HTTP_PROXY clients do.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(proxy.outbound_addr())
            .await
            .unwrap();
        s.write_all(
            b"GET http://reviews/app/1 HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("v1"), "{out}");
        assert!(out.contains("x-echo-path: /app/1"), "{out}");
    })
    .await
    .expect("test finished in time");
}
