//! The proxy's own identity: its SPIFFE certificate and key, the mesh CA
//! bundle it trusts, and the swaps that rotate the certificate (and the
//! bundle) while every open connection and every handshake in progress
//! keeps working (rustls asks the resolvers here for the current
//! certificate at each handshake).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use super::describe::{IdentityView, certificate_view};
use super::san::{not_after, spiffe_id_of};
use crate::peer::PeerIdentity;

/// Why an identity could not be loaded or rotated.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the CA bundle has no certificate")]
    EmptyBundle,
    #[error("the CA bundle is not valid: {0}")]
    BadBundle(String),
    #[error("the certificate file has no certificate")]
    NoCertificate,
    #[error("the private key is not a PEM PKCS#8, PKCS#1 or SEC1 key")]
    BadKey,
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("the certificate is not valid: {0}")]
    BadCertificate(String),
    #[error(
        "the certificate has no SPIFFE ID of the form spiffe://<trust-domain>/svc/<service> (exactly one URI SAN)"
    )]
    NoSpiffeId,
    #[error("the new certificate is for {new}, not {current}")]
    OtherIdentity { current: String, new: String },
    #[error("the certificate is not signed by the mesh CA: {0}")]
    Untrusted(String),
    #[error("could not make a key or CSR: {0}")]
    Generate(String),
}

/// What the resolvers hand out, swapped whole on rotation.
#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    not_before: i64,
    not_after: i64,
}

/// A checked certificate and, when they differ from the running ones, new
/// roots, ready to swap in.
#[derive(Debug)]
pub(crate) struct Rotation {
    /// `Some`: new roots, which the TLS configs that verify peers need.
    pub roots: Option<Arc<RootCertStore>>,
    /// The certificates of the new bundle, with `roots`.
    bundle: Vec<CertificateDer<'static>>,
    next: Current,
}

/// A sidecar's identity: one SPIFFE ID, the certificate currently proving
/// it, and the mesh roots peers must chain to.
#[derive(Debug)]
pub struct MeshIdentity {
    id: PeerIdentity,
    roots: ArcSwap<RootCertStore>,
    /// The certificates `roots` was made of, for [`MeshIdentity::view`].
    bundle: ArcSwap<Vec<CertificateDer<'static>>>,
    current: ArcSwap<Current>,
}

pub(crate) fn parse_bundle(pem: &[u8]) -> Result<RootCertStore, IdentityError> {
    parse_bundle_certs(pem).map(|(roots, _)| roots)
}

/// The roots of a PEM bundle, and the certificates they came from.
fn parse_bundle_certs(
    pem: &[u8],
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), IdentityError> {
    let mut roots = RootCertStore::empty();
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| IdentityError::BadBundle(e.to_string()))?;
        roots
            .add(cert.clone())
            .map_err(|e| IdentityError::BadBundle(e.to_string()))?;
        certs.push(cert);
    }
    if roots.is_empty() {
        return Err(IdentityError::EmptyBundle);
    }
    Ok((roots, certs))
}

impl MeshIdentity {
    /// Loads a certificate chain and its key (PEM) and the CA bundle that
    /// peers' certificates must chain to.
    pub fn from_pem(chain: &[u8], key: &[u8], ca_bundle: &[u8]) -> Result<Self, IdentityError> {
        let (roots, bundle) = parse_bundle_certs(ca_bundle)?;
        let current = load(chain, key, &roots)?;
        let id = spiffe_id_of(current.key.end_entity_cert().map_err(bad)?)
            .ok_or(IdentityError::NoSpiffeId)?;
        Ok(MeshIdentity {
            id,
            roots: ArcSwap::from_pointee(roots),
            bundle: ArcSwap::from_pointee(bundle),
            current: ArcSwap::from_pointee(current),
        })
    }

    /// Replaces the certificate and key. Handshakes from now on use the new
    /// one; established connections are not touched. The new certificate
    /// must carry the same SPIFFE ID and chain to the same roots.
    pub fn rotate(&self, chain: &[u8], key: &[u8]) -> Result<(), IdentityError> {
        let next = self.checked(chain, key, &self.roots.load())?;
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// Checks a renewed certificate and key against a new bundle (a CA
    /// rotation: the bundle holds the old root and the new one while
    /// certificates move over), changing nothing yet: [`Self::commit`]
    /// swaps them in once the caller has built what the new roots need.
    pub(crate) fn prepare(
        &self,
        chain: &[u8],
        key: &[u8],
        ca_bundle: &[u8],
    ) -> Result<Rotation, IdentityError> {
        let (roots, bundle) = parse_bundle_certs(ca_bundle)?;
        let next = self.checked(chain, key, &roots)?;
        let changed = roots.roots != self.roots.load().roots;
        Ok(Rotation {
            roots: changed.then(|| Arc::new(roots)),
            bundle,
            next,
        })
    }

    /// Swaps in a prepared certificate, and its roots if they changed.
    pub(crate) fn commit(&self, rotation: Rotation) {
        if let Some(roots) = rotation.roots {
            self.roots.store(roots);
            self.bundle.store(Arc::new(rotation.bundle));
        }
        self.current.store(Arc::new(rotation.next));
    }

    /// `chain` and `key` loaded and checked against `roots`, for this
    /// identity's SPIFFE ID.
    fn checked(
        &self,
        chain: &[u8],
        key: &[u8],
        roots: &RootCertStore,
    ) -> Result<Current, IdentityError> {
        let next = load(chain, key, roots)?;
        let id = spiffe_id_of(next.key.end_entity_cert().map_err(bad)?)
            .ok_or(IdentityError::NoSpiffeId)?;
        if id != self.id {
            return Err(IdentityError::OtherIdentity {
                current: self.id.to_string(),
                new: id.to_string(),
            });
        }
        Ok(next)
    }

    pub fn id(&self) -> &PeerIdentity {
        &self.id
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.load_full()
    }

    /// The SPIFFE ID, the certificate in use and the trusted roots, as the
    /// admin port's `/identity` shows them.
    pub fn view(&self) -> IdentityView {
        let current = self.current.load();
        IdentityView {
            spiffe_id: self.id.spiffe_id().to_string(),
            certificate: current.key.cert.first().and_then(certificate_view),
            roots: self
                .bundle
                .load()
                .iter()
                .filter_map(certificate_view)
                .collect(),
        }
    }

    /// The current certificate's validity window.
    pub fn validity(&self) -> (SystemTime, SystemTime) {
        let c = self.current.load();
        let at = |s: i64| UNIX_EPOCH + Duration::from_secs(s.max(0) as u64);
        (at(c.not_before), at(c.not_after))
    }

    /// When to ask for the next certificate: two thirds into the current
    /// one's lifetime.
    pub fn renew_at(&self) -> SystemTime {
        let (from, until) = self.validity();
        let life = until.duration_since(from).unwrap_or_default();
        from + life * 2 / 3
    }

    pub(super) fn certified_key(&self) -> Arc<CertifiedKey> {
        self.current.load().key.clone()
    }
}

fn bad(e: rustls::Error) -> IdentityError {
    IdentityError::BadCertificate(e.to_string())
}

fn load(chain: &[u8], key: &[u8], roots: &RootCertStore) -> Result<Current, IdentityError> {
    let chain = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(IdentityError::NoCertificate);
    };
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| IdentityError::BadKey)?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| IdentityError::BadKey)?;
    let parsed = ParsedCertificate::try_from(leaf).map_err(bad)?;
    let provider = rustls::crypto::ring::default_provider();
    // Chain and dates (not the name: the SPIFFE ID is checked by the caller).
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        &chain[1..],
        UnixTime::now(),
        provider.signature_verification_algorithms.all,
    )
    .map_err(|e| IdentityError::Untrusted(e.to_string()))?;
    let (not_before, not_after) = not_after(leaf).ok_or(IdentityError::NoCertificate)?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|_| IdentityError::KeyMismatch)?;
    Ok(Current {
        key: Arc::new(key),
        not_before,
        not_after,
    })
}

/// A fresh key pair and the CSR for an identity; the key stays here.
#[derive(Debug)]
pub struct CertificateRequest {
    pub key_pem: String,
    pub csr_pem: String,
}

impl CertificateRequest {
    /// An ECDSA P-256 key and a CSR whose only SAN is `id`'s SPIFFE URI.
    pub fn generate(id: &PeerIdentity) -> Result<Self, IdentityError> {
        let generate = |e: rcgen::Error| IdentityError::Generate(e.to_string());
        let key = rcgen::KeyPair::generate().map_err(generate)?;
        let mut params = rcgen::CertificateParams::default();
        let uri = rcgen::string::Ia5String::try_from(id.spiffe_id()).map_err(generate)?;
        params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, id.service());
        let csr = params.serialize_request(&key).map_err(generate)?;
        Ok(CertificateRequest {
            key_pem: key.serialize_pem(),
            csr_pem: csr.pem().map_err(generate)?,
        })
    }
}

/// Hands the current certificate to every TLS handshake, both as a server
/// (inbound) and as a client (upstream).
#[derive(Debug)]
pub(crate) struct Resolver(pub Arc<MeshIdentity>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
