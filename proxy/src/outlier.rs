//! Passive health (outlier detection): an endpoint that answers 5xx, or fails
//! to connect, too many times in a row is ejected for `baseEjectionTime ×
//! multiplier`, unless that would eject more than `maxEjectionPercent` of
//! the service. Each ejection raises the endpoint's multiplier by one.
//! Ejection ends by itself when its time is up.
//!
//! `interval` is the period of the detector's sweeps, Envoy-style: sweeps
//! happen at every multiple of `interval` on the proxy's clock, and each
//! sweep that finds an endpoint back in service (not ejected) lowers its
//! multiplier by one, so an endpoint that behaves for a while is ejected for
//! `baseEjectionTime` again next time instead of ever longer. Sweeps are
//! evaluated lazily, when the endpoint is next observed, with plain
//! millisecond numbers from [`crate::clock::Clock`]: a sweep at the very
//! instant of un-ejection is the one that un-ejects (it does not lower the
//! multiplier), and one at the very instant of an observation is taken to
//! come just after it.

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
    /// The ejection multiplier.
    times_ejected: AtomicU32,
    /// The last sweep that lowered the multiplier.
    swept_ms: AtomicU64,
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
    interval_ms: u64,
    max_ejection_percent: f64,
}

impl OutlierPolicy {
    pub fn new(c: &OutlierDetection) -> Self {
        Self {
            consecutive_5xx: c.consecutive_5xx,
            consecutive_connect: c.consecutive_connect_failures,
            base_ejection_ms: c.base_ejection_time.as_millis(),
            interval_ms: c.interval.as_millis(),
            max_ejection_percent: c.max_ejection_percent,
        }
    }

    /// Applies the sweeps due since the last one (or since un-ejection) and
    /// before `now_ms`: one step of multiplier decay each.
    fn sweep(&self, state: &OutlierState, now_ms: u64) {
        let interval = self.interval_ms;
        if interval == 0 || state.times_ejected.load(Ordering::Relaxed) == 0 {
            return;
        }
        let until = state.ejected_until_ms.load(Ordering::Relaxed);
        if until > now_ms {
            return;
        }
        let swept = state.swept_ms.load(Ordering::Relaxed);
        let from = swept.max(until);
        if now_ms <= from {
            return;
        }
        // Sweeps at multiples of `interval` strictly inside (from, now).
        let last = (now_ms - 1) / interval;
        let due = last.saturating_sub(from / interval);
        if due == 0 {
            return;
        }
        if state
            .swept_ms
            .compare_exchange(swept, last * interval, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let steps = u32::try_from(due).unwrap_or(u32::MAX);
            let _ = state
                .times_ejected
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                    Some(t.saturating_sub(steps))
                });
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
        self.sweep(state, now_ms);
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

    fn policy_with_interval(interval: &str) -> OutlierPolicy {
        OutlierPolicy::new(
            &serde_json::from_str(&format!(
                r#"{{"consecutive5xx":1,"consecutiveConnectFailures":1,"interval":"{interval}","baseEjectionTime":"30s","maxEjectionPercent":100}}"#
            ))
            .unwrap(),
        )
    }

    #[test]
    fn multiplier_decays_one_step_per_sweep_back_in_service() {
        let p = policy_with_interval("10s");
        let s = OutlierState::default();
        let room = || (0, 4);
        assert_eq!(
            p.observe(&s, Observation::ServerError, 0, room),
            Some(30_000)
        );
        // Back at 30s; failing again at 35s, before any sweep: twice as long.
        assert_eq!(
            p.observe(&s, Observation::ServerError, 35_000, room),
            Some(35_000 + 60_000)
        );
        assert_eq!(s.times_ejected(), 2);
        // Back at 95s; sweeps at 100s and 110s lower the multiplier to 0, so
        // the next ejection is base × 1 again.
        assert_eq!(
            p.observe(&s, Observation::ServerError, 120_000, room),
            Some(120_000 + 30_000)
        );
        assert_eq!(s.times_ejected(), 1);
    }

    #[test]
    fn no_decay_while_ejected_or_at_the_sweep_of_unejection() {
        let p = policy_with_interval("10s");
        let s = OutlierState::default();
        let room = || (0, 4);
        p.observe(&s, Observation::ServerError, 0, room);
        p.observe(&s, Observation::ServerError, 30_000, room);
        // Ejected 0–30s (sweeps at 10s and 20s find it ejected) and again at
        // 30s exactly: the multiplier only grew.
        assert_eq!(s.times_ejected(), 2);
        assert!(s.is_ejected(89_999));
        // One sweep back in service (at 100s, after un-ejection at 90s).
        p.observe(&s, Observation::Success, 105_000, room);
        assert_eq!(s.times_ejected(), 1);
        // The same sweep is not counted twice.
        p.observe(&s, Observation::Success, 109_000, room);
        assert_eq!(s.times_ejected(), 1);
        p.observe(&s, Observation::Success, 110_001, room);
        assert_eq!(s.times_ejected(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn decay_follows_the_proxy_clock() {
        let clock = crate::clock::Clock::start();
        let p = policy_with_interval("5s");
        let s = OutlierState::default();
        let room = || (0, 4);
        let fail =
            |s: &OutlierState| p.observe(s, Observation::ConnectFailure, clock.now_ms(), room);
        let first = fail(&s).expect("ejected");
        assert_eq!(first, clock.now_ms() + 30_000);
        tokio::time::advance(std::time::Duration::from_secs(31)).await;
        let second = fail(&s).expect("ejected again");
        assert_eq!(
            second - clock.now_ms(),
            60_000,
            "no sweep yet: multiplier 2"
        );
        // 60s ejected, then 12s back in service: sweeps at 95s and 100s.
        tokio::time::advance(std::time::Duration::from_secs(72)).await;
        assert!(!s.is_ejected(clock.now_ms()));
        let third = fail(&s).expect("ejected a third time");
        assert_eq!(third - clock.now_ms(), 30_000, "decayed to 0, then 1");
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
