//! Canary analysis, pure: from the callers' metrics pages to a decision to
//! promote, hold, roll back or complete a Rollout, and the status event
//! that records it. No IO and no clock; the time is passed in.
//!
//! Read in pipeline order: [`Scrape`] (one proxy's `/metrics` page) →
//! [`window_stats`] (a window's increase per subset, summed over proxies)
//! → [`evaluate`] (the gates: pass, fail or no data) → [`decide`] (the
//! Rollout's state machine) → [`to_event`] (the status-branch record).
//! With Prometheus as the metrics source, [`WindowQuery`] (the window's
//! PromQL and the reading of its answers) stands in for the first two.

mod control;
mod engine;
mod gates;
mod histogram;
mod prometheus;
mod record;
mod scrape;
mod window;
mod write_back;

pub use self::control::{Control, ControlError, control_edit};
pub use self::engine::{Action, CanaryState, CanaryStatus, Outcome, decide, spec_digest, start};
pub use self::gates::{Gate, Verdict, evaluate, with_unreadable};
pub use self::histogram::{Bucket, Histogram, HistogramError};
pub use self::prometheus::{PrometheusError, WindowQuery, WindowStats, from_prometheus};
pub use self::record::{decision, gates, to_event};
pub use self::scrape::{LATENCY_METRIC, REQUESTS_METRIC, Sample, Scrape, ScrapeError, SubsetKey};
pub use self::window::{Stats, subset_window, unanchored, window_stats};
pub use self::write_back::{WeightEdit, WriteBackError, apply_edits, weight_edits};
