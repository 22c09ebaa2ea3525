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
