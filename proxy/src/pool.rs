//! A pool: the endpoints of one (service, subset) that a backend reference
//! names, with the balancer that picks among them and the upstream service's
//! shared machinery (client, breaker, outlier policy).

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use crate::balance::{Balancer, Candidates};
use crate::breaker::Breaker;
use crate::clock::Clock;
use crate::connect::UpstreamClient;
use crate::endpoint::EndpointState;
use crate::metrics::{ServiceMetrics, TrafficMetrics};
use crate::outlier::{Observation, OutlierPolicy};
use crate::split::HashKey;

/// What one upstream service shares among its pools.
#[derive(Debug)]
pub struct UpstreamService {
    pub name: String,
    pub client: UpstreamClient,
    pub breaker: Breaker,
    /// Requests in flight, kept across swaps for the breaker.
    pub in_flight: Arc<AtomicU32>,
    pub outlier: Option<OutlierPolicy>,
    pub endpoints: Vec<Arc<EndpointState>>,
    /// Ring hash key (`loadBalancer.hashOn`); the client address without.
    pub hash_on: Option<HashKey>,
    pub metrics: ServiceMetrics,
}

impl UpstreamService {
    /// Records a try's outcome for outlier detection (the clock is read
    /// only when the service has a policy).
    pub fn observe(&self, endpoint: &EndpointState, obs: Observation, clock: Clock) {
        let Some(policy) = &self.outlier else {
            return;
        };
        let now_ms = clock.now_ms();
        let census = || {
            let ejected = self
                .endpoints
                .iter()
                .filter(|e| e.outlier.is_ejected(now_ms))
                .count();
            (ejected, self.endpoints.len())
        };
        if let Some(until) = policy.observe(&endpoint.outlier, obs, now_ms, census) {
            self.metrics.ejections.inc();
            tracing::warn!(
                service = %self.name,
                endpoint = %endpoint.address,
                ejected_for_ms = until - now_ms,
                "outlier detection ejected an endpoint"
            );
        }
    }
}

#[derive(Debug)]
pub struct Pool {
    pub service: Arc<UpstreamService>,
    pub subset: Option<String>,
    pub endpoints: Vec<Arc<EndpointState>>,
    pub balancer: Balancer,
    pub metrics: TrafficMetrics,
}

struct View<'a> {
    endpoints: &'a [Arc<EndpointState>],
    now_ms: u64,
    exclude: Option<usize>,
}

impl Candidates for View<'_> {
    fn len(&self) -> usize {
        self.endpoints.len()
    }

    fn available(&self, i: usize) -> bool {
        Some(i) != self.exclude && self.endpoints[i].available(self.now_ms)
    }

    fn load(&self, i: usize) -> u32 {
        self.endpoints[i].load()
    }
}

impl Pool {
    /// Picks an available endpoint, avoiding `exclude` (the endpoint of the
    /// previous try) when another one is available.
    pub fn pick(&self, now_ms: u64, exclude: Option<usize>, hash: Option<u64>) -> Option<usize> {
        let view = View {
            endpoints: &self.endpoints,
            now_ms,
            exclude,
        };
        self.balancer.pick(&view, hash).or_else(|| {
            exclude.and_then(|_| {
                let view = View {
                    exclude: None,
                    ..view
                };
                self.balancer.pick(&view, hash)
            })
        })
    }

    pub fn subset_label(&self) -> &str {
        self.subset.as_deref().unwrap_or("")
    }
}
