//! Helpers for the watchers' tests: real repositories driven by real `git`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::sync::watch;

use super::Tip;

pub fn git(dir: &Path, args: &[&str]) -> String {
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
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A repo on `main` with one commit.
pub fn repo_with_commit() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    commit(dir.path(), "one");
    dir
}

/// Commits a change to `a.yaml`; returns the new sha.
pub fn commit(dir: &Path, message: &str) -> String {
    std::fs::write(dir.join("a.yaml"), message).unwrap();
    git(dir, &["add", "a.yaml"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Waits (at most `limit`) until the channel shows `want`.
pub async fn expect_tip(rx: &mut watch::Receiver<Tip>, want: Tip, limit: Duration) {
    let seen = tokio::time::timeout(limit, rx.wait_for(|tip| *tip == want))
        .await
        .map(|r| r.is_ok());
    assert!(
        matches!(seen, Ok(true)),
        "no {want:?} within {limit:?}; last {:?}",
        *rx.borrow()
    );
}
