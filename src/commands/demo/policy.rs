//! The demo's policy: the files of `examples/demo/` embedded in the binary,
//! and the temporary Git repo the story commits them to (through git2, so
//! no `git` command is needed).

use std::path::{Path, PathBuf};

use anyhow::Context;
use git2::{IndexAddOption, Repository, Signature};

/// The initial policy repo: (path in the repo, contents).
pub const INITIAL: &[(&str, &str)] = &[
    (
        "mesh.yaml",
        include_str!("../../../examples/demo/repo/mesh.yaml"),
    ),
    (
        "services.yaml",
        include_str!("../../../examples/demo/repo/services.yaml"),
    ),
    (
        "routes/api.yaml",
        include_str!("../../../examples/demo/repo/routes/api.yaml"),
    ),
];

pub const ROUTE_R2: &str = include_str!("../../../examples/demo/steps/1-route.yaml");
pub const ROLLOUT_V2: &str = include_str!("../../../examples/demo/steps/2-canary-v2.yaml");
pub const ROUTE_V2: &str = include_str!("../../../examples/demo/steps/3-route-v2.yaml");
pub const ROLLOUT_V3: &str = include_str!("../../../examples/demo/steps/3-canary-v3.yaml");

/// One commit of the story: files written, files removed, the message.
#[derive(Clone, Debug)]
pub struct Change {
    pub message: String,
    pub writes: Vec<(&'static str, &'static str)>,
    pub removes: Vec<&'static str>,
}

/// The demo's policy repo: a normal Git repo with a working tree, whose
/// `main` branch the reconciler watches.
pub struct PolicyRepo {
    path: PathBuf,
    repo: Repository,
    /// The id of the first commit.
    pub initial: String,
}

impl PolicyRepo {
    /// Creates the repo at `path` holding [`INITIAL`], committed once.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let repo = git2::Repository::init_opts(
            path,
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .with_context(|| format!("creating a Git repo in {}", path.display()))?;
        let mut this = PolicyRepo {
            path: path.to_path_buf(),
            repo,
            initial: String::new(),
        };
        this.initial = this.commit(&Change {
            message:
                "demo: web calls api, all traffic on v1\n\nThe initial policy of `gitmesh demo`.\n"
                    .into(),
            writes: INITIAL.to_vec(),
            removes: Vec::new(),
        })?;
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits `change` on top of the tip of `main` (which the reconciler
    /// may have moved) and returns the commit id.
    pub fn commit(&self, change: &Change) -> anyhow::Result<String> {
        let head = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        if head.is_some() {
            // Start from the tip, whoever committed it.
            self.repo
                .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
                .context("checking out main")?;
        }
        for (file, contents) in &change.writes {
            let target = self.path.join(file);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&target, contents)
                .with_context(|| format!("writing {}", target.display()))?;
        }
        for file in &change.removes {
            let _ = std::fs::remove_file(self.path.join(file));
        }
        let mut index = self.repo.index()?;
        index.add_all(["*"], IndexAddOption::DEFAULT, None)?;
        index.update_all(["*"], None)?;
        index.write()?;
        let tree = self.repo.find_tree(index.write_tree()?)?;
        let who = Signature::now("gitmesh demo", "demo@gitmesh.invalid")?;
        let parents: Vec<_> = head.iter().collect();
        let id = self
            .repo
            .commit(Some("HEAD"), &who, &who, &change.message, &tree, &parents)
            .context("committing the change")?;
        Ok(id.to_string())
    }

    /// `git log --oneline` of a branch, newest first (empty when missing).
    pub fn log(&self, branch: &str, limit: usize) -> Vec<String> {
        let Ok(reference) = self.repo.find_reference(&format!("refs/heads/{branch}")) else {
            return Vec::new();
        };
        let Some(tip) = reference.target() else {
            return Vec::new();
        };
        let Ok(mut walk) = self.repo.revwalk() else {
            return Vec::new();
        };
        if walk.push(tip).is_err() {
            return Vec::new();
        }
        walk.take(limit)
            .filter_map(|oid| {
                let commit = self.repo.find_commit(oid.ok()?).ok()?;
                let id = commit.id().to_string();
                let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
                Some(format!(
                    "{} {}",
                    &id[..7],
                    message.lines().next().unwrap_or("")
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitmesh_reconciler::source::SourceFile;

    /// Every state the story commits lints clean: the demo never shows a
    /// rejected commit by accident.
    #[test]
    fn every_state_of_the_story_lints_clean() {
        let mut files: Vec<(String, String)> = INITIAL
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect();
        let mut states = vec![files.clone()];
        for change in super::super::scenario::changes() {
            files.retain(|(p, _)| !change.removes.contains(&p.as_str()));
            for (path, contents) in &change.writes {
                files.retain(|(p, _)| p != path);
                files.push((path.to_string(), contents.to_string()));
            }
            states.push(files.clone());
        }
        assert_eq!(states.len(), 4);
        for (i, state) in states.iter().enumerate() {
            let sources: Vec<SourceFile> = state
                .iter()
                .map(|(p, c)| SourceFile::new(p.as_str(), c.as_str()))
                .collect();
            let result = gitmesh_reconciler::lint::lint(&sources);
            assert!(
                result.diagnostics.is_empty(),
                "state {i}: {:#?}",
                result.diagnostics
            );
        }
    }

    #[test]
    fn commits_land_on_main_and_log_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let repo = PolicyRepo::create(dir.path()).unwrap();
        let change = &super::super::scenario::changes()[1];
        let id = repo.commit(change).unwrap();
        let log = repo.log("main", 10);
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(log[0].starts_with(&id[..7]), "{log:?}");
        assert!(dir.path().join("rollouts/api-v2.yaml").exists());
    }
}
