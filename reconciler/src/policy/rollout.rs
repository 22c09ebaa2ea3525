//! `Rollout`: a canary release of one service, from a stable to a canary
//! subset, promoted step by step only while metric gates pass.

use gitmesh_proxy_config::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// The Service being released.
    pub service: String,
    /// The HTTPRoute whose weights the rollout drives. Without one, all
    /// traffic to the service is split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub stable_subset: String,
    pub canary_subset: String,
    /// Percent of traffic on the canary at each step; strictly increasing,
    /// ending at 100.
    #[schemars(length(min = 1))]
    pub steps: Vec<u32>,
    #[serde(default)]
    pub analysis: Analysis,
    /// Consecutive failed checks that trigger a rollback.
    #[serde(default = "default_failure_limit")]
    #[schemars(range(min = 1))]
    pub failure_limit: u32,
    /// A step that has not passed within this time rolls back.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: Duration,
    /// Hold at the current step. A failing gate still rolls back.
    #[serde(default)]
    pub paused: bool,
    /// Stop the rollout now: all traffic back to the stable subset,
    /// recorded as a rollback "aborted by hand". Removing it (an edit)
    /// starts the rollout again from its first step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
    #[serde(default)]
    pub on_success: OnSuccess,
}

fn default_failure_limit() -> u32 {
    2
}

fn default_progress_deadline() -> Duration {
    Duration::from_secs(600)
}

/// The gates a step must pass over its analysis window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    /// The window each check looks at; also the time between checks.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Fewer canary requests than this in a window means "not enough data":
    /// hold, never promote.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// Highest canary error rate (5xx and failed requests), percent 0–100.
    #[serde(default = "default_max_error_rate")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub max_error_rate: f64,
    /// Highest canary p99 latency, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99: Option<Duration>,
    #[serde(default)]
    pub relative_to_stable: RelativeGates,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            interval: default_interval(),
            min_requests: default_min_requests(),
            max_error_rate: default_max_error_rate(),
            max_p99: None,
            relative_to_stable: RelativeGates::default(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_min_requests() -> u64 {
    20
}

fn default_max_error_rate() -> f64 {
    1.0
}

/// Gates that compare the canary with the stable subset over the same
/// window, on by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RelativeGates {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Canary error rate may exceed stable's by at most this many
    /// percentage points.
    #[serde(default = "default_error_margin")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub max_error_rate_increase: f64,
    /// Canary p99 may be at most this multiple of stable's.
    #[serde(default = "default_p99_ratio")]
    #[schemars(range(min = 1.0))]
    pub max_p99_ratio: f64,
}

impl Default for RelativeGates {
    fn default() -> Self {
        RelativeGates {
            enabled: true,
            max_error_rate_increase: default_error_margin(),
            max_p99_ratio: default_p99_ratio(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_error_margin() -> f64 {
    1.0
}

fn default_p99_ratio() -> f64 {
    1.5
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnSuccess {
    /// Commit the final weights (all traffic on the canary) to the
    /// desired-state branch, so Git matches the mesh.
    #[serde(default = "yes")]
    pub write_back: bool,
}

impl Default for OnSuccess {
    fn default() -> Self {
        OnSuccess { write_back: true }
    }
}
