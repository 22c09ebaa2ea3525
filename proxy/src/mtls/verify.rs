//! The caller's check of a peer sidecar: its chain must lead to the mesh
//! CA (dates included) and its SPIFFE ID must be the service the caller
//! meant to reach. The service travels as the TLS server name: the
//! connector asks for `reviews` and accepts only
//! `spiffe://<own trust domain>/svc/reviews`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::san::spiffe_id_of;

#[derive(Debug)]
pub struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    trust_domain: String,
    algorithms: WebPkiSupportedAlgorithms,
}

/// The reason a peer's certificate was refused, as rustls carries it.
#[derive(Debug, thiserror::Error)]
pub enum PeerRefused {
    #[error("the peer's certificate has no gitmesh SPIFFE ID")]
    NoSpiffeId,
    #[error("the peer is {found}, not {expected}")]
    WrongIdentity { expected: String, found: String },
}

impl SpiffeServerVerifier {
    pub fn new(roots: Arc<RootCertStore>, trust_domain: String) -> Self {
        SpiffeServerVerifier {
            roots,
            trust_domain,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

fn refuse(reason: PeerRefused) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        reason,
    ))))
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let expected = match server_name {
            ServerName::DnsName(d) => {
                format!("spiffe://{}/svc/{}", self.trust_domain, d.as_ref())
            }
            _ => return Err(Error::General("peer service name is not a name".into())),
        };
        let found = spiffe_id_of(end_entity).ok_or_else(|| refuse(PeerRefused::NoSpiffeId))?;
        if found.spiffe_id() != expected {
            return Err(refuse(PeerRefused::WrongIdentity {
                expected,
                found: found.to_string(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // The configs allow TLS 1.3 only.
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
