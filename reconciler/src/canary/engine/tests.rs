use gitmesh_proxy_config::Duration;

use super::*;
use crate::canary::gates::Gate;
use crate::policy::{Analysis, OnSuccess};

const DEADLINE: u64 = 600_000;

fn spec() -> RolloutSpec {
    RolloutSpec {
        service: "reviews".into(),
        route: None,
        stable_subset: "v1".into(),
        canary_subset: "v2".into(),
        steps: vec![5, 25, 50, 100],
        analysis: Analysis::default(),
        failure_limit: 2,
        progress_deadline: Duration::from_millis(DEADLINE),
        paused: false,
        abort: false,
        on_success: OnSuccess::default(),
    }
}

fn paused() -> RolloutSpec {
    RolloutSpec {
        paused: true,
        ..spec()
    }
}

fn pass() -> Verdict {
    Verdict::Pass { note: None }
}

fn fail() -> Verdict {
    Verdict::Fail {
        gate: Gate::ErrorRate,
        detail: "canary error rate 20% (40 of 200) > maxErrorRate 1%".into(),
    }
}

fn no_data() -> Verdict {
    Verdict::NoData {
        reason: "canary had 5 requests in the window, fewer than minRequests 20".into(),
    }
}

/// A rollout at step `index` of [5, 25, 50, 100], started at t = 1000.
fn at(index: u32) -> CanaryState {
    let (mut state, _) = start("reviews-v2", &spec(), 1_000);
    state.step = index;
    state.weight = spec().steps[index as usize];
    state
}

/// Runs one decision that must produce an outcome.
fn step(
    state: &CanaryState,
    spec: &RolloutSpec,
    v: Option<&Verdict>,
    now: u64,
) -> (CanaryState, Outcome) {
    let (next, outcome) = decide(state, spec, v, now);
    (next, outcome.expect("an outcome"))
}

#[test]
fn start_enters_the_first_step() {
    let (state, o) = start("reviews-v2", &spec(), 1_000);
    assert_eq!(
        state,
        CanaryState {
            rollout: "reviews-v2".into(),
            spec_digest: spec_digest(&spec()),
            step: 0,
            weight: 5,
            step_started_ms: 1_000,
            consecutive_failures: 0,
            status: CanaryStatus::Progressing,
        }
    );
    assert_eq!(o.action, Action::Start);
    assert_eq!((o.step, o.steps, o.from_weight, o.to_weight), (0, 4, 0, 5));
    let (state, o) = start("reviews-v2", &paused(), 1_000);
    assert_eq!(state.status, CanaryStatus::Paused);
    assert_eq!(o.reason.as_deref(), Some("rollout started (paused)"));
}

#[test]
fn a_window_not_over_changes_nothing() {
    let state = at(1);
    assert_eq!(decide(&state, &spec(), None, 30_000), (state.clone(), None));
    // Level-triggered: the same input, the same answer.
    assert_eq!(decide(&state, &spec(), None, 30_000), (state, None));
}

#[test]
fn pass_promotes_to_the_next_step() {
    let mut state = at(0);
    state.consecutive_failures = 1;
    let (next, o) = step(&state, &spec(), Some(&pass()), 31_000);
    assert_eq!(
        (next.step, next.weight, next.step_started_ms),
        (1, 25, 31_000)
    );
    assert_eq!(next.consecutive_failures, 0);
    assert_eq!(next.status, CanaryStatus::Progressing);
    assert_eq!(o.action, Action::Promote);
    assert_eq!(
        (o.step, o.steps, o.from_weight, o.to_weight, o.failed_checks),
        (1, 4, 5, 25, 0)
    );
    assert_eq!(o.reason.as_deref(), Some("the gates passed"));
}

#[test]
fn a_pass_note_is_kept() {
    let v = Verdict::Pass {
        note: Some("gates relative to stable skipped: stable had 0 requests".into()),
    };
    let (_, o) = step(&at(0), &spec(), Some(&v), 31_000);
    assert_eq!(
        o.reason.as_deref(),
        Some("the gates passed (gates relative to stable skipped: stable had 0 requests)")
    );
}

#[test]
fn pass_at_the_last_step_completes_and_stays_complete() {
    let mut state = at(0);
    let mut now = 1_000;
    let mut seen = Vec::new();
    loop {
        now += 30_000;
        let (next, o) = step(&state, &spec(), Some(&pass()), now);
        seen.push((o.action, o.from_weight, o.to_weight));
        state = next;
        if o.action == Action::Complete {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            (Action::Promote, 5, 25),
            (Action::Promote, 25, 50),
            (Action::Promote, 50, 100),
            (Action::Complete, 100, 100),
        ]
    );
    assert_eq!((state.weight, state.status), (100, CanaryStatus::Complete));
    // Final: later verdicts or the deadline change nothing.
    for v in [Some(fail()), Some(pass()), None] {
        assert_eq!(
            decide(&state, &spec(), v.as_ref(), now + 10 * DEADLINE),
            (state.clone(), None)
        );
    }
}

#[test]
fn complete_sets_100_even_if_the_steps_stop_short() {
    let mut s = spec();
    s.steps = vec![10, 50];
    let (mut state, _) = start("r", &s, 0);
    state.step = 1;
    state.weight = 50;
    let (next, o) = step(&state, &s, Some(&pass()), 1);
    assert_eq!((o.action, next.weight), (Action::Complete, 100));
}

#[test]
fn failures_hold_until_the_failure_limit_then_roll_back() {
    let (held, o) = step(&at(2), &spec(), Some(&fail()), 31_000);
    assert_eq!(o.action, Action::Hold);
    assert_eq!((held.weight, held.consecutive_failures), (50, 1));
    assert_eq!((o.from_weight, o.to_weight, o.failed_checks), (50, 50, 1));
    assert_eq!(
        o.reason.as_deref(),
        Some(
            "gate error-rate failed (1 of 2 in a row): canary error rate 20% (40 of 200) > maxErrorRate 1%"
        )
    );
    let (gone, o) = step(&held, &spec(), Some(&fail()), 61_000);
    assert_eq!(o.action, Action::Rollback);
    assert_eq!((gone.weight, gone.status), (0, CanaryStatus::RolledBack));
    assert_eq!(
        (o.step, o.from_weight, o.to_weight, o.failed_checks),
        (3, 50, 0, 2)
    );
    assert!(
        o.reason
            .unwrap()
            .starts_with("gate error-rate failed (2 of 2 in a row)")
    );
    // Final.
    assert_eq!(
        decide(&gone, &spec(), Some(&pass()), 91_000),
        (gone.clone(), None)
    );
}

#[test]
fn a_failure_limit_of_one_rolls_back_at_once() {
    for limit in [1, 0] {
        // A limit of 0 (refused by the schema) behaves as 1.
        let mut s = spec();
        s.failure_limit = limit;
        let state = CanaryState {
            spec_digest: spec_digest(&s),
            ..at(0)
        };
        let (_, o) = step(&state, &s, Some(&fail()), 31_000);
        assert_eq!(o.action, Action::Rollback, "limit {limit}");
    }
}

#[test]
fn a_pass_clears_the_failure_streak() {
    let (held, _) = step(&at(0), &spec(), Some(&fail()), 31_000);
    let (promoted, _) = step(&held, &spec(), Some(&pass()), 61_000);
    let (held, o) = step(&promoted, &spec(), Some(&fail()), 91_000);
    assert_eq!((o.action, held.consecutive_failures), (Action::Hold, 1));
}

#[test]
fn no_data_holds_without_counting_or_clearing_failures() {
    let (held, o) = step(&at(1), &spec(), Some(&no_data()), 31_000);
    assert_eq!(o.action, Action::Hold);
    assert_eq!((held.weight, held.consecutive_failures), (25, 0));
    assert_eq!(
        o.reason.as_deref(),
        Some("not enough data: canary had 5 requests in the window, fewer than minRequests 20")
    );
    // fail, no data, fail: two failures in a row → rollback.
    let (s1, _) = step(&at(1), &spec(), Some(&fail()), 31_000);
    let (s2, _) = step(&s1, &spec(), Some(&no_data()), 61_000);
    assert_eq!(s2.consecutive_failures, 1);
    let (_, o) = step(&s2, &spec(), Some(&fail()), 91_000);
    assert_eq!(o.action, Action::Rollback);
}

#[test]
fn no_data_rolls_back_when_the_progress_deadline_passes() {
    let state = at(1); // step started at 1000
    let (_, o) = step(&state, &spec(), Some(&no_data()), 1_000 + DEADLINE - 1);
    assert_eq!(o.action, Action::Hold);
    let (next, o) = step(&state, &spec(), Some(&no_data()), 1_000 + DEADLINE);
    assert_eq!(o.action, Action::Rollback);
    assert_eq!((next.weight, next.status), (0, CanaryStatus::RolledBack));
    assert_eq!(
        o.reason.as_deref(),
        Some(
            "no promotion within the progress deadline of 10m at 25%; last check: not enough \
             data: canary had 5 requests in the window, fewer than minRequests 20"
        )
    );
}

#[test]
fn the_deadline_also_applies_between_checks_and_after_a_failure() {
    let state = at(1);
    let (_, o) = step(&state, &spec(), None, 1_000 + DEADLINE);
    assert_eq!(o.action, Action::Rollback);
    assert_eq!(
        o.reason.as_deref(),
        Some("no promotion within the progress deadline of 10m at 25%")
    );
    let (_, o) = step(&state, &spec(), Some(&fail()), 1_000 + DEADLINE);
    assert_eq!((o.action, o.failed_checks), (Action::Rollback, 1));
    assert!(
        o.reason
            .unwrap()
            .contains("; last check: gate error-rate failed (1 of 2")
    );
}

#[test]
fn a_pass_at_the_deadline_still_promotes() {
    let (next, o) = step(&at(1), &spec(), Some(&pass()), 1_000 + DEADLINE);
    assert_eq!((o.action, next.weight), (Action::Promote, 50));
}

#[test]
fn the_deadline_counts_from_the_last_promotion() {
    let (promoted, _) = step(&at(0), &spec(), Some(&pass()), 500_000);
    let (_, o) = step(&promoted, &spec(), Some(&no_data()), 1_000 + DEADLINE);
    assert_eq!(o.action, Action::Hold);
    let (_, o) = step(&promoted, &spec(), None, 500_000 + DEADLINE);
    assert_eq!(o.action, Action::Rollback);
}

#[test]
fn paused_holds_even_when_the_gates_pass() {
    let (next, o) = step(&at(1), &paused(), Some(&pass()), 31_000);
    assert_eq!(o.action, Action::Hold);
    assert_eq!(
        (next.weight, next.step, next.status),
        (25, 1, CanaryStatus::Paused)
    );
    assert_eq!(o.reason.as_deref(), Some("paused; the gates passed"));
    // Without a verdict, pausing is recorded once, when it happens.
    let (next, o) = decide(&at(1), &paused(), None, 31_000);
    assert_eq!(next.status, CanaryStatus::Paused);
    let o = o.unwrap();
    assert_eq!(o.action, Action::Hold);
    assert!(o.reason.unwrap().starts_with("paused by hand"));
    assert_eq!(decide(&next, &paused(), None, 32_000).1, None);
}

#[test]
fn paused_still_rolls_back_on_failures() {
    let (held, o) = step(&at(2), &paused(), Some(&fail()), 31_000);
    assert_eq!(o.action, Action::Hold);
    assert!(
        o.reason
            .unwrap()
            .starts_with("paused; gate error-rate failed (1 of 2")
    );
    let (gone, o) = step(&held, &paused(), Some(&fail()), 61_000);
    assert_eq!(o.action, Action::Rollback);
    assert_eq!((gone.weight, gone.status), (0, CanaryStatus::RolledBack));
}

#[test]
fn paused_ignores_the_deadline() {
    let late = 1_000 + 5 * DEADLINE;
    let (next, o) = step(&at(1), &paused(), Some(&no_data()), late);
    assert_eq!((o.action, next.weight), (Action::Hold, 25));
    let (held, _) = decide(&at(1), &paused(), None, 31_000);
    assert_eq!(decide(&held, &paused(), None, late).1, None);
}

#[test]
fn resuming_restarts_the_step_clock() {
    let (pausedstate, _) = decide(&at(1), &paused(), None, 31_000);
    let late = 1_000 + 5 * DEADLINE;
    let (resumed, o) = decide(&pausedstate, &spec(), None, late);
    let o = o.unwrap();
    assert_eq!((o.action, o.to_weight), (Action::Hold, 25));
    assert!(o.reason.unwrap().starts_with("resumed"));
    assert_eq!(resumed.status, CanaryStatus::Progressing);
    assert_eq!(resumed.step_started_ms, late);
    assert_eq!(resumed.spec_digest, pausedstate.spec_digest);
    let (_, o) = step(&resumed, &spec(), Some(&no_data()), late + DEADLINE - 1);
    assert_eq!(o.action, Action::Hold);
    let (_, o) = step(&resumed, &spec(), Some(&no_data()), late + DEADLINE);
    assert_eq!(o.action, Action::Rollback);
    // Resuming with a verdict at hand acts on it at once.
    let (next, o) = step(&pausedstate, &spec(), Some(&pass()), late);
    assert_eq!(
        (o.action, next.weight, next.status),
        (Action::Promote, 50, CanaryStatus::Progressing)
    );
}

#[test]
fn an_edited_rollout_restarts_from_the_first_step() {
    let mut edited = spec();
    edited.analysis.max_error_rate = 2.0;
    let mut state = at(2);
    state.consecutive_failures = 1;
    // The verdict was taken under the old spec: it is not acted on.
    let (next, o) = step(&state, &edited, Some(&fail()), 90_000);
    assert_eq!(o.action, Action::Restart);
    assert_eq!(
        next,
        CanaryState {
            rollout: "reviews-v2".into(),
            spec_digest: spec_digest(&edited),
            step: 0,
            weight: 5,
            step_started_ms: 90_000,
            consecutive_failures: 0,
            status: CanaryStatus::Progressing,
        }
    );
    assert_eq!(
        (o.step, o.from_weight, o.to_weight, o.failed_checks),
        (3, 50, 5, 0)
    );
    let reason = o.reason.unwrap();
    assert!(
        reason.contains("while progressing at step 3 of 4 (50%): restarted from step 1 of 4 at 5%"),
        "{reason}"
    );
    // Then it runs normally under the new spec.
    assert_eq!(decide(&next, &edited, None, 91_000), (next.clone(), None));
}

#[test]
fn editing_a_finished_rollout_starts_it_again() {
    let (gone, _) = {
        let mut s = spec();
        s.failure_limit = 1;
        let mut state = at(1);
        state.spec_digest = spec_digest(&s);
        step(&state, &s, Some(&fail()), 31_000)
    };
    assert_eq!(gone.status, CanaryStatus::RolledBack);
    let mut fixed = spec();
    fixed.canary_subset = "v3".into();
    let (next, o) = step(&gone, &fixed, None, 61_000);
    assert_eq!(o.action, Action::Restart);
    assert_eq!((o.from_weight, o.to_weight), (0, 5));
    assert!(o.reason.unwrap().contains("while rolled back"));
    assert_eq!(next.status, CanaryStatus::Progressing);
    // An edit that also pauses restarts paused.
    let mut fixed_paused = fixed.clone();
    fixed_paused.paused = true;
    fixed_paused.steps = vec![1, 100];
    let (next, _) = step(&gone, &fixed_paused, None, 61_000);
    assert_eq!((next.status, next.weight), (CanaryStatus::Paused, 1));
}

#[test]
fn pausing_is_not_an_edit() {
    assert_eq!(spec_digest(&spec()), spec_digest(&paused()));
    let mut other = spec();
    other.steps = vec![10, 100];
    assert_ne!(spec_digest(&spec()), spec_digest(&other));
    assert_eq!(spec_digest(&spec()).len(), 16);
}

#[test]
fn state_round_trips_through_json() {
    let state = CanaryState {
        status: CanaryStatus::RolledBack,
        ..at(2)
    };
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["stepStartedMs"], 1_000);
    assert_eq!(json["consecutiveFailures"], 0);
    assert_eq!(json["status"], "rolledBack");
    let back: CanaryState = serde_json::from_value(json).unwrap();
    assert_eq!(back, state);
}

#[test]
fn abort_rolls_back_at_once_and_removing_it_restarts() {
    let aborted = RolloutSpec {
        abort: true,
        ..spec()
    };
    let (gone, o) = decide(&at(2), &aborted, None, 31_000);
    let o = o.unwrap();
    assert_eq!(
        (o.action, o.from_weight, o.to_weight),
        (Action::Rollback, 50, 0)
    );
    assert!(o.reason.unwrap().starts_with("aborted by hand"));
    assert_eq!(gone.status, CanaryStatus::RolledBack);
    // Recorded once; a passing window changes nothing.
    assert_eq!(decide(&gone, &aborted, Some(&pass()), 61_000).1, None);
    // Removing `abort` is an edit: back to the first step.
    let (again, o) = decide(&gone, &spec(), None, 91_000);
    assert_eq!(o.unwrap().action, Action::Restart);
    assert_eq!((again.weight, again.status), (5, CanaryStatus::Progressing));
    // A Rollout aborted before it started never sends the canary traffic.
    let (state, o) = start("reviews-v2", &aborted, 0);
    assert_eq!((state.weight, o.action), (0, Action::Rollback));
}
