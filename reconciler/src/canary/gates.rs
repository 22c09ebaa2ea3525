//! The gates of one analysis window: canary (and stable) [`Stats`] against
//! a Rollout's `analysis` settings, with three outcomes: pass, fail (which
//! gate, with the numbers) and "not enough data", which holds and never
//! promotes.
//!
//! Absolute gates look at the canary alone: error rate ≤ `maxErrorRate`,
//! p99 ≤ `maxP99`. Gates relative to stable (on by default) need stable to
//! have had `minRequests` too; without that they are skipped, and the
//! verdict says so.

use std::collections::BTreeMap;
use std::fmt;

use super::window::Stats;
use crate::policy::Analysis;

/// A gate that can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Canary error rate ≤ `maxErrorRate`.
    ErrorRate,
    /// Canary p99 ≤ `maxP99`.
    P99,
    /// Canary error rate ≤ stable's + `maxErrorRateIncrease`.
    ErrorRateVsStable,
    /// Canary p99 ≤ `maxP99Ratio` × stable's.
    P99VsStable,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::ErrorRate => "error-rate",
            Gate::P99 => "p99",
            Gate::ErrorRateVsStable => "error-rate-vs-stable",
            Gate::P99VsStable => "p99-vs-stable",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one window's gates.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Every gate passed; `note` says which were skipped and why.
    Pass { note: Option<String> },
    /// `gate` is the first gate that failed; `detail` gives the numbers of
    /// every failed gate.
    Fail { gate: Gate, detail: String },
    /// Too little data to judge: hold, never promote.
    NoData { reason: String },
}

/// A window's verdict told about the proxies whose `/metrics` could not be
/// read (down, or answering garbage), by proxy id. A hold says which and
/// why; a pass stays a pass (the gates had enough data from the others)
/// but notes them; a failure is a failure on the data that was read.
pub fn with_unreadable(verdict: Verdict, unreadable: &BTreeMap<String, String>) -> Verdict {
    if unreadable.is_empty() {
        return verdict;
    }
    let list = unreadable
        .iter()
        .map(|(id, why)| format!("{id}: {why}"))
        .collect::<Vec<_>>()
        .join("; ");
    let said = format!("metrics unreadable from {list}");
    match verdict {
        Verdict::NoData { reason } => Verdict::NoData {
            reason: format!("{reason} ({said})"),
        },
        Verdict::Pass { note } => Verdict::Pass {
            note: Some(match note {
                Some(n) => format!("{n}; {said}"),
                None => said,
            }),
        },
        fail @ Verdict::Fail { .. } => fail,
    }
}

/// Judges the canary over one window.
pub fn evaluate(stable: &Stats, canary: &Stats, analysis: &Analysis) -> Verdict {
    let min = analysis.min_requests;
    if canary.requests == 0 || canary.requests < min {
        return Verdict::NoData {
            reason: format!(
                "canary had {} in the window, fewer than minRequests {min}{}",
                requests(canary.requests),
                canary.left_out()
            ),
        };
    }
    let mut failures: Vec<(Gate, String)> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();

    let canary_errors = canary.error_rate_pct().unwrap_or(0.0);
    if canary_errors > analysis.max_error_rate {
        failures.push((
            Gate::ErrorRate,
            format!(
                "canary error rate {} ({} of {}) > maxErrorRate {}%",
                pct(canary_errors),
                canary.errors,
                canary.requests,
                num(analysis.max_error_rate)
            ),
        ));
    }
    if let Some(max) = analysis.max_p99 {
        let max_ms = max.as_millis() as f64;
        match canary.p99_ms {
            Some(p99) if p99 > max_ms => failures.push((
                Gate::P99,
                format!("canary p99 {} > maxP99 {}", ms(p99), ms(max_ms)),
            )),
            Some(_) => {}
            None => missing.push("no latency histogram for the canary".to_string()),
        }
    }

    let relative = &analysis.relative_to_stable;
    if relative.enabled {
        if stable.requests == 0 || stable.requests < min {
            skipped.push(format!(
                "gates relative to stable skipped: stable had {}, fewer than minRequests {min}{}",
                requests(stable.requests),
                stable.left_out()
            ));
        } else {
            let stable_errors = stable.error_rate_pct().unwrap_or(0.0);
            let limit = stable_errors + relative.max_error_rate_increase;
            if canary_errors > limit {
                failures.push((
                    Gate::ErrorRateVsStable,
                    format!(
                        "canary error rate {} > stable's {} + {} pp",
                        pct(canary_errors),
                        pct(stable_errors),
                        num(relative.max_error_rate_increase)
                    ),
                ));
            }
            match (canary.p99_ms, stable.p99_ms) {
                (Some(c), Some(s)) => {
                    let limit = relative.max_p99_ratio * s;
                    if c > limit {
                        failures.push((
                            Gate::P99VsStable,
                            format!(
                                "canary p99 {} > {}× stable's {} (= {}; canary is {}×)",
                                ms(c),
                                num(relative.max_p99_ratio),
                                ms(s),
                                ms(limit),
                                ratio(c, s)
                            ),
                        ));
                    }
                }
                (None, _) => missing.push("no latency histogram for the canary".to_string()),
                (Some(_), None) => skipped.push(
                    "p99 relative to stable skipped: no latency histogram for stable".to_string(),
                ),
            }
        }
    }

    if let Some((gate, _)) = failures.first() {
        return Verdict::Fail {
            gate: *gate,
            detail: failures
                .iter()
                .map(|(_, d)| d.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        };
    }
    missing.dedup();
    if !missing.is_empty() {
        return Verdict::NoData {
            reason: missing.join("; "),
        };
    }
    Verdict::Pass {
        note: (!skipped.is_empty()).then(|| skipped.join("; ")),
    }
}

fn requests(n: u64) -> String {
    format!("{n} {}", if n == 1 { "request" } else { "requests" })
}

/// A number with at most 3 decimals and no trailing zeros: `1`, `0.25`.
fn num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn pct(v: f64) -> String {
    format!("{}%", num(v))
}

fn ms(v: f64) -> String {
    format!("{} ms", num(v))
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        num(a / b)
    } else {
        "∞".to_string()
    }
}

#[cfg(test)]
mod tests {
    use gitmesh_proxy_config::Duration;

    use super::*;
    use crate::policy::RelativeGates;

    fn stats(requests: u64, errors: u64, p99_ms: Option<f64>) -> Stats {
        Stats {
            requests,
            errors,
            p99_ms,
            observers: 1,
            ..Stats::default()
        }
    }

    fn analysis() -> Analysis {
        Analysis {
            interval: Duration::from_secs(30),
            min_requests: 20,
            max_error_rate: 1.0,
            max_p99: Some(Duration::from_millis(500)),
            relative_to_stable: RelativeGates {
                enabled: true,
                max_error_rate_increase: 1.0,
                max_p99_ratio: 1.5,
            },
        }
    }

    fn healthy() -> Stats {
        stats(1000, 2, Some(100.0))
    }

    #[test]
    fn a_healthy_canary_passes() {
        let v = evaluate(&healthy(), &stats(200, 1, Some(120.0)), &analysis());
        assert_eq!(v, Verdict::Pass { note: None });
    }

    #[test]
    fn twenty_percent_errors_fail_the_one_percent_gate() {
        let v = evaluate(&healthy(), &stats(200, 40, Some(100.0)), &analysis());
        assert_eq!(
            v,
            Verdict::Fail {
                gate: Gate::ErrorRate,
                detail: "canary error rate 20% (40 of 200) > maxErrorRate 1%; \
                         canary error rate 20% > stable's 0.2% + 1 pp"
                    .to_string()
            }
        );
    }

    #[test]
    fn error_rate_at_the_limit_passes_and_just_above_fails() {
        let mut a = analysis();
        a.relative_to_stable.enabled = false;
        assert_eq!(
            evaluate(&healthy(), &stats(200, 2, Some(100.0)), &a),
            Verdict::Pass { note: None }
        );
        assert!(matches!(
            evaluate(&healthy(), &stats(200, 3, Some(100.0)), &a),
            Verdict::Fail {
                gate: Gate::ErrorRate,
                ..
            }
        ));
    }

    #[test]
    fn three_times_stable_p99_fails_the_ratio_gate() {
        let mut a = analysis();
        a.max_p99 = None;
        let v = evaluate(&healthy(), &stats(200, 0, Some(300.0)), &a);
        assert_eq!(
            v,
            Verdict::Fail {
                gate: Gate::P99VsStable,
                detail: "canary p99 300 ms > 1.5× stable's 100 ms (= 150 ms; canary is 3×)"
                    .to_string()
            }
        );
        // 1.5× exactly passes.
        assert_eq!(
            evaluate(&healthy(), &stats(200, 0, Some(150.0)), &a),
            Verdict::Pass { note: None }
        );
    }

    #[test]
    fn absolute_p99_gate() {
        let mut a = analysis();
        a.relative_to_stable.enabled = false;
        let v = evaluate(&healthy(), &stats(200, 0, Some(650.5)), &a);
        assert_eq!(
            v,
            Verdict::Fail {
                gate: Gate::P99,
                detail: "canary p99 650.5 ms > maxP99 500 ms".to_string()
            }
        );
    }

    #[test]
    fn too_few_canary_requests_is_no_data() {
        let v = evaluate(&healthy(), &stats(5, 5, Some(9000.0)), &analysis());
        assert_eq!(
            v,
            Verdict::NoData {
                reason: "canary had 5 requests in the window, fewer than minRequests 20".into()
            }
        );
        let mut a = analysis();
        a.min_requests = 0;
        assert!(matches!(
            evaluate(&healthy(), &Stats::default(), &a),
            Verdict::NoData { .. }
        ));
    }

    #[test]
    fn no_data_says_which_proxies_were_left_out() {
        let canary = Stats {
            requests: 3,
            resets: 2,
            ..Stats::default()
        };
        let Verdict::NoData { reason } = evaluate(&healthy(), &canary, &analysis()) else {
            panic!("expected no data");
        };
        assert!(
            reason.ends_with("(left out: 2 proxies restarted during the window)"),
            "{reason}"
        );
    }

    #[test]
    fn stable_without_data_skips_relative_gates_and_says_so() {
        // 3× a stable p99 and 5 pp more errors, but stable has too few
        // requests to compare with: only absolute gates apply.
        let stable = stats(4, 0, Some(100.0));
        let canary = stats(200, 1, Some(300.0));
        assert_eq!(
            evaluate(&stable, &canary, &analysis()),
            Verdict::Pass {
                note: Some(
                    "gates relative to stable skipped: stable had 4 requests, \
                     fewer than minRequests 20"
                        .into()
                )
            }
        );
    }

    #[test]
    fn relative_error_rate_gate() {
        let mut a = analysis();
        a.max_error_rate = 10.0;
        // Stable 2%, canary 4%: more than 1 pp above.
        let v = evaluate(
            &stats(1000, 20, Some(100.0)),
            &stats(200, 8, Some(100.0)),
            &a,
        );
        assert_eq!(
            v,
            Verdict::Fail {
                gate: Gate::ErrorRateVsStable,
                detail: "canary error rate 4% > stable's 2% + 1 pp".into()
            }
        );
        // Canary 3%: exactly 1 pp above passes.
        let v = evaluate(
            &stats(1000, 20, Some(100.0)),
            &stats(200, 6, Some(100.0)),
            &a,
        );
        assert_eq!(v, Verdict::Pass { note: None });
    }

    #[test]
    fn relative_gates_off() {
        let mut a = analysis();
        a.relative_to_stable.enabled = false;
        a.max_p99 = None;
        let v = evaluate(&Stats::default(), &stats(200, 0, Some(1e6)), &a);
        assert_eq!(v, Verdict::Pass { note: None });
    }

    #[test]
    fn missing_latency_is_no_data_unless_something_failed() {
        let v = evaluate(&healthy(), &stats(200, 0, None), &analysis());
        assert_eq!(
            v,
            Verdict::NoData {
                reason: "no latency histogram for the canary".into()
            }
        );
        let v = evaluate(&healthy(), &stats(200, 100, None), &analysis());
        assert!(matches!(
            v,
            Verdict::Fail {
                gate: Gate::ErrorRate,
                ..
            }
        ));
        // Without stable latency, only the p99 ratio is skipped.
        let mut a = analysis();
        a.max_p99 = None;
        let v = evaluate(&stats(1000, 0, None), &stats(200, 0, Some(10.0)), &a);
        assert_eq!(
            v,
            Verdict::Pass {
                note: Some(
                    "p99 relative to stable skipped: no latency histogram for stable".into()
                )
            }
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(2.0 / 3.0), "0.667");
        assert_eq!(num(-0.0001), "0");
        assert_eq!(ratio(1.0, 0.0), "∞");
    }

    #[test]
    fn unreadable_metrics_are_named_in_a_hold_and_never_make_a_pass() {
        let down = BTreeMap::from([
            (
                "web-1".to_string(),
                "connect: Connection refused".to_string(),
            ),
            ("web-2".to_string(), "line 1: not a sample".to_string()),
        ]);
        let held = with_unreadable(
            Verdict::NoData {
                reason: "canary had 0 requests".into(),
            },
            &down,
        );
        assert_eq!(
            held,
            Verdict::NoData {
                reason: "canary had 0 requests (metrics unreadable from web-1: connect: \
                         Connection refused; web-2: line 1: not a sample)"
                    .into()
            }
        );
        let fail = Verdict::Fail {
            gate: Gate::ErrorRate,
            detail: "x".into(),
        };
        assert_eq!(with_unreadable(fail.clone(), &down), fail);
        let none = BTreeMap::new();
        assert_eq!(
            with_unreadable(Verdict::Pass { note: None }, &none),
            Verdict::Pass { note: None }
        );
    }
}
