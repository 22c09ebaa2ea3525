//! Smooth weighted round robin (nginx's algorithm), computed once per config
//! into a schedule that picks then walk with an atomic counter: no lock and no
//! per-pick arithmetic over the weights.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest schedule we build; larger weight sums are scaled down first.
const MAX_SCHEDULE: u64 = 4096;

#[derive(Debug)]
pub struct Weighted {
    schedule: Vec<u32>,
    next: AtomicUsize,
}

impl Weighted {
    /// Builds the schedule for endpoints with these weights (0 = no traffic).
    pub fn new(weights: &[u32]) -> Self {
        Self {
            schedule: smooth_schedule(weights),
            next: AtomicUsize::new(0),
        }
    }

    /// The next endpoint by the schedule; if it is unavailable, the next
    /// available one in the schedule after it.
    pub fn pick(&self, available: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|offset| self.schedule[(start + offset) % len] as usize)
            .find(|&i| available(i))
    }
}

/// The smooth weighted round robin sequence over one full cycle: every
/// endpoint appears `weight` times, interleaved as evenly as possible.
fn smooth_schedule(weights: &[u32]) -> Vec<u32> {
    let weights = scaled(weights);
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += i64::from(*w);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        schedule.push(best as u32);
    }
    schedule
}

/// Divides weights by their gcd, then shrinks them proportionally if the
/// cycle would still be longer than [`MAX_SCHEDULE`] (keeping every non-zero
/// weight at least 1).
fn scaled(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().fold(0u32, |g, &w| gcd(g, w)).max(1);
    let reduced: Vec<u32> = weights.iter().map(|w| w / g).collect();
    let total: u64 = reduced.iter().map(|&w| u64::from(w)).sum();
    if total <= MAX_SCHEDULE {
        return reduced;
    }
    reduced
        .iter()
        .map(|&w| {
            if w == 0 {
                0
            } else {
                ((u64::from(w) * MAX_SCHEDULE / total).max(1)) as u32
            }
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_smooth_and_proportional() {
        assert_eq!(smooth_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        let w = Weighted::new(&[3, 1]);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[w.pick(|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn zero_weight_takes_nothing_and_unavailable_is_skipped() {
        let w = Weighted::new(&[0, 2, 1]);
        for _ in 0..30 {
            let i = w.pick(|i| i != 1).unwrap();
            assert_eq!(i, 2);
        }
        assert_eq!(Weighted::new(&[0, 0]).pick(|_| true), None);
    }

    #[test]
    fn huge_weights_are_scaled_not_dropped() {
        let s = scaled(&[1_000_000, 1, 3_000_000]);
        assert!(s.iter().map(|&w| u64::from(w)).sum::<u64>() <= MAX_SCHEDULE + 3);
        assert_eq!(s[1], 1);
        assert!(s[2] >= 2 * s[0]);
    }
}
