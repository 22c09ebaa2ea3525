//! `gitmesh reconcile`: run the control plane on a policy repo.

// Doc comments here are `--help` text, written for a terminal:
// placeholders like <dir> and bare URLs are meant literally.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gitmesh_reconciler::api::{
    ApiCertificate, ApiServer, BootstrapTokens, CertificateService, RegistryHandle, parse_roots,
};
use gitmesh_reconciler::ca::{MeshCa, trust_domain_mismatch};
use gitmesh_reconciler::load::PolicySet;
use gitmesh_reconciler::policy::MeshSpec;
use gitmesh_reconciler::reconcile::prometheus::PrometheusAuth;
use gitmesh_reconciler::reconcile::{Daemon, DaemonSettings, Metrics};
use gitmesh_reconciler::status::Identity;
use gitmesh_reconciler::watch::{
    LocalOptions, REMOTE, RemoteOptions, Tip, secret_from_file, watch_local, watch_remote,
};
use tokio::sync::watch;

/// Watch a policy repo and roll each new commit of its branch out to the
/// proxies, in waves, recording every step on the status branch.
///
/// Proxies connect with `gitmesh proxy --control-plane http://<listen>`, or
/// `https://<listen>` when the mesh CA runs (bootstrap tokens given): the
/// API is then HTTPS only, its certificate issued by the mesh CA.
/// Invalid commits are never applied (recorded as rejected); a NACK, an
/// unhealthy proxy or the progress deadline reverts the proxies already
/// updated. Restarted, it resumes from what the status branch records.
///
/// Canary Rollouts of the live version are promoted step by step while
/// their metric gates pass (read from the callers' sidecars' /metrics, or
/// from Prometheus' query API with `Mesh` `metrics.source: prometheus`), and
/// a completed one's final weights are committed back to --branch (pushed
/// without force in remote mode). See docs/canary.md.
///
/// It serves the proxy API, `GET /v1/status`, `GET /metrics` and, with a
/// secret, `POST /v1/hooks/git` on --listen.
///
/// Examples:
///   gitmesh reconcile --repo ./mesh-policy
///   git -C ./mesh-policy log --oneline gitmesh/status
///   gitmesh reconcile --remote file:///srv/git/mesh.git \\
///       --data-dir /var/lib/gitmesh --poll 30s --webhook-secret-file /etc/gitmesh/hook
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct ReconcileArgs {
    /// The policy repo (a local Git repository; any path inside it).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The branch holding desired state.
    #[arg(long, default_value = "main")]
    branch: String,
    /// The branch where every step is committed. Default: the Mesh's
    /// `statusBranch` at the tip of --branch when the reconciler starts,
    /// else `gitmesh/status`.
    #[arg(long)]
    status_branch: Option<String>,
    /// Where proxies connect (the proxy API) and where /v1/status is served.
    #[arg(long, default_value = "127.0.0.1:15010")]
    listen: SocketAddr,
    /// How often proxies send heartbeats; three missed mark a proxy gone.
    /// For three intervals after a start, running configs stay unchanged
    /// while proxies register again.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// Watch a remote instead of a local repo: gitmesh keeps its own bare
    /// mirror under --data-dir, fetches every --poll and on the webhook, and
    /// pushes the status branch back (never force-pushing). Local paths and
    /// file:// URLs always work; https and ssh need a build with
    /// `--features network-remotes` (OpenSSL and libssh2 headers).
    #[arg(long, value_name = "URL", requires = "data_dir")]
    remote: Option<String>,
    /// Where the mirror of --remote lives.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A local repo is watched for ref changes (picked up at once) and
    /// re-read this often in case an event was missed; a remote is fetched
    /// this often.
    #[arg(long, value_parser = parse_duration)]
    poll: Option<Duration>,
    /// A file holding the webhook secret (`POST /v1/hooks/git`, GitHub's
    /// X-Hub-Signature-256 or GitLab's X-Gitlab-Token). The environment
    /// variable GITMESH_WEBHOOK_SECRET works too. Without either, no
    /// webhook is served.
    #[arg(long, value_name = "FILE")]
    webhook_secret_file: Option<PathBuf>,
    /// A file holding a bearer token for Prometheus (Mesh `metrics.source:
    /// prometheus` behind an authenticating proxy).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "prometheus_basic_auth_file"
    )]
    prometheus_token_file: Option<PathBuf>,
    /// A file holding `user:password` for Prometheus' basic authentication
    /// (its `web.config.file`).
    #[arg(long, value_name = "FILE")]
    prometheus_basic_auth_file: Option<PathBuf>,
    /// Mesh CA: bootstrap tokens that let sidecars get certificates
    /// (`POST /v1/certificates`), one `<service>: <token>` per line, `*:
    /// <token>` for any service without its own. GITMESH_BOOTSTRAP_TOKEN
    /// sets a global token instead. Without either, no CA is served.
    #[arg(long, value_name = "FILE")]
    bootstrap_token_file: Option<PathBuf>,
    /// The mesh CA's root certificate (PEM), with --ca-key. Default: a root
    /// generated on first start into <data-dir>/ca, or <repo>/.git/gitmesh/ca
    /// for a local repo (never into the policy files).
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The mesh CA's private key (PEM), with --ca-cert.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// During a CA rotation: the old root(s) (PEM). Sidecars whose
    /// certificates it signed keep their access to the proxy API until they
    /// renew from the new CA (SIGHUP makes them renew at once). See
    /// docs/security.md, "Rotating the mesh CA".
    #[arg(long, value_name = "FILE")]
    previous_ca: Option<PathBuf>,
    /// The SPIFFE trust domain of issued certificates. Default: the Mesh's
    /// `trustDomain` at the branch's tip when the reconciler starts
    /// (`gitmesh.local` without a Mesh). A later commit whose Mesh names
    /// another trust domain is rejected with the reason.
    #[arg(long, value_name = "DOMAIN")]
    trust_domain: Option<String>,
    /// Extra names (DNS or IP) for the proxy API's TLS certificate, besides
    /// the --listen address (and `localhost` for a loopback or unspecified
    /// one). Repeatable. With the mesh CA on, the API is HTTPS only: proxies
    /// use `--control-plane https://<listen>` and verify it against their
    /// --ca-bundle.
    #[arg(long, value_name = "NAME")]
    api_san: Vec<String>,
    /// Lifetime of issued sidecar certificates (sidecars renew at 2/3).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    cert_lifetime: Duration,
    /// Lifetime of the proxy API's own certificate (re-issued with a fresh
    /// key at the first handshake after 2/3 of it).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    api_cert_lifetime: Duration,
    /// Author of the status commits.
    #[arg(long, default_value = "gitmesh")]
    author_name: String,
    #[arg(long, default_value = "gitmesh@localhost")]
    author_email: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<gitmesh_proxy_config::Duration>()
        .map(|d| d.to_std())
        .map_err(|e| e.to_string())
}

pub fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    super::init_logging(false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ReconcileArgs) -> anyhow::Result<()> {
    let registry = RegistryHandle::new(args.heartbeat);
    let metrics = Arc::new(Metrics::default());
    // The desired state: a local repo watched for ref changes, or a mirror
    // of a remote fetched on a schedule and on the webhook.
    let (repo, tips, trigger, push_to): (
        PathBuf,
        watch::Receiver<Tip>,
        Arc<dyn Fn() + Send + Sync>,
        _,
    ) = match &args.remote {
        Some(url) => {
            let data_dir = args.data_dir.clone().expect("clap requires --data-dir");
            let options = RemoteOptions {
                poll: args.poll.unwrap_or(Duration::from_secs(60)),
            };
            let remote = watch_remote(url, &args.branch, &data_dir, options)
                .await
                .with_context(|| format!("mirroring {url}"))?;
            let repo = remote.mirror().to_path_buf();
            let tips = remote.subscribe();
            let remote = Arc::new(remote);
            let r = remote.clone();
            (
                repo,
                tips,
                Arc::new(move || r.trigger()),
                Some(REMOTE.to_string()),
            )
        }
        None => {
            let options = LocalOptions {
                poll: args.poll.unwrap_or(Duration::from_secs(5)),
                ..LocalOptions::default()
            };
            let local = watch_local(&args.repo, &args.branch, options)
                .with_context(|| format!("watching {}", args.repo.display()))?;
            let tips = local.subscribe();
            let local = Arc::new(local);
            let l = local.clone();
            (args.repo.clone(), tips, Arc::new(move || l.trigger()), None)
        }
    };
    let mut server = ApiServer::bind(args.listen, registry.clone())
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let m = metrics.clone();
    server = server.with_metrics(move || m.render());
    let mut ca_trust_domain = None;
    let tokens = bootstrap_tokens(args.bootstrap_token_file.as_deref())?;
    if tokens.is_none() && args.previous_ca.is_some() {
        anyhow::bail!(
            "--previous-ca is for a mesh CA rotation, and no CA is served without bootstrap tokens (--bootstrap-token-file or GITMESH_BOOTSTRAP_TOKEN)"
        );
    }
    if let Some(tokens) = tokens {
        let tip = tip_policies(&repo, &args.branch);
        let trust_domain = match (&args.trust_domain, &tip) {
            (Some(given), Some(p)) => {
                if let Some(why) = trust_domain_mismatch(&p.trust_domain(), given) {
                    tracing::warn!("{why}; the tip of {} will be rejected", args.branch);
                }
                given.clone()
            }
            (Some(given), None) => given.clone(),
            (None, Some(p)) => p.trust_domain(),
            (None, None) => MeshSpec::default().trust_domain,
        };
        let ca = mesh_ca(&args, &trust_domain)?;
        ca_trust_domain = Some(trust_domain);
        tracing::info!(trust_domain = %ca.trust_domain(), "mesh CA serving POST /v1/certificates");
        let certificates = CertificateService::new(
            ca,
            tokens,
            args.cert_lifetime,
            metrics.certificate_requests.clone(),
        );
        let names = api_names(server.local_addr(), &args.api_san);
        let api_cert =
            ApiCertificate::new(certificates.clone(), names.clone(), args.api_cert_lifetime)?;
        tracing::info!(names = ?names, "proxy API serving HTTPS only (certificate from the mesh CA)");
        let previous = match &args.previous_ca {
            Some(file) => {
                let pem = std::fs::read(file)
                    .with_context(|| format!("reading --previous-ca {}", file.display()))?;
                let roots = parse_roots(&pem)
                    .with_context(|| format!("--previous-ca {}", file.display()))?;
                tracing::info!(
                    roots = roots.len(),
                    "the previous CA's sidecars keep their API access until they renew"
                );
                roots
            }
            None => Vec::new(),
        };
        server = server
            .with_certificates(certificates)
            .with_tls(api_cert.server_config(&previous)?);
    }
    if let Some(secret) = webhook_secret(args.webhook_secret_file.as_deref())? {
        server = server.with_webhook(secret, move || trigger());
    }
    tracing::info!(listen = %server.local_addr(), repo = %repo.display(), branch = %args.branch, "reconciler up");
    let status_branch = args
        .status_branch
        .clone()
        .unwrap_or_else(|| status_branch_of(&repo, &args.branch));
    let settings = DaemonSettings {
        repo,
        branch: args.branch.clone(),
        status_branch,
        identity: Identity {
            name: args.author_name.clone(),
            email: args.author_email.clone(),
        },
        tick: Duration::from_millis(200),
        push_to,
        ca_trust_domain,
        prometheus_auth: prometheus_auth(&args)?,
        warm_up: args.heartbeat * 3,
    };
    let daemon = Daemon::new(settings, registry.clone(), metrics)?;
    let (tx, rx) = watch::channel(None);
    let forward = tokio::spawn(forward_tips(tips, tx));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    let (stop_tx, mut stop_rx) = watch::channel(());
    let api = tokio::spawn(server.run(async move {
        let _ = stop_rx.changed().await;
    }));
    daemon.run(rx, shutdown).await;
    let _ = stop_tx.send(());
    forward.abort();
    let _ = api.await;
    Ok(())
}

/// The policies at the tip of `branch` (`None` when it cannot be read).
fn tip_policies(repo: &std::path::Path, branch: &str) -> Option<PolicySet> {
    gitmesh_reconciler::source::read_rev(repo, branch)
        .ok()
        .map(|(files, _)| gitmesh_reconciler::lint::lint(&files).policies)
}

/// The Mesh's `statusBranch` at the tip of `branch` (the default when the
/// tip is missing or does not lint).
fn status_branch_of(repo: &std::path::Path, branch: &str) -> String {
    tip_policies(repo, branch)
        .and_then(|p| p.meshes.first().map(|m| m.value.spec.status_branch.clone()))
        .unwrap_or_else(|| "gitmesh/status".to_string())
}

/// The webhook secret from --webhook-secret-file or GITMESH_WEBHOOK_SECRET.
fn bootstrap_tokens(file: Option<&std::path::Path>) -> anyhow::Result<Option<BootstrapTokens>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading bootstrap tokens from {}", file.display()))?;
        let tokens = BootstrapTokens::parse(&text)
            .with_context(|| format!("bootstrap tokens in {}", file.display()))?;
        return Ok(Some(tokens));
    }
    match std::env::var("GITMESH_BOOTSTRAP_TOKEN") {
        Ok(t) if !t.is_empty() => Ok(Some(
            BootstrapTokens::global(&t).context("GITMESH_BOOTSTRAP_TOKEN")?,
        )),
        _ => Ok(None),
    }
}

/// The proxy API certificate's names: the listen IP (`127.0.0.1` for an
/// unspecified one), `localhost` for loopback or unspecified, then `extra`.
fn api_names(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let ip = listen.ip();
    let mut names = Vec::new();
    if ip.is_unspecified() {
        names.push("127.0.0.1".to_string());
    } else {
        names.push(ip.to_string());
    }
    if ip.is_loopback() || ip.is_unspecified() {
        names.push("localhost".to_string());
    }
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The CA root: from --ca-cert/--ca-key, else kept in the data dir (or the
/// local repo's .git dir), generated on first start.
fn mesh_ca(args: &ReconcileArgs, trust_domain: &str) -> anyhow::Result<MeshCa> {
    if let (Some(cert), Some(key)) = (&args.ca_cert, &args.ca_key) {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        return MeshCa::from_pem(trust_domain, &read(cert)?, &read(key)?)
            .context("loading the mesh CA");
    }
    let dir = match (&args.data_dir, &args.remote) {
        (Some(data), _) => data.join("ca"),
        (None, None) if args.repo.join(".git").is_dir() => args.repo.join(".git/gitmesh/ca"),
        _ => anyhow::bail!(
            "the mesh CA needs a place for its key: pass --data-dir, or --ca-cert and --ca-key"
        ),
    };
    MeshCa::load_or_generate(&dir, trust_domain)
        .with_context(|| format!("mesh CA in {}", dir.display()))
}

/// The credentials for Prometheus, from --prometheus-token-file or
/// --prometheus-basic-auth-file.
fn prometheus_auth(args: &ReconcileArgs) -> anyhow::Result<Option<PrometheusAuth>> {
    let read = |file: &PathBuf, what: &str| {
        std::fs::read_to_string(file)
            .with_context(|| format!("reading the Prometheus {what} from {}", file.display()))
    };
    if let Some(file) = &args.prometheus_token_file {
        let auth = PrometheusAuth::bearer(&read(file, "token")?)
            .with_context(|| format!("{} is empty", file.display()))?;
        return Ok(Some(auth));
    }
    if let Some(file) = &args.prometheus_basic_auth_file {
        let auth = PrometheusAuth::basic(&read(file, "credentials")?).with_context(|| {
            format!(
                "{}: expected `user:password` on the first line",
                file.display()
            )
        })?;
        return Ok(Some(auth));
    }
    Ok(None)
}

fn webhook_secret(file: Option<&std::path::Path>) -> anyhow::Result<Option<Vec<u8>>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the webhook secret from {}", file.display()))?;
        return Ok(Some(secret_from_file(&text).as_bytes().to_vec()));
    }
    Ok(std::env::var("GITMESH_WEBHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .map(String::into_bytes))
}

/// Passes the watcher's tips to the daemon (which wants a commit id, or
/// nothing while the branch is missing or unreachable).
async fn forward_tips(mut tips: watch::Receiver<Tip>, tx: watch::Sender<Option<String>>) {
    loop {
        let tip = tips.borrow_and_update().clone();
        match &tip {
            Tip::Unavailable(reason) => {
                tracing::warn!(%reason, "the watched branch is unavailable")
            }
            Tip::Missing => tracing::warn!("the watched branch does not exist (yet)"),
            Tip::Commit(_) => {}
        }
        if let Some(commit) = tip.commit() {
            tx.send_if_modified(|current| {
                let changed = current.as_deref() != Some(commit);
                if changed {
                    tracing::info!(commit, "new commit on the watched branch");
                    *current = Some(commit.to_string());
                }
                changed
            });
        }
        if tips.changed().await.is_err() {
            return;
        }
    }
}
