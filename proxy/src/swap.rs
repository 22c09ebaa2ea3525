//! Config hot swap. The running [`Snapshot`] sits in an `ArcSwap`: a request
//! takes an `Arc` of the snapshot it started with and finishes on it, while
//! new requests see the new one. A config that fails validation or
//! compilation is refused with every reason and the old one keeps running.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use gitmesh_proxy_config::{InvalidConfig, ProxyConfig};

use crate::health;
use crate::metrics::Metrics;
use crate::mtls::MeshTls;
use crate::snapshot::Snapshot;
use crate::state::StateDir;

/// Validates and compiles `config` as a running proxy does before a swap
/// (`ConfigStore::apply`), without running anything: what `gitmesh proxy
/// --check` reports. (Compiling needs no runtime: health checks are spawned
/// by the store, not the compiler.)
pub fn check_config(config: ProxyConfig) -> Result<(), InvalidConfig> {
    config.validate()?;
    Snapshot::compile(config, &Metrics::new(), None, None).map(drop)
}

/// Holds the running config and swaps it.
#[derive(Debug)]
pub struct ConfigStore {
    current: ArcSwap<Snapshot>,
    metrics: Arc<Metrics>,
    state: Option<StateDir>,
    /// `--service`: overrides the config's own service name.
    service_override: Option<String>,
    /// The sidecar's mTLS, used to reach upstream sidecars.
    tls: Option<Arc<MeshTls>>,
    /// Serialises `apply` and holds the health-check tasks of the running
    /// config. Never held across an `.await`.
    applying: Mutex<Vec<JoinHandle<()>>>,
}

impl ConfigStore {
    /// Compiles the first config. Must run inside a tokio runtime (health
    /// checks are spawned).
    pub fn new(
        mut config: ProxyConfig,
        metrics: Arc<Metrics>,
        state: Option<StateDir>,
        service_override: Option<String>,
        tls: Option<Arc<MeshTls>>,
    ) -> Result<Self, InvalidConfig> {
        if let Some(s) = &service_override {
            config.service = s.clone();
        }
        config.validate()?;
        let snapshot = Snapshot::compile(config, &metrics, None, tls.as_ref())?;
        metrics.config_applied(None, &snapshot.config.version);
        let tasks = spawn_health_checks(&snapshot);
        let store = ConfigStore {
            current: ArcSwap::from_pointee(snapshot),
            metrics,
            state,
            service_override,
            tls,
            applying: Mutex::new(tasks),
        };
        store.persist(&store.current());
        Ok(store)
    }

    /// The running snapshot; hold it for the life of one request.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Validates, compiles and swaps in `config` (the ACK), or refuses it
    /// with every problem (the NACK) and keeps the running one.
    pub fn apply(&self, mut config: ProxyConfig) -> Result<(), InvalidConfig> {
        let mut tasks = self
            .applying
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(s) = &self.service_override {
            config.service = s.clone();
        }
        let old = self.current();
        let compiled = config
            .validate()
            .and_then(|()| Snapshot::compile(config, &self.metrics, Some(&old), self.tls.as_ref()));
        let snapshot = match compiled {
            Ok(s) => Arc::new(s),
            Err(invalid) => {
                self.metrics.config_rejected();
                tracing::warn!(version = %old.config.version, %invalid, "refused a config; keeping the running one");
                return Err(invalid);
            }
        };
        self.current.store(snapshot.clone());
        self.metrics
            .config_applied(Some(&old.config.version), &snapshot.config.version);
        for t in tasks.drain(..) {
            t.abort();
        }
        *tasks = spawn_health_checks(&snapshot);
        drop(tasks);
        self.persist(&snapshot);
        tracing::info!(version = %snapshot.config.version, "applied a new config");
        Ok(())
    }

    fn persist(&self, snapshot: &Snapshot) {
        if let Some(state) = &self.state
            && let Err(e) = state.save(&snapshot.config)
        {
            // The config runs anyway; only a restart would miss it.
            self.metrics.error("state", "persist-failed");
            tracing::error!(path = %state.config_path().display(), error = %e, "cannot persist the accepted config");
        }
    }

    /// Stops background tasks (health checks).
    pub fn stop(&self) {
        let mut tasks = self
            .applying
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for t in tasks.drain(..) {
            t.abort();
        }
    }
}

fn spawn_health_checks(snapshot: &Snapshot) -> Vec<JoinHandle<()>> {
    snapshot
        .health_checks
        .iter()
        .map(|(pool, check)| health::spawn(pool.clone(), check.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use gitmesh_proxy_config::ProxyConfig;

    /// A config whose one route sets request header `name` to `value`.
    fn setting_header(name: &str, value: &str) -> ProxyConfig {
        let json = serde_json::json!({
            "version": "v", "service": "web",
            "upstreams": [{
                "name": "api",
                "endpoints": [{"address": "127.0.0.1:1"}],
                "routes": [{"name": "main", "rules": [{
                    "filters": [{"type": "RequestHeaderModifier", "set": [{"name": name, "value": value}]}],
                    "backends": [{"service": "api"}]
                }]}]
            }]
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn check_finds_what_only_compiling_shows() {
        assert!(super::check_config(setting_header("x-ok", "1")).is_ok());
        // Valid as data, refused when compiled: not an HTTP header value.
        let bad = setting_header("x-ok", "line\u{1}break");
        assert!(bad.validate().is_ok(), "the data checks pass");
        let invalid = super::check_config(bad).unwrap_err();
        assert!(invalid.to_string().contains("filters[0]"), "{invalid}");
        // And the data checks run too.
        let invalid = super::check_config(setting_header("bad name", "1")).unwrap_err();
        assert!(invalid.to_string().contains("bad name"), "{invalid}");
    }
}
