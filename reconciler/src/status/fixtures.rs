//! Sample events for the status module's tests.

use super::event::{
    CanaryStep, Decision, Evidence, Gates, RelativeGates, RevertReason, StatusEvent,
};

pub const SHA: &str = "3f2a1c9d0e8b7a6f5e4d3c2b1a0f9e8d7c6b5a49";
pub const OLD: &str = "1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e";
pub const NEW: &str = "8e7d6c5b4a3928170f6e5d4c3b2a19087f6e5d4c";

pub fn applied() -> StatusEvent {
    StatusEvent::Applied {
        source: SHA.into(),
        services: vec!["ratings".into(), "reviews".into()],
        proxies: 6,
    }
}

pub fn wave() -> StatusEvent {
    StatusEvent::Wave {
        source: SHA.into(),
        wave: 2,
        waves: 3,
        proxies: vec!["reviews-1".into(), "reviews-2".into(), "ratings-1".into()],
        services: vec!["reviews".into(), "ratings".into()],
    }
}

pub fn reverted_nack() -> StatusEvent {
    StatusEvent::Reverted {
        source: SHA.into(),
        reason: RevertReason::Nack {
            proxy: "reviews-2".into(),
            message: "route reviews-by-header: unknown cluster `reviews-v9`".into(),
        },
        to: Some(OLD.into()),
        proxies: vec!["reviews-1".into(), "reviews-2".into()],
    }
}

pub fn reverted_unhealthy() -> StatusEvent {
    StatusEvent::Reverted {
        source: SHA.into(),
        reason: RevertReason::Unhealthy {
            proxy: "ratings-1".into(),
        },
        to: None,
        proxies: vec!["ratings-1".into()],
    }
}

pub fn reverted_deadline() -> StatusEvent {
    StatusEvent::Reverted {
        source: SHA.into(),
        reason: RevertReason::ProgressDeadline {
            deadline_ms: 600_000,
        },
        to: Some(OLD.into()),
        proxies: vec![],
    }
}

pub fn rejected() -> StatusEvent {
    StatusEvent::Rejected {
        source: SHA.into(),
        stage: "lint".into(),
        errors: 4,
        diagnostics: vec![
            "routes/reviews.yaml:12:7: error[GM1002]: unknown field `weigth`".into(),
            "routes/reviews.yaml:20:3: error[GM2004]: backend `reviews-v9` is not a subset".into(),
            "services/ratings.yaml:3:9: error[GM1001]: port: expected an integer".into(),
            "mesh.yaml:1:1: error[GM2001]: two Mesh objects".into(),
        ],
        kept: Some(OLD.into()),
    }
}

pub fn superseded() -> StatusEvent {
    StatusEvent::Superseded {
        source: SHA.into(),
        by: NEW.into(),
        wave: 1,
        waves: 3,
    }
}

pub fn gates() -> Gates {
    Gates {
        min_requests: 100,
        max_error_rate_pct: 1.0,
        max_p99_ms: Some(500.0),
        relative: Some(RelativeGates {
            max_error_rate_increase_pp: 0.5,
            max_p99_ratio: 1.5,
        }),
        failure_limit: 2,
    }
}

pub fn canary(step: u32, from: u32, to: u32, decision: Decision) -> StatusEvent {
    let reason = match decision {
        Decision::Hold => Some("not enough data: 40 canary requests < 100".to_string()),
        Decision::Rollback => Some("error rate 20.5% > 1% (2 of 2 failed checks)".to_string()),
        _ => None,
    };
    StatusEvent::CanaryStep(Box::new(CanaryStep {
        source: SHA.into(),
        rollout: "reviews-v3".into(),
        service: "reviews".into(),
        stable_subset: "v2".into(),
        canary_subset: "v3".into(),
        step,
        steps: 4,
        from_weight: from,
        to_weight: to,
        decision,
        stable: Evidence {
            requests: 1200,
            error_rate_pct: Some(0.4),
            p99_ms: Some(85.0),
        },
        canary: Evidence {
            requests: if decision == Decision::Hold { 40 } else { 310 },
            error_rate_pct: Some(if decision == Decision::Rollback {
                20.5
            } else {
                0.3
            }),
            p99_ms: Some(92.5),
        },
        gates: gates(),
        window_ms: 60_000,
        failed_checks: if decision == Decision::Rollback { 2 } else { 0 },
        reason,
    }))
}

/// One of every variant and reason.
pub fn all() -> Vec<StatusEvent> {
    vec![
        applied(),
        wave(),
        reverted_nack(),
        reverted_unhealthy(),
        reverted_deadline(),
        rejected(),
        superseded(),
        canary(2, 25, 50, Decision::Promote),
        canary(2, 25, 25, Decision::Hold),
        canary(3, 50, 0, Decision::Rollback),
        canary(4, 50, 100, Decision::Complete),
        write_back(Some(NEW), None),
        write_back(
            None,
            Some("refs/heads/main kept moving or stayed locked by another writer"),
        ),
        write_back(None, None),
    ]
}

pub fn write_back(commit: Option<&str>, refused: Option<&str>) -> StatusEvent {
    StatusEvent::WriteBack {
        source: SHA.into(),
        rollout: "reviews-v2".into(),
        service: "reviews".into(),
        branch: "main".into(),
        path: "routes/reviews.yaml".into(),
        commit: commit.map(str::to_string),
        refused: refused.map(str::to_string),
    }
}
