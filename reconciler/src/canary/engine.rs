//! The canary state machine of one Rollout: a pure function from the
//! recorded state, the Rollout as it is now in Git, the verdict of the
//! window that just ended (if one did) and the time, to the next state and
//! the decision to record.
//!
//! Level-triggered like [`crate::waves`]: [`decide`] compares the desired
//! Rollout with the recorded [`CanaryState`] every time and keeps no other
//! history, so a restarted reconciler resumes from the state it stored.
//!
//! - Pass: promote to the next weight step, or complete after the last.
//! - Fail: one more consecutive failure; roll back when they reach
//!   `failureLimit`, else hold.
//! - No data: hold; it is not a failure, and it neither adds to nor clears
//!   the failure streak. The step rolls back when `progressDeadline` passes
//!   without a promotion.
//! - `paused: true`: hold at the step whatever the gates say, but failures
//!   still count and still roll back. The deadline does not run while
//!   paused; resuming restarts the step's clock.
//! - Pausing and resuming are recorded when they happen (a hold saying
//!   which), so the state on the status branch always knows.
//! - `abort: true`: roll back to 0% at once, recorded as "aborted by hand";
//!   final. Removing `abort` is an edit: the rollout starts again.
//! - An edited Rollout (its digest changed; `paused` is not part of it)
//!   restarts from the first step, whatever state it was in.
//!
//! Rolled back and complete are final until the Rollout is edited.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::gates::Verdict;
use crate::policy::RolloutSpec;

/// Where a rollout is, as stored in the reconciler's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryState {
    /// The Rollout's `metadata.name`.
    pub rollout: String,
    /// [`spec_digest`] of the Rollout this state belongs to.
    pub spec_digest: String,
    /// Index into the Rollout's `steps` of the step in progress.
    pub step: u32,
    /// Canary weight (percent) in force.
    pub weight: u32,
    /// When the step started (or the rollout resumed), in the caller's
    /// milliseconds; the progress deadline counts from here.
    pub step_started_ms: u64,
    pub consecutive_failures: u32,
    pub status: CanaryStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CanaryStatus {
    Progressing,
    Paused,
    Complete,
    RolledBack,
}

impl CanaryStatus {
    pub fn is_final(self) -> bool {
        matches!(self, CanaryStatus::Complete | CanaryStatus::RolledBack)
    }
}

/// What happened, for the status branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The rollout began at its first step.
    Start,
    /// The Rollout was edited: back to the first step.
    Restart,
    Promote,
    Hold,
    Rollback,
    Complete,
}

/// A decision and what it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub rollout: String,
    pub action: Action,
    /// 1-based number of the step the decision is about (the one in
    /// progress when it was taken; 0 for [`Action::Start`]).
    pub step: u32,
    pub steps: u32,
    pub from_weight: u32,
    pub to_weight: u32,
    /// Consecutive failed checks after this decision.
    pub failed_checks: u32,
    /// Why: the failed gate with its numbers, the missing data, the pause,
    /// the edit, or what a passing check skipped.
    pub reason: Option<String>,
}

/// A digest of everything in a Rollout but `paused`, so pausing and
/// resuming are not edits.
pub fn spec_digest(spec: &RolloutSpec) -> String {
    let mut unpaused = spec.clone();
    unpaused.paused = false;
    // Serializing plain data to a string cannot fail; an empty digest
    // would only mean "always restart", never a panic.
    let json = serde_json::to_string(&unpaused).unwrap_or_default();
    let hash = Sha256::digest(json.as_bytes());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The weight steps, never empty (validation makes them end at 100).
fn weights(spec: &RolloutSpec) -> Vec<u32> {
    if spec.steps.is_empty() {
        vec![100]
    } else {
        spec.steps.iter().map(|w| (*w).min(100)).collect()
    }
}

fn fresh(rollout: &str, spec: &RolloutSpec, now_ms: u64) -> CanaryState {
    CanaryState {
        rollout: rollout.to_string(),
        spec_digest: spec_digest(spec),
        step: 0,
        weight: weights(spec)[0],
        step_started_ms: now_ms,
        consecutive_failures: 0,
        status: if spec.paused {
            CanaryStatus::Paused
        } else {
            CanaryStatus::Progressing
        },
    }
}

/// Begins a rollout with no recorded state: the first step's weight.
pub fn start(rollout: &str, spec: &RolloutSpec, now_ms: u64) -> (CanaryState, Outcome) {
    let mut state = fresh(rollout, spec, now_ms);
    if spec.abort {
        state.weight = 0;
        state.status = CanaryStatus::RolledBack;
        let outcome = Outcome {
            rollout: rollout.to_string(),
            action: Action::Rollback,
            step: 0,
            steps: weights(spec).len() as u32,
            from_weight: 0,
            to_weight: 0,
            failed_checks: 0,
            reason: Some("aborted by hand (abort: true) before it started".into()),
        };
        return (state, outcome);
    }
    let outcome = Outcome {
        rollout: rollout.to_string(),
        action: Action::Start,
        step: 0,
        steps: weights(spec).len() as u32,
        from_weight: 0,
        to_weight: state.weight,
        failed_checks: 0,
        reason: Some(format!(
            "rollout started{}",
            if spec.paused { " (paused)" } else { "" }
        )),
    };
    (state, outcome)
}

/// The next state and, when something is to be recorded, the decision.
/// `verdict` is `None` while the current window is not over.
pub fn decide(
    state: &CanaryState,
    spec: &RolloutSpec,
    verdict: Option<&Verdict>,
    now_ms: u64,
) -> (CanaryState, Option<Outcome>) {
    let steps = weights(spec);
    let digest = spec_digest(spec);
    let outcome = |action, next: &CanaryState, reason: String| Outcome {
        rollout: state.rollout.clone(),
        action,
        step: state.step.saturating_add(1),
        steps: steps.len() as u32,
        from_weight: state.weight,
        to_weight: next.weight,
        failed_checks: next.consecutive_failures,
        reason: Some(reason),
    };

    if spec.abort {
        let mut next = state.clone();
        next.spec_digest = digest;
        if state.status == CanaryStatus::RolledBack && state.weight == 0 {
            return (next, None);
        }
        next.weight = 0;
        next.status = CanaryStatus::RolledBack;
        let reason = format!(
            "aborted by hand (abort: true) while {}: all traffic back to {}",
            describe(state, steps.len()),
            spec.stable_subset
        );
        let o = outcome(Action::Rollback, &next, reason);
        return (next, Some(o));
    }
    if digest != state.spec_digest {
        let next = fresh(&state.rollout, spec, now_ms);
        let reason = format!(
            "the Rollout was edited (spec {} → {}) while {}: restarted from step 1 of {} at {}%",
            state.spec_digest,
            digest,
            describe(state, steps.len()),
            steps.len(),
            next.weight
        );
        let o = outcome(Action::Restart, &next, reason);
        return (next, Some(o));
    }
    if state.status.is_final() {
        return (state.clone(), None);
    }

    let mut next = state.clone();
    let mut toggled = None;
    if spec.paused {
        next.status = CanaryStatus::Paused;
        if state.status != CanaryStatus::Paused {
            toggled = Some(format!(
                "paused by hand (paused: true) at {}%: no promotion until it is removed; \
                 a failing gate still rolls back",
                state.weight
            ));
        }
    } else if state.status == CanaryStatus::Paused {
        next.status = CanaryStatus::Progressing;
        next.step_started_ms = now_ms;
        toggled = Some(format!(
            "resumed (paused removed) at {}%: the step's analysis and deadline start again",
            state.weight
        ));
    }
    let paused = spec.paused;
    let index = (state.step as usize).min(steps.len() - 1);
    let limit = spec.failure_limit.max(1);
    let deadline_ms = spec.progress_deadline.as_millis();
    let deadline_passed = !paused && now_ms.saturating_sub(next.step_started_ms) >= deadline_ms;
    let deadline_reason = |last: &str| {
        format!(
            "no promotion within the progress deadline of {} at {}%{last}",
            spec.progress_deadline, state.weight
        )
    };
    let rollback = |mut next: CanaryState, reason: String| {
        next.weight = 0;
        next.status = CanaryStatus::RolledBack;
        let o = outcome(Action::Rollback, &next, reason);
        (next, Some(o))
    };

    match verdict {
        Some(Verdict::Pass { note }) => {
            next.consecutive_failures = 0;
            let note = note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            if paused {
                let o = outcome(
                    Action::Hold,
                    &next,
                    format!("paused; the gates passed{note}"),
                );
                return (next, Some(o));
            }
            next.step_started_ms = now_ms;
            if index + 1 < steps.len() {
                next.step = (index + 1) as u32;
                next.weight = steps[index + 1];
                let o = outcome(Action::Promote, &next, format!("the gates passed{note}"));
                (next, Some(o))
            } else {
                next.weight = 100;
                next.status = CanaryStatus::Complete;
                let o = outcome(
                    Action::Complete,
                    &next,
                    format!("the gates passed at the last step{note}"),
                );
                (next, Some(o))
            }
        }
        Some(Verdict::Fail { gate, detail }) => {
            next.consecutive_failures = state.consecutive_failures.saturating_add(1);
            let failed = format!(
                "gate {gate} failed ({} of {limit} in a row): {detail}",
                next.consecutive_failures
            );
            if next.consecutive_failures >= limit {
                return rollback(next, failed);
            }
            if deadline_passed {
                return rollback(next, deadline_reason(&format!("; last check: {failed}")));
            }
            let o = outcome(Action::Hold, &next, hold_reason(paused, &failed));
            (next, Some(o))
        }
        Some(Verdict::NoData { reason }) => {
            let why = format!("not enough data: {reason}");
            if deadline_passed {
                return rollback(next, deadline_reason(&format!("; last check: {why}")));
            }
            let o = outcome(Action::Hold, &next, hold_reason(paused, &why));
            (next, Some(o))
        }
        None if deadline_passed => rollback(next, deadline_reason("")),
        None => match toggled {
            Some(reason) => {
                let o = outcome(Action::Hold, &next, reason);
                (next, Some(o))
            }
            None => (next, None),
        },
    }
}

fn hold_reason(paused: bool, why: &str) -> String {
    if paused {
        format!("paused; {why}")
    } else {
        why.to_string()
    }
}

fn describe(state: &CanaryState, steps: usize) -> String {
    match state.status {
        CanaryStatus::Complete => "complete".to_string(),
        CanaryStatus::RolledBack => "rolled back".to_string(),
        CanaryStatus::Progressing | CanaryStatus::Paused => format!(
            "{} at step {} of {steps} ({}%)",
            if state.status == CanaryStatus::Paused {
                "paused"
            } else {
                "progressing"
            },
            state.step + 1,
            state.weight
        ),
    }
}

#[cfg(test)]
mod tests;
