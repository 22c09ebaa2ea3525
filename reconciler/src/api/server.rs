//! The proxy API over HTTP/1.1 (hyper), in plaintext or, when the
//! reconciler runs the mesh CA, HTTPS only: registration, long-polled config,
//! ACK/NACK and heartbeats, plus `GET /v1/status` and `GET /healthz`.
//!
//! One [`Registry`] sits behind a `std::sync::Mutex` that is only ever held
//! for a few map operations, never across an `.await`. Each proxy has a
//! `watch` channel that [`RegistryHandle::assign`] bumps when its digest
//! changes, so a waiting long poll answers at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use gitmesh_proxy_config::api::{
    Ack, CertificateSigningRequest, ConfigUpdate, Heartbeat, Registered, Registration,
};

use super::caller::ApiCaller;
use super::certificates::{CertificateService, Refused};
use super::registry::{ProxyView, Registry, RegistryError};

/// Largest request body accepted (a registration, an ACK, a heartbeat).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A long poll waits this long when the proxy does not say `wait=`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The longest `wait=` honoured.
pub const MAX_WAIT: Duration = Duration::from_secs(120);
/// How long shutdown lets in-flight requests finish.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a TLS client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr} for the proxy API: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The registry shared by the HTTP server and the reconciler loop. Cheap
/// to clone; its methods are quick and never block on IO, so async code
/// may call them directly.
#[derive(Clone, Debug)]
pub struct RegistryHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Bumped on register, ACK/NACK, a heartbeat that changes something,
    /// and expiry.
    changes: watch::Sender<u64>,
}

#[derive(Debug)]
struct State {
    registry: Registry,
    /// Per proxy: bumped when its assigned digest changes; dropped when it
    /// expires (waiting polls then answer 404).
    wake: HashMap<String, watch::Sender<u64>>,
}

/// Tokio's clock, so that tests with paused time drive expiry too.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl RegistryHandle {
    /// An empty registry; proxies are told to heartbeat every
    /// `heartbeat_interval` and expire after missing three.
    pub fn new(heartbeat_interval: Duration) -> Self {
        RegistryHandle {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    registry: Registry::new(heartbeat_interval),
                    wake: HashMap::new(),
                }),
                changes: watch::channel(0).0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self) {
        self.shared.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.lock().registry.heartbeat_interval()
    }

    /// Sets what proxy `id` should run; a long poll waiting on it answers
    /// at once if the digest changed. Returns whether it changed.
    pub fn assign(
        &self,
        id: &str,
        update: impl Into<Arc<ConfigUpdate>>,
    ) -> Result<bool, RegistryError> {
        let update = update.into();
        let mut state = self.lock();
        let changed = state.registry.assign(id, update)?;
        if changed && let Some(wake) = state.wake.get(id) {
            wake.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(changed)
    }

    /// Every registered proxy, by id.
    pub fn snapshot(&self) -> Vec<ProxyView> {
        self.lock().registry.proxies().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<ProxyView> {
        self.lock().registry.get(id).ok().cloned()
    }

    /// Fires (coalesced) whenever a proxy registers, ACKs or NACKs, changes
    /// health or running config, or expires. Re-read [`Self::snapshot`].
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Drops proxies that missed three heartbeats and returns them. The
    /// [`ApiServer`] calls this on its own every half interval.
    pub fn expire(&self) -> Vec<ProxyView> {
        let gone = {
            let mut state = self.lock();
            let gone = state.registry.expire(now());
            for p in &gone {
                state.wake.remove(&p.id);
            }
            gone
        };
        if !gone.is_empty() {
            for p in &gone {
                tracing::info!(id = %p.id, service = %p.service, "proxy stopped heartbeating; dropped");
            }
            self.changed();
        }
        gone
    }

    pub fn register(&self, registration: Registration) -> Result<Registered, RegistryError> {
        let registered = {
            let mut state = self.lock();
            let registered = state.registry.register(registration, now())?;
            state
                .wake
                .entry(registered.id.clone())
                .or_insert_with(|| watch::channel(0).0);
            registered
        };
        self.changed();
        Ok(registered)
    }

    pub fn ack(&self, id: &str, ack: Ack) -> Result<(), RegistryError> {
        self.lock().registry.ack(id, ack, now())?;
        self.changed();
        Ok(())
    }

    pub fn heartbeat(&self, id: &str, heartbeat: Heartbeat) -> Result<(), RegistryError> {
        if self.lock().registry.heartbeat(id, heartbeat, now())? {
            self.changed();
        }
        Ok(())
    }

    /// The update to send a proxy that knows `known`, or a subscription
    /// that fires when its assignment changes.
    fn poll(&self, id: &str, known: &str) -> Result<Poll, RegistryError> {
        let state = self.lock();
        let proxy = state.registry.get(id)?;
        match &proxy.assigned {
            Some(update) if update.digest != known => Ok(Poll::Ready(update.clone())),
            _ => {
                let wake = state
                    .wake
                    .get(id)
                    .map(watch::Sender::subscribe)
                    .ok_or_else(|| RegistryError::UnknownProxy(id.to_string()))?;
                Ok(Poll::Wait(wake))
            }
        }
    }
}

enum Poll {
    Ready(Arc<ConfigUpdate>),
    Wait(watch::Receiver<u64>),
}

/// What a verified webhook call does (fetch now).
type OnPush = Arc<dyn Fn() + Send + Sync>;

/// Routes beside the proxy API that the reconciler plugs in: the Git
/// webhook and the Prometheus metrics page.
#[derive(Clone, Default)]
struct Extras {
    /// `POST /v1/hooks/git`: the shared secret, and what to do once a
    /// request is verified (fetch now).
    webhook: Option<(Arc<[u8]>, OnPush)>,
    /// `GET /metrics`: renders the text exposition format.
    metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    certificates: Option<Arc<CertificateService>>,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras")
            .field("webhook", &self.webhook.is_some())
            .field("metrics", &self.metrics.is_some())
            .field("certificates", &self.certificates.is_some())
            .finish()
    }
}

/// The proxy API server, bound and ready to [`run`](Self::run).
#[derive(Debug)]
pub struct ApiServer {
    listener: TcpListener,
    local: SocketAddr,
    registry: RegistryHandle,
    extras: Extras,
    /// `Some`: every connection must be TLS (plaintext is dropped at the
    /// handshake).
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl ApiServer {
    /// Binds `addr` (`127.0.0.1:0` picks a free port).
    pub async fn bind(addr: SocketAddr, registry: RegistryHandle) -> Result<ApiServer, ApiError> {
        let bind_err = |source| ApiError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        Ok(ApiServer {
            listener,
            local,
            registry,
            extras: Extras::default(),
            tls: None,
        })
    }

    /// Serves HTTPS only, with `acceptor` (see [`super::tls`]): a
    /// plaintext request is refused at the handshake, so a bootstrap token
    /// never crosses in clear.
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves `POST /v1/hooks/git`: a request signed with `secret` (GitHub's
    /// `X-Hub-Signature-256` or GitLab's `X-Gitlab-Token`) calls `on_push`;
    /// anything else gets 401 and changes nothing.
    pub fn with_webhook(
        mut self,
        secret: Vec<u8>,
        on_push: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        self.extras.webhook = Some((secret.into(), Arc::new(on_push)));
        self
    }

    /// Serves `POST /v1/certificates` (the mesh CA, behind bootstrap tokens).
    pub fn with_certificates(mut self, service: Arc<CertificateService>) -> Self {
        self.extras.certificates = Some(service);
        self
    }

    /// Serves `GET /metrics` with what `render` returns.
    pub fn with_metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.extras.metrics = Some(Arc::new(render));
        self
    }

    /// Serves until `shutdown` resolves, expiring silent proxies as it goes;
    /// then stops accepting, answers waiting long polls with 503, and gives
    /// in-flight requests a few seconds. Dropping the future instead closes
    /// every connection at once (what a crash looks like to proxies).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let ApiServer {
            listener,
            local,
            registry,
            extras,
            tls,
        } = self;
        tracing::info!(addr = %local, tls = tls.is_some(), "proxy API listening");
        let tls = tls.map(tokio_rustls::TlsAcceptor::from);
        let (stop, stopping) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut expiry = tokio::time::interval(
            (registry.heartbeat_interval() / 2).max(Duration::from_millis(10)),
        );
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let (registry, extras, stopping) = (registry.clone(), extras.clone(), stopping.clone());
                        match tls.clone() {
                            None => { connections.spawn(serve_connection(stream, ApiCaller::Open, registry, extras, stopping)); }
                            Some(acceptor) => { connections.spawn(async move {
                                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(stream)) => {
                                        let trust_domain = extras.certificates.as_ref().map_or("", |c| c.ca().trust_domain());
                                        let caller = ApiCaller::of(stream.get_ref().1.peer_certificates(), trust_domain);
                                        serve_connection(stream, caller, registry, extras, stopping).await
                                    }
                                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "proxy API: TLS handshake refused (plaintext or a bad client)"),
                                    Err(_) => tracing::info!(%peer, "proxy API: TLS handshake timed out"),
                                }
                            }); }
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: breathe.
                        tracing::warn!(error = %e, "proxy API: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = expiry.tick() => {
                    registry.expire();
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop.send(true);
        let drained = tokio::time::timeout(DRAIN, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "proxy API: connections still open after the drain timeout; closing them"
            );
        }
    }
}

async fn serve_connection<S>(
    stream: S,
    caller: ApiCaller,
    registry: RegistryHandle,
    extras: Extras,
    mut stopping: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stop = stopping.clone();
    let caller = Arc::new(caller);
    let service = service_fn(move |req| {
        let registry = registry.clone();
        let extras = extras.clone();
        let stop = stop.clone();
        let caller = caller.clone();
        async move { Ok::<_, Infallible>(route(req, &caller, &registry, &extras, stop).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stopped(&mut stopping) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves once the server is shutting down (or gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

type Answer = Response<Full<Bytes>>;

async fn route(
    req: Request<Incoming>,
    caller: &ApiCaller,
    registry: &RegistryHandle,
    extras: &Extras,
    stop: watch::Receiver<bool>,
) -> Answer {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    match (segments.as_slice(), method) {
        (["healthz"], Method::GET) => text(StatusCode::OK, "ok\n"),
        (["metrics"], Method::GET) => match &extras.metrics {
            Some(render) => owned_text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                render(),
            ),
            None => text(StatusCode::NOT_FOUND, "no metrics here\n"),
        },
        (["v1", "hooks", "git"], Method::POST) => match &extras.webhook {
            Some((secret, on_push)) => webhook(req, secret, on_push.as_ref()).await,
            None => text(
                StatusCode::NOT_FOUND,
                "no webhook configured (--webhook-secret-file)\n",
            ),
        },
        (["v1", "status"], Method::GET) => status(registry),
        (["v1", "certificates"], Method::POST) => match &extras.certificates {
            Some(ca) => certificate(req, ca).await,
            None => text(
                StatusCode::NOT_FOUND,
                "no mesh CA here (start the reconciler with --bootstrap-token-file or GITMESH_BOOTSTRAP_TOKEN)\n",
            ),
        },
        (["v1", "proxies"], Method::POST) => match read_json::<Registration>(req).await {
            Ok(registration) => match caller.may_act_for(&registration.service) {
                Err((status, why)) => error(status, &why),
                Ok(()) => match registry.register(registration) {
                    Ok(registered) => json(StatusCode::OK, &registered),
                    Err(e) => refused(&e),
                },
            },
            Err(answer) => answer,
        },
        (["v1", "proxies", id, "config" | "ack" | "heartbeat"], _)
            if let Some(refusal) = act_for_proxy(caller, registry, id) =>
        {
            refusal
        }
        (["v1", "proxies", id, "config"], Method::GET) => {
            let id = id.to_string();
            long_poll(req.uri().query().unwrap_or(""), &id, registry, stop).await
        }
        (["v1", "proxies", id, "ack"], Method::POST) => {
            let id = id.to_string();
            match read_json::<Ack>(req).await {
                Ok(ack) => no_content(registry.ack(&id, ack)),
                Err(answer) => answer,
            }
        }
        (["v1", "proxies", id, "heartbeat"], Method::POST) => {
            let id = id.to_string();
            match read_json::<Heartbeat>(req).await {
                Ok(heartbeat) => no_content(registry.heartbeat(&id, heartbeat)),
                Err(answer) => answer,
            }
        }
        (["healthz"] | ["v1", "status"] | ["v1", "proxies"], _)
        | (["v1", "proxies", _, "config" | "ack" | "heartbeat"], _) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "routes: POST /v1/proxies, GET /v1/proxies/{id}/config, POST /v1/proxies/{id}/ack, \
             POST /v1/proxies/{id}/heartbeat, GET /v1/status, GET /healthz\n",
        ),
    }
}

/// The answer refusing `caller` a route of proxy `id`, if it may not speak
/// for that proxy's service (an unknown id is left to the route: 404).
fn act_for_proxy(caller: &ApiCaller, registry: &RegistryHandle, id: &str) -> Option<Answer> {
    if *caller == ApiCaller::Open {
        // Plain HTTP (no mesh CA): nothing to check, no lookup.
        return None;
    }
    let service = registry.get(id)?.service;
    caller
        .may_act_for(&service)
        .err()
        .map(|(status, why)| error(status, &why))
}

/// `POST /v1/certificates`: token first (401 on anything but the right
/// one), then the CSR (400 with the reason).
async fn certificate(req: Request<Incoming>, ca: &CertificateService) -> Answer {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let request = match read_json::<CertificateSigningRequest>(req).await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    match ca.issue(token.as_deref(), &request, std::time::SystemTime::now()) {
        Ok(issued) => json(StatusCode::OK, &issued),
        Err(e @ Refused::Token) => error(StatusCode::UNAUTHORIZED, &e.to_string()),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `POST /v1/hooks/git`: verify, then fetch. A bad or missing signature
/// gets 401 and triggers nothing.
async fn webhook(
    req: Request<Incoming>,
    secret: &[u8],
    on_push: &(dyn Fn() + Send + Sync),
) -> Answer {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let github = header(crate::watch::GITHUB_SIGNATURE_HEADER);
    let gitlab = header(crate::watch::GITLAB_TOKEN_HEADER);
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
    };
    match crate::watch::verify(secret, github.as_deref(), gitlab.as_deref(), &body) {
        Ok(provider) => {
            tracing::info!(?provider, "webhook: fetching now");
            on_push();
            text(StatusCode::ACCEPTED, "fetching\n")
        }
        Err(e) => {
            tracing::warn!(error = %e, "webhook refused");
            owned_text(StatusCode::UNAUTHORIZED, "text/plain", format!("{e}\n"))
        }
    }
}

/// `GET /v1/proxies/{id}/config?known=DIGEST&wait=30s`.
async fn long_poll(
    query: &str,
    id: &str,
    registry: &RegistryHandle,
    mut stop: watch::Receiver<bool>,
) -> Answer {
    let mut known = String::new();
    let mut wait = DEFAULT_WAIT;
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "known" => known = value,
            "wait" => match gitmesh_proxy_config::Duration::from_str(&value) {
                Ok(d) => wait = d.to_std().min(MAX_WAIT),
                Err(e) => return error(StatusCode::BAD_REQUEST, &format!("wait={value}: {e}")),
            },
            _ => {}
        }
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut wake = match registry.poll(id, &known) {
            Ok(Poll::Ready(update)) => return json(StatusCode::OK, &*update),
            Ok(Poll::Wait(wake)) => wake,
            Err(e) => return refused(&e),
        };
        tokio::select! {
            woke = wake.changed() => {
                if woke.is_err() {
                    // The proxy expired while waiting.
                    return refused(&RegistryError::UnknownProxy(id.to_string()));
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                return Response::builder()
                    .status(StatusCode::NOT_MODIFIED)
                    .body(Full::new(Bytes::new()))
                    .expect("a static response builds");
            }
            () = stopped(&mut stop) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, "the reconciler is shutting down; poll again");
            }
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    heartbeat_interval_ms: u128,
    proxies: Vec<StatusEntry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusEntry<'a> {
    #[serde(flatten)]
    proxy: &'a ProxyView,
    /// Milliseconds since the last sign of life.
    last_seen_ms: u128,
}

fn status(registry: &RegistryHandle) -> Answer {
    let proxies = registry.snapshot();
    let at = now();
    let body = Status {
        heartbeat_interval_ms: registry.heartbeat_interval().as_millis(),
        proxies: proxies
            .iter()
            .map(|proxy| StatusEntry {
                proxy,
                last_seen_ms: at
                    .saturating_duration_since(proxy.last_heartbeat)
                    .as_millis(),
            })
            .collect(),
    };
    json(StatusCode::OK, &body)
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`]: 413 when larger, 400
/// with serde's message when it does not parse.
async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Answer> {
    let bytes = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read body: {e}"),
            ));
        }
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")))
}

/// `key=value` pairs of a query string, percent-decoded.
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn refused(e: &RegistryError) -> Answer {
    let status = match e {
        RegistryError::UnknownProxy(_) => StatusCode::NOT_FOUND,
        RegistryError::InvalidRegistration(_) => StatusCode::BAD_REQUEST,
    };
    error(status, &e.to_string())
}

fn no_content(result: Result<(), RegistryError>) -> Answer {
    match result {
        Ok(()) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .expect("a static response builds"),
        Err(e) => refused(&e),
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> Answer {
    let bytes = serde_json::to_vec(body).expect("API types always serialize");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .expect("a static response builds")
}

/// `{"error": "..."}`, so that clients print the reason.
fn error(status: StatusCode, message: &str) -> Answer {
    json(status, &serde_json::json!({ "error": message }))
}

/// A text answer whose body is built at run time.
fn owned_text(status: StatusCode, content_type: &'static str, body: String) -> Answer {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a text response builds")
}

fn text(status: StatusCode, body: &'static str) -> Answer {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a static response builds")
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
