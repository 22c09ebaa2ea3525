//! Sidecar-to-sidecar mTLS: a caller sidecar (`frontend`) reaches a server
//! sidecar (`reviews`) over TLS 1.3 with SPIFFE certificates from a test CA.
//! Callers without a certificate, with one from another CA or an expired
//! one are refused; a server presenting another service's identity is
//! refused by the caller; strict refuses plaintext, permissive serves both;
//! garbage and truncated handshakes are refused without harm; rotation
//! under load loses no request.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use gitmesh_proxy::mtls::{CertificateRequest, MeshIdentity};
use gitmesh_proxy::peer::PeerIdentity;
use gitmesh_proxy::{Proxy, ProxySettings, RunningProxy};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DOMAIN: &str = "mesh.test";

struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `service` valid between the two offsets from now.
    fn leaf_between(&self, service: &str, from: i64, until: i64) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let uri = format!("spiffe://{DOMAIN}/svc/{service}");
        params.subject_alt_names = vec![SanType::URI(uri.as_str().try_into().unwrap())];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let at = |s: i64| {
            if s >= 0 {
                SystemTime::now() + Duration::from_secs(s as u64)
            } else {
                SystemTime::now() - Duration::from_secs((-s) as u64)
            }
        };
        params.not_before = at(from).into();
        params.not_after = at(until).into();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn leaf(&self, service: &str) -> (String, String) {
        self.leaf_between(service, -60, 3600)
    }

    /// Signs a CSR made by the proxy (only its public key is used).
    fn sign_csr(&self, req: &CertificateRequest, service: &str) -> String {
        let key = KeyPair::from_pem(&req.key_pem).unwrap();
        // The proxy's key never leaves it in real use; the test CA reuses
        // the pair it was handed only to build the certificate.
        let mut params = CertificateParams::default();
        let uri = format!("spiffe://{DOMAIN}/svc/{service}");
        params.subject_alt_names = vec![SanType::URI(uri.as_str().try_into().unwrap())];
        params.signed_by(&key, &self.issuer).unwrap().pem()
    }

    fn identity(&self, service: &str) -> Arc<MeshIdentity> {
        let (cert, key) = self.leaf(service);
        Arc::new(
            MeshIdentity::from_pem(cert.as_bytes(), key.as_bytes(), self.pem.as_bytes()).unwrap(),
        )
    }
}

async fn sidecar(
    service: &str,
    identity: Option<Arc<MeshIdentity>>,
    mode: &str,
    app: Option<std::net::SocketAddr>,
    upstream: Option<(&str, std::net::SocketAddr)>,
) -> RunningProxy {
    sidecar_with(service, identity, mode, app, upstream, "http").await
}

async fn sidecar_with(
    service: &str,
    identity: Option<Arc<MeshIdentity>>,
    mode: &str,
    app: Option<std::net::SocketAddr>,
    upstream: Option<(&str, std::net::SocketAddr)>,
    protocol: &str,
) -> RunningProxy {
    let upstreams = match upstream {
        Some((name, addr)) => serde_json::json!([{
            "name": name,
            "protocol": protocol,
            "endpoints": [{"address": addr.to_string()}]
        }]),
        None => serde_json::json!([]),
    };
    let settings = ProxySettings {
        app: app.map(|a| a.to_string()),
        identity,
        ..ProxySettings::loopback()
    };
    Proxy::start(
        settings,
        config(serde_json::json!({
            "version": "v1",
            "service": service,
            "mesh": {"trustDomain": DOMAIN, "mtls": mode},
            "upstreams": upstreams,
        })),
    )
    .await
    .unwrap()
}

/// An app that answers with the caller identity its sidecar vouched for.
async fn identity_app() -> Upstream {
    upstream(|req: http::Request<hyper::body::Incoming>| async move {
        let who = req
            .headers()
            .get("x-gitmesh-peer-identity")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_else(|| "anonymous".to_string());
        text(200, &who)
    })
    .await
}

struct Mesh {
    ca: TestCa,
    app: Upstream,
    reviews: RunningProxy,
    frontend: RunningProxy,
    frontend_id: Arc<MeshIdentity>,
    reviews_id: Arc<MeshIdentity>,
}

async fn mesh(mode: &str) -> Mesh {
    let ca = TestCa::new();
    let app = identity_app().await;
    let reviews_id = ca.identity("reviews");
    let frontend_id = ca.identity("frontend");
    let reviews = sidecar(
        "reviews",
        Some(reviews_id.clone()),
        mode,
        Some(app.addr),
        None,
    )
    .await;
    let frontend = sidecar(
        "frontend",
        Some(frontend_id.clone()),
        mode,
        None,
        Some(("reviews", reviews.inbound_addr())),
    )
    .await;
    Mesh {
        ca,
        app,
        reviews,
        frontend,
        frontend_id,
        reviews_id,
    }
}

fn error_count(proxy: &RunningProxy, reason: &str) -> u64 {
    proxy
        .metrics_text()
        .lines()
        .filter(|l| l.contains(&format!("reason=\"{reason}\"")) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn strict_mesh_path_carries_the_callers_identity_and_refuses_plaintext() {
    tokio::time::timeout(TEST_LIMIT, async {
        let m = mesh("strict").await;
        let c = client();
        let r = get(&c, m.frontend.outbound_addr(), "reviews", "/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "spiffe://mesh.test/svc/frontend");
        // A caller cannot claim an identity by header.
        let forged = send(
            &c,
            m.frontend.outbound_addr(),
            "reviews",
            http::Request::get("/")
                .header("x-gitmesh-peer-identity", "spiffe://mesh.test/svc/admin")
                .body(Default::default())
                .unwrap(),
        )
        .await;
        assert_eq!(forged.body, "spiffe://mesh.test/svc/frontend");
        // Plaintext straight to the strict inbound: refused with a reason.
        let direct = client();
        let r = get(&direct, m.reviews.inbound_addr(), "reviews", "/").await;
        assert_eq!(r.status, 403);
        assert_eq!(r.headers["x-gitmesh-error"], "mtls-required");
        assert_eq!(error_count(&m.reviews, "plaintext-refused"), 1);
        assert_eq!(m.app.hits(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn http2_between_sidecars_runs_over_mtls_too() {
    tokio::time::timeout(TEST_LIMIT, async {
        let ca = TestCa::new();
        let app = identity_app().await;
        let reviews = sidecar(
            "reviews",
            Some(ca.identity("reviews")),
            "strict",
            Some(app.addr),
            None,
        )
        .await;
        let frontend = sidecar_with(
            "frontend",
            Some(ca.identity("frontend")),
            "strict",
            None,
            Some(("reviews", reviews.inbound_addr())),
            "http2",
        )
        .await;
        // HTTP/1.1 in; HTTP/2 between the sidecars (hyper's pooled client
        // over the mTLS connector); the app is reached over HTTP/2 as well.
        for _ in 0..3 {
            let r = get(&client(), frontend.outbound_addr(), "reviews", "/").await;
            assert_eq!(
                (r.status.as_u16(), r.body.as_str()),
                (200, "spiffe://mesh.test/svc/frontend")
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn disabled_means_plaintext_both_ways() {
    tokio::time::timeout(TEST_LIMIT, async {
        let m = mesh("disabled").await;
        let r = get(&client(), m.frontend.outbound_addr(), "reviews", "/").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "anonymous"));
        let r = get(&client(), m.reviews.inbound_addr(), "reviews", "/").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "anonymous"));
        // A sidecar without an identity says so on `/identity`.
        let plain = sidecar("plain", None, "disabled", None, None).await;
        let r = admin_get(&plain, "/identity").await;
        assert_eq!(r.status, 404);
        assert!(r.body.contains("without mTLS"), "{}", r.body);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn permissive_serves_mtls_and_plaintext_on_one_port() {
    tokio::time::timeout(TEST_LIMIT, async {
        let m = mesh("permissive").await;
        let r = get(&client(), m.frontend.outbound_addr(), "reviews", "/").await;
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "spiffe://mesh.test/svc/frontend")
        );
        let r = get(&client(), m.reviews.inbound_addr(), "reviews", "/").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "anonymous"));
        let r = get(&h2_client(), m.reviews.inbound_addr(), "reviews", "/").await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "anonymous"));
    })
    .await
    .unwrap();
}

/// A raw TLS client that trusts `roots` and presents `client_cert`, if any.
async fn raw_tls_get(
    addr: std::net::SocketAddr,
    roots: &str,
    client_cert: Option<(String, String)>,
) -> std::io::Result<String> {
    let mut store = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(roots.as_bytes()) {
        store.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer));
    let config = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("reviews").unwrap(), tcp)
        .await?;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The raw client checks nothing about the server (these tests are about
/// what the server accepts).
#[derive(Debug)]
struct AcceptAnyServer;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn callers_without_a_valid_mesh_certificate_are_refused() {
    tokio::time::timeout(TEST_LIMIT, async {
        let m = mesh("strict").await;
        let addr = m.reviews.inbound_addr();
        // Sanity: a good certificate gets through this raw client.
        let ok = raw_tls_get(addr, &m.ca.pem, Some(m.ca.leaf("frontend")))
            .await
            .unwrap();
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("spiffe://mesh.test/svc/frontend"), "{ok}");

        let other_ca = TestCa::new();
        let cases = [
            ("no certificate", None),
            ("another CA", Some(other_ca.leaf("frontend"))),
            ("expired", Some(m.ca.leaf_between("frontend", -7200, -3600))),
            (
                "not yet valid",
                Some(m.ca.leaf_between("frontend", 3600, 7200)),
            ),
        ];
        for (what, cert) in cases {
            let refused = raw_tls_get(addr, &m.ca.pem, cert).await;
            assert!(
                !matches!(&refused, Ok(body) if body.contains("200")),
                "{what}: {refused:?}"
            );
        }
        assert_eq!(error_count(&m.reviews, "tls-handshake-failed"), 4);
        assert_eq!(m.app.hits(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_server_presenting_another_services_identity_is_refused_by_the_caller() {
    tokio::time::timeout(TEST_LIMIT, async {
        let ca = TestCa::new();
        let app = identity_app().await;
        // Listens where `reviews` should be, with a valid cert for `ratings`.
        let impostor = sidecar(
            "ratings",
            Some(ca.identity("ratings")),
            "strict",
            Some(app.addr),
            None,
        )
        .await;
        let frontend = sidecar(
            "frontend",
            Some(ca.identity("frontend")),
            "strict",
            None,
            Some(("reviews", impostor.inbound_addr())),
        )
        .await;
        let r = get(&client(), frontend.outbound_addr(), "reviews", "/").await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(app.hits(), 0);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn garbage_and_truncated_handshakes_are_refused_and_the_listener_keeps_serving() {
    tokio::time::timeout(TEST_LIMIT, async {
        let m = mesh("strict").await;
        let addr = m.reviews.inbound_addr();
        // A TLS record header followed by garbage.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x20]).await.unwrap();
        s.write_all(&[0xAB; 32]).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        // A record announcing more than it sends, then the caller leaves.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
            .await
            .unwrap();
        drop(s);
        // A client certificate chain far over any sane size.
        let (cert, key) = m.ca.leaf("frontend");
        let huge: String = std::iter::repeat_n(m.ca.pem.as_str(), 400).collect();
        let refused = raw_tls_get(addr, &m.ca.pem, Some((format!("{cert}{huge}"), key))).await;
        assert!(
            !matches!(&refused, Ok(b) if b.contains("200")),
            "{refused:?}"
        );
        // Still serving.
        let r = get(&client(), m.frontend.outbound_addr(), "reviews", "/").await;
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            error_count(&m.reviews, "tls-handshake-failed") >= 3,
            "{}",
            m.reviews.metrics_text()
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_continuous_load_loses_no_request() {
    tokio::time::timeout(TEST_LIMIT, async {
        let m = mesh("strict").await;
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let mut load = Vec::new();
        for _ in 0..4 {
            let (stop, ok) = (stop.clone(), ok.clone());
            let addr = m.frontend.outbound_addr();
            load.push(tokio::spawn(async move {
                // A fresh client each round: new connections (new handshakes)
                // as well as reused ones.
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let c = client();
                    for _ in 0..5 {
                        let r = get(&c, addr, "reviews", "/").await;
                        if r.status == 200 {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures.push(r.status);
                        }
                    }
                }
                failures
            }));
        }
        let before = m.reviews_id.validity();
        for round in 0..6 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            // The proxy's own key and CSR, signed by the CA.
            for (id, service) in [(&m.reviews_id, "reviews"), (&m.frontend_id, "frontend")] {
                let req = CertificateRequest::generate(id.id()).unwrap();
                let cert = m.ca.sign_csr(&req, service);
                id.rotate(cert.as_bytes(), req.key_pem.as_bytes())
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        stop.store(true, Ordering::Relaxed);
        for l in load {
            assert_eq!(l.await.unwrap(), Vec::<http::StatusCode>::new());
        }
        assert!(
            ok.load(Ordering::Relaxed) > 50,
            "{}",
            ok.load(Ordering::Relaxed)
        );
        assert_ne!(m.reviews_id.validity(), before);
        // A certificate for another service cannot be rotated in.
        let (other, key) = m.ca.leaf("ratings");
        assert!(
            m.reviews_id
                .rotate(other.as_bytes(), key.as_bytes())
                .is_err()
        );
        // After rotation new handshakes still succeed.
        let r = get(&client(), m.frontend.outbound_addr(), "reviews", "/").await;
        assert_eq!(r.status, 200);
    })
    .await
    .unwrap();
}

#[test]
fn identity_loading_refuses_bad_input_with_a_reason() {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf("reviews");
    let (_, other_key) = ca.leaf("reviews");
    let bundle = ca.pem.as_bytes();
    let err = |c: &str, k: &str, b: &[u8]| {
        MeshIdentity::from_pem(c.as_bytes(), k.as_bytes(), b)
            .unwrap_err()
            .to_string()
    };
    assert!(err(&cert, &key, b"").contains("no certificate"));
    assert!(err("", &key, bundle).contains("no certificate"));
    assert!(err(&cert, "garbage", bundle).contains("private key"));
    assert!(err(&cert, &other_key, bundle).contains("does not match"));
    assert!(err(&cert, &key, TestCa::new().pem.as_bytes()).contains("not signed by the mesh CA"));
    let (expired, ekey) = ca.leaf_between("reviews", -7200, -3600);
    assert!(err(&expired, &ekey, bundle).contains("not signed by the mesh CA"));
    let id = MeshIdentity::from_pem(cert.as_bytes(), key.as_bytes(), bundle).unwrap();
    assert_eq!(
        id.id(),
        &PeerIdentity::parse("spiffe://mesh.test/svc/reviews").unwrap()
    );
    let (from, until) = id.validity();
    let renew = id.renew_at();
    assert!(renew > from && renew < until);
}

#[tokio::test]
async fn steady_traffic_reuses_one_mtls_connection() {
    tokio::time::timeout(TEST_LIMIT, async {
        let m = mesh("strict").await;
        let c = client();
        for _ in 0..20 {
            let r = get(&c, m.frontend.outbound_addr(), "reviews", "/").await;
            assert_eq!(r.status, 200);
        }
        let open = m
            .reviews
            .metrics_text()
            .lines()
            .find(|l| l.starts_with("gitmesh_active_connections{listener=\"inbound\"}"))
            .map(|l| l.rsplit(' ').next().unwrap().to_string());
        // Twenty sequential requests, one pooled connection (one handshake).
        assert_eq!(open.as_deref(), Some("1"), "{}", m.reviews.metrics_text());
    })
    .await
    .unwrap();
}

/// The SHA-256 of the first certificate in `pem`, as `/identity` shows it.
fn fingerprint(pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprints of the roots a sidecar trusts, from its `/identity`.
async fn trusted_roots(proxy: &RunningProxy) -> Vec<String> {
    let r = admin_get(proxy, "/identity").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let view: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    view["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|root| root["sha256"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_new_mesh_ca_is_taken_in_without_a_restart() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (old, new) = (TestCa::new(), TestCa::new());
        let app = identity_app().await;
        let reviews = sidecar(
            "reviews",
            Some(old.identity("reviews")),
            "strict",
            Some(app.addr),
            None,
        )
        .await;
        let addr = reviews.inbound_addr();
        let answered =
            |r: std::io::Result<String>| matches!(&r, Ok(body) if body.starts_with("HTTP/1.1 200"));
        let rotate = |proxy: &RunningProxy, (cert, key): (String, String), bundle: &str| {
            proxy
                .rotate_identity(cert.as_bytes(), key.as_bytes(), Some(bundle.as_bytes()))
                .expect("the sidecar has an identity")
        };
        // `/identity` on the admin port lists the roots trusted now.
        assert_eq!(trusted_roots(&reviews).await, [fingerprint(&old.pem)]);
        // Only the old root is trusted: a caller of the new CA is refused.
        assert!(!answered(
            raw_tls_get(addr, &old.pem, Some(new.leaf("frontend"))).await
        ));

        // A bundle without the root of the sidecar's own certificate is
        // refused, and nothing changes.
        assert!(rotate(&reviews, old.leaf("reviews"), &new.pem).is_err());
        assert!(!answered(
            raw_tls_get(addr, &old.pem, Some(new.leaf("frontend"))).await
        ));
        assert!(answered(
            raw_tls_get(addr, &old.pem, Some(old.leaf("frontend"))).await
        ));

        // Both roots, the rotation's first step: callers of either CA.
        let both = format!("{}{}", old.pem, new.pem);
        rotate(&reviews, old.leaf("reviews"), &both).unwrap();
        assert_eq!(
            trusted_roots(&reviews).await,
            [fingerprint(&old.pem), fingerprint(&new.pem)]
        );
        assert!(answered(
            raw_tls_get(addr, &old.pem, Some(new.leaf("frontend"))).await
        ));
        assert!(answered(
            raw_tls_get(addr, &old.pem, Some(old.leaf("frontend"))).await
        ));

        // The sidecar moves to a certificate of the new CA and drops the
        // old root.
        let (cert, key) = new.leaf("reviews");
        rotate(&reviews, (cert.clone(), key), &new.pem).unwrap();
        assert_eq!(trusted_roots(&reviews).await, [fingerprint(&new.pem)]);
        let view = admin_get(&reviews, "/identity").await;
        let view: serde_json::Value = serde_json::from_str(&view.body).unwrap();
        assert_eq!(view["spiffeId"], "spiffe://mesh.test/svc/reviews");
        assert_eq!(view["certificate"]["sha256"], fingerprint(&cert));
        assert!(answered(
            raw_tls_get(addr, &new.pem, Some(new.leaf("frontend"))).await
        ));
        assert!(!answered(
            raw_tls_get(addr, &new.pem, Some(old.leaf("frontend"))).await
        ));

        // The client side verifies with the new roots too. reviews takes
        // callers of both CAs again; a caller that trusts only the old root
        // cannot check reviews' new certificate, and can once it is given
        // both.
        rotate(&reviews, new.leaf("reviews"), &both).unwrap();
        let frontend = sidecar(
            "frontend",
            Some(old.identity("frontend")),
            "strict",
            None,
            Some(("reviews", addr)),
        )
        .await;
        let c = client();
        assert_eq!(
            get(&c, frontend.outbound_addr(), "reviews", "/")
                .await
                .status,
            503
        );
        rotate(&frontend, old.leaf("frontend"), &both).unwrap();
        let r = get(&c, frontend.outbound_addr(), "reviews", "/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "spiffe://mesh.test/svc/frontend");
    })
    .await
    .unwrap();
}
