//! `gitmesh plan` end to end on real Git repos: what changes, for which
//! proxies, which rollouts start, and the exit codes.

mod common;

use common::*;

fn edit(repo: &std::path::Path, file: &str, from: &str, to: &str) {
    let path = repo.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_route_change_is_planned_for_the_callers() {
    let repo = repo_from_example("bookinfo");
    edit(
        repo.path(),
        "routes/reviews.yaml",
        "value: tester",
        "value: qa",
    );
    git(repo.path(), &["commit", "-qam", "qa sees v2"]);

    let out = gitmesh(repo.path(), &["plan"]);
    assert_eq!(out.status.code(), Some(1), "changes → 1; {}", stderr(&out));
    let md = stdout(&out);
    assert!(
        md.contains("`~` HTTPRoute/reviews (routes/reviews.yaml)"),
        "{md}"
    );
    // Only productpage calls reviews: only its proxies change.
    assert!(md.contains("`~` **productpage**"), "{md}");
    assert!(
        !md.contains("**ratings**") && !md.contains("**details**"),
        "{md}"
    );

    let json = gitmesh(repo.path(), &["plan", "HEAD~1", "HEAD", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plan["proxies"][0]["service"], "productpage");
    assert_eq!(plan["proxies"][0]["change"], "changed");
    let field = &plan["proxies"][0]["fields"][0];
    assert_eq!(
        field["path"],
        "upstreams[reviews].routes[reviews].rules[0].matches[0].headers[x-user].value"
    );
    assert_eq!(
        (field["before"].as_str(), field["after"].as_str()),
        (Some("tester"), Some("qa"))
    );
}

/// The split between a Rollout's stable and canary subsets belongs to the
/// Rollout: editing those weights in the route changes no proxy, and the
/// plan and lint say why.
#[test]
fn weights_owned_by_a_rollout_change_nothing_and_say_so() {
    let repo = repo_from_example("bookinfo");
    edit(
        repo.path(),
        "routes/reviews.yaml",
        "weight: 100",
        "weight: 80",
    );
    edit(
        repo.path(),
        "routes/reviews.yaml",
        "weight: 0",
        "weight: 20",
    );
    git(repo.path(), &["commit", "-qam", "shift 20% to v3 by hand"]);
    let out = gitmesh(repo.path(), &["plan"]);
    assert_eq!(out.status.code(), Some(1));
    let md = stdout(&out);
    assert!(md.contains("0 service(s) get a new proxy config"), "{md}");
    assert!(md.contains("owned by Rollout `reviews-v3`"), "{md}");
    let lint = gitmesh(repo.path(), &["lint", "."]);
    assert!(
        stdout(&lint).contains("warning[GM3015]"),
        "{}",
        stdout(&lint)
    );
}

#[test]
fn no_change_exits_zero() {
    let repo = repo_from_example("bookinfo");
    git(
        repo.path(),
        &["commit", "-q", "--allow-empty", "-m", "nothing"],
    );
    let out = gitmesh(repo.path(), &["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("No changes"));
}

#[test]
fn first_commit_plans_against_an_empty_repo() {
    let repo = repo_from_example("bookinfo");
    let out = gitmesh(repo.path(), &["plan"]);
    assert_eq!(out.status.code(), Some(1));
    let md = stdout(&out);
    assert!(md.contains("`+` Service/reviews"), "{md}");
    assert!(
        md.contains("**reviews-v3** will start: reviews v1 → v3 in steps 5% → 25% → 50% → 100%"),
        "{md}"
    );
}

#[test]
fn worktree_compares_uncommitted_files_with_head() {
    let repo = repo_from_example("bookinfo");
    assert_eq!(
        gitmesh(repo.path(), &["plan", "--worktree"]).status.code(),
        Some(0)
    );
    edit(
        repo.path(),
        "services/details.yaml",
        "attempts: 2",
        "attempts: 3",
    );
    let out = gitmesh(repo.path(), &["plan", "--worktree"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("`upstreams[details].retries.attempts`: 2 → 3"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_broken_target_is_an_error_with_its_diagnostics() {
    let repo = repo_from_example("bookinfo");
    edit(
        repo.path(),
        "routes/reviews.yaml",
        "subset: v2",
        "subset: v9",
    );
    git(repo.path(), &["commit", "-qam", "typo"]);
    let out = gitmesh(repo.path(), &["plan"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("error[GM3003]: Service `reviews` has no subset `v9`"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("the reconciler would refuse it"));
}

#[test]
fn compile_prints_one_config_per_service() {
    let out = gitmesh(
        &root(),
        &["compile", "examples/bookinfo", "--service", "productpage"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let config = gitmesh_proxy_config::ProxyConfig::from_json(&out.stdout)
        .expect("compile's output is a valid proxy config");
    let names: Vec<_> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["details", "reviews"]);
    let missing = gitmesh(
        &root(),
        &["compile", "examples/bookinfo", "--service", "nope"],
    );
    assert_eq!(missing.status.code(), Some(2));
}
