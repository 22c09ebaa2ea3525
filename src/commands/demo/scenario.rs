//! The story `gitmesh demo` tells, as data: three phases, each a commit to
//! the policy repo (and maybe a change to an app), and the status-branch
//! event that ends it. Pure: the runner in `mod.rs` acts on it.

use gitmesh_reconciler::status::{Decision, StatusEvent};

use super::policy::{Change, ROLLOUT_V2, ROLLOUT_V3, ROUTE_R2, ROUTE_V2};

/// The versions of `api` the demo runs, each with its own sidecar.
pub const VERSIONS: [&str; 3] = ["v1", "v2", "v3"];
/// How many instances of `web` (the caller) run; the route change goes to
/// one of them first, then to the rest.
pub const CALLERS: usize = 3;
/// Every api answer takes this long (well above a loaded machine's noise,
/// so p99 ratios between versions mean something).
pub const APP_LATENCY: &str = "20ms";

/// The Mesh's `trustDomain` (examples/demo/repo/mesh.yaml): sidecars are
/// `spiffe://demo.local/svc/<service>`.
pub const TRUST_DOMAIN: &str = "demo.local";
/// The faulty canary's error rate, set through its `/control` endpoint.
pub const FAULTY_ERROR_RATE: f64 = 0.3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseId {
    Waves,
    Canary,
    Rollback,
}

impl PhaseId {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseId::Waves => "waves",
            PhaseId::Canary => "canary",
            PhaseId::Rollback => "rollback",
        }
    }
}

/// One chapter of the story.
#[derive(Clone, Debug)]
pub struct Phase {
    pub id: PhaseId,
    pub title: &'static str,
    /// What the user is about to see, a line or two.
    pub explain: &'static str,
    /// `(version, error rate)` set on an app before the commit.
    pub fault: Option<(&'static str, f64)>,
    pub change: Change,
    /// How long to keep measuring after the phase's last event, to show
    /// the state it left.
    pub settle_ms: u64,
}

/// Whether `event`, about the phase's commit `source`, ends the phase.
pub fn ends(phase: PhaseId, source: &str, event: &StatusEvent) -> bool {
    match (phase, event) {
        (PhaseId::Waves, StatusEvent::Applied { source: s, .. }) => s == source,
        // A completed rollout's final weights are written back to main;
        // that record (a commit, or why not) closes the chapter.
        (PhaseId::Canary, StatusEvent::WriteBack { rollout, .. }) => rollout == "api-v2",
        (PhaseId::Rollback, StatusEvent::CanaryStep(step)) => {
            step.rollout == "api-v3"
                && matches!(step.decision, Decision::Rollback | Decision::Complete)
        }
        _ => false,
    }
}

/// Whether the story failed at `event` (a rejected or reverted commit of
/// its own: the demo's policy is broken, or the machine is too slow).
pub fn fails(source: &str, event: &StatusEvent) -> bool {
    matches!(
        event,
        StatusEvent::Rejected { source: s, .. } | StatusEvent::Reverted { source: s, .. }
            if s == source
    )
}

pub fn phases() -> Vec<Phase> {
    vec![
        Phase {
            id: PhaseId::Waves,
            title: "1/3 A route change, rolled out in waves",
            explain: "The commit changes api's route (answers now carry x-demo-route: r2) and asks\n\
                      for waves in its trailers: one web proxy first; once it has stayed healthy for 4s,\n\
                      wave 1 is recorded and the other two get it.",
            fault: None,
            change: Change {
                message: "api: route revision r2, with a 2s request timeout\n\n\
                          Rolled out to one proxy first, then to all of them.\n\n\
                          Gitmesh-Waves: 1, 100%\n\
                          Gitmesh-Min-Healthy-Time: 4s\n"
                    .into(),
                writes: vec![("routes/api.yaml", ROUTE_R2)],
                removes: Vec::new(),
            },
            settle_ms: 1500,
        },
        Phase {
            id: PhaseId::Canary,
            title: "2/3 A healthy canary: v2 promoted to 100%",
            explain: "A Rollout moves api's traffic from v1 to v2: 20%, 50%, 100%. Every 3s the\n\
                      reconciler reads the web sidecars' /metrics and checks v2's errors and p99 against v1's;\n\
                      at 100% it writes the final weights back to the route on main.",
            fault: None,
            change: Change {
                message: "api: release v2 as a canary (20% → 50% → 100%)\n".into(),
                writes: vec![("rollouts/api-v2.yaml", ROLLOUT_V2)],
                removes: Vec::new(),
            },
            settle_ms: 1500,
        },
        Phase {
            id: PhaseId::Rollback,
            title: "3/3 A faulty canary: v3 rolled back by its gates",
            explain: "v2 becomes the route's stable version and v3 the next canary, but v3 now fails\n\
                      30% of its requests (set through its /control endpoint): its first window fails the gates.",
            fault: Some(("v3", FAULTY_ERROR_RATE)),
            change: Change {
                message: "api: v2 is stable; release v3 as a canary\n\n\
                          The route sends everything to v2 (as the write-back of the last\n\
                          canary left it), and the Rollout api-v3 owns the v2/v3 split from here.\n"
                    .into(),
                writes: vec![
                    ("routes/api.yaml", ROUTE_V2),
                    ("rollouts/api-v3.yaml", ROLLOUT_V3),
                ],
                removes: vec!["rollouts/api-v2.yaml"],
            },
            settle_ms: 2000,
        },
    ]
}

/// The commits of the story, in order (for tests and docs).
#[cfg(test)]
pub fn changes() -> Vec<Change> {
    phases().into_iter().map(|p| p.change).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitmesh_reconciler::status::{CanaryStep, Evidence, Gates};

    fn step(rollout: &str, decision: Decision) -> StatusEvent {
        let evidence = Evidence {
            requests: 0,
            error_rate_pct: None,
            p99_ms: None,
        };
        StatusEvent::CanaryStep(Box::new(CanaryStep {
            source: "abc".into(),
            rollout: rollout.into(),
            service: "api".into(),
            stable_subset: "v1".into(),
            canary_subset: "v2".into(),
            step: 1,
            steps: 3,
            from_weight: 0,
            to_weight: 20,
            decision,
            stable: evidence.clone(),
            canary: evidence,
            gates: Gates {
                min_requests: 20,
                max_error_rate_pct: 2.0,
                max_p99_ms: None,
                relative: None,
                failure_limit: 1,
            },
            window_ms: 3000,
            failed_checks: 0,
            reason: None,
        }))
    }

    #[test]
    fn each_phase_ends_on_its_own_event_only() {
        let applied = StatusEvent::Applied {
            source: "abc".into(),
            services: vec!["web".into()],
            proxies: 3,
        };
        assert!(ends(PhaseId::Waves, "abc", &applied));
        assert!(!ends(PhaseId::Waves, "def", &applied));
        assert!(!ends(PhaseId::Canary, "abc", &applied));
        let write_back = StatusEvent::WriteBack {
            source: "abc".into(),
            rollout: "api-v2".into(),
            service: "api".into(),
            branch: "main".into(),
            path: "routes/api.yaml".into(),
            commit: Some("def".into()),
            refused: None,
        };
        assert!(ends(PhaseId::Canary, "x", &write_back));
        assert!(!ends(
            PhaseId::Canary,
            "x",
            &step("api-v2", Decision::Complete)
        ));
        assert!(ends(
            PhaseId::Rollback,
            "x",
            &step("api-v3", Decision::Rollback)
        ));
        assert!(!ends(
            PhaseId::Rollback,
            "x",
            &step("api-v2", Decision::Rollback)
        ));
    }

    #[test]
    fn the_wave_trailers_are_in_the_first_commit() {
        let first = &phases()[0].change.message;
        assert!(first.contains("\n\nGitmesh-Waves: 1, 100%\nGitmesh-Min-Healthy-Time: 4s\n"));
    }
}
