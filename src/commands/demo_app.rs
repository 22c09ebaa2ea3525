//! `gitmesh demo-app`: a tiny HTTP service for the demo and the canary
//! end-to-end tests, whose version, error rate and latency are settable.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use clap::Args;
use gitmesh_proxy_config::Duration;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Run a tiny HTTP service for demos and canary tests: it answers every
/// request with its name and version, after a set latency, and fails a set
/// fraction of requests.
///
/// Every path answers 200 {"service":NAME,"version":VERSION,"path":PATH}
/// with the header `x-demo-version: VERSION`, after --latency (plus or
/// minus a random amount up to --latency-jitter), except a random
/// --error-rate fraction answered 503 {"error":"injected"}.
/// `GET /healthz` always answers 200 at once. HTTP/1.1 (keep-alive) and
/// HTTP/2 prior knowledge (h2c) share the port.
///
/// The error rate and latency change at run time, without a restart:
///   POST /control {"errorRate":0.2,"latency":"150ms","latencyJitter":"10ms"}
///        every field optional; answers the new settings
///   GET  /control
///        answers the current settings
///
/// Once bound it prints `demo-app NAME VERSION listening on ADDR` to
/// stderr, so `--listen 127.0.0.1:0` picks a free port that can be read back.
///
/// Examples:
///   gitmesh demo-app --listen 127.0.0.1:9080 --name reviews --version v1
///   gitmesh demo-app --listen 127.0.0.1:9081 --name reviews --version v2 \
///       --error-rate 0.2 --latency 20ms --latency-jitter 5ms
///   curl -i http://127.0.0.1:9081/reviews/1
///   curl -X POST http://127.0.0.1:9081/control -d '{"errorRate":1.0}'
///   curl --http2-prior-knowledge http://127.0.0.1:9081/healthz
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct DemoAppArgs {
    /// Where to listen. Port 0 picks a free port (printed on stderr).
    #[arg(long, default_value = "127.0.0.1:9080")]
    listen: SocketAddr,
    /// The service name put in every answer.
    #[arg(long)]
    name: String,
    /// The version put in every answer and in the x-demo-version header.
    #[arg(long)]
    version: String,
    /// The fraction of requests answered 503, from 0.0 (none) to 1.0 (all).
    #[arg(long, default_value_t = 0.0, value_parser = parse_error_rate, allow_negative_numbers = true)]
    error_rate: f64,
    /// How long every request waits before it is answered (`20ms`, `1s`).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    latency: Duration,
    /// Each request waits --latency plus or minus a random amount up to
    /// this (never less than zero).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    latency_jitter: Duration,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<Duration>().map_err(|e| e.to_string())
}

fn parse_error_rate(s: &str) -> Result<f64, String> {
    let rate = s
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("`{s}` is not a number: {}", RATE_HINT))?;
    check_error_rate(rate)
}

const RATE_HINT: &str = "the error rate is a fraction from 0.0 to 1.0 (0.2 fails 20% of requests)";

fn check_error_rate(rate: f64) -> Result<f64, String> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is out of range: {RATE_HINT}"))
    }
}

pub fn run(args: DemoAppArgs) -> anyhow::Result<ExitCode> {
    super::init_logging(args.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

/// The settings `/control` changes, each read and written on its own
/// (no lock, nothing held across an await).
struct Settings {
    /// An f64's bits.
    error_rate: AtomicU64,
    latency_ms: AtomicU64,
    jitter_ms: AtomicU64,
}

impl Settings {
    fn error_rate(&self) -> f64 {
        f64::from_bits(self.error_rate.load(Ordering::Relaxed))
    }

    fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }

    fn jitter(&self) -> Duration {
        Duration::from_millis(self.jitter_ms.load(Ordering::Relaxed))
    }

    fn apply(&self, update: &Update) {
        if let Some(rate) = update.error_rate {
            self.error_rate.store(rate.to_bits(), Ordering::Relaxed);
        }
        if let Some(latency) = update.latency {
            self.latency_ms
                .store(latency.as_millis(), Ordering::Relaxed);
        }
        if let Some(jitter) = update.jitter {
            self.jitter_ms.store(jitter.as_millis(), Ordering::Relaxed);
        }
    }

    /// How long the next request waits: the latency, moved by a random
    /// amount within the jitter, never below zero.
    fn delay(&self) -> std::time::Duration {
        let latency = self.latency_ms.load(Ordering::Relaxed);
        let jitter = self.jitter_ms.load(Ordering::Relaxed);
        let ms = if jitter == 0 {
            latency
        } else {
            let shift = rand::random_range(0..=jitter.saturating_mul(2));
            latency.saturating_add(shift).saturating_sub(jitter)
        };
        std::time::Duration::from_millis(ms)
    }

    fn to_json(&self) -> Value {
        json!({
            "errorRate": self.error_rate(),
            "latency": self.latency().to_string(),
            "latencyJitter": self.jitter().to_string(),
        })
    }
}

/// A `POST /control` body: the fields given, validated.
#[derive(Default)]
struct Update {
    error_rate: Option<f64>,
    latency: Option<Duration>,
    jitter: Option<Duration>,
}

/// Parses a `POST /control` body; an empty body changes nothing. Nothing
/// is applied unless every field is valid.
fn parse_update(body: &[u8]) -> Result<Update, String> {
    let mut update = Update::default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(update);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(
            r#"the body must be a JSON object like {"errorRate":0.2,"latency":"150ms"}"#.into(),
        );
    };
    let duration = |key: &str, v: &Value| -> Result<Duration, String> {
        v.as_str()
            .ok_or_else(|| format!("`{key}` must be a string like \"150ms\""))?
            .parse::<Duration>()
            .map_err(|e| format!("`{key}`: {e}"))
    };
    for (key, v) in &fields {
        match key.as_str() {
            "errorRate" => {
                let rate = v
                    .as_f64()
                    .ok_or_else(|| format!("`errorRate` must be a number: {RATE_HINT}"))?;
                update.error_rate = Some(check_error_rate(rate)?);
            }
            "latency" => update.latency = Some(duration(key, v)?),
            "latencyJitter" => update.jitter = Some(duration(key, v)?),
            other => {
                return Err(format!(
                    "unknown field `{other}`: expected errorRate, latency or latencyJitter"
                ));
            }
        }
    }
    Ok(update)
}

/// What every connection shares.
struct App {
    name: String,
    version: String,
    version_header: HeaderValue,
    settings: Settings,
}

/// The largest `POST /control` body read.
const MAX_CONTROL_BODY: usize = 64 * 1024;

impl App {
    fn reply(&self, status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-demo-version", self.version_header.clone());
        response
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/healthz" => self.reply(
                StatusCode::OK,
                &json!({"status": "ok", "service": self.name, "version": self.version}),
            ),
            "/control" => match *req.method() {
                Method::GET => self.reply(StatusCode::OK, &self.settings.to_json()),
                Method::POST => self.control(req).await,
                _ => {
                    let mut response = self.reply(
                        StatusCode::METHOD_NOT_ALLOWED,
                        &json!({"error": "use GET or POST on /control"}),
                    );
                    response
                        .headers_mut()
                        .insert(ALLOW, HeaderValue::from_static("GET, POST"));
                    response
                }
            },
            path => {
                let path = path.to_string();
                let delay = self.settings.delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let fail = rand::random::<f64>() < self.settings.error_rate();
                let (status, body) = if fail {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": "injected"}),
                    )
                } else {
                    (
                        StatusCode::OK,
                        json!({"service": self.name, "version": self.version, "path": path}),
                    )
                };
                tracing::debug!(method = %req.method(), %path, status = status.as_u16(), delay_ms = delay.as_millis() as u64, "request");
                self.reply(status, &body)
            }
        }
    }

    async fn control(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match Limited::new(req.into_body(), MAX_CONTROL_BODY)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return self.reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": format!("reading the body: {e}")}),
                );
            }
        };
        match parse_update(&body) {
            Ok(update) => {
                self.settings.apply(&update);
                let settings = self.settings.to_json();
                tracing::info!(%settings, "settings changed");
                self.reply(StatusCode::OK, &settings)
            }
            Err(error) => self.reply(StatusCode::BAD_REQUEST, &json!({"error": error})),
        }
    }
}

async fn serve(args: DemoAppArgs) -> anyhow::Result<()> {
    let version_header = HeaderValue::from_str(&args.version)
        .with_context(|| format!("--version {:?} cannot go in a header", args.version))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let app = Arc::new(App {
        name: args.name,
        version: args.version,
        version_header,
        settings: Settings {
            error_rate: AtomicU64::new(args.error_rate.to_bits()),
            latency_ms: AtomicU64::new(args.latency.as_millis()),
            jitter_ms: AtomicU64::new(args.latency_jitter.as_millis()),
        },
    });
    // Tests and the demo read the address from this line.
    eprintln!("demo-app {} {} listening on {addr}", app.name, app.version);
    tracing::info!(%addr, service = %app.name, version = %app.version, settings = %app.settings.to_json(), "demo-app up");

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(std::time::Duration::from_secs(10));
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down");
    if tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
    Ok(())
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rates_are_fractions() {
        assert_eq!(parse_error_rate("0.2"), Ok(0.2));
        assert_eq!(parse_error_rate("0"), Ok(0.0));
        assert_eq!(parse_error_rate("1"), Ok(1.0));
        for bad in ["1.5", "-0.1", "NaN", "inf", "20%", ""] {
            let err = parse_error_rate(bad).unwrap_err();
            assert!(err.contains("0.0 to 1.0"), "{bad}: {err}");
        }
    }

    #[test]
    fn control_bodies() {
        let u = parse_update(br#"{"errorRate":0.2,"latency":"150ms"}"#).unwrap();
        assert_eq!(u.error_rate, Some(0.2));
        assert_eq!(u.latency, Some(Duration::from_millis(150)));
        assert_eq!(u.jitter, None);
        let u = parse_update(b" ").unwrap();
        assert!(u.error_rate.is_none() && u.latency.is_none() && u.jitter.is_none());
        for bad in [
            &br#"{"errorRate":2}"#[..],
            br#"{"errorRate":"0.2"}"#,
            br#"{"latency":150}"#,
            br#"{"latency":"fast"}"#,
            br#"{"errorrate":0.2}"#,
            b"[1]",
            b"nope",
        ] {
            assert!(
                parse_update(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let settings = Settings {
            error_rate: AtomicU64::new(0f64.to_bits()),
            latency_ms: AtomicU64::new(10),
            jitter_ms: AtomicU64::new(30),
        };
        for _ in 0..1000 {
            let d = settings.delay().as_millis();
            assert!(d <= 40, "{d}");
        }
        settings.jitter_ms.store(0, Ordering::Relaxed);
        assert_eq!(settings.delay().as_millis(), 10);
    }
}
