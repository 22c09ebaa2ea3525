//! Consistent hashing on a ring: each endpoint owns many points (more for a
//! higher weight); a key goes to the first point at or after its hash. When
//! an endpoint leaves, only its own keys move.

use super::hash::hash64;

/// Points per unit of weight.
const POINTS_PER_WEIGHT: u32 = 64;
/// Cap on points per endpoint, whatever its weight.
const MAX_POINTS: u32 = 1024;

#[derive(Debug, Default)]
pub struct RingHash {
    /// (point, endpoint index), sorted by point.
    ring: Vec<(u64, u32)>,
}

impl RingHash {
    /// Builds the ring from endpoint identities (addresses) and weights.
    pub fn new<'a>(endpoints: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        let mut ring = Vec::new();
        let mut key = String::new();
        for (i, (id, weight)) in endpoints.into_iter().enumerate() {
            let points = weight.saturating_mul(POINTS_PER_WEIGHT).min(MAX_POINTS);
            for p in 0..points {
                key.clear();
                key.push_str(id);
                key.push('#');
                key.push_str(&p.to_string());
                ring.push((hash64(key.as_bytes()), i as u32));
            }
        }
        ring.sort_unstable();
        Self { ring }
    }

    /// The endpoint for `hash`, walking clockwise past unavailable ones.
    pub fn pick(&self, hash: u64, available: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.ring.len();
        if len == 0 {
            return None;
        }
        let start = self.ring.partition_point(|&(point, _)| point < hash);
        (0..len)
            .map(|offset| self.ring[(start + offset) % len].1 as usize)
            .find(|&i| available(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> RingHash {
        let ids: Vec<String> = (0..n).map(|i| format!("10.0.0.{i}:80")).collect();
        RingHash::new(ids.iter().map(|s| (s.as_str(), 1)))
    }

    #[test]
    fn same_key_same_endpoint_and_fair_spread() {
        let r = ring(4);
        let mut counts = [0; 4];
        for k in 0..4000 {
            let h = hash64(format!("user-{k}").as_bytes());
            let a = r.pick(h, |_| true).unwrap();
            assert_eq!(Some(a), r.pick(h, |_| true));
            counts[a] += 1;
        }
        for c in counts {
            assert!((600..1400).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn losing_an_endpoint_moves_only_its_keys() {
        let r = ring(4);
        for k in 0..1000 {
            let h = hash64(format!("user-{k}").as_bytes());
            let before = r.pick(h, |_| true).unwrap();
            let after = r.pick(h, |i| i != 3).unwrap();
            if before != 3 {
                assert_eq!(before, after);
            } else {
                assert_ne!(after, 3);
            }
        }
        assert_eq!(r.pick(1, |_| false), None);
    }
}
