//! The demo's child processes: the current executable run with a
//! subcommand (`reconcile`, `proxy`, `demo-app`). All of them stop when the
//! [`Processes`] value is dropped (normal end, error or panic), and each
//! child also exits by itself when the demo's process dies (even killed by
//! SIGKILL): its stdin is a pipe from the demo, and `GITMESH_EXIT_WITH_PARENT`
//! makes it exit when that pipe closes. No orphan is ever left behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::Context;

/// The variable that makes a `gitmesh` child exit when its stdin closes
/// (read by `main`).
pub const EXIT_WITH_PARENT: &str = "GITMESH_EXIT_WITH_PARENT";

struct Running {
    name: String,
    child: Child,
    /// Held open: the child exits when it closes.
    _stdin: Option<ChildStdin>,
}

/// Every child the demo started, with its log file under `logs`.
pub struct Processes {
    exe: PathBuf,
    logs: PathBuf,
    running: Vec<Running>,
}

impl Processes {
    pub fn new(logs: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logs)?;
        Ok(Processes {
            exe: std::env::current_exe().context("finding the gitmesh executable")?,
            logs: logs.to_path_buf(),
            running: Vec::new(),
        })
    }

    /// Starts `gitmesh ARGS` as `name`, its output in `logs/NAME.log`.
    pub fn spawn(&mut self, name: &str, args: &[String]) -> anyhow::Result<u32> {
        let log_path = self.logs.join(format!("{name}.log"));
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut child = Command::new(&self.exe)
            .args(args)
            .env(EXIT_WITH_PARENT, "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        self.running.push(Running {
            name: name.to_string(),
            child,
            _stdin: stdin,
        });
        Ok(pid)
    }

    /// A child that has already exited, with its status: a dead reconciler
    /// or sidecar means the story cannot go on.
    pub fn exited(&mut self) -> Option<(String, std::process::ExitStatus)> {
        self.running.iter_mut().find_map(|r| {
            r.child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| (r.name.clone(), status))
        })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.running.iter().map(|r| r.child.id()).collect()
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Kills and reaps every child, newest first (callers before the
    /// reconciler, so no proxy is reported unhealthy into the status branch
    /// on the way out).
    pub fn stop_all(&mut self) {
        while let Some(mut r) = self.running.pop() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Called first thing by `main`: in a child of the demo, exit as soon as
/// the demo's end of stdin closes.
pub fn exit_with_parent_if_asked() {
    if std::env::var_os(EXIT_WITH_PARENT).is_none() {
        return;
    }
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        loop {
            match std::io::Read::read(&mut stdin, &mut sink) {
                Ok(0) | Err(_) => std::process::exit(0),
                Ok(_) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn dropping_stops_every_child() {
        let dir = tempfile::tempdir().unwrap();
        let mut processes = Processes::new(dir.path()).unwrap();
        // The test binary is not gitmesh; any long-running command will do.
        processes.exe = PathBuf::from("sleep");
        let pid = processes.spawn("sleeper", &["30".to_string()]).unwrap();
        assert!(processes.exited().is_none());
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(processes);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
