//! The inbound listener's request path: peers' sidecars arrive here, and
//! each request goes through these phases before it is forwarded to the
//! local app (`--app`), over the same HTTP version it came in with:
//!
//! 1. normalize the path (400 when ambiguous; the app gets the normalized
//!    path, so what was authorized is what is served);
//! 2. authenticate its JWT when the service requires one (401, or 503 when
//!    the issuer's keys cannot be had);
//! 3. authorize the caller (its mTLS [`PeerIdentity`], if any) against the
//!    intentions (403).
//!
//! Every refusal names its reason in `x-gitmesh-error` and counts in
//! `gitmesh_errors_total{direction="inbound",reason=…}`.

use std::borrow::Cow;
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{HeaderName, Request, Response, StatusCode, Uri};
use tokio::time::Instant;

use crate::authz::AuthzRequest;
use crate::authz::jwt::JwtError;
use crate::authz::path;
use crate::body::ProxyBody;
use crate::connect::{ClientKey, IdleConns, SendError, UpstreamClient};
use crate::h1;
use crate::metrics::Metrics;
use crate::peer::PeerIdentity;
use crate::respond;
use crate::snapshot::Snapshot;
use crate::swap::ConfigStore;

/// Tells the local app who called (mTLS only); removed from what callers send.
/// A `HeaderName`, not a string: a string is parsed into a name on every
/// use (~700 instructions each, measured with callgrind).
pub static PEER_IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-gitmesh-peer-identity");

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

    /// Not an `async fn`, and `admit` borrows the request: the request is
    /// held once, where the future keeps it, not copied into each step
    /// (see `Outbound::handle`).
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn copies its arguments on the first poll"
    )]
    pub fn handle(
        self: Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> impl Future<Output = Response<ProxyBody>> {
        async move {
            let started = Instant::now();
            let snapshot = self.store.current();
            let traffic = &snapshot.inbound_metrics;
            let response = match admit(&snapshot, &self.metrics, &mut req).await {
                Ok(()) => self.forward(req).await.unwrap_or_else(|(status, reason)| {
                    self.metrics.error("inbound", reason);
                    respond::error(status, reason)
                }),
                Err(refusal) => {
                    self.metrics.error("inbound", refusal.reason);
                    refusal.into_response()
                }
            };
            traffic.record(response.status().as_u16(), started.elapsed());
            tracing::info!(
                target: "gitmesh::access",
                direction = "inbound",
                status = response.status().as_u16(),
                duration_us = started.elapsed().as_micros() as u64,
            );
            response
        }
    }

    async fn forward(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, (StatusCode, &'static str)> {
        let Some(app) = &self.app else {
            return Err((StatusCode::SERVICE_UNAVAILABLE, "no-local-app"));
        };
        let (mut parts, body) = req.into_parts();
        let http2 = parts.version == http::Version::HTTP_2;
        if http2 || parts.uri.authority().is_some() {
            // HTTP/2 names the app in `:authority`; HTTP/1.1 is sent in
            // origin form (the sender adds `Host` when there is none).
            let mut uri = http::uri::Parts::default();
            if http2 {
                uri.scheme = Some(Scheme::HTTP);
                uri.authority = Some(app.clone());
            }
            uri.path_and_query = Some(h1::encode::origin_form(&parts.uri));
            parts.uri = Uri::from_parts(uri).map_err(|_| (StatusCode::BAD_REQUEST, "bad-uri"))?;
        }
        respond::strip_hop_by_hop(&mut parts.headers);
        // The caller's verified identity for the app; never the caller's own claim.
        parts.headers.remove(&PEER_IDENTITY_HEADER);
        if let Some(peer) = parts.extensions.get::<PeerIdentity>()
            && let Ok(v) = http::HeaderValue::from_str(peer.spiffe_id())
        {
            parts.headers.insert(&PEER_IDENTITY_HEADER, v);
        }
        let client = if http2 { &self.http2 } else { &self.http1 };
        let req = Request::from_parts(parts, body);
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
            Err(SendError::Malformed) => Err((StatusCode::BAD_GATEWAY, "app-malformed-response")),
            Err(SendError::CallerBody) => Err((StatusCode::BAD_REQUEST, "request-body-error")),
        }
    }
}

/// A request the inbound side refused before the app saw it.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    /// Which intention rule decided a 403.
    rule: Option<String>,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str) -> Self {
        Refusal {
            status,
            reason,
            rule: None,
        }
    }

    fn jwt(e: JwtError) -> Self {
        let status = match e {
            JwtError::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        Refusal::new(status, e.reason())
    }

    fn into_response(self) -> Response<ProxyBody> {
        let mut r = respond::error(self.status, self.reason);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(rule) = self.rule
            && let Ok(v) = http::HeaderValue::from_str(&rule)
        {
            r.headers_mut().insert(&respond::X_GITMESH_RULE, v);
        }
        r
    }
}

/// Normalizes (its path, in place), authenticates and authorizes `req`:
/// whether to forward it, or why not.
async fn admit(
    snapshot: &Snapshot,
    metrics: &Metrics,
    req: &mut Request<ProxyBody>,
) -> Result<(), Refusal> {
    let rewritten = match path::normalize(req.uri().path()) {
        Ok(Cow::Borrowed(_)) => None,
        Ok(Cow::Owned(p)) => Some(p),
        Err(e) => return Err(Refusal::new(StatusCode::BAD_REQUEST, e.reason())),
    };
    if let Some(normalized) = rewritten {
        let path_and_query = match req.uri().query() {
            Some(q) => format!("{normalized}?{q}"),
            None => normalized,
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(
            path_and_query
                .parse()
                .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "bad-uri"))?,
        );
        *req.uri_mut() =
            Uri::from_parts(parts).map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "bad-uri"))?;
    }
    let authenticated = match &snapshot.jwt {
        Some(jwt) => jwt
            .authenticate(req.headers())
            .await
            .map_err(Refusal::jwt)?,
        None => None,
    };
    if let Some(a) = &authenticated {
        metrics.jwt_accepted(a.cached);
    }
    let decision = snapshot.authorizer.decide(&AuthzRequest {
        peer: req.extensions().get::<PeerIdentity>(),
        method: req.method(),
        // Normalized by now.
        path: req.uri().path(),
        headers: req.headers(),
        claims: authenticated.as_ref().map(|a| &*a.claims),
    });
    if decision.allowed() {
        Ok(())
    } else {
        let mut rule = decision.by.to_string();
        if !decision.missing_claims.is_empty() {
            rule.push_str(&format!(
                " missing-claims={}",
                decision.missing_claims.join(",")
            ));
        }
        tracing::debug!(
            peer = req.extensions().get::<PeerIdentity>().map(|p| p.to_string()),
            rule = %rule,
            "request denied by intentions"
        );
        Err(Refusal {
            status: StatusCode::FORBIDDEN,
            reason: decision.reason(),
            rule: Some(rule),
        })
    }
}
