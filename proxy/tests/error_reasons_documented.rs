//! Every reason the proxy counts in `gitmesh_errors_total` or sends in
//! `x-gitmesh-error` is listed in `docs/proxy-errors.md` (authorization's
//! in `docs/authorization.md`): that is where operators look a reason up.
//!
//! The reasons are found in the proxy's source (test modules left out) by
//! the shapes that produce them: a status and a reason
//! (`Failure::new(StatusCode::X, "…")`), a counted error
//! (`metrics.error(dir, "…")`, `respond::error(status, "…")`), a match arm
//! or a line holding only the literal (`TryOutcome::reason`, `classify`), a
//! `reason: "…"` field. A reason is a hyphenated lowercase word; other
//! such literals these shapes catch (the circuit breaker's limit names)
//! are on the page too.

use std::path::{Path, PathBuf};

use regex::Regex;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            // A test module in a file of its own.
            && !path.ends_with("tests.rs")
        {
            out.push(path);
        }
    }
}

#[test]
fn every_reason_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = ["docs/proxy-errors.md", "docs/authorization.md"]
        .map(|d| std::fs::read_to_string(root.join("..").join(d)).unwrap())
        .concat();
    const R: &str = r#""([a-z][a-z0-9]*(?:-[a-z0-9]+)+)""#;
    let shapes = [
        format!(r"StatusCode::[A-Z_]+,\s*{R}"),
        format!(r"error\(\s*[^,()]+,\s*{R}\s*\)"),
        format!(r"=>\s*{R}"),
        format!(r"(?m)^\s*{R},?\s*$"),
        format!(r"reason:\s*{R}"),
    ]
    .map(|p| Regex::new(&p).unwrap());
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let mut found = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for shape in &shapes {
            for c in shape.captures_iter(code) {
                found.insert(c[1].to_string());
            }
        }
    }
    // The shapes find the reasons of every kind of refusal; fewer means
    // they stopped matching the code.
    assert!(found.len() > 40, "{found:?}");
    let missing: Vec<_> = found
        .iter()
        .filter(|r| !docs.contains(&format!("`{r}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "reasons not in docs/proxy-errors.md: {missing:?}"
    );
}
