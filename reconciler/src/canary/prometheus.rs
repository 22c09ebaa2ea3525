//! Canary analysis from a Prometheus server instead of the sidecars' pages,
//! pure: the PromQL of one analysis window (on the proxies' own metric
//! names) and the reading of the query API's JSON answers into the same
//! [`Stats`] the gates take. No IO: the HTTP call is made by the daemon.
//!
//! Two instant queries per window, both over the callers' outbound series
//! of one service, split by subset:
//!
//! - `sum by (subset, class) (increase(gitmesh_requests_total{…}[W]))`:
//!   requests per status class; `class="5xx"` are the errors.
//! - `histogram_quantile(0.99, sum by (subset, le)
//!   (increase(gitmesh_request_duration_seconds_bucket{…}[W])))`: p99.
//!
//! Anything but a well-formed `vector` answer is an error, and so is an
//! answer with no request series at all for the service (Prometheus does
//! not scrape the callers, or not yet): the caller turns an error into a
//! hold, never a promotion.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::gates::Verdict;
use super::scrape::{LATENCY_METRIC, REQUESTS_METRIC};
use super::window::Stats;

const ERROR_CLASS: &str = "5xx";

/// One analysis window of one Rollout: which subsets of which service,
/// over how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowQuery {
    pub service: String,
    pub stable: String,
    pub canary: String,
    /// The window's length in milliseconds (the range of `increase`).
    pub window_ms: u64,
}

/// Why Prometheus' answer gives no window.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PrometheusError {
    #[error("the answer is not the query API's JSON ({problem}): `{found}`")]
    NotJson { problem: String, found: String },
    #[error("the query failed ({kind}): {message}")]
    Failed { kind: String, message: String },
    #[error("unexpected answer: {0}")]
    Shape(String),
    #[error("series {series}: value `{value}` is not {expected}")]
    BadValue {
        series: String,
        value: String,
        expected: &'static str,
    },
    #[error(
        "no {metric} series for service {service} in the last {window_ms} ms \
         (does Prometheus scrape the callers' sidecars?)"
    )]
    NoSeries {
        metric: &'static str,
        service: String,
        window_ms: u64,
    },
}

/// The stats of both subsets over one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowStats {
    pub stable: Stats,
    pub canary: Stats,
}

impl WindowQuery {
    /// The series selector of `metric`: the callers' view of both subsets.
    fn selector(&self, metric: &str) -> String {
        let subsets = format!(
            "{}|{}",
            regex::escape(&self.stable),
            regex::escape(&self.canary)
        );
        format!(
            "{metric}{{direction=\"outbound\",service=\"{}\",subset=~\"{}\"}}[{}ms]",
            promql_string(&self.service),
            promql_string(&subsets),
            self.window_ms
        )
    }

    /// Requests by subset and status class over the window.
    pub fn requests(&self) -> String {
        format!(
            "sum by (subset, class) (increase({}))",
            self.selector(REQUESTS_METRIC)
        )
    }

    /// The p99 latency (seconds) by subset over the window.
    pub fn p99(&self) -> String {
        format!(
            "histogram_quantile(0.99, sum by (subset, le) (increase({})))",
            self.selector(&format!("{LATENCY_METRIC}_bucket"))
        )
    }

    /// Both subsets' stats from the answers to [`requests`](Self::requests)
    /// and [`p99`](Self::p99).
    pub fn stats(&self, requests: &str, p99: &str) -> Result<WindowStats, PrometheusError> {
        let counts = parse_vector(requests)?;
        if counts.is_empty() {
            return Err(PrometheusError::NoSeries {
                metric: REQUESTS_METRIC,
                service: self.service.clone(),
                window_ms: self.window_ms,
            });
        }
        let mut totals: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for s in &counts {
            let subset = s.label("subset")?;
            let class = s.label("class")?;
            let v = s.number()?;
            if !v.is_finite() || v < 0.0 {
                return Err(s.bad("a count (a finite number, at least 0)"));
            }
            let entry = totals.entry(subset.to_string()).or_default();
            entry.0 += v;
            if class == ERROR_CLASS {
                entry.1 += v;
            }
        }
        let mut p99s: BTreeMap<String, Option<f64>> = BTreeMap::new();
        for s in &parse_vector(p99)? {
            let subset = s.label("subset")?;
            let v = s.number()?;
            // NaN: no observation in the window. ±Inf: no finite bucket to
            // bound it. Neither is a latency.
            let seconds = v.is_finite().then_some(v);
            if seconds.is_some_and(|v| v < 0.0) {
                return Err(s.bad("a latency (at least 0)"));
            }
            p99s.insert(subset.to_string(), seconds);
        }
        let stats = |subset: &str| {
            let (requests, errors) = totals.get(subset).copied().unwrap_or_default();
            // `increase` extrapolates to the window's edges: whole numbers
            // are what the gates count.
            let requests = requests.round() as u64;
            let errors = errors.round() as u64;
            Stats {
                requests,
                errors,
                p99_ms: p99s.get(subset).copied().flatten().map(|s| s * 1_000.0),
                ..Stats::default()
            }
        };
        Ok(WindowStats {
            stable: stats(&self.stable),
            canary: stats(&self.canary),
        })
    }
}

/// A window's verdict on numbers read from the Prometheus at `url`, saying
/// so: a pass notes where its numbers came from, and so does a hold for
/// too little data (so "0 requests" is not read as the sidecars' word). A
/// failure is left as it is: its numbers are in the evidence.
pub fn from_prometheus(verdict: Verdict, url: &str) -> Verdict {
    let said = format!("metrics from Prometheus at {url}");
    match verdict {
        Verdict::Pass { note } => Verdict::Pass {
            note: Some(match note {
                Some(n) => format!("{n}; {said}"),
                None => said,
            }),
        },
        Verdict::NoData { reason } => Verdict::NoData {
            reason: format!("{reason} ({said})"),
        },
        fail @ Verdict::Fail { .. } => fail,
    }
}

/// A PromQL double-quoted string's content.
fn promql_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The query API's envelope (`/api/v1/query`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

/// One element of an instant vector.
#[derive(Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

impl Series {
    fn name(&self) -> String {
        let labels: Vec<String> = self
            .metric
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{{{}}}", labels.join(","))
    }

    fn label(&self, name: &str) -> Result<&str, PrometheusError> {
        self.metric.get(name).map(String::as_str).ok_or_else(|| {
            PrometheusError::Shape(format!("series {} has no `{name}` label", self.name()))
        })
    }

    fn bad(&self, expected: &'static str) -> PrometheusError {
        PrometheusError::BadValue {
            series: self.name(),
            value: self.value.1.clone(),
            expected,
        }
    }

    /// The sample value (Prometheus writes it as a string: `"12"`, `"NaN"`,
    /// `"+Inf"`).
    fn number(&self) -> Result<f64, PrometheusError> {
        self.value
            .1
            .parse::<f64>()
            .map_err(|_| self.bad("a number"))
    }
}

/// The series of a successful `vector` answer.
fn parse_vector(body: &str) -> Result<Vec<Series>, PrometheusError> {
    let answer: Answer = serde_json::from_str(body).map_err(|e| PrometheusError::NotJson {
        problem: e.to_string(),
        found: body.chars().take(80).collect(),
    })?;
    if answer.status != "success" {
        return Err(PrometheusError::Failed {
            kind: answer.error_type.unwrap_or_else(|| answer.status.clone()),
            message: answer.error.unwrap_or_default(),
        });
    }
    let data = answer
        .data
        .ok_or_else(|| PrometheusError::Shape("a success without `data`".into()))?;
    if data.result_type != "vector" {
        return Err(PrometheusError::Shape(format!(
            "result type `{}`, expected `vector`",
            data.result_type
        )));
    }
    serde_json::from_value(data.result)
        .map_err(|e| PrometheusError::Shape(format!("vector result: {e}")))
}

#[cfg(test)]
mod tests;
