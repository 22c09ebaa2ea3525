//! The retry budget: retries may add at most `percent` of the requests seen
//! in the last 10 seconds, plus `minRetriesPerSecond` × 10, so a failing
//! upstream cannot be stormed. Counted in ten one-second buckets of atomics:
//! no lock on the request path.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use gitmesh_proxy_config::RetryBudget as BudgetConfig;

const WINDOW_SECS: u64 = 10;

#[derive(Debug, Default)]
struct Bucket {
    /// Which second (since the clock's epoch) this bucket counts, plus one
    /// (0 = never used).
    second: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

#[derive(Debug)]
pub struct RetryBudget {
    percent: f64,
    min_per_second: u32,
    buckets: [Bucket; WINDOW_SECS as usize],
}

impl RetryBudget {
    pub fn new(config: &BudgetConfig) -> Self {
        Self {
            percent: config.percent,
            min_per_second: config.min_retries_per_second,
            buckets: Default::default(),
        }
    }

    fn bucket(&self, now_ms: u64) -> &Bucket {
        let tag = now_ms / 1000 + 1;
        let b = &self.buckets[(tag % WINDOW_SECS) as usize];
        let seen = b.second.load(Ordering::Acquire);
        if seen != tag
            && b.second
                .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.requests.store(0, Ordering::Release);
            b.retries.store(0, Ordering::Release);
        }
        b
    }

    /// Counts one original request (not a retry).
    pub fn record_request(&self, now_ms: u64) {
        self.bucket(now_ms).requests.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_retry(&self, now_ms: u64) -> bool {
        let tag = now_ms / 1000 + 1;
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.buckets {
            let second = b.second.load(Ordering::Acquire);
            if second + WINDOW_SECS > tag && second <= tag {
                requests += u64::from(b.requests.load(Ordering::Acquire));
                retries += u64::from(b.retries.load(Ordering::Acquire));
            }
        }
        let allowed = (requests as f64 * self.percent / 100.0) as u64
            + u64::from(self.min_per_second) * WINDOW_SECS;
        if retries >= allowed {
            return false;
        }
        self.bucket(now_ms).retries.fetch_add(1, Ordering::AcqRel);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(percent: f64, min: u32) -> RetryBudget {
        RetryBudget::new(&BudgetConfig {
            percent,
            min_retries_per_second: min,
        })
    }

    #[test]
    fn caps_retries_at_percent_of_requests() {
        let b = budget(20.0, 0);
        for _ in 0..100 {
            b.record_request(500);
        }
        let granted = (0..100).filter(|_| b.try_retry(600)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn minimum_rate_allows_retries_without_traffic() {
        let b = budget(0.0, 2);
        let granted = (0..50).filter(|_| b.try_retry(0)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn window_slides_so_old_traffic_expires() {
        let b = budget(50.0, 0);
        for _ in 0..10 {
            b.record_request(0);
        }
        assert_eq!((0..10).filter(|_| b.try_retry(1_000)).count(), 5);
        // Ten seconds on, the requests have expired but not yet the retries.
        assert!(!b.try_retry(10_500));
        // A second later the retries have expired too.
        for _ in 0..4 {
            b.record_request(11_600);
        }
        assert_eq!((0..10).filter(|_| b.try_retry(11_700)).count(), 2);
    }
}
