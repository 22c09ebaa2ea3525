//! End-to-end: `gitmesh demo-app` on a loopback port, its answers, its
//! injected errors and latency, and run-time changes through /control.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Killed;
use serde_json::{Value, json};

/// A running demo-app; killed when dropped.
struct DemoApp {
    _child: Killed,
    addr: SocketAddr,
    client: reqwest::blocking::Client,
}

/// Starts `gitmesh demo-app --listen 127.0.0.1:0 ARGS` and reads the bound
/// address from its stderr.
fn start(args: &[&str]) -> DemoApp {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitmesh"))
        .args(["demo-app", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gitmesh runs");
    let stderr = child.stderr.take().unwrap();
    let child = Killed(child);
    let (tx, rx) = mpsc::channel();
    // Reads the address, then keeps draining stderr so the app never blocks
    // on a full pipe; the lines end up in the test's output on failure.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("demo-app: {line}");
            if line.starts_with("demo-app ")
                && let Some(addr) = line.split(" listening on ").nth(1)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("demo-app prints `demo-app NAME VERSION listening on ADDR`")
        .parse()
        .expect("the printed address parses");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .unwrap();
    DemoApp {
        _child: child,
        addr,
        client,
    }
}

impl DemoApp {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().expect("GET");
        let status = response.status().as_u16();
        (status, response.json().expect("a JSON body"))
    }

    fn control(&self, body: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/control"))
            .body(body.to_string())
            .send()
            .expect("POST /control");
        let status = response.status().as_u16();
        (status, response.json().expect("a JSON body"))
    }

    /// Sends `n` requests to `/`; returns how many were answered 503.
    fn failures(&self, n: usize) -> usize {
        let mut failed = 0;
        for i in 0..n {
            let (status, body) = self.get(&format!("/req/{i}"));
            match status {
                200 => assert_eq!(body["path"], format!("/req/{i}")),
                503 => {
                    assert_eq!(body, json!({"error": "injected"}));
                    failed += 1;
                }
                other => panic!("unexpected status {other}: {body}"),
            }
        }
        failed
    }
}

#[test]
fn answers_with_its_name_version_and_path() {
    let app = start(&["--name", "reviews", "--version", "v2"]);

    // A fresh connection, the raw way (common::get).
    let (status, body) = common::get(app.addr, "/reviews/1", "reviews").expect("an answer");
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        body,
        json!({"service": "reviews", "version": "v2", "path": "/reviews/1"})
    );

    let response = app.client.get(app.url("/x?q=1")).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-demo-version"], "v2");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.text().unwrap(),
        r#"{"service":"reviews","version":"v2","path":"/x"}"#
    );

    let (status, body) = app.get("/healthz");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], "v2");

    let (status, body) = app.get("/control");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"errorRate": 0.0, "latency": "0s", "latencyJitter": "0s"})
    );
}

#[test]
fn keeps_connections_alive_and_speaks_h2c() {
    let app = start(&["--name", "reviews", "--version", "v1"]);

    // HTTP/1.1: two pipelined requests on one connection, both answered.
    let mut s = TcpStream::connect(app.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /a HTTP/1.1\r\nhost: reviews\r\n\r\nGET /b HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.contains(r#""path":"/a""#), "{text}");
    assert!(text.contains(r#""path":"/b""#), "{text}");

    // HTTP/2 prior knowledge: the server answers the preface with SETTINGS.
    let mut s = TcpStream::connect(app.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    // An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    let mut frame = [0u8; 9];
    s.read_exact(&mut frame).unwrap();
    assert_eq!(frame[3], 4, "the first frame is SETTINGS: {frame:?}");
}

#[test]
fn error_rate_half_fails_about_half() {
    let app = start(&[
        "--name",
        "reviews",
        "--version",
        "v2",
        "--error-rate",
        "0.5",
    ]);
    let failed = app.failures(400);
    let share = failed as f64 / 400.0;
    assert!((0.4..=0.6).contains(&share), "{failed} of 400 failed");
    // Health checks never get an injected error.
    for _ in 0..50 {
        assert_eq!(app.get("/healthz").0, 200);
    }
}

#[test]
fn control_changes_the_error_rate_at_run_time() {
    let app = start(&["--name", "ratings", "--version", "v1"]);
    assert_eq!(app.failures(20), 0);

    let (status, body) = app.control(r#"{"errorRate":1.0}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errorRate"], 1.0);
    assert_eq!(app.get("/control").1["errorRate"], 1.0);
    assert_eq!(app.failures(50), 50);
    assert_eq!(app.get("/healthz").0, 200);

    // Bad bodies are refused and change nothing.
    for bad in [
        r#"{"errorRate":1.5}"#,
        r#"{"errorRate":0.1,"latency":"soon"}"#,
        r#"{"errorrate":0.1}"#,
        "not json",
    ] {
        let (status, body) = app.control(bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    assert_eq!(
        app.get("/control").1,
        json!({"errorRate": 1.0, "latency": "0s", "latencyJitter": "0s"})
    );

    let (status, body) = app.control(r#"{"errorRate":0.0}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errorRate"], 0.0);
    assert_eq!(app.failures(50), 0);
}

#[test]
fn latency_delays_requests_but_not_health_checks() {
    let app = start(&["--name", "reviews", "--version", "v2", "--latency", "100ms"]);
    for i in 0..5 {
        let started = Instant::now();
        let (status, _) = app.get(&format!("/slow/{i}"));
        let took = started.elapsed();
        assert_eq!(status, 200);
        assert!(took >= Duration::from_millis(100), "took {took:?}");
    }

    // Raised at run time: health checks still answer at once.
    let (status, body) = app.control(r#"{"latency":"3s","latencyJitter":"1s"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"errorRate": 0.0, "latency": "3s", "latencyJitter": "1s"})
    );
    let started = Instant::now();
    assert_eq!(app.get("/healthz").0, 200);
    assert!(started.elapsed() < Duration::from_millis(1500));

    // Lowered at run time: latency 50ms ± 20ms.
    let (status, _) = app.control(r#"{"latency":"50ms","latencyJitter":"20ms"}"#);
    assert_eq!(status, 200);
    for i in 0..5 {
        let started = Instant::now();
        assert_eq!(app.get(&format!("/quick/{i}")).0, 200);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(30), "took {took:?}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
}

#[test]
fn refuses_a_bad_error_rate_or_latency() {
    let dir = std::env::temp_dir();
    for (flag, value) in [
        ("--error-rate", "1.5"),
        ("--error-rate", "-0.1"),
        ("--error-rate", "half"),
        ("--latency", "soon"),
    ] {
        let out = common::gitmesh(
            &dir,
            &[
                "demo-app",
                "--listen",
                "127.0.0.1:0",
                "--name",
                "reviews",
                "--version",
                "v2",
                flag,
                value,
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = common::stderr(&out);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        if flag == "--error-rate" {
            assert!(stderr.contains("0.0 to 1.0"), "{stderr}");
        }
    }
}
