//! Where policy files come from: a directory on disk or a Git revision read
//! straight from the object database (no checkout), and the YAML reader that
//! keeps every node's position.

mod files;
mod git;
pub mod positions;
pub mod yaml;

pub use self::files::read_dir;
pub use self::git::{ResolvedRev, read_rev, resolve_rev, worktree_root};

/// Files larger than this are reported, not read: a policy file is a few
/// kilobytes, and nothing should make lint hold a huge blob in memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// One file of a policy repo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the repo root, `/`-separated.
    pub path: String,
    pub content: Content,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// Larger than [`MAX_FILE_BYTES`]; holds the real size.
    TooLarge(u64),
}

impl SourceFile {
    pub fn new(path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        SourceFile {
            path: path.into(),
            content: Content::Bytes(bytes.into()),
        }
    }

    /// Whether the loader should parse this file as policy.
    pub fn is_yaml(&self) -> bool {
        self.path.ends_with(".yaml") || self.path.ends_with(".yml")
    }
}

/// Entries whose name starts with a dot (`.git`, `.github`, `.gitlab-ci.yml`)
/// are not part of the policy: CI config and tooling live there.
pub(crate) fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a directory")]
    NotADirectory { path: String },
    #[error("cannot open a git repository at {path}: {source}")]
    OpenRepo {
        path: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot resolve revision `{rev}`: {source}")]
    BadRevision {
        rev: String,
        #[source]
        source: git2::Error,
    },
    #[error("reading git objects: {0}")]
    Git(#[from] git2::Error),
}
