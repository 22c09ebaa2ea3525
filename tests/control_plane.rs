//! The proxy API end to end: the reconciler's real `ApiServer` on loopback,
//! real proxies (in-process with their control loop, and `gitmesh proxy`
//! child processes) registering, long-polling, ACKing and NACKing,
//! surviving a reconciler restart, and expiring when they go silent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gitmesh_proxy::control::{self, Backoff, ControlHandle, ControlSettings};
use gitmesh_proxy::{Proxy, ProxySettings};
use gitmesh_proxy_config::ProxyConfig;
use gitmesh_proxy_config::api::{ConfigUpdate, Running};
use gitmesh_reconciler::api::{ApiServer, RegistryHandle};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

/// The whole of one test.
const TEST_LIMIT: Duration = Duration::from_secs(60);
/// One condition to come true.
const DEADLINE: Duration = Duration::from_secs(15);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The reconciler's proxy API, in-process.
struct Api {
    addr: SocketAddr,
    registry: RegistryHandle,
    task: JoinHandle<()>,
}

async fn start_api(addr: SocketAddr, heartbeat: Duration) -> Api {
    let registry = RegistryHandle::new(heartbeat);
    // The port of a killed server may take a moment to free.
    let server = eventually("the API port to bind", async || {
        ApiServer::bind(addr, registry.clone()).await.ok()
    })
    .await;
    let addr = server.local_addr();
    let task = tokio::spawn(server.run(std::future::pending()));
    Api {
        addr,
        registry,
        task,
    }
}

impl Api {
    /// What a crash looks like to proxies: every connection closes at once.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn status(&self) -> Value {
        let (code, body) = http_get(self.addr, "/v1/status", "reconciler")
            .await
            .unwrap();
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// A proxy for `service` with no config yet, under the API at `api`.
async fn start_proxy(api: SocketAddr, service: &str, labels: &[(&str, &str)]) -> ControlHandle {
    let config = control::empty_config(service);
    let running = Running::of(&config);
    let proxy = Proxy::start(ProxySettings::loopback(), config)
        .await
        .unwrap();
    let address = proxy.inbound_addr().to_string();
    let mut settings = ControlSettings::new(
        format!("http://{api}").parse().unwrap(),
        service.to_string(),
        address,
        running,
    );
    settings.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    settings.backoff =
        Backoff::try_new(Duration::from_millis(10), Duration::from_millis(100), 0.5).unwrap();
    settings.poll_wait = Duration::from_secs(5);
    settings.request_timeout = Duration::from_secs(2);
    control::spawn(proxy, settings)
}

fn proxy_id(h: &ControlHandle) -> Option<String> {
    h.status().borrow().id.clone()
}

/// Polls `check` every 10 ms until it yields, for at most [`DEADLINE`].
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "gave up waiting for {what}"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

/// `GET path` with `Host: host` over a fresh connection: (status, body).
async fn http_get(addr: SocketAddr, path: &str, host: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let head = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).await.ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        Some((status, body.to_string()))
    };
    timeout(Duration::from_secs(5), exchange).await.ok()?
}

/// A tiny upstream answering `up <path>` to every request.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind(loopback(0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split_whitespace().nth(1).unwrap_or("?");
                let body = format!("up {path}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// `web` calling `api` at `up`; `backend` names the route's target (a
/// name with no upstream makes the config invalid).
fn web_config(version: &str, up: SocketAddr, backend: &str) -> ConfigUpdate {
    let json = json!({
        "version": version, "service": "web",
        "upstreams": [{
            "name": "api",
            "endpoints": [{"address": up.to_string()}],
            "routes": [{"name": "r", "rules": [{"backends": [{"service": backend}]}]}]
        }]
    });
    // Not `from_json`: that validates, and some of these are meant to fail.
    ConfigUpdate::new(serde_json::from_value::<ProxyConfig>(json).unwrap())
}

/// A config with other content than [`web_config`]'s (a new version alone
/// keeps the digest, and a proxy is not sent what it already runs).
fn renamed_route(update: ConfigUpdate, route: &str) -> ConfigUpdate {
    let mut config = update.config;
    config.upstreams[0].routes[0].name = route.to_string();
    ConfigUpdate::new(config)
}

/// The version the proxy's admin `/config` shows.
async fn admin_version(h: &ControlHandle) -> Option<String> {
    let (code, body) = http_get(h.proxy().admin_addr(), "/config", "admin").await?;
    assert_eq!(code, 200);
    let config: Value = serde_json::from_str(&body).ok()?;
    config["version"].as_str().map(str::to_string)
}

async fn call_api_through(h: &ControlHandle) -> Option<(u16, String)> {
    http_get(h.proxy().outbound_addr(), "/hello", "api").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_registers_runs_what_it_is_assigned_and_nacks_an_invalid_config() {
    timeout(TEST_LIMIT, async {
        let up = upstream().await;
        let api = start_api(loopback(0), Duration::from_millis(200)).await;
        let h = start_proxy(api.addr, "web", &[("version", "v1")]).await;

        let entry = eventually("the proxy in /v1/status, healthy", async || {
            let status = api.status().await;
            let p = status["proxies"].get(0)?.clone();
            (p["healthy"] == true).then_some(p)
        })
        .await;
        let id = proxy_id(&h).unwrap();
        assert_eq!(entry["id"], id.as_str());
        assert!(id.starts_with("web-"), "{id}");
        assert_eq!(entry["service"], "web");
        assert_eq!(entry["labels"]["version"], "v1");
        assert_eq!(entry["address"], h.proxy().inbound_addr().to_string());
        assert_eq!(entry["running"]["version"], "none");

        // A valid config: the proxy runs it and ACKs.
        let good = web_config("c1", up, "api");
        assert!(api.registry.assign(&id, good.clone()).unwrap());
        eventually("the proxy to run c1", async || {
            (admin_version(&h).await? == "c1").then_some(())
        })
        .await;
        let ack = eventually("the ACK", async || api.registry.get(&id)?.last_ack).await;
        assert!(ack.ack.accepted, "{ack:?}");
        assert_eq!(ack.ack.digest, good.digest);
        eventually("running = assigned", async || {
            api.registry.get(&id)?.converged().then_some(())
        })
        .await;
        assert_eq!(call_api_through(&h).await, Some((200, "up /hello".into())));

        // An invalid config: NACK with the reason, the old config serves on.
        let bad = web_config("c2", up, "nowhere");
        assert!(api.registry.assign(&id, bad.clone()).unwrap());
        let nack = eventually("the NACK", async || {
            let last = api.registry.get(&id)?.last_ack?;
            (last.ack.digest == bad.digest).then_some(last.ack)
        })
        .await;
        assert!(!nack.accepted);
        let reason = nack.reason.unwrap();
        assert!(
            reason.contains("nowhere"),
            "the reason names the problem: {reason}"
        );
        let p = api.registry.get(&id).unwrap();
        assert_eq!(p.running.unwrap().digest, good.digest, "still runs c1");
        assert_eq!(admin_version(&h).await.unwrap(), "c1");
        assert_eq!(call_api_through(&h).await, Some((200, "up /hello".into())));
        let status = api.status().await;
        assert_eq!(status["proxies"][0]["lastAck"]["accepted"], false);
        assert_eq!(status["proxies"][0]["assignedDigest"], bad.digest.as_str());

        // Back to a valid config: it gets through again.
        api.registry
            .assign(&id, web_config("c3", up, "api"))
            .unwrap();
        eventually("the proxy to run c3", async || {
            (admin_version(&h).await? == "c3").then_some(())
        })
        .await;

        h.shutdown().await;
        api.kill().await;
    })
    .await
    .expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_reconciler_gets_the_proxy_back_with_its_id_and_digest() {
    timeout(TEST_LIMIT, async {
        let up = upstream().await;
        let api = start_api(loopback(0), Duration::from_millis(100)).await;
        let addr = api.addr;
        let h = start_proxy(addr, "web", &[]).await;
        let id = eventually("registration", async || proxy_id(&h)).await;
        let good = web_config("c1", up, "api");
        api.registry.assign(&id, good.clone()).unwrap();
        eventually("the ACK", async || {
            api.registry.get(&id)?.converged().then_some(())
        })
        .await;

        api.kill().await;
        // The proxy notices, keeps serving, and keeps trying.
        eventually("the proxy to notice", async || {
            h.status().borrow().last_error.clone()
        })
        .await;
        for _ in 0..3 {
            assert_eq!(call_api_through(&h).await, Some((200, "up /hello".into())));
        }
        assert_eq!(admin_version(&h).await.unwrap(), "c1");

        let api = start_api(addr, Duration::from_millis(100)).await;
        assert!(
            api.registry.get(&id).is_none(),
            "a new reconciler knows no one"
        );
        let back = eventually("re-registration", async || api.registry.get(&id)).await;
        let running = back.running.unwrap();
        assert_eq!(running.digest, good.digest);
        assert_eq!(running.version, "c1");
        assert_eq!(api.registry.snapshot().len(), 1, "same id, not a new proxy");
        assert!(h.status().borrow().registrations >= 2);
        assert_eq!(call_api_through(&h).await, Some((200, "up /hello".into())));

        // And the new reconciler can drive it.
        let c2 = renamed_route(web_config("c2", up, "api"), "r2");
        assert!(api.registry.assign(&id, c2).unwrap());
        eventually("the proxy to run c2", async || {
            (admin_version(&h).await? == "c2").then_some(())
        })
        .await;

        h.shutdown().await;
        api.kill().await;
    })
    .await
    .expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_stops_heartbeating_expires() {
    timeout(TEST_LIMIT, async {
        let api = start_api(loopback(0), Duration::from_millis(50)).await;
        let stays = start_proxy(api.addr, "web", &[]).await;
        let leaves = start_proxy(api.addr, "web", &[]).await;
        let stays_id = eventually("registration", async || proxy_id(&stays)).await;
        let leaves_id = eventually("registration", async || proxy_id(&leaves)).await;
        eventually("both registered", async || {
            (api.registry.snapshot().len() == 2).then_some(())
        })
        .await;
        let mut changes = api.registry.changes();
        changes.mark_unchanged();

        leaves.shutdown().await;
        eventually("the silent proxy to expire", async || {
            api.registry.get(&leaves_id).is_none().then_some(())
        })
        .await;
        assert!(changes.has_changed().unwrap(), "expiry is announced");
        // Well past three intervals, the one that heartbeats is still there.
        sleep(Duration::from_millis(300)).await;
        let status = api.status().await;
        let ids: Vec<&str> = status["proxies"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["id"].as_str())
            .collect();
        assert_eq!(ids, [stays_id.as_str()]);

        stays.shutdown().await;
        api.kill().await;
    })
    .await
    .expect("test finished in time");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gitmesh_proxy(api: SocketAddr, state: &std::path::Path) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_gitmesh"))
        .args(["proxy", "--control-plane", &format!("http://{api}")])
        .args([
            "--service",
            "web",
            "--label",
            "version=v2",
            "--label",
            "zone=a",
        ])
        .args(["--address", "10.1.2.3:15006"])
        .args(["--outbound", "127.0.0.1:0", "--inbound", "127.0.0.1:0"])
        .args(["--admin", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gitmesh runs");
    Killed(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitmesh_proxy_under_a_control_plane_keeps_its_id_and_config_across_restarts() {
    timeout(TEST_LIMIT, async {
        let up = upstream().await;
        let state = tempfile::tempdir().unwrap();
        let api = start_api(loopback(0), Duration::from_millis(200)).await;

        let child = gitmesh_proxy(api.addr, state.path());
        let first = eventually("the child to register", async || {
            api.registry.snapshot().into_iter().next()
        })
        .await;
        assert_eq!(first.address, "10.1.2.3:15006");
        assert_eq!(first.labels["version"], "v2");
        assert_eq!(first.labels["zone"], "a");
        let good = web_config("c1", up, "api");
        api.registry.assign(&first.id, good.clone()).unwrap();
        eventually("the ACK", async || {
            api.registry.get(&first.id)?.converged().then_some(())
        })
        .await;
        drop(child);

        // A fresh reconciler and a restarted proxy: the proxy comes back
        // under its saved id, already running what it accepted before.
        api.kill().await;
        let api = start_api(loopback(0), Duration::from_millis(200)).await;
        let _child = gitmesh_proxy(api.addr, state.path());
        let again = eventually("the restarted child to register", async || {
            api.registry.snapshot().into_iter().next()
        })
        .await;
        assert_eq!(again.id, first.id);
        assert_eq!(again.running.unwrap().digest, good.digest);
        api.kill().await;
    })
    .await
    .expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_whose_digest_lies_is_nacked() {
    timeout(TEST_LIMIT, async {
        let up = upstream().await;
        let api = start_api(loopback(0), Duration::from_millis(200)).await;
        let h = start_proxy(api.addr, "web", &[]).await;
        let id = eventually("registration", async || proxy_id(&h)).await;
        let mut lie = web_config("c1", up, "api");
        lie.digest = "sha256:not-this-one".into();
        api.registry.assign(&id, lie).unwrap();
        let nack = eventually("the NACK", async || api.registry.get(&id)?.last_ack).await;
        assert!(!nack.ack.accepted);
        assert!(
            nack.ack.reason.unwrap().contains("is not the digest"),
            "the reason says why"
        );
        assert_eq!(admin_version(&h).await.unwrap(), "none");
        h.shutdown().await;
        api.kill().await;
    })
    .await
    .expect("test finished in time");
}

#[test]
fn control_plane_flags_are_checked() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gitmesh"))
            .arg("proxy")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--control-plane", "http://127.0.0.1:1"]);
    assert!(err.contains("--service"), "{err}");
    let err = run(&["--control-plane", "127.0.0.1:1", "--service", "web"]);
    assert!(err.contains("http://host:port"), "{err}");
    let err = run(&[
        "--control-plane",
        "http://127.0.0.1:1",
        "--service",
        "web",
        "--label",
        "v2",
    ]);
    assert!(err.contains("KEY=VALUE"), "{err}");
    let err = run(&[
        "--control-plane",
        "http://127.0.0.1:1",
        "--service",
        "web",
        "--config",
        "x.json",
    ]);
    assert!(err.contains("--config"), "{err}");
}
