//! The proxy ↔ reconciler API: the messages, shared by both sides so they
//! cannot drift. Plain HTTP/1.1 with JSON bodies (TLS comes with the
//! security work):
//!
//! | method | path                              | body → answer                          |
//! |--------|-----------------------------------|----------------------------------------|
//! | POST   | `/v1/proxies`                     | [`Registration`] → [`Registered`]      |
//! | GET    | `/v1/proxies/{id}/config?known=D&wait=30s` | → 200 [`ConfigUpdate`], or 304 when the assigned config is still `D` after `wait` (long poll) |
//! | POST   | `/v1/proxies/{id}/ack`            | [`Ack`] → 204                          |
//! | POST   | `/v1/proxies/{id}/heartbeat`      | [`Heartbeat`] → 204                    |
//! | POST   | `/v1/certificates` (bearer bootstrap token) | [`CertificateSigningRequest`] → [`IssuedCertificate`]; 401 wrong token, 400 refused CSR |
//!
//! An unknown `id` (the reconciler restarted and forgot it) answers 404:
//! the proxy registers again with the same `id`, keeping its config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ProxyConfig;

/// A proxy announcing itself: which service and instance it fronts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Registration {
    /// Set when re-registering (after a reconciler restart), so the proxy
    /// keeps its identity and its place in a rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub service: String,
    /// `host:port` where peers reach this instance (its inbound listener).
    pub address: String,
    /// `host:port` of the proxy's admin listener, where the reconciler reads
    /// its `/metrics` (the callers' view that canary analysis uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// The instance's labels; subsets select instances by these.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The config the proxy runs now (from its state dir), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<Running>,
}

/// What a proxy runs: the version and digest of its current config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Running {
    pub version: String,
    pub digest: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Registered {
    pub id: String,
    /// How often to send a [`Heartbeat`]; missing three marks the proxy gone.
    pub heartbeat_interval_ms: u64,
}

/// A config assigned to a proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigUpdate {
    /// [`ProxyConfig::digest`] of `config`, to echo in `known=` and [`Ack`].
    pub digest: String,
    pub config: ProxyConfig,
}

/// The proxy's answer to a [`ConfigUpdate`]: applied (ACK) or refused
/// (NACK, with the validation problems as the reason).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ack {
    pub version: String,
    pub digest: String,
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Liveness and health, sent every `heartbeatIntervalMs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Heartbeat {
    /// The local app answers and the proxy serves (its `/ready`).
    pub healthy: bool,
    pub running: Running,
}

impl Running {
    /// The version and digest of `config`.
    pub fn of(config: &ProxyConfig) -> Running {
        Running {
            version: config.version.clone(),
            digest: config.digest(),
        }
    }
}

impl ConfigUpdate {
    /// Wraps `config` with its digest, so the two cannot disagree.
    pub fn new(config: ProxyConfig) -> ConfigUpdate {
        ConfigUpdate {
            digest: config.digest(),
            config,
        }
    }

    /// Whether `digest` is really the digest of `config` (a receiver checks
    /// this before trusting `digest` in `known=` and in its [`Ack`]).
    pub fn is_consistent(&self) -> bool {
        self.digest == self.config.digest()
    }
}

/// `POST /v1/certificates` (with `Authorization: Bearer <bootstrap token>`):
/// a sidecar asks the mesh CA for its identity. The key stays with the
/// sidecar; only the CSR travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateSigningRequest {
    pub service: String,
    /// PEM `CERTIFICATE REQUEST` whose only SAN is the service's SPIFFE ID.
    pub csr: String,
}

/// The mesh CA's answer to a [`CertificateSigningRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuedCertificate {
    /// PEM certificate (the leaf; the root is in `caBundle`).
    pub certificate: String,
    /// PEM root(s) of the mesh CA.
    pub ca_bundle: String,
}
