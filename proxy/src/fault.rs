//! Fault injection: delay and/or abort a share of a rule's requests, to test
//! how callers cope. Decided per request before any upstream is contacted.

use std::time::Duration;

use http::StatusCode;

use gitmesh_proxy_config::Fault;

#[derive(Debug)]
pub struct FaultPlan {
    delay: Option<(Duration, f64)>,
    abort: Option<(StatusCode, f64)>,
}

/// What to do to one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FaultAction {
    pub delay: Option<Duration>,
    pub abort: Option<StatusCode>,
}

impl FaultPlan {
    pub fn new(f: &Fault) -> Self {
        FaultPlan {
            delay: f.delay.as_ref().map(|d| (d.duration.to_std(), d.percent)),
            abort: f
                .abort
                .as_ref()
                .and_then(|a| StatusCode::from_u16(a.status).ok().map(|s| (s, a.percent))),
        }
    }

    /// Rolls the dice; `roll()` yields uniform numbers in `[0, 100)`.
    pub fn decide(&self, mut roll: impl FnMut() -> f64) -> FaultAction {
        FaultAction {
            delay: self.delay.and_then(|(d, p)| (roll() < p).then_some(d)),
            abort: self.abort.and_then(|(s, p)| (roll() < p).then_some(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decides() {
        let f: Fault = serde_json::from_str(
            r#"{"delay":{"duration":"1s","percent":50},"abort":{"status":503,"percent":0}}"#,
        )
        .unwrap();
        let plan = FaultPlan::new(&f);
        let a = plan.decide(|| 10.0);
        assert_eq!(a.delay, Some(Duration::from_secs(1)));
        assert_eq!(a.abort, None);
        assert_eq!(plan.decide(|| 60.0), FaultAction::default());
        let mut delayed = 0;
        for _ in 0..1000 {
            delayed += usize::from(
                plan.decide(|| rand::random_range(0.0..100.0))
                    .delay
                    .is_some(),
            );
        }
        assert!((400..600).contains(&delayed), "{delayed}");
    }
}
