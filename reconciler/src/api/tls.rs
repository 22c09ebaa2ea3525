//! TLS for the proxy API when the reconciler runs the mesh CA: the server
//! certificate is issued by that CA (SANs: the listen address and any
//! `--api-san`), made on first use and re-issued, with a fresh key, two
//! thirds into its lifetime, at the next handshake. Proxies verify it
//! against the `--ca-bundle` they were given. A client may present a
//! certificate of the mesh CA (sidecars do, once enrolled), or of the
//! previous CA during a rotation; which routes need one is
//! [`super::caller`]'s business.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::certificates::CertificateService;
use crate::ca::MeshCa;

/// Why the API cannot serve TLS.
#[derive(Debug, thiserror::Error)]
pub enum ApiTlsError {
    #[error("cannot issue the proxy API's certificate: {0}")]
    Issue(String),
    #[error("cannot build the proxy API's TLS config: {0}")]
    Config(#[from] rustls::Error),
    #[error("the previous CA's roots are not usable: {0}")]
    Roots(String),
}

/// The API's certificate, renewed on demand.
pub struct ApiCertificate {
    ca: Arc<CertificateService>,
    names: Vec<String>,
    lifetime: Duration,
    current: Mutex<(Arc<CertifiedKey>, SystemTime)>,
}

impl std::fmt::Debug for ApiCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCertificate")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

fn issue(
    ca: &MeshCa,
    names: &[String],
    lifetime: Duration,
    now: SystemTime,
) -> Result<(Arc<CertifiedKey>, SystemTime), ApiTlsError> {
    let issued = ca
        .issue_server(names, lifetime, now)
        .map_err(|e| ApiTlsError::Issue(e.to_string()))?;
    let bad = |e: &dyn std::fmt::Display| ApiTlsError::Issue(e.to_string());
    let cert = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(|e| bad(&e))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| bad(&e))?;
    let renew_at = now + lifetime * 2 / 3;
    Ok((Arc::new(CertifiedKey::new(vec![cert], signer)), renew_at))
}

impl ApiCertificate {
    /// Issues the first certificate for `names` (host names or IPs).
    pub fn new(
        ca: Arc<CertificateService>,
        names: Vec<String>,
        lifetime: Duration,
    ) -> Result<Arc<Self>, ApiTlsError> {
        let current = issue(ca.ca(), &names, lifetime, SystemTime::now())?;
        Ok(Arc::new(ApiCertificate {
            ca,
            names,
            lifetime,
            current: Mutex::new(current),
        }))
    }

    /// The certificate to present at `now`, re-issued first when it is two
    /// thirds through its lifetime (a failure keeps the old one, logged).
    pub fn at(&self, now: SystemTime) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if now >= current.1 {
            match issue(self.ca.ca(), &self.names, self.lifetime, now) {
                Ok(fresh) => {
                    tracing::info!(names = ?self.names, "renewed the proxy API's certificate");
                    *current = fresh;
                }
                Err(e) => tracing::error!(error = %e, "cannot renew the proxy API's certificate"),
            }
        }
        current.0.clone()
    }

    /// A server config (TLS 1.2 and 1.3, ring, HTTP/1.1) presenting this
    /// certificate, for [`super::ApiServer::with_tls`]. Client certificates
    /// are optional and, when presented, must chain to the mesh CA or to
    /// one of `previous_roots` (the old root during a CA rotation, so that
    /// sidecars keep their API access until they renew from the new CA).
    pub fn server_config(
        self: &Arc<Self>,
        previous_roots: &[CertificateDer<'static>],
    ) -> Result<Arc<ServerConfig>, ApiTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let bad = |e: &dyn std::fmt::Display| ApiTlsError::Issue(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        let root = CertificateDer::from_pem_slice(self.ca.ca().cert_pem().as_bytes())
            .map_err(|e| bad(&e))?;
        roots.add(root)?;
        for previous in previous_roots {
            roots.add(previous.clone())?;
        }
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad(&e))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(clients)
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The certificates of a PEM file of roots (`--previous-ca`); at least one.
pub fn parse_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ApiTlsError> {
    let roots = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiTlsError::Roots(e.to_string()))?;
    if roots.is_empty() {
        return Err(ApiTlsError::Roots("no PEM certificate in it".into()));
    }
    // Each must be usable as a trust anchor, as the server config will need.
    let mut store = rustls::RootCertStore::empty();
    for root in &roots {
        store
            .add(root.clone())
            .map_err(|e| ApiTlsError::Roots(e.to_string()))?;
    }
    Ok(roots)
}

impl ResolvesServerCert for ApiCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.at(SystemTime::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_after(key: &CertifiedKey) -> x509_parser::time::ASN1Time {
        let (_, cert) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).unwrap();
        cert.validity().not_after
    }

    #[test]
    fn the_certificate_names_the_api_and_is_renewed_two_thirds_in() {
        let ca = MeshCa::generate("example.local", SystemTime::now()).unwrap();
        let ca = CertificateService::new(
            ca,
            super::super::BootstrapTokens::global("a-global-token-0123456789").unwrap(),
            Duration::from_secs(60),
            Default::default(),
        );
        let names = vec!["127.0.0.1".to_string(), "reconciler.mesh".to_string()];
        let api = ApiCertificate::new(ca, names, Duration::from_secs(3000)).unwrap();
        let now = SystemTime::now();
        let first = api.at(now);
        let (_, cert) = x509_parser::parse_x509_certificate(first.cert[0].as_ref()).unwrap();
        let sans = format!(
            "{:?}",
            cert.subject_alternative_name().unwrap().unwrap().value
        );
        assert!(
            sans.contains("IPAddress([127, 0, 0, 1])")
                && sans.contains("DNSName(\"reconciler.mesh\")"),
            "{sans}"
        );
        // Before two thirds: the same certificate.
        let early = api.at(now + Duration::from_secs(1900));
        assert!(Arc::ptr_eq(&first, &early));
        // After: a new one, expiring later.
        let late = api.at(now + Duration::from_secs(2100));
        assert!(!Arc::ptr_eq(&first, &late));
        assert!(not_after(&late) > not_after(&first));
    }

    #[test]
    fn previous_roots_are_pem_certificates() {
        let ca = MeshCa::generate("example.local", SystemTime::now()).unwrap();
        let other = MeshCa::generate("example.local", SystemTime::now()).unwrap();
        let both = format!("{}{}", ca.cert_pem(), other.cert_pem());
        assert_eq!(parse_roots(both.as_bytes()).unwrap().len(), 2);
        for bad in [
            "",
            "not pem",
            "-----BEGIN CERTIFICATE-----\nzz\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(parse_roots(bad.as_bytes()), Err(ApiTlsError::Roots(_))),
                "{bad:?}"
            );
        }
    }
}
