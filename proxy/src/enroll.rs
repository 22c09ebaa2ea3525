//! Getting and renewing the sidecar's certificate from the reconciler's
//! mesh CA: make a key and a CSR here (the key never leaves the proxy's
//! host; with a state directory it is kept there, owner-only), send the CSR
//! with the bootstrap token, load the answer; then renew two thirds into
//! each certificate's lifetime, swapping it in without touching open
//! connections. A SIGHUP hands the renewal a re-read `--ca-bundle` (a CA
//! rotation): it renews at once and swaps in the new roots with the new
//! certificate.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use gitmesh_proxy_config::api::{CertificateSigningRequest, IssuedCertificate};

use crate::control_tls::{api_client, api_tls};
use crate::mtls::{
    CertificateRequest, IdentityError, MeshIdentity, MeshTls, RotateError, parse_bundle,
};
use crate::peer::PeerIdentity;
use crate::state::StateDir;

/// Largest answer read from the CA.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// How long one request to the CA may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why no certificate came back.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("the mesh CA is unreachable: {0}")]
    Unreachable(String),
    #[error("the mesh CA refused ({status}): {body}")]
    Refused { status: StatusCode, body: String },
    #[error("the mesh CA's answer is not valid: {0}")]
    BadAnswer(String),
    #[error(
        "the control plane is `{0}`: the bootstrap token is only sent over https:// (the reconciler serves HTTPS when it runs the mesh CA)"
    )]
    NotHttps(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Rotate(#[from] RotateError),
}

/// Where and how to ask for certificates.
#[derive(Clone)]
pub struct Enrollment {
    pub control_plane: Uri,
    pub id: PeerIdentity,
    pub token: String,
    /// The mesh roots this proxy trusts (`--ca-bundle`), not what the
    /// answer says.
    pub ca_bundle: Vec<u8>,
    /// Where each certificate and its key are kept (`--state-dir`), so a
    /// restarted proxy has its identity before the CA is reachable.
    pub state: Option<StateDir>,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment")
            .field("control_plane", &self.control_plane)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Enrollment {
    /// One round trip: a fresh key and CSR, a signed certificate back.
    async fn request(&self) -> Result<(String, CertificateRequest), EnrollError> {
        let csr = CertificateRequest::generate(&self.id)?;
        let body = serde_json::to_vec(&CertificateSigningRequest {
            service: self.id.service().to_string(),
            csr: csr.csr_pem.clone(),
        })
        .map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
        if self.control_plane.scheme_str() != Some("https") {
            return Err(EnrollError::NotHttps(self.control_plane.to_string()));
        }
        let base = self.control_plane.to_string();
        let uri: Uri = format!("{}/v1/certificates", base.trim_end_matches('/'))
            .parse()
            .map_err(|e: http::uri::InvalidUri| EnrollError::Unreachable(e.to_string()))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| EnrollError::Unreachable(e.to_string()))?;
        let client = api_client(Some(api_tls(&self.ca_bundle, None)?));
        let exchange = async {
            let res = client
                .request(req)
                .await
                .map_err(|e| EnrollError::Unreachable(crate::control::error_chain(&e)))?;
            let status = res.status();
            let body = Limited::new(res.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| EnrollError::Unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, EnrollError>((status, body))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| EnrollError::Unreachable("timed out".into()))??;
        if !status.is_success() {
            return Err(EnrollError::Refused {
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        let issued: IssuedCertificate =
            serde_json::from_slice(&body).map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
        Ok((issued.certificate, csr))
    }

    /// The first certificate.
    pub async fn enroll(&self) -> Result<Arc<MeshIdentity>, EnrollError> {
        let (cert, csr) = self.request().await?;
        let identity =
            MeshIdentity::from_pem(cert.as_bytes(), csr.key_pem.as_bytes(), &self.ca_bundle)?;
        if identity.id() != &self.id {
            return Err(EnrollError::BadAnswer(format!(
                "the certificate is for {}, not {}",
                identity.id(),
                self.id
            )));
        }
        self.keep(&cert, &csr);
        Ok(Arc::new(identity))
    }

    /// The certificate a previous run kept in the state directory, if it is
    /// this proxy's, chains to `--ca-bundle` and is still valid (renewal
    /// then runs as usual, at once when it is due).
    pub fn saved(&self) -> Option<Arc<MeshIdentity>> {
        let pem = match self.state.as_ref()?.load_identity() {
            Ok(pem) => pem?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the saved mesh certificate");
                return None;
            }
        };
        let identity = match MeshIdentity::from_pem(&pem, &pem, &self.ca_bundle) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "the saved mesh certificate is not usable; enrolling");
                return None;
            }
        };
        let (_, until) = identity.validity();
        if identity.id() != &self.id || until <= SystemTime::now() {
            tracing::info!(id = %identity.id(), "the saved mesh certificate is another service's or expired; enrolling");
            return None;
        }
        Some(Arc::new(identity))
    }

    /// Saves a new certificate and its key; a failure is logged (the proxy
    /// goes on with the certificate in memory).
    fn keep(&self, cert: &str, csr: &CertificateRequest) {
        if let Some(state) = &self.state
            && let Err(e) = state.save_identity(cert.as_bytes(), csr.key_pem.as_bytes())
        {
            tracing::warn!(error = %e, "cannot save the mesh certificate in the state directory");
        }
    }

    /// Renews the certificate two thirds into each one's lifetime until
    /// aborted; a failed renewal is retried every few seconds while the
    /// current certificate is still valid. Each renewal goes through
    /// `tls`, so a bundle given to [`Renewal::reload`] changes the roots
    /// peers are checked against together with the certificate.
    pub fn spawn_renewal(mut self, tls: Arc<MeshTls>) -> Renewal {
        let (bundles, mut reloaded) = watch::channel(self.ca_bundle.clone());
        let task = tokio::spawn(async move {
            let identity = tls.identity().clone();
            let mut wait = until_renewal(&identity);
            loop {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    changed = reloaded.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        self.ca_bundle = reloaded.borrow_and_update().clone();
                    }
                }
                wait = match self.renew(&tls).await {
                    Ok(()) => {
                        let (_, until) = identity.validity();
                        let roots = identity.roots().len();
                        tracing::info!(id = %identity.id(), valid_until = ?until, roots, "renewed the mesh certificate");
                        until_renewal(&identity)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "certificate renewal failed; retrying");
                        retry_delay(&identity)
                    }
                };
            }
        });
        Renewal { task, bundles }
    }

    /// One renewal: a certificate from the CA, checked against
    /// `self.ca_bundle` and swapped in with it.
    async fn renew(&self, tls: &MeshTls) -> Result<(), EnrollError> {
        let (cert, csr) = self.request().await?;
        tls.rotate(
            cert.as_bytes(),
            csr.key_pem.as_bytes(),
            Some(&self.ca_bundle),
        )?;
        self.keep(&cert, &csr);
        Ok(())
    }
}

/// The renewal task of an enrolled sidecar.
#[derive(Debug)]
pub struct Renewal {
    task: JoinHandle<()>,
    bundles: watch::Sender<Vec<u8>>,
}

impl Renewal {
    /// A re-read `--ca-bundle` (SIGHUP, during a CA rotation): renews at
    /// once, and from then on checks the CA's answers and peers against
    /// `bundle`. The new roots go in with the new certificate, once the CA
    /// answers; a bundle that is not one is refused here and changes
    /// nothing.
    pub fn reload(&self, bundle: Vec<u8>) -> Result<(), IdentityError> {
        parse_bundle(&bundle)?;
        self.bundles.send_replace(bundle);
        Ok(())
    }

    pub fn abort(&self) {
        self.task.abort();
    }
}

/// How long until `identity`'s certificate is due for renewal.
fn until_renewal(identity: &MeshIdentity) -> Duration {
    identity
        .renew_at()
        .duration_since(SystemTime::now())
        .unwrap_or_default()
}

/// A tenth of what is left of the certificate, between 1 s and 30 s.
fn retry_delay(identity: &MeshIdentity) -> Duration {
    let (_, until) = identity.validity();
    let left = until.duration_since(SystemTime::now()).unwrap_or_default();
    (left / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}
