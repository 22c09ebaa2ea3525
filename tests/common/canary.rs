//! Helpers of the canary end-to-end tests (`tests/canary.rs` with sidecar
//! scrapes, `tests/canary_prometheus.rs` with Prometheus): processes, steady
//! traffic through a sidecar, and the steps on the status branch.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Killed, free_port, git, status_log};

/// Runs `gitmesh ARGS…` with its output discarded, killed when dropped.
pub fn quiet_gitmesh(args: &[&str]) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_gitmesh"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A sidecar of `service` (with `label`, e.g. `version=v2`) in front of
/// `app`, controlled by the reconciler at `control`.
pub fn sidecar(
    control: &str,
    service: &str,
    label: Option<&str>,
    app: &str,
    outbound: SocketAddr,
    admin: SocketAddr,
) -> Killed {
    let (inbound, admin) = (free_port().to_string(), admin.to_string());
    let outbound = outbound.to_string();
    let mut args = vec![
        "proxy",
        "--control-plane",
        control,
        "--service",
        service,
        "--outbound",
        &outbound,
        "--inbound",
        &inbound,
        "--admin",
        &admin,
        "--app",
        app,
    ];
    if let Some(label) = label {
        args.extend(["--label", label]);
    }
    quiet_gitmesh(&args)
}

/// About 200 requests a second from web to api, through web's sidecar, on
/// one keep-alive connection (a new connection per request would churn the
/// ephemeral ports), until `stop`.
pub fn traffic(outbound: SocketAddr, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = TcpStream::connect(outbound) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        while !stop.load(Ordering::Relaxed) {
            if writer
                .write_all(b"GET http://api/items HTTP/1.1\r\nhost: api\r\n\r\n")
                .is_err()
                || read_response(&mut reader).is_none()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Reads one HTTP/1.1 response (status line, headers, a content-length
/// body); `None` when the connection is gone or the answer is not HTTP.
pub fn read_response(reader: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(status)
}

/// The message of the latest status commit whose message contains `grep`.
pub fn step_body(repo: &Path, grep: &str) -> String {
    git(
        repo,
        &["log", "-1", "--format=%B", "--grep", grep, "gitmesh/status"],
    )
}

/// Whether a status commit's subject starts with `summary`.
pub fn has_step(repo: &Path, summary: &str) -> bool {
    status_log(repo).iter().any(|s| s.starts_with(summary))
}

/// Waits up to 60 s for a status commit, showing the status log if it
/// never comes.
pub fn wait_for_step(repo: &Path, summary: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !has_step(repo, summary) {
        assert!(
            std::time::Instant::now() < deadline,
            "no `{summary}` on the status branch:\n{:#?}\n{}",
            status_log(repo),
            git(repo, &["log", "-8", "--format=%B", "gitmesh/status"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
