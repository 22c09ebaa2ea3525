//! How the proxy reaches the reconciler's API: plain HTTP, or HTTPS whose
//! server certificate must chain to the `--ca-bundle` the proxy was given
//! (the mesh CA; no native or web roots). The bootstrap token is only ever
//! sent over HTTPS. Once the sidecar has its mesh certificate, it presents
//! it to the API (the reconciler lets a proxy act only for its own service).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;

use crate::mtls::{IdentityError, MeshIdentity, parse_bundle};

/// The HTTP client the control loop and enrollment use.
pub type ApiHttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A TLS client config trusting only the roots in `ca_bundle` (PEM), and
/// presenting `identity`'s current certificate when there is one.
pub fn api_tls(
    ca_bundle: &[u8],
    identity: Option<Arc<MeshIdentity>>,
) -> Result<Arc<ClientConfig>, IdentityError> {
    let roots = parse_bundle(ca_bundle)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| IdentityError::BadBundle(e.to_string()))?
        .with_root_certificates(roots);
    let config = match identity {
        Some(identity) => {
            builder.with_client_cert_resolver(Arc::new(crate::mtls::Resolver(identity)))
        }
        None => builder.with_no_client_auth(),
    };
    // ALPN (http/1.1) is set by the connector.
    Ok(Arc::new(config))
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
