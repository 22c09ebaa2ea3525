//! `gitmesh proxy`: the command-line arguments and the blocking entry point
//! that builds a runtime, starts the proxy, and drains it on Ctrl-C/SIGTERM.
//! SIGHUP re-reads `--config`, and `--tls-cert`/`--tls-key`/`--ca-bundle`
//! (renewed by an outside tool, or a CA rotation). With `--control-plane`
//! the config comes from the reconciler instead (see [`crate::control`]),
//! and SIGHUP re-reads the identity's files only: an enrolled proxy's
//! `--ca-bundle` goes to its renewal ([`crate::enroll::Renewal`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gitmesh_proxy_config::api::Running;
use http::Uri;

use crate::control::{self, ControlSettings, parse_control_plane, parse_label};
use crate::enroll::{Enrollment, Renewal};
use crate::error::ProxyError;
use crate::listener::ListenerLimits;
use crate::mtls::{MeshIdentity, MeshTls};
use crate::peer::PeerIdentity;
use crate::proxy::{Proxy, ProxySettings};
use crate::state::{StateDir, read_config};

/// How the binary should format logs (it sets up `tracing` itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Run the sidecar proxy beside one app instance.
#[derive(Clone, Debug, clap::Args)]
pub struct ProxyArgs {
    /// A proxy config file (JSON, the same wire format the reconciler sends).
    /// Without it, the config last accepted into --state-dir is used.
    /// Send SIGHUP to re-read it. Not with --control-plane.
    #[arg(long, value_name = "FILE", conflicts_with = "control_plane")]
    pub config: Option<PathBuf>,

    /// The service this instance belongs to, overriding the config's
    /// `service` (useful when one static file serves several services).
    /// Required with --control-plane: it is what the proxy registers as.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,

    /// Take config from a reconciler (`gitmesh reconcile`) at this URL,
    /// e.g. http://127.0.0.1:15010: register, long-poll for the assigned
    /// config, ACK or NACK it, heartbeat. Until it answers, the proxy serves
    /// the config saved in --state-dir, or nothing (no upstreams); when the
    /// reconciler is down the running config stays and the proxy retries.
    /// A reconciler running the mesh CA serves HTTPS only: use https://,
    /// verified against --ca-bundle (needed then; the bootstrap token is
    /// never sent over http://).
    #[arg(long, value_name = "URL", value_parser = parse_control_plane, requires = "service")]
    pub control_plane: Option<Uri>,

    /// Check the config (--config FILE, else the one saved in --state-dir)
    /// as a running proxy would before applying it, print every problem
    /// with where it is, and exit: 0 if it would be accepted, 1 if not.
    /// With --tls-cert/--tls-key/--ca-bundle, load them as a start would.
    /// Binds nothing and starts nothing (like `nginx -t`).
    #[arg(long, conflicts_with = "control_plane")]
    pub check: bool,

    /// A label of this instance, sent when registering (repeatable);
    /// Service subsets select instances by labels, e.g. --label version=v2.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// The `host:port` peers use to reach this instance's inbound listener,
    /// as registered with the reconciler. Default: the inbound listener's
    /// bound address (set this when it listens on 0.0.0.0 or behind NAT).
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,

    /// Where the local app sends its outbound calls: `http://<service>/…`
    /// with this as the HTTP proxy, or with the Host header naming the
    /// service (HTTP_PROXY=http://127.0.0.1:15001 works).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15001")]
    pub outbound: SocketAddr,

    /// Where peers' sidecars send requests for the local app.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15006")]
    pub inbound: SocketAddr,

    /// The admin listener: /metrics (Prometheus), /ready, /config, /identity.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,

    /// The local app's `host:port`; inbound requests are forwarded there.
    #[arg(long, value_name = "ADDR")]
    pub app: Option<String>,

    /// A directory where the last accepted config (and, under a mesh CA, the
    /// certificate and its key, owner-only) are saved atomically, so that a
    /// restarted proxy serves traffic without its control plane.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Worker threads of the proxy's runtime. One is enough for most
    /// sidecars and keeps CPU and memory low.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: usize,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Largest request head in bytes; a larger one gets 431.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,

    /// Most header fields in one HTTP/1.1 request; more gets 431.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_headers: usize,

    /// Milliseconds a client may take to send a whole request head before
    /// the connection is closed (protects against slow clients).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// Largest request body (bytes) buffered so that it can be retried or
    /// mirrored; larger bodies stream through with no retry.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub retry_buffer_bytes: usize,

    /// Seconds shutdown waits for in-flight requests to finish.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub drain_timeout_secs: u64,

    /// mTLS, static mode: this sidecar's certificate chain (PEM), whose URI
    /// SAN is `spiffe://<trust-domain>/svc/<service>` (`gitmesh ca issue`
    /// makes one). Needs --tls-key and --ca-bundle. SIGHUP reads the three
    /// files again: renew the certificate or add a new CA root, then
    /// `kill -HUP`, no restart.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "ca_bundle"])]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The mesh CA's root certificate(s) (PEM): peers' certificates must
    /// chain to it. Needed for mTLS in both modes, and to verify an
    /// https:// --control-plane. SIGHUP reads it again (a CA rotation puts
    /// the new root beside the old one); an enrolled proxy then renews its
    /// certificate at once.
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,

    /// mTLS under a reconciler: a file holding the bootstrap token that lets
    /// this proxy get certificates for --service from the mesh CA (also
    /// GITMESH_BOOTSTRAP_TOKEN). The proxy makes its own key, sends a CSR,
    /// and renews at two thirds of each certificate's lifetime.
    #[arg(long, value_name = "FILE", requires_all = ["control_plane", "ca_bundle"], conflicts_with = "tls_cert")]
    pub bootstrap_token_file: Option<PathBuf>,

    /// The SPIFFE trust domain this proxy asks an identity in (the Mesh's
    /// `trustDomain`).
    #[arg(long, value_name = "DOMAIN", default_value = "gitmesh.local")]
    pub trust_domain: String,
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, ProxyError> {
    std::fs::read(path).map_err(|source| ProxyError::ReadTlsFile {
        path: path.clone(),
        source,
    })
}

impl ProxyArgs {
    /// The static identity of --tls-cert/--tls-key/--ca-bundle, if given.
    fn static_identity(&self) -> Result<Option<Arc<MeshIdentity>>, ProxyError> {
        let (Some(cert), Some(key), Some(bundle)) =
            (&self.tls_cert, &self.tls_key, &self.ca_bundle)
        else {
            return Ok(None);
        };
        let identity =
            MeshIdentity::from_pem(&read_file(cert)?, &read_file(key)?, &read_file(bundle)?)?;
        tracing::info!(id = %identity.id(), "mTLS identity loaded");
        Ok(Some(Arc::new(identity)))
    }

    /// SIGHUP with --tls-cert/--tls-key/--ca-bundle: reads the three again
    /// (a tool renewed the certificate, or the mesh CA is rotating) and
    /// swaps them in for new handshakes. A certificate with another SPIFFE
    /// ID, not chaining to the bundle, expired, or not matching its key is
    /// refused, and the running identity stays.
    fn reload_identity(&self, tls: &MeshTls) {
        let (Some(cert), Some(key), Some(bundle)) =
            (&self.tls_cert, &self.tls_key, &self.ca_bundle)
        else {
            return;
        };
        let rotated = (|| {
            let (c, k, b) = (read_file(cert)?, read_file(key)?, read_file(bundle)?);
            tls.rotate(&c, &k, Some(&b))
                .map_err(|e| ProxyError::Tls(e.to_string()))
        })();
        let identity = tls.identity();
        match rotated {
            Ok(()) => {
                let (_, until) = identity.validity();
                let roots = identity.roots().len();
                tracing::info!(id = %identity.id(), valid_until = ?until, roots, "SIGHUP: mesh certificate and CA bundle reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "SIGHUP: mesh certificate or CA bundle refused; keeping the running ones");
            }
        }
    }

    /// SIGHUP of a sidecar that enrolled: hands the re-read --ca-bundle to
    /// its renewal, which renews at once against it.
    fn reload_bundle(&self, renewal: &Renewal) {
        let Some(bundle) = &self.ca_bundle else {
            return;
        };
        let reloaded = read_file(bundle).and_then(|b| {
            renewal
                .reload(b)
                .map_err(|e| ProxyError::Tls(e.to_string()))
        });
        match reloaded {
            Ok(()) => tracing::info!(
                "SIGHUP: --ca-bundle re-read; renewing the mesh certificate against it"
            ),
            Err(error) => {
                tracing::error!(%error, "SIGHUP: --ca-bundle refused; keeping the running one")
            }
        }
    }

    /// The bootstrap token, from --bootstrap-token-file or the environment.
    fn bootstrap_token(&self) -> Result<Option<String>, ProxyError> {
        if let Some(file) = &self.bootstrap_token_file {
            let text = read_file(file)?;
            return Ok(Some(String::from_utf8_lossy(&text).trim().to_string()));
        }
        Ok(std::env::var("GITMESH_BOOTSTRAP_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.trim().to_string()))
    }
}

impl ProxyArgs {
    pub fn settings(&self) -> ProxySettings {
        ProxySettings {
            outbound: self.outbound,
            inbound: self.inbound,
            admin: self.admin,
            app: self.app.clone(),
            state_dir: self.state_dir.clone(),
            service: self.service.clone(),
            limits: ListenerLimits {
                max_header_bytes: self.max_header_bytes,
                max_headers: self.max_headers,
                header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
                drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            },
            replay_buffer_bytes: self.retry_buffer_bytes,
            ..ProxySettings::default()
        }
    }
}

/// A config that `--check` found acceptable.
#[derive(Debug)]
pub struct CheckedConfig {
    /// Where it came from (the file, or the state directory's).
    pub source: PathBuf,
    pub version: String,
    pub service: String,
    pub upstreams: usize,
    /// With --tls-cert: the certificate's SPIFFE ID and when it expires.
    pub identity: Option<(String, std::time::SystemTime)>,
}

/// One line for the config; another for the identity, if any.
impl std::fmt::Display for CheckedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.upstreams == 1 { "" } else { "s" };
        write!(
            f,
            "{}: ok: config {} for service `{}`, {} upstream{plural}",
            self.source.display(),
            self.version,
            self.service,
            self.upstreams,
        )?;
        if let Some((id, until)) = &self.identity {
            let until = httpdate::fmt_http_date(*until);
            write!(f, "\nmTLS: ok: {id}, certificate valid until {until}")?;
        }
        Ok(())
    }
}

/// `--check`: reads the config a static proxy would start with and checks
/// it as [`crate::check_config`] does, then loads --tls-cert/--tls-key/
/// --ca-bundle if given. A refused config is [`ProxyError::InvalidConfig`],
/// with every problem; a refused identity is [`ProxyError::Identity`].
pub fn check(args: &ProxyArgs) -> Result<CheckedConfig, ProxyError> {
    let (source, mut config) = match (&args.config, &args.state_dir) {
        (Some(path), _) => (path.clone(), read_config(path)?),
        (None, Some(dir)) => {
            let state = StateDir::new(dir);
            let config = state.load()?.ok_or(ProxyError::NoConfig)?;
            (state.config_path(), config)
        }
        (None, None) => return Err(ProxyError::NoConfig),
    };
    if let Some(service) = &args.service {
        config.service = service.clone();
    }
    let mut checked = CheckedConfig {
        source: source.clone(),
        version: config.version.clone(),
        service: config.service.clone(),
        upstreams: config.upstreams.len(),
        identity: None,
    };
    crate::check_config(config).map_err(|invalid| ProxyError::InvalidConfig {
        path: Some(source),
        invalid,
    })?;
    // The certificate, key and bundle as the proxy would load them.
    checked.identity = args
        .static_identity()?
        .map(|identity| (identity.id().to_string(), identity.validity().1));
    Ok(checked)
}

/// Runs the proxy until Ctrl-C or SIGTERM, then drains gracefully.
pub fn run(args: ProxyArgs) -> Result<(), ProxyError> {
    let runtime = if args.workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.workers)
            .enable_all()
            .build()
    }
    .map_err(ProxyError::Runtime)?;
    runtime.block_on(serve(args))
}

async fn serve(args: ProxyArgs) -> Result<(), ProxyError> {
    if let Some(url) = args.control_plane.clone() {
        return serve_controlled(args, url).await;
    }
    let config = match (&args.config, &args.state_dir) {
        (Some(path), _) => read_config(path)?,
        (None, Some(dir)) => StateDir::new(dir).load()?.ok_or(ProxyError::NoConfig)?,
        (None, None) => return Err(ProxyError::NoConfig),
    };
    let mut settings = args.settings();
    settings.identity = args.static_identity()?;
    let proxy = Proxy::start(settings, config).await?;
    loop {
        match next_signal().await {
            Signal::Stop => break,
            Signal::Reload => {
                if let Some(tls) = proxy.mesh_tls() {
                    args.reload_identity(&tls);
                }
                let Some(path) = &args.config else { continue };
                match read_config(path).map(|c| proxy.apply(c)) {
                    Ok(Ok(())) => {}
                    Ok(Err(invalid)) => tracing::error!(%invalid, "SIGHUP: config refused"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: cannot read config"),
                }
            }
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    proxy.shutdown().await;
    Ok(())
}

/// Under a reconciler: start with the saved config (or an empty one), then
/// let the control loop keep it current.
async fn serve_controlled(args: ProxyArgs, url: Uri) -> Result<(), ProxyError> {
    // clap's `requires` guarantees it; an empty name would not register.
    let service = args.service.clone().unwrap_or_default();
    let state = args.state_dir.as_ref().map(StateDir::new);
    let mut config = match &state {
        Some(state) => state.load()?,
        None => None,
    }
    .unwrap_or_else(|| control::empty_config(&service));
    config.service = service.clone();
    let running = Running::of(&config);
    let mut proxy_settings = args.settings();
    proxy_settings.identity = args.static_identity()?;
    let https = url.scheme_str() == Some("https");
    let api_bundle = match &args.ca_bundle {
        Some(bundle) => Some(read_file(bundle)?),
        None if https => {
            return Err(ProxyError::Tls(format!(
                "--control-plane {url} needs --ca-bundle to verify the reconciler"
            )));
        }
        None => None,
    };
    let mut enrolled = None;
    if let (Some(token), Some(bundle)) = (args.bootstrap_token()?, &args.ca_bundle) {
        if !https {
            return Err(ProxyError::Tls(format!(
                "--control-plane {url}: the bootstrap token is only sent over https://"
            )));
        }
        let id = PeerIdentity::for_service(&args.trust_domain, &service).ok_or_else(|| {
            ProxyError::Tls(format!(
                "no SPIFFE ID for service `{service}` in `{}`",
                args.trust_domain
            ))
        })?;
        let enrollment = Enrollment {
            control_plane: url.clone(),
            id,
            token,
            ca_bundle: read_file(bundle)?,
            state: state.clone(),
        };
        let identity = match enrollment.saved() {
            Some(identity) => {
                let (_, until) = identity.validity();
                tracing::info!(id = %identity.id(), valid_until = ?until, "using the mesh certificate saved in the state directory");
                identity
            }
            None => enroll_until_done(&enrollment).await,
        };
        enrolled = Some(enrollment);
        proxy_settings.identity = Some(identity);
    }
    // The API client presents the sidecar's certificate (enrolled or static).
    let api_tls = match api_bundle {
        Some(bundle) => Some(
            crate::control_tls::api_tls(&bundle, proxy_settings.identity.clone())
                .map_err(|e| ProxyError::Tls(format!("--ca-bundle: {e}")))?,
        ),
        None => None,
    };
    let proxy = Proxy::start(proxy_settings, config).await?;
    let tls = proxy.mesh_tls();
    // Renewal goes through the proxy's mTLS, so new roots rebuild its configs.
    let renewal = enrolled
        .zip(tls.clone())
        .map(|(e, tls)| e.spawn_renewal(tls));
    let address = args
        .address
        .clone()
        .unwrap_or_else(|| proxy.inbound_addr().to_string());
    let id_file = args
        .state_dir
        .as_ref()
        .map(|dir| dir.join(control::ID_FILE));
    let id = id_file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty());
    let mut settings = ControlSettings::new(url, service, address, running);
    settings.labels = args.labels.iter().cloned().collect();
    settings.id = id;
    settings.id_file = id_file;
    settings.app = args.app.clone();
    settings.api_tls = api_tls;
    let handle = control::spawn(proxy, settings);
    loop {
        match next_signal().await {
            Signal::Stop => break,
            // The reconciler sends the config; the identity is what a
            // SIGHUP re-reads.
            Signal::Reload => match (&renewal, &tls) {
                (Some(renewal), _) => args.reload_bundle(renewal),
                (None, Some(tls)) => args.reload_identity(tls),
                (None, None) => {
                    tracing::info!("SIGHUP: nothing to re-read; the reconciler sends the config")
                }
            },
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    if let Some(r) = renewal {
        r.abort();
    }
    handle.shutdown().await;
    Ok(())
}

/// Asks for the first certificate until the mesh CA gives one (a refused
/// token is logged with the CA's reason each time).
async fn enroll_until_done(enrollment: &Enrollment) -> Arc<MeshIdentity> {
    let mut delay = Duration::from_millis(200);
    loop {
        match enrollment.enroll().await {
            Ok(identity) => {
                tracing::info!(id = %identity.id(), "got a mesh certificate");
                return identity;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot get a mesh certificate yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

enum Signal {
    Stop,
    Reload,
}

#[cfg(unix)]
async fn next_signal() -> Signal {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return Signal::Stop;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Stop,
        _ = term.recv() => Signal::Stop,
        _ = hup.recv() => Signal::Reload,
    }
}

#[cfg(not(unix))]
async fn next_signal() -> Signal {
    let _ = tokio::signal::ctrl_c().await;
    Signal::Stop
}
