//! Circuit-breaker limits of one upstream service: past a limit the proxy
//! answers 503 at once, with `x-gitmesh-overloaded: <limit>`, rather than
//! piling more work on a struggling upstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use gitmesh_proxy_config::CircuitBreaker;

use crate::connect::ConnCounters;

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Requests,
    PendingRequests,
    Connections,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Requests => "max-requests",
            Limit::PendingRequests => "max-pending-requests",
            Limit::Connections => "max-connections",
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    limits: CircuitBreaker,
    /// Whether one connection carries one request at a time (HTTP/1.1).
    one_request_per_connection: bool,
    /// Requests in flight to the service; shared across config swaps.
    requests: Arc<AtomicU32>,
    connections: Arc<ConnCounters>,
}

/// Holds one request slot until dropped.
#[derive(Debug)]
pub struct Permit(Arc<AtomicU32>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Breaker {
    pub fn new(
        limits: CircuitBreaker,
        one_request_per_connection: bool,
        requests: Arc<AtomicU32>,
        connections: Arc<ConnCounters>,
    ) -> Self {
        Breaker {
            limits,
            one_request_per_connection,
            requests,
            connections,
        }
    }

    /// Takes a request slot, or says which limit is reached.
    pub fn admit(&self) -> Result<Permit, Limit> {
        let connecting = self.connections.connecting.load(Ordering::Acquire);
        if connecting >= self.limits.max_pending_requests {
            return Err(Limit::PendingRequests);
        }
        let before = self.requests.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(self.requests.clone());
        if before >= self.limits.max_requests {
            return Err(Limit::Requests);
        }
        // HTTP/1.1: when every allowed connection is busy, a new request
        // would need a connection past the limit.
        let open = self.connections.open.load(Ordering::Acquire) + connecting;
        if self.one_request_per_connection
            && open >= self.limits.max_connections
            && before >= self.limits.max_connections
        {
            return Err(Limit::Connections);
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(max_requests: u32, max_connections: u32) -> (Breaker, Arc<ConnCounters>) {
        let conns = Arc::new(ConnCounters::default());
        let limits = CircuitBreaker {
            max_connections,
            max_pending_requests: 2,
            max_requests,
        };
        (
            Breaker::new(limits, true, Arc::default(), conns.clone()),
            conns,
        )
    }

    #[test]
    fn rejects_past_max_requests_and_frees_slots() {
        let (b, _) = breaker(2, 100);
        let p1 = b.admit().unwrap();
        let _p2 = b.admit().unwrap();
        assert_eq!(b.admit().unwrap_err(), Limit::Requests);
        drop(p1);
        assert!(b.admit().is_ok());
    }

    #[test]
    fn rejects_on_pending_and_connection_limits() {
        let (b, conns) = breaker(100, 1);
        conns.connecting.store(2, Ordering::Relaxed);
        assert_eq!(b.admit().unwrap_err(), Limit::PendingRequests);
        conns.connecting.store(0, Ordering::Relaxed);
        conns.open.store(1, Ordering::Relaxed);
        let _busy = b.admit().unwrap();
        assert_eq!(b.admit().unwrap_err(), Limit::Connections);
    }
}
