//! Mesh identity end to end: a real `gitmesh reconcile` with a bootstrap
//! token runs the mesh CA; two real `gitmesh proxy` processes get their
//! certificates from it (their keys stay with them) and talk mTLS in a
//! strict mesh: the server's app learns the caller's SPIFFE ID, plaintext
//! to the strict inbound is refused, and a wrong token gets no certificate
//! (and is counted).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

const TOKEN: &str = "e2e-bootstrap-token-0123456789";

fn logs() -> Stdio {
    if std::env::var_os("GITMESH_TEST_LOGS").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// An app that answers every request with the caller identity its
/// sidecar passed on (`x-gitmesh-peer-identity`), or `anonymous`.
fn identity_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut who = "anonymous".to_string();
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.strip_prefix("x-gitmesh-peer-identity: ") {
                            who = v.to_string();
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{who}",
                        who.len()
                    );
                    if out.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

struct Sidecar {
    _process: Killed,
    outbound: SocketAddr,
    inbound: SocketAddr,
    admin: SocketAddr,
}

fn sidecar(
    control: SocketAddr,
    service: &str,
    token_file: &Path,
    bundle: &Path,
    app: Option<SocketAddr>,
    state: &Path,
) -> Sidecar {
    let (outbound, inbound, admin) = (free_port(), free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitmesh"));
    cmd.args(["proxy", "--control-plane", &format!("http://{control}")])
        .args(["--service", service, "--trust-domain", "bookinfo.local"])
        .args(["--bootstrap-token-file", token_file.to_str().unwrap()])
        .args(["--ca-bundle", bundle.to_str().unwrap()])
        .args(["--outbound", &outbound.to_string()])
        .args(["--inbound", &inbound.to_string()])
        .args(["--admin", &admin.to_string()])
        .args(["--state-dir", state.to_str().unwrap()]);
    if let Some(app) = app {
        cmd.args(["--app", &app.to_string()]);
    }
    Sidecar {
        _process: Killed(cmd.stdout(Stdio::null()).stderr(logs()).spawn().unwrap()),
        outbound,
        inbound,
        admin,
    }
}

#[test]
fn the_reconcilers_ca_issues_certificates_and_two_sidecars_talk_mtls() {
    let repo = tempfile::tempdir().unwrap();
    let repo = repo.path();
    copy_dir(&root().join("examples/bookinfo"), repo);
    std::fs::remove_dir_all(repo.join("rollouts")).unwrap();
    let mesh = std::fs::read_to_string(repo.join("mesh.yaml")).unwrap();
    let mesh = mesh
        .replace("mode: permissive", "mode: strict")
        .replace("minHealthyTime: 10s", "minHealthyTime: 100ms");
    std::fs::write(repo.join("mesh.yaml"), mesh).unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", "strict mTLS"]);

    let control = free_port();
    let _reconciler = Killed(
        Command::new(env!("CARGO_BIN_EXE_gitmesh"))
            .args(["reconcile", "--repo", repo.to_str().unwrap()])
            .args([
                "--listen",
                &control.to_string(),
                "--poll",
                "100ms",
                "--heartbeat",
                "300ms",
            ])
            .args(["--trust-domain", "bookinfo.local", "--cert-lifetime", "1h"])
            .env("GITMESH_BOOTSTRAP_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(logs())
            .spawn()
            .unwrap(),
    );
    // The root is generated beside the repo's Git data, not in its files.
    let bundle = repo.join(".git/gitmesh/ca/ca.pem");
    wait_for("the mesh CA root", || {
        bundle.exists() && std::fs::metadata(&bundle).unwrap().len() > 0
    });
    assert_eq!(git(repo, &["status", "--porcelain"]), "");

    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let wrong_file = secrets.path().join("wrong");
    std::fs::write(&wrong_file, "not-the-token-0123456789").unwrap();

    let app = identity_app();
    let states = tempfile::tempdir().unwrap();
    let details = sidecar(
        control,
        "details",
        &token_file,
        &bundle,
        Some(app),
        &states.path().join("d"),
    );
    let page = sidecar(
        control,
        "productpage",
        &token_file,
        &bundle,
        None,
        &states.path().join("p"),
    );
    // A proxy with a wrong token never gets a certificate, so never serves.
    let impostor = sidecar(
        control,
        "details",
        &wrong_file,
        &bundle,
        Some(app),
        &states.path().join("x"),
    );

    wait_for(
        "productpage reaching details over mTLS",
        || matches!(get(page.outbound, "/details/1", "details"), Some((200, body)) if body == "spiffe://bookinfo.local/svc/productpage"),
    );
    // Plaintext straight to the strict inbound is refused with the reason.
    let (status, body) = get(details.inbound, "/details/1", "details").unwrap();
    assert_eq!((status, body.as_str()), (403, "mtls-required"));
    assert!(get(impostor.admin, "/ready", "admin").is_none());
    // The refused token is counted by the reconciler.
    wait_for("the bad token in the reconciler's metrics", || {
        get(control, "/metrics", "reconciler").is_some_and(|(_, m)| {
            m.lines().any(|l| {
                l.starts_with(
                    "gitmesh_reconciler_certificate_requests_total{outcome=\"bad-token\"}",
                ) && !l.ends_with(" 0")
            })
        })
    });
    let (_, metrics) = get(control, "/metrics", "reconciler").unwrap();
    assert!(
        metrics.contains("gitmesh_reconciler_certificate_requests_total{outcome=\"issued\"} 2"),
        "{metrics}"
    );
}

fn static_sidecar(
    dir: &Path,
    service: &str,
    upstream: Option<SocketAddr>,
    app: Option<SocketAddr>,
) -> Sidecar {
    let (outbound, inbound, admin) = (free_port(), free_port(), free_port());
    let upstreams = match upstream {
        Some(addr) => {
            serde_json::json!([{"name": "details", "endpoints": [{"address": addr.to_string()}]}])
        }
        None => serde_json::json!([]),
    };
    let config = serde_json::json!({
        "version": "static",
        "service": service,
        "mesh": {"trustDomain": "static.test", "mtls": "strict"},
        "upstreams": upstreams,
    });
    let file = dir.join(format!("{service}.json"));
    std::fs::write(&file, config.to_string()).unwrap();
    let certs = dir.join(service);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitmesh"));
    cmd.args(["proxy", "--config", file.to_str().unwrap()])
        .args(["--tls-cert", certs.join("cert.pem").to_str().unwrap()])
        .args(["--tls-key", certs.join("key.pem").to_str().unwrap()])
        .args(["--ca-bundle", dir.join("ca/ca.pem").to_str().unwrap()])
        .args(["--outbound", &outbound.to_string()])
        .args(["--inbound", &inbound.to_string()])
        .args(["--admin", &admin.to_string()]);
    if let Some(app) = app {
        cmd.args(["--app", &app.to_string()]);
    }
    Sidecar {
        _process: Killed(cmd.stdout(Stdio::null()).stderr(logs()).spawn().unwrap()),
        outbound,
        inbound,
        admin,
    }
}

#[test]
fn gitmesh_ca_makes_certificates_for_static_sidecars() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca_dir = d.join("ca");
    let run = |args: &[&str]| {
        let out = gitmesh(d, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    run(&[
        "ca",
        "init",
        "--dir",
        ca_dir.to_str().unwrap(),
        "--trust-domain",
        "static.test",
    ]);
    for service in ["details", "productpage"] {
        let out = d.join(service);
        let printed = run(&[
            "ca",
            "issue",
            "--dir",
            ca_dir.to_str().unwrap(),
            "--trust-domain",
            "static.test",
            "--service",
            service,
            "--lifetime",
            "1h",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            printed.contains(&format!("spiffe://static.test/svc/{service}")),
            "{printed}"
        );
    }
    let refused = gitmesh(
        d,
        &[
            "ca",
            "issue",
            "--dir",
            ca_dir.to_str().unwrap(),
            "--service",
            "Bad/Name",
            "--out",
            "x",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not a valid service name"),
        "{}",
        stderr(&refused)
    );

    let app = identity_app();
    let details = static_sidecar(d, "details", None, Some(app));
    wait_for("details listening", || {
        get(details.admin, "/ready", "admin").is_some()
    });
    let page = static_sidecar(d, "productpage", Some(details.inbound), None);
    wait_for(
        "productpage reaching details over mTLS",
        || matches!(get(page.outbound, "/", "details"), Some((200, body)) if body == "spiffe://static.test/svc/productpage"),
    );
    assert_eq!(get(details.inbound, "/", "details").map(|r| r.0), Some(403));

    // A key that does not match the certificate is refused at start, with the reason.
    std::fs::copy(d.join("details/key.pem"), d.join("productpage/key.pem")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gitmesh"))
        .args([
            "proxy",
            "--config",
            d.join("productpage.json").to_str().unwrap(),
        ])
        .args([
            "--tls-cert",
            d.join("productpage/cert.pem").to_str().unwrap(),
        ])
        .args(["--tls-key", d.join("productpage/key.pem").to_str().unwrap()])
        .args(["--ca-bundle", ca_dir.join("ca.pem").to_str().unwrap()])
        .args([
            "--outbound",
            "127.0.0.1:0",
            "--inbound",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
}
