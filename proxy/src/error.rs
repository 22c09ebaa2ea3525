//! The proxy's error type: what can stop it from starting or running.

use std::net::SocketAddr;
use std::path::PathBuf;

use gitmesh_proxy_config::InvalidConfig;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr} for the {listener} listener: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read config {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{invalid}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    InvalidConfig {
        path: Option<PathBuf>,
        invalid: InvalidConfig,
    },
    #[error(
        "no config to run: pass --config FILE, or --state-dir DIR holding a config a previous run accepted"
    )]
    NoConfig,
    #[error("--app `{0}` is not host:port")]
    BadApp(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot set up mTLS: {0}")]
    Tls(String),
    #[error("cannot read {path}: {source}")]
    ReadTlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mTLS identity: {0}")]
    Identity(#[from] crate::mtls::IdentityError),
}
