//! Request mirroring: a fire-and-forget copy of a request to another pool.
//! Its answer is dropped; it runs in its own task with a time limit and a cap
//! on concurrent copies, so it can never slow or fail the real request.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::body::ProxyBody;
use crate::clock::Clock;
use crate::forward::{RequestHead, send_once};
use crate::metrics::Metrics;
use crate::pool::Pool;

/// Longest a mirrored copy may take before it is abandoned.
pub const MIRROR_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared limits of all mirrored copies of one proxy.
#[derive(Debug, Clone)]
pub struct Mirrors {
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    clock: Clock,
}

impl Mirrors {
    pub fn new(max_concurrent: usize, metrics: Arc<Metrics>, clock: Clock) -> Self {
        Mirrors {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            metrics,
            clock,
        }
    }

    /// Sends a copy in the background; dropped (and counted) when too many
    /// copies are already in flight or no endpoint is available.
    pub fn spawn(&self, pool: Arc<Pool>, head: RequestHead, body: ProxyBody) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.metrics.error("mirror", "mirror-dropped");
            return;
        };
        let Some(endpoint) = pool.pick(self.clock.now_ms(), None, None) else {
            self.metrics.error("mirror", "no-healthy-endpoint");
            return;
        };
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let started = tokio::time::Instant::now();
            match send_once(&pool, endpoint, &head, body, MIRROR_TIMEOUT).await {
                Ok(status) => pool.metrics.record(status.as_u16(), started.elapsed()),
                Err(outcome) => metrics.error("mirror", outcome.reason()),
            }
        });
    }
}
