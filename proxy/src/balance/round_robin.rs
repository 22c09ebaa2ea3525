//! Round robin: each pick takes the next available endpoint in turn.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// Picks among `len` endpoints, skipping those `available` refuses.
    pub fn pick(&self, len: usize, available: impl Fn(usize) -> bool) -> Option<usize> {
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|offset| (start + offset) % len)
            .find(|&i| available(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_evenly_and_skips_unavailable() {
        let rr = RoundRobin::default();
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[rr.pick(3, |_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        for _ in 0..10 {
            assert_ne!(rr.pick(3, |i| i != 1), Some(1));
        }
        assert_eq!(rr.pick(3, |_| false), None);
        assert_eq!(rr.pick(0, |_| true), None);
    }
}
