//! The live state of one upstream endpoint: its address, whether active
//! health checks pass, outlier ejection, and requests in flight. Kept across
//! config swaps (matched by service and address) so that state survives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use http::uri::Authority;

use crate::connect::IdleConns;
use crate::outlier::OutlierState;

#[derive(Debug)]
pub struct EndpointState {
    pub address: String,
    pub authority: Authority,
    /// `healthy` as the control plane last said (refreshed on every swap).
    pub reported_healthy: AtomicBool,
    /// Whether active health checks pass (true until they say otherwise).
    pub probe_healthy: AtomicBool,
    pub in_flight: AtomicU32,
    pub outlier: OutlierState,
    /// Idle keep-alive HTTP/1.1 connections to this endpoint.
    pub conns: Arc<IdleConns>,
}

impl EndpointState {
    pub fn new(address: &str) -> Result<Self, String> {
        let authority: Authority = address
            .parse()
            .map_err(|_| format!("`{address}` is not a valid authority"))?;
        Ok(EndpointState {
            address: address.to_string(),
            authority,
            reported_healthy: AtomicBool::new(true),
            probe_healthy: AtomicBool::new(true),
            in_flight: AtomicU32::new(0),
            outlier: OutlierState::default(),
            conns: Arc::default(),
        })
    }

    /// Healthy by both the control plane and our probes, and not ejected.
    pub fn available(&self, now_ms: u64) -> bool {
        self.reported_healthy.load(Ordering::Relaxed)
            && self.probe_healthy.load(Ordering::Relaxed)
            && !self.outlier.is_ejected(now_ms)
    }

    pub fn load(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one request in flight until the guard drops.
    pub fn start_request(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }
}

#[derive(Debug)]
pub struct InFlight<'a>(&'a EndpointState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
