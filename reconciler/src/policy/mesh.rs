//! `Mesh`: settings for the whole mesh (identity, mTLS, default intention,
//! rollout waves, where status is recorded, where metrics come from).

use gitmesh_proxy_config::{Action, Duration, MtlsMode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshSpec {
    /// SPIFFE trust domain: identities are `spiffe://<trustDomain>/svc/<service>`.
    #[serde(default = "default_trust_domain")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub trust_domain: String,
    #[serde(default)]
    pub mtls: MtlsSettings,
    /// What happens to a call that no intention names: `deny` (zero trust,
    /// the default) or `allow`.
    #[serde(default = "default_intention")]
    pub default_intention: Action,
    #[serde(default)]
    pub rollout: RolloutDefaults,
    /// The branch where every applied version, wave, revert and canary step
    /// is committed.
    #[serde(default = "default_status_branch")]
    pub status_branch: String,
    #[serde(default)]
    pub metrics: MetricsSource,
}

impl Default for MeshSpec {
    fn default() -> Self {
        MeshSpec {
            trust_domain: default_trust_domain(),
            mtls: MtlsSettings::default(),
            default_intention: default_intention(),
            rollout: RolloutDefaults::default(),
            status_branch: default_status_branch(),
            metrics: MetricsSource::default(),
        }
    }
}

fn default_trust_domain() -> String {
    "gitmesh.local".into()
}

fn default_intention() -> Action {
    Action::Deny
}

fn default_status_branch() -> String {
    "gitmesh/status".into()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MtlsSettings {
    /// `strict`: sidecars accept only mTLS. `permissive`: mTLS and plaintext,
    /// for migrating. `disabled`: plaintext only.
    #[serde(default)]
    pub mode: MtlsMode,
}

/// How a new policy version reaches proxies: in waves, each of which must
/// acknowledge and stay healthy before the next starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutDefaults {
    /// Cumulative waves; the last should cover every proxy (`percent: 100`).
    #[serde(default = "default_waves")]
    #[schemars(length(min = 1))]
    pub waves: Vec<Wave>,
    /// How long a wave must stay healthy before the next one starts.
    #[serde(default = "default_min_healthy")]
    pub min_healthy_time: Duration,
    /// A wave not healthy within this time is reverted.
    #[serde(default = "default_deadline")]
    pub progress_deadline: Duration,
}

impl Default for RolloutDefaults {
    fn default() -> Self {
        RolloutDefaults {
            waves: default_waves(),
            min_healthy_time: default_min_healthy(),
            progress_deadline: default_deadline(),
        }
    }
}

fn default_waves() -> Vec<Wave> {
    vec![
        Wave {
            proxies: Some(1),
            percent: None,
        },
        Wave {
            proxies: None,
            percent: Some(25.0),
        },
        Wave {
            proxies: None,
            percent: Some(100.0),
        },
    ]
}

fn default_min_healthy() -> Duration {
    Duration::from_secs(10)
}

fn default_deadline() -> Duration {
    Duration::from_secs(300)
}

/// A wave reaches `proxies` proxies, or `percent` of them (at least one);
/// give exactly one of the two.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Wave {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub proxies: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percent: Option<f64>,
}

/// Where canary analysis reads metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsSource {
    /// `proxies` (default): the reconciler scrapes the sidecars' `/metrics`.
    /// `prometheus`: query a Prometheus server.
    #[serde(default)]
    pub source: MetricsSourceKind,
    /// Base URL of the Prometheus HTTP API (`http://prometheus:9090`, or
    /// with a path prefix), for `source: prometheus`: each canary window is
    /// two instant queries on its `/api/v1/query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"))]
    pub prometheus_url: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MetricsSourceKind {
    #[default]
    Proxies,
    Prometheus,
}
