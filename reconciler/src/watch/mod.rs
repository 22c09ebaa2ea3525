//! Where new desired-state commits come from: a local repository watched
//! for ref changes (`local`), a remote fetched into a bare clone on an
//! interval and on demand (`remote`), and the check of the webhook that
//! asks for such a fetch (`webhook`, pure). Each watcher publishes the
//! branch tip on a `tokio::sync::watch` channel: level-triggered, a slow
//! reader sees the latest tip, never a backlog.

mod local;
mod remote;
mod webhook;

pub use self::local::{LocalOptions, LocalWatch, is_ref_change, watch_local};
pub use self::remote::{REMOTE, RemoteOptions, RemoteWatch, mirror_dir, watch_remote};
pub use self::webhook::{
    GITHUB_SIGNATURE_HEADER, GITLAB_TOKEN_HEADER, Provider, WebhookError, secret_from_file,
    sign_github, verify, verify_github, verify_gitlab,
};

use std::path::{Path, PathBuf};

/// What is known of the watched branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tip {
    /// The branch points at this commit (full hex sha).
    Commit(String),
    /// The branch does not exist (not yet, or deleted).
    Missing,
    /// Nothing could be read yet: why.
    Unavailable(String),
}

impl Tip {
    pub fn commit(&self) -> Option<&str> {
        match self {
            Tip::Commit(sha) => Some(sha),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot open repository {path}: {source}")]
    Open { path: PathBuf, source: git2::Error },
    #[error("`{0}` is not a valid branch name")]
    BadBranch(String),
    #[error("cannot watch {path}: {source}")]
    Notify {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("cannot use data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] git2::Error),
}

fn branch_ref(branch: &str) -> Result<String, WatchError> {
    let name = format!("refs/heads/{branch}");
    if branch.is_empty() || !git2::Reference::is_valid_name(&name) {
        return Err(WatchError::BadBranch(branch.to_string()));
    }
    Ok(name)
}

/// The tip of `ref_name` in the repository at `git_dir`.
fn read_tip(git_dir: &Path, ref_name: &str) -> Tip {
    let resolved =
        git2::Repository::open(git_dir).and_then(|repo| match repo.find_reference(ref_name) {
            Ok(r) => r.peel_to_commit().map(|c| Some(c.id().to_string())),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        });
    match resolved {
        Ok(Some(sha)) => Tip::Commit(sha),
        Ok(None) => Tip::Missing,
        Err(e) => Tip::Unavailable(e.message().to_string()),
    }
}

#[cfg(test)]
mod testing;
