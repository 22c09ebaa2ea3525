//! Remote mode: the reconciler mirrors a remote repository, fetches on a
//! verified webhook only (a bad signature changes nothing), pushes its
//! status branch back to the remote, and serves its metrics.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn webhook_fetches_and_the_status_branch_is_pushed_back() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("remote.git");
    git(
        dir.path(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    let work = dir.path().join("work");
    copy_dir(&root().join("examples/bookinfo"), &work);
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "initial policy"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let secret_file = dir.path().join("hook-secret");
    std::fs::write(&secret_file, "s3cr3t-for-tests\n").unwrap();

    let listen = free_port();
    let _reconciler = Killed(
        Command::new(env!("CARGO_BIN_EXE_gitmesh"))
            .args(["reconcile", "--remote", bare.to_str().unwrap()])
            .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
            // Only the webhook (and the first fetch) bring new commits.
            .args(["--poll", "1h", "--listen", &listen.to_string()])
            .args(["--webhook-secret-file", secret_file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("GITMESH_TEST_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap(),
    );
    wait_for("the first commit to be applied and pushed", || {
        status_log(&bare).iter().any(|s| s.starts_with("applied "))
    });

    // A new commit on the remote, announced by a forged webhook: nothing.
    std::fs::write(
        work.join("services/ratings.yaml"),
        std::fs::read_to_string(work.join("services/ratings.yaml"))
            .unwrap()
            .replace("maxConnections: 128", "maxConnections: 64"),
    )
    .unwrap();
    git(&work, &["commit", "-qam", "ratings: 64 connections"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let new = git(&work, &["rev-parse", "HEAD"]).trim().to_string();
    let body = br#"{"ref":"refs/heads/main"}"#;
    let forged = post(
        listen,
        "/v1/hooks/git",
        &[("x-hub-signature-256", "sha256=00ff")],
        body,
    );
    assert_eq!(forged, 401);
    assert_eq!(
        post(listen, "/v1/hooks/git", &[], body),
        401,
        "no signature at all"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !status_log(&bare).iter().any(|s| s.contains(&new[..7])),
        "a bad signature must not trigger a fetch"
    );

    // A correctly signed one: fetched, applied, recorded, pushed.
    let signature = gitmesh_reconciler::watch::sign_github(b"s3cr3t-for-tests", body);
    let signed = post(
        listen,
        "/v1/hooks/git",
        &[("x-hub-signature-256", &signature)],
        body,
    );
    assert_eq!(signed, 202);
    wait_for(
        "the new commit to be applied on the remote status branch",
        || {
            status_log(&bare)
                .iter()
                .any(|s| s.starts_with(&format!("applied {}", &new[..7])))
        },
    );

    let (status, metrics) = get(listen, "/metrics", "x").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("gitmesh_reconciler_applied_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gitmesh_reconciler_commits_seen_total 2"),
        "{metrics}"
    );
}
