//! Prometheus metrics. Families are registered once at start; per-request
//! handles ([`TrafficMetrics`]) are resolved when a config is compiled, so
//! the request path only bumps atomics and never hashes label sets.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrafficLabels {
    direction: &'static str,
    service: String,
    subset: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    direction: &'static str,
    service: String,
    subset: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimeoutLabels {
    direction: &'static str,
    service: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    service: String,
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    direction: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JwtLabels {
    verification: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn latency_histogram() -> Histogram {
    // 50µs … ~52s, doubling: fine enough for sub-millisecond hops.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 21))
}

/// Every metric family of one proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<TrafficLabels, Histogram, fn() -> Histogram>,
    retries: Family<TrafficLabels, Counter>,
    budget_exhausted: Family<ServiceLabels, Counter>,
    timeouts: Family<TimeoutLabels, Counter>,
    ejections: Family<ServiceLabels, Counter>,
    breaker_rejections: Family<LimitLabels, Counter>,
    errors: Family<ReasonLabels, Counter>,
    connections: Family<ListenerLabels, Gauge>,
    config_info: Family<VersionLabels, Gauge>,
    config_rejected: Counter,
    /// When the mesh certificate in use expires (Unix seconds; 0 without
    /// one), set at each scrape.
    certificate_expiry: Gauge,
    /// Accepted bearer tokens: `[signature checked, from the cache]`.
    jwt_accepted: [Counter; 2],
}

/// Pre-resolved handles for one (direction, service, subset).
#[derive(Clone, Debug)]
pub struct TrafficMetrics {
    requests: [Counter; 5],
    latency: Histogram,
    pub retries: Counter,
}

impl TrafficMetrics {
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].inc();
        self.latency.observe(elapsed.as_secs_f64());
    }
}

/// Pre-resolved handles for one upstream service.
#[derive(Clone, Debug)]
pub struct ServiceMetrics {
    pub budget_exhausted: Counter,
    pub ejections: Counter,
    pub request_timeouts: Counter,
    pub per_try_timeouts: Counter,
    family: Family<LimitLabels, Counter>,
    service: String,
}

impl ServiceMetrics {
    pub fn breaker_rejected(&self, limit: &'static str) {
        self.family
            .get_or_create(&LimitLabels {
                service: self.service.clone(),
                limit,
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gitmesh");
        let requests = Family::default();
        registry.register("requests", "Requests by status class", requests.clone());
        let latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "request_duration_seconds",
            "Time to response headers, including retries",
            latency.clone(),
        );
        let retries = Family::default();
        registry.register("retries", "Retries sent", retries.clone());
        let budget_exhausted = Family::default();
        registry.register(
            "retry_budget_exhausted",
            "Retries refused because the retry budget was spent",
            budget_exhausted.clone(),
        );
        let timeouts = Family::default();
        registry.register(
            "timeouts",
            "Requests or tries that timed out",
            timeouts.clone(),
        );
        let ejections = Family::default();
        registry.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection",
            ejections.clone(),
        );
        let breaker_rejections = Family::default();
        registry.register(
            "circuit_breaker_rejections",
            "Requests refused by a circuit-breaker limit",
            breaker_rejections.clone(),
        );
        let errors = Family::default();
        registry.register(
            "errors",
            "Requests the proxy answered itself or could not serve, by reason",
            errors.clone(),
        );
        let connections = Family::default();
        registry.register(
            "active_connections",
            "Downstream connections open, by listener",
            connections.clone(),
        );
        let config_info = Family::default();
        registry.register(
            "config_info",
            "The running config version (value 1)",
            config_info.clone(),
        );
        let config_rejected = Counter::default();
        registry.register(
            "config_rejected",
            "Configs refused as invalid",
            config_rejected.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "mesh_certificate_expiry_timestamp_seconds",
            "When the mesh certificate in use expires, in Unix seconds (0 without mTLS)",
            certificate_expiry.clone(),
        );
        let jwt_family = Family::<JwtLabels, Counter>::default();
        registry.register(
            "jwt_accepted",
            "Bearer tokens accepted, by how: a signature check, or the cache of tokens already verified",
            jwt_family.clone(),
        );
        let jwt_accepted = ["signature", "cached"]
            .map(|verification| jwt_family.get_or_create_owned(&JwtLabels { verification }));
        Metrics {
            registry,
            requests,
            latency,
            retries,
            budget_exhausted,
            timeouts,
            ejections,
            breaker_rejections,
            errors,
            connections,
            config_info,
            certificate_expiry,
            config_rejected,
            jwt_accepted,
        }
    }

    pub fn traffic(&self, direction: &'static str, service: &str, subset: &str) -> TrafficMetrics {
        let labels = TrafficLabels {
            direction,
            service: service.to_string(),
            subset: subset.to_string(),
        };
        let requests = CLASSES.map(|class| {
            self.requests.get_or_create_owned(&RequestLabels {
                direction,
                service: service.to_string(),
                subset: subset.to_string(),
                class,
            })
        });
        TrafficMetrics {
            requests,
            latency: self.latency.get_or_create_owned(&labels),
            retries: self.retries.get_or_create_owned(&labels),
        }
    }

    pub fn service(&self, service: &str) -> ServiceMetrics {
        let s = ServiceLabels {
            service: service.to_string(),
        };
        let timeout = |kind| {
            self.timeouts.get_or_create_owned(&TimeoutLabels {
                direction: "outbound",
                service: service.to_string(),
                kind,
            })
        };
        ServiceMetrics {
            budget_exhausted: self.budget_exhausted.get_or_create_owned(&s),
            ejections: self.ejections.get_or_create_owned(&s),
            request_timeouts: timeout("request"),
            per_try_timeouts: timeout("per-try"),
            family: self.breaker_rejections.clone(),
            service: service.to_string(),
        }
    }

    /// Counts a request the proxy could not serve normally.
    pub fn error(&self, direction: &'static str, reason: &'static str) {
        self.errors
            .get_or_create(&ReasonLabels { direction, reason })
            .inc();
    }

    /// Counts an accepted bearer token; `cached`: answered by the cache of
    /// verified tokens, without a signature check.
    pub fn jwt_accepted(&self, cached: bool) {
        self.jwt_accepted[usize::from(cached)].inc();
    }

    pub fn connections(&self, listener: &'static str) -> Gauge {
        self.connections
            .get_or_create_owned(&ListenerLabels { listener })
    }

    pub fn config_applied(&self, old: Option<&str>, new: &str) {
        if let Some(old) = old {
            self.config_info.remove(&VersionLabels {
                version: old.to_string(),
            });
        }
        self.config_info
            .get_or_create(&VersionLabels {
                version: new.to_string(),
            })
            .set(1);
    }

    pub fn config_rejected(&self) {
        self.config_rejected.inc();
    }

    /// Records when the mesh certificate in use expires.
    pub fn certificate_expires(&self, at: std::time::SystemTime) {
        let secs = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.certificate_expiry
            .set(i64::try_from(secs).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_pre_resolved_handles() {
        let m = Metrics::new();
        let t = m.traffic("outbound", "reviews", "v1");
        t.record(503, Duration::from_micros(300));
        t.record(200, Duration::from_micros(80));
        m.config_applied(None, "c1");
        m.config_applied(Some("c1"), "c2");
        let text = m.encode();
        assert!(
            text.contains(
                r#"gitmesh_requests_total{direction="outbound",service="reviews",subset="v1",class="5xx"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"gitmesh_config_info{version="c2"} 1"#));
        assert!(!text.contains(r#"version="c1""#));
        assert!(text.contains("le=\"0.0001\""));
    }
}
