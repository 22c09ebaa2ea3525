//! Passive health (outlier detection): an endpoint that answers 5xx, or fails
//! to connect, too many times in a row is ejected for `baseEjectionTime ×
//! times ejected`, unless that would eject more than `maxEjectionPercent` of
//! the service. Ejection ends by itself when its time is up.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use gitmesh_proxy_config::OutlierDetection;

/// What one try told us about an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    Success,
    ServerError,
    /// A connect failure or a reset.
    ConnectFailure,
}

/// Per-endpoint counters; kept across config swaps.
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_5xx: AtomicU32,
    consecutive_connect: AtomicU32,
    ejected_until_ms: AtomicU64,
    times_ejected: AtomicU32,
}

impl OutlierState {
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }

    #[cfg(test)]
    pub fn times_ejected(&self) -> u32 {
        self.times_ejected.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
pub struct OutlierPolicy {
    consecutive_5xx: u32,
    consecutive_connect: u32,
    base_ejection_ms: u64,
    max_ejection_percent: f64,
}

impl OutlierPolicy {
    pub fn new(c: &OutlierDetection) -> Self {
        Self {
            consecutive_5xx: c.consecutive_5xx,
            consecutive_connect: c.consecutive_connect_failures,
            base_ejection_ms: c.base_ejection_time.as_millis(),
            max_ejection_percent: c.max_ejection_percent,
        }
    }

    /// Records an observation. When it crosses a threshold and `census()`
    /// (ejected now, total endpoints) leaves room, ejects the endpoint and
    /// returns until when.
    pub fn observe(
        &self,
        state: &OutlierState,
        obs: Observation,
        now_ms: u64,
        census: impl FnOnce() -> (usize, usize),
    ) -> Option<u64> {
        let crossed = match obs {
            Observation::Success => {
                state.consecutive_5xx.store(0, Ordering::Relaxed);
                state.consecutive_connect.store(0, Ordering::Relaxed);
                false
            }
            Observation::ServerError => {
                state.consecutive_connect.store(0, Ordering::Relaxed);
                let n = state.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
                self.consecutive_5xx > 0 && n >= self.consecutive_5xx
            }
            Observation::ConnectFailure => {
                let n = state.consecutive_connect.fetch_add(1, Ordering::Relaxed) + 1;
                self.consecutive_connect > 0 && n >= self.consecutive_connect
            }
        };
        if !crossed || state.is_ejected(now_ms) {
            return None;
        }
        let (ejected, total) = census();
        if total == 0 || (ejected + 1) as f64 * 100.0 > self.max_ejection_percent * total as f64 {
            return None;
        }
        state.consecutive_5xx.store(0, Ordering::Relaxed);
        state.consecutive_connect.store(0, Ordering::Relaxed);
        let times = state.times_ejected.fetch_add(1, Ordering::Relaxed) + 1;
        let until = now_ms + self.base_ejection_ms.saturating_mul(u64::from(times));
        state.ejected_until_ms.store(until, Ordering::Relaxed);
        Some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_percent: f64) -> OutlierPolicy {
        OutlierPolicy::new(
            &serde_json::from_str(&format!(
                r#"{{"consecutive5xx":3,"consecutiveConnectFailures":2,"baseEjectionTime":"30s","maxEjectionPercent":{max_percent}}}"#
            ))
            .unwrap(),
        )
    }

    #[test]
    fn ejects_after_consecutive_failures_for_growing_time() {
        let p = policy(100.0);
        let s = OutlierState::default();
        let room = || (0, 4);
        assert_eq!(p.observe(&s, Observation::ServerError, 0, room), None);
        assert_eq!(p.observe(&s, Observation::ServerError, 0, room), None);
        assert_eq!(
            p.observe(&s, Observation::ServerError, 0, room),
            Some(30_000)
        );
        assert!(s.is_ejected(29_999));
        assert!(!s.is_ejected(30_000));
        // Second offence: twice as long.
        for _ in 0..2 {
            p.observe(&s, Observation::ConnectFailure, 40_000, room);
        }
        assert!(s.is_ejected(40_000 + 59_999));
        assert!(!s.is_ejected(100_000));
        assert_eq!(s.times_ejected(), 2);
    }

    #[test]
    fn success_resets_the_streak() {
        let p = policy(100.0);
        let s = OutlierState::default();
        for _ in 0..10 {
            p.observe(&s, Observation::ServerError, 0, || (0, 1));
            p.observe(&s, Observation::ServerError, 0, || (0, 1));
            p.observe(&s, Observation::Success, 0, || (0, 1));
        }
        assert!(!s.is_ejected(0));
    }

    #[test]
    fn respects_max_ejection_percent() {
        let p = policy(50.0);
        let s = OutlierState::default();
        for _ in 0..3 {
            assert_eq!(p.observe(&s, Observation::ServerError, 0, || (1, 2)), None);
        }
        assert!(!s.is_ejected(0));
        let s = OutlierState::default();
        let mut last = None;
        for _ in 0..3 {
            last = p.observe(&s, Observation::ServerError, 0, || (1, 4));
        }
        assert!(last.is_some());
    }
}
