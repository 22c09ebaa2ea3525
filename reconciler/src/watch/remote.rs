//! Watches a branch of a remote repository: a bare mirror under the data
//! dir, fetched every `poll` and at once on [`RemoteWatch::trigger`] (the
//! webhook). Fetches follow force-pushes and prune deleted branches; a
//! failed fetch keeps the last known tip and is reported by
//! [`RemoteWatch::last_error`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use git2::{FetchOptions, FetchPrune, Repository};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::local::publish;
use super::{Tip, WatchError, branch_ref, read_tip};

/// The remote's name in the mirror.
pub const REMOTE: &str = "origin";
const FETCH_REFSPEC: &str = "+refs/heads/*:refs/remotes/origin/*";

#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Fetch this often.
    pub poll: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            poll: Duration::from_secs(60),
        }
    }
}

/// A running watch; dropping it stops the fetches.
pub struct RemoteWatch {
    rx: watch::Receiver<Tip>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
    mirror: PathBuf,
    rev: String,
    last_error: Arc<Mutex<Option<String>>>,
}

impl RemoteWatch {
    pub fn subscribe(&self) -> watch::Receiver<Tip> {
        self.rx.clone()
    }

    pub fn tip(&self) -> Tip {
        self.rx.borrow().clone()
    }

    /// Fetch now (a webhook arrived). Triggers during a fetch coalesce
    /// into one more fetch.
    pub fn trigger(&self) {
        self.wake.notify_one();
    }

    /// The bare mirror: read revisions from it (`source::read_rev(path,
    /// rev())`), keep the status branch in it and push from it to
    /// [`REMOTE`].
    pub fn mirror(&self) -> &Path {
        &self.mirror
    }

    /// The watched branch's remote-tracking ref in the mirror,
    /// `refs/remotes/origin/<branch>`.
    pub fn rev(&self) -> &str {
        &self.rev
    }

    /// Why the last fetch failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("not poisoned").clone()
    }
}

impl Drop for RemoteWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the mirror of `url` lives under `data_dir`: one folder per URL.
pub fn mirror_dir(data_dir: &Path, url: &str) -> PathBuf {
    let hash = Sha256::digest(url.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    data_dir.join("sources").join(format!("{hex}.git"))
}

/// Opens (or creates) the mirror of `url`, fetches once, then keeps
/// fetching. An unreachable remote is not an error here: the tip says
/// `Unavailable` (or keeps what an earlier run fetched) and fetches go on.
pub async fn watch_remote(
    url: &str,
    branch: &str,
    data_dir: &Path,
    opts: RemoteOptions,
) -> Result<RemoteWatch, WatchError> {
    let branch_ref = branch_ref(branch)?;
    let rev = format!("refs/remotes/{REMOTE}/{branch}");
    debug_assert!(branch_ref.ends_with(branch));
    let mirror = mirror_dir(data_dir, url);
    {
        let (mirror, url) = (mirror.clone(), url.to_string());
        tokio::task::spawn_blocking(move || open_mirror(&mirror, &url))
            .await
            .expect("open_mirror does not panic")?;
    }
    let last_error = Arc::new(Mutex::new(None));
    let first = fetch_tip(&mirror, &rev, &last_error).await;
    let (tx, rx) = watch::channel(first);
    let wake = Arc::new(Notify::new());
    let task = tokio::spawn(run(
        mirror.clone(),
        rev.clone(),
        opts,
        tx,
        Arc::clone(&wake),
        Arc::clone(&last_error),
    ));
    Ok(RemoteWatch {
        rx,
        wake,
        task,
        mirror,
        rev,
        last_error,
    })
}

fn open_mirror(mirror: &Path, url: &str) -> Result<(), WatchError> {
    let repo = match Repository::open_bare(mirror) {
        Ok(repo) => repo,
        Err(_) => {
            std::fs::create_dir_all(mirror).map_err(|source| WatchError::DataDir {
                path: mirror.to_path_buf(),
                source,
            })?;
            Repository::init_bare(mirror).map_err(|source| WatchError::Open {
                path: mirror.to_path_buf(),
                source,
            })?
        }
    };
    match repo.find_remote(REMOTE) {
        Ok(remote) if remote.url() == Ok(url) => {}
        Ok(_) => repo.remote_set_url(REMOTE, url)?,
        Err(_) => {
            repo.remote_with_fetch(REMOTE, url, FETCH_REFSPEC)?;
        }
    }
    Ok(())
}

async fn run(
    mirror: PathBuf,
    rev: String,
    opts: RemoteOptions,
    tx: watch::Sender<Tip>,
    wake: Arc<Notify>,
    last_error: Arc<Mutex<Option<String>>>,
) {
    let mut poll = tokio::time::interval(opts.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await;
    loop {
        tokio::select! {
            _ = poll.tick() => {}
            () = wake.notified() => {}
        }
        let tip = fetch_tip(&mirror, &rev, &last_error).await;
        publish(&tx, tip);
    }
}

/// Fetches, then reads the tip. After a failed fetch the tip is what an
/// earlier fetch left, or `Unavailable` with the reason.
async fn fetch_tip(mirror: &Path, rev: &str, last_error: &Mutex<Option<String>>) -> Tip {
    let dir = mirror.to_path_buf();
    let fetched = tokio::task::spawn_blocking(move || fetch(&dir))
        .await
        .unwrap_or_else(|e| Err(format!("fetch task failed: {e}")));
    let error = fetched.err();
    if let Some(why) = &error {
        tracing::warn!(mirror = %mirror.display(), "fetch failed: {why}");
    }
    let tip = read_tip(mirror, rev);
    *last_error.lock().expect("not poisoned") = error.clone();
    match (tip, error) {
        (Tip::Missing, Some(why)) if !has_fetched(mirror) => Tip::Unavailable(why),
        (tip, _) => tip,
    }
}

fn fetch(mirror: &Path) -> Result<(), String> {
    let repo = Repository::open_bare(mirror).map_err(|e| e.message().to_string())?;
    let mut remote = repo
        .find_remote(REMOTE)
        .map_err(|e| e.message().to_string())?;
    let mut opts = FetchOptions::new();
    opts.prune(FetchPrune::On);
    remote
        .fetch(&[FETCH_REFSPEC], Some(&mut opts), Some("gitmesh: fetch"))
        .map_err(|e| e.message().to_string())
}

/// Whether any fetch ever succeeded (so `Missing` means "deleted").
fn has_fetched(mirror: &Path) -> bool {
    Repository::open_bare(mirror)
        .and_then(|repo| {
            let refs = repo.references_glob(&format!("refs/remotes/{REMOTE}/*"))?;
            Ok(refs.count() > 0)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{commit, expect_tip, git, repo_with_commit};
    use super::*;

    const SOON: Duration = Duration::from_secs(5);

    /// A bare "server" repo fed from a work repo.
    fn server() -> (tempfile::TempDir, tempfile::TempDir, String) {
        let work = repo_with_commit();
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("remote.git");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "remote.git"],
        );
        let url = format!("file://{}", bare.display());
        git(work.path(), &["push", "-q", &url, "main"]);
        (work, dir, url)
    }

    fn no_poll() -> RemoteOptions {
        RemoteOptions {
            poll: Duration::from_secs(3600),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetches_on_trigger_and_follows_force_push_and_deletion() {
        let (work, server, url) = server();
        let data = tempfile::tempdir().unwrap();
        let first = git(work.path(), &["rev-parse", "HEAD"]);
        let watch = watch_remote(&url, "main", data.path(), no_poll())
            .await
            .unwrap();
        assert_eq!(watch.tip(), Tip::Commit(first.clone()));
        assert_eq!(watch.rev(), "refs/remotes/origin/main");
        assert!(watch.mirror().starts_with(data.path().join("sources")));
        // The mirror is readable as a revision source.
        let (files, rev) = crate::source::read_rev(watch.mirror(), watch.rev()).unwrap();
        assert_eq!(rev.commit, first);
        assert_eq!(files.len(), 1);

        let mut rx = watch.subscribe();
        let second = commit(work.path(), "two");
        git(work.path(), &["push", "-q", &url, "main"]);
        watch.trigger();
        expect_tip(&mut rx, Tip::Commit(second), SOON).await;

        // A force-push back to the first commit is followed.
        git(
            work.path(),
            &[
                "push",
                "-q",
                "--force",
                &url,
                &format!("{first}:refs/heads/main"),
            ],
        );
        watch.trigger();
        expect_tip(&mut rx, Tip::Commit(first), SOON).await;

        // A deleted branch is Missing, not an error.
        let bare = server.path().join("remote.git");
        git(&bare, &["update-ref", "-d", "refs/heads/main"]);
        watch.trigger();
        expect_tip(&mut rx, Tip::Missing, SOON).await;
        assert_eq!(watch.last_error(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polls_and_plain_paths_work() {
        let (work, server, _url) = server();
        let path = server.path().join("remote.git");
        let data = tempfile::tempdir().unwrap();
        let opts = RemoteOptions {
            poll: Duration::from_millis(100),
        };
        let watch = watch_remote(path.to_str().unwrap(), "main", data.path(), opts)
            .await
            .unwrap();
        let mut rx = watch.subscribe();
        let second = commit(work.path(), "two");
        git(work.path(), &["push", "-q", path.to_str().unwrap(), "main"]);
        expect_tip(&mut rx, Tip::Commit(second), SOON).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_remote_is_reported_and_then_recovers() {
        let data = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later.git");
        let url = format!("file://{}", path.display());
        let watch = watch_remote(&url, "main", data.path(), no_poll())
            .await
            .unwrap();
        assert!(
            matches!(watch.tip(), Tip::Unavailable(_)),
            "{:?}",
            watch.tip()
        );
        assert!(watch.last_error().is_some());

        // The remote appears; the next fetch finds it.
        let work = repo_with_commit();
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "later.git"],
        );
        git(work.path(), &["push", "-q", &url, "main"]);
        let sha = git(work.path(), &["rev-parse", "HEAD"]);
        let mut rx = watch.subscribe();
        watch.trigger();
        expect_tip(&mut rx, Tip::Commit(sha.clone()), SOON).await;
        assert_eq!(watch.last_error(), None);
        drop(watch);

        // The remote goes away again: a restarted watch keeps the mirror's tip.
        std::fs::remove_dir_all(&path).unwrap();
        let again = watch_remote(&url, "main", data.path(), no_poll())
            .await
            .unwrap();
        assert_eq!(again.tip(), Tip::Commit(sha));
        assert!(again.last_error().is_some());
    }

    #[test]
    fn one_mirror_per_url() {
        let d = Path::new("/data");
        assert_eq!(mirror_dir(d, "file:///a"), mirror_dir(d, "file:///a"));
        assert_ne!(mirror_dir(d, "file:///a"), mirror_dir(d, "file:///b"));
        assert!(mirror_dir(d, "x").starts_with("/data/sources"));
    }
}
