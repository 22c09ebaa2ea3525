//! The rustls configs built from a [`MeshIdentity`]: one server config for
//! the inbound listener (client certificate required and verified against
//! the mesh CA) and one client config for upstream sidecars (server checked
//! by [`SpiffeServerVerifier`]). TLS 1.3 only; sessions are resumed (tickets
//! on the server, an in-memory cache on the client) and upstream
//! connections are pooled, so steady traffic pays no handshake.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::identity::{IdentityError, MeshIdentity, Resolver};
use super::san::spiffe_id_of;
use super::stream::MeshStream;
use super::verify::SpiffeServerVerifier;
use crate::peer::PeerIdentity;

/// A sidecar's mTLS: its identity and the two configs that present it.
pub struct MeshTls {
    identity: Arc<MeshIdentity>,
    /// Rebuilt when the mesh roots change; each handshake takes the
    /// current pair.
    configs: ArcSwap<Configs>,
}

/// The server and client configs, built from the identity's roots.
struct Configs {
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

impl Configs {
    /// The configs presenting `identity` and verifying peers against `roots`.
    fn build(
        identity: &Arc<MeshIdentity>,
        roots: Arc<RootCertStore>,
    ) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(client_verifier)
            .with_cert_resolver(Arc::new(Resolver(identity.clone())));
        server.ticketer = rustls::crypto::ring::Ticketer::new()?;
        let verifier = SpiffeServerVerifier::new(roots, identity.id().trust_domain().to_string());
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(Resolver(identity.clone())));
        Ok(Configs {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}

impl MeshTls {
    pub fn new(identity: Arc<MeshIdentity>) -> Result<Arc<Self>, rustls::Error> {
        let configs = Configs::build(&identity, identity.roots())?;
        Ok(Arc::new(MeshTls {
            identity,
            configs: ArcSwap::from_pointee(configs),
        }))
    }

    /// Swaps in a renewed certificate and key, and with `ca_bundle` the
    /// mesh roots too (a CA rotation). New handshakes use them;
    /// established connections keep going. Anything refused leaves the
    /// running identity as it was.
    pub fn rotate(
        &self,
        chain: &[u8],
        key: &[u8],
        ca_bundle: Option<&[u8]>,
    ) -> Result<(), RotateError> {
        let Some(bundle) = ca_bundle else {
            return Ok(self.identity.rotate(chain, key)?);
        };
        let rotation = self.identity.prepare(chain, key, bundle)?;
        // Built before anything is swapped, so a failure changes nothing.
        let configs = match &rotation.roots {
            Some(roots) => {
                Some(Configs::build(&self.identity, roots.clone()).map_err(RotateError::Tls)?)
            }
            None => None,
        };
        self.identity.commit(rotation);
        if let Some(configs) = configs {
            self.configs.store(Arc::new(configs));
        }
        Ok(())
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
        let acceptor = self.configs.load().acceptor.clone();
        let tls = acceptor.accept(stream).await?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(spiffe_id_of);
        Ok((MeshStream::Server(Box::new(tls)), peer))
    }
}

/// Why a rotation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot build the TLS configs for the new roots: {0}")]
    Tls(rustls::Error),
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
        let connector = self.tls.configs.load().connector.clone();
        let tls = connector.connect(self.name.clone(), stream).await?;
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
