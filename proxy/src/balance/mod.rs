//! Load balancing: which endpoint of a pool serves one try. Each algorithm is
//! a pure module with its own tests; [`Balancer`] picks the one configured.

mod hash;
mod p2c;
mod ring_hash;
mod round_robin;
mod weighted;

use gitmesh_proxy_config::LoadBalancerPolicy;

pub use self::hash::hash64;
use self::{ring_hash::RingHash, round_robin::RoundRobin, weighted::Weighted};

/// One pool's balancer, built once per config.
#[derive(Debug)]
pub enum Balancer {
    RoundRobin(RoundRobin),
    Weighted(Weighted),
    LeastRequest,
    RingHash(RingHash),
}

/// What a balancer may know about an endpoint at pick time.
pub trait Candidates {
    fn len(&self) -> usize;
    /// Whether the endpoint may take this try (healthy, not ejected, not excluded).
    fn available(&self, i: usize) -> bool;
    /// Requests in flight to the endpoint.
    fn load(&self, i: usize) -> u32;
}

impl Balancer {
    /// `endpoints` are (identity, weight) in pool order.
    pub fn new<'a>(
        policy: LoadBalancerPolicy,
        endpoints: impl ExactSizeIterator<Item = (&'a str, u32)> + Clone,
    ) -> Self {
        match policy {
            LoadBalancerPolicy::RoundRobin => Balancer::RoundRobin(RoundRobin::default()),
            LoadBalancerPolicy::Weighted => {
                let weights: Vec<u32> = endpoints.map(|(_, w)| w).collect();
                Balancer::Weighted(Weighted::new(&weights))
            }
            LoadBalancerPolicy::LeastRequest => Balancer::LeastRequest,
            LoadBalancerPolicy::RingHash => Balancer::RingHash(RingHash::new(endpoints)),
        }
    }

    /// Picks an endpoint index. `hash` is the request's hash key (ring hash
    /// only); without one, ring hash falls back to a random point.
    pub fn pick(&self, c: &impl Candidates, hash: Option<u64>) -> Option<usize> {
        match self {
            Balancer::RoundRobin(rr) => rr.pick(c.len(), |i| c.available(i)),
            Balancer::Weighted(w) => w.pick(|i| c.available(i)),
            Balancer::LeastRequest => p2c::pick(c.len(), &mut rand::rng(), |i| {
                c.available(i).then(|| c.load(i))
            }),
            Balancer::RingHash(r) => {
                let h = hash.unwrap_or_else(rand::random);
                r.pick(h, |i| c.available(i))
            }
        }
    }
}
