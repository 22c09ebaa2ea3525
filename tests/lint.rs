//! `gitmesh lint` end to end: the real binary on the example repos, every
//! output format, the exit codes, and `--rev` on a real Git repo.

mod common;

use common::*;
use gitmesh_reconciler::diagnostic::Code;

#[test]
fn bookinfo_is_clean() {
    let out = gitmesh(&root(), &["lint", "examples/bookinfo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("no problems in 11 files checked"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_policy_repo_template_is_clean_even_with_deny_warnings() {
    let out = gitmesh(
        &root(),
        &["lint", "policy-repo-template", "--deny-warnings"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// The broken example's output is fixed by a golden file. After an
/// intended change, rewrite it with `GITMESH_UPDATE_GOLDEN=1 cargo test`.
#[test]
fn broken_matches_its_golden_output() {
    let out = gitmesh(&root(), &["lint", "examples/broken", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1));
    let golden = root().join("tests/golden/broken.txt");
    if std::env::var_os("GITMESH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &out.stdout).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap();
    let got = stdout(&out);
    if got != expected {
        let diff = similar_lines(&expected, &got);
        panic!("lint output differs from tests/golden/broken.txt:\n{diff}");
    }
}

fn similar_lines(expected: &str, got: &str) -> String {
    let mut out = String::new();
    for (i, (a, b)) in expected.lines().zip(got.lines()).enumerate() {
        if a != b {
            out.push_str(&format!("line {}:\n- {a}\n+ {b}\n", i + 1));
        }
    }
    let (e, g) = (expected.lines().count(), got.lines().count());
    if e != g {
        out.push_str(&format!("expected {e} lines, got {g}\n"));
    }
    out
}

#[test]
fn broken_triggers_every_code() {
    let out = gitmesh(&root(), &["lint", "examples/broken", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let codes: std::collections::BTreeSet<String> = stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
            v["code"].as_str().unwrap().to_string()
        })
        .collect();
    for code in Code::ALL {
        assert!(
            codes.contains(code.as_str()),
            "examples/broken never triggers {code}"
        );
    }
}

#[test]
fn json_lines_carry_position_and_hint() {
    let out = gitmesh(&root(), &["lint", "examples/broken", "--format", "json"]);
    let unknown = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["code"] == "GM2002")
        .unwrap();
    assert_eq!(unknown["file"], "services.yaml");
    assert_eq!(unknown["line"], 39);
    assert_eq!(unknown["column"], 3);
    assert_eq!(unknown["severity"], "error");
    assert_eq!(unknown["hint"], "did you mean `protocol`?");
}

#[test]
fn sarif_github_and_junit_formats() {
    let sarif = gitmesh(&root(), &["lint", "examples/broken", "--format", "sarif"]);
    assert_eq!(sarif.status.code(), Some(1));
    let log: serde_json::Value = serde_json::from_slice(&sarif.stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let results = log["runs"][0]["results"].as_array().unwrap();
    let json = gitmesh(&root(), &["lint", "examples/broken", "--format", "json"]);
    assert_eq!(
        results.len(),
        stdout(&json).lines().count(),
        "one result per diagnostic"
    );
    assert!(results.len() >= 25);

    let github = gitmesh(&root(), &["lint", "examples/broken", "--format", "github"]);
    assert_eq!(github.status.code(), Some(1));
    let text = stdout(&github);
    assert!(
        text.lines()
            .any(|l| l.starts_with("::error file=services.yaml,line=39,col=3,")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("::warning file=routes.yaml,"))
    );

    let junit = gitmesh(&root(), &["lint", "examples/broken", "--format", "junit"]);
    let xml = stdout(&junit);
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert_eq!(
        xml.matches("<testcase ").count(),
        13,
        "one test case per file"
    );
}

#[test]
fn exit_codes_are_the_same_in_every_format() {
    for format in ["human", "json", "sarif", "github", "junit"] {
        let clean = gitmesh(&root(), &["lint", "examples/bookinfo", "--format", format]);
        assert_eq!(clean.status.code(), Some(0), "{format}");
        let broken = gitmesh(&root(), &["lint", "examples/broken", "--format", format]);
        assert_eq!(broken.status.code(), Some(1), "{format}");
        let missing = gitmesh(&root(), &["lint", "no/such/dir", "--format", format]);
        assert_eq!(missing.status.code(), Some(2), "{format}");
        assert!(
            stderr(&missing).contains("no/such/dir"),
            "{}",
            stderr(&missing)
        );
    }
    let usage = gitmesh(&root(), &["lint", "--format", "xml"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn warnings_pass_unless_denied() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("examples/bookinfo"), dir.path());
    // ratings' intentions deny everyone but reviews: make details call it.
    let details = dir.path().join("services/details.yaml");
    let text = std::fs::read_to_string(&details).unwrap();
    std::fs::write(
        &details,
        text.replace("port: 9080", "port: 9080\n  upstreams: [ratings]"),
    )
    .unwrap();
    let out = gitmesh(dir.path(), &["lint", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("warning[GM3014]"), "{}", stdout(&out));
    let denied = gitmesh(dir.path(), &["lint", ".", "--deny-warnings"]);
    assert_eq!(denied.status.code(), Some(1));
}

#[test]
fn rev_reads_git_objects_not_the_working_tree() {
    let repo = repo_from_example("bookinfo");
    // Break the working tree without committing: `--rev HEAD` must not see it.
    std::fs::write(repo.path().join("services/oops.yaml"), "kind: [").unwrap();
    let head = gitmesh(repo.path(), &["lint", ".", "--rev", "HEAD"]);
    assert_eq!(head.status.code(), Some(0), "{}", stdout(&head));
    let worktree = gitmesh(repo.path(), &["lint", "."]);
    assert_eq!(worktree.status.code(), Some(1));
    // Commit the break: now the revision is broken, and the old one is not.
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "oops"]);
    assert_eq!(
        gitmesh(repo.path(), &["lint", "--rev", "HEAD"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        gitmesh(repo.path(), &["lint", "--rev", "HEAD~1"])
            .status
            .code(),
        Some(0)
    );
    let bad = gitmesh(repo.path(), &["lint", "--rev", "no-such-branch"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("cannot resolve revision `no-such-branch`"));
}

#[test]
fn schema_command_prints_every_kind() {
    for kind in [
        "Mesh",
        "service",
        "HTTPRoute",
        "rollout",
        "Intentions",
        "ProxyConfig",
    ] {
        let out = gitmesh(&root(), &["schema", kind]);
        assert_eq!(out.status.code(), Some(0), "{kind}");
        let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            schema["$schema"].as_str().unwrap().contains("2020-12"),
            "{kind}"
        );
    }
    assert_eq!(gitmesh(&root(), &["schema", "Nope"]).status.code(), Some(2));
}
