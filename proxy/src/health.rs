//! Active health checks: the proxy probes each endpoint of a service with
//! `GET <path>` every interval; `unhealthyThreshold` failures in a row take it
//! out of rotation, `healthyThreshold` successes bring it back.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method};
use tokio::task::JoinHandle;

use gitmesh_proxy_config::HealthCheck;

use crate::body::ProxyBody;
use crate::forward::{RequestHead, send_once};
use crate::pool::Pool;

/// Consecutive results of one endpoint's probes.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProbeStreak {
    successes: u32,
    failures: u32,
}

impl ProbeStreak {
    /// Records a probe; returns the new health when it changes.
    pub fn record(&mut self, ok: bool, healthy: bool, check: &HealthCheck) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            (!healthy && self.successes >= check.healthy_threshold.max(1)).then_some(true)
        } else {
            self.failures += 1;
            self.successes = 0;
            (healthy && self.failures >= check.unhealthy_threshold.max(1)).then_some(false)
        }
    }
}

/// Starts probing every endpoint of `pool` (a service's whole pool).
pub fn spawn(pool: Arc<Pool>, check: HealthCheck) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(path) = check.path.parse::<PathAndQuery>() else {
            return;
        };
        let head = RequestHead {
            method: Method::GET,
            path_and_query: path,
            headers: HeaderMap::new(),
            authority: HeaderValue::from_str(&pool.service.name).ok(),
        };
        let mut streaks = vec![ProbeStreak::default(); pool.endpoints.len()];
        let mut ticker = tokio::time::interval(check.interval.to_std());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let timeout: Duration = check.timeout.to_std();
        loop {
            ticker.tick().await;
            for (i, endpoint) in pool.endpoints.iter().enumerate() {
                let ok = send_once(&pool, i, &head, ProxyBody::Empty, timeout)
                    .await
                    .is_ok_and(|s| s.is_success());
                let healthy = endpoint.probe_healthy.load(Ordering::Relaxed);
                if let Some(now) = streaks[i].record(ok, healthy, &check) {
                    endpoint.probe_healthy.store(now, Ordering::Relaxed);
                    tracing::warn!(
                        service = %pool.service.name,
                        endpoint = %endpoint.address,
                        healthy = now,
                        "active health check changed an endpoint's health"
                    );
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flip_health() {
        let check: HealthCheck =
            serde_json::from_str(r#"{"path":"/h","unhealthyThreshold":3,"healthyThreshold":2}"#)
                .unwrap();
        let mut s = ProbeStreak::default();
        assert_eq!(s.record(false, true, &check), None);
        assert_eq!(s.record(false, true, &check), None);
        assert_eq!(s.record(false, true, &check), Some(false));
        assert_eq!(s.record(true, false, &check), None);
        assert_eq!(s.record(true, false, &check), Some(true));
        assert_eq!(s.record(true, true, &check), None);
    }
}
