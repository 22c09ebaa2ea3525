//! `gitmesh demo`: the whole mesh on loopback, telling its story in about
//! a minute. [`scenario`] is the story as data, [`policy`] the embedded
//! policy and its temporary repo, [`processes`] the children (reconciler,
//! apps, sidecars), [`traffic`] the load and its numbers, [`display`] what
//! the user sees. This module runs the story: start everything, then for
//! each phase commit its change and follow the status branch until the
//! phase's last step, measuring the traffic in every state in between.

mod display;
mod policy;
pub mod processes;
mod scenario;
mod traffic;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use gitmesh_reconciler::status::{Identity, StatusEvent, StatusLog};
use serde_json::json;

use display::Display;
use policy::PolicyRepo;
use processes::Processes;
use scenario::{APP_LATENCY, CALLERS, Phase, TRUST_DOMAIN, VERSIONS};
use traffic::{Recorder, Summary};

/// Run the whole mesh on this machine and watch it work: a route change
/// rolled out in waves, a healthy canary promoted to 100%, a faulty canary
/// rolled back by its metric gates, every step recorded in Git.
///
/// Everything runs on 127.0.0.1 with free ports picked at start: a policy
/// repo in a new temporary directory (from examples/demo/), `gitmesh
/// reconcile` watching it, three versions of an `api` service (`gitmesh
/// demo-app`, 20ms per answer) each behind its sidecar (`gitmesh proxy`),
/// three sidecars of a caller `web`, and a traffic generator sending about
/// 150 requests a second through the web sidecars. The reconciler runs a
/// mesh CA made for this run: each sidecar gets its SPIFFE certificate with
/// a bootstrap token, sidecars talk strict mTLS, and api's Intentions let
/// only `web` in.
///
/// The story, one commit per chapter:
///   1. api's route changes (answers say x-demo-route: r2); the commit's
///      trailers ask for waves: one web proxy first, the two others once
///      it has stayed healthy for 4s.
///   2. A Rollout sends 20%, 50%, then 100% of api's traffic to v2; every
///      3s the reconciler reads the web sidecars' /metrics and checks v2's
///      error rate and p99 against v1's before promoting.
///   3. v2 becomes stable and v3 the next canary, but v3 now fails 30% of
///      requests (set through its POST /control): the gates roll it back.
///
/// After each step the measured split, error rate and p99 per version are
/// printed; at the end, `git log` of the status branch (every step, with
/// its evidence in the message and trailers) and of the desired-state
/// branch (`main`). The repo stays on disk to explore. It takes about 30
/// seconds and stops every process it started, also on Ctrl-C.
///
/// Examples:
///   cargo run --release -- demo
///   gitmesh demo --keep          # then, in another terminal, what it prints
///   gitmesh demo --json | jq -c 'select(.event == "step") | [.status, .traffic.versions]'
///
/// Exit status: 0 when the story ran to its end, 1 when a step did not
/// happen in time (the logs of every process are in the printed
/// directory), 2 on a usage or IO error, 130 when interrupted.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct DemoArgs {
    /// Leave the mesh running (with traffic) after the story and print how
    /// to talk to it: `gitmesh status`, /metrics, curl through a sidecar.
    /// Ctrl-C stops everything.
    #[arg(long)]
    keep: bool,
    /// Headless: one JSON object per line on stdout (`started`, `phase`,
    /// `step` with the traffic measured while that step held, `done`).
    #[arg(long)]
    json: bool,
    /// Where to create the policy repo and the process logs (an empty or
    /// missing directory). Default: a new directory under the system's
    /// temporary directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Most a phase may take before the demo gives up.
const PHASE_DEADLINE: Duration = Duration::from_secs(60);
/// How often the status branch is read and the live table redrawn.
const TICK: Duration = Duration::from_millis(200);

/// Why the story stopped early.
#[derive(Debug, thiserror::Error)]
enum Stopped {
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Failed(String),
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let began = Instant::now();
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_signals(&interrupted);
    let work = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            if std::fs::read_dir(dir)?.next().is_some() {
                bail!("--dir {} is not empty", dir.display());
            }
            dir.canonicalize()?
        }
        None => tempfile::Builder::new()
            .prefix("gitmesh-demo-")
            .tempdir()
            .context("creating a temporary directory")?
            .keep(),
    };
    let mut display = Display::new(args.json);
    let mut processes = Processes::new(&work.join("logs"))?;
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let result = tell(
        &args,
        &work,
        &mut display,
        &mut processes,
        &interrupted,
        &stop_traffic,
        began,
    );
    stop_traffic.store(true, Ordering::Relaxed);
    let count = processes.len();
    processes.stop_all();
    match result {
        Ok(()) => {
            display.say(&format!(
                "\nstopped {count} processes; the repo and the logs stay in {}",
                work.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let interrupted = matches!(e.downcast_ref::<Stopped>(), Some(Stopped::Interrupted));
            display.event(json!({
                "event": if interrupted { "interrupted" } else { "failed" },
                "error": format!("{e:#}"),
                "stopped": count,
                "dir": work,
            }));
            eprintln!(
                "\ngitmesh demo: {e:#}; stopped {count} processes (logs in {})",
                work.join("logs").display()
            );
            Ok(ExitCode::from(if interrupted { 130 } else { 1 }))
        }
    }
}

/// Sets `flag` on Ctrl-C (SIGINT) or SIGTERM.
fn watch_signals(flag: &Arc<AtomicBool>) {
    let flag = flag.clone();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut term) = signal(SignalKind::terminate()) else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        });
        flag.store(true, Ordering::Relaxed);
    });
}

/// The addresses of the running mesh.
struct Mesh {
    control: SocketAddr,
    /// web sidecars: (outbound, admin).
    callers: Vec<(SocketAddr, SocketAddr)>,
    /// api apps, in the order of [`VERSIONS`].
    apps: Vec<SocketAddr>,
}

fn tell(
    args: &DemoArgs,
    work: &Path,
    display: &mut Display,
    processes: &mut Processes,
    interrupted: &AtomicBool,
    stop_traffic: &Arc<AtomicBool>,
    began: Instant,
) -> anyhow::Result<()> {
    let repo = PolicyRepo::create(&work.join("policy"))?;
    display.say(&format!(
        "gitmesh demo: a policy repo in {}, a reconciler with its mesh CA, 3 versions of api and 3 callers, all on 127.0.0.1; sidecars talk strict mTLS as spiffe://{TRUST_DOMAIN}/svc/<service>",
        repo.path().display()
    ));
    let mesh = start(repo.path(), work, processes, interrupted)?;
    display.event(json!({
        "event": "started",
        "dir": work,
        "repo": repo.path(),
        "reconciler": format!("https://{}", mesh.control),
        "callers": mesh.callers.iter().map(|(o, a)| json!({"outbound": o, "admin": a})).collect::<Vec<_>>(),
        "pids": processes.pids(),
    }));

    // The initial policy must be fully rolled out before the story
    // begins, or the first change would supersede it mid-rollout.
    let log = StatusLog::open(repo.path(), "gitmesh/status", Identity::default())?;
    wait_for(
        "the initial policy to be applied",
        processes,
        interrupted,
        || {
            log.history(50).is_ok_and(|entries| {
            entries.iter().any(|e| {
                matches!(&e.event, Some(StatusEvent::Applied { source, .. }) if *source == repo.initial)
            })
        })
        },
    )?;

    let recorder = Recorder::default();
    let outbounds: Vec<SocketAddr> = mesh.callers.iter().map(|(o, _)| *o).collect();
    traffic::start(&outbounds, &recorder, stop_traffic);
    wait_until_serving(&recorder, processes, interrupted)?;
    display.say(&format!(
        "everything is up in {:.1}s; traffic flows through the web sidecars\n",
        began.elapsed().as_secs_f64()
    ));

    let mut seen: HashSet<String> = log
        .history(500)?
        .iter()
        .map(|e| e.commit.to_string())
        .collect();
    let mut latest = "-".to_string();
    for phase in scenario::phases() {
        run_phase(
            &phase,
            &repo,
            &mesh,
            &log,
            &mut seen,
            &mut latest,
            &recorder,
            processes,
            display,
            interrupted,
        )?;
    }
    let wall = began.elapsed().as_secs_f64();
    if !args.keep {
        stop_traffic.store(true, Ordering::Relaxed);
    }

    let status_log = repo.log("gitmesh/status", 30);
    let desired_log = repo.log("main", 30);
    display.say(
        "\nGit recorded everything. git log --oneline gitmesh/status (every step, newest first):",
    );
    for line in &status_log {
        display.say(&format!("  {line}"));
    }
    display.say("\ngit log --oneline main (the desired state: people's commits and the canary's write-back):");
    for line in &desired_log {
        display.say(&format!("  {line}"));
    }
    let repo_path = repo.path().display();
    display.say(&format!(
        "\nThe demo took {wall:.1}s. Explore the repo:\n  \
         cd {repo_path}\n  \
         git log gitmesh/status        # the evidence and trailers of every step\n  \
         gitmesh history --repo {repo_path}\n  \
         gitmesh lint {repo_path}"
    ));
    display.event(json!({
        "event": "done",
        "repo": repo.path(),
        "wallSeconds": (wall * 10.0).round() / 10.0,
        "statusLog": status_log,
        "desiredLog": desired_log,
        "keep": args.keep,
    }));
    if args.keep {
        keep_running(&mesh, repo.path(), work, processes, display, interrupted)?;
    }
    Ok(())
}

/// Picks `n` distinct free loopback ports (all held until every one is
/// picked, so none is handed out twice).
fn free_ports(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let held = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("picking free ports on 127.0.0.1")?;
    held.iter()
        .map(|l| l.local_addr().context("reading a port"))
        .collect()
}

fn start(
    repo: &Path,
    work: &Path,
    processes: &mut Processes,
    interrupted: &AtomicBool,
) -> anyhow::Result<Mesh> {
    let ports = free_ports(1 + VERSIONS.len() * 4 + CALLERS * 3)?;
    let mut ports = ports.into_iter();
    let mut next = || ports.next().expect("enough ports were picked");
    let control = next();
    // With the mesh CA on, the proxy API is HTTPS only.
    let control_url = format!("https://{control}");
    let identity = MeshIdentity::create(work)?;
    let mut reconciler = args(&[
        "reconcile",
        "--repo",
        &repo.display().to_string(),
        "--listen",
        &control.to_string(),
        "--heartbeat",
        "300ms",
    ]);
    reconciler.extend(identity.reconciler_args());
    processes.spawn("reconciler", &reconciler)?;
    let mut apps = Vec::new();
    for version in VERSIONS {
        let app = next();
        processes.spawn(
            &format!("api-{version}"),
            &args(&[
                "demo-app",
                "--listen",
                &app.to_string(),
                "--name",
                "api",
                "--version",
                version,
                "--latency",
                APP_LATENCY,
            ]),
        )?;
        apps.push(app);
    }
    // The apps first: a sidecar whose app does not answer is unhealthy.
    for app in &apps {
        wait_for("the api apps to listen", processes, interrupted, || {
            TcpStream::connect(app).is_ok()
        })?;
    }
    for (version, app) in VERSIONS.iter().zip(&apps) {
        let (outbound, inbound, admin) = (next(), next(), next());
        processes.spawn(
            &format!("api-{version}-sidecar"),
            &sidecar(
                &control_url,
                "api",
                Some(version),
                outbound,
                inbound,
                admin,
                *app,
                work,
                &identity,
            ),
        )?;
    }
    // web's app is not part of the story (nothing calls web); something
    // must accept connections for its sidecars to be healthy.
    let web_app = TcpListener::bind("127.0.0.1:0")?;
    let web_app_addr = web_app.local_addr()?;
    std::thread::spawn(move || for _ in web_app.incoming() {});
    let mut callers = Vec::new();
    for i in 1..=CALLERS {
        let (outbound, inbound, admin) = (next(), next(), next());
        processes.spawn(
            &format!("web-{i}-sidecar"),
            &sidecar(
                &control_url,
                "web",
                None,
                outbound,
                inbound,
                admin,
                web_app_addr,
                work,
                &identity,
            ),
        )?;
        callers.push((outbound, admin));
    }
    Ok(Mesh {
        control,
        callers,
        apps,
    })
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[allow(clippy::too_many_arguments)]
fn sidecar(
    control: &str,
    service: &str,
    version: Option<&str>,
    outbound: SocketAddr,
    inbound: SocketAddr,
    admin: SocketAddr,
    app: SocketAddr,
    work: &Path,
    identity: &MeshIdentity,
) -> Vec<String> {
    let name = match version {
        Some(v) => format!("{service}-{v}"),
        None => format!("{service}-{}", outbound.port()),
    };
    let mut list = args(&[
        "proxy",
        "--control-plane",
        control,
        "--service",
        service,
        "--outbound",
        &outbound.to_string(),
        "--inbound",
        &inbound.to_string(),
        "--admin",
        &admin.to_string(),
        "--app",
        &app.to_string(),
        "--state-dir",
        &work.join("state").join(name).display().to_string(),
    ]);
    if let Some(version) = version {
        list.extend(args(&["--label", &format!("version={version}")]));
    }
    list.extend(identity.sidecar_args());
    list
}

/// The demo mesh's identities: a CA root made for this run (in the work
/// directory, never in the policy repo) that the reconciler serves, and a
/// bootstrap token with which each sidecar gets its SPIFFE certificate.
/// Sidecars then talk mTLS only (the Mesh says `strict`), and api's
/// Intentions let `web` in by its identity.
struct MeshIdentity {
    ca_dir: PathBuf,
    /// `*: <token>`, for the reconciler.
    tokens: PathBuf,
    /// The token alone, for the sidecars.
    token: PathBuf,
}

impl MeshIdentity {
    fn create(work: &Path) -> anyhow::Result<Self> {
        let ca_dir = work.join("ca");
        gitmesh_reconciler::ca::MeshCa::load_or_generate(&ca_dir, TRUST_DOMAIN)
            .context("making the demo's mesh CA")?;
        let secret: String = (0..32)
            .map(|_| char::from_digit(rand::random_range(0..16u32), 16).expect("a hex digit"))
            .collect();
        let tokens = work.join("bootstrap-tokens");
        let token = work.join("bootstrap-token");
        std::fs::write(&tokens, format!("*: {secret}\n"))?;
        std::fs::write(&token, &secret)?;
        Ok(MeshIdentity {
            ca_dir,
            tokens,
            token,
        })
    }

    fn ca_bundle(&self) -> PathBuf {
        self.ca_dir.join("ca.pem")
    }

    fn reconciler_args(&self) -> Vec<String> {
        let show = |p: PathBuf| p.display().to_string();
        vec![
            "--bootstrap-token-file".into(),
            show(self.tokens.clone()),
            "--ca-cert".into(),
            show(self.ca_bundle()),
            "--ca-key".into(),
            show(self.ca_dir.join("ca-key.pem")),
            "--trust-domain".into(),
            TRUST_DOMAIN.into(),
        ]
    }

    fn sidecar_args(&self) -> Vec<String> {
        let show = |p: PathBuf| p.display().to_string();
        vec![
            "--bootstrap-token-file".into(),
            show(self.token.clone()),
            "--ca-bundle".into(),
            show(self.ca_bundle()),
            "--trust-domain".into(),
            TRUST_DOMAIN.into(),
        ]
    }
}

/// Polls `done` every 100 ms for up to 30 s, stopping early on Ctrl-C or a
/// child that died.
fn wait_for(
    what: &str,
    processes: &mut Processes,
    interrupted: &AtomicBool,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        check(processes, interrupted)?;
        if Instant::now() > deadline {
            return Err(Stopped::Failed(format!("timed out waiting for {what}")).into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn check(processes: &mut Processes, interrupted: &AtomicBool) -> anyhow::Result<()> {
    if interrupted.load(Ordering::Relaxed) {
        return Err(Stopped::Interrupted.into());
    }
    if let Some((name, status)) = processes.exited() {
        return Err(Stopped::Failed(format!("{name} exited ({status})")).into());
    }
    Ok(())
}

/// Waits until every caller's last second of traffic was answered by v1.
fn wait_until_serving(
    recorder: &Recorder,
    processes: &mut Processes,
    interrupted: &AtomicBool,
) -> anyhow::Result<()> {
    wait_for(
        "traffic to flow through every web sidecar",
        processes,
        interrupted,
        || {
            let now = Instant::now();
            let last = recorder.between(now - Duration::from_secs(1), now);
            let s = Summary::of(&last, CALLERS, 1.0);
            s.failed == 0 && s.callers.iter().all(|c| c.requests > 5) && s.share("v1") == 100.0
        },
    )
}

/// One chapter: its change, then every status step until the phase's
/// last one, each followed by the traffic measured while it held.
#[allow(clippy::too_many_arguments)]
fn run_phase(
    phase: &Phase,
    repo: &PolicyRepo,
    mesh: &Mesh,
    log: &StatusLog,
    seen: &mut HashSet<String>,
    latest: &mut String,
    recorder: &Recorder,
    processes: &mut Processes,
    display: &mut Display,
    interrupted: &AtomicBool,
) -> anyhow::Result<()> {
    display.say(&format!("── {} ──\n{}", phase.title, phase.explain));
    display.event(json!({"event": "phase", "phase": phase.id.as_str(), "title": phase.title}));
    if let Some((version, rate)) = phase.fault {
        let index = VERSIONS.iter().position(|v| *v == version).unwrap_or(0);
        set_error_rate(mesh.apps[index], rate)?;
        display.say(&format!(
            "  POST http://{}/control {{\"errorRate\":{rate}}}  (api {version} now fails {:.0}% of requests)",
            mesh.apps[index],
            rate * 100.0
        ));
    }
    let source = repo.commit(&phase.change)?;
    let subject = phase.change.message.lines().next().unwrap_or("");
    let mut state = (
        format!("committed {} {subject}", &source[..7]),
        None::<String>,
        json!(null),
    );
    display.say(&format!("  ✓ {}", state.0));
    let mut since = Instant::now();
    let deadline = since + PHASE_DEADLINE;
    let mut ending: Option<Instant> = None;
    loop {
        check(processes, interrupted)?;
        let now = Instant::now();
        if now > deadline {
            return Err(Stopped::Failed(format!(
                "`{}` did not finish within {}s; the status branch says: {latest}",
                phase.title,
                PHASE_DEADLINE.as_secs()
            ))
            .into());
        }
        if let Some(end) = ending
            && now >= end
        {
            close_state(display, phase, &state, recorder, since, now);
            return Ok(());
        }
        let mut entries = log.history(50)?;
        entries.retain(|e| !seen.contains(&e.commit.to_string()));
        entries.reverse();
        for entry in entries {
            seen.insert(entry.commit.to_string());
            *latest = entry.summary.clone();
            let now = Instant::now();
            close_state(display, phase, &state, recorder, since, now);
            since = now;
            display.say(&format!("  ✓ {}", entry.summary));
            let event = entry.event.clone();
            state = (
                entry.summary.clone(),
                Some(entry.commit.to_string()),
                serde_json::to_value(&event).unwrap_or_default(),
            );
            if let Some(event) = &event {
                if scenario::fails(&source, event) {
                    return Err(
                        Stopped::Failed(format!("the reconciler says: {}", entry.summary)).into(),
                    );
                }
                if ending.is_none() && scenario::ends(phase.id, &source, event) {
                    ending = Some(now + Duration::from_millis(phase.settle_ms));
                }
            }
        }
        let now = Instant::now();
        let recent = recorder.between(now - Duration::from_secs(2), now);
        display.live(&Summary::of(&recent, CALLERS, 2.0), latest);
        std::thread::sleep(TICK);
    }
}

/// Reports the state that just ended and the traffic measured while it held.
fn close_state(
    display: &mut Display,
    phase: &Phase,
    state: &(String, Option<String>, serde_json::Value),
    recorder: &Recorder,
    since: Instant,
    until: Instant,
) {
    let seconds = (until - since).as_secs_f64();
    let measured = Summary::of(&recorder.between(since, until), CALLERS, seconds);
    display.step(
        phase.id.as_str(),
        &state.0,
        state.1.as_deref(),
        &state.2,
        &measured,
        seconds,
    );
}

fn set_error_rate(app: SocketAddr, rate: f64) -> anyhow::Result<()> {
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{app}/control"))
        .json(&json!({ "errorRate": rate }))
        .timeout(Duration::from_secs(5))
        .send()
        .with_context(|| format!("POST http://{app}/control"))?;
    if !response.status().is_success() {
        bail!("POST http://{app}/control answered {}", response.status());
    }
    Ok(())
}

/// `--keep`: everything stays up, with traffic, until Ctrl-C.
fn keep_running(
    mesh: &Mesh,
    repo: &Path,
    work: &Path,
    processes: &mut Processes,
    display: &mut Display,
    interrupted: &AtomicBool,
) -> anyhow::Result<()> {
    let (outbound, admin) = mesh.callers[0];
    let exe = std::env::current_exe()?;
    let exe = exe.display();
    display.say(&format!(
        "\nThe mesh keeps running (--keep); Ctrl-C stops every process. Talk to it:\n  \
         {exe} status --reconciler https://{control} --ca-bundle {ca}\n  \
         curl -s --cacert {ca} https://{control}/metrics | head\n  \
         curl -si -x http://{outbound} http://api/items      # through web-1's sidecar\n  \
         curl -s http://{admin}/metrics | grep gitmesh_     # web-1's sidecar metrics\n  \
         curl -s http://{admin}/config                      # the config it runs\n  \
         git -C {repo} log gitmesh/status\n\
         Commit to {repo} (branch main) and watch the reconciler roll it out.\n\
         Process logs: {logs}",
        control = mesh.control,
        ca = work.join("ca/ca.pem").display(),
        repo = repo.display(),
        logs = work.join("logs").display(),
    ));
    loop {
        if interrupted.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some((name, status)) = processes.exited() {
            return Err(Stopped::Failed(format!("{name} exited ({status})")).into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
