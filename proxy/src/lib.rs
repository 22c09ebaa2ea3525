//! gitmesh's sidecar proxy: an L7 data plane that runs a
//! [`gitmesh_proxy_config::ProxyConfig`]: outbound routing with Gateway API
//! semantics, load balancing, retries under a budget, timeouts, circuit
//! breaking, outlier detection, health checks, fault injection, mirroring,
//! hot config swaps and Prometheus metrics. HTTP/1.1 on the request path
//! goes through gitmesh's own codec (the `h1` module); hyper serves HTTP/2 and the
//! HTTP/1 cases the codec leaves to it.
//!
//! Binary use: [`run`] with [`ProxyArgs`]. Library use (tests, embedding):
//! [`Proxy::start`] → [`RunningProxy`], and [`control::spawn`] to put it
//! under a reconciler.

mod admin;
mod ambiguous;
mod authz;
mod balance;
mod body;
mod breaker;
mod budget;
mod cli;
mod clock;
mod connect;
pub mod control;
mod control_tls;
mod endpoint;
mod enroll;
mod error;
mod fault;
mod forward;
pub mod h1;
mod health;
mod inbound;
mod listener;
mod metrics;
mod mirror;
pub mod mtls;
mod outbound;
mod outlier;
pub mod peer;
mod pool;
mod proxy;
mod respond;
mod retry;
mod routing;
mod snapshot;
mod split;
mod state;
mod swap;

pub use self::cli::{CheckedConfig, LogFormat, ProxyArgs, check, run};
pub use self::enroll::{EnrollError, Enrollment};
pub use self::error::ProxyError;
pub use self::listener::ListenerLimits;
pub use self::proxy::{Proxy, ProxySettings, RunningProxy};
pub use self::state::StateDir;
pub use self::swap::check_config;
