//! The proxy API: where sidecars register, long-poll for their assigned
//! config, ACK or NACK it, and heartbeat their health (the routes are in
//! [`gitmesh_proxy_config::api`]).
//!
//! [`registry`] is the pure bookkeeping; [`server`] serves it over HTTP and
//! gives the reconciler loop a [`RegistryHandle`] to assign configs, read a
//! snapshot and subscribe to changes (level-triggered: re-read on change).

pub mod caller;
pub mod certificates;
pub mod registry;
pub mod server;
pub mod tls;

pub use self::certificates::{BootstrapTokens, CertificateService, OutcomeLabels};
pub use self::registry::{LastAck, MISSED_HEARTBEATS, ProxyView, Registry, RegistryError};
pub use self::server::{ApiError, ApiServer, RegistryHandle};
pub use self::tls::{ApiCertificate, ApiTlsError, parse_roots};
