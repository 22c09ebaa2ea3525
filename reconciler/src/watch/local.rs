//! Watches a branch of a repository on this machine: file-system events on
//! the ref files (`refs/heads/<branch>`, `packed-refs`, `HEAD`), never the
//! working tree, debounced, then the tip resolved with git2. A slow poll
//! catches what events miss (network file systems, overflowed queues).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::{Tip, WatchError, branch_ref, read_tip};

#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// How long to wait after an event for the rest of a burst (a commit
    /// writes the ref lock, renames it, appends the reflog…).
    pub debounce: Duration,
    /// Re-read the tip this often even without events.
    pub poll: Duration,
    /// Use file-system events; without them only the poll finds commits.
    pub events: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            debounce: Duration::from_millis(50),
            poll: Duration::from_secs(5),
            events: true,
        }
    }
}

/// A running watch; dropping it stops the watch.
pub struct LocalWatch {
    rx: watch::Receiver<Tip>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl LocalWatch {
    /// A receiver of the tip; `changed()` fires on each new one.
    pub fn subscribe(&self) -> watch::Receiver<Tip> {
        self.rx.clone()
    }

    pub fn tip(&self) -> Tip {
        self.rx.borrow().clone()
    }

    /// Re-read the tip now.
    pub fn trigger(&self) {
        self.wake.notify_one();
    }
}

impl Drop for LocalWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `branch` of the repository containing `path`. Must be
/// called within a Tokio runtime. The first tip is read before returning.
pub fn watch_local(
    path: &Path,
    branch: &str,
    opts: LocalOptions,
) -> Result<LocalWatch, WatchError> {
    let ref_name = branch_ref(branch)?;
    let repo = git2::Repository::discover(path).map_err(|source| WatchError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let git_dir = repo.path().to_path_buf();
    let common_dir = repo.commondir().to_path_buf();
    drop(repo);

    let (events_tx, events_rx) = mpsc::unbounded_channel::<()>();
    let watcher = if opts.events {
        Some(start_notify(&git_dir, &common_dir, &ref_name, events_tx)?)
    } else {
        None
    };
    let (tx, rx) = watch::channel(read_tip(&git_dir, &ref_name));
    let wake = Arc::new(Notify::new());
    let task = tokio::spawn(run(
        git_dir,
        ref_name,
        opts,
        tx,
        events_rx,
        Arc::clone(&wake),
    ));
    Ok(LocalWatch {
        rx,
        wake,
        task,
        _watcher: watcher,
    })
}

fn start_notify(
    git_dir: &Path,
    common_dir: &Path,
    ref_name: &str,
    events: mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher, WatchError> {
    let dirs = [git_dir.to_path_buf(), common_dir.to_path_buf()];
    let filter_dirs = dirs.clone();
    let ref_name = ref_name.to_string();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match event {
            Ok(event) => event
                .paths
                .iter()
                .any(|p| filter_dirs.iter().any(|d| is_ref_change(d, &ref_name, p))),
            // An error (a dropped queue): look anyway.
            Err(_) => true,
        };
        if relevant {
            let _ = events.send(());
        }
    })
    .map_err(|source| WatchError::Notify {
        path: git_dir.to_path_buf(),
        source,
    })?;
    let mut watch = |path: &Path, mode| {
        watcher
            .watch(path, mode)
            .map_err(|source| WatchError::Notify {
                path: path.to_path_buf(),
                source,
            })
    };
    // HEAD and packed-refs sit directly in the git dir(s): not recursive,
    // so objects/, logs/ and the index stay out of it.
    watch(git_dir, RecursiveMode::NonRecursive)?;
    if common_dir != git_dir {
        watch(common_dir, RecursiveMode::NonRecursive)?;
    }
    let heads = common_dir.join("refs/heads");
    if heads.is_dir() {
        watch(&heads, RecursiveMode::Recursive)?;
    }
    Ok(watcher)
}

/// Whether a change of `path` can move `ref_name` of the repository whose
/// git dir is `git_dir`: the loose ref (or its lock, or a folder on its
/// way), `packed-refs`, or `HEAD`. Working-tree files never are.
pub fn is_ref_change(git_dir: &Path, ref_name: &str, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(git_dir) else {
        return false;
    };
    let rel = rel.to_string_lossy();
    if ["packed-refs", "packed-refs.lock", "HEAD", "HEAD.lock"].contains(&rel.as_ref()) {
        return true;
    }
    if !rel.starts_with("refs/heads/") {
        return false;
    }
    let lock = format!("{ref_name}.lock");
    rel == ref_name || rel == lock || ref_name.starts_with(&format!("{rel}/"))
}

async fn run(
    git_dir: PathBuf,
    ref_name: String,
    opts: LocalOptions,
    tx: watch::Sender<Tip>,
    mut events: mpsc::UnboundedReceiver<()>,
    wake: Arc<Notify>,
) {
    let mut poll = tokio::time::interval(opts.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await; // the first tick is immediate; the tip was just read
    let mut events_open = true;
    loop {
        tokio::select! {
            event = events.recv(), if events_open => match event {
                Some(()) => {
                    tokio::time::sleep(opts.debounce).await;
                    while events.try_recv().is_ok() {}
                }
                None => events_open = false,
            },
            _ = poll.tick() => {}
            () = wake.notified() => {}
        }
        let (dir, name) = (git_dir.clone(), ref_name.clone());
        let Ok(tip) = tokio::task::spawn_blocking(move || read_tip(&dir, &name)).await else {
            continue;
        };
        publish(&tx, tip);
    }
}

/// Sends `tip` if it differs from the last one.
pub(super) fn publish(tx: &watch::Sender<Tip>, tip: Tip) {
    tx.send_if_modified(|current| {
        if *current == tip {
            return false;
        }
        tracing::info!(?tip, "watched branch moved");
        *current = tip;
        true
    });
}

#[cfg(test)]
mod tests {
    use super::super::testing::{commit, expect_tip, git, repo_with_commit};
    use super::*;

    const SOON: Duration = Duration::from_secs(2);

    #[test]
    fn only_ref_files_count() {
        let g = Path::new("/r/.git");
        let r = "refs/heads/main";
        for yes in [
            "/r/.git/refs/heads/main",
            "/r/.git/refs/heads/main.lock",
            "/r/.git/packed-refs",
            "/r/.git/HEAD",
        ] {
            assert!(is_ref_change(g, r, Path::new(yes)), "{yes}");
        }
        for no in [
            "/r/a.yaml",
            "/r/.git/index",
            "/r/.git/ORIG_HEAD",
            "/r/.git/refs/heads/mainline",
            "/r/.git/refs/heads/other",
            "/r/.git/logs/refs/heads/main",
            "/r/.git/objects/ab/cdef",
            "/elsewhere/.git/HEAD",
        ] {
            assert!(!is_ref_change(g, r, Path::new(no)), "{no}");
        }
        // A folder on the way to a nested branch name.
        assert!(is_ref_change(
            g,
            "refs/heads/team/prod",
            Path::new("/r/.git/refs/heads/team")
        ));
        assert!(!is_ref_change(
            g,
            "refs/heads/team/prod",
            Path::new("/r/.git/refs/heads/tea")
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_is_seen_within_two_seconds() {
        let dir = repo_with_commit();
        let first = git(dir.path(), &["rev-parse", "HEAD"]);
        // A poll far away: only events can make it in time.
        let opts = LocalOptions {
            poll: Duration::from_secs(3600),
            ..LocalOptions::default()
        };
        let watch = watch_local(dir.path(), "main", opts).unwrap();
        assert_eq!(watch.tip(), Tip::Commit(first));
        let mut rx = watch.subscribe();
        for n in 0..3 {
            let sha = commit(dir.path(), &format!("change {n}"));
            expect_tip(&mut rx, Tip::Commit(sha), SOON).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_branches_and_packed_refs() {
        let dir = repo_with_commit();
        let main = git(dir.path(), &["rev-parse", "HEAD"]);
        let opts = LocalOptions {
            poll: Duration::from_secs(3600),
            ..LocalOptions::default()
        };
        let watch = watch_local(dir.path(), "team/prod", opts).unwrap();
        let mut rx = watch.subscribe();
        assert_eq!(watch.tip(), Tip::Missing);
        // The branch appears in a new folder.
        git(dir.path(), &["branch", "team/prod"]);
        expect_tip(&mut rx, Tip::Commit(main.clone()), SOON).await;
        // Moved by a packed-refs rewrite only (as a fetch or gc may do).
        let next = commit(dir.path(), "on main");
        git(dir.path(), &["pack-refs", "--all", "--prune"]);
        let packed = std::fs::read_to_string(dir.path().join(".git/packed-refs")).unwrap();
        let moved = packed.replace(
            &format!("{main} refs/heads/team/prod"),
            &format!("{next} refs/heads/team/prod"),
        );
        assert_ne!(packed, moved);
        std::fs::write(dir.path().join(".git/packed-refs"), moved).unwrap();
        expect_tip(&mut rx, Tip::Commit(next), SOON).await;
        // Deleted.
        git(dir.path(), &["branch", "-D", "team/prod"]);
        expect_tip(&mut rx, Tip::Missing, SOON).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_poll_finds_what_events_miss() {
        let dir = repo_with_commit();
        let opts = LocalOptions {
            poll: Duration::from_millis(100),
            events: false,
            ..LocalOptions::default()
        };
        let watch = watch_local(dir.path(), "main", opts).unwrap();
        let mut rx = watch.subscribe();
        let sha = commit(dir.path(), "two");
        expect_tip(&mut rx, Tip::Commit(sha), SOON).await;
    }

    #[tokio::test]
    async fn bad_input_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = watch_local(dir.path(), "main", LocalOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, WatchError::Open { .. }), "{err}");
        let repo = repo_with_commit();
        let err = watch_local(repo.path(), "bad..name", LocalOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, WatchError::BadBranch(_)), "{err}");
    }
}
