//! Canary rollouts with a real Prometheus server as the metrics source
//! (`Mesh` `metrics.source: prometheus`): Prometheus scrapes the sidecars'
//! admin `/metrics` every second, and the reconciler reads each analysis
//! window from its query API instead of scraping. A healthy canary is
//! promoted to 100%, a canary answering 20% errors is rolled back, and a
//! Prometheus that is down holds the canary with a reason naming it.
//!
//! Needs Debian's `prometheus` (`.ci/run` installs it); without it every
//! test here says SKIPPED on stderr and passes.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::canary::*;
use common::*;

const MESH: &str = "apiVersion: gitmesh.dev/v1alpha1
kind: Mesh
metadata: {name: canary-prometheus-test}
spec:
  mtls: {mode: disabled}
  defaultIntention: allow
  rollout:
    waves: [{percent: 100}]
    minHealthyTime: 200ms
    progressDeadline: 30s
  metrics:
    source: prometheus
    prometheusUrl: PROMETHEUS_URL
---
apiVersion: gitmesh.dev/v1alpha1
kind: Service
metadata: {name: web}
spec: {port: 8080, upstreams: [api]}
---
apiVersion: gitmesh.dev/v1alpha1
kind: Service
metadata: {name: api}
spec:
  port: 8080
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
---
apiVersion: gitmesh.dev/v1alpha1
kind: HTTPRoute
metadata: {name: api}
spec:
  parentRefs: [{name: api}]
  rules:
    - backendRefs:
        - {name: api, subset: v1, weight: 100}
        - {name: api, subset: v2, weight: 0}
---
apiVersion: gitmesh.dev/v1alpha1
kind: Rollout
metadata: {name: api-v2}
spec:
  service: api
  route: api
  stableSubset: v1
  canarySubset: v2
  steps: [50, 100]
  analysis:
    interval: 4s
    minRequests: 10
    maxErrorRate: 5
  failureLimit: FAILURE_LIMIT
  progressDeadline: 40s
";

/// One mesh at a time: each runs eight processes on a small machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The Prometheus binary: `/usr/bin/prometheus` or `prometheus` on PATH.
fn prometheus_binary() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/prometheus");
    if debian.is_file() {
        return Some(debian);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    })
}

/// The binary, or `None` after saying loudly that the test is skipped.
fn prometheus_or_skip(test: &str) -> Option<PathBuf> {
    let found = prometheus_binary();
    if found.is_none() {
        eprintln!(
            "SKIPPED: prometheus not installed ({test}); install Debian's `prometheus` \
             package (`.ci/run` does) to run it"
        );
    }
    found
}

/// A real Prometheus scraping `targets` every second, killed (by the
/// [`Killed`] guard) when dropped, also when the test panics.
struct PrometheusServer {
    _process: Killed,
    _dir: tempfile::TempDir,
}

fn prometheus(binary: &Path, listen: SocketAddr, targets: &[SocketAddr]) -> PrometheusServer {
    let dir = tempfile::tempdir().unwrap();
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         scrape_configs:\n  \
           - job_name: sidecars\n    \
             static_configs: [{{targets: [{}]}}]\n",
        targets.join(", ")
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let process = Killed(
        Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("Prometheus to be ready", || {
        get(listen, "/-/ready", "localhost").is_some_and(|(status, _)| status == 200)
    });
    PrometheusServer {
        _process: process,
        _dir: dir,
    }
}

/// The mesh: Prometheus (unless `prometheus` is `None`: its URL then points
/// at port 1, where nothing listens), the reconciler, two api versions behind
/// sidecars, the web caller's sidecar, and traffic through it until dropped.
struct Mesh {
    repo: tempfile::TempDir,
    _processes: Vec<Killed>,
    _prometheus: Option<PrometheusServer>,
    _web_app: TcpListener,
    stop: Arc<AtomicBool>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn mesh(prometheus_bin: Option<&Path>, canary_error_rate: &str, failure_limit: u32) -> Mesh {
    // Without Prometheus, port 1 (privileged: nothing in these tests can
    // listen there, unlike a free port picked now and reused by a sidecar
    // later) refuses every connection.
    let prometheus_addr = match prometheus_bin {
        Some(_) => free_port(),
        None => "127.0.0.1:1".parse().unwrap(),
    };
    let repo = tempfile::tempdir().unwrap();
    let policy = MESH
        .replace("PROMETHEUS_URL", &format!("http://{prometheus_addr}"))
        .replace("FAILURE_LIMIT", &failure_limit.to_string());
    std::fs::write(repo.path().join("mesh.yaml"), policy).unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-qm", "api with a v2 canary"]);

    let control = free_port();
    let control_url = format!("http://{control}");
    let (v1, v2) = (free_port().to_string(), free_port().to_string());
    let web_app = TcpListener::bind("127.0.0.1:0").unwrap();
    let web_outbound = free_port();
    let admins = [free_port(), free_port(), free_port()];
    // Prometheus first, so it scrapes the sidecars from their first request.
    let prometheus = prometheus_bin.map(|bin| prometheus(bin, prometheus_addr, &admins));
    let mut processes = vec![quiet_gitmesh(&[
        "reconcile",
        "--repo",
        repo.path().to_str().unwrap(),
        "--listen",
        &control.to_string(),
        "--heartbeat",
        "300ms",
    ])];
    for (app, version, error_rate) in [(&v1, "v1", "0"), (&v2, "v2", canary_error_rate)] {
        processes.push(quiet_gitmesh(&[
            "demo-app",
            "--listen",
            app,
            "--name",
            "api",
            "--version",
            version,
            "--error-rate",
            error_rate,
            "--latency",
            "20ms",
        ]));
    }
    for app in [&v1, &v2] {
        wait_for("the demo app to listen", || {
            TcpStream::connect(app.as_str()).is_ok()
        });
    }
    for ((version, app), admin) in [("v1", &v1), ("v2", &v2)].into_iter().zip(admins) {
        let label = format!("version={version}");
        processes.push(sidecar(
            &control_url,
            "api",
            Some(&label),
            app,
            free_port(),
            admin,
        ));
    }
    let web_app_addr = web_app.local_addr().unwrap().to_string();
    processes.push(sidecar(
        &control_url,
        "web",
        None,
        &web_app_addr,
        web_outbound,
        admins[2],
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || traffic(web_outbound, &flag));
    Mesh {
        repo,
        _processes: processes,
        _prometheus: prometheus,
        _web_app: web_app,
        stop,
    }
}

#[test]
fn a_healthy_canary_is_promoted_on_prometheus_numbers() {
    let Some(bin) = prometheus_or_skip("a_healthy_canary_is_promoted_on_prometheus_numbers") else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Three failed checks to roll back: a loaded 2-core machine may inflate
    // one window's p99 (both versions answer in 20 ms).
    let mesh = mesh(Some(&bin), "0", 3);
    let repo = mesh.repo.path();
    wait_for_step(repo, "api: canary v2 50% → 100% (promoted)");
    let body = step_body(repo, "50% → 100%");
    assert!(body.contains("Gitmesh-Decision: promote"), "{body}");
    // The numbers come from Prometheus: real request counts, both subsets.
    let canary = trailer(&body, "Gitmesh-Canary");
    let stable = trailer(&body, "Gitmesh-Stable");
    assert!(requests_of(&canary) >= 10, "{body}");
    assert!(requests_of(&stable) >= 10, "{body}");
    assert!(canary.contains("p99="), "{body}");
    assert!(
        body.contains("the gates passed (metrics from Prometheus at http://127.0.0.1:"),
        "{body}"
    );
    wait_for_step(repo, "api: canary v2 100% → 100% (complete)");
    let log = status_log(repo);
    assert!(!log.iter().any(|s| s.contains("rolled back")), "{log:#?}");
}

#[test]
fn a_canary_answering_20_percent_errors_is_rolled_back_on_prometheus_numbers() {
    let Some(bin) = prometheus_or_skip(
        "a_canary_answering_20_percent_errors_is_rolled_back_on_prometheus_numbers",
    ) else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mesh = mesh(Some(&bin), "0.2", 1);
    let repo = mesh.repo.path();
    wait_for_step(repo, "api: canary v2 50% → 0% (rolled back)");
    assert!(!has_step(repo, "api: canary v2 50% → 100%"));
    let body = step_body(repo, "rolled back");
    assert!(body.contains("Gitmesh-Decision: rollback"), "{body}");
    assert!(body.contains("canary error rate"), "{body}");
    let canary = trailer(&body, "Gitmesh-Canary");
    assert!(requests_of(&canary) >= 10, "{body}");
}

#[test]
fn a_prometheus_that_is_down_holds_the_canary_with_the_reason() {
    // Needs no Prometheus: its URL points at a port nothing listens on.
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mesh = mesh(None, "0", 1);
    let repo = mesh.repo.path();
    wait_for_step(repo, "api: canary v2 held at 50%");
    let body = step_body(repo, "held at 50%");
    assert!(
        body.contains("not enough data: Prometheus at http://127.0.0.1:"),
        "{body}"
    );
    assert!(body.to_lowercase().contains("refused"), "{body}");
    // Two more windows: still held, never promoted, recorded once.
    std::thread::sleep(Duration::from_millis(8_500));
    let log = status_log(repo);
    assert_eq!(
        log.iter().filter(|s| s.contains("held at 50%")).count(),
        1,
        "{log:#?}"
    );
    assert!(!log.iter().any(|s| s.contains("50% → 100%")), "{log:#?}");
}

/// A trailer's value from a commit message.
fn trailer(body: &str, name: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} trailer in:\n{body}"))
        .to_string()
}

/// `requests=N` of a `Gitmesh-Canary`/`Gitmesh-Stable` trailer.
fn requests_of(trailer: &str) -> u64 {
    trailer
        .split_whitespace()
        .find_map(|w| w.strip_prefix("requests="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no requests= in `{trailer}`"))
}
