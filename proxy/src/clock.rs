//! Milliseconds since the proxy started, on tokio's clock, so that pure
//! time-dependent logic (budgets, ejections) takes plain numbers and tests can
//! pause and advance time.

use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64
    }
}
