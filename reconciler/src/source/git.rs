//! Reads a policy repo at a Git revision straight from the object database:
//! no checkout, no working tree touched, so `lint --rev` and the reconciler
//! see exactly what was committed.

use std::path::Path;

use git2::{ObjectType, Repository, TreeWalkMode, TreeWalkResult};

use super::{Content, MAX_FILE_BYTES, SourceError, SourceFile, is_hidden};

/// A revision resolved to its commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRev {
    pub commit: String,
    pub summary: String,
    /// The whole commit message (trailers may carry rollout overrides).
    pub message: String,
}

/// Resolves `rev` (a branch, tag, `HEAD~1`, a sha) in the repo containing
/// `path`.
pub fn resolve_rev(path: &Path, rev: &str) -> Result<ResolvedRev, SourceError> {
    let repo = open(path)?;
    let commit = peel(&repo, rev)?;
    Ok(ResolvedRev {
        commit: commit.id().to_string(),
        summary: commit.summary().ok().flatten().unwrap_or("").to_string(),
        message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
    })
}

/// Every file of the commit `rev` outside dot-folders, sorted by path, and
/// the resolved commit.
pub fn read_rev(path: &Path, rev: &str) -> Result<(Vec<SourceFile>, ResolvedRev), SourceError> {
    let repo = open(path)?;
    let commit = peel(&repo, rev)?;
    let tree = commit.tree()?;
    let mut entries = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let name = entry.name().unwrap_or("");
        if is_hidden(name) {
            return TreeWalkResult::Skip;
        }
        if entry.kind() == Some(ObjectType::Blob) {
            entries.push((format!("{dir}{name}"), entry.id()));
        }
        TreeWalkResult::Ok
    })?;
    let mut files = Vec::with_capacity(entries.len());
    for (path, id) in entries {
        let blob = repo.find_blob(id)?;
        let len = blob.size() as u64;
        let content = if len > MAX_FILE_BYTES {
            Content::TooLarge(len)
        } else {
            Content::Bytes(blob.content().to_vec())
        };
        files.push(SourceFile { path, content });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let resolved = ResolvedRev {
        commit: commit.id().to_string(),
        summary: commit.summary().ok().flatten().unwrap_or("").to_string(),
        message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
    };
    Ok((files, resolved))
}

/// The top of the working tree of the repo containing `path`.
pub fn worktree_root(path: &Path) -> Result<std::path::PathBuf, SourceError> {
    let repo = open(path)?;
    repo.workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| SourceError::NotADirectory {
            path: format!("{} (a bare repository has no working tree)", path.display()),
        })
}

fn open(path: &Path) -> Result<Repository, SourceError> {
    Repository::discover(path).map_err(|source| SourceError::OpenRepo {
        path: path.display().to_string(),
        source,
    })
}

fn peel<'r>(repo: &'r Repository, rev: &str) -> Result<git2::Commit<'r>, SourceError> {
    repo.revparse_single(rev)
        .and_then(|object| object.peel_to_commit())
        .map_err(|source| SourceError::BadRevision {
            rev: rev.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Commits the given files (replacing the whole tree) with git2.
    fn commit_files(repo: &Repository, files: &[(&str, &str)], message: &str) {
        let workdir = repo.workdir().unwrap();
        let mut index = repo.index().unwrap();
        index.clear().unwrap();
        for (path, text) in files {
            let full = workdir.join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(&full, text).unwrap();
            index.add_path(Path::new(path)).unwrap();
        }
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("test", "test@example.invalid").unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<_> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap();
    }

    #[test]
    fn reads_a_revision_without_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        commit_files(
            &repo,
            &[("a.yaml", "v: 1"), (".github/x.yaml", "no")],
            "one",
        );
        commit_files(&repo, &[("a.yaml", "v: 2"), ("sub/b.yml", "w: 1")], "two");
        // The working tree is changed but not committed: --rev must ignore it.
        fs::write(dir.path().join("a.yaml"), "v: dirty").unwrap();

        let (files, rev) = read_rev(dir.path(), "HEAD~1").unwrap();
        assert_eq!(rev.summary, "one");
        assert_eq!(files, [SourceFile::new("a.yaml", "v: 1")]);

        let (files, _) = read_rev(dir.path(), "HEAD").unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.yaml", "sub/b.yml"]);
        assert_eq!(files[0].content, Content::Bytes(b"v: 2".to_vec()));
    }

    #[test]
    fn bad_revisions_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        commit_files(&repo, &[("a.yaml", "v: 1")], "one");
        let err = read_rev(dir.path(), "nope").unwrap_err();
        assert!(
            err.to_string().contains("cannot resolve revision `nope`"),
            "{err}"
        );
    }
}
