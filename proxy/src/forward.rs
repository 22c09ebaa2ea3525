//! Sends a request to a pool: circuit-breaker admission, endpoint choice,
//! per-try timeout, and the retry loop (conditions, budget, backoff). Each
//! try's outcome feeds outlier detection. Used by the outbound listener and,
//! with a single try, by mirrors.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use tokio_util::either::Either;

use crate::body::{BodyError, ProxyBody, UpstreamBody};
use crate::clock::Clock;
use crate::connect::SendError;
use crate::endpoint::EndpointState;
use crate::outlier::Observation;
use crate::pool::Pool;
use crate::retry::{RetryPlan, TryOutcome};

/// A request body read whole so that it can be sent again: its data and
/// the trailers it ended in, if any.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    pub data: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Replay {
    fn data(data: Bytes) -> Self {
        Replay {
            data,
            trailers: None,
        }
    }

    /// A body that sends it once more.
    pub fn body(&self) -> ProxyBody {
        match &self.trailers {
            None => ProxyBody::bytes(self.data.clone()),
            Some(trailers) => ProxyBody::Trailed {
                data: Some(self.data.clone()).filter(|d| !d.is_empty()),
                trailers: Some(Box::new(trailers.clone())),
            },
        }
    }
}

/// A request body as the try loop sees it.
#[derive(Debug)]
pub enum RequestBody {
    /// Buffered: may be sent again (retries, mirrors).
    Replayable(Replay),
    /// Streamed: one try only.
    Streaming(ProxyBody),
}

impl RequestBody {
    /// Buffers `body` when a replay may be needed, up to `limit` bytes,
    /// whether or not its length is announced (chunked bodies included);
    /// otherwise leaves it streaming. Past the limit, what was read so far
    /// is sent first and the rest streams through (`false`: too large, no
    /// replay). Trailers are kept with the buffered body and sent again
    /// with it.
    pub async fn prepare(
        body: ProxyBody,
        want_replay: bool,
        limit: usize,
    ) -> Result<(RequestBody, bool), BodyError> {
        use http_body::Body;
        use http_body_util::BodyExt;
        let mut body = match body {
            // Read whole already (the HTTP/1.1 fast path).
            ProxyBody::Empty => return Ok((RequestBody::Replayable(Replay::default()), true)),
            ProxyBody::Full(b) if want_replay => {
                let b = b.unwrap_or_default();
                let fits = b.len() <= limit;
                if fits {
                    return Ok((RequestBody::Replayable(Replay::data(b)), true));
                }
                return Ok((RequestBody::Streaming(ProxyBody::Full(Some(b))), false));
            }
            ProxyBody::Caller(body) if want_replay => body,
            other => return Ok((RequestBody::Streaming(other), true)),
        };
        if body.is_end_stream() {
            return Ok((RequestBody::Replayable(Replay::default()), true));
        }
        if body.size_hint().lower() > limit as u64 {
            // An announced length over the bound: do not read any of it.
            return Ok((RequestBody::Streaming(ProxyBody::Caller(body)), false));
        }
        let mut first: Option<Bytes> = None;
        let mut more = BytesMut::new();
        let mut len = 0usize;
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let data = match frame?.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    trailers = frame.into_trailers().ok().or(trailers);
                    continue;
                }
            };
            len += data.len();
            match &first {
                None => first = Some(data),
                Some(f) => {
                    if more.is_empty() {
                        more.extend_from_slice(f);
                    }
                    more.extend_from_slice(&data);
                }
            }
            if len > limit {
                let prefix = if more.is_empty() {
                    first.unwrap_or_default()
                } else {
                    more.freeze()
                };
                return Ok((
                    RequestBody::Streaming(ProxyBody::Caller(body.prefixed(prefix))),
                    false,
                ));
            }
        }
        let bytes = if more.is_empty() {
            first.unwrap_or_default()
        } else {
            more.freeze()
        };
        let replay = Replay {
            data: bytes,
            trailers,
        };
        Ok((RequestBody::Replayable(replay), true))
    }

    pub fn replayable(&self) -> Option<&Replay> {
        match self {
            RequestBody::Replayable(b) => Some(b),
            RequestBody::Streaming(_) => None,
        }
    }
}

/// The parts of a request that every try repeats.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    /// The authority the caller used (service name), for `Host` on
    /// HTTP/1.1 when the headers have none; `None` when they surely do.
    pub authority: Option<HeaderValue>,
}

/// Why the proxy answers itself instead of relaying an upstream response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    pub reason: &'static str,
    /// For a circuit-breaker rejection: which limit.
    pub overloaded: Option<&'static str>,
}

impl Failure {
    pub const fn new(status: StatusCode, reason: &'static str) -> Self {
        Failure {
            status,
            reason,
            overloaded: None,
        }
    }

    fn of(outcome: TryOutcome) -> Self {
        match outcome {
            TryOutcome::ConnectFailure => {
                Failure::new(StatusCode::SERVICE_UNAVAILABLE, outcome.reason())
            }
            TryOutcome::Reset | TryOutcome::Malformed => {
                Failure::new(StatusCode::BAD_GATEWAY, outcome.reason())
            }
            TryOutcome::PerTryTimeout => {
                Failure::new(StatusCode::GATEWAY_TIMEOUT, outcome.reason())
            }
            TryOutcome::CallerBody => Failure::new(StatusCode::BAD_REQUEST, outcome.reason()),
            TryOutcome::Status(s) => Failure::new(s, outcome.reason()),
        }
    }
}

/// Per-request facts the try loop needs.
#[derive(Debug)]
pub struct TryPolicy<'a> {
    pub retry: Option<&'a RetryPlan>,
    pub per_try_timeout: Option<Duration>,
    /// Ring hash key of this request.
    pub hash: Option<u64>,
    pub clock: Clock,
}

/// The HTTP/2 request of one try: an absolute URI (`:authority` is the
/// endpoint) and no `Host` header.
fn h2_request(
    authority: &Authority,
    head: &RequestHead,
    mut headers: HeaderMap,
    body: ProxyBody,
) -> Request<ProxyBody> {
    headers.remove(header::HOST);
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(head.path_and_query.clone());
    let mut req = Request::new(body);
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path make a URI");
    *req.version_mut() = Version::HTTP_2;
    *req.headers_mut() = headers;
    req
}

/// One try to one endpoint: `head` with this try's `headers` and `body`.
/// HTTP/1.1 goes in origin form with a `Host` header (the name the caller
/// used, else the endpoint's address, added by the sender), straight from
/// the parts; HTTP/2 as an `http::Request`.
async fn try_once(
    pool: &Pool,
    endpoint: &EndpointState,
    head: &RequestHead,
    headers: HeaderMap,
    body: ProxyBody,
    per_try_timeout: Option<Duration>,
) -> Result<Response<UpstreamBody>, TryOutcome> {
    let client = &pool.service.client;
    // One future of either protocol (an enum, not an `async` block around
    // both, whose own state would cost more in moves than the request
    // this saves building).
    let fut = if client.key.http2 {
        let req = h2_request(&endpoint.authority, head, headers, body);
        Either::Left(client.send(&endpoint.authority, &endpoint.conns, req))
    } else {
        let mut headers = headers;
        if let Some(a) = &head.authority
            && !headers.contains_key(header::HOST)
        {
            headers.insert(header::HOST, a.clone());
        }
        let target = head.path_and_query.as_str();
        Either::Right(client.send_h1(
            &endpoint.authority,
            &endpoint.conns,
            &head.method,
            target,
            headers,
            body,
        ))
    };
    let result = match per_try_timeout {
        Some(d) => tokio::time::timeout(d, fut)
            .await
            .map_err(|_| TryOutcome::PerTryTimeout)?,
        None => fut.await,
    };
    result.map_err(|e| match e {
        SendError::Connect => TryOutcome::ConnectFailure,
        SendError::Reset => TryOutcome::Reset,
        SendError::Malformed => TryOutcome::Malformed,
        SendError::CallerBody => TryOutcome::CallerBody,
    })
}

/// Sends `head` + `body` to `pool`, retrying as `policy` allows. Returns the
/// upstream response (which may itself be an error status) or why not.
/// (Not an `async fn`: an `async move` block uses its arguments where they
/// lie, where an `async fn` copies each into its body on the first poll.)
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn copies its arguments on the first poll"
)]
pub fn forward<'a>(
    pool: &'a Pool,
    mut head: RequestHead,
    body: RequestBody,
    policy: &'a TryPolicy<'_>,
) -> impl Future<Output = Result<Response<UpstreamBody>, Failure>> + 'a {
    async move {
        let service = &pool.service;
        let _permit = service.breaker.admit().map_err(|limit| {
            service.metrics.breaker_rejected(limit.as_str());
            Failure {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason: "circuit-breaker",
                overloaded: Some(limit.as_str()),
            }
        })?;
        let clock = policy.clock;
        let retry = policy.retry.filter(|r| r.max_retries > 0);
        if let Some(r) = retry {
            r.budget.record_request(clock.now_ms());
        }
        let (replay, mut streaming) = match body {
            RequestBody::Replayable(b) => (Some(b), None),
            RequestBody::Streaming(s) => (None, Some(s)),
        };
        let mut retries_done = 0u32;
        let mut exclude = None;
        loop {
            // Endpoints are only ejected under an outlier policy; without one
            // the clock is not read, and no ejection applies.
            let now_ms = match service.outlier {
                Some(_) => clock.now_ms(),
                None => u64::MAX,
            };
            let Some(i) = pool.pick(now_ms, exclude, policy.hash) else {
                return Err(Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no-healthy-endpoint",
                ));
            };
            let endpoint = &pool.endpoints[i];
            let (headers, body) = match &replay {
                Some(replay) => (head.headers.clone(), replay.body()),
                None => (
                    std::mem::take(&mut head.headers),
                    streaming.take().unwrap_or(ProxyBody::Empty),
                ),
            };
            let result = {
                let _in_flight = endpoint.start_request();
                try_once(pool, endpoint, &head, headers, body, policy.per_try_timeout).await
            };
            let outcome = match &result {
                Ok(r) => TryOutcome::Status(r.status()),
                Err(o) => *o,
            };
            let observation = match outcome {
                TryOutcome::Status(s) if s.is_server_error() => Some(Observation::ServerError),
                TryOutcome::Status(_) => Some(Observation::Success),
                TryOutcome::ConnectFailure | TryOutcome::Reset => Some(Observation::ConnectFailure),
                TryOutcome::Malformed | TryOutcome::PerTryTimeout => Some(Observation::ServerError),
                // Says nothing of the endpoint.
                TryOutcome::CallerBody => None,
            };
            if let Some(observation) = observation {
                service.observe(endpoint, observation, clock);
            }
            if outcome == TryOutcome::PerTryTimeout {
                service.metrics.per_try_timeouts.inc();
            }
            let plan = match retry {
                Some(r)
                    if replay.is_some() && retries_done < r.max_retries && r.retryable(outcome) =>
                {
                    r
                }
                _ => return result.map_err(Failure::of),
            };
            if !plan.budget.try_retry(clock.now_ms()) {
                service.metrics.budget_exhausted.inc();
                return result.map_err(Failure::of);
            }
            drop(result);
            pool.metrics.retries.inc();
            tokio::time::sleep(plan.backoff(retries_done)).await;
            retries_done += 1;
            exclude = Some(i);
        }
    }
}

/// Sends one copy of a request with no retry (mirrors, health checks).
pub async fn send_once(
    pool: &Pool,
    endpoint: usize,
    head: &RequestHead,
    body: ProxyBody,
    timeout: Duration,
) -> Result<StatusCode, TryOutcome> {
    let endpoint = &pool.endpoints[endpoint];
    let _in_flight = endpoint.start_request();
    let response = try_once(
        pool,
        endpoint,
        head,
        head.headers.clone(),
        body,
        Some(timeout),
    )
    .await?;
    let status = response.status();
    // Drain the body so the connection can return to the pool.
    let drain = http_body_util::BodyExt::collect(response.into_body());
    let _ = tokio::time::timeout(timeout, drain).await;
    Ok(status)
}
