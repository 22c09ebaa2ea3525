//! HTTP/2 with prior knowledge (h2c) passes through on both sides: an h2c
//! caller reaches an h2c upstream, and an HTTP/1.1 caller reaches it too.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn h2c_request_passes_through() {
    tokio::time::timeout(TEST_LIMIT, async {
        let up = named("grpc-ish").await;
        let proxy = start(config(json!({
            "version": "c1", "service": "web",
            "upstreams": [{"name": "api", "protocol": "http2",
                           "endpoints": [{"address": up.addr.to_string()}]}]
        })))
        .await;
        // The h2 client sends the authority in :authority (no Host header).
        let h2 = h2_client();
        let r = h2
            .get(
                format!("http://{}/hello", proxy.outbound_addr())
                    .parse()
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.version(), http::Version::HTTP_2);
        // :authority is the proxy's own address here: no such service.
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-gitmesh-error"], "unknown-destination");

        // A gRPC-style client dials the proxy but names the service in
        // :authority: one h2c connection, requests for http://api/.
        let mut sender = h2_connection(proxy.outbound_addr()).await;
        for _ in 0..3 {
            let req = http::Request::get("http://api/hello")
                .body(http_body_util::Full::<bytes::Bytes>::default())
                .unwrap();
            let r = sender.send_request(req).await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.version(), http::Version::HTTP_2);
            assert_eq!(r.headers()["x-echo-version"], "HTTP/2.0");
        }

        let r = get(&client(), proxy.outbound_addr(), "api", "/hello").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers["x-echo-version"], "HTTP/2.0",
            "HTTP/1.1 in, h2c upstream"
        );
        assert_eq!(r.body, "grpc-ish");
    })
    .await
    .expect("test finished in time");
}
