//! What the reconciler and the canary engine record on the status branch,
//! and how each event reads as a commit message: a summary line for people,
//! a body with the details, and `Gitmesh-*` trailers for tools. The inverse,
//! [`StatusEvent::from_message`], reads an event back from its trailers and
//! list sections (never from the prose), so the prose may change freely.
//!
//! Free text (NACK messages, reasons, diagnostics) is folded onto one line
//! when written; events built from single-line text round-trip exactly.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::message::{MessageBuilder, ParsedMessage, one_line};

/// One recorded step. `source` is always the full sha of the desired-state
/// commit the step is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StatusEvent {
    /// A source commit fully rolled out.
    Applied {
        source: String,
        /// Services whose configuration changed.
        services: Vec<String>,
        /// Proxies that received a new configuration.
        proxies: u32,
    },
    /// Wave `wave` of `waves` (1-based) of a source commit was ACKed.
    Wave {
        source: String,
        wave: u32,
        waves: u32,
        proxies: Vec<String>,
        services: Vec<String>,
    },
    /// A rollout stopped and the proxies already updated went back to `to`.
    Reverted {
        source: String,
        reason: RevertReason,
        /// The last good source commit; `None` when there was none and the
        /// proxies went back to an empty configuration.
        to: Option<String>,
        proxies: Vec<String>,
    },
    /// An invalid commit; never applied.
    Rejected {
        source: String,
        /// The pipeline stage that refused it (`load`, `lint`, `compile`…).
        stage: String,
        errors: u32,
        /// Diagnostics, one line each.
        diagnostics: Vec<String>,
        /// The last good commit, which proxies keep running.
        kept: Option<String>,
    },
    /// A newer commit (`by`) arrived while `source` was rolling out; `wave`
    /// of `waves` had been reached.
    Superseded {
        source: String,
        by: String,
        wave: u32,
        waves: u32,
    },
    /// One analysis step of a canary rollout.
    #[serde(rename = "canary")]
    CanaryStep(Box<CanaryStep>),
    /// A completed rollout's final weights written back to the
    /// desired-state branch (`commit`), or why that was refused (the mesh
    /// keeps the final weights either way).
    WriteBack {
        source: String,
        rollout: String,
        service: String,
        /// The desired-state branch.
        branch: String,
        /// The route file edited.
        path: String,
        /// The write-back commit; `None` when refused or nothing to write.
        commit: Option<String>,
        /// Why the branch was not updated.
        refused: Option<String>,
    },
}

/// Why a rollout was reverted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RevertReason {
    /// A proxy refused the configuration.
    Nack { proxy: String, message: String },
    /// A proxy turned unhealthy before its wave's `minHealthyTime` passed.
    Unhealthy { proxy: String },
    /// The rollout did not finish within `progressDeadline`.
    ProgressDeadline { deadline_ms: u64 },
}

/// A canary step: the decision and the evidence it was taken on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanaryStep {
    pub source: String,
    /// The Rollout's `metadata.name`.
    pub rollout: String,
    pub service: String,
    pub stable_subset: String,
    pub canary_subset: String,
    /// 1-based index of the step (the weight step being analysed).
    pub step: u32,
    pub steps: u32,
    /// Canary weight (percent) before and after this decision.
    pub from_weight: u32,
    pub to_weight: u32,
    pub decision: Decision,
    pub stable: Evidence,
    pub canary: Evidence,
    pub gates: Gates,
    /// The analysis window the evidence covers.
    pub window_ms: u64,
    /// Consecutive failed checks so far (compare with `gates.failure_limit`).
    pub failed_checks: u32,
    /// For hold and rollback: the gate that did not pass, with its numbers.
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Promote,
    Hold,
    Rollback,
    Complete,
}

/// What one subset did over the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub requests: u64,
    /// Percent 0–100; `None` without requests.
    pub error_rate_pct: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The thresholds a step had to pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gates {
    pub min_requests: u64,
    pub max_error_rate_pct: f64,
    pub max_p99_ms: Option<f64>,
    /// Limits relative to stable, when enabled.
    pub relative: Option<RelativeGates>,
    pub failure_limit: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelativeGates {
    /// Canary error rate may exceed stable's by this many percentage points.
    pub max_error_rate_increase_pp: f64,
    /// Canary p99 may be at most this multiple of stable's.
    pub max_p99_ratio: f64,
}

/// Why a message could not be read as an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not a gitmesh status commit (no Gitmesh-Event trailer)")]
    NotOurs,
    #[error("unknown Gitmesh-Event `{0}`")]
    UnknownEvent(String),
    #[error("missing trailer {0}")]
    Missing(&'static str),
    #[error("trailer {key} has an invalid value `{value}`")]
    Invalid { key: &'static str, value: String },
}

pub(crate) const EVENT: &str = "Gitmesh-Event";
const SOURCE: &str = "Gitmesh-Source";
const SERVICES: &str = "Gitmesh-Services";
const PROXIES: &str = "Gitmesh-Proxies";
const WAVE: &str = "Gitmesh-Wave";
const REASON: &str = "Gitmesh-Reason";
const PROXY: &str = "Gitmesh-Proxy";
const NACK: &str = "Gitmesh-Nack";
const DEADLINE: &str = "Gitmesh-Deadline";
const REVERTED_TO: &str = "Gitmesh-Reverted-To";
const STAGE: &str = "Gitmesh-Stage";
const ERRORS: &str = "Gitmesh-Errors";
const KEPT: &str = "Gitmesh-Kept";
const SUPERSEDED_BY: &str = "Gitmesh-Superseded-By";
const ROLLOUT: &str = "Gitmesh-Rollout";
const SERVICE: &str = "Gitmesh-Service";
const STEP: &str = "Gitmesh-Step";
const WEIGHT: &str = "Gitmesh-Weight";
const DECISION: &str = "Gitmesh-Decision";
const STABLE: &str = "Gitmesh-Stable";
const CANARY: &str = "Gitmesh-Canary";
const GATES: &str = "Gitmesh-Gates";
const WINDOW: &str = "Gitmesh-Window";
const FAILED_CHECKS: &str = "Gitmesh-Failed-Checks";
const BRANCH: &str = "Gitmesh-Branch";
const PATH: &str = "Gitmesh-Path";
const COMMIT: &str = "Gitmesh-Commit";
const REFUSED: &str = "Gitmesh-Refused";

const L_SERVICES_CHANGED: &str = "Services changed";
const L_PROXIES: &str = "Proxies";
const L_SERVICES: &str = "Services";
const L_REVERTED: &str = "Reverted proxies";
const L_DIAGNOSTICS: &str = "Diagnostics";

impl StatusEvent {
    /// The `Gitmesh-Event` value.
    pub fn kind(&self) -> &'static str {
        match self {
            StatusEvent::Applied { .. } => "applied",
            StatusEvent::Wave { .. } => "wave",
            StatusEvent::Reverted { .. } => "reverted",
            StatusEvent::Rejected { .. } => "rejected",
            StatusEvent::Superseded { .. } => "superseded",
            StatusEvent::CanaryStep(_) => "canary",
            StatusEvent::WriteBack { .. } => "write-back",
        }
    }

    /// The desired-state commit this event is about.
    pub fn source(&self) -> &str {
        match self {
            StatusEvent::Applied { source, .. }
            | StatusEvent::Wave { source, .. }
            | StatusEvent::Reverted { source, .. }
            | StatusEvent::Rejected { source, .. }
            | StatusEvent::Superseded { source, .. }
            | StatusEvent::WriteBack { source, .. } => source,
            StatusEvent::CanaryStep(step) => &step.source,
        }
    }

    /// The summary line alone.
    pub fn summary(&self) -> String {
        match self {
            StatusEvent::Applied {
                source,
                services,
                proxies,
            } => format!(
                "applied {}: {}, {}",
                short(source),
                plural(services.len() as u64, "service", "services"),
                plural(u64::from(*proxies), "proxy", "proxies"),
            ),
            StatusEvent::Wave {
                source,
                wave,
                waves,
                proxies,
                services,
            } => format!(
                "wave {wave}/{waves} of {}: {}, {}",
                short(source),
                plural(proxies.len() as u64, "proxy", "proxies"),
                plural(services.len() as u64, "service", "services"),
            ),
            StatusEvent::Reverted { source, reason, .. } => {
                let why = match reason {
                    RevertReason::Nack { proxy, .. } => format!("{proxy} NACKed"),
                    RevertReason::Unhealthy { proxy } => format!("{proxy} unhealthy"),
                    RevertReason::ProgressDeadline { deadline_ms } => {
                        format!("progress deadline {} passed", format_duration(*deadline_ms))
                    }
                };
                format!("reverted {}: {why}", short(source))
            }
            StatusEvent::Rejected {
                source,
                stage,
                errors,
                ..
            } => format!(
                "rejected {}: {errors} {stage} {}",
                short(source),
                if *errors == 1 { "error" } else { "errors" }
            ),
            StatusEvent::Superseded {
                source,
                by,
                wave,
                waves,
            } => format!(
                "superseded {} by {} at wave {wave}/{waves}",
                short(source),
                short(by)
            ),
            StatusEvent::CanaryStep(s) => {
                let head = format!("{}: canary {}", s.service, s.canary_subset);
                match s.decision {
                    Decision::Promote => {
                        format!("{head} {}% → {}% (promoted)", s.from_weight, s.to_weight)
                    }
                    Decision::Hold => format!("{head} held at {}%", s.from_weight),
                    Decision::Rollback => {
                        format!("{head} {}% → {}% (rolled back)", s.from_weight, s.to_weight)
                    }
                    Decision::Complete => {
                        format!("{head} {}% → {}% (complete)", s.from_weight, s.to_weight)
                    }
                }
            }
            StatusEvent::WriteBack {
                service,
                branch,
                commit,
                refused,
                ..
            } => match (commit, refused) {
                (_, Some(_)) => {
                    format!("{service}: write-back of final weights to {branch} refused")
                }
                (Some(c), None) => {
                    format!(
                        "{service}: final weights written back to {branch} ({})",
                        short(c)
                    )
                }
                (None, None) => format!("{service}: final weights already on {branch}"),
            },
        }
    }

    /// The whole commit message: summary, body, trailers.
    pub fn to_message(&self) -> String {
        let mut m = MessageBuilder::new(&self.summary());
        match self {
            StatusEvent::Applied {
                source,
                services,
                proxies,
            } => {
                m.text(&format!(
                    "Source commit {source} is rolled out: {} received a new configuration.",
                    plural(u64::from(*proxies), "proxy", "proxies")
                ))
                .list(L_SERVICES_CHANGED, services)
                .trailer(EVENT, self.kind())
                .trailer(SOURCE, source)
                .trailer(SERVICES, services.len().to_string())
                .trailer(PROXIES, proxies.to_string());
            }
            StatusEvent::Wave {
                source,
                wave,
                waves,
                proxies,
                services,
            } => {
                m.text(&format!(
                    "Wave {wave} of {waves} of source commit {source} was acknowledged."
                ))
                .list(L_PROXIES, proxies)
                .list(L_SERVICES, services)
                .trailer(EVENT, self.kind())
                .trailer(SOURCE, source)
                .trailer(WAVE, format!("{wave}/{waves}"))
                .trailer(PROXIES, proxies.len().to_string());
            }
            StatusEvent::Reverted {
                source,
                reason,
                to,
                proxies,
            } => {
                let why = match reason {
                    RevertReason::Nack { proxy, message } => {
                        format!(
                            "Proxy {proxy} refused the configuration: {}",
                            one_line(message)
                        )
                    }
                    RevertReason::Unhealthy { proxy } => {
                        format!("Proxy {proxy} turned unhealthy during the rollout.")
                    }
                    RevertReason::ProgressDeadline { deadline_ms } => format!(
                        "The rollout did not finish within its progress deadline of {}.",
                        format_duration(*deadline_ms)
                    ),
                };
                let back = match to {
                    Some(to) => format!("The proxies already updated went back to {to}."),
                    None => "No earlier good version: the proxies already updated went back \
                             to an empty configuration."
                        .to_string(),
                };
                m.text(&format!(
                    "Rollout of source commit {source} stopped.\n{why}\n{back}"
                ))
                .list(L_REVERTED, proxies)
                .trailer(EVENT, self.kind())
                .trailer(SOURCE, source);
                match reason {
                    RevertReason::Nack { proxy, message } => {
                        m.trailer(REASON, "nack")
                            .trailer(PROXY, proxy)
                            .trailer(NACK, message);
                    }
                    RevertReason::Unhealthy { proxy } => {
                        m.trailer(REASON, "unhealthy").trailer(PROXY, proxy);
                    }
                    RevertReason::ProgressDeadline { deadline_ms } => {
                        m.trailer(REASON, "progress-deadline")
                            .trailer(DEADLINE, format_duration(*deadline_ms));
                    }
                }
                m.trailer(REVERTED_TO, to.as_deref().unwrap_or("none"))
                    .trailer(PROXIES, proxies.len().to_string());
            }
            StatusEvent::Rejected {
                source,
                stage,
                errors,
                diagnostics,
                kept,
            } => {
                let keep = match kept {
                    Some(kept) => format!("Proxies keep running {kept}."),
                    None => "No version was applied before; proxies keep what they run.".into(),
                };
                m.text(&format!(
                    "Source commit {source} was refused at the {stage} stage and never applied.\n{keep}"
                ))
                .list(L_DIAGNOSTICS, diagnostics)
                .trailer(EVENT, self.kind())
                .trailer(SOURCE, source)
                .trailer(STAGE, stage)
                .trailer(ERRORS, errors.to_string())
                .trailer(KEPT, kept.as_deref().unwrap_or("none"));
            }
            StatusEvent::Superseded {
                source,
                by,
                wave,
                waves,
            } => {
                m.text(&format!(
                    "Source commit {by} arrived while {source} was rolling out \
                     (wave {wave} of {waves} reached); {source} will not go further."
                ))
                .trailer(EVENT, self.kind())
                .trailer(SOURCE, source)
                .trailer(SUPERSEDED_BY, by)
                .trailer(WAVE, format!("{wave}/{waves}"));
            }
            StatusEvent::CanaryStep(s) => canary_message(&mut m, s),
            StatusEvent::WriteBack {
                source,
                rollout,
                service,
                branch,
                path,
                commit,
                refused,
            } => {
                let what = match (commit, refused) {
                    (_, Some(why)) => format!(
                        "Rollout {rollout} is complete, but its final weights could not be \
                         written to {path} on {branch}: {}\nThe mesh keeps the final weights; \
                         edit {path} by hand (or merge a pull request) so that Git matches it.",
                        one_line(why)
                    ),
                    (Some(c), None) => format!(
                        "Rollout {rollout} is complete: its final weights are written to \
                         {path} on {branch} as commit {c}."
                    ),
                    (None, None) => format!(
                        "Rollout {rollout} is complete: {path} on {branch} already holds its \
                         final weights."
                    ),
                };
                m.text(&what)
                    .trailer(EVENT, self.kind())
                    .trailer(SOURCE, source)
                    .trailer(ROLLOUT, rollout)
                    .trailer(SERVICE, service)
                    .trailer(BRANCH, branch)
                    .trailer(PATH, path)
                    .trailer(COMMIT, commit.as_deref().unwrap_or("none"));
                if let Some(why) = refused {
                    m.trailer(REFUSED, why);
                }
            }
        }
        m.build()
    }

    /// Reads an event back from a commit message written by
    /// [`to_message`](Self::to_message). Any other message is an error,
    /// [`ParseError::NotOurs`] when it carries no `Gitmesh-Event` trailer.
    pub fn from_message(message: &str) -> Result<Self, ParseError> {
        let p = ParsedMessage::parse(message);
        let kind = p.trailer(EVENT).ok_or(ParseError::NotOurs)?;
        let source = hex_sha(SOURCE, need(&p, SOURCE)?)?;
        Ok(match kind {
            "applied" => StatusEvent::Applied {
                source,
                services: p.list(L_SERVICES_CHANGED),
                proxies: number(PROXIES, need(&p, PROXIES)?)?,
            },
            "wave" => {
                let (wave, waves) = fraction(WAVE, need(&p, WAVE)?)?;
                StatusEvent::Wave {
                    source,
                    wave,
                    waves,
                    proxies: p.list(L_PROXIES),
                    services: p.list(L_SERVICES),
                }
            }
            "reverted" => {
                let reason = match need(&p, REASON)? {
                    "nack" => RevertReason::Nack {
                        proxy: need(&p, PROXY)?.to_string(),
                        message: p.trailer(NACK).unwrap_or("").to_string(),
                    },
                    "unhealthy" => RevertReason::Unhealthy {
                        proxy: need(&p, PROXY)?.to_string(),
                    },
                    "progress-deadline" => RevertReason::ProgressDeadline {
                        deadline_ms: duration(DEADLINE, need(&p, DEADLINE)?)?,
                    },
                    other => return Err(invalid(REASON, other)),
                };
                StatusEvent::Reverted {
                    source,
                    reason,
                    to: optional_sha(REVERTED_TO, need(&p, REVERTED_TO)?)?,
                    proxies: p.list(L_REVERTED),
                }
            }
            "rejected" => StatusEvent::Rejected {
                source,
                stage: need(&p, STAGE)?.to_string(),
                errors: number(ERRORS, need(&p, ERRORS)?)?,
                diagnostics: p.list(L_DIAGNOSTICS),
                kept: optional_sha(KEPT, need(&p, KEPT)?)?,
            },
            "superseded" => {
                let (wave, waves) = fraction(WAVE, need(&p, WAVE)?)?;
                StatusEvent::Superseded {
                    source,
                    by: hex_sha(SUPERSEDED_BY, need(&p, SUPERSEDED_BY)?)?,
                    wave,
                    waves,
                }
            }
            "canary" => StatusEvent::CanaryStep(Box::new(parse_canary(&p, source)?)),
            "write-back" => StatusEvent::WriteBack {
                source,
                rollout: need(&p, ROLLOUT)?.to_string(),
                service: need(&p, SERVICE)?.to_string(),
                branch: need(&p, BRANCH)?.to_string(),
                path: need(&p, PATH)?.to_string(),
                commit: optional_sha(COMMIT, need(&p, COMMIT)?)?,
                refused: p.trailer(REFUSED).map(str::to_string),
            },
            other => return Err(ParseError::UnknownEvent(other.to_string())),
        })
    }
}

impl fmt::Display for StatusEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Promote => "promote",
            Decision::Hold => "hold",
            Decision::Rollback => "rollback",
            Decision::Complete => "complete",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "promote" => Decision::Promote,
            "hold" => Decision::Hold,
            "rollback" => Decision::Rollback,
            "complete" => Decision::Complete,
            _ => return None,
        })
    }
}

impl Evidence {
    /// `requests=1200 error-rate=0.4% p99=85ms` (`n/a` for missing values).
    fn to_trailer(&self) -> String {
        format!(
            "requests={} error-rate={} p99={}",
            self.requests,
            opt(self.error_rate_pct, "%"),
            opt(self.p99_ms, "ms")
        )
    }

    fn from_trailer(key: &'static str, fields: &Fields) -> Result<Self, ParseError> {
        Ok(Evidence {
            requests: number(key, fields.get(key, "requests")?)?,
            error_rate_pct: opt_float(key, fields.get(key, "error-rate")?, "%")?,
            p99_ms: opt_float(key, fields.get(key, "p99")?, "ms")?,
        })
    }

    /// For the body's table: `0.40%`, `85.0 ms`.
    fn cells(&self) -> (String, String) {
        (
            self.error_rate_pct
                .map_or("n/a".into(), |v| format!("{v:.2}%")),
            self.p99_ms.map_or("n/a".into(), |v| format!("{v:.1} ms")),
        )
    }
}

impl Gates {
    fn to_trailer(&self) -> String {
        let mut out = format!(
            "min-requests={} max-error-rate={}% max-p99={}",
            self.min_requests,
            self.max_error_rate_pct,
            opt(self.max_p99_ms, "ms")
        );
        match &self.relative {
            Some(r) => out.push_str(&format!(
                " max-error-rate-over-stable={}pp max-p99-ratio={}",
                r.max_error_rate_increase_pp, r.max_p99_ratio
            )),
            None => out.push_str(" relative=off"),
        }
        out.push_str(&format!(" failure-limit={}", self.failure_limit));
        out
    }

    fn from_trailer(fields: &Fields) -> Result<Self, ParseError> {
        let relative = if fields.find("relative") == Some("off") {
            None
        } else {
            Some(RelativeGates {
                max_error_rate_increase_pp: float(
                    GATES,
                    unit(
                        GATES,
                        fields.get(GATES, "max-error-rate-over-stable")?,
                        "pp",
                    )?,
                )?,
                max_p99_ratio: float(GATES, fields.get(GATES, "max-p99-ratio")?)?,
            })
        };
        Ok(Gates {
            min_requests: number(GATES, fields.get(GATES, "min-requests")?)?,
            max_error_rate_pct: float(
                GATES,
                unit(GATES, fields.get(GATES, "max-error-rate")?, "%")?,
            )?,
            max_p99_ms: opt_float(GATES, fields.get(GATES, "max-p99")?, "ms")?,
            relative,
            failure_limit: number(GATES, fields.get(GATES, "failure-limit")?)?,
        })
    }

    /// One readable line: `≥ 20 canary requests; error rate ≤ 1%; …`.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!("≥ {} canary requests", self.min_requests),
            format!("error rate ≤ {}%", self.max_error_rate_pct),
        ];
        if let Some(p99) = self.max_p99_ms {
            parts.push(format!("p99 ≤ {p99} ms"));
        }
        if let Some(r) = &self.relative {
            parts.push(format!(
                "error rate ≤ stable + {} pp",
                r.max_error_rate_increase_pp
            ));
            parts.push(format!("p99 ≤ {}× stable", r.max_p99_ratio));
        }
        parts.push(format!(
            "roll back after {} failed {}",
            self.failure_limit,
            if self.failure_limit == 1 {
                "check"
            } else {
                "checks"
            }
        ));
        parts.join("; ")
    }
}

fn canary_message(m: &mut MessageBuilder, s: &CanaryStep) {
    let what = match s.decision {
        Decision::Promote => format!(
            "Step {}/{} passed its gates: canary {} goes from {}% to {}% of the traffic to {}.",
            s.step, s.steps, s.canary_subset, s.from_weight, s.to_weight, s.service
        ),
        Decision::Hold => format!(
            "Step {}/{} holds canary {} at {}% of the traffic to {}.",
            s.step, s.steps, s.canary_subset, s.from_weight, s.service
        ),
        Decision::Rollback => format!(
            "Step {}/{} failed: canary {} goes from {}% back to {}%; all of the traffic to {} returns to {}.",
            s.step,
            s.steps,
            s.canary_subset,
            s.from_weight,
            s.to_weight,
            s.service,
            s.stable_subset
        ),
        Decision::Complete => format!(
            "Rollout complete: canary {} takes {}% of the traffic to {}.",
            s.canary_subset, s.to_weight, s.service
        ),
    };
    let width = s.stable_subset.len().max(s.canary_subset.len());
    let (se, sp) = s.stable.cells();
    let (ce, cp) = s.canary.cells();
    let mut evidence = format!(
        "Evidence over the last {} (rollout {}, source {}):\n",
        format_duration(s.window_ms),
        s.rollout,
        s.source
    );
    evidence.push_str(&format!(
        "  {:<w$}  {:>10}  {:>10}  {:>10}\n",
        "subset",
        "requests",
        "error rate",
        "p99",
        w = width + 7
    ));
    for (role, name, e, err, p99) in [
        ("stable", &s.stable_subset, &s.stable, se, sp),
        ("canary", &s.canary_subset, &s.canary, ce, cp),
    ] {
        evidence.push_str(&format!(
            "  {:<w$}  {:>10}  {:>10}  {:>10}\n",
            format!("{role} {name}"),
            e.requests,
            err,
            p99,
            w = width + 7
        ));
    }
    m.text(&what).text(&evidence);
    let mut gates = format!("Gates: {}.", s.gates.describe());
    if s.failed_checks > 0 {
        gates.push_str(&format!(
            "\nFailed checks in a row: {} of {}.",
            s.failed_checks, s.gates.failure_limit
        ));
    }
    m.text(&gates);
    if let Some(reason) = &s.reason {
        m.text(&format!("Reason: {}", one_line(reason)));
    }
    m.trailer(EVENT, "canary")
        .trailer(SOURCE, &s.source)
        .trailer(ROLLOUT, &s.rollout)
        .trailer(SERVICE, &s.service)
        .trailer(STEP, format!("{}/{}", s.step, s.steps))
        .trailer(WEIGHT, format!("{} -> {}", s.from_weight, s.to_weight))
        .trailer(DECISION, s.decision.as_str())
        .trailer(
            STABLE,
            format!("{} {}", s.stable_subset, s.stable.to_trailer()),
        )
        .trailer(
            CANARY,
            format!("{} {}", s.canary_subset, s.canary.to_trailer()),
        )
        .trailer(GATES, s.gates.to_trailer())
        .trailer(WINDOW, format_duration(s.window_ms))
        .trailer(FAILED_CHECKS, s.failed_checks.to_string());
    if let Some(reason) = &s.reason {
        m.trailer(REASON, reason);
    }
}

fn parse_canary(p: &ParsedMessage, source: String) -> Result<CanaryStep, ParseError> {
    let (step, steps) = fraction(STEP, need(p, STEP)?)?;
    let weight = need(p, WEIGHT)?;
    let (from, to) = weight
        .split_once("->")
        .ok_or_else(|| invalid(WEIGHT, weight))?;
    let (stable_subset, stable) = subset_evidence(STABLE, need(p, STABLE)?)?;
    let (canary_subset, canary) = subset_evidence(CANARY, need(p, CANARY)?)?;
    let decision = need(p, DECISION)?;
    Ok(CanaryStep {
        source,
        rollout: need(p, ROLLOUT)?.to_string(),
        service: need(p, SERVICE)?.to_string(),
        stable_subset,
        canary_subset,
        step,
        steps,
        from_weight: number(WEIGHT, from.trim())?,
        to_weight: number(WEIGHT, to.trim())?,
        decision: Decision::parse(decision).ok_or_else(|| invalid(DECISION, decision))?,
        stable,
        canary,
        gates: Gates::from_trailer(&Fields::parse(need(p, GATES)?))?,
        window_ms: duration(WINDOW, need(p, WINDOW)?)?,
        failed_checks: number(FAILED_CHECKS, need(p, FAILED_CHECKS)?)?,
        reason: p.trailer(REASON).map(str::to_string),
    })
}

fn subset_evidence(key: &'static str, value: &str) -> Result<(String, Evidence), ParseError> {
    let (subset, rest) = value.split_once(' ').ok_or_else(|| invalid(key, value))?;
    Ok((
        subset.to_string(),
        Evidence::from_trailer(key, &Fields::parse(rest))?,
    ))
}

/// `key=value` pairs separated by spaces.
struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Fields<'a> {
    fn parse(text: &'a str) -> Self {
        Fields(
            text.split_whitespace()
                .filter_map(|f| f.split_once('='))
                .collect(),
        )
    }

    fn find(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    fn get(&self, key: &'static str, name: &str) -> Result<&'a str, ParseError> {
        self.find(name)
            .ok_or_else(|| invalid(key, &format!("(no {name}=)")))
    }
}

fn need<'p>(p: &'p ParsedMessage, key: &'static str) -> Result<&'p str, ParseError> {
    p.trailer(key).ok_or(ParseError::Missing(key))
}

fn invalid(key: &'static str, value: &str) -> ParseError {
    ParseError::Invalid {
        key,
        value: value.to_string(),
    }
}

fn number<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T, ParseError> {
    value.parse().map_err(|_| invalid(key, value))
}

fn float(key: &'static str, value: &str) -> Result<f64, ParseError> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(invalid(key, value)),
    }
}

fn unit<'v>(key: &'static str, value: &'v str, suffix: &str) -> Result<&'v str, ParseError> {
    value
        .strip_suffix(suffix)
        .ok_or_else(|| invalid(key, value))
}

fn opt(value: Option<f64>, suffix: &str) -> String {
    value.map_or("n/a".into(), |v| format!("{v}{suffix}"))
}

fn opt_float(key: &'static str, value: &str, suffix: &str) -> Result<Option<f64>, ParseError> {
    if value == "n/a" {
        return Ok(None);
    }
    float(key, unit(key, value, suffix)?).map(Some)
}

fn fraction(key: &'static str, value: &str) -> Result<(u32, u32), ParseError> {
    let (a, b) = value.split_once('/').ok_or_else(|| invalid(key, value))?;
    Ok((number(key, a.trim())?, number(key, b.trim())?))
}

fn hex_sha(key: &'static str, value: &str) -> Result<String, ParseError> {
    if (4..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_string())
    } else {
        Err(invalid(key, value))
    }
}

fn optional_sha(key: &'static str, value: &str) -> Result<Option<String>, ParseError> {
    if value == "none" {
        Ok(None)
    } else {
        hex_sha(key, value).map(Some)
    }
}

/// The first 7 characters of a sha, as `git log --oneline` shows it.
pub fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `90s`, `10m`, `1h`, `1500ms`: the largest unit that is exact.
pub fn format_duration(ms: u64) -> String {
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms > 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

fn duration(key: &'static str, value: &str) -> Result<u64, ParseError> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| invalid(key, value))?;
    let (digits, unit) = value.split_at(split);
    let n: u64 = number(key, digits)?;
    let size = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(invalid(key, value)),
    };
    n.checked_mul(size).ok_or_else(|| invalid(key, value))
}

#[cfg(test)]
mod tests;
