//! One module per subcommand: parse arguments, call the library, print.

pub mod compile;
pub mod lint;
pub mod plan;
pub mod proxy;
pub mod schema;

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
