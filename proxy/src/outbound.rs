//! The outbound listener's request path: the local app calls
//! `http://<service>/…` (or uses us as `HTTP_PROXY`), and each request goes
//! through named phases: destination → route → redirect → fault → split →
//! request filters → body → mirror → forward → response filters → log.

use std::net::SocketAddr;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tokio::time::Instant;

use crate::balance::hash64;
use crate::body::{ProxyBody, materialize_headers};
use crate::clock::Clock;
use crate::forward::{Failure, RequestBody, RequestHead, TryPolicy, forward};
use crate::h1;
use crate::metrics::Metrics;
use crate::mirror::Mirrors;
use crate::respond::{self, X_GITMESH_FAULT, X_GITMESH_OVERLOADED};
use crate::routing::{Matched, RedirectFrom, RequestView, modify_path, redirect_location};
use crate::snapshot::Snapshot;
use crate::swap::ConfigStore;

/// The outbound request handler, shared by all outbound connections.
#[derive(Debug)]
pub struct Outbound {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
    pub mirrors: Mirrors,
    pub clock: Clock,
    /// Largest body buffered so it can be retried or mirrored.
    pub replay_limit: usize,
}

/// Host and port of the destination: the absolute-form URI's authority
/// (HTTP proxy style, and HTTP/2's `:authority`), else the `Host` header.
fn destination(parts: &Parts) -> Option<(&str, Option<u16>)> {
    if let Some(a) = parts.uri.authority() {
        return Some((a.host(), a.port_u16()));
    }
    let host = parts.headers.get(header::HOST)?.to_str().ok()?;
    if host.starts_with('[') {
        let end = host.find(']')?;
        let port = host[end + 1..]
            .strip_prefix(':')
            .and_then(|p| p.parse().ok());
        return Some((&host[..=end], port));
    }
    Some(match host.split_once(':') {
        Some((h, p)) => (h, p.parse().ok()),
        None => (host, None),
    })
}

/// Per-request state carried between phases, for metrics and the access log.
struct RequestCtx {
    started: Instant,
    peer: SocketAddr,
}

impl Outbound {
    /// Not an `async fn`: the request is split before the future is
    /// built, so the future holds its parts once, in place (an `async fn`
    /// would hold the request, copy it on its first poll, then split it).
    pub fn handle(
        self: Arc<Self>,
        req: Request<ProxyBody>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> {
        let (mut parts, body) = req.into_parts();
        async move {
            let ctx = RequestCtx {
                started: Instant::now(),
                peer,
            };
            let snapshot = self.store.current();
            // The parts stay here: routing reads them in place, and the
            // forwarded head takes only what it needs out of them.
            let response = self
                .route_and_forward(&snapshot, &ctx, &mut parts, body)
                .await;
            response.unwrap_or_else(|(failure, service)| {
                self.metrics.error("outbound", failure.reason);
                tracing::info!(
                    target: "gitmesh::access",
                    direction = "outbound",
                    service,
                    status = failure.status.as_u16(),
                    reason = failure.reason,
                    duration_us = ctx.started.elapsed().as_micros() as u64,
                );
                let mut r = respond::error(failure.status, failure.reason);
                if let Some(limit) = failure.overloaded {
                    r.headers_mut()
                        .insert(&X_GITMESH_OVERLOADED, HeaderValue::from_static(limit));
                }
                r
            })
        }
    }

    async fn route_and_forward(
        &self,
        snapshot: &Snapshot,
        ctx: &RequestCtx,
        parts: &mut Parts,
        body: ProxyBody,
    ) -> Result<Response<ProxyBody>, (Failure, String)> {
        // Destination.
        let Some((host, port)) = destination(parts) else {
            return Err((
                Failure::new(StatusCode::BAD_REQUEST, "missing-host"),
                String::new(),
            ));
        };
        let Some(service) = snapshot.services.get(host) else {
            return Err((
                Failure::new(StatusCode::NOT_FOUND, "unknown-destination"),
                host.to_string(),
            ));
        };
        let fail = |f: Failure| (f, service.name.clone());

        // Route.
        let path = parts.uri.path();
        let query = parts.uri.query();
        let matched = match &service.table {
            None => Some(Matched {
                rule: 0,
                prefix_len: None,
            }),
            Some(table) => table.lookup(&RequestView {
                method: &parts.method,
                path,
                query,
                headers: &parts.headers,
            }),
        };
        let Some(matched) = matched else {
            return Err(fail(Failure::new(StatusCode::NOT_FOUND, "no-route")));
        };
        let rule = &service.rules[matched.rule];

        // Redirect.
        if let Some((redirect, status)) = &rule.redirect {
            let location = redirect_location(
                redirect,
                &RedirectFrom {
                    host,
                    port,
                    path,
                    query,
                    prefix_len: matched.prefix_len,
                },
            );
            let mut r = Response::new(ProxyBody::Empty);
            *r.status_mut() = *status;
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return Ok(r);
        }

        // Fault injection.
        if let Some(fault) = &rule.fault {
            let action = fault.decide(|| rand::random_range(0.0..100.0));
            if let Some(d) = action.delay {
                tokio::time::sleep(d).await;
            }
            if let Some(status) = action.abort {
                let mut r = respond::error(status, "fault-abort");
                r.headers_mut()
                    .insert(&X_GITMESH_FAULT, HeaderValue::from_static("abort"));
                return Ok(r);
            }
        }

        // Backend split.
        let sticky = rule.sticky.as_ref().and_then(|k| k.hash(&parts.headers));
        let Some(pool) = rule.split.pick(sticky) else {
            return Err(fail(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no-backend",
            )));
        };

        // Request filters. `authority` is the name the caller used, for a
        // `Host` header should the request have none by the time it leaves:
        // needed in absolute form, or when a filter could remove `Host`
        // (an origin-form request without edits keeps the `Host` it has).
        let mut authority = match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None if !rule.request_headers.is_empty() => parts.headers.get(header::HOST).cloned(),
            None => None,
        };
        let mut path_and_query = h1::encode::origin_form(&parts.uri);
        let headers = &mut parts.headers;
        respond::strip_hop_by_hop(headers);
        for edit in &rule.request_headers {
            edit.apply(headers);
        }
        if let Some(rewrite) = &rule.rewrite {
            if let Some(h) = &rewrite.hostname {
                headers.insert(header::HOST, h.clone());
                authority = Some(h.clone());
            }
            if let Some(modifier) = &rewrite.path {
                let mut p = modify_path(modifier, path_and_query.path(), matched.prefix_len);
                if let Some(q) = path_and_query.query() {
                    p.push('?');
                    p.push_str(q);
                }
                path_and_query = p.parse().map_err(|_| {
                    fail(Failure::new(StatusCode::BAD_REQUEST, "bad-rewritten-path"))
                })?;
            }
        }
        if parts.uri.authority().is_some() {
            // Absolute-form: the upstream gets origin-form and a Host header.
            if let Some(a) = &authority {
                headers.insert(header::HOST, a.clone());
            }
        }

        // Body: buffered only when a retry or a mirror may need it again.
        let wants_replay =
            rule.retry.as_ref().is_some_and(|r| r.max_retries > 0) || !rule.mirrors.is_empty();
        let (body, fits) = if wants_replay {
            // Boxed, so that requests that need no buffering do not carry
            // (and copy) its state.
            Box::pin(RequestBody::prepare(body, true, self.replay_limit))
                .await
                .map_err(|_| fail(Failure::new(StatusCode::BAD_REQUEST, "request-body-error")))?
        } else {
            (RequestBody::Streaming(body), true)
        };
        if !fits {
            self.metrics.error("outbound", "replay-body-too-large");
        }
        let head = RequestHead {
            method: std::mem::take(&mut parts.method),
            path_and_query,
            headers: std::mem::take(&mut parts.headers),
            authority,
        };

        // Mirrors.
        if let Some(replay) = body.replayable() {
            for (mirror_pool, percent) in &rule.mirrors {
                if rand::random_range(0.0..100.0) < *percent {
                    let copy = RequestHead {
                        method: head.method.clone(),
                        path_and_query: head.path_and_query.clone(),
                        headers: head.headers.clone(),
                        authority: head.authority.clone(),
                    };
                    self.mirrors.spawn(mirror_pool.clone(), copy, replay.body());
                }
            }
        }

        // Forward, with the whole-request timeout around every try.
        let hash = match pool.balancer {
            crate::balance::Balancer::RingHash(_) => match &pool.service.hash_on {
                Some(key) => key.hash(&head.headers),
                None => Some(hash64(ctx.peer.ip().to_string().as_bytes())),
            },
            _ => None,
        };
        let policy = TryPolicy {
            retry: rule.retry.as_deref(),
            per_try_timeout: rule.per_try_timeout,
            hash,
            clock: self.clock,
        };
        let method = head.method.clone();
        let fut = forward(pool, head, body, &policy);
        let result = match rule.request_timeout {
            Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
                pool.service.metrics.request_timeouts.inc();
                Err(Failure::new(StatusCode::GATEWAY_TIMEOUT, "request-timeout"))
            }),
            None => fut.await,
        };
        let elapsed = ctx.started.elapsed();
        let response = match result {
            Ok(r) => r.map(ProxyBody::Upstream),
            Err(f) => {
                pool.metrics.record(f.status.as_u16(), elapsed);
                return Err(fail(f));
            }
        };

        // Response filters, metrics, access log.
        let (mut rparts, mut rbody) = response.into_parts();
        if !rule.response_headers.is_empty() {
            materialize_headers(&mut rparts.headers, &mut rbody);
        }
        // (Raw upstream lines hold no hop-by-hop header: the codec took
        // them out.)
        respond::strip_hop_by_hop(&mut rparts.headers);
        for edit in &rule.response_headers {
            edit.apply(&mut rparts.headers);
        }
        pool.metrics.record(rparts.status.as_u16(), elapsed);
        tracing::info!(
            target: "gitmesh::access",
            direction = "outbound",
            service = %service.name,
            subset = pool.subset_label(),
            route = %rule.route,
            method = %method,
            status = rparts.status.as_u16(),
            duration_us = elapsed.as_micros() as u64,
        );
        Ok(Response::from_parts(rparts, rbody))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: Option<&str>) -> Parts {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn destination_from_absolute_uri_or_host() {
        let p = parts("http://reviews:9080/x", Some("other"));
        assert_eq!(destination(&p), Some(("reviews", Some(9080))));
        let p = parts("/x", Some("ratings:80"));
        assert_eq!(destination(&p), Some(("ratings", Some(80))));
        let p = parts("/x", Some("ratings"));
        assert_eq!(destination(&p), Some(("ratings", None)));
        let p = parts("/x", Some("[::1]:8080"));
        assert_eq!(destination(&p), Some(("[::1]", Some(8080))));
        assert_eq!(destination(&parts("/x", None)), None);
    }
}
