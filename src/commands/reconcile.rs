//! `gitmesh reconcile`: run the control plane on a policy repo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gitmesh_reconciler::api::{ApiServer, RegistryHandle};
use gitmesh_reconciler::reconcile::{Daemon, DaemonSettings};
use gitmesh_reconciler::source;
use gitmesh_reconciler::status::Identity;
use tokio::sync::watch;

/// Watch a policy repo and roll each new commit of its branch out to the
/// proxies, in waves, recording every step on the status branch.
///
/// Proxies connect with `gitmesh proxy --control-plane http://<listen>`.
/// Invalid commits are never applied (recorded as rejected); a NACK, an
/// unhealthy proxy or the progress deadline reverts the proxies already
/// updated. Restarted, it resumes from what the status branch records.
///
/// Examples:
///   gitmesh reconcile --repo ./mesh-policy
///   git -C ./mesh-policy log --oneline gitmesh/status
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct ReconcileArgs {
    /// The policy repo (a local Git repository; any path inside it).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The branch holding desired state.
    #[arg(long, default_value = "main")]
    branch: String,
    /// The branch where every step is committed.
    #[arg(long, default_value = "gitmesh/status")]
    status_branch: String,
    /// Where proxies connect (the proxy API) and where /v1/status is served.
    #[arg(long, default_value = "127.0.0.1:15010")]
    listen: SocketAddr,
    /// How often proxies send heartbeats; three missed mark a proxy gone.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// How often the branch tip is checked for new commits.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    poll: Duration,
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
    let server = ApiServer::bind(args.listen, registry.clone())
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %server.local_addr(), repo = %args.repo.display(), branch = %args.branch, "reconciler up");
    let settings = DaemonSettings {
        repo: args.repo.clone(),
        branch: args.branch.clone(),
        status_branch: args.status_branch.clone(),
        identity: Identity {
            name: args.author_name.clone(),
            email: args.author_email.clone(),
        },
        tick: Duration::from_millis(200),
    };
    let daemon = Daemon::new(settings, registry.clone())?;
    let (tx, rx) = watch::channel(None);
    let watcher = tokio::spawn(poll_tip(
        args.repo.clone(),
        args.branch.clone(),
        args.poll,
        tx,
    ));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    let (stop_tx, stop_rx) = watch::channel(());
    let api = tokio::spawn(server.run(async move {
        let mut stop_rx = stop_rx;
        let _ = stop_rx.changed().await;
    }));
    daemon.run(rx, shutdown).await;
    let _ = stop_tx.send(());
    watcher.abort();
    let _ = api.await;
    Ok(())
}

/// Publishes the branch tip whenever it changes.
async fn poll_tip(
    repo: PathBuf,
    branch: String,
    every: Duration,
    tx: watch::Sender<Option<String>>,
) {
    let mut last: Option<String> = None;
    loop {
        let repo2 = repo.clone();
        let branch2 = branch.clone();
        let tip = tokio::task::spawn_blocking(move || source::resolve_rev(&repo2, &branch2))
            .await
            .ok()
            .and_then(|r| {
                r.map_err(|e| tracing::warn!(error = %e, "cannot read the branch tip"))
                    .ok()
            })
            .map(|r| r.commit);
        if tip.is_some() && tip != last {
            tracing::info!(
                commit = tip.as_deref().unwrap_or(""),
                "new commit on the watched branch"
            );
            last = tip.clone();
            if tx.send(tip).is_err() {
                return;
            }
        }
        tokio::time::sleep(every).await;
    }
}
