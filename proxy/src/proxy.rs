//! Starting and stopping a proxy: binds the three listeners, wires the
//! handlers to the config store, and exposes the hot-swap entry point.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::uri::Authority;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use gitmesh_proxy_config::{InvalidConfig, ProxyConfig};

use crate::admin::Admin;
use crate::clock::Clock;
use crate::error::ProxyError;
use crate::inbound::Inbound;
use crate::listener::{self, ListenerLimits};
use crate::metrics::Metrics;
use crate::mirror::Mirrors;
use crate::mtls::{InboundTls, MeshIdentity, MeshTls, RotateError};
use crate::outbound::Outbound;
use crate::state::StateDir;
use crate::swap::ConfigStore;

/// How a proxy listens and where it keeps state.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    /// The local app (`host:port`) inbound requests go to.
    pub app: Option<String>,
    /// Where the last accepted config is persisted.
    pub state_dir: Option<PathBuf>,
    /// Overrides the config's `service`.
    pub service: Option<String>,
    pub limits: ListenerLimits,
    /// Largest request body buffered for retries and mirrors.
    pub replay_buffer_bytes: usize,
    /// Most mirrored copies in flight at once.
    pub max_mirrors: usize,
    /// The sidecar's mTLS identity; without one, it speaks plaintext only
    /// (and a `strict` inbound refuses everything).
    pub identity: Option<Arc<MeshIdentity>>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            outbound: SocketAddr::from(([127, 0, 0, 1], 15001)),
            inbound: SocketAddr::from(([127, 0, 0, 1], 15006)),
            admin: SocketAddr::from(([127, 0, 0, 1], 15000)),
            app: None,
            state_dir: None,
            service: None,
            limits: ListenerLimits::default(),
            replay_buffer_bytes: 64 * 1024,
            max_mirrors: 256,
            identity: None,
        }
    }
}

impl ProxySettings {
    /// Every listener on `127.0.0.1:0` (tests).
    pub fn loopback() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        ProxySettings {
            outbound: any,
            inbound: any,
            admin: any,
            ..Default::default()
        }
    }
}

/// Entry point of the library API.
#[derive(Debug)]
pub struct Proxy;

/// A started proxy.
#[derive(Debug)]
pub struct RunningProxy {
    outbound: SocketAddr,
    inbound: SocketAddr,
    admin: SocketAddr,
    store: Arc<ConfigStore>,
    metrics: Arc<Metrics>,
    /// The sidecar's mTLS, if it has an identity.
    tls: Option<Arc<MeshTls>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind {
            listener,
            addr,
            source,
        })
}

impl Proxy {
    /// Binds the listeners and starts serving `config`. Call inside a tokio
    /// runtime.
    pub async fn start(
        settings: ProxySettings,
        config: ProxyConfig,
    ) -> Result<RunningProxy, ProxyError> {
        let app = settings
            .app
            .as_deref()
            .map(|a| {
                a.parse::<Authority>()
                    .map_err(|_| ProxyError::BadApp(a.to_string()))
            })
            .transpose()?;
        let tls = settings
            .identity
            .clone()
            .map(MeshTls::new)
            .transpose()
            .map_err(|e| ProxyError::Tls(e.to_string()))?;
        let metrics = Arc::new(Metrics::new());
        let clock = Clock::start();
        let store = Arc::new(
            ConfigStore::new(
                config,
                metrics.clone(),
                settings.state_dir.clone().map(StateDir::new),
                settings.service.clone(),
                tls.clone(),
            )
            .map_err(|invalid| ProxyError::InvalidConfig {
                path: None,
                invalid,
            })?,
        );
        let outbound_listener = bind("outbound", settings.outbound).await?;
        let inbound_listener = bind("inbound", settings.inbound).await?;
        let admin_listener = bind("admin", settings.admin).await?;
        let local = |l: &TcpListener, listener, addr| {
            l.local_addr().map_err(|source| ProxyError::Bind {
                listener,
                addr,
                source,
            })
        };
        let outbound_addr = local(&outbound_listener, "outbound", settings.outbound)?;
        let inbound_addr = local(&inbound_listener, "inbound", settings.inbound)?;
        let admin_addr = local(&admin_listener, "admin", settings.admin)?;

        let (shutdown, signal) = watch::channel(false);
        let outbound = Arc::new(Outbound {
            store: store.clone(),
            metrics: metrics.clone(),
            mirrors: Mirrors::new(settings.max_mirrors, metrics.clone(), clock),
            clock,
            replay_limit: settings.replay_buffer_bytes,
        });
        let inbound = Arc::new(Inbound::new(store.clone(), metrics.clone(), app));
        let admin = Arc::new(Admin {
            store: store.clone(),
            metrics: metrics.clone(),
            identity: settings.identity.clone(),
        });
        let limits = settings.limits.clone();
        let mode_store = store.clone();
        let inbound_tls = InboundTls {
            tls: tls.clone(),
            mode: Arc::new(move || {
                let config = &mode_store.current().config;
                config.inbound.mtls.unwrap_or(config.mesh.mtls)
            }),
        };
        let tasks = vec![
            listener::spawn(
                "outbound",
                outbound_listener,
                limits.clone(),
                metrics.clone(),
                signal.clone(),
                None,
                move |req, peer| outbound.clone().handle(req, peer),
            ),
            listener::spawn(
                "inbound",
                inbound_listener,
                limits.clone(),
                metrics.clone(),
                signal.clone(),
                Some(inbound_tls),
                move |req, _| inbound.clone().handle(req),
            ),
            listener::spawn(
                "admin",
                admin_listener,
                limits,
                metrics.clone(),
                signal,
                None,
                move |req, _| {
                    let response = admin.handle(&req);
                    async move { response }
                },
            ),
        ];
        tracing::info!(
            outbound = %outbound_addr,
            inbound = %inbound_addr,
            admin = %admin_addr,
            version = %store.current().config.version,
            "gitmesh proxy listening"
        );
        Ok(RunningProxy {
            outbound: outbound_addr,
            inbound: inbound_addr,
            admin: admin_addr,
            store,
            metrics,
            tls,
            shutdown,
            tasks,
        })
    }
}

impl RunningProxy {
    pub fn outbound_addr(&self) -> SocketAddr {
        self.outbound
    }

    pub fn inbound_addr(&self) -> SocketAddr {
        self.inbound
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Hot-swaps the config: `Ok` is the ACK, `Err` the NACK (with every
    /// problem); on `Err` the running config stays.
    pub fn apply(&self, config: ProxyConfig) -> Result<(), InvalidConfig> {
        self.store.apply(config)
    }

    /// The running config's version.
    pub fn version(&self) -> String {
        self.store.current().config.version.clone()
    }

    /// Swaps in a renewed certificate and key, and with `ca_bundle` new
    /// mesh roots (see [`MeshTls::rotate`]). `None`: this proxy has no
    /// identity to rotate.
    pub fn rotate_identity(
        &self,
        chain: &[u8],
        key: &[u8],
        ca_bundle: Option<&[u8]>,
    ) -> Option<Result<(), RotateError>> {
        let tls = self.tls.as_ref()?;
        Some(tls.rotate(chain, key, ca_bundle))
    }

    /// The sidecar's mTLS (its identity and the configs presenting it), if
    /// it has an identity: what a renewal or a SIGHUP rotates.
    pub fn mesh_tls(&self) -> Option<Arc<MeshTls>> {
        self.tls.clone()
    }

    /// The Prometheus text of this proxy's metrics.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain
    /// timeout), and stops background tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.store.stop();
    }
}
