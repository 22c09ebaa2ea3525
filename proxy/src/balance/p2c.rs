//! Least request with the power of two random choices: pick two available
//! endpoints at random and take the one with fewer requests in flight.

use rand::Rng;

/// Picks among `len` endpoints; `load(i)` is `None` for an unavailable
/// endpoint, else its outstanding requests.
pub fn pick(len: usize, rng: &mut impl Rng, load: impl Fn(usize) -> Option<u32>) -> Option<usize> {
    match len {
        0 => None,
        1 => load(0).map(|_| 0),
        _ => {
            let a = rng.random_range(0..len);
            let mut b = rng.random_range(0..len - 1);
            if b >= a {
                b += 1;
            }
            match (load(a), load(b)) {
                (Some(la), Some(lb)) => Some(if lb < la { b } else { a }),
                (Some(_), None) => Some(a),
                (None, Some(_)) => Some(b),
                // Both sampled endpoints are out: fall back to a scan.
                (None, None) => (0..len)
                    .filter_map(|i| load(i).map(|l| (l, i)))
                    .min()
                    .map(|(_, i)| i),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn prefers_the_less_loaded_endpoint() {
        let mut rng = StdRng::seed_from_u64(7);
        let loads = [10u32, 0, 10, 10];
        let mut hits = [0; 4];
        for _ in 0..1000 {
            hits[pick(4, &mut rng, |i| Some(loads[i])).unwrap()] += 1;
        }
        // Endpoint 1 wins every pair it is part of: about half of all picks.
        assert!(hits[1] > 400, "{hits:?}");
    }

    #[test]
    fn never_picks_unavailable() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let i = pick(3, &mut rng, |i| (i == 2).then_some(5)).unwrap();
            assert_eq!(i, 2);
        }
        assert_eq!(pick(3, &mut rng, |_| None), None);
        assert_eq!(pick(1, &mut rng, |_| Some(0)), Some(0));
    }
}
