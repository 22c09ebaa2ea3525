//! The two halves meet: `gitmesh compile` output runs in `gitmesh proxy`,
//! and requests flow through the real binary to a real upstream.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn compiled_config_routes_through_the_proxy_binary() {
    let v1 = upstream("reviews-v1");
    let details = upstream("details");
    // bookinfo, with instances: reviews v1 and details at the test upstreams.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("examples/bookinfo"), dir.path());
    let add = |file: &str, endpoints: String| {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(path, format!("{text}  endpoints:\n{endpoints}")).unwrap();
    };
    add(
        "services/reviews.yaml",
        format!("    - address: \"{v1}\"\n      labels: {{version: v1}}\n"),
    );
    add(
        "services/details.yaml",
        format!("    - address: \"{details}\"\n"),
    );

    let out = gitmesh(dir.path(), &["compile", ".", "--service", "productpage"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let config = dir.path().join("productpage.json");
    std::fs::write(&config, &out.stdout).unwrap();

    let (outbound, inbound, admin) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_gitmesh"))
        .args(["proxy", "--config", config.to_str().unwrap()])
        .args([
            "--outbound",
            &outbound.to_string(),
            "--inbound",
            &inbound.to_string(),
        ])
        .args(["--admin", &admin.to_string(), "--app", "127.0.0.1:9"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Killed(child);

    let deadline = Instant::now() + Duration::from_secs(20);
    while get(admin, "/ready", "admin").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "the proxy never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The route sends /reviews to v1 (the rollout has not started: v3 gets 0).
    assert_eq!(
        get(outbound, "http://reviews/reviews/1", "reviews"),
        Some((200, "reviews-v1 /reviews/1".to_string()))
    );
    // details has no route: every request goes to its instances.
    assert_eq!(
        get(outbound, "/details/7", "details:9080"),
        Some((200, "details /details/7".to_string()))
    );
    // ratings is not productpage's to call: its config does not include it.
    let (status, _) = get(outbound, "http://ratings/ratings/1", "ratings").unwrap();
    assert_eq!(status, 404);
    // The admin listener shows the running config's version.
    let (_, body) = get(admin, "/config", "admin").unwrap();
    assert!(body.contains("\"worktree\""), "{body}");
}

#[test]
fn check_reports_every_problem_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = gitmesh(
        &root(),
        &["compile", "examples/bookinfo", "--service", "productpage"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let good = dir.path().join("good.json");
    std::fs::write(&good, &out.stdout).unwrap();

    // The listeners' ports are taken: a check must not try to bind them.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let check = |config: &std::path::Path| {
        gitmesh(
            dir.path(),
            &[
                "proxy",
                "--check",
                "--config",
                config.to_str().unwrap(),
                "--outbound",
                &taken,
                "--admin",
                &taken,
            ],
        )
    };
    let out = check(&good);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("good.json: ok: config") && said.contains("service `productpage`"),
        "{said}"
    );

    // The data checks report every problem they find.
    let mut config: serde_json::Value = serde_json::from_slice(&out_bytes(&good)).unwrap();
    config["upstreams"][0]["endpoints"] =
        serde_json::json!([{"address": "not host:port"}, {"address": "nor:this:one"}]);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, config.to_string()).unwrap();
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 3, "{said}");
    assert!(
        lines.iter().all(|l| l.starts_with(bad.to_str().unwrap())),
        "{said}"
    );
    assert!(lines[0].contains("endpoints[0].address"), "{said}");
    assert!(lines[1].contains("endpoints[1].address"), "{said}");
    assert!(lines[2].ends_with("refused: 2 problems"), "{said}");

    // Valid data that only compiling refuses: a header value no HTTP
    // message can carry.
    config["upstreams"][0]["endpoints"] = serde_json::json!([]);
    config["upstreams"][0]["routes"] = serde_json::json!([{"name": "r", "rules": [{
        "filters": [{"type": "RequestHeaderModifier", "set": [{"name": "x-a", "value": "a\u{1}b"}]}],
        "backends": []
    }]}]);
    std::fs::write(&bad, config.to_string()).unwrap();
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains(".filters[0]: "), "{said}");
    assert!(said.ends_with("refused: 1 problem\n"), "{said}");
}

fn out_bytes(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
