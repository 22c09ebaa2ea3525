//! `gitmesh demo --json` end to end: the whole story runs headless, and
//! the test checks who got which share of the traffic in each state, what
//! Git recorded (commits and trailers), that it ends in time, that nothing
//! it started is left running, and that Ctrl-C (SIGINT) stops everything.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// One demo at a time: each runs ten processes.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The demo's own limit is two minutes; a debug build on a loaded
/// machine gets a little more before the test gives up.
const LIMIT: Duration = Duration::from_secs(170);

struct Demo {
    child: Child,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(dir: &Path) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitmesh"))
        .args(["demo", "--json", "--dir", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, events) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let event: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    Demo {
        child,
        events,
        seen: Vec::new(),
    }
}

impl Demo {
    /// Events until one of kind `kind` (inclusive), or panics at `deadline`.
    fn until(&mut self, kind: &str, deadline: Instant) -> Value {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if event["event"] == kind {
                        return event;
                    }
                    assert!(
                        event["event"] != "failed",
                        "the demo failed: {event}\nevents so far: {:#?}",
                        self.seen
                    );
                }
                Err(_) => panic!("no `{kind}` event in time; events so far: {:#?}", self.seen),
            }
        }
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the demo did not exit in time");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Every pid is gone (reaped or never a zombie of ours) within 5 s.
fn assert_all_gone(pids: &[Value]) {
    assert!(pids.len() >= 10, "expected the whole mesh, got {pids:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in pids {
        let proc = format!("/proc/{}", pid.as_u64().unwrap());
        while Path::new(&proc).exists() {
            assert!(Instant::now() < deadline, "{proc} is still running");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `step` events (one per state, with the traffic measured while it
/// held) whose recorded status event matches `pred`.
fn steps(events: &[Value], pred: impl Fn(&Value) -> bool) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"] == "step" && pred(&e["recorded"]))
        .collect()
}

fn share(step: &Value, version: &str) -> f64 {
    step["traffic"]["versions"][version]["sharePct"]
        .as_f64()
        .unwrap_or(0.0)
}

fn route_share(caller: &Value, route: &str) -> f64 {
    caller["routeSharePct"][route].as_f64().unwrap_or(0.0)
}

fn canary<'a>(events: &'a [Value], rollout: &str, to_weight: u64, decision: &str) -> &'a Value {
    let found = steps(events, |r| {
        r["event"] == "canary"
            && r["rollout"] == rollout
            && r["to_weight"] == to_weight
            && r["decision"] == decision
    });
    assert_eq!(
        found.len(),
        1,
        "{rollout} → {to_weight}% ({decision}) in {events:#?}"
    );
    found[0]
}

#[test]
fn the_demo_tells_its_story_and_git_records_it() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let began = Instant::now();
    let mut demo = start_demo(dir.path());
    let started = demo.until("started", began + LIMIT);
    let done = demo.until("done", began + LIMIT);
    let status = demo.wait(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let wall = done["wallSeconds"].as_f64().unwrap();
    assert!(wall < 120.0, "the story took {wall}s");
    assert_all_gone(started["pids"].as_array().unwrap());
    let events = demo.seen.clone();

    // 1. Waves. A wave is recorded once it has ACKed and stayed healthy
    // for the commit's 4s: from the commit until "wave 1/2" is recorded,
    // one caller runs route r2 and the two others still r1; from then on
    // (wave 2 is being checked), all three run r2.
    let waves: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "step" && e["phase"] == "waves")
        .collect();
    let first = waves
        .iter()
        .position(|e| e["status"].as_str().unwrap().starts_with("committed "))
        .expect("the route change's commit");
    assert_eq!(waves[first + 1]["recorded"]["event"], "wave", "{waves:#?}");
    assert_eq!(waves[first + 1]["recorded"]["wave"], 1, "{waves:#?}");
    let callers = waves[first]["traffic"]["callers"].as_array().unwrap();
    assert_eq!(callers.len(), 3);
    let on_r2: Vec<bool> = callers
        .iter()
        .map(|c| route_share(c, "r2") >= 90.0)
        .collect();
    assert_eq!(on_r2.iter().filter(|b| **b).count(), 1, "{callers:#?}");
    for caller in callers.iter().filter(|c| route_share(c, "r2") < 90.0) {
        assert!(route_share(caller, "r1") >= 70.0, "{callers:#?}");
    }
    for caller in waves[first + 1]["traffic"]["callers"].as_array().unwrap() {
        assert!(route_share(caller, "r2") >= 95.0, "{waves:#?}");
    }
    let applied = steps(&events, |r| r["event"] == "applied");
    let after = applied
        .iter()
        .rfind(|s| s["phase"] == "waves")
        .expect("the route change is applied");
    for caller in after["traffic"]["callers"].as_array().unwrap() {
        assert!(route_share(caller, "r2") >= 95.0, "{after:#}");
    }

    // 2. The healthy canary gets about the share each step gives it, and
    // all of it at the end; no errors.
    let at20 = canary(&events, "api-v2", 20, "promote");
    let at50 = canary(&events, "api-v2", 50, "promote");
    canary(&events, "api-v2", 100, "complete");
    // The write-back (and the reconciler applying it) follow "complete" at
    // once; the chapter's last state shows where the traffic settled.
    let at100 = *steps(&events, |_| true)
        .iter()
        .rfind(|s| s["phase"] == "canary")
        .expect("the canary chapter's last state");

    assert!((8.0..=32.0).contains(&share(at20, "v2")), "{at20:#}");
    assert!((35.0..=65.0).contains(&share(at50, "v2")), "{at50:#}");
    assert!(share(at100, "v2") >= 97.0, "{at100:#}");
    for step in [at20, at50, at100] {
        assert!(
            step["traffic"]["requests"].as_u64().unwrap() > 50,
            "{step:#}"
        );
        assert!(
            step["traffic"]["errorRatePct"].as_f64().unwrap() < 2.0,
            "{step:#}"
        );
    }

    // 3. The faulty canary: about 20% of traffic on v3, failing about 30%
    // of it; after the rollback, none on v3 and v2 answers everything.
    let faulty = canary(&events, "api-v3", 20, "promote");
    assert!((8.0..=32.0).contains(&share(faulty, "v3")), "{faulty:#}");
    let v3_errors = faulty["traffic"]["versions"]["v3"]["errorRatePct"]
        .as_f64()
        .unwrap();
    assert!((12.0..=50.0).contains(&v3_errors), "{faulty:#}");
    let back = canary(&events, "api-v3", 0, "rollback");
    assert!(share(back, "v3") <= 3.0, "{back:#}");
    assert!(share(back, "v2") >= 97.0, "{back:#}");

    // Git: the status branch holds every step with its trailers, and main
    // the four commits of the story plus the canary's write-back.
    let repo = dir.path().join("policy");
    let log = status_log(&repo);
    let desired = git(&repo, &["log", "--format=%H %s", "main"]);
    let desired: Vec<&str> = desired.lines().collect();
    assert_eq!(desired.len(), 5, "{desired:#?}");
    let route_commit = &desired
        .iter()
        .find(|l| l.contains(" api: route revision r2"))
        .expect("the route change on main")[..7];
    assert!(
        log.iter()
            .any(|s| s.starts_with("api: final weights written back to main")),
        "{log:#?}"
    );
    for summary in [
        format!("wave 1/2 of {route_commit}: 1 proxy, 1 service"),
        format!("wave 2/2 of {route_commit}: "),
        "api: canary v2 0% → 20%".to_string(),
        "api: canary v2 20% → 50% (promoted)".to_string(),
        "api: canary v2 50% → 100% (promoted)".to_string(),
        "api: canary v2 100% → 100% (complete)".to_string(),
        "api: canary v3 20% → 0% (rolled back)".to_string(),
    ] {
        assert!(
            log.iter().any(|s| s.starts_with(&summary)),
            "no `{summary}` in {log:#?}"
        );
    }
    assert!(
        !log.iter()
            .any(|s| s.starts_with("api: canary v3 20% → 50%")),
        "{log:#?}"
    );
    let rollback = git(
        &repo,
        &[
            "log",
            "-1",
            "--format=%B",
            "--grep",
            "rolled back",
            "gitmesh/status",
        ],
    );
    assert!(
        rollback.contains("Gitmesh-Decision: rollback"),
        "{rollback}"
    );
    assert!(
        rollback.contains("Gitmesh-Canary: v3 requests="),
        "{rollback}"
    );
    let wave = git(
        &repo,
        &[
            "log",
            "-1",
            "--format=%B",
            "--grep",
            "wave 1/2",
            "gitmesh/status",
        ],
    );
    assert!(wave.contains("Gitmesh-Event: wave"), "{wave}");
    let route_message = git(&repo, &["log", "-1", "--format=%B", route_commit]);
    assert!(
        route_message.contains("Gitmesh-Waves: 1, 100%"),
        "{route_message}"
    );
    // The demo's own report of the logs matches Git.
    assert_eq!(done["desiredLog"].as_array().unwrap().len(), 5, "{done:#}");
    assert!(done["statusLog"].as_array().unwrap().len() >= 7, "{done:#}");
}

#[test]
fn ctrl_c_stops_everything() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let began = Instant::now();
    let mut demo = start_demo(dir.path());
    let started = demo.until("started", began + LIMIT);
    // Everything is up and the story has begun.
    demo.until("phase", began + LIMIT);
    let pid = rustix::process::Pid::from_raw(demo.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = demo.wait(Duration::from_secs(15));
    assert_eq!(status.code(), Some(130), "{status:?}");
    demo.until("interrupted", Instant::now() + Duration::from_secs(5));
    assert_all_gone(started["pids"].as_array().unwrap());
}
