//! The inbound listener's request path: peers' sidecars arrive here and each
//! request is forwarded to the local app (`--app`), over the same HTTP
//! version it came in with. (Authorization of callers needs their mTLS
//! identity and is not enforced yet.)

use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::connect::{ClientKey, IdleConns, SendError, UpstreamClient};
use crate::metrics::Metrics;
use crate::peer::PeerIdentity;
use crate::respond;
use crate::swap::ConfigStore;

/// Tells the local app who called (mTLS only); removed from what callers send.
pub const PEER_IDENTITY_HEADER: &str = "x-gitmesh-peer-identity";

#[derive(Debug)]
pub struct Inbound {
    store: Arc<ConfigStore>,
    metrics: Arc<Metrics>,
    app: Option<Authority>,
    http1: UpstreamClient,
    http2: UpstreamClient,
    /// Idle HTTP/1.1 connections to the local app.
    app_conns: Arc<IdleConns>,
}

impl Inbound {
    pub fn new(store: Arc<ConfigStore>, metrics: Arc<Metrics>, app: Option<Authority>) -> Self {
        let client = |http2| {
            UpstreamClient::new(ClientKey {
                http2,
                connect_timeout: Some(std::time::Duration::from_secs(5)),
                tls: None,
            })
        };
        Inbound {
            store,
            metrics,
            app,
            http1: client(false),
            http2: client(true),
            app_conns: Arc::default(),
        }
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let snapshot = self.store.current();
        let traffic = &snapshot.inbound_metrics;
        let response = self.forward(req).await;
        let response = response.unwrap_or_else(|(status, reason)| {
            self.metrics.error("inbound", reason);
            respond::error(status, reason)
        });
        traffic.record(response.status().as_u16(), started.elapsed());
        tracing::info!(
            target: "gitmesh::access",
            direction = "inbound",
            status = response.status().as_u16(),
            duration_us = started.elapsed().as_micros() as u64,
        );
        response
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, (StatusCode, &'static str)> {
        let Some(app) = &self.app else {
            return Err((StatusCode::SERVICE_UNAVAILABLE, "no-local-app"));
        };
        let (mut parts, body) = req.into_parts();
        let http2 = parts.version == http::Version::HTTP_2;
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(app.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = Uri::from_parts(uri).map_err(|_| (StatusCode::BAD_REQUEST, "bad-uri"))?;
        respond::strip_hop_by_hop(&mut parts.headers);
        // The caller's verified identity for the app; never the caller's own claim.
        parts.headers.remove(PEER_IDENTITY_HEADER);
        if let Some(peer) = parts.extensions.get::<PeerIdentity>()
            && let Ok(v) = http::HeaderValue::from_str(peer.spiffe_id())
        {
            parts.headers.insert(PEER_IDENTITY_HEADER, v);
        }
        let client = if http2 { &self.http2 } else { &self.http1 };
        let req = Request::from_parts(parts, ProxyBody::Streaming(body));
        match client.send(app, &self.app_conns, req).await {
            Ok(r) => {
                let (mut rparts, body) = r.into_parts();
                respond::strip_hop_by_hop(&mut rparts.headers);
                Ok(Response::from_parts(rparts, ProxyBody::Upstream(body)))
            }
            Err(SendError::Connect) => {
                Err((StatusCode::SERVICE_UNAVAILABLE, "app-connect-failure"))
            }
            Err(SendError::Reset) => Err((StatusCode::BAD_GATEWAY, "app-reset")),
        }
    }
}
