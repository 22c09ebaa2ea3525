//! How the proxy reaches the reconciler's API: plain HTTP, or HTTPS whose
//! server certificate must chain to the `--ca-bundle` the proxy was given
//! (the mesh CA; no native or web roots). The bootstrap token is only ever
//! sent over HTTPS. Once the sidecar has its mesh certificate, it presents
//! it to the API (the reconciler lets a proxy act only for its own service),
//! and checks the API against its identity's roots, which a CA rotation
//! changes.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::mtls::{IdentityError, MeshIdentity, parse_bundle};

/// The HTTP client the control loop and enrollment use.
pub type ApiHttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A TLS client config trusting only the mesh roots, and presenting
/// `identity`'s current certificate when there is one. Without an
/// identity the roots are `ca_bundle`'s (PEM); with one they are the
/// identity's at each handshake, which start as the same `--ca-bundle` and
/// follow a CA rotation (a reconciler restarted with a new CA is then
/// trusted as soon as the sidecar's bundle holds the new root).
pub fn api_tls(
    ca_bundle: &[u8],
    identity: Option<Arc<MeshIdentity>>,
) -> Result<Arc<ClientConfig>, IdentityError> {
    let roots = parse_bundle(ca_bundle)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| IdentityError::BadBundle(e.to_string()))?;
    let config = match identity {
        Some(identity) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CurrentRoots {
                identity: identity.clone(),
                provider,
            }))
            .with_client_cert_resolver(Arc::new(crate::mtls::Resolver(identity))),
        None => builder.with_root_certificates(roots).with_no_client_auth(),
    };
    // ALPN (http/1.1) is set by the connector.
    Ok(Arc::new(config))
}

/// Checks the reconciler's certificate (chain, dates and name, as webpki
/// does for any server) against the identity's mesh roots as they are now.
#[derive(Debug)]
struct CurrentRoots {
    identity: Arc<MeshIdentity>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CurrentRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Built per handshake: API connections are few and pooled.
        WebPkiServerVerifier::builder_with_provider(self.identity.roots(), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client for `http://` and `https://` URLs; `https://` is verified with
/// `tls` (without it, against no roots at all: every server is refused).
pub fn api_client(tls: Option<Arc<ClientConfig>>) -> ApiHttpClient {
    let tls = tls.unwrap_or_else(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
    });
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(Arc::unwrap_or_clone(tls))
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}
