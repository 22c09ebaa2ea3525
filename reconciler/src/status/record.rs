//! Writes and reads the status branch with git2, from git objects only: no
//! working tree and no index is touched. Each commit's tree holds
//! [`STATE_FILE`], the reconciler's machine-readable state, so a restarted
//! reconciler resumes from the branch tip. Refs move by compare-and-swap, so
//! concurrent writers never lose a commit; pushes never force: on a
//! non-fast-forward our commits are re-created on top of the remote tip.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use git2::{
    Commit, ErrorCode, FetchOptions, ObjectType, Oid, PushOptions, RemoteCallbacks, Repository,
    Signature, Sort, Tree,
};
use serde::Serialize;

use super::event::{ParseError, StatusEvent};

/// The status branch when the Mesh names none.
pub const DEFAULT_BRANCH: &str = "gitmesh/status";
/// The file in each status commit's tree holding the reconciler's state.
pub const STATE_FILE: &str = "state.json";

/// How often a ref update is retried when another writer moved it first.
const CAS_ATTEMPTS: u32 = 16;
/// How often a push is retried after re-creating our commits on top.
const PUSH_ATTEMPTS: u32 = 8;

const FILE_MODE: i32 = 0o100_644;
const TREE_MODE: i32 = 0o040_000;

/// Who the reconciler's commits are authored by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    /// The user's Git identity (`user.name`, `user.email`) as the
    /// repository containing `path` sees it, if set.
    pub fn from_git_config(path: &Path) -> Option<Identity> {
        let sig = Repository::discover(path).ok()?.signature().ok()?;
        Some(Identity {
            name: sig.name().ok()?.to_string(),
            email: sig.email().ok()?.to_string(),
        })
    }
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            name: "gitmesh".into(),
            email: "gitmesh@localhost".into(),
        }
    }
}

/// A commit on a branch we wrote.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommitId(Oid);

impl CommitId {
    pub fn oid(self) -> Oid {
        self.0
    }

    /// The first 7 hex digits.
    pub fn short(self) -> String {
        self.0.to_string()[..7].to_string()
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommitId({})", self.0)
    }
}

impl FromStr for CommitId {
    type Err = git2::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Oid::from_str(s).map(CommitId)
    }
}

impl From<Oid> for CommitId {
    fn from(oid: Oid) -> Self {
        CommitId(oid)
    }
}

impl Serialize for CommitId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// One commit of the status branch, as `gitmesh history` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub commit: CommitId,
    /// Commit time, seconds since the Unix epoch.
    pub time: i64,
    /// The committer's UTC offset in minutes.
    pub offset_minutes: i32,
    /// `Name <email>`.
    pub author: String,
    pub summary: String,
    /// `None` for a commit that is not a gitmesh status commit.
    pub event: Option<StatusEvent>,
}

/// What [`StatusLog::write_desired`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteBack {
    Committed(CommitId),
    /// The branch already had these contents at the path: no commit made.
    Unchanged(CommitId),
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushReport {
    /// The commit the remote ref now points at.
    pub tip: CommitId,
    /// Commits re-created on top of a newer remote tip.
    pub replayed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot open repository {path}: {source}")]
    Open { path: String, source: git2::Error },
    #[error("`{0}` is not a valid branch name")]
    BadBranch(String),
    #[error("branch `{0}` does not exist")]
    NoSuchBranch(String),
    #[error("commit {commit} is not a gitmesh status commit: {source}")]
    NotOurs { commit: String, source: ParseError },
    #[error("commit {commit} has no readable {STATE_FILE}: {reason}")]
    BadState { commit: String, reason: String },
    #[error("`{0}` is not a file path inside the repository")]
    BadPath(String),
    #[error("state cannot be written as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "{ref_name} kept moving or stayed locked by another writer: gave up after {attempts} attempts"
    )]
    Contended { ref_name: String, attempts: u32 },
    #[error("refspec `{0}` is not `<local ref>:<remote ref>` (a forced `+` refspec is refused)")]
    BadRefspec(String),
    #[error("push to {remote} refused: {reason}")]
    PushRefused { remote: String, reason: String },
    #[error("{path} was changed on {branch} by someone else too; not overwriting their change")]
    Conflict { branch: String, path: String },
    #[error(transparent)]
    Git(#[from] git2::Error),
}

pub type Result<T, E = RecordError> = std::result::Result<T, E>;

/// The status branch of one repository.
#[derive(Clone, Debug)]
pub struct StatusLog {
    git_dir: PathBuf,
    branch: String,
    identity: Identity,
}

impl StatusLog {
    /// Opens the repository containing `repo_path` (bare or not). The branch
    /// need not exist yet: the first [`record`](Self::record) creates it as
    /// an orphan.
    pub fn open(repo_path: &Path, branch: &str, identity: Identity) -> Result<Self> {
        let repo = Repository::discover(repo_path).map_err(|source| RecordError::Open {
            path: repo_path.display().to_string(),
            source,
        })?;
        let ref_name = branch_ref(branch)?;
        debug_assert!(ref_name.starts_with("refs/heads/"));
        Ok(StatusLog {
            git_dir: repo.path().to_path_buf(),
            branch: branch.to_string(),
            identity,
        })
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// `refs/heads/<branch>`.
    pub fn ref_name(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    /// The repository's git directory.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    fn repo(&self) -> Result<Repository> {
        Repository::open(&self.git_dir).map_err(|source| RecordError::Open {
            path: self.git_dir.display().to_string(),
            source,
        })
    }

    /// Commits `event` with `state` (as pretty JSON in [`STATE_FILE`]) on
    /// top of the branch tip.
    pub fn record(&self, event: &StatusEvent, state: &serde_json::Value) -> Result<CommitId> {
        let repo = self.repo()?;
        let mut json = serde_json::to_string_pretty(state)?;
        json.push('\n');
        let blob = repo.blob(json.as_bytes())?;
        let message = event.to_message();
        let tree = {
            let mut builder = repo.treebuilder(None)?;
            builder.insert(STATE_FILE, blob, FILE_MODE)?;
            builder.write()?
        };
        let id = commit_cas(
            &repo,
            &self.ref_name(),
            &self.identity,
            &message,
            true,
            |_| Ok(Some(tree)),
        )?;
        Ok(id.expect("record always commits"))
    }

    /// The tip's event and state, or `None` before the first record.
    pub fn latest(&self) -> Result<Option<(CommitId, StatusEvent, serde_json::Value)>> {
        let repo = self.repo()?;
        let Some(tip) = tip(&repo, &self.ref_name())? else {
            return Ok(None);
        };
        let commit = repo.find_commit(tip)?;
        let event = StatusEvent::from_message(&message_of(&commit)).map_err(|source| {
            RecordError::NotOurs {
                commit: tip.to_string(),
                source,
            }
        })?;
        let state = read_state(&repo, &commit)?;
        Ok(Some((CommitId(tip), event, state)))
    }

    /// The last `limit` commits of the branch, newest first, following
    /// first parents.
    pub fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>> {
        let repo = self.repo()?;
        let Some(tip) = tip(&repo, &self.ref_name())? else {
            return Ok(Vec::new());
        };
        let mut walk = repo.revwalk()?;
        walk.push(tip)?;
        walk.simplify_first_parent()?;
        walk.set_sorting(Sort::TOPOLOGICAL)?;
        let mut entries = Vec::new();
        for oid in walk.take(limit) {
            let commit = repo.find_commit(oid?)?;
            let message = message_of(&commit);
            let author = commit.author();
            entries.push(HistoryEntry {
                commit: CommitId(commit.id()),
                time: commit.time().seconds(),
                offset_minutes: commit.time().offset_minutes(),
                author: format!(
                    "{} <{}>",
                    String::from_utf8_lossy(author.name_bytes()),
                    String::from_utf8_lossy(author.email_bytes())
                ),
                summary: message.lines().next().unwrap_or("").to_string(),
                event: StatusEvent::from_message(&message).ok(),
            });
        }
        Ok(entries)
    }

    /// Commits `contents` at `path` on `branch` (the desired-state branch),
    /// keeping every other file. The branch must exist. Unchanged contents
    /// make no commit. A branch that is checked out in a working tree gets
    /// the commit too, and that working tree then shows the change as not
    /// yet checked out, as after a `git fetch` into the current branch.
    pub fn write_desired(
        &self,
        branch: &str,
        path: &str,
        contents: &[u8],
        message: &str,
    ) -> Result<WriteBack> {
        self.commit_desired(branch, path, None, contents, message)
    }

    /// Like [`write_desired`](Self::write_desired), but only over `old`:
    /// when the file on the branch tip is neither `old` nor already
    /// `contents`, someone else changed it, and that is a
    /// [`RecordError::Conflict`] (nothing is overwritten). The ref moves by
    /// compare-and-swap.
    pub fn replace_desired(
        &self,
        branch: &str,
        path: &str,
        old: &[u8],
        contents: &[u8],
        message: &str,
    ) -> Result<WriteBack> {
        let expected = Oid::hash_object(ObjectType::Blob, old)?;
        self.commit_desired(branch, path, Some(expected), contents, message)
    }

    /// Commits `contents` at `path` on `branch`; with `expected`, only over
    /// a file whose blob is `expected` (else a conflict).
    fn commit_desired(
        &self,
        branch: &str,
        path: &str,
        expected: Option<Oid>,
        contents: &[u8],
        message: &str,
    ) -> Result<WriteBack> {
        let repo = self.repo()?;
        let ref_name = branch_ref(branch)?;
        let parts = split_path(path)?;
        let blob = repo.blob(contents)?;
        let made = commit_cas(&repo, &ref_name, &self.identity, message, false, |parent| {
            let parent = parent.ok_or_else(|| RecordError::NoSuchBranch(branch.to_string()))?;
            let base = parent.tree()?;
            let mode = match (base.get_path(Path::new(path)), expected) {
                (Ok(entry), _) if entry.id() == blob => return Ok(None),
                (Ok(entry), Some(expected)) if entry.id() == expected => entry.filemode(),
                (_, Some(_)) => {
                    return Err(RecordError::Conflict {
                        branch: branch.to_string(),
                        path: path.to_string(),
                    });
                }
                (Ok(entry), None) if entry.kind() == Some(ObjectType::Blob) => entry.filemode(),
                (Ok(_), None) => return Err(RecordError::BadPath(path.to_string())),
                (Err(e), None) if e.code() == ErrorCode::NotFound => FILE_MODE,
                (Err(e), None) => return Err(e.into()),
            };
            set_path(&repo, Some(&base), &parts, Some((blob, mode))).map(Some)
        })?;
        match made {
            Some(id) => Ok(WriteBack::Committed(id)),
            None => Ok(WriteBack::Unchanged(CommitId(
                tip(&repo, &ref_name)?.ok_or_else(|| RecordError::NoSuchBranch(branch.into()))?,
            ))),
        }
    }

    /// Creates branch `new` at the tip of branch `from` (for a change to be
    /// merged by pull request). Refuses a `new` that exists.
    pub fn branch_off(&self, new: &str, from: &str) -> Result<CommitId> {
        let repo = self.repo()?;
        let at = tip(&repo, &branch_ref(from)?)?
            .ok_or_else(|| RecordError::NoSuchBranch(from.to_string()))?;
        move_ref(&repo, &branch_ref(new)?, at, None, "gitmesh: branch")?;
        Ok(CommitId(at))
    }

    /// Points the local branch `branch` at the commit `target` (a full ref
    /// name, e.g. a remote-tracking ref) whatever it pointed at before. For
    /// a mirror whose local branches are ours alone: the write-back is
    /// made on top of what the remote has, then pushed without force.
    pub fn reset_branch(&self, branch: &str, target: &str) -> Result<CommitId> {
        let repo = self.repo()?;
        let at =
            tip(&repo, target)?.ok_or_else(|| RecordError::NoSuchBranch(target.to_string()))?;
        repo.reference(&branch_ref(branch)?, at, true, "gitmesh: follow remote")?;
        Ok(CommitId(at))
    }

    /// Pushes `refspec` (`refs/heads/a:refs/heads/b`, or a branch name for
    /// both sides) to `remote` (a configured remote's name, a URL or a
    /// path). On a non-fast-forward: fetch the remote ref, re-create our
    /// commits on top of it, retry; never force. On the status branch our
    /// state wins where both sides changed a file; on any other branch that
    /// is a [`RecordError::Conflict`] and nothing is overwritten.
    pub fn push(&self, remote: &str, refspec: &str) -> Result<PushReport> {
        let (src, dst) = parse_refspec(refspec)?;
        let mut replayed = 0;
        for attempt in 0..PUSH_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt);
            }
            let repo = self.repo()?;
            let local = tip(&repo, &src)?.ok_or_else(|| RecordError::NoSuchBranch(src.clone()))?;
            let mut rem = find_remote(&repo, remote)?;
            let pushed = match rem.url().ok().and_then(local_path) {
                Some(path) => push_local(&repo, &path, local, &dst),
                None => push_once(&mut rem, &src, &dst),
            };
            let refused = match pushed {
                Ok(()) => {
                    return Ok(PushReport {
                        tip: CommitId(local),
                        replayed,
                    });
                }
                Err(reason) => reason,
            };
            // Why was it refused? Only a remote ref we do not contain is
            // something we can fix.
            let Some(upstream) = fetch_one(&repo, &mut rem, &dst)? else {
                return Err(refused.into_error(remote));
            };
            if local == upstream || repo.graph_descendant_of(local, upstream)? {
                return Err(refused.into_error(remote));
            }
            // The status branch is ours alone: our state wins. Anything else
            // (the desired-state branch) belongs to people: never clobber.
            let ours_wins = src == self.ref_name() || dst == self.ref_name();
            let new_tip = replay(&repo, &self.identity, local, upstream, ours_wins, &dst)?;
            replayed += count_between(&repo, new_tip, upstream)?;
            // Move our ref only if nobody recorded meanwhile; if somebody
            // did, the next round replays their commit too.
            match repo.reference_matching(&src, new_tip, true, local, "gitmesh: rebase onto remote")
            {
                Ok(_) => {}
                Err(e) if retryable(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(RecordError::Contended {
            ref_name: dst,
            attempts: PUSH_ATTEMPTS,
        })
    }

    /// Brings the local status branch up to date with `remote`'s: fast-
    /// forwards when we have nothing of our own, re-creates our commits on
    /// top when both moved. Call it before [`latest`](Self::latest) when the
    /// source is a remote, so a reconciler with a fresh data dir resumes
    /// from what the remote records. Returns the new local tip, if any.
    pub fn pull(&self, remote: &str) -> Result<Option<CommitId>> {
        let ref_name = self.ref_name();
        for _ in 0..CAS_ATTEMPTS {
            let repo = self.repo()?;
            let mut rem = find_remote(&repo, remote)?;
            let local = tip(&repo, &ref_name)?;
            let Some(upstream) = fetch_one(&repo, &mut rem, &ref_name)? else {
                return Ok(local.map(CommitId));
            };
            let new_tip = match local {
                None => upstream,
                Some(l) if l == upstream || repo.graph_descendant_of(l, upstream)? => {
                    return Ok(Some(CommitId(l)));
                }
                Some(l) if repo.graph_descendant_of(upstream, l)? => upstream,
                Some(l) => replay(&repo, &self.identity, l, upstream, true, &ref_name)?,
            };
            match move_ref(&repo, &ref_name, new_tip, local, "gitmesh: pull") {
                Ok(_) => return Ok(Some(CommitId(new_tip))),
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RecordError::Contended {
            ref_name,
            attempts: CAS_ATTEMPTS,
        })
    }
}

/// Makes a commit on `ref_name` whose tree `make_tree` computes from the
/// current tip, and moves the ref by compare-and-swap, retrying when
/// another writer moved it first. `make_tree` returning `None` means
/// "nothing to commit". A missing ref is created only if `create`.
fn commit_cas(
    repo: &Repository,
    ref_name: &str,
    identity: &Identity,
    message: &str,
    create: bool,
    mut make_tree: impl FnMut(Option<&Commit<'_>>) -> Result<Option<Oid>>,
) -> Result<Option<CommitId>> {
    for attempt in 0..CAS_ATTEMPTS {
        let old = tip(repo, ref_name)?;
        let parent = old.map(|oid| repo.find_commit(oid)).transpose()?;
        if parent.is_none() && !create {
            return Err(RecordError::NoSuchBranch(
                ref_name.trim_start_matches("refs/heads/").to_string(),
            ));
        }
        let Some(tree) = make_tree(parent.as_ref())? else {
            return Ok(None);
        };
        let tree = repo.find_tree(tree)?;
        let sig = Signature::now(&identity.name, &identity.email)?;
        let parents: Vec<&Commit<'_>> = parent.iter().collect();
        let oid = repo.commit(None, &sig, &sig, message, &tree, &parents)?;
        let log = format!("gitmesh: {}", message.lines().next().unwrap_or(""));
        match move_ref(repo, ref_name, oid, old, &log) {
            Ok(_) => return Ok(Some(CommitId(oid))),
            Err(e) if retryable(&e) => backoff(attempt + 1),
            Err(e) => return Err(e.into()),
        }
    }
    Err(RecordError::Contended {
        ref_name: ref_name.to_string(),
        attempts: CAS_ATTEMPTS,
    })
}

/// Moves `ref_name` to `new` only if it still points at `old` (`None`:
/// only if it does not exist), checked under the ref's lock. For a create,
/// the zero id is the expected value: a plain non-forced create checks
/// existence before taking the lock, so two racing creators could both
/// succeed and one commit would be lost.
fn move_ref(
    repo: &Repository,
    ref_name: &str,
    new: Oid,
    old: Option<Oid>,
    log: &str,
) -> Result<(), git2::Error> {
    repo.reference_matching(ref_name, new, true, old.unwrap_or(Oid::ZERO_SHA1), log)
        .map(drop)
}

/// Whether a failed ref update lost a race (and may be retried).
fn retryable(e: &git2::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked
    )
}

/// Re-creates the first-parent commits of `local` that `upstream` lacks on
/// top of `upstream`, path by path. Where upstream changed a path that one
/// of ours changes too, ours wins if `ours_wins`, else it is a conflict.
fn replay(
    repo: &Repository,
    identity: &Identity,
    local: Oid,
    upstream: Oid,
    ours_wins: bool,
    branch: &str,
) -> Result<Oid> {
    let mut walk = repo.revwalk()?;
    walk.push(local)?;
    walk.hide(upstream)?;
    walk.simplify_first_parent()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
    let ours: Vec<Oid> = walk.collect::<Result<_, _>>()?;
    let mut base = repo.find_commit(upstream)?;
    for oid in ours {
        let commit = repo.find_commit(oid)?;
        let before = match commit.parent(0) {
            Ok(parent) => Some(parent.tree()?),
            Err(_) => None,
        };
        let after = commit.tree()?;
        let mut tree = base.tree()?;
        let diff = repo.diff_tree_to_tree(before.as_ref(), Some(&after), None)?;
        for delta in diff.deltas() {
            let file = delta.new_file();
            let old_file = delta.old_file();
            let path = file
                .path()
                .or(old_file.path())
                .and_then(Path::to_str)
                .ok_or_else(|| RecordError::BadPath("(not UTF-8)".into()))?
                .to_string();
            let theirs = entry_at(&tree, &path);
            let was = before.as_ref().and_then(|t| entry_at(t, &path));
            if !ours_wins && theirs != was {
                return Err(RecordError::Conflict {
                    branch: branch.trim_start_matches("refs/heads/").to_string(),
                    path,
                });
            }
            let new = if delta.status() == git2::Delta::Deleted {
                None
            } else {
                Some((file.id(), i32::from(file.mode())))
            };
            let oid = set_path(repo, Some(&tree), &split_path(&path)?, new)?;
            tree = repo.find_tree(oid)?;
        }
        if tree.id() == base.tree_id() {
            continue; // upstream already has exactly this
        }
        let sig = Signature::now(&identity.name, &identity.email)?;
        let new = repo.commit(
            None,
            &commit.author(),
            &sig,
            &message_of(&commit),
            &tree,
            &[&base],
        )?;
        base = repo.find_commit(new)?;
    }
    Ok(base.id())
}

fn count_between(repo: &Repository, tip: Oid, base: Oid) -> Result<usize> {
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    walk.hide(base)?;
    Ok(walk.count())
}

fn entry_at(tree: &Tree<'_>, path: &str) -> Option<(Oid, i32)> {
    tree.get_path(Path::new(path))
        .ok()
        .map(|e| (e.id(), e.filemode()))
}

/// A new tree: `base` with the blob at `parts` set (or removed for `None`).
fn set_path(
    repo: &Repository,
    base: Option<&Tree<'_>>,
    parts: &[&str],
    blob: Option<(Oid, i32)>,
) -> Result<Oid> {
    let mut builder = repo.treebuilder(base)?;
    let (name, rest) = parts.split_first().expect("a path has a part");
    if rest.is_empty() {
        match blob {
            Some((oid, mode)) => {
                builder.insert(name, oid, mode)?;
            }
            None => {
                if builder.get(name)?.is_some() {
                    builder.remove(name)?;
                }
            }
        }
    } else {
        let sub = match base.and_then(|t| t.get_name(name)) {
            Some(entry) if entry.kind() == Some(ObjectType::Tree) => {
                Some(repo.find_tree(entry.id())?)
            }
            Some(_) => return Err(RecordError::BadPath(parts.join("/"))),
            None => None,
        };
        let oid = set_path(repo, sub.as_ref(), rest, blob)?;
        if repo.find_tree(oid)?.is_empty() {
            if builder.get(name)?.is_some() {
                builder.remove(name)?;
            }
        } else {
            builder.insert(name, oid, TREE_MODE)?;
        }
    }
    Ok(builder.write()?)
}

fn split_path(path: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = path.split('/').collect();
    let bad = |p: &&str| p.is_empty() || *p == "." || *p == ".." || p.eq_ignore_ascii_case(".git");
    if parts.iter().any(bad) || path.contains('\0') {
        return Err(RecordError::BadPath(path.to_string()));
    }
    Ok(parts)
}

fn branch_ref(branch: &str) -> Result<String> {
    let name = if branch.starts_with("refs/heads/") {
        branch.to_string()
    } else {
        format!("refs/heads/{branch}")
    };
    if branch.is_empty() || !git2::Reference::is_valid_name(&name) {
        return Err(RecordError::BadBranch(branch.to_string()));
    }
    Ok(name)
}

fn parse_refspec(refspec: &str) -> Result<(String, String)> {
    if refspec.starts_with('+') {
        return Err(RecordError::BadRefspec(refspec.to_string()));
    }
    let (src, dst) = refspec.split_once(':').unwrap_or((refspec, refspec));
    let bad = || RecordError::BadRefspec(refspec.to_string());
    Ok((
        branch_ref(src).map_err(|_| bad())?,
        branch_ref(dst).map_err(|_| bad())?,
    ))
}

fn tip(repo: &Repository, ref_name: &str) -> Result<Option<Oid>> {
    match repo.refname_to_id(ref_name) {
        Ok(oid) => Ok(Some(oid)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn message_of(commit: &Commit<'_>) -> String {
    String::from_utf8_lossy(commit.message_bytes()).into_owned()
}

fn read_state(repo: &Repository, commit: &Commit<'_>) -> Result<serde_json::Value> {
    let bad = |reason: String| RecordError::BadState {
        commit: commit.id().to_string(),
        reason,
    };
    let entry = commit
        .tree()?
        .get_name(STATE_FILE)
        .ok_or_else(|| bad("missing".into()))?
        .id();
    let blob = repo.find_blob(entry)?;
    serde_json::from_slice(blob.content()).map_err(|e| bad(e.to_string()))
}

fn find_remote<'r>(repo: &'r Repository, remote: &str) -> Result<git2::Remote<'r>> {
    match repo.find_remote(remote) {
        Ok(r) => Ok(r),
        Err(_) => Ok(repo.remote_anonymous(remote)?),
    }
}

/// Fetches `dst` of the remote into a private tracking ref; `None` when the
/// remote has no such ref.
fn fetch_one(repo: &Repository, remote: &mut git2::Remote<'_>, dst: &str) -> Result<Option<Oid>> {
    let tracking = format!("refs/gitmesh/upstream/{}", dst.trim_start_matches("refs/"));
    // The tracking ref is ours alone, so forcing it is safe and needed when
    // the remote branch was rewritten.
    let fetched = remote.fetch(
        &[format!("+{dst}:{tracking}")],
        Some(&mut FetchOptions::new()),
        None,
    );
    match fetched {
        Ok(()) => {}
        // libgit2 refuses a refspec whose source the remote lacks.
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let advertised = remote.list()?.iter().any(|head| head.name() == dst);
    if !advertised {
        return Ok(None);
    }
    tip(repo, &tracking)
}

/// Why a push did not go through.
enum Refused {
    Git(git2::Error),
    Record(RecordError),
    Remote(String),
}

impl Refused {
    fn into_error(self, remote: &str) -> RecordError {
        match self {
            Refused::Git(e) => RecordError::PushRefused {
                remote: remote.to_string(),
                reason: e.message().to_string(),
            },
            Refused::Record(e) => e,
            Refused::Remote(reason) => RecordError::PushRefused {
                remote: remote.to_string(),
                reason,
            },
        }
    }
}

/// Sleeps a little longer each attempt, with jitter so that two writers
/// retrying in lockstep drift apart.
fn backoff(attempt: u32) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos() % 16));
    let ms = (u64::from(attempt) * 4).min(64) + jitter;
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// The path of a remote on this machine (`file://` URL or plain path);
/// `None` for a network URL (`git://`, `ssh://`, `host:path`, …).
fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    if url.contains("://") {
        return None;
    }
    // scp-like `host:path` has a colon before any slash.
    let colon = url.find(':');
    let slash = url.find('/');
    match (colon, slash) {
        (Some(c), Some(s)) if c < s => None,
        (Some(_), None) => None,
        _ => Some(PathBuf::from(url)),
    }
}

/// Pushes to a repository on this machine with a real compare-and-swap on
/// the remote ref. (libgit2's local transport overwrites the ref without
/// checking its old value, so two racing writers could lose a commit.)
/// Copies the objects the remote lacks, then moves the ref only from the
/// value we saw, and only forward.
fn push_local(repo: &Repository, path: &Path, local: Oid, dst: &str) -> Result<(), Refused> {
    let theirs = Repository::open_bare(path).map_err(Refused::Git)?;
    let old = tip(&theirs, dst).map_err(Refused::Record)?;
    if let Some(old) = old {
        let contains = old == local
            || (repo.odb().map_err(Refused::Git)?.exists(old)
                && repo.graph_descendant_of(local, old).map_err(Refused::Git)?);
        if !contains {
            return Err(Refused::Remote(format!("{dst}: non-fast-forward")));
        }
        if old == local {
            return Ok(());
        }
    }
    copy_objects(repo, &theirs, local, old).map_err(Refused::Git)?;
    let log = "gitmesh: push";
    match move_ref(&theirs, dst, local, old, log) {
        Ok(_) => Ok(()),
        Err(e) if retryable(&e) => Err(Refused::Remote(format!("{dst}: moved while pushing"))),
        Err(e) => Err(Refused::Git(e)),
    }
}

/// Copies into `to` every object reachable from `tip` and missing there,
/// walking commits down to `known` (which `to` already has). Every object
/// is in place before the ref moves.
fn copy_objects(
    from: &Repository,
    to: &Repository,
    tip: Oid,
    known: Option<Oid>,
) -> Result<(), git2::Error> {
    let src = from.odb()?;
    let dst = to.odb()?;
    let mut walk = from.revwalk()?;
    walk.push(tip)?;
    if let Some(known) = known {
        walk.hide(known)?;
    }
    let mut pending: Vec<Oid> = Vec::new();
    for commit in walk {
        let commit = from.find_commit(commit?)?;
        pending.push(commit.id());
        pending.push(commit.tree_id());
    }
    while let Some(oid) = pending.pop() {
        if dst.exists(oid) {
            continue; // a present tree brings all it holds
        }
        let object = src.read(oid)?;
        if object.kind() == ObjectType::Tree {
            let tree = from.find_tree(oid)?;
            pending.extend(
                tree.iter()
                    .filter(|e| e.kind() != Some(ObjectType::Commit))
                    .map(|e| e.id()),
            );
        }
        dst.write(object.kind(), object.data())?;
    }
    Ok(())
}

fn push_once(remote: &mut git2::Remote<'_>, src: &str, dst: &str) -> Result<(), Refused> {
    let status: RefCell<Option<String>> = RefCell::new(None);
    let mut callbacks = RemoteCallbacks::new();
    callbacks.push_update_reference(|name, refused| {
        if let Some(why) = refused {
            *status.borrow_mut() = Some(format!("{name}: {why}"));
        }
        Ok(())
    });
    let mut opts = PushOptions::new();
    opts.remote_callbacks(callbacks);
    let result = remote.push(&[format!("{src}:{dst}")], Some(&mut opts));
    drop(opts);
    match (result, status.into_inner()) {
        (Err(e), _) => Err(Refused::Git(e)),
        (Ok(()), Some(why)) => Err(Refused::Remote(why)),
        (Ok(()), None) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
