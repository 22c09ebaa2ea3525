//! One module per subcommand: parse arguments, call the library, print.

pub mod ca;
pub mod compile;
pub mod demo;
pub mod demo_app;
pub mod explain;
pub mod history;
pub mod lint;
pub mod plan;
pub mod proxy;
pub mod reconcile;
pub mod rollout;
pub mod schema;
pub mod status;

use std::path::Path;

use anyhow::Context;
use gitmesh_reconciler::source::{self, SourceFile};

/// Reads a policy repo from a directory, or from a Git revision of the repo
/// containing `path` when `rev` is given. Returns the files and a label for
/// the version (the commit id, or `worktree`).
pub fn read_repo(path: &Path, rev: Option<&str>) -> anyhow::Result<(Vec<SourceFile>, String)> {
    match rev {
        Some(rev) => {
            let (files, resolved) = source::read_rev(path, rev)?;
            Ok((files, resolved.commit))
        }
        None => {
            let files = source::read_dir(path)
                .with_context(|| format!("reading the policy repo at {}", path.display()))?;
            Ok((files, "worktree".to_string()))
        }
    }
}

/// Logs to stderr: `RUST_LOG` filters (default `info`); JSON for log
/// collectors when asked.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
