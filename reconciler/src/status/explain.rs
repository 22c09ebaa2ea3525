//! Pure rendering for `gitmesh explain ROLLOUT [STEP]`: why a canary
//! decision was taken, rebuilt from the status commit alone (its trailers:
//! the evidence of both subsets, the gate thresholds, the window, the
//! failure streak and the reason). Each gate is checked again against the
//! recorded numbers, so the reader sees which passed, which failed and
//! which could not be judged, with the numbers side by side.

use std::fmt::Write as _;

use super::event::{CanaryStep, Decision, StatusEvent, format_duration, short};
use super::history::utc;
use super::record::HistoryEntry;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExplainError {
    #[error("no canary step of rollout `{0}` on the status branch")]
    NoSuchRollout(String),
    #[error(
        "rollout `{rollout}` has no recorded decision about step {step} (its last run has steps {known})"
    )]
    NoSuchStep {
        rollout: String,
        step: u32,
        known: String,
    },
}

/// The explanation of `rollout`'s decisions about `step` (1-based; 0 is
/// the start) in its latest run, or of its latest decision without a step.
/// `entries` newest first, as [`super::StatusLog::history`] gives them.
pub fn render_explanation(
    entries: &[HistoryEntry],
    rollout: &str,
    step: Option<u32>,
) -> Result<String, ExplainError> {
    // Oldest first, this rollout's steps only.
    let steps: Vec<(&HistoryEntry, &CanaryStep)> = entries
        .iter()
        .rev()
        .filter_map(|e| match &e.event {
            Some(StatusEvent::CanaryStep(s)) if s.rollout == rollout => Some((e, &**s)),
            _ => None,
        })
        .collect();
    let Some((_, last)) = steps.last() else {
        return Err(ExplainError::NoSuchRollout(rollout.to_string()));
    };
    // The latest run: back to the last start (a promotion from 0% at step
    // 0) or restart of the same source.
    let begin = steps
        .iter()
        .rposition(|(_, s)| s.step == 0 || s.reason.as_deref().is_some_and(is_restart))
        .unwrap_or(0);
    let run = &steps[begin..];
    let chosen: Vec<&(&HistoryEntry, &CanaryStep)> = match step {
        None => vec![run.last().expect("a run has a step")],
        Some(n) => run.iter().filter(|(_, s)| s.step == n).collect(),
    };
    if chosen.is_empty() {
        let mut known: Vec<String> = run.iter().map(|(_, s)| s.step.to_string()).collect();
        known.dedup();
        return Err(ExplainError::NoSuchStep {
            rollout: rollout.to_string(),
            step: step.unwrap_or(0),
            known: known.join(", "),
        });
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rollout {rollout} ({}: stable {}, canary {}; source {})",
        last.service,
        last.stable_subset,
        last.canary_subset,
        short(&last.source)
    );
    for (entry, s) in chosen {
        out.push('\n');
        decision(&mut out, entry, s);
    }
    // What became of the final weights.
    for e in entries.iter().rev() {
        if let Some(StatusEvent::WriteBack {
            rollout: r,
            source,
            branch,
            path,
            commit,
            refused,
            ..
        }) = &e.event
            && r == rollout
            && *source == last.source
            && (step.is_none() || run.last().is_some_and(|(_, s)| Some(s.step) == step))
        {
            let what = match (commit, refused) {
                (_, Some(why)) => format!("refused ({why}); the mesh keeps the final weights"),
                (Some(c), None) => format!("committed {} to {branch}", short(c)),
                (None, None) => format!("{branch} already had them"),
            };
            let _ = writeln!(out, "\nwrite-back of the final weights to {path}: {what}");
        }
    }
    Ok(out)
}

fn is_restart(reason: &str) -> bool {
    reason.starts_with("the Rollout was edited")
}

fn decision(out: &mut String, entry: &HistoryEntry, s: &CanaryStep) {
    let what = match s.decision {
        Decision::Promote if s.step == 0 => format!("started at {}%", s.to_weight),
        Decision::Promote => format!("promoted {}% → {}%", s.from_weight, s.to_weight),
        Decision::Hold => format!("held at {}%", s.from_weight),
        Decision::Rollback => format!("rolled back {}% → {}%", s.from_weight, s.to_weight),
        Decision::Complete => format!("complete at {}%", s.to_weight),
    };
    let _ = writeln!(
        out,
        "step {}/{}: {what}  (commit {}, {})",
        s.step,
        s.steps,
        entry.commit.short(),
        utc(entry.time)
    );
    let _ = writeln!(
        out,
        "  why: {}",
        s.reason.as_deref().unwrap_or("(no reason recorded)")
    );
    if s.window_ms == 0 {
        let _ = writeln!(
            out,
            "  no analysis window behind this decision (a start, an edit, a pause or resume, or a deadline)"
        );
        return;
    }
    let _ = writeln!(out, "  evidence over {}:", format_duration(s.window_ms));
    let width = s.stable_subset.len().max(s.canary_subset.len()) + 7;
    let _ = writeln!(
        out,
        "    {:<width$}  {:>9}  {:>10}  {:>10}",
        "subset", "requests", "error rate", "p99"
    );
    for (role, name, e) in [
        ("stable", &s.stable_subset, &s.stable),
        ("canary", &s.canary_subset, &s.canary),
    ] {
        let _ = writeln!(
            out,
            "    {:<width$}  {:>9}  {:>10}  {:>10}",
            format!("{role} {name}"),
            e.requests,
            pct(e.error_rate_pct),
            ms(e.p99_ms)
        );
    }
    let _ = writeln!(out, "  gates, checked again on these numbers:");
    for (gate, verdict) in gate_checks(s) {
        let _ = writeln!(out, "    {verdict:<8}  {gate}");
    }
    let _ = writeln!(
        out,
        "  failed checks in a row: {} of {} (a rollback at {})",
        s.failed_checks, s.gates.failure_limit, s.gates.failure_limit
    );
}

/// Each gate with its outcome on the recorded evidence.
fn gate_checks(s: &CanaryStep) -> Vec<(String, &'static str)> {
    let g = &s.gates;
    let (c, st) = (&s.canary, &s.stable);
    let mut out = Vec::new();
    let enough = c.requests >= g.min_requests;
    out.push((
        format!("min requests {}: canary had {}", g.min_requests, c.requests),
        if enough { "pass" } else { "no data" },
    ));
    if !enough {
        out.push((
            "(the other gates are not judged on too little data)".into(),
            "-",
        ));
        return out;
    }
    out.push((
        format!(
            "canary error rate {} ≤ max {}%",
            pct(c.error_rate_pct),
            g.max_error_rate_pct
        ),
        verdict(c.error_rate_pct.map(|e| e <= g.max_error_rate_pct)),
    ));
    if let Some(max) = g.max_p99_ms {
        out.push((
            format!("canary p99 {} ≤ max {}", ms(c.p99_ms), ms(Some(max))),
            verdict(c.p99_ms.map(|p| p <= max)),
        ));
    }
    match &g.relative {
        None => out.push(("gates relative to stable: off".into(), "-")),
        Some(_) if st.requests < g.min_requests => out.push((
            format!(
                "gates relative to stable: stable had {} requests, fewer than {}",
                st.requests, g.min_requests
            ),
            "skipped",
        )),
        Some(r) => {
            out.push((
                format!(
                    "canary error rate {} ≤ stable {} + {}pp",
                    pct(c.error_rate_pct),
                    pct(st.error_rate_pct),
                    r.max_error_rate_increase_pp
                ),
                verdict(
                    c.error_rate_pct
                        .zip(st.error_rate_pct)
                        .map(|(c, s)| c <= s + r.max_error_rate_increase_pp),
                ),
            ));
            out.push((
                format!(
                    "canary p99 {} ≤ {} × stable {}",
                    ms(c.p99_ms),
                    r.max_p99_ratio,
                    ms(st.p99_ms)
                ),
                verdict(
                    c.p99_ms
                        .zip(st.p99_ms)
                        .map(|(c, s)| c <= s * r.max_p99_ratio),
                ),
            ));
        }
    }
    out
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "n/a",
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.2}%"))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.1} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::fixtures;
    use crate::status::record::CommitId;

    fn entry(n: u8, event: StatusEvent) -> HistoryEntry {
        HistoryEntry {
            commit: CommitId::from(git2::Oid::from_bytes(&[n; 20]).unwrap()),
            time: 1_796_000_000 + i64::from(n) * 60,
            offset_minutes: 0,
            author: "gitmesh <gitmesh@localhost>".into(),
            summary: event.summary(),
            event: Some(event),
        }
    }

    fn history() -> Vec<HistoryEntry> {
        let mut failed = fixtures::canary(3, 50, 0, Decision::Rollback);
        if let StatusEvent::CanaryStep(s) = &mut failed {
            s.canary.error_rate_pct = Some(20.0);
            s.failed_checks = 2;
            s.reason =
                Some("gate error-rate failed (2 of 2 in a row): canary error rate 20%".into());
        }
        let mut started = fixtures::canary(0, 0, 25, Decision::Promote);
        if let StatusEvent::CanaryStep(s) = &mut started {
            s.window_ms = 0;
            s.reason = Some("rollout started".into());
        }
        let mut entries = vec![
            entry(1, started),
            entry(2, fixtures::canary(2, 25, 50, Decision::Promote)),
            entry(3, failed),
        ];
        entries.reverse();
        entries
    }

    #[test]
    fn a_rollback_is_explained_by_the_gate_that_failed_with_its_numbers() {
        let text = render_explanation(&history(), "reviews-v3", None).unwrap();
        assert!(text.contains("step 3/4: rolled back 50% → 0%"), "{text}");
        assert!(
            text.contains("why: gate error-rate failed (2 of 2 in a row)"),
            "{text}"
        );
        assert!(
            text.contains("FAIL      canary error rate 20.00% ≤ max 1%"),
            "{text}"
        );
        assert!(text.contains("failed checks in a row: 2 of 2"), "{text}");
        assert!(!text.contains("step 2/4"), "{text}");
    }

    #[test]
    fn a_step_is_chosen_by_number_and_unknown_ones_are_errors() {
        let text = render_explanation(&history(), "reviews-v3", Some(2)).unwrap();
        assert!(text.contains("step 2/4: promoted 25% → 50%"), "{text}");
        assert!(!text.contains("FAIL"), "{text}");
        let start = render_explanation(&history(), "reviews-v3", Some(0)).unwrap();
        assert!(start.contains("no analysis window"), "{start}");
        assert_eq!(
            render_explanation(&history(), "reviews-v3", Some(9)).unwrap_err(),
            ExplainError::NoSuchStep {
                rollout: "reviews-v3".into(),
                step: 9,
                known: "0, 2, 3".into()
            }
        );
        assert_eq!(
            render_explanation(&history(), "nope", None).unwrap_err(),
            ExplainError::NoSuchRollout("nope".into())
        );
    }
}
