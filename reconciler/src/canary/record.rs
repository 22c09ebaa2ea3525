//! From a decision of the canary engine and the window's evidence to the
//! [`StatusEvent`] the reconciler commits on the status branch.

use super::engine::{Action, Outcome};
use super::window::Stats;
use crate::policy::RolloutSpec;
use crate::status::{self, CanaryStep, Decision, StatusEvent};

/// The thresholds of a Rollout as the status branch records them.
pub fn gates(spec: &RolloutSpec) -> status::Gates {
    let a = &spec.analysis;
    status::Gates {
        min_requests: a.min_requests,
        max_error_rate_pct: a.max_error_rate,
        max_p99_ms: a.max_p99.map(|d| d.as_millis() as f64),
        relative: a
            .relative_to_stable
            .enabled
            .then_some(status::RelativeGates {
                max_error_rate_increase_pp: a.relative_to_stable.max_error_rate_increase,
                max_p99_ratio: a.relative_to_stable.max_p99_ratio,
            }),
        failure_limit: spec.failure_limit.max(1),
    }
}

/// The recorded decision. The status branch knows four decisions; a start
/// is recorded as a promotion from 0%, and a restart (an edited Rollout) as
/// the move it makes, a rollback or a promotion to the first step (a hold
/// when the weight does not change), its reason saying it was a restart.
pub fn decision(outcome: &Outcome) -> Decision {
    match outcome.action {
        Action::Promote | Action::Start => Decision::Promote,
        Action::Hold => Decision::Hold,
        Action::Rollback => Decision::Rollback,
        Action::Complete => Decision::Complete,
        Action::Restart if outcome.to_weight < outcome.from_weight => Decision::Rollback,
        Action::Restart if outcome.to_weight > outcome.from_weight => Decision::Promote,
        Action::Restart => Decision::Hold,
    }
}

/// The status event of `outcome`, taken on the evidence of a window of
/// `window_ms` (pass [`Stats::default`] and 0 when no window was analysed:
/// a start, a restart, a deadline without a check). `source` is the full
/// sha of the desired-state commit holding the Rollout.
pub fn to_event(
    source: &str,
    spec: &RolloutSpec,
    outcome: &Outcome,
    stable: &Stats,
    canary: &Stats,
    window_ms: u64,
) -> StatusEvent {
    StatusEvent::CanaryStep(Box::new(CanaryStep {
        source: source.to_string(),
        rollout: outcome.rollout.clone(),
        service: spec.service.clone(),
        stable_subset: spec.stable_subset.clone(),
        canary_subset: spec.canary_subset.clone(),
        step: outcome.step,
        steps: outcome.steps,
        from_weight: outcome.from_weight,
        to_weight: outcome.to_weight,
        decision: decision(outcome),
        stable: stable.evidence(),
        canary: canary.evidence(),
        gates: gates(spec),
        window_ms,
        failed_checks: outcome.failed_checks,
        reason: outcome.reason.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use gitmesh_proxy_config::Duration;

    use super::*;
    use crate::canary::engine::{decide, start};
    use crate::canary::gates::{Gate, Verdict};
    use crate::policy::{Analysis, OnSuccess, RelativeGates};
    use crate::status::Evidence;

    fn spec() -> RolloutSpec {
        RolloutSpec {
            service: "reviews".into(),
            route: None,
            stable_subset: "v1".into(),
            canary_subset: "v2".into(),
            steps: vec![5, 25, 50, 100],
            analysis: Analysis {
                max_p99: Some(Duration::from_millis(500)),
                ..Analysis::default()
            },
            failure_limit: 1,
            progress_deadline: Duration::from_secs(600),
            paused: false,
            abort: false,
            on_success: OnSuccess::default(),
        }
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn a_rollback_reads_back_from_its_commit_message() {
        let spec = spec();
        let (state, _) = start("reviews-v2", &spec, 0);
        let verdict = Verdict::Fail {
            gate: Gate::ErrorRate,
            detail: "canary error rate 20% (40 of 200) > maxErrorRate 1%".into(),
        };
        let (_, outcome) = decide(&state, &spec, Some(&verdict), 30_000);
        let outcome = outcome.unwrap();
        let stable = Stats {
            requests: 3800,
            errors: 4,
            p99_ms: Some(85.5),
            ..Stats::default()
        };
        let canary = Stats {
            requests: 200,
            errors: 40,
            p99_ms: Some(90.0),
            ..Stats::default()
        };
        let event = to_event(SHA, &spec, &outcome, &stable, &canary, 30_000);
        assert_eq!(event.summary(), "reviews: canary v2 5% → 0% (rolled back)");
        let StatusEvent::CanaryStep(step) = &event else {
            panic!("not a canary step");
        };
        assert_eq!(step.decision, Decision::Rollback);
        assert_eq!((step.step, step.steps), (1, 4));
        assert_eq!(
            step.canary,
            Evidence {
                requests: 200,
                error_rate_pct: Some(20.0),
                p99_ms: Some(90.0)
            }
        );
        assert_eq!(
            step.gates,
            status::Gates {
                min_requests: 20,
                max_error_rate_pct: 1.0,
                max_p99_ms: Some(500.0),
                relative: Some(status::RelativeGates {
                    max_error_rate_increase_pp: 1.0,
                    max_p99_ratio: 1.5
                }),
                failure_limit: 1,
            }
        );
        assert!(
            step.reason
                .as_deref()
                .unwrap()
                .contains("gate error-rate failed (1 of 1 in a row): canary error rate 20%"),
            "{:?}",
            step.reason
        );
        let back = StatusEvent::from_message(&event.to_message()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn a_start_is_recorded_as_a_promotion_from_zero() {
        let mut spec = spec();
        spec.analysis.relative_to_stable = RelativeGates {
            enabled: false,
            ..RelativeGates::default()
        };
        let (_, outcome) = start("reviews-v2", &spec, 0);
        let event = to_event(
            SHA,
            &spec,
            &outcome,
            &Stats::default(),
            &Stats::default(),
            0,
        );
        assert_eq!(event.summary(), "reviews: canary v2 0% → 5% (promoted)");
        let StatusEvent::CanaryStep(step) = &event else {
            panic!("not a canary step");
        };
        assert_eq!(step.gates.relative, None);
        assert_eq!(
            StatusEvent::from_message(&event.to_message()).unwrap(),
            event
        );
    }

    #[test]
    fn restarts_map_to_the_move_they_make() {
        let o = |from, to| Outcome {
            rollout: "r".into(),
            action: Action::Restart,
            step: 3,
            steps: 4,
            from_weight: from,
            to_weight: to,
            failed_checks: 0,
            reason: None,
        };
        assert_eq!(decision(&o(50, 5)), Decision::Rollback);
        assert_eq!(decision(&o(0, 5)), Decision::Promote);
        assert_eq!(decision(&o(5, 5)), Decision::Hold);
    }
}
