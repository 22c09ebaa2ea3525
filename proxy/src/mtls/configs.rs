//! The rustls configs built from a [`MeshIdentity`]: one server config for
//! the inbound listener (client certificate required and verified against
//! the mesh CA) and one client config for upstream sidecars (server checked
//! by [`SpiffeServerVerifier`]). TLS 1.3 only; sessions are resumed (tickets
//! on the server, an in-memory cache on the client) and upstream
//! connections are pooled, so steady traffic pays no handshake.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::identity::{MeshIdentity, Resolver};
use super::san::spiffe_id_of;
use super::stream::MeshStream;
use super::verify::SpiffeServerVerifier;
use crate::peer::PeerIdentity;

/// A sidecar's mTLS: its identity and the two configs that present it.
pub struct MeshTls {
    identity: Arc<MeshIdentity>,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTls")
            .field("identity", self.identity.id())
            .finish()
    }
}

impl MeshTls {
    pub fn new(identity: Arc<MeshIdentity>) -> Result<Arc<Self>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(identity.roots(), provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(client_verifier)
            .with_cert_resolver(Arc::new(Resolver(identity.clone())));
        server.ticketer = rustls::crypto::ring::Ticketer::new()?;
        let verifier =
            SpiffeServerVerifier::new(identity.roots(), identity.id().trust_domain().to_string());
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(Resolver(identity.clone())));
        Ok(Arc::new(MeshTls {
            identity,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        }))
    }

    pub fn identity(&self) -> &Arc<MeshIdentity> {
        &self.identity
    }

    /// How to reach `service`'s sidecars: `None` if the name cannot be a
    /// TLS server name (the config validation refuses such names anyway).
    pub fn upstream(self: &Arc<Self>, service: &str) -> Option<UpstreamTls> {
        let name = ServerName::try_from(service.to_string()).ok()?;
        Some(UpstreamTls {
            tls: self.clone(),
            name,
        })
    }

    /// Completes the server side of a handshake and reads the caller's
    /// identity from its verified certificate.
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<(MeshStream, Option<PeerIdentity>)> {
        let tls = self.acceptor.accept(stream).await?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(spiffe_id_of);
        Ok((MeshStream::Server(Box::new(tls)), peer))
    }
}

/// mTLS to one upstream service's sidecars.
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    tls: Arc<MeshTls>,
    name: ServerName<'static>,
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.tls, &other.tls) && self.name == other.name
    }
}

impl Eq for UpstreamTls {}

impl UpstreamTls {
    pub async fn connect(&self, stream: TcpStream) -> std::io::Result<MeshStream> {
        let tls = self
            .tls
            .connector
            .connect(self.name.clone(), stream)
            .await?;
        Ok(MeshStream::Client(Box::new(tls)))
    }
}

/// What the inbound listener needs to speak mTLS: the configs (absent
/// without an identity) and the mode in force for this service right now.
#[derive(Clone)]
pub struct InboundTls {
    pub tls: Option<Arc<MeshTls>>,
    pub mode: Arc<dyn Fn() -> gitmesh_proxy_config::MtlsMode + Send + Sync>,
}

impl std::fmt::Debug for InboundTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundTls")
            .field("tls", &self.tls)
            .field("mode", &(self.mode)())
            .finish()
    }
}
