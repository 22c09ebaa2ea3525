//! Mesh identity end to end: a real `gitmesh reconcile` with a bootstrap
//! token runs the mesh CA; two real `gitmesh proxy` processes get their
//! certificates from it (their keys stay with them) and talk mTLS in a
//! strict mesh: the server's app learns the caller's SPIFFE ID, plaintext
//! to the strict inbound is refused, and a wrong token gets no certificate
//! (and is counted). The proxy API is HTTPS only then: plaintext and a
//! proxy trusting another CA get nowhere. With three sidecars, Intentions
//! allow or deny by the caller's verified identity and by method and path
//! (403 with the reason, counted by the callee), and a committed change of
//! the Intentions flips the decisions through the normal rollout. The mesh
//! CA rotates in three rounds of SIGHUP with no sidecar restarted, a
//! restarted reconciler leaves running configs alone until its sidecars are
//! back, and sidecars with their own certificates (static, or under a
//! reconciler) take renewed ones on SIGHUP.

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

/// `GET https://<addr><path>` verified against `bundle` only.
fn https_get(addr: SocketAddr, path: &str, bundle: &Path) -> Result<(u16, String), String> {
    let root = reqwest::Certificate::from_pem(&std::fs::read(bundle).unwrap()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let res = client
        .get(format!("https://{addr}{path}"))
        .send()
        .map_err(|e| format!("{e:?}"))?;
    Ok((res.status().as_u16(), res.text().unwrap_or_default()))
}

/// `POST https://<addr><path>` with a JSON `body`, verified against
/// `bundle`, presenting `identity` (a PEM with a certificate and its key)
/// when given.
fn https_post(
    addr: SocketAddr,
    path: &str,
    body: &str,
    bundle: &Path,
    identity: Option<&[u8]>,
) -> Result<(u16, String), String> {
    let root = reqwest::Certificate::from_pem(&std::fs::read(bundle).unwrap()).unwrap();
    let mut client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .timeout(std::time::Duration::from_secs(5));
    if let Some(pem) = identity {
        client = client.identity(reqwest::Identity::from_pem(pem).unwrap());
    }
    let res = client
        .build()
        .unwrap()
        .post(format!("https://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .map_err(|e| format!("{e:?}"))?;
    Ok((res.status().as_u16(), res.text().unwrap_or_default()))
}

struct Sidecar {
    process: Killed,
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
    cmd.args(["proxy", "--control-plane", &format!("https://{control}")])
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
        process: Killed(cmd.stdout(Stdio::null()).stderr(logs()).spawn().unwrap()),
        outbound,
        inbound,
        admin,
    }
}

/// `gitmesh ca init --dir ca --trust-domain domain`, run in `dir`.
fn ca_init(dir: &Path, ca: &Path, trust_domain: &str) {
    gitmesh_ok(
        dir,
        &[
            "ca",
            "init",
            "--dir",
            ca.to_str().unwrap(),
            "--trust-domain",
            trust_domain,
        ],
    );
}

/// The bookinfo example without its rollouts, copied into `repo`, in a
/// strict-mTLS mesh whose waves settle in 100 ms (not committed yet).
fn strict_bookinfo(repo: &Path) {
    copy_dir(&root().join("examples/bookinfo"), repo);
    std::fs::remove_dir_all(repo.join("rollouts")).unwrap();
    let mesh = std::fs::read_to_string(repo.join("mesh.yaml")).unwrap();
    let mesh = mesh
        .replace("mode: permissive", "mode: strict")
        .replace("minHealthyTime: 10s", "minHealthyTime: 100ms");
    std::fs::write(repo.join("mesh.yaml"), mesh).unwrap();
}

/// [`strict_bookinfo`] in `repo`, committed: the start of most tests here.
fn committed_strict_bookinfo(repo: &Path) {
    strict_bookinfo(repo);
    commit_all(repo, "strict mTLS");
}

/// `git init` in `repo` and one commit of everything in it.
fn commit_all(repo: &Path, message: &str) {
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", message]);
}

#[test]
fn the_reconcilers_ca_issues_certificates_and_two_sidecars_talk_mtls() {
    let repo = tempfile::tempdir().unwrap();
    let repo = repo.path();
    committed_strict_bookinfo(repo);

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
            .args(["--api-cert-lifetime", "2h"])
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
    // productpage is started again later, with the same state directory.
    let productpage = || {
        sidecar(
            control,
            "productpage",
            &token_file,
            &bundle,
            None,
            &states.path().join("p"),
        )
    };
    let page = productpage();
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
    // The API is HTTPS only: plaintext HTTP gets no answer at all.
    assert_eq!(get(control, "/v1/status", "reconciler"), None);
    // A proxy that trusts another CA refuses the reconciler's certificate,
    // so it never gets (or asks with its token for) a certificate.
    let other_ca = tempfile::tempdir().unwrap();
    ca_init(other_ca.path(), other_ca.path(), "bookinfo.local");
    let wrong_bundle = other_ca.path().join("ca.pem");
    assert!(https_get(control, "/v1/status", &wrong_bundle).is_err());
    let stranger = sidecar(
        control,
        "details",
        &token_file,
        &wrong_bundle,
        Some(app),
        &states.path().join("s"),
    );
    // The refused token is counted by the reconciler.
    wait_for("the bad token in the reconciler's metrics", || {
        https_get(control, "/metrics", &bundle).is_ok_and(|(_, m)| {
            m.lines().any(|l| {
                l.starts_with(
                    "gitmesh_reconciler_certificate_requests_total{outcome=\"bad-token\"}",
                ) && !l.ends_with(" 0")
            })
        })
    });
    // The stranger has been retrying; it still has no certificate.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(get(stranger.admin, "/ready", "admin").is_none());
    let (status, listed) = https_get(control, "/v1/status", &bundle).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        listed.matches("\"service\":\"details\"").count(),
        1,
        "{listed}"
    );
    let (_, metrics) = https_get(control, "/metrics", &bundle).unwrap();
    assert!(
        metrics.contains("gitmesh_reconciler_certificate_requests_total{outcome=\"issued\"} 2"),
        "{metrics}"
    );

    // The API lets a proxy speak only for its own service: registering
    // without a certificate is refused (401); with productpage's
    // certificate, registering as details or ACKing for details' proxy is
    // refused (403); productpage's own registration goes through.
    let pem = std::fs::read(states.path().join("p/mesh-identity.pem")).unwrap();
    let as_details = r#"{"service":"details","address":"127.0.0.1:9"}"#;
    let (status, body) = https_post(control, "/v1/proxies", as_details, &bundle, None).unwrap();
    assert_eq!(status, 401, "{body}");
    let (status, body) =
        https_post(control, "/v1/proxies", as_details, &bundle, Some(&pem)).unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("`productpage`, not `details`"), "{body}");
    let (_, listed) = https_get(control, "/v1/status", &bundle).unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let details_id = listed["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["service"] == "details")
        .and_then(|p| p["id"].as_str())
        .unwrap()
        .to_string();
    let ack = format!("/v1/proxies/{details_id}/ack");
    let (status, body) = https_post(control, &ack, "{}", &bundle, Some(&pem)).unwrap();
    assert_eq!(status, 403, "{body}");
    let as_page = r#"{"service":"productpage","address":"127.0.0.1:9"}"#;
    let (status, body) = https_post(control, "/v1/proxies", as_page, &bundle, Some(&pem)).unwrap();
    assert_eq!(status, 200, "{body}");

    // Each sidecar kept its certificate and key beside its config, readable
    // by its owner only; restarted while the reconciler is down, productpage
    // serves over mTLS with both.
    let saved = states.path().join("p/mesh-identity.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        std::fs::read_to_string(&saved)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    drop(_reconciler);
    drop(page);
    let page = productpage();
    wait_for(
        "productpage reaching details with the reconciler down",
        || {
            matches!(get(page.outbound, "/details/1", "details"),
            Some((200, body)) if body == "spiffe://bookinfo.local/svc/productpage")
        },
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
        process: Killed(cmd.stdout(Stdio::null()).stderr(logs()).spawn().unwrap()),
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
    let run = |args: &[&str]| gitmesh_ok(d, args);
    ca_init(d, &ca_dir, "static.test");
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

    // `--check` loads the identity as a start would.
    let check = |service: &str| {
        gitmesh(
            d,
            &[
                "proxy",
                "--check",
                "--config",
                d.join(format!("{service}.json")).to_str().unwrap(),
                "--tls-cert",
                d.join(format!("{service}/cert.pem")).to_str().unwrap(),
                "--tls-key",
                d.join(format!("{service}/key.pem")).to_str().unwrap(),
                "--ca-bundle",
                ca_dir.join("ca.pem").to_str().unwrap(),
            ],
        )
    };
    let out = check("productpage");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("mTLS: ok: spiffe://static.test/svc/productpage, certificate valid until"),
        "{}",
        stdout(&out)
    );

    // A key that does not match the certificate is refused at start, with the reason.
    std::fs::copy(d.join("details/key.pem"), d.join("productpage/key.pem")).unwrap();
    let out = check("productpage");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
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

/// One request over a fresh connection: (status, lower-cased head, body).
fn call(proxy: SocketAddr, method: &str, path: &str, host: &str) -> Option<(u16, String, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(proxy).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((status, head.to_ascii_lowercase(), body.to_string()))
}

/// The value of `gitmesh_errors_total{direction="inbound",reason=…}` on an
/// admin port (0 when absent).
fn inbound_errors(admin: SocketAddr, reason: &str) -> u64 {
    let Some((200, metrics)) = get(admin, "/metrics", "admin") else {
        return 0;
    };
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("gitmesh_errors_total{")
                && l.contains("direction=\"inbound\"")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

const REVIEWS_INTENTIONS: &str = "apiVersion: gitmesh.dev/v1alpha1
kind: Intentions
metadata:
  name: reviews
spec:
  destination: reviews
  sources:
";

#[test]
fn intentions_decide_by_verified_identity_and_change_through_the_rollout() {
    let repo = tempfile::tempdir().unwrap();
    let repo = repo.path();
    strict_bookinfo(repo);
    std::fs::remove_dir_all(repo.join("routes")).unwrap();
    let mesh = std::fs::read_to_string(repo.join("mesh.yaml")).unwrap();
    assert!(mesh.contains("defaultIntention: deny"));
    // details may call reviews (so its sidecar has a route there), but the
    // Intentions only let productpage in, and only for GET /reviews….
    let details = std::fs::read_to_string(repo.join("services/details.yaml")).unwrap();
    let details = details.replace("  port: 9080\n", "  port: 9080\n  upstreams: [reviews]\n");
    std::fs::write(repo.join("services/details.yaml"), details).unwrap();
    std::fs::write(
        repo.join("intentions/reviews.yaml"),
        format!(
            "{REVIEWS_INTENTIONS}    - name: productpage
      permissions:
        - action: allow
          http:
            pathPrefix: /reviews
            methods: [GET]
"
        ),
    )
    .unwrap();
    commit_all(repo, "strict mTLS, reviews for productpage only");

    let control = free_port();
    let _reconciler = Killed(
        Command::new(env!("CARGO_BIN_EXE_gitmesh"))
            .args(["reconcile", "--repo", repo.to_str().unwrap()])
            .args(["--listen", &control.to_string(), "--poll", "100ms"])
            .args(["--heartbeat", "300ms"])
            // No --trust-domain: the CA takes the Mesh's (bookinfo.local).
            .args(["--cert-lifetime", "1h"])
            .env("GITMESH_BOOTSTRAP_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(logs())
            .spawn()
            .unwrap(),
    );
    let bundle = repo.join(".git/gitmesh/ca/ca.pem");
    wait_for("the mesh CA root", || {
        bundle.exists() && std::fs::metadata(&bundle).unwrap().len() > 0
    });
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();

    let app = identity_app();
    let states = tempfile::tempdir().unwrap();
    let st = |name: &str| states.path().join(name);
    let reviews = sidecar(
        control,
        "reviews",
        &token_file,
        &bundle,
        Some(app),
        &st("r"),
    );
    let page = sidecar(control, "productpage", &token_file, &bundle, None, &st("p"));
    let details = sidecar(
        control,
        "details",
        &token_file,
        &bundle,
        Some(app),
        &st("d"),
    );

    // Allowed: productpage, GET under /reviews; the app sees who called.
    wait_for("productpage reaching reviews over mTLS", || {
        matches!(call(page.outbound, "GET", "/reviews/1", "reviews"),
            Some((200, _, body)) if body == "spiffe://bookinfo.local/svc/productpage")
    });
    // Denied: details has a valid certificate, but the Intentions name
    // only productpage and the default is deny.
    wait_for("details' route to reviews", || {
        call(details.outbound, "GET", "/reviews/1", "reviews").is_some_and(|(s, _, _)| s == 403)
    });
    let before = inbound_errors(reviews.admin, "denied-by-intention");
    let (status, head, body) = call(details.outbound, "GET", "/reviews/1", "reviews").unwrap();
    assert_eq!(status, 403, "{head}");
    assert!(
        head.contains("x-gitmesh-error: denied-by-intention"),
        "{head}"
    );
    assert!(head.contains("x-gitmesh-rule: default"), "{head}");
    assert_eq!(body, "denied-by-intention");
    // L7: productpage with another method, or outside /reviews, is denied
    // (no permission fits: the default decides).
    let (status, head, _) = call(page.outbound, "POST", "/reviews/1", "reviews").unwrap();
    assert_eq!(status, 403, "{head}");
    assert!(
        head.contains("x-gitmesh-error: denied-by-intention"),
        "{head}"
    );
    let (status, head, _) = call(page.outbound, "GET", "/admin", "reviews").unwrap();
    assert_eq!(status, 403, "{head}");
    assert!(
        head.contains("x-gitmesh-rule: source=productpage"),
        "{head}"
    );
    // Each refusal is counted by the callee's sidecar.
    wait_for("the denials in reviews' metrics", || {
        inbound_errors(reviews.admin, "denied-by-intention") >= before + 3
    });

    // The Intentions change is a commit like any policy: the reconciler
    // rolls it out and the decisions flip.
    std::fs::write(
        repo.join("intentions/reviews.yaml"),
        format!(
            "{REVIEWS_INTENTIONS}    - name: details
      permissions:
        - action: allow
          http:
            pathPrefix: /reviews
            methods: [GET]
    - name: productpage
      action: deny
"
        ),
    )
    .unwrap();
    git(
        repo,
        &["commit", "-qam", "reviews: details in, productpage out"],
    );
    wait_for("details allowed after the rollout", || {
        matches!(call(details.outbound, "GET", "/reviews/1", "reviews"),
            Some((200, _, body)) if body == "spiffe://bookinfo.local/svc/details")
    });
    wait_for("productpage denied after the rollout", || {
        call(page.outbound, "GET", "/reviews/1", "reviews")
            .is_some_and(|(s, h, _)| s == 403 && h.contains("x-gitmesh-rule: source=productpage"))
    });
    let (status, _, _) = call(details.outbound, "POST", "/reviews/1", "reviews").unwrap();
    assert_eq!(status, 403);
    // Recorded on the status branch like any rollout.
    let head = git(repo, &["rev-parse", "HEAD"]);
    let applied = format!("applied {}", &head.trim()[..7]);
    wait_for("the rollout on the status branch", || {
        status_log(repo).iter().any(|s| s.starts_with(&applied))
    });

    // A Mesh that names another trust domain than the running CA's is
    // rejected with the reason; the sidecars keep the last good version.
    let mesh = std::fs::read_to_string(repo.join("mesh.yaml")).unwrap();
    let moved = mesh.replace("trustDomain: bookinfo.local", "trustDomain: other.local");
    assert_ne!(mesh, moved);
    std::fs::write(repo.join("mesh.yaml"), moved).unwrap();
    git(repo, &["commit", "-qam", "mesh: another trust domain"]);
    let head = git(repo, &["rev-parse", "HEAD"]);
    let rejected = format!("rejected {}", &head.trim()[..7]);
    wait_for("the trust-domain rejection", || {
        status_log(repo).iter().any(|s| s.starts_with(&rejected))
    });
    let body = git(
        repo,
        &[
            "log",
            "-1",
            "--format=%B",
            "--grep",
            &rejected,
            "gitmesh/status",
        ],
    );
    assert!(body.contains("--trust-domain other.local"), "{body}");
    assert!(
        matches!(
            call(page.outbound, "GET", "/reviews/1", "reviews"),
            Some((403, _, _))
        ),
        "the last good version (productpage denied) keeps running"
    );
}

/// The proxy's `gitmesh_mesh_certificate_expiry_timestamp_seconds`.
fn certificate_expiry(admin: SocketAddr) -> Option<u64> {
    let (_, text) = get(admin, "/metrics", "admin")?;
    text.lines()
        .find_map(|l| l.strip_prefix("gitmesh_mesh_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
}

/// The certificate a sidecar uses expires about `seconds` from now (within
/// five minutes), as its metrics say.
fn expires_in(admin: SocketAddr, seconds: u64) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    certificate_expiry(admin).is_some_and(|v| v.abs_diff(now + seconds) < 300)
}

#[test]
fn static_sidecars_take_a_renewed_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = d.join("ca");
    let run = |args: &[&str]| gitmesh_ok(d, args);
    let ca_arg = ca.to_str().unwrap();
    ca_init(d, &ca, "static.test");
    let issue = |service: &str, lifetime: &str, out: &str| {
        let out = d.join(out);
        run(&[
            "ca",
            "issue",
            "--dir",
            ca_arg,
            "--trust-domain",
            "static.test",
            "--service",
            service,
            "--lifetime",
            lifetime,
            "--out",
            out.to_str().unwrap(),
        ]);
    };
    issue("details", "1h", "details");
    issue("productpage", "1h", "productpage");
    let app = identity_app();
    let details = static_sidecar(d, "details", None, Some(app));
    let page = static_sidecar(d, "productpage", Some(details.inbound), None);
    wait_for("details listening", || {
        certificate_expiry(details.admin).is_some()
    });
    assert!(expires_in(details.admin, 3600));

    // An outside tool renews the files; SIGHUP swaps the certificate in.
    issue("details", "3h", "details");
    hup(&details.process);
    wait_for("the renewed certificate in use", || {
        expires_in(details.admin, 3 * 3600)
    });
    // New handshakes present it, and mTLS between the two still works.
    wait_for(
        "productpage reaching details over mTLS",
        || matches!(get(page.outbound, "/", "details"), Some((200, body)) if body == "spiffe://static.test/svc/productpage"),
    );

    // Another service's certificate is refused; the running one stays.
    issue("details", "3h", "details-renewed");
    issue("productpage", "5h", "details");
    hup(&details.process);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(expires_in(details.admin, 3 * 3600));
    assert!(
        matches!(get(page.outbound, "/", "details"), Some((200, _))),
        "details keeps serving with its own certificate"
    );
    for file in ["cert.pem", "key.pem"] {
        std::fs::copy(
            d.join("details-renewed").join(file),
            d.join("details").join(file),
        )
        .unwrap();
    }

    // A new mesh CA: the bundle gets its root beside the old one, and
    // SIGHUP makes details take callers with certificates of either.
    let ca2 = d.join("ca2");
    ca_init(d, &ca2, "static.test");
    let both = [ca.join("ca.pem"), ca2.join("ca.pem")]
        .map(|f| std::fs::read_to_string(f).unwrap())
        .concat();
    std::fs::write(ca.join("ca.pem"), both).unwrap();
    let out = d.join("productpage");
    run(&[
        "ca",
        "issue",
        "--dir",
        ca2.to_str().unwrap(),
        "--trust-domain",
        "static.test",
        "--service",
        "productpage",
        "--lifetime",
        "1h",
        "--out",
        out.to_str().unwrap(),
    ]);
    let new_page = static_sidecar(d, "productpage", Some(details.inbound), None);
    wait_for("the new CA's productpage listening", || {
        get(new_page.admin, "/ready", "admin").is_some()
    });
    // (TLS 1.3: the caller learns of the refusal on its first read, a 502.)
    assert!(
        get(new_page.outbound, "/", "details").is_some_and(|r| r.0 >= 500),
        "details trusts only the old root until SIGHUP"
    );
    hup(&details.process);
    wait_for(
        "details taking a caller of the new CA",
        || matches!(get(new_page.outbound, "/", "details"), Some((200, body)) if body == "spiffe://static.test/svc/productpage"),
    );
}

/// A reconciler running the mesh CA of `ca` (a `gitmesh ca init` dir) on
/// `control`, also trusting `previous`'s root for the API's client
/// certificates when given.
fn ca_reconciler(repo: &Path, control: SocketAddr, ca: &Path, previous: Option<&Path>) -> Killed {
    ca_reconciler_with(repo, control, ca, previous, "300ms")
}

fn ca_reconciler_with(
    repo: &Path,
    control: SocketAddr,
    ca: &Path,
    previous: Option<&Path>,
    heartbeat: &str,
) -> Killed {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitmesh"));
    cmd.args(["reconcile", "--repo", repo.to_str().unwrap()])
        .args(["--listen", &control.to_string()])
        .args(["--poll", "100ms", "--heartbeat", heartbeat])
        .args(["--trust-domain", "bookinfo.local", "--cert-lifetime", "1h"])
        .args(["--ca-cert", ca.join("ca.pem").to_str().unwrap()])
        .args(["--ca-key", ca.join("ca-key.pem").to_str().unwrap()]);
    if let Some(previous) = previous {
        cmd.args(["--previous-ca", previous.join("ca.pem").to_str().unwrap()]);
    }
    Killed(
        cmd.env("GITMESH_BOOTSTRAP_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(logs())
            .spawn()
            .unwrap(),
    )
}

/// Enrolled sidecars for details (with [`identity_app`] behind it) and
/// productpage, reaching the reconciler at `details_via` and `page_via`
/// (the reconciler itself, or a relay to it), with state under `states`.
fn details_and_productpage(
    details_via: SocketAddr,
    page_via: SocketAddr,
    token_file: &Path,
    bundle: &Path,
    states: &Path,
) -> (Sidecar, Sidecar) {
    let details = sidecar(
        details_via,
        "details",
        token_file,
        bundle,
        Some(identity_app()),
        &states.join("d"),
    );
    let page = sidecar(
        page_via,
        "productpage",
        token_file,
        bundle,
        None,
        &states.join("p"),
    );
    (details, page)
}

/// productpage's call to details arrives over mTLS, as productpage.
fn reaches_details(page: &Sidecar) -> bool {
    matches!(get(page.outbound, "/details/1", "details"),
        Some((200, body)) if body == "spiffe://bookinfo.local/svc/productpage")
}

/// How many roots a sidecar trusts, from its admin port's `/identity`.
fn trusted_roots(admin: SocketAddr) -> usize {
    let (status, body) = get(admin, "/identity", "admin").unwrap();
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    view["roots"].as_array().unwrap().len()
}

fn hup(process: &Killed) {
    let pid = rustix::process::Pid::from_raw(process.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
}

/// `GET https://<inbound>/` straight to a sidecar's inbound, presenting
/// `identity` (certificate and key, PEM); the sidecar's own certificate is
/// not checked (its trust is not what is tested here).
fn mtls_get(inbound: SocketAddr, identity: &[u8]) -> Result<(u16, String), String> {
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .identity(reqwest::Identity::from_pem(identity).unwrap())
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let res = client
        .get(format!("https://{inbound}/details/1"))
        .header("host", "details")
        .send()
        .map_err(|e| format!("{e:?}"))?;
    Ok((res.status().as_u16(), res.text().unwrap_or_default()))
}

#[test]
fn an_enrolled_mesh_moves_to_a_new_ca_without_restarting_a_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = d.join("repo");
    committed_strict_bookinfo(&repo);
    let run = |args: &[&str]| gitmesh_ok(d, args);
    let (old_ca, new_ca) = (d.join("ca-old"), d.join("ca-new"));
    for ca in [&old_ca, &new_ca] {
        ca_init(d, ca, "bookinfo.local");
    }
    let root_of = |ca: &Path| std::fs::read_to_string(ca.join("ca.pem")).unwrap();
    let bundle = d.join("bundle.pem");
    std::fs::write(&bundle, root_of(&old_ca)).unwrap();
    let token_file = d.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();

    let control = free_port();
    let reconciler = ca_reconciler(&repo, control, &old_ca, None);
    let states = d.join("states");
    let (details, page) = details_and_productpage(control, control, &token_file, &bundle, &states);
    let sidecars = [(&details, states.join("d")), (&page, states.join("p"))];
    let talking = || reaches_details(&page);
    wait_for("productpage reaching details over mTLS", talking);

    // Which CA signed a sidecar's certificate in use: `--check` loads the
    // certificate it saved against one CA's root alone.
    let config = d.join("check.json");
    std::fs::write(
        &config,
        r#"{"version":"check","service":"details","mesh":{"trustDomain":"bookinfo.local","mtls":"strict"},"upstreams":[]}"#,
    )
    .unwrap();
    let signed_by = |state: &Path, ca: &Path| {
        let saved = state.join("mesh-identity.pem");
        let saved = saved.to_str().unwrap();
        let out = gitmesh(
            d,
            &[
                "proxy",
                "--check",
                "--config",
                config.to_str().unwrap(),
                "--tls-cert",
                saved,
                "--tls-key",
                saved,
                "--ca-bundle",
                ca.join("ca.pem").to_str().unwrap(),
            ],
        );
        out.status.success()
    };
    let saved = |state: &Path| std::fs::read(state.join("mesh-identity.pem")).unwrap();
    // SIGHUP to both sidecars, then each has renewed (its saved
    // certificate changed) with a certificate of `ca`.
    let hup_and_renew = |ca: &Path| {
        let before: Vec<_> = sidecars.iter().map(|(_, state)| saved(state)).collect();
        for (sidecar, _) in &sidecars {
            hup(&sidecar.process);
        }
        for ((_, state), before) in sidecars.iter().zip(before) {
            wait_for("a renewal after SIGHUP", || saved(state) != before);
            assert!(
                signed_by(state, ca),
                "{} renewed from the wrong CA",
                state.display()
            );
        }
    };
    for (_, state) in &sidecars {
        assert!(signed_by(state, &old_ca) && !signed_by(state, &new_ca));
    }

    // 1. Both roots in every bundle; SIGHUP: each sidecar renews (from the
    //    old CA still) and trusts both.
    std::fs::write(&bundle, root_of(&old_ca) + &root_of(&new_ca)).unwrap();
    hup_and_renew(&old_ca);
    assert!(talking());
    // Each sidecar's `/identity` lists the roots it trusts now.
    assert_eq!(trusted_roots(details.admin), 2);
    assert_eq!(trusted_roots(page.admin), 2);

    // 2. The reconciler restarts with the new CA, trusting the old root for
    //    the API's client certificates until every sidecar has renewed.
    drop(reconciler);
    let reconciler = ca_reconciler(&repo, control, &new_ca, Some(&old_ca));
    let new_root = new_ca.join("ca.pem");
    // Both sidecars, still on old-CA certificates, trust the new API's
    // certificate and are let in: they register again.
    wait_for("both sidecars registered with the new reconciler", || {
        https_get(control, "/v1/status", &new_root).is_ok_and(|(_, listed)| {
            listed.contains("\"service\":\"details\"")
                && listed.contains("\"service\":\"productpage\"")
        })
    });
    assert!(talking());
    hup_and_renew(&new_ca);
    for (_, state) in &sidecars {
        assert!(!signed_by(state, &old_ca));
    }
    assert!(talking());

    // 3. The old root out of the bundles; SIGHUP. A caller with an old-CA
    //    certificate is now refused, one with a new-CA certificate taken.
    std::fs::write(&bundle, root_of(&new_ca)).unwrap();
    hup_and_renew(&new_ca);
    assert!(talking());
    assert_eq!(trusted_roots(details.admin), 1);
    assert_eq!(trusted_roots(page.admin), 1);
    let caller = |ca: &Path| {
        let out = d.join(format!(
            "caller-{}",
            ca.file_name().unwrap().to_str().unwrap()
        ));
        run(&[
            "ca",
            "issue",
            "--dir",
            ca.to_str().unwrap(),
            "--trust-domain",
            "bookinfo.local",
            "--service",
            "productpage",
            "--out",
            out.to_str().unwrap(),
        ]);
        [out.join("cert.pem"), out.join("key.pem")]
            .map(|f| std::fs::read_to_string(f).unwrap())
            .concat()
    };
    let answer = mtls_get(details.inbound, caller(&new_ca).as_bytes());
    assert_eq!(
        answer,
        Ok((200, "spiffe://bookinfo.local/svc/productpage".to_string()))
    );
    assert!(mtls_get(details.inbound, caller(&old_ca).as_bytes()).is_err());

    // The reconciler no longer needs the old root.
    drop(reconciler);
    let _reconciler = ca_reconciler(&repo, control, &new_ca, None);
    wait_for("both sidecars registered again", || {
        https_get(control, "/v1/status", &new_root).is_ok_and(|(_, listed)| {
            listed.contains("\"service\":\"details\"")
                && listed.contains("\"service\":\"productpage\"")
        })
    });
    assert!(talking());
}

/// A TCP relay on 127.0.0.1 to `to`, which a test can cut: while cut, it
/// closes every connection it accepts.
struct Relay {
    addr: SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn start(to: SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let is_cut = cut.clone();
        std::thread::spawn(move || {
            for caller in listener.incoming() {
                let Ok(caller) = caller else { return };
                if is_cut.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(to) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (caller.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, caller),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { addr, cut }
    }

    fn cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_restarted_reconciler_changes_no_running_config_until_its_sidecars_are_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = d.join("repo");
    committed_strict_bookinfo(&repo);
    let ca = d.join("ca");
    ca_init(d, &ca, "bookinfo.local");
    let bundle = ca.join("ca.pem");
    let token_file = d.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();

    // A heartbeat of 2 s: the warm-up after a start is three of them.
    let control = free_port();
    let reconciler = ca_reconciler_with(&repo, control, &ca, None, "2s");
    // details reaches the reconciler through a relay the test can cut.
    let relay = Relay::start(control);
    let states = d.join("states");
    let (_details, page) =
        details_and_productpage(relay.addr, control, &token_file, &bundle, &states);
    let talking = || reaches_details(&page);
    wait_for("productpage reaching details over mTLS", talking);
    let registered = |service: &str| {
        https_get(control, "/v1/status", &bundle)
            .is_ok_and(|(_, listed)| listed.contains(&format!("\"service\":\"{service}\"")))
    };

    // The reconciler restarts; details cannot reach it for a while.
    relay.cut(true);
    drop(reconciler);
    let _reconciler = ca_reconciler_with(&repo, control, &ca, None, "2s");
    wait_for("productpage registered again", || registered("productpage"));
    assert!(!registered("details"));
    // A config built from productpage's registration alone would have no
    // endpoint for details; productpage keeps what it runs.
    for _ in 0..10 {
        assert!(
            talking(),
            "productpage lost details before details was back"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    relay.cut(false);
    wait_for("details registered again", || registered("details"));
    wait_for("productpage reaching details after the restart", talking);
}

#[test]
fn a_sidecar_with_its_own_certificate_under_a_reconciler_reloads_it_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| gitmesh_ok(d, args);
    let ca = d.join("ca");
    let ca_arg = ca.to_str().unwrap();
    ca_init(d, &ca, "bookinfo.local");
    let certs = d.join("details");
    let issue = |lifetime: &str| {
        run(&[
            "ca",
            "issue",
            "--dir",
            ca_arg,
            "--trust-domain",
            "bookinfo.local",
            "--service",
            "details",
            "--lifetime",
            lifetime,
            "--out",
            certs.to_str().unwrap(),
        ]);
    };
    issue("1h");
    let repo = d.join("repo");
    committed_strict_bookinfo(&repo);
    // No bootstrap tokens: no mesh CA, a plain HTTP API; the sidecar brings
    // its own certificate (from `gitmesh ca issue`) and takes its config
    // from the reconciler.
    let control = free_port();
    let _reconciler = Killed(
        Command::new(env!("CARGO_BIN_EXE_gitmesh"))
            .args(["reconcile", "--repo", repo.to_str().unwrap()])
            .args(["--listen", &control.to_string()])
            .args(["--poll", "100ms", "--heartbeat", "300ms"])
            .stdout(Stdio::null())
            .stderr(logs())
            .spawn()
            .unwrap(),
    );
    let admin = free_port();
    let details = Killed(
        Command::new(env!("CARGO_BIN_EXE_gitmesh"))
            .args(["proxy", "--control-plane", &format!("http://{control}")])
            .args(["--service", "details", "--trust-domain", "bookinfo.local"])
            .args(["--tls-cert", certs.join("cert.pem").to_str().unwrap()])
            .args(["--tls-key", certs.join("key.pem").to_str().unwrap()])
            .args(["--ca-bundle", ca.join("ca.pem").to_str().unwrap()])
            .args(["--outbound", "127.0.0.1:0", "--inbound", "127.0.0.1:0"])
            .args(["--admin", &admin.to_string()])
            .stdout(Stdio::null())
            .stderr(logs())
            .spawn()
            .unwrap(),
    );
    wait_for("details registered", || {
        get(control, "/v1/status", "reconciler")
            .is_some_and(|(_, listed)| listed.contains("\"service\":\"details\""))
    });
    assert!(expires_in(admin, 3600));
    issue("3h");
    hup(&details);
    wait_for("the renewed certificate in use", || {
        expires_in(admin, 3 * 3600)
    });
}
