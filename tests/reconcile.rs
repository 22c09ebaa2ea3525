//! The reconciler end to end: real `gitmesh reconcile` and `gitmesh proxy`
//! processes on loopback, a real Git repo. Commits go out in waves and come
//! back as commits on the status branch; an invalid commit is rejected and
//! never reaches a proxy; a restarted reconciler resumes without repeating
//! or losing a step.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn commit_all(repo: &Path, message: &str) -> String {
    git(repo, &["commit", "-qam", message]);
    git(repo, &["rev-parse", "HEAD"]).trim().to_string()
}

fn edit(repo: &Path, file: &str, from: &str, to: &str) {
    let path = repo.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn reconciler(repo: &Path, listen: SocketAddr) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_gitmesh"))
            .args(["reconcile", "--repo", repo.to_str().unwrap()])
            .args([
                "--listen",
                &listen.to_string(),
                "--poll",
                "100ms",
                "--heartbeat",
                "300ms",
            ])
            .stdout(Stdio::null())
            .stderr(logs())
            .spawn()
            .unwrap(),
    )
}

/// Child processes' logs: shown with `GITMESH_TEST_LOGS=1`, else dropped.
fn logs() -> Stdio {
    if std::env::var_os("GITMESH_TEST_LOGS").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

struct Sidecar {
    _process: Killed,
    admin: SocketAddr,
    /// The local app: a listener that accepts connections (its health).
    app: Option<std::net::TcpListener>,
}

fn sidecar(control: SocketAddr, service: &str, labels: &[&str], state: &Path) -> Sidecar {
    let admin = free_port();
    let app = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitmesh"));
    cmd.args(["proxy", "--control-plane", &format!("http://{control}")])
        .args(["--service", service])
        .args(["--outbound", &free_port().to_string()])
        .args(["--inbound", &free_port().to_string()])
        .args(["--admin", &admin.to_string()])
        .args(["--app", &app.local_addr().unwrap().to_string()])
        .args(["--state-dir", state.to_str().unwrap()]);
    for l in labels {
        cmd.args(["--label", l]);
    }
    let process = Killed(cmd.stdout(Stdio::null()).stderr(logs()).spawn().unwrap());
    Sidecar {
        _process: process,
        admin,
        app: Some(app),
    }
}

/// The version of the config a sidecar runs (its admin `/config`).
fn running_version(s: &Sidecar) -> Option<String> {
    let (status, body) = get(s.admin, "/config", "admin")?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["version"].as_str().map(str::to_string)
}

/// bookinfo in a fresh repo, with a shorter minHealthyTime and without its
/// canary Rollout (whose steps would interleave with the waves these tests
/// count; canaries have their own tests); returns the first commit.
fn policy_repo(repo: &Path, min_healthy: &str) -> String {
    copy_dir(&root().join("examples/bookinfo"), repo);
    std::fs::remove_dir_all(repo.join("rollouts")).unwrap();
    let shorter = format!("minHealthyTime: {min_healthy}");
    edit(repo, "mesh.yaml", "minHealthyTime: 10s", &shorter);
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", "initial policy"]);
    git(repo, &["rev-parse", "HEAD"]).trim().to_string()
}

#[test]
fn commits_roll_out_in_waves_and_every_step_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let first = policy_repo(&repo, "500ms");

    let control = free_port();
    let mut rec = reconciler(&repo, control);
    let state = dir.path().join("state");
    let reviews: Vec<Sidecar> = (0..2)
        .map(|i| {
            sidecar(
                control,
                "reviews",
                &["version=v1"],
                &state.join(format!("r{i}")),
            )
        })
        .collect();
    let productpage = sidecar(control, "productpage", &[], &state.join("pp"));

    wait_for("the first commit to apply", || {
        status_log(&repo)
            .iter()
            .any(|s| s.starts_with(&format!("applied {}", &first[..7])))
    });
    wait_for("every proxy to run the first commit", || {
        reviews
            .iter()
            .chain([&productpage])
            .all(|s| running_version(s).as_deref() == Some(first.as_str()))
    });

    // A change to ratings changes what reviews' sidecars run (they call
    // ratings), not productpage's: two proxies, in two waves (1, then all).
    edit(
        &repo,
        "services/ratings.yaml",
        "maxConnections: 128",
        "maxConnections: 100",
    );
    let second = commit_all(&repo, "ratings: fewer connections");
    let applied = format!("applied {}: 1 service, 2 proxies", &second[..7]);
    wait_for("the second commit to apply", || {
        status_log(&repo).contains(&applied)
    });
    let log = status_log(&repo);
    let short = &second[..7];
    assert_eq!(
        &log[..3],
        [
            applied.clone(),
            format!("wave 2/2 of {short}: 2 proxies, 1 service"),
            format!("wave 1/2 of {short}: 1 proxy, 1 service"),
        ],
        "{log:#?}"
    );
    for s in &reviews {
        assert_eq!(running_version(s).as_deref(), Some(second.as_str()));
    }
    assert_eq!(
        running_version(&productpage).as_deref(),
        Some(first.as_str()),
        "a proxy whose config did not change gets nothing"
    );
    // The trailers are valid for `git interpret-trailers`.
    let body = git(&repo, &["log", "-1", "--format=%B", "gitmesh/status"]);
    let trailers = Command::new("git")
        .args(["interpret-trailers", "--parse"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(body.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let trailers = String::from_utf8_lossy(&trailers.stdout);
    assert!(trailers.contains("Gitmesh-Event: applied"), "{trailers}");
    assert!(
        trailers.contains(&format!("Gitmesh-Source: {second}")),
        "{trailers}"
    );

    // An invalid commit is rejected with its diagnostics and never applied.
    edit(&repo, "routes/reviews.yaml", "subset: v2", "subset: v9");
    let bad = commit_all(&repo, "typo");
    wait_for("the rejection", || {
        status_log(&repo)[0].starts_with(&format!("rejected {}", &bad[..7]))
    });
    let body = git(&repo, &["log", "-1", "--format=%B", "gitmesh/status"]);
    assert!(body.contains("GM3003"), "{body}");
    assert_eq!(
        running_version(&reviews[0]).as_deref(),
        Some(second.as_str())
    );

    // The reconciler dies; proxies keep serving their config.
    drop(rec);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        get(reviews[0].admin, "/ready", "admin").map(|r| r.0),
        Some(200)
    );
    let before_restart = status_log(&repo);
    rec = reconciler(&repo, control);
    // It resumes from the status branch: nothing is recorded again.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        status_log(&repo),
        before_restart,
        "a restart repeats no step"
    );
    // Fix the typo: the fix rolls out, after the restart, to re-registered proxies.
    edit(&repo, "routes/reviews.yaml", "subset: v9", "subset: v2");
    edit(
        &repo,
        "services/ratings.yaml",
        "maxConnections: 100",
        "maxConnections: 90",
    );
    // A per-change override in the commit's trailers: all at once.
    git(
        &repo,
        &[
            "commit",
            "-qa",
            "-m",
            "fix the typo",
            "-m",
            "Gitmesh-Waves: 100%",
        ],
    );
    let fixed = git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    wait_for("the fix to apply", || {
        status_log(&repo)[0] == format!("applied {}: 1 service, 2 proxies", &fixed[..7])
    });
    for s in &reviews {
        assert_eq!(running_version(s).as_deref(), Some(fixed.as_str()));
    }
    assert_eq!(
        status_log(&repo)[1],
        format!("wave 1/1 of {}: 2 proxies, 1 service", &fixed[..7]),
        "the trailer made it one wave"
    );
    let applied_second = status_log(&repo).iter().filter(|s| **s == applied).count();
    assert_eq!(applied_second, 1, "each step is recorded exactly once");

    // `gitmesh status` asks the running reconciler; `gitmesh history`
    // reads the status branch.
    let status = gitmesh(
        &repo,
        &["status", "--reconciler", &format!("http://{control}")],
    );
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let table = stdout(&status);
    assert_eq!(
        table.lines().filter(|l| l.contains("reviews")).count(),
        2,
        "{table}"
    );
    assert!(table.contains(&fixed[..7]), "{table}");
    let history = gitmesh(&repo, &["history", "--format", "json"]);
    assert_eq!(history.status.code(), Some(0), "{}", stderr(&history));
    let entries: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), status_log(&repo).len());
    let text = stdout(&gitmesh(&repo, &["history"]));
    assert!(
        text.contains(&bad[..7]) && text.contains("GM3003"),
        "{text}"
    );
    drop(rec);
}

/// A newer commit mid-rollout supersedes the older one (recorded), and a
/// proxy whose app goes down during its wave reverts the updated proxies to
/// the last good version (recorded with the reason).
#[test]
fn supersede_and_revert_on_an_unhealthy_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let first = policy_repo(&repo, "3s");
    let control = free_port();
    let _rec = reconciler(&repo, control);
    let state = dir.path().join("state");
    let mut reviews: Vec<Sidecar> = (0..2)
        .map(|i| {
            sidecar(
                control,
                "reviews",
                &["version=v1"],
                &state.join(format!("r{i}")),
            )
        })
        .collect();
    wait_for("every proxy to run the first commit", || {
        reviews
            .iter()
            .all(|s| running_version(s).as_deref() == Some(first.as_str()))
    });

    // Two commits in a row: the second supersedes the first mid-rollout.
    edit(
        &repo,
        "services/ratings.yaml",
        "maxConnections: 128",
        "maxConnections: 100",
    );
    let second = commit_all(&repo, "ratings: 100");
    wait_for("the second commit's first wave", || {
        reviews
            .iter()
            .any(|s| running_version(s).as_deref() == Some(second.as_str()))
    });
    edit(
        &repo,
        "services/ratings.yaml",
        "maxConnections: 100",
        "maxConnections: 90",
    );
    let third = commit_all(&repo, "ratings: 90");
    wait_for("the third commit to apply", || {
        status_log(&repo)[0].starts_with(&format!("applied {}", &third[..7]))
    });
    let log = status_log(&repo);
    assert!(
        log.iter().any(|s| s.starts_with(&format!(
            "superseded {} by {}",
            &second[..7],
            &third[..7]
        ))),
        "{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|s| s.starts_with(&format!("applied {}", &second[..7])))
    );

    // The next change reaches one proxy first; its app dies during the wave.
    edit(
        &repo,
        "services/ratings.yaml",
        "maxConnections: 90",
        "maxConnections: 80",
    );
    let fourth = commit_all(&repo, "ratings: 80");
    wait_for("the fourth commit's first wave", || {
        reviews
            .iter()
            .any(|s| running_version(s).as_deref() == Some(fourth.as_str()))
    });
    let updated = reviews
        .iter()
        .position(|s| running_version(s).as_deref() == Some(fourth.as_str()))
        .unwrap();
    reviews[updated].app = None; // the app stops listening
    wait_for("the revert", || {
        status_log(&repo)[0].starts_with(&format!("reverted {}", &fourth[..7]))
    });
    let body = git(&repo, &["log", "-1", "--format=%B", "gitmesh/status"]);
    assert!(body.contains("Gitmesh-Reason: unhealthy"), "{body}");
    assert!(
        body.contains(&format!("Gitmesh-Reverted-To: {third}")),
        "{body}"
    );
    wait_for(
        "the updated proxy to run the last good version again",
        || running_version(&reviews[updated]).as_deref() == Some(third.as_str()),
    );
    let other = 1 - updated;
    assert_eq!(
        running_version(&reviews[other]).as_deref(),
        Some(third.as_str())
    );
}
