//! Inbound authorization and JWT authentication end to end: a real app on
//! 127.0.0.1:0 behind the proxy's inbound listener, plaintext callers (no
//! peer identity, so only `*` rules and the default apply), tokens signed at
//! test time with the fixture keys, JWKS from a file and from a local server.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gitmesh_proxy::{Proxy, ProxySettings, RunningProxy};
use http::Request;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use support::*;

const RSA_A: &str = include_str!("fixtures/jwt-rsa-a.pem");
const RSA_B: &str = include_str!("fixtures/jwt-rsa-b.pem");
const EC_A: &str = include_str!("fixtures/jwt-ec-a.pem");
const JWKS_A: &str = include_str!("fixtures/jwks-a.json");
const JWKS_B: &str = include_str!("fixtures/jwks-b.json");
const ISSUER: &str = "https://idp.example";

async fn proxy_with_app(inbound: Value) -> (RunningProxy, Upstream) {
    let app = named("app").await;
    let settings = ProxySettings {
        app: Some(app.addr.to_string()),
        ..ProxySettings::loopback()
    };
    let cfg = config(json!({"version": "v1", "service": "api", "inbound": inbound}));
    (Proxy::start(settings, cfg).await.unwrap(), app)
}

async fn call(proxy: &RunningProxy, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(
        &client(),
        proxy.inbound_addr(),
        "api",
        req.body(Full::<Bytes>::default()).unwrap(),
    )
    .await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": "api", "sub": "alice", "exp": now() + 600})
}

fn token(kid: &str, pem: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    encode(
        &h,
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// The inbound error counter for `reason`.
async fn metric(proxy: &RunningProxy, reason: &str) -> u64 {
    sample(
        proxy,
        &format!(r#"gitmesh_errors_total{{direction="inbound",reason="{reason}"}}"#),
    )
    .await
}

/// The value of the metric sample `key` (name and labels), 0 if absent.
async fn sample(proxy: &RunningProxy, key: &str) -> u64 {
    let m = admin_get(proxy, "/metrics").await.body;
    m.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

async fn within_limit<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test finished in time");
}

#[tokio::test]
async fn default_deny_refuses_unauthenticated_callers_with_403_reason_and_metric() {
    within_limit(async {
        let (proxy, app) =
            proxy_with_app(json!({"authorization": {"defaultAction": "deny"}})).await;
        let r = call(&proxy, "GET", "/", &[]).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.headers["x-gitmesh-error"], "denied-by-intention");
        assert_eq!(r.headers["x-gitmesh-rule"], "default");
        assert_eq!(app.hits(), 0, "the app never saw it");
        call(&proxy, "POST", "/x", &[]).await;
        assert_eq!(metric(&proxy, "denied-by-intention").await, 2);

        // A rule naming a service does not apply to a caller without an
        // identity.
        let (proxy, _app) = proxy_with_app(json!({"authorization": {
            "defaultAction": "deny",
            "rules": [{"source": "web", "action": "allow"}]
        }}))
        .await;
        assert_eq!(call(&proxy, "GET", "/", &[]).await.status, 403);
    })
    .await;
}

#[tokio::test]
async fn default_allow_and_wildcard_rules() {
    within_limit(async {
        let (proxy, app) =
            proxy_with_app(json!({"authorization": {"defaultAction": "allow"}})).await;
        let r = call(&proxy, "GET", "/hello", &[]).await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "app"));
        assert_eq!(app.hits(), 1);

        let (proxy, _app) = proxy_with_app(json!({"authorization": {
            "defaultAction": "allow",
            "rules": [{"source": "*", "action": "deny"}]
        }}))
        .await;
        let r = call(&proxy, "GET", "/hello", &[]).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.headers["x-gitmesh-rule"], "source=*");
    })
    .await;
}

#[tokio::test]
async fn l7_permissions_by_method_path_and_header_on_normalized_paths() {
    within_limit(async {
        let (proxy, _app) = proxy_with_app(json!({"authorization": {
            "defaultAction": "deny",
            "rules": [{"source": "*", "permissions": [
                {"action": "deny", "path": {"type": "Exact", "value": "/public/secret"}},
                {"action": "allow", "methods": ["GET"], "path": {"type": "PathPrefix", "value": "/public"}},
                {"action": "allow", "methods": ["POST"], "path": {"type": "RegularExpression", "value": "/orders/[0-9]+"},
                 "headers": [{"name": "x-tenant", "value": "acme"}]}
            ]}]
        }}))
        .await;
        let r = call(&proxy, "GET", "/public/a?q=1", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["x-echo-path"], "/public/a?q=1");
        let r = call(&proxy, "GET", "/public/secret", &[]).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.headers["x-gitmesh-rule"], "source=* permission=0");
        assert_eq!(call(&proxy, "POST", "/public/a", &[]).await.status, 403, "method");
        assert_eq!(call(&proxy, "GET", "/admin", &[]).await.status, 403);
        assert_eq!(call(&proxy, "POST", "/orders/7", &[]).await.status, 403, "header missing");
        assert_eq!(call(&proxy, "POST", "/orders/7", &[("x-tenant", "acme")]).await.status, 200);
        assert_eq!(call(&proxy, "POST", "/orders/7", &[("x-tenant", "evil")]).await.status, 403);

        // Bypass attempts are normalized first, and the app gets the same
        // normalized path that was authorized.
        for sneaky in ["/public/../public/secret", "/public//secret", "/public/%73ecret", "/public/./secret"] {
            let r = call(&proxy, "GET", sneaky, &[]).await;
            assert_eq!(r.status, 403, "{sneaky}");
        }
        assert_eq!(call(&proxy, "GET", "/public/../admin", &[]).await.status, 403);
        let r = call(&proxy, "GET", "/x/../public/%61?z=%2F", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["x-echo-path"], "/public/a?z=%2F");
        let r = call(&proxy, "GET", "/public%2F..%2Fadmin", &[]).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.headers["x-gitmesh-error"], "ambiguous-path");
        assert_eq!(metric(&proxy, "ambiguous-path").await, 1);
    })
    .await;
}

fn jwt_inbound(jwks: Value, permissions: Value) -> Value {
    json!({
        "authorization": {"defaultAction": "deny", "rules": [{"source": "*", "permissions": permissions}]},
        "jwt": {"providers": [{"issuer": ISSUER, "audiences": ["api"], "jwks": jwks}]}
    })
}

#[tokio::test]
async fn jwt_valid_forged_expired_wrong_audience_missing_malformed_huge() {
    within_limit(async {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, JWKS_A).unwrap();
        let (proxy, app) = proxy_with_app(jwt_inbound(
            json!({"file": jwks.to_str().unwrap()}),
            json!([{"action": "allow"}]),
        ))
        .await;

        let good = token("rsa-a", RSA_A, &claims());
        for _ in 0..3 {
            let r = call(&proxy, "GET", "/", &[("authorization", &bearer(&good))]).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.headers["x-echo-authorization"], bearer(&good).as_str());
        }
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("ec-a".into());
        let es = encode(
            &h,
            &claims(),
            &EncodingKey::from_ec_pem(EC_A.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            call(&proxy, "GET", "/", &[("authorization", &bearer(&es))])
                .await
                .status,
            200
        );

        let mut expired = claims();
        expired["exp"] = json!(now() - 3600);
        let mut wrong_aud = claims();
        wrong_aud["aud"] = json!("other");
        let mut wrong_iss = claims();
        wrong_iss["iss"] = json!("https://evil.example");
        let huge = format!("{}.{}.sig", "a".repeat(6000), "b".repeat(6000));
        let cases = [
            (
                bearer(&token("rsa-a", RSA_B, &claims())),
                "jwt-bad-signature",
            ),
            (bearer(&token("rsa-a", RSA_A, &expired)), "jwt-expired"),
            (
                bearer(&token("rsa-a", RSA_A, &wrong_aud)),
                "jwt-wrong-audience",
            ),
            (
                bearer(&token("rsa-a", RSA_A, &wrong_iss)),
                "jwt-unknown-issuer",
            ),
            ("Bearer not.a.jwt".to_string(), "jwt-malformed"),
            ("Bearer".to_string(), "jwt-malformed"),
            (bearer(&huge), "jwt-too-large"),
        ];
        let before = app.hits();
        for (auth, reason) in &cases {
            let r = call(&proxy, "GET", "/", &[("authorization", auth)]).await;
            assert_eq!(r.status, 401, "{reason}");
            assert_eq!(r.headers["x-gitmesh-error"], *reason);
            assert_eq!(r.headers["www-authenticate"], "Bearer");
        }
        let r = call(&proxy, "GET", "/", &[]).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.headers["x-gitmesh-error"], "jwt-missing");
        assert_eq!(app.hits(), before, "no refused request reached the app");
        assert_eq!(metric(&proxy, "jwt-expired").await, 1);
        assert_eq!(metric(&proxy, "jwt-missing").await, 1);
        // The good RS256 token's signature was checked once, then its
        // repeats came from the cache of verified tokens; the ES256 one
        // was checked once; refused tokens count in neither.
        assert_eq!(jwt_accepted(&proxy, "signature").await, 2);
        assert_eq!(jwt_accepted(&proxy, "cached").await, 2);
    })
    .await;
}

async fn jwt_accepted(proxy: &RunningProxy, verification: &str) -> u64 {
    sample(
        proxy,
        &format!(r#"gitmesh_jwt_accepted_total{{verification="{verification}"}}"#),
    )
    .await
}

#[tokio::test]
async fn a_required_claim_gives_403_when_absent() {
    within_limit(async {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, JWKS_A).unwrap();
        let (proxy, _app) = proxy_with_app(jwt_inbound(
            json!({"file": jwks.to_str().unwrap()}),
            json!([
                {"action": "allow", "path": {"type": "PathPrefix", "value": "/admin"}, "claims": {"role": "admin"}},
                {"action": "allow", "methods": ["GET"], "path": {"type": "PathPrefix", "value": "/public"}}
            ]),
        ))
        .await;
        let user = token("rsa-a", RSA_A, &claims());
        let mut admin_claims = claims();
        admin_claims["role"] = json!("admin");
        let admin = token("rsa-a", RSA_A, &admin_claims);
        let r = call(&proxy, "GET", "/admin/users", &[("authorization", &bearer(&user))]).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.headers["x-gitmesh-error"], "missing-claim");
        assert_eq!(r.headers["x-gitmesh-rule"], "source=* no-permission-fits default missing-claims=role");
        let r = call(&proxy, "GET", "/admin/users", &[("authorization", &bearer(&admin))]).await;
        assert_eq!(r.status, 200);
        let r = call(&proxy, "GET", "/public", &[("authorization", &bearer(&user))]).await;
        assert_eq!(r.status, 200);
        assert_eq!(metric(&proxy, "missing-claim").await, 1);
    })
    .await;
}

#[tokio::test]
async fn jwks_from_a_url_is_cached_and_refetched_after_rotation() {
    within_limit(async {
        let served = Arc::new(Mutex::new(JWKS_A.to_string()));
        let body = served.clone();
        let idp = upstream(move |_req| {
            let body = body.lock().unwrap().clone();
            async move { text(200, &body) }
        })
        .await;
        let url = format!("http://{}/jwks.json", idp.addr);
        let (proxy, _app) = proxy_with_app(jwt_inbound(
            json!({"url": url, "refresh": "200ms"}),
            json!([{"action": "allow"}]),
        ))
        .await;
        let a = bearer(&token("rsa-a", RSA_A, &claims()));
        for _ in 0..5 {
            assert_eq!(
                call(&proxy, "GET", "/", &[("authorization", &a)])
                    .await
                    .status,
                200
            );
        }
        assert!(
            idp.hits() <= 2,
            "cached, not fetched per request: {}",
            idp.hits()
        );

        // The issuer rotates to key b: tokens signed with it are accepted
        // once the new set is fetched (a new kid triggers a refetch).
        *served.lock().unwrap() = JWKS_B.to_string();
        let b = bearer(&token("rsa-b", RSA_B, &claims()));
        let mut status = 0;
        for _ in 0..100 {
            status = call(&proxy, "GET", "/", &[("authorization", &b)])
                .await
                .status
                .as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status, 200, "rotated key accepted");
        // And the retired key a is refused once the set no longer has it.
        let r = call(&proxy, "GET", "/", &[("authorization", &a)]).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.headers["x-gitmesh-error"], "jwt-unknown-key");
    })
    .await;
}

#[tokio::test]
async fn jwks_endpoint_down_gives_503() {
    within_limit(async {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let (proxy, app) = proxy_with_app(jwt_inbound(
            json!({"url": format!("http://{closed}/jwks.json")}),
            json!([{"action": "allow"}]),
        ))
        .await;
        let t = bearer(&token("rsa-a", RSA_A, &claims()));
        let r = call(&proxy, "GET", "/", &[("authorization", &t)]).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.headers["x-gitmesh-error"], "jwks-unavailable");
        // A JWKS endpoint answering garbage is no better.
        let idp = upstream(|_req| async { text(200, "<html>not json</html>") }).await;
        let (proxy2, _app2) = proxy_with_app(jwt_inbound(
            json!({"url": format!("http://{}/jwks", idp.addr)}),
            json!([{"action": "allow"}]),
        ))
        .await;
        let r = call(&proxy2, "GET", "/", &[("authorization", &t)]).await;
        assert_eq!(r.status, 503);
        assert_eq!(app.hits(), 0);
    })
    .await;
}
