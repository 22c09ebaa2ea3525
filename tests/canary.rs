//! Canary rollouts end to end: the reconciler, sidecars and two versions of
//! `gitmesh demo-app`, with real traffic through the caller's sidecar. A
//! healthy canary is promoted step by step to 100%; a canary answering
//! errors is rolled back after its first window. Every decision is a commit
//! on the status branch, with the evidence.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::canary::*;
use common::*;

const MESH: &str = "apiVersion: gitmesh.dev/v1alpha1
kind: Mesh
metadata: {name: canary-test}
spec:
  # No mTLS here, so callers carry no identity: only `*` intentions and
  # the default apply on the inbound side (docs/authorization.md).
  mtls: {mode: disabled}
  defaultIntention: allow
  rollout:
    waves: [{percent: 100}]
    minHealthyTime: 200ms
    progressDeadline: 30s
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
kind: Intentions
metadata: {name: api}
spec:
  destination: api
  sources: [{name: web, action: allow}]
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
    interval: 2s
    minRequests: 10
    maxErrorRate: 5
  failureLimit: 1
  progressDeadline: 30s
";

/// The whole mesh: reconciler, two api versions behind sidecars, the web
/// caller's sidecar, and traffic through it until the guard is dropped.
struct Mesh {
    repo: tempfile::TempDir,
    /// The reconciler first, then the apps and sidecars.
    processes: Vec<Killed>,
    /// Where the reconciler listens (a restarted one listens there too).
    control: SocketAddr,
    _web_app: TcpListener,
    stop: Arc<AtomicBool>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One mesh at a time: each runs seven processes, and two at once on a
/// small machine would measure the machine, not the canary.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The mesh with the canary (v2) answering `canary_error_rate` of requests
/// with 503 and taking `canary_latency`; the stable version (v1) takes 20ms
/// (latencies well above the machine's noise, so p99 ratios mean something).
/// A policy repo holding [`MESH`] (with `extra_gates` added to the
/// Rollout's analysis), committed once.
fn policy_repo(extra_gates: &str) -> tempfile::TempDir {
    policy_repo_of(&MESH.replace(
        "    maxErrorRate: 5\n",
        &format!("    maxErrorRate: 5\n{extra_gates}"),
    ))
}

/// A policy repo holding `mesh` as `mesh.yaml`, committed once.
fn policy_repo_of(mesh: &str) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("mesh.yaml"), mesh).unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-qm", "api with a v2 canary"]);
    repo
}

/// [`MESH`] for tests that need a healthy canary to get through: three
/// failed checks in a row to roll back, so one window whose p99 a loaded
/// 2-core machine inflates (both versions answer in 20 ms) holds instead.
fn tolerant() -> String {
    MESH.replace("  failureLimit: 1\n", "  failureLimit: 3\n")
}

fn reconciler(repo: &Path, control: SocketAddr) -> Killed {
    let listen = control.to_string();
    let repo = repo.to_str().unwrap();
    quiet_gitmesh(&[
        "reconcile",
        "--repo",
        repo,
        "--listen",
        &listen,
        "--heartbeat",
        "300ms",
    ])
}

fn mesh(canary_error_rate: &str, canary_latency: &str, extra_gates: &str) -> Mesh {
    mesh_from(
        policy_repo(extra_gates),
        canary_error_rate,
        canary_latency,
        true,
    )
}

/// The mesh of [`mesh`] on a policy repo made by the caller, with or
/// without traffic.
fn mesh_from(
    repo: tempfile::TempDir,
    canary_error_rate: &str,
    canary_latency: &str,
    traffic_on: bool,
) -> Mesh {
    mesh_with(repo, canary_error_rate, canary_latency, traffic_on, false)
}

/// [`mesh_from`], with the reconciler in remote mode when `remote`: it
/// mirrors a bare clone of the repo (`<repo>/.remote.git`, where the status
/// branch and any write-back are pushed) into `<repo>/.data`.
fn mesh_with(
    repo: tempfile::TempDir,
    canary_error_rate: &str,
    canary_latency: &str,
    traffic_on: bool,
    remote: bool,
) -> Mesh {
    let control = free_port();
    let control_url = format!("http://{control}");
    let (v1, v2) = (free_port().to_string(), free_port().to_string());
    let web_app = TcpListener::bind("127.0.0.1:0").unwrap();
    let web_outbound = free_port();
    let mut processes = vec![if remote {
        let bare = repo.path().join(".remote.git");
        git(
            repo.path(),
            &["clone", "-q", "--bare", ".", bare.to_str().unwrap()],
        );
        quiet_gitmesh(&[
            "reconcile",
            "--remote",
            bare.to_str().unwrap(),
            "--data-dir",
            repo.path().join(".data").to_str().unwrap(),
            "--poll",
            "300ms",
            "--listen",
            &control.to_string(),
            "--heartbeat",
            "300ms",
        ])
    } else {
        reconciler(repo.path(), control)
    }];
    processes.push(quiet_gitmesh(&[
        "demo-app",
        "--listen",
        &v1,
        "--name",
        "api",
        "--version",
        "v1",
        "--latency",
        "20ms",
    ]));
    processes.push(quiet_gitmesh(&[
        "demo-app",
        "--listen",
        &v2,
        "--name",
        "api",
        "--version",
        "v2",
        "--error-rate",
        canary_error_rate,
        "--latency",
        canary_latency,
    ]));
    // The apps first: a sidecar whose app does not answer is unhealthy.
    for app in [&v1, &v2] {
        wait_for("the demo app to listen", || {
            TcpStream::connect(app.as_str()).is_ok()
        });
    }
    for (version, app) in [("v1", &v1), ("v2", &v2)] {
        let label = format!("version={version}");
        processes.push(sidecar(
            &control_url,
            "api",
            Some(&label),
            app,
            free_port(),
            free_port(),
        ));
    }
    let web_app_addr = web_app.local_addr().unwrap().to_string();
    processes.push(sidecar(
        &control_url,
        "web",
        None,
        &web_app_addr,
        web_outbound,
        free_port(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    if traffic_on {
        std::thread::spawn(move || traffic(web_outbound, &flag));
    }
    Mesh {
        repo,
        processes,
        control,
        _web_app: web_app,
        stop,
    }
}

#[test]
fn a_healthy_canary_is_promoted_to_100_percent() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mesh = mesh_from(policy_repo_of(&tolerant()), "0", "20ms", true);
    let repo = mesh.repo.path();
    wait_for_step(repo, "api: canary v2 100% → 100% (complete)");
    let log = status_log(repo);
    assert!(
        has_step(repo, "api: canary v2 0% → 50% (promoted)"),
        "{log:#?}"
    );
    assert!(
        has_step(repo, "api: canary v2 50% → 100% (promoted)"),
        "{log:#?}"
    );
    assert!(!log.iter().any(|s| s.contains("rolled back")), "{log:#?}");
    // The promotion carries its evidence: both subsets' numbers and gates.
    let body = step_body(repo, "50% → 100%");
    assert!(body.contains("Gitmesh-Decision: promote"), "{body}");
    assert!(body.contains("Gitmesh-Canary: v2 requests="), "{body}");
    assert!(body.contains("Gitmesh-Stable: v1 requests="), "{body}");

    // The final weights are written back to the desired-state branch, the
    // diff being the two weights only, and the reconciler takes that commit
    // as no change for the proxies.
    wait_for_step(repo, "api: final weights written back to main");
    let route = git(repo, &["show", "main:mesh.yaml"]);
    assert!(
        route.contains("{name: api, subset: v1, weight: 0}"),
        "{route}"
    );
    assert!(
        route.contains("{name: api, subset: v2, weight: 100}"),
        "{route}"
    );
    let numstat = git(repo, &["diff", "--numstat", "main~1", "main"]);
    assert_eq!(numstat.trim(), "2\t2\tmesh.yaml");
    let tip = git(repo, &["rev-parse", "--short=7", "main"]);
    wait_for_step(
        repo,
        &format!("applied {}: 0 services, 0 proxies", tip.trim()),
    );
    let log = status_log(repo);
    assert!(!log.iter().any(|s| s.contains("rolled back")), "{log:#?}");
}

/// A desired-state branch that cannot be updated (another writer holds its
/// lock): the refusal is recorded, and the mesh keeps the final weights.
#[test]
fn a_refused_write_back_is_recorded_and_the_mesh_keeps_the_final_weights() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mesh = mesh_from(policy_repo_of(&tolerant()), "0", "20ms", true);
    let repo = mesh.repo.path();
    let before = git(repo, &["rev-parse", "main"]);
    let lock = repo.join(".git/refs/heads/main.lock");
    std::fs::write(&lock, "").unwrap();
    wait_for_step(repo, "api: write-back of final weights to main refused");
    let body = step_body(repo, "write-back of final weights");
    assert!(body.contains("Gitmesh-Refused: "), "{body}");
    assert!(body.contains("locked"), "{body}");
    assert!(body.contains("The mesh keeps the final weights"), "{body}");
    assert_eq!(git(repo, &["rev-parse", "main"]), before);
    // The recorded state keeps the canary at 100%.
    let state = git(repo, &["show", "gitmesh/status:state.json"]);
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["canaries"]["api-v2"]["weight"], 100, "{state}");
    assert_eq!(state["canaries"]["api-v2"]["status"], "complete", "{state}");
    std::fs::remove_file(&lock).unwrap();
}

#[test]
fn a_canary_answering_20_percent_errors_is_rolled_back() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mesh = mesh("0.2", "20ms", "");
    let repo = mesh.repo.path();
    wait_for_step(repo, "api: canary v2 50% → 0% (rolled back)");
    assert!(!has_step(repo, "api: canary v2 50% → 100%"));
    let body = step_body(repo, "rolled back");
    assert!(body.contains("Gitmesh-Decision: rollback"), "{body}");
    assert!(body.to_lowercase().contains("error rate"), "{body}");
    // `explain` says why, from the commit: the failed gate with its numbers.
    let out = gitmesh(repo, &["explain", "api-v2"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("step 1/2: rolled back 50% → 0%"), "{text}");
    assert!(text.contains("FAIL      canary error rate"), "{text}");
    assert!(text.contains("why: gate error-rate failed"), "{text}");
    // `history` shows the rollout as a timeline with its gates and numbers.
    let out = gitmesh(repo, &["history"]);
    let text = stdout(&out);
    assert!(
        text.contains("rollout api-v2 (api: stable v1, canary v2"),
        "{text}"
    );
    assert!(text.contains("gates: "), "{text}");
    assert!(text.contains("rollback"), "{text}");
    let missing = gitmesh(repo, &["explain", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn a_canary_three_times_slower_than_stable_is_rolled_back() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Besides the default 1.5× ratio to stable, an absolute 45ms bound: a
    // few scheduling stalls on a loaded 2-core machine can inflate stable's
    // p99 over a short window and hide the ratio; 60ms never passes 45ms.
    let mesh = mesh("0", "60ms", "    maxP99: 45ms\n");
    let repo = mesh.repo.path();
    wait_for_step(repo, "api: canary v2 50% → 0% (rolled back)");
    let body = step_body(repo, "rolled back");
    assert!(body.contains("p99"), "{body}");
    assert!(!has_step(repo, "api: canary v2 50% → 100%"));
}

/// A Rollout whose subsets have no instances does not start: it holds at
/// 0% with the reason, recorded once, and never sends the canary traffic.
#[test]
fn subsets_without_instances_hold_before_the_start() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let repo = policy_repo("");
    let control = free_port();
    let web_app = TcpListener::bind("127.0.0.1:0").unwrap();
    let _processes = [
        reconciler(repo.path(), control),
        sidecar(
            &format!("http://{control}"),
            "web",
            None,
            &web_app.local_addr().unwrap().to_string(),
            free_port(),
            free_port(),
        ),
    ];
    wait_for_step(repo.path(), "api: canary v2 held at 0%");
    let body = step_body(repo.path(), "held at 0%");
    assert!(
        body.contains("not started: subset v1 of api has no instances (version=v1); subset v2 of api has no instances (version=v2)"),
        "{body}"
    );
    // Two more 2 s windows: still not started, the hold recorded once.
    std::thread::sleep(Duration::from_millis(4_500));
    let log = status_log(repo.path());
    assert_eq!(
        log.iter().filter(|s| s.contains("held at 0%")).count(),
        1,
        "{log:#?}"
    );
    assert!(!log.iter().any(|s| s.contains("0% → 50%")), "{log:#?}");
}

/// Too little traffic (fewer requests than minRequests in a window) is "not
/// enough data": the canary holds, never promotes, and the hold is recorded
/// once, not once per window.
#[test]
fn too_little_traffic_holds_and_records_the_hold_once() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let repo = policy_repo_of(&MESH.replace("minRequests: 10", "minRequests: 100000"));
    let mut mesh = mesh_from(repo, "0", "20ms", true);
    let repo = mesh.repo.path().to_path_buf();
    let repo = repo.as_path();
    wait_for_step(repo, "api: canary v2 held at 50%");
    let body = step_body(repo, "held at 50%");
    assert!(body.contains("not enough data: canary had"), "{body}");
    assert!(body.contains("fewer than minRequests 100000"), "{body}");
    // The canary did get traffic, just too little.
    assert!(!body.contains("Gitmesh-Canary: v2 requests=0 "), "{body}");
    std::thread::sleep(Duration::from_millis(4_500));
    let held_once = || {
        let log = status_log(repo);
        assert_eq!(
            log.iter().filter(|s| s.contains("held at 50%")).count(),
            1,
            "{log:#?}"
        );
        assert!(!log.iter().any(|s| s.contains("50% → 100%")), "{log:#?}");
    };
    held_once();
    // A restarted reconciler remembers the hold it recorded (state.json):
    // the windows after the restart hold again without a second record.
    drop(mesh.processes.remove(0));
    mesh.processes.push(reconciler(repo, mesh.control));
    std::thread::sleep(Duration::from_millis(6_000));
    held_once();
}

/// Runs `gitmesh rollout ACTION api-v2 --repo REPO EXTRA…`, which must succeed.
fn rollout(repo: &Path, action: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "rollout",
        action,
        "api-v2",
        "--repo",
        repo.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = gitmesh(repo, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// `paused: true` (committed by `gitmesh rollout pause`) holds the canary
/// at its step while the gates pass; `gitmesh rollout resume` lets it go on
/// to 100%. By default the command writes to a new branch for a PR.
#[test]
fn pause_holds_at_the_step_and_resume_continues() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let repo = policy_repo_of(&tolerant());
    let main = git(repo.path(), &["rev-parse", "main"]);
    let out = rollout(repo.path(), "pause", &[]);
    assert!(out.contains("open a pull request to main"), "{out}");
    assert_eq!(git(repo.path(), &["rev-parse", "main"]), main, "main moved");
    let branch = format!("gitmesh/rollout-pause-api-v2-{}", &main.trim()[..7]);
    let on_branch = git(repo.path(), &["show", &format!("{branch}:mesh.yaml")]);
    assert!(on_branch.contains("  paused: true\n"), "{on_branch}");
    // Merged (here: committed straight to main).
    let out = rollout(repo.path(), "pause", &["--direct"]);
    assert!(out.contains("to main"), "{out}");
    let numstat = git(repo.path(), &["diff", "--numstat", "main~1", "main"]);
    assert_eq!(numstat.trim(), "1\t0\tmesh.yaml");

    let mesh = mesh_from(repo, "0", "20ms", true);
    let repo = mesh.repo.path();
    wait_for_step(repo, "api: canary v2 0% → 50% (promoted)");
    wait_for_step(repo, "api: canary v2 held at 50%");
    // Two more 2 s windows of healthy traffic: still held.
    std::thread::sleep(Duration::from_millis(4_500));
    let log = status_log(repo);
    assert!(!log.iter().any(|s| s.contains("50% → 100%")), "{log:#?}");
    let held = step_body(repo, "held at 50%");
    assert!(held.contains("paused"), "{held}");

    rollout(repo, "resume", &["--direct"]);
    wait_for_step(repo, "api: canary v2 100% → 100% (complete)");
    let log = git(repo, &["log", "--format=%B", "gitmesh/status"]);
    assert!(log.contains("Gitmesh-Reason: resumed"), "{log}");
}

/// `gitmesh rollout abort` rolls the canary back at once, and the record
/// says it was by hand.
#[test]
fn abort_rolls_back_to_stable_and_says_so() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // No traffic: the canary holds at 50% until aborted.
    let mesh = mesh_from(policy_repo(""), "0", "20ms", false);
    let repo = &mesh.repo;
    wait_for_step(repo.path(), "api: canary v2 0% → 50% (promoted)");
    rollout(repo.path(), "abort", &["--direct"]);
    wait_for_step(repo.path(), "api: canary v2 50% → 0% (rolled back)");
    let body = step_body(repo.path(), "rolled back");
    assert!(body.contains("Gitmesh-Reason: aborted by hand"), "{body}");
    let state = git(repo.path(), &["show", "gitmesh/status:state.json"]);
    assert!(state.contains("\"rolledBack\""), "{state}");
}

/// A reconciler killed mid-rollout and started again continues from the
/// step it recorded last: no step repeated, none skipped.
#[test]
fn a_restarted_reconciler_resumes_at_the_recorded_step() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let repo = policy_repo_of(&tolerant().replace("steps: [50, 100]", "steps: [20, 50, 100]"));
    let mut mesh = mesh_from(repo, "0", "20ms", true);
    let repo = mesh.repo.path().to_path_buf();
    wait_for_step(&repo, "api: canary v2 20% → 50% (promoted)");
    // SIGKILL: no chance to write anything more.
    drop(mesh.processes.remove(0));
    // Killed within a window of the promotion to 50%: mid-rollout.
    assert!(
        !has_step(&repo, "api: canary v2 50% → 100%"),
        "too late to kill"
    );
    let recorded = status_log(&repo).len();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status_log(&repo).len(), recorded, "a dead reconciler wrote");
    mesh.processes.push(reconciler(&repo, mesh.control));
    wait_for_step(&repo, "api: canary v2 100% → 100% (complete)");
    let canary: Vec<String> = status_log(&repo)
        .into_iter()
        .rev()
        .filter(|s| s.starts_with("api: canary") && !s.contains(" held at "))
        .collect();
    assert_eq!(
        canary,
        [
            "api: canary v2 0% → 20% (promoted)",
            "api: canary v2 20% → 50% (promoted)",
            "api: canary v2 50% → 100% (promoted)",
            "api: canary v2 100% → 100% (complete)",
        ],
        "{}",
        git(&repo, &["log", "--format=%B", "gitmesh/status"])
    );
}

/// Remote mode: the final weights are committed in the mirror and pushed to
/// the remote's watched branch (without force), next to the status branch.
#[test]
fn in_remote_mode_the_write_back_is_pushed() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mesh = mesh_with(policy_repo_of(&tolerant()), "0", "20ms", true, true);
    let bare = mesh.repo.path().join(".remote.git");
    let before = git(&bare, &["rev-parse", "main"]);
    wait_for_step(&bare, "api: final weights written back to main");
    let route = git(&bare, &["show", "main:mesh.yaml"]);
    assert!(
        route.contains("{name: api, subset: v1, weight: 0}"),
        "{route}"
    );
    assert!(
        route.contains("{name: api, subset: v2, weight: 100}"),
        "{route}"
    );
    // A fast-forward of what the remote had: one commit on top.
    assert_eq!(git(&bare, &["rev-parse", "main~1"]), before);
    let numstat = git(&bare, &["diff", "--numstat", "main~1", "main"]);
    assert_eq!(numstat.trim(), "2\t2\tmesh.yaml");
}
