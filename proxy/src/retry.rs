//! Retry decisions: which outcomes of a try may be retried, and how long to
//! wait first (exponential backoff with full jitter). The budget that caps
//! retries is in `budget.rs`; the loop that runs tries is in `forward.rs`.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use gitmesh_proxy_config::{RetryOn, RetryPolicy};

use crate::budget::RetryBudget;

/// How one try ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryOutcome {
    Status(StatusCode),
    ConnectFailure,
    Reset,
    /// The upstream's response could not be parsed.
    Malformed,
    PerTryTimeout,
    /// The caller's request body failed while it was being sent.
    CallerBody,
}

impl TryOutcome {
    /// The reason label counted in metrics and sent in `x-gitmesh-error`.
    pub fn reason(self) -> &'static str {
        match self {
            TryOutcome::Status(_) => "status",
            TryOutcome::ConnectFailure => "connect-failure",
            TryOutcome::Reset => "upstream-reset",
            TryOutcome::Malformed => "upstream-malformed-response",
            TryOutcome::PerTryTimeout => "per-try-timeout",
            TryOutcome::CallerBody => "request-body-error",
        }
    }
}

/// A compiled retry policy, with the budget it draws from.
#[derive(Debug)]
pub struct RetryPlan {
    pub max_retries: u32,
    pub per_try_timeout: Option<Duration>,
    server_error: bool,
    gateway_error: bool,
    connect_failure: bool,
    reset: bool,
    per_try_timeout_retry: bool,
    codes: Vec<u16>,
    base: Duration,
    max: Duration,
    pub budget: Arc<RetryBudget>,
}

impl RetryPlan {
    pub fn new(policy: &RetryPolicy) -> Self {
        let has = |c: RetryOn| policy.retry_on.contains(&c);
        RetryPlan {
            max_retries: policy.attempts,
            per_try_timeout: policy.per_try_timeout.map(|d| d.to_std()),
            server_error: has(RetryOn::ServerError),
            gateway_error: has(RetryOn::GatewayError),
            connect_failure: has(RetryOn::ConnectFailure),
            reset: has(RetryOn::Reset),
            per_try_timeout_retry: has(RetryOn::PerTryTimeout),
            codes: policy
                .retry_on
                .iter()
                .filter_map(|c| match c {
                    RetryOn::Status(s) => Some(*s),
                    _ => None,
                })
                .collect(),
            base: policy.backoff.base_interval.to_std(),
            max: policy.backoff.max_interval.to_std(),
            budget: Arc::new(RetryBudget::new(&policy.budget)),
        }
    }

    /// Whether the conditions allow retrying this outcome.
    pub fn retryable(&self, outcome: TryOutcome) -> bool {
        match outcome {
            TryOutcome::Status(s) => {
                let code = s.as_u16();
                (self.server_error && s.is_server_error())
                    || (self.gateway_error && matches!(code, 502..=504))
                    || self.codes.contains(&code)
            }
            TryOutcome::ConnectFailure => self.connect_failure,
            // A response that cannot be read is as good as none.
            TryOutcome::Reset | TryOutcome::Malformed => self.reset,
            TryOutcome::PerTryTimeout => self.per_try_timeout_retry,
            // The body is gone (and streamed bodies are never retried).
            TryOutcome::CallerBody => false,
        }
    }

    /// The wait before retry number `retry` (0 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        backoff(self.base, self.max, retry, rand::random())
    }
}

/// Full jitter: a uniformly random wait in `[0, min(max, base × 2^retry)]`;
/// `unit` is a random number in `[0, 1)`.
pub fn backoff(base: Duration, max: Duration, retry: u32, unit: f64) -> Duration {
    let ceiling = base
        .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
        .min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (b, m) = (Duration::from_millis(25), Duration::from_millis(250));
        assert_eq!(backoff(b, m, 0, 1.0), Duration::from_millis(25));
        assert_eq!(backoff(b, m, 1, 1.0), Duration::from_millis(50));
        assert_eq!(backoff(b, m, 3, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(b, m, 4, 1.0), m);
        assert_eq!(backoff(b, m, 40, 1.0), m);
        assert_eq!(backoff(b, m, 2, 0.0), Duration::ZERO);
        for retry in 0..10 {
            let d = backoff(b, m, retry, rand::random());
            assert!(d <= m);
        }
    }

    #[test]
    fn conditions() {
        let p: RetryPolicy =
            serde_json::from_str(r#"{"attempts":2,"retryOn":["gateway-error",409,"reset"]}"#)
                .unwrap();
        let plan = RetryPlan::new(&p);
        let s = |c| TryOutcome::Status(StatusCode::from_u16(c).unwrap());
        assert!(plan.retryable(s(503)));
        assert!(!plan.retryable(s(500)));
        assert!(plan.retryable(s(409)));
        assert!(!plan.retryable(s(200)));
        assert!(plan.retryable(TryOutcome::Reset));
        assert!(plan.retryable(TryOutcome::Malformed));
        assert!(!plan.retryable(TryOutcome::ConnectFailure));
        assert!(!plan.retryable(TryOutcome::PerTryTimeout));
        assert!(!plan.retryable(TryOutcome::CallerBody));
        let everything: RetryPolicy = serde_json::from_str(
            r#"{"attempts":2,"retryOn":["5xx","gateway-error","reset","connect-failure","per-try-timeout"]}"#,
        )
        .unwrap();
        assert!(!RetryPlan::new(&everything).retryable(TryOutcome::CallerBody));
        let no_reset: RetryPolicy =
            serde_json::from_str(r#"{"attempts":2,"retryOn":["5xx"]}"#).unwrap();
        assert!(!RetryPlan::new(&no_reset).retryable(TryOutcome::Malformed));
    }
}
