//! The reconciler's own metrics, served on the API listener's `/metrics`:
//! commits seen, how long a pass takes, proxies connected and on which
//! version, time from a commit to its last ACK, reverts and rejections.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

pub struct Metrics {
    registry: Registry,
    pub commits_seen: Counter,
    pub applied: Counter,
    pub rejections: Counter,
    pub reverts: Counter,
    pub reconcile_seconds: Histogram,
    pub commit_to_last_ack_seconds: Histogram,
    pub proxies_connected: Gauge,
    pub proxies_per_version: Family<VersionLabels, Gauge>,
    /// Certificate requests by outcome (`issued`, `bad-token`, `bad-csr`).
    pub certificate_requests: Family<crate::api::OutcomeLabels, Counter>,
    /// Versions labelled last time, so that gone ones drop to zero.
    seen_versions: Mutex<Vec<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gitmesh_reconciler");
        let m = Metrics {
            commits_seen: Counter::default(),
            applied: Counter::default(),
            rejections: Counter::default(),
            reverts: Counter::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 18)),
            commit_to_last_ack_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            proxies_connected: Gauge::default(),
            proxies_per_version: Family::default(),
            certificate_requests: Family::default(),
            seen_versions: Mutex::new(Vec::new()),
            registry: Registry::default(),
        };
        registry.register(
            "commits_seen",
            "New commits of the watched branch considered",
            m.commits_seen.clone(),
        );
        registry.register(
            "certificate_requests",
            "Certificate requests to the mesh CA, by outcome (bad-token: refused bootstrap token)",
            m.certificate_requests.clone(),
        );
        registry.register(
            "applied",
            "Versions rolled out to every proxy",
            m.applied.clone(),
        );
        registry.register(
            "rejections",
            "Commits refused (lint errors)",
            m.rejections.clone(),
        );
        registry.register(
            "reverts",
            "Rollouts reverted (NACK, unhealthy, deadline)",
            m.reverts.clone(),
        );
        registry.register(
            "reconcile_seconds",
            "Duration of one pass of the loop",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "commit_to_last_ack_seconds",
            "From seeing a commit to the last ACK of its rollout",
            m.commit_to_last_ack_seconds.clone(),
        );
        registry.register(
            "proxies_connected",
            "Registered proxies",
            m.proxies_connected.clone(),
        );
        registry.register(
            "proxies_per_version",
            "Proxies running each policy version",
            m.proxies_per_version.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Sets the per-version gauges from what proxies run now.
    pub fn set_versions(&self, running: &[String]) {
        let mut seen = self.seen_versions.lock().expect("metrics lock");
        for old in seen.iter() {
            self.proxies_per_version
                .get_or_create(&VersionLabels {
                    version: old.clone(),
                })
                .set(0);
        }
        seen.clear();
        for v in running {
            let short: String = v.chars().take(12).collect();
            self.proxies_per_version
                .get_or_create(&VersionLabels {
                    version: short.clone(),
                })
                .inc();
            if !seen.contains(&short) {
                seen.push(short);
            }
        }
        self.proxies_connected.set(running.len() as i64);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_versions() {
        let m = Metrics::default();
        m.commits_seen.inc();
        m.set_versions(&[
            "aaaaaaaaaaaaaaaa".into(),
            "aaaaaaaaaaaaaaaa".into(),
            "bbbb".into(),
        ]);
        m.set_versions(&["bbbb".into()]);
        let text = m.render();
        assert!(
            text.contains("gitmesh_reconciler_commits_seen_total 1"),
            "{text}"
        );
        assert!(
            text.contains("gitmesh_reconciler_proxies_per_version{version=\"aaaaaaaaaaaa\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("gitmesh_reconciler_proxies_per_version{version=\"bbbb\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gitmesh_reconciler_proxies_connected 1"),
            "{text}"
        );
    }
}
