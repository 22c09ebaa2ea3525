use std::process::Command;
use std::sync::Arc;

use super::*;
use crate::status::event::Decision;
use crate::status::fixtures;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A non-bare repo on `main` with one commit of `files`.
fn work_repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    for (path, text) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "initial"]);
    dir
}

fn bare(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    git(dir, &["init", "-q", "--bare", "-b", "main", name]);
    path
}

fn me() -> Identity {
    Identity {
        name: "gitmesh test".into(),
        email: "gitmesh@example.invalid".into(),
    }
}

fn summaries(log: &StatusLog) -> Vec<String> {
    log.history(1000)
        .unwrap()
        .into_iter()
        .map(|e| e.summary)
        .collect()
}

/// Every commit of `branch` in `repo` has at most one parent.
fn assert_linear(repo: &Path, branch: &str) -> usize {
    let out = git(repo, &["rev-list", "--parents", branch]);
    for line in out.lines() {
        assert!(line.split(' ').count() <= 2, "merge or worse: {line}");
    }
    out.lines().count()
}

#[test]
fn records_on_an_orphan_branch_without_touching_the_work_tree() {
    let repo = work_repo(&[("a.yaml", "v: 1")]);
    std::fs::write(repo.path().join("dirty.txt"), "untracked").unwrap();
    let log = StatusLog::open(repo.path(), DEFAULT_BRANCH, me()).unwrap();
    assert!(log.latest().unwrap().is_none());
    assert!(log.history(10).unwrap().is_empty());

    let first = log
        .record(
            &fixtures::applied(),
            &serde_json::json!({"applied": fixtures::SHA}),
        )
        .unwrap();
    let second = log
        .record(
            &fixtures::wave(),
            &serde_json::json!({"applied": fixtures::SHA, "wave": 2}),
        )
        .unwrap();

    // The work tree, index and HEAD are as before.
    assert_eq!(
        git(repo.path(), &["status", "--porcelain"]),
        "?? dirty.txt\n"
    );
    assert_eq!(
        git(repo.path(), &["symbolic-ref", "HEAD"]),
        "refs/heads/main\n"
    );
    // An orphan branch of two commits, each tree holding only state.json.
    assert_eq!(
        git(repo.path(), &["rev-list", "--parents", "gitmesh/status"]),
        format!("{second} {first}\n{first}\n")
    );
    assert_eq!(
        git(repo.path(), &["ls-tree", "--name-only", "gitmesh/status"]),
        "state.json\n"
    );
    assert_eq!(
        git(repo.path(), &["show", "gitmesh/status:state.json"]),
        format!(
            "{{\n  \"applied\": \"{}\",\n  \"wave\": 2\n}}\n",
            fixtures::SHA
        )
    );
    // Authored as configured; trailers readable by git itself.
    assert_eq!(
        git(
            repo.path(),
            &["log", "-1", "--format=%an <%ae>", "gitmesh/status"]
        ),
        "gitmesh test <gitmesh@example.invalid>\n"
    );
    assert_eq!(
        git(
            repo.path(),
            &[
                "log",
                "-1",
                "--format=%(trailers:key=Gitmesh-Wave,valueonly)",
                "gitmesh/status"
            ]
        )
        .trim(),
        "2/3"
    );

    let (tip, event, state) = log.latest().unwrap().unwrap();
    assert_eq!(tip, second);
    assert_eq!(event, fixtures::wave());
    assert_eq!(state["wave"], 2);

    let history = log.history(10).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].commit, second);
    assert_eq!(history[0].event, Some(fixtures::wave()));
    assert_eq!(history[1].event, Some(fixtures::applied()));
    assert_eq!(history[1].author, "gitmesh test <gitmesh@example.invalid>");
    assert!(history[0].time >= history[1].time);
    assert_eq!(log.history(1).unwrap().len(), 1);
}

#[test]
fn a_foreign_tip_is_a_clear_error_and_history_still_reads() {
    let repo = work_repo(&[("a.yaml", "v: 1")]);
    let log = StatusLog::open(repo.path(), "status", me()).unwrap();
    log.record(&fixtures::rejected(), &serde_json::json!({}))
        .unwrap();
    git(repo.path(), &["branch", "-f", "tmp", "main"]);
    // Someone commits by hand on top of the status branch.
    git(repo.path(), &["checkout", "-q", "status"]);
    git(
        repo.path(),
        &["commit", "-q", "--allow-empty", "-m", "hand edit"],
    );
    git(repo.path(), &["checkout", "-q", "main"]);
    let err = log.latest().unwrap_err();
    assert!(matches!(err, RecordError::NotOurs { .. }), "{err}");
    assert!(
        err.to_string().contains("not a gitmesh status commit"),
        "{err}"
    );
    let history = log.history(10).unwrap();
    assert_eq!(history[0].event, None);
    assert_eq!(history[0].summary, "hand edit");
    assert_eq!(history[1].event, Some(fixtures::rejected()));
}

#[test]
fn bad_names_are_refused() {
    let repo = work_repo(&[("a.yaml", "v: 1")]);
    for branch in ["", "a..b", "has space", "ends/", "x.lock"] {
        assert!(
            matches!(
                StatusLog::open(repo.path(), branch, me()),
                Err(RecordError::BadBranch(_))
            ),
            "{branch:?}"
        );
    }
    let missing = tempfile::tempdir().unwrap();
    assert!(matches!(
        StatusLog::open(missing.path(), DEFAULT_BRANCH, me()),
        Err(RecordError::Open { .. })
    ));
}

#[test]
fn concurrent_writers_lose_nothing() {
    let repo = work_repo(&[("a.yaml", "v: 1")]);
    let log = Arc::new(StatusLog::open(repo.path(), DEFAULT_BRANCH, me()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..8 {
                    let event = fixtures::canary(i + 1, t, i, Decision::Hold);
                    log.record(&event, &serde_json::json!({"t": t, "i": i}))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(assert_linear(repo.path(), "gitmesh/status"), 32);
    assert_eq!(log.history(100).unwrap().len(), 32);
}

#[test]
fn write_desired_commits_one_file_from_objects_only() {
    let repo = work_repo(&[
        ("mesh.yaml", "kind: Mesh\n"),
        ("routes/reviews.yaml", "weight: 25\n"),
        ("services/reviews.yaml", "kind: Service\n"),
    ]);
    let log = StatusLog::open(repo.path(), DEFAULT_BRANCH, me()).unwrap();
    let before = git(repo.path(), &["rev-parse", "main"]);
    let made = log
        .write_desired(
            "main",
            "routes/reviews.yaml",
            b"weight: 100\n",
            "reviews: final weights\n",
        )
        .unwrap();
    let WriteBack::Committed(id) = made else {
        panic!("{made:?}")
    };
    assert_eq!(git(repo.path(), &["rev-parse", "main^"]), before);
    assert_eq!(
        git(repo.path(), &["rev-parse", "main"]).trim(),
        id.to_string()
    );
    assert_eq!(
        git(repo.path(), &["show", "main:routes/reviews.yaml"]),
        "weight: 100\n"
    );
    assert_eq!(
        git(repo.path(), &["diff", "--name-only", "main^", "main"]),
        "routes/reviews.yaml\n"
    );
    assert_eq!(
        git(repo.path(), &["log", "-1", "--format=%s", "main"]),
        "reviews: final weights\n"
    );
    // The work tree was not written to.
    assert_eq!(
        std::fs::read_to_string(repo.path().join("routes/reviews.yaml")).unwrap(),
        "weight: 25\n"
    );

    // Same contents again: no commit.
    assert_eq!(
        log.write_desired("main", "routes/reviews.yaml", b"weight: 100\n", "again")
            .unwrap(),
        WriteBack::Unchanged(id)
    );
    // A new file in a new folder.
    log.write_desired("main", "rollouts/new/r.yaml", b"x: 1\n", "new")
        .unwrap();
    assert_eq!(
        git(repo.path(), &["show", "main:rollouts/new/r.yaml"]),
        "x: 1\n"
    );

    for bad in ["", "/abs", "a//b", "../x", ".git/config", "routes"] {
        let err = log.write_desired("main", bad, b"x", "m").unwrap_err();
        assert!(matches!(err, RecordError::BadPath(_)), "{bad:?}: {err}");
    }
    assert!(matches!(
        log.write_desired("nope", "a.yaml", b"x", "m"),
        Err(RecordError::NoSuchBranch(_))
    ));
}

#[test]
fn write_desired_keeps_the_file_mode() {
    let repo = work_repo(&[("run.sh", "echo 1\n")]);
    git(repo.path(), &["update-index", "--chmod=+x", "run.sh"]);
    git(repo.path(), &["commit", "-q", "-m", "exec"]);
    let log = StatusLog::open(repo.path(), DEFAULT_BRANCH, me()).unwrap();
    log.write_desired("main", "run.sh", b"echo 2\n", "m")
        .unwrap();
    assert!(git(repo.path(), &["ls-tree", "main", "run.sh"]).starts_with("100755 "));
}

#[test]
fn push_creates_then_fast_forwards() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare(dir.path(), "remote.git");
    let local = bare(dir.path(), "local.git");
    let log = StatusLog::open(&local, DEFAULT_BRANCH, me()).unwrap();
    log.record(&fixtures::applied(), &serde_json::json!({"n": 1}))
        .unwrap();
    let url = format!("file://{}", remote.display());
    let report = log.push(&url, DEFAULT_BRANCH).unwrap();
    assert_eq!(report.replayed, 0);
    let second = log
        .record(&fixtures::wave(), &serde_json::json!({"n": 2}))
        .unwrap();
    let report = log
        .push(
            remote.to_str().unwrap(),
            "refs/heads/gitmesh/status:refs/heads/gitmesh/status",
        )
        .unwrap();
    assert_eq!(report.tip, second);
    assert_eq!(
        git(&remote, &["rev-parse", "gitmesh/status"]).trim(),
        second.to_string()
    );
}

#[test]
fn racing_pushers_end_linear_with_both_histories() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare(dir.path(), "remote.git");
    let url = remote.to_str().unwrap().to_string();
    let a = StatusLog::open(&bare(dir.path(), "a.git"), DEFAULT_BRANCH, me()).unwrap();
    let b = StatusLog::open(&bare(dir.path(), "b.git"), DEFAULT_BRANCH, me()).unwrap();

    a.record(
        &fixtures::applied(),
        &serde_json::json!({"by": "a", "n": 1}),
    )
    .unwrap();
    a.push(&url, DEFAULT_BRANCH).unwrap();
    // b never saw a's branch: its first commit is an orphan root.
    b.record(
        &fixtures::rejected(),
        &serde_json::json!({"by": "b", "n": 1}),
    )
    .unwrap();
    let report = b.push(&url, DEFAULT_BRANCH).unwrap();
    assert_eq!(report.replayed, 1);
    a.record(
        &fixtures::superseded(),
        &serde_json::json!({"by": "a", "n": 2}),
    )
    .unwrap();
    assert_eq!(a.push(&url, DEFAULT_BRANCH).unwrap().replayed, 1);

    assert_eq!(assert_linear(&remote, "gitmesh/status"), 3);
    let subjects = git(&remote, &["log", "--format=%s", "gitmesh/status"]);
    assert_eq!(
        subjects,
        "superseded 3f2a1c9 by 8e7d6c5 at wave 1/3\nrejected 3f2a1c9: 4 lint errors\napplied 3f2a1c9: 2 services, 6 proxies\n"
    );
    // The tip's state is the last writer's, and a's local branch followed.
    assert_eq!(
        git(&remote, &["show", "gitmesh/status:state.json"]),
        "{\n  \"by\": \"a\",\n  \"n\": 2\n}\n"
    );
    assert_eq!(summaries(&a).len(), 3);
    // Nothing was forced: every remote tip contains the earlier ones.
    let reflog_free_check = git(&remote, &["rev-list", "--count", "gitmesh/status"]);
    assert_eq!(reflog_free_check.trim(), "3");
}

#[test]
fn threaded_pushers_interleave_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare(dir.path(), "remote.git");
    let url = remote.to_str().unwrap().to_string();
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let log = StatusLog::open(
                &bare(dir.path(), &format!("{name}.git")),
                DEFAULT_BRANCH,
                me(),
            )
            .unwrap();
            let url = url.clone();
            std::thread::spawn(move || {
                for i in 0..5 {
                    let event = fixtures::canary(i + 1, 0, 5, Decision::Promote);
                    log.record(&event, &serde_json::json!({"by": name, "i": i}))
                        .unwrap();
                    log.push(&url, DEFAULT_BRANCH).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(assert_linear(&remote, "gitmesh/status"), 10);
}

#[test]
fn pushing_the_desired_branch_never_clobbers_a_human_edit() {
    let dir = tempfile::tempdir().unwrap();
    let seed = work_repo(&[
        ("routes/reviews.yaml", "weight: 25\n"),
        ("other.yaml", "x: 1\n"),
    ]);
    let remote = bare(dir.path(), "remote.git");
    git(
        seed.path(),
        &["push", "-q", remote.to_str().unwrap(), "main"],
    );
    let local = dir.path().join("local.git");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            remote.to_str().unwrap(),
            "local.git",
        ],
    );
    let log = StatusLog::open(&local, DEFAULT_BRANCH, me()).unwrap();
    let url = remote.to_str().unwrap();

    // Someone else changes another file upstream: ours is replayed on top.
    std::fs::write(seed.path().join("other.yaml"), "x: 2\n").unwrap();
    git(seed.path(), &["commit", "-q", "-am", "human: other"]);
    git(seed.path(), &["push", "-q", url, "main"]);
    log.write_desired(
        "main",
        "routes/reviews.yaml",
        b"weight: 100\n",
        "final weights",
    )
    .unwrap();
    assert_eq!(log.push(url, "main").unwrap().replayed, 1);
    assert_eq!(git(&remote, &["show", "main:other.yaml"]), "x: 2\n");
    assert_eq!(
        git(&remote, &["show", "main:routes/reviews.yaml"]),
        "weight: 100\n"
    );
    assert_linear(&remote, "main");

    // Someone else changes the same file: a conflict, nothing overwritten.
    git(seed.path(), &["pull", "-q", "--ff-only", url, "main"]);
    std::fs::write(seed.path().join("routes/reviews.yaml"), "weight: 0\n").unwrap();
    git(seed.path(), &["commit", "-q", "-am", "human: abort"]);
    git(seed.path(), &["push", "-q", url, "main"]);
    log.write_desired("main", "routes/reviews.yaml", b"weight: 50\n", "weights")
        .unwrap();
    let err = log.push(url, "main").unwrap_err();
    assert!(
        matches!(&err, RecordError::Conflict { path, .. } if path == "routes/reviews.yaml"),
        "{err}"
    );
    assert_eq!(
        git(&remote, &["show", "main:routes/reviews.yaml"]),
        "weight: 0\n"
    );

    assert!(matches!(
        log.push(url, "+main:main"),
        Err(RecordError::BadRefspec(_))
    ));
}

#[test]
fn a_refused_push_that_is_not_a_race_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let local = bare(dir.path(), "local.git");
    let log = StatusLog::open(&local, DEFAULT_BRANCH, me()).unwrap();
    log.record(&fixtures::applied(), &serde_json::json!({}))
        .unwrap();
    let missing = dir.path().join("no-such-remote.git");
    let err = log
        .push(missing.to_str().unwrap(), DEFAULT_BRANCH)
        .unwrap_err();
    assert!(
        matches!(err, RecordError::PushRefused { .. } | RecordError::Git(_)),
        "{err:?}"
    );
}

#[test]
fn pull_resumes_from_the_remote_status_branch() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare(dir.path(), "remote.git");
    let url = remote.to_str().unwrap();
    let a = StatusLog::open(&bare(dir.path(), "a.git"), DEFAULT_BRANCH, me()).unwrap();
    // Nothing anywhere yet.
    assert_eq!(a.pull(url).unwrap(), None);
    a.record(&fixtures::applied(), &serde_json::json!({"n": 1}))
        .unwrap();
    let pushed = a.push(url, DEFAULT_BRANCH).unwrap().tip;

    // A reconciler with a fresh data dir.
    let fresh = StatusLog::open(&bare(dir.path(), "fresh.git"), DEFAULT_BRANCH, me()).unwrap();
    assert_eq!(fresh.pull(url).unwrap(), Some(pushed));
    let (tip, event, state) = fresh.latest().unwrap().unwrap();
    assert_eq!(
        (tip, event, state),
        (pushed, fixtures::applied(), serde_json::json!({"n": 1}))
    );

    // Both moved: ours is re-created on top of theirs.
    a.record(&fixtures::wave(), &serde_json::json!({"n": 2}))
        .unwrap();
    a.push(url, DEFAULT_BRANCH).unwrap();
    fresh
        .record(&fixtures::superseded(), &serde_json::json!({"n": 3}))
        .unwrap();
    fresh.pull(url).unwrap();
    assert_eq!(
        summaries(&fresh),
        [
            "superseded 3f2a1c9 by 8e7d6c5 at wave 1/3",
            "wave 2/3 of 3f2a1c9: 3 proxies, 2 services",
            "applied 3f2a1c9: 2 services, 6 proxies"
        ]
    );
}
