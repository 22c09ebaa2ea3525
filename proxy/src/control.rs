//! The control-plane client: registers with the reconciler, long-polls for
//! the assigned config, applies it (hot swap) and answers ACK or NACK, and
//! heartbeats its health. The running config is never dropped: while the
//! reconciler is unreachable the proxy keeps serving and retries with capped
//! exponential backoff and jitter; when the reconciler forgot it (404) it
//! registers again under the same id.
//!
//! [`spawn`] starts the loop beside a [`RunningProxy`]; the pure parts
//! ([`Backoff`], URL building) are tested below.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use gitmesh_proxy_config::ProxyConfig;
use gitmesh_proxy_config::api::{Ack, ConfigUpdate, Heartbeat, Registered, Registration, Running};

use crate::control_tls::{ApiHttpClient, api_client};
use crate::proxy::RunningProxy;

/// Largest answer read from the reconciler (a config for a big mesh).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// The file in the state dir that keeps the proxy's id across restarts.
pub const ID_FILE: &str = "proxy-id";

/// A control-plane client that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidControl {
    #[error("control plane URL `{0}` must be http://host:port or https://host:port")]
    Url(String),
    #[error("backoff: {0}")]
    Backoff(String),
    #[error("label `{0}` must be KEY=VALUE with a non-empty KEY")]
    Label(String),
}

/// What went wrong talking to the reconciler.
#[derive(Debug, thiserror::Error)]
enum ControlError {
    /// 404: the reconciler does not know this id (it restarted, or expired us).
    #[error("the reconciler does not know this proxy")]
    Forgotten,
    #[error("cannot reach the reconciler: {0}")]
    Unreachable(String),
    #[error("the reconciler answered {status}: {body}")]
    Refused { status: StatusCode, body: String },
    #[error("the reconciler's answer does not parse: {0}")]
    BadAnswer(serde_json::Error),
}

/// Capped exponential backoff with jitter: attempt `n` waits
/// `min · 2ⁿ`, capped at `max`, minus up to `jitter` of it at random.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// Refuses a zero `min`, a `max` below `min`, or a `jitter` outside
    /// `0..=1`.
    pub fn try_new(min: Duration, max: Duration, jitter: f64) -> Result<Backoff, InvalidControl> {
        if min.is_zero() {
            return Err(InvalidControl::Backoff(
                "the minimum must be above zero".into(),
            ));
        }
        if max < min {
            return Err(InvalidControl::Backoff(format!(
                "the maximum {max:?} is below the minimum {min:?}"
            )));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(InvalidControl::Backoff(format!(
                "jitter {jitter} must be between 0 and 1"
            )));
        }
        Ok(Backoff { min, max, jitter })
    }

    /// The wait before retry number `attempt` (0-based), given `random` in
    /// `[0, 1)`.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let base = self
            .min
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        base.mul_f64(1.0 - self.jitter * random.clamp(0.0, 1.0))
    }

    fn sleep(&self, attempt: &mut u32) -> tokio::time::Sleep {
        let wait = self.delay(*attempt, rand::random::<f64>());
        *attempt = attempt.saturating_add(1);
        tokio::time::sleep(wait)
    }
}

impl Default for Backoff {
    /// 200 ms, doubling up to 15 s, with up to half of it random.
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(200),
            max: Duration::from_secs(15),
            jitter: 0.5,
        }
    }
}

/// How the proxy talks to its reconciler.
#[derive(Clone, Debug)]
pub struct ControlSettings {
    /// The reconciler's base URL, e.g. `http://127.0.0.1:15010`.
    pub control_plane: Uri,
    /// How `https://` control planes are verified (the `--ca-bundle`
    /// roots); `None` refuses every HTTPS server.
    pub api_tls: Option<Arc<rustls::ClientConfig>>,
    pub service: String,
    /// `host:port` where peers reach this instance's inbound listener.
    pub address: String,
    pub labels: BTreeMap<String, String>,
    /// The id to register under (a restarted proxy keeps its id).
    pub id: Option<String>,
    /// Where to save the id the reconciler gave (the state dir's
    /// [`ID_FILE`]).
    pub id_file: Option<PathBuf>,
    /// What the proxy runs as the loop starts.
    pub running: Running,
    /// How long one long poll waits for a change.
    pub poll_wait: Duration,
    /// How long any other request may take.
    pub request_timeout: Duration,
    pub backoff: Backoff,
    /// The local app (`host:port`): the proxy reports itself unhealthy
    /// while the app does not accept connections. `None`: healthy while
    /// serving.
    pub app: Option<String>,
}

impl ControlSettings {
    /// Defaults for everything but who the proxy is.
    pub fn new(control_plane: Uri, service: String, address: String, running: Running) -> Self {
        ControlSettings {
            control_plane,
            api_tls: None,
            service,
            address,
            labels: BTreeMap::new(),
            id: None,
            id_file: None,
            running,
            poll_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            app: None,
        }
    }
}

/// Whether the local app accepts a TCP connection within a short time: the
/// health a heartbeat reports (a sidecar whose app is down is not healthy,
/// whatever its own state).
async fn app_reachable(app: Option<&str>) -> bool {
    let Some(app) = app else { return true };
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(app)
        )
        .await,
        Ok(Ok(_))
    )
}

/// What the control loop last did, for logs, tests and `/ready`-like checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlStatus {
    /// The id the reconciler knows this proxy by.
    pub id: Option<String>,
    /// Registered and not known to be forgotten since.
    pub registered: bool,
    /// How many times it registered (re-registrations included).
    pub registrations: u32,
    /// The last ACK or NACK it sent.
    pub last_ack: Option<Ack>,
    /// The last failure talking to the reconciler, cleared on success.
    pub last_error: Option<String>,
}

/// The running proxy and its control loop.
#[derive(Debug)]
pub struct ControlHandle {
    proxy: Arc<RunningProxy>,
    stop: watch::Sender<bool>,
    status: watch::Receiver<ControlStatus>,
    task: JoinHandle<()>,
}

impl ControlHandle {
    pub fn proxy(&self) -> &RunningProxy {
        &self.proxy
    }

    /// What the loop last did; `changed()` on it waits for the next step.
    pub fn status(&self) -> watch::Receiver<ControlStatus> {
        self.status.clone()
    }

    /// Stops the control loop (no more heartbeats), then drains the proxy.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        match Arc::try_unwrap(self.proxy) {
            Ok(proxy) => proxy.shutdown().await,
            Err(_) => tracing::error!("control loop still holds the proxy; not draining"),
        }
    }
}

/// Starts the control loop beside `proxy`. Call inside a tokio runtime.
pub fn spawn(proxy: RunningProxy, settings: ControlSettings) -> ControlHandle {
    let proxy = Arc::new(proxy);
    let (stop, mut stopping) = watch::channel(false);
    let (status_tx, status) = watch::channel(ControlStatus::default());
    let control = Control {
        client: ApiClient::new(
            settings.control_plane.clone(),
            settings.api_tls.clone(),
            settings.request_timeout,
        ),
        running: Mutex::new(settings.running.clone()),
        settings,
        proxy: proxy.clone(),
        status: status_tx,
    };
    let task = tokio::spawn(async move {
        tokio::select! {
            () = control.run() => {}
            _ = stopping.wait_for(|s| *s) => {}
        }
    });
    ControlHandle {
        proxy,
        stop,
        status,
        task,
    }
}

struct Control {
    client: ApiClient,
    settings: ControlSettings,
    proxy: Arc<RunningProxy>,
    /// What the proxy runs; never held across an `.await`.
    running: Mutex<Running>,
    status: watch::Sender<ControlStatus>,
}

impl Control {
    fn running(&self) -> Running {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records a failure; logs a warning for the first of a streak only,
    /// so a reconciler that is down for an hour does not flood the log.
    fn failed(&self, what: &str, e: &ControlError) {
        let first = self.status.borrow().last_error.is_none();
        if first {
            tracing::warn!(error = %e, "control plane: {what} failed; serving the running config and retrying");
        } else {
            tracing::debug!(error = %e, "control plane: {what} failed again");
        }
        self.status
            .send_modify(|s| s.last_error = Some(format!("{what}: {e}")));
    }

    /// A request went through: the next failure starts a new streak.
    fn recovered(&self) {
        self.status
            .send_if_modified(|s| s.last_error.take().is_some());
    }

    async fn run(self) {
        let mut id = self.settings.id.clone();
        loop {
            let registered = self.register(id.clone()).await;
            id = Some(registered.id.clone());
            let heartbeat = Duration::from_millis(registered.heartbeat_interval_ms.max(10));
            // Either loop ends only when the reconciler forgot this proxy.
            tokio::select! {
                () = self.poll_loop(&registered.id) => {}
                () = self.heartbeat_loop(&registered.id, heartbeat) => {}
            }
            tracing::info!(id = %registered.id, "the reconciler forgot this proxy; registering again");
            self.status.send_modify(|s| s.registered = false);
        }
    }

    /// Registers until it succeeds.
    async fn register(&self, id: Option<String>) -> Registered {
        let mut attempt = 0;
        loop {
            let registration = Registration {
                id: id.clone(),
                service: self.settings.service.clone(),
                address: self.settings.address.clone(),
                admin: Some(self.proxy.admin_addr().to_string()),
                labels: self.settings.labels.clone(),
                running: Some(self.running()),
            };
            match self
                .client
                .call::<Registered>(Method::POST, "/v1/proxies", Some(&registration), None)
                .await
            {
                Ok(Some(registered)) => {
                    tracing::info!(id = %registered.id, control_plane = %self.settings.control_plane, "registered");
                    self.save_id(&registered.id);
                    self.status.send_modify(|s| {
                        s.id = Some(registered.id.clone());
                        s.registered = true;
                        s.registrations += 1;
                        s.last_error = None;
                    });
                    return registered;
                }
                Ok(None) => self.failed(
                    "register",
                    &ControlError::Unreachable("empty answer".into()),
                ),
                Err(e) => self.failed("register", &e),
            }
            self.settings.backoff.sleep(&mut attempt).await;
        }
    }

    fn save_id(&self, id: &str) {
        let Some(path) = &self.settings.id_file else {
            return;
        };
        let result = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(path, id));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the proxy id");
        }
    }

    /// Long-polls, applies and answers, until the reconciler forgets us.
    async fn poll_loop(&self, id: &str) {
        // The last digest received, applied or refused: a refused config is
        // not fetched again until the assignment changes.
        let mut known = self.running().digest;
        let mut attempt = 0;
        loop {
            let path = config_path(id, &known, self.settings.poll_wait);
            let answer = self
                .client
                .call::<ConfigUpdate>(
                    Method::GET,
                    &path,
                    None::<&()>,
                    Some(self.settings.poll_wait + self.settings.request_timeout),
                )
                .await;
            match answer {
                Ok(Some(update)) => {
                    attempt = 0;
                    self.recovered();
                    known = update.digest.clone();
                    let ack = self.apply(update);
                    if !self.send_ack(id, ack).await {
                        return;
                    }
                }
                Ok(None) => {
                    attempt = 0;
                    self.recovered();
                }
                Err(ControlError::Forgotten) => return,
                Err(e) => {
                    self.failed("config poll", &e);
                    self.settings.backoff.sleep(&mut attempt).await;
                }
            }
        }
    }

    /// Hot-swaps `update` in: the ACK, or the NACK with every problem.
    fn apply(&self, update: ConfigUpdate) -> Ack {
        let version = update.config.version.clone();
        let digest = update.digest.clone();
        let result = if update.is_consistent() {
            self.proxy.apply(update.config).map_err(|e| e.to_string())
        } else {
            Err(format!(
                "digest {digest} is not the digest of the config sent ({})",
                update.config.digest()
            ))
        };
        match result {
            Ok(()) => {
                *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Running {
                    version: version.clone(),
                    digest: digest.clone(),
                };
                Ack {
                    version,
                    digest,
                    accepted: true,
                    reason: None,
                }
            }
            Err(reason) => {
                tracing::warn!(%version, %reason, "NACK: refused the assigned config");
                Ack {
                    version,
                    digest,
                    accepted: false,
                    reason: Some(reason),
                }
            }
        }
    }

    /// Sends `ack` until it arrives; `false` when the reconciler forgot us.
    async fn send_ack(&self, id: &str, ack: Ack) -> bool {
        let mut attempt = 0;
        let path = format!("/v1/proxies/{}/ack", encode(id));
        loop {
            match self
                .client
                .call::<()>(Method::POST, &path, Some(&ack), None)
                .await
            {
                Ok(_) => {
                    self.status.send_modify(|s| {
                        s.last_ack = Some(ack.clone());
                        s.last_error = None;
                    });
                    return true;
                }
                Err(ControlError::Forgotten) => return false,
                Err(e) => self.failed("ack", &e),
            }
            self.settings.backoff.sleep(&mut attempt).await;
        }
    }

    /// Heartbeats every `interval` (the first at once), until the
    /// reconciler forgets us. A failed heartbeat just waits for the next.
    async fn heartbeat_loop(&self, id: &str, interval: Duration) {
        let path = format!("/v1/proxies/{}/heartbeat", encode(id));
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let heartbeat = Heartbeat {
                // The proxy serves; healthy means its app answers too.
                healthy: app_reachable(self.settings.app.as_deref()).await,
                running: self.running(),
            };
            match self
                .client
                .call::<()>(
                    Method::POST,
                    &path,
                    Some(&heartbeat),
                    Some(interval.max(Duration::from_millis(500))),
                )
                .await
            {
                Ok(_) => self.recovered(),
                Err(ControlError::Forgotten) => return,
                Err(e) => self.failed("heartbeat", &e),
            }
        }
    }
}

/// A small JSON-over-HTTP/1.1 client for the reconciler.
struct ApiClient {
    http: ApiHttpClient,
    base: Uri,
    timeout: Duration,
}

impl ApiClient {
    fn new(base: Uri, tls: Option<Arc<rustls::ClientConfig>>, timeout: Duration) -> Self {
        ApiClient {
            http: api_client(tls),
            base,
            timeout,
        }
    }

    /// One request: `Ok(None)` for 204 or 304, `Ok(Some)` for a JSON body,
    /// [`ControlError::Forgotten`] for 404.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, ControlError> {
        let uri = endpoint(&self.base, path);
        let mut req = Request::builder().method(method).uri(uri);
        let bytes = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(b).expect("API messages always serialize"))
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        let exchange = async {
            let res = self
                .http
                .request(req)
                .await
                .map_err(|e| ControlError::Unreachable(error_chain(&e)))?;
            let status = res.status();
            let body = Limited::new(res.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| ControlError::Unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, ControlError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout.unwrap_or(self.timeout), exchange)
            .await
            .map_err(|_| ControlError::Unreachable("timed out".into()))??;
        match status {
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED => Ok(None),
            StatusCode::NOT_FOUND => Err(ControlError::Forgotten),
            s if s.is_success() => serde_json::from_slice(&body)
                .map(Some)
                .map_err(ControlError::BadAnswer),
            status => Err(ControlError::Refused {
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            }),
        }
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Parses `--control-plane`: an `http://` or `https://host:port` URL,
/// maybe with a path prefix.
pub fn parse_control_plane(url: &str) -> Result<Uri, InvalidControl> {
    let bad = || InvalidControl::Url(url.to_string());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if !matches!(uri.scheme_str(), Some("http" | "https"))
        || uri.authority().is_none()
        || uri.query().is_some()
    {
        return Err(bad());
    }
    Ok(uri)
}

/// Parses one `--label KEY=VALUE`.
pub fn parse_label(label: &str) -> Result<(String, String), InvalidControl> {
    match label.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(InvalidControl::Label(label.to_string())),
    }
}

/// `base` (scheme, authority, path prefix) joined with an API path.
fn endpoint(base: &Uri, path_and_query: &str) -> Uri {
    let prefix = base.path().trim_end_matches('/');
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(
        format!("{prefix}{path_and_query}")
            .parse()
            .expect("API paths are valid"),
    );
    Uri::from_parts(parts).expect("a valid base joined with a valid path")
}

/// `/v1/proxies/{id}/config?known=…&wait=…ms`.
fn config_path(id: &str, known: &str, wait: Duration) -> String {
    format!(
        "/v1/proxies/{}/config?known={}&wait={}ms",
        encode(id),
        encode(known),
        wait.as_millis()
    )
}

/// Percent-encodes everything but unreserved characters (and `:`, which
/// digests use and paths allow).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The config a proxy runs before the reconciler first answers: its
/// service, no upstreams, version `none`.
pub fn empty_config(service: &str) -> ProxyConfig {
    let json = serde_json::json!({ "version": "none", "service": service });
    ProxyConfig::from_json(json.to_string().as_bytes()).expect("an empty config is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::try_new(ms(100), ms(1000), 0.0).unwrap();
        let waits: Vec<_> = (0..6).map(|n| b.delay(n, 0.5)).collect();
        assert_eq!(
            waits,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(b.delay(u32::MAX, 0.0), ms(1000), "no overflow");
    }

    #[test]
    fn jitter_takes_off_at_most_its_share() {
        let b = Backoff::try_new(ms(100), ms(1000), 0.5).unwrap();
        assert_eq!(b.delay(3, 0.0), ms(800));
        assert_eq!(b.delay(3, 1.0), ms(400));
        let d = b.delay(3, 0.25);
        assert!(d > ms(400) && d < ms(800), "{d:?}");
    }

    #[test]
    fn backoff_refuses_nonsense() {
        assert!(Backoff::try_new(ms(0), ms(10), 0.1).is_err());
        let e = Backoff::try_new(ms(10), ms(5), 0.1).unwrap_err();
        assert!(e.to_string().contains("below the minimum"), "{e}");
        assert!(Backoff::try_new(ms(10), ms(10), 1.5).is_err());
        assert!(Backoff::try_new(ms(10), ms(10), 1.0).is_ok());
    }

    #[test]
    fn endpoints_keep_the_base_prefix() {
        let base = parse_control_plane("http://127.0.0.1:15010").unwrap();
        assert_eq!(
            endpoint(&base, "/v1/proxies").to_string(),
            "http://127.0.0.1:15010/v1/proxies"
        );
        let prefixed = parse_control_plane("http://cp.example:80/mesh/").unwrap();
        assert_eq!(
            endpoint(&prefixed, "/v1/proxies/a-1/ack").to_string(),
            "http://cp.example:80/mesh/v1/proxies/a-1/ack"
        );
    }

    #[test]
    fn config_path_encodes_the_id_and_carries_known_and_wait() {
        assert_eq!(
            config_path("web-abc123", "sha256:0f", Duration::from_secs(30)),
            "/v1/proxies/web-abc123/config?known=sha256:0f&wait=30000ms"
        );
        assert_eq!(
            config_path("a b/c", "", ms(5)),
            "/v1/proxies/a%20b%2Fc/config?known=&wait=5ms"
        );
    }

    #[test]
    fn flags_are_checked() {
        assert!(parse_control_plane("https://cp:443").is_ok());
        assert!(parse_control_plane("ftp://cp:21").is_err());
        assert!(parse_control_plane("127.0.0.1:15010").is_err());
        assert!(parse_control_plane("http://cp:1?x=1").is_err());
        assert_eq!(
            parse_label("version=v2").unwrap(),
            ("version".to_string(), "v2".to_string())
        );
        assert_eq!(parse_label("empty=").unwrap().1, "");
        assert!(parse_label("=v").is_err());
        assert!(parse_label("novalue").is_err());
    }

    #[test]
    fn the_empty_config_is_valid_and_named() {
        let c = empty_config("reviews");
        assert_eq!(
            (c.version.as_str(), c.service.as_str()),
            ("none", "reviews")
        );
        assert!(c.upstreams.is_empty());
        c.validate().unwrap();
    }
}
