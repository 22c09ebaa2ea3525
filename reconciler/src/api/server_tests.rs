//! The proxy API over real HTTP on `127.0.0.1:0`.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;
use tokio::time::timeout;

use gitmesh_proxy_config::ProxyConfig;
use gitmesh_proxy_config::api::{ConfigUpdate, Registered};

use super::*;

struct Server {
    addr: SocketAddr,
    registry: RegistryHandle,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(heartbeat: Duration) -> Server {
    let registry = RegistryHandle::new(heartbeat);
    let server = ApiServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), registry.clone())
        .await
        .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        registry,
        client: Client::builder(TokioExecutor::new()).build_http(),
        stop: Some(stop),
        task,
    }
}

impl Server {
    async fn call(&self, method: Method, path: &str, body: &str) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let res = timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("answers in time")
            .unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn register(&self, service: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/proxies",
                &format!(r#"{{"service":"{service}","address":"127.0.0.1:7000","labels":{{"version":"v1"}}}}"#),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str::<Registered>(&body).unwrap().id
    }
}

fn update(version: &str, service: &str) -> ConfigUpdate {
    ConfigUpdate::new(
        ProxyConfig::from_json(
            format!(r#"{{"version":"{version}","service":"{service}"}}"#).as_bytes(),
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn registered_proxies_show_in_status() {
    let s = start(Duration::from_secs(5)).await;
    let mut changes = s.registry.changes();
    let id = s.register("reviews").await;
    assert!(changes.has_changed().unwrap(), "registration is a change");
    changes.mark_unchanged();
    let (status, body) = s.call(Method::GET, "/v1/status", "").await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["heartbeatIntervalMs"], 5000);
    assert_eq!(json["proxies"][0]["id"], id.as_str());
    assert_eq!(json["proxies"][0]["service"], "reviews");
    assert_eq!(json["proxies"][0]["address"], "127.0.0.1:7000");
    assert_eq!(json["proxies"][0]["labels"]["version"], "v1");
    assert_eq!(json["proxies"][0]["healthy"], false);

    let heartbeat = r#"{"healthy":true,"running":{"version":"v0","digest":"sha256:0"}}"#;
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/proxies/{id}/heartbeat"),
            heartbeat,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        changes.has_changed().unwrap(),
        "turning healthy is a change"
    );
    let p = s.registry.get(&id).unwrap();
    assert!(p.healthy);
    assert_eq!(p.running.unwrap().version, "v0");
    assert_eq!(s.call(Method::GET, "/healthz", "").await.0, StatusCode::OK);
}

#[tokio::test]
async fn long_poll_answers_at_once_when_behind_and_304_when_nothing_changes() {
    let s = start(Duration::from_secs(5)).await;
    let id = s.register("a").await;
    let path = |known: &str| format!("/v1/proxies/{id}/config?known={known}&wait=50ms");
    let (status, _) = s.call(Method::GET, &path(""), "").await;
    assert_eq!(status, StatusCode::NOT_MODIFIED, "nothing assigned yet");
    let v1 = update("v1", "a");
    assert!(s.registry.assign(&id, v1.clone()).unwrap());
    let (status, body) = s.call(Method::GET, &path(""), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<ConfigUpdate>(&body).unwrap(), v1);
    // A percent-encoded digest is the same digest.
    let encoded = v1.digest.replace(':', "%3A");
    assert_eq!(
        s.call(Method::GET, &path(&encoded), "").await.0,
        StatusCode::NOT_MODIFIED
    );
}

#[tokio::test]
async fn a_waiting_long_poll_wakes_when_its_assignment_changes() {
    let s = start(Duration::from_secs(5)).await;
    let id = s.register("a").await;
    let v1 = update("v1", "a");
    s.registry.assign(&id, v1.clone()).unwrap();
    let registry = s.registry.clone();
    let other = s.register("a").await;
    let assign_later = {
        let id = id.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Another proxy's change must not answer this poll.
            registry.assign(&other, update("v9", "a")).unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            registry.assign(&id, update("v2", "b")).unwrap();
        }
    };
    let path = format!("/v1/proxies/{id}/config?known={}&wait=60s", v1.digest);
    let poll = s.call(Method::GET, &path, "");
    let ((status, body), ()) = tokio::join!(poll, assign_later);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<ConfigUpdate>(&body)
            .unwrap()
            .config
            .version,
        "v2"
    );
}

#[tokio::test]
async fn acks_and_nacks_are_recorded() {
    let s = start(Duration::from_secs(5)).await;
    let id = s.register("a").await;
    let v1 = update("v1", "a");
    s.registry.assign(&id, v1.clone()).unwrap();
    let ack = format!(
        r#"{{"version":"v1","digest":"{}","accepted":true}}"#,
        v1.digest
    );
    let (status, _) = s
        .call(Method::POST, &format!("/v1/proxies/{id}/ack"), &ack)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(s.registry.get(&id).unwrap().converged());
    let nack = r#"{"version":"v2","digest":"sha256:2","accepted":false,"reason":"bad backend"}"#;
    s.call(Method::POST, &format!("/v1/proxies/{id}/ack"), nack)
        .await;
    let (_, body) = s.call(Method::GET, "/v1/status", "").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["proxies"][0]["lastAck"]["accepted"], false);
    assert_eq!(json["proxies"][0]["lastAck"]["reason"], "bad backend");
    assert_eq!(json["proxies"][0]["running"]["digest"], v1.digest.as_str());
    assert_eq!(json["proxies"][0]["assignedDigest"], v1.digest.as_str());
}

#[tokio::test]
async fn bad_requests_get_clear_answers() {
    let s = start(Duration::from_secs(5)).await;
    let (status, body) = s.call(Method::POST, "/v1/proxies", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("bad JSON") && body.contains("line 1"),
        "{body}"
    );
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/proxies",
            r#"{"service":"a","address":"x:1","colour":1}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("colour"), "unknown fields are named: {body}");
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/proxies",
            r#"{"service":"a b","address":"x:1"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("service"), "{body}");
    let huge = format!(r#"{{"service":"{}"}}"#, "a".repeat(MAX_BODY_BYTES));
    assert_eq!(
        s.call(Method::POST, "/v1/proxies", &huge).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let hb = r#"{"healthy":true,"running":{"version":"v","digest":"d"}}"#;
    let (status, body) = s
        .call(Method::POST, "/v1/proxies/ghost/heartbeat", hb)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("ghost"), "{body}");
    assert_eq!(
        s.call(Method::GET, "/v1/proxies/ghost/config?wait=1s", "")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.call(Method::GET, "/v1/proxies/x/config?wait=soon", "")
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.call(Method::GET, "/v2/nothing", "").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.call(Method::DELETE, "/v1/status", "").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn silent_proxies_expire_and_their_long_polls_end_with_404() {
    let s = start(Duration::from_millis(40)).await;
    let mut changes = s.registry.changes();
    let id = s.register("a").await;
    changes.mark_unchanged();
    let (status, _) = s
        .call(
            Method::GET,
            &format!("/v1/proxies/{id}/config?wait=60s"),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "expired while waiting");
    assert!(s.registry.get(&id).is_none());
    assert!(changes.has_changed().unwrap(), "expiry is a change");
}

#[tokio::test]
async fn shutdown_ends_waiting_long_polls_and_closes_the_port() {
    let mut s = start(Duration::from_secs(5)).await;
    let id = s.register("a").await;
    let stop = s.stop.take().unwrap();
    let path = format!("/v1/proxies/{id}/config?wait=60s");
    let poll = s.call(Method::GET, &path, "");
    let stop_later = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
    };
    let ((status, _), ()) = tokio::join!(poll, stop_later);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    timeout(Duration::from_secs(10), &mut s.task)
        .await
        .expect("the server stops")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(s.addr).await.is_err());
}

#[tokio::test]
async fn certificate_requests_are_checked_over_http() {
    use super::super::certificates::{BootstrapTokens, CertificateService};
    use crate::ca::MeshCa;
    let token = "server-test-token-0123456789";
    let ca = MeshCa::generate("mesh.test", std::time::SystemTime::now()).unwrap();
    let service = CertificateService::new(
        ca,
        BootstrapTokens::global(token).unwrap(),
        Duration::from_secs(3600),
        Default::default(),
    );
    let registry = RegistryHandle::new(Duration::from_secs(1));
    let server = ApiServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), registry)
        .await
        .unwrap()
        .with_certificates(service);
    let addr = server.local_addr();
    let task = tokio::spawn(server.run(std::future::pending()));
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let call = |auth: Option<&str>, body: String| {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{addr}/v1/certificates"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let client = client.clone();
        async move {
            let res = timeout(Duration::from_secs(10), client.request(req))
                .await
                .unwrap()
                .unwrap();
            let status = res.status();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://mesh.test/svc/reviews".try_into().unwrap(),
    )];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let good = serde_json::json!({"service": "reviews", "csr": csr}).to_string();
    let bearer = format!("Bearer {token}");

    let (status, _) = call(None, good.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(Some("Bearer wrong"), good.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!body.contains("BEGIN CERTIFICATE"), "{body}");
    let (status, body) = call(Some(&bearer), "{not json".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let bad_csr = serde_json::json!({"service": "reviews", "csr": "garbage"}).to_string();
    let (status, body) = call(Some(&bearer), bad_csr).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not a PEM certificate request"), "{body}");
    let other = serde_json::json!({"service": "ratings", "csr": csr}).to_string();
    let (status, body) = call(Some(&bearer), other).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("spiffe://mesh.test/svc/ratings"), "{body}");
    let huge = "x".repeat(MAX_BODY_BYTES + 1);
    let (status, _) = call(Some(&bearer), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = call(Some(&bearer), good).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let issued: gitmesh_proxy_config::api::IssuedCertificate = serde_json::from_str(&body).unwrap();
    assert!(
        issued
            .certificate
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    task.abort();
}
