//! `gitmesh rollout pause|resume|abort NAME`: manual control of a canary
//! Rollout, written as a commit (to a new branch for a pull request, or
//! straight to the watched branch with `--direct`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gitmesh_reconciler::canary::{Control, control_edit};
use gitmesh_reconciler::source::{self, Content};
use gitmesh_reconciler::status::{Identity, StatusLog, WriteBack, short};

/// Pause, resume or abort a canary Rollout, the GitOps way: gitmesh edits
/// the Rollout's file (one line: `paused: true`, `paused: false` or
/// `abort: true`) and commits it from Git objects, without touching your
/// working tree. By default the commit goes on a new branch
/// (`gitmesh/rollout-<action>-<name>-<sha>`) for a pull request; `--direct`
/// commits to the watched branch itself, which the reconciler picks up at
/// once.
///
/// pause:  hold at the current step; a failing gate still rolls back.
/// resume: continue; the step's analysis window and deadline start again.
/// abort:  roll back now: all traffic to the stable subset, recorded as
///         "aborted by hand". Final: removing `abort` (an edit) starts the
///         rollout again from its first step.
///
/// Examples:
///   gitmesh rollout pause reviews-v2 --repo ./mesh-policy
///   gitmesh rollout abort reviews-v2 --repo ./mesh-policy --direct
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct RolloutArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Hold the Rollout at its current step (`paused: true`).
    Pause(Target),
    /// Let a paused Rollout continue (`paused: false`).
    Resume(Target),
    /// Roll back to the stable subset now (`abort: true`).
    Abort(Target),
}

#[derive(Args)]
struct Target {
    /// The Rollout's `metadata.name`.
    name: String,
    /// The policy repo (any path inside it).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The watched branch, holding desired state.
    #[arg(long, default_value = "main")]
    base: String,
    /// Commit straight to the watched branch instead of a new branch.
    #[arg(long, conflicts_with = "branch")]
    direct: bool,
    /// The new branch to commit to (default:
    /// `gitmesh/rollout-<action>-<name>-<short sha of the base>`).
    #[arg(long)]
    branch: Option<String>,
}

pub fn run(args: RolloutArgs) -> anyhow::Result<ExitCode> {
    let (control, target) = match args.action {
        Action::Pause(t) => (Control::Pause, t),
        Action::Resume(t) => (Control::Resume, t),
        Action::Abort(t) => (Control::Abort, t),
    };
    let (files, resolved) = source::read_rev(&target.repo, &target.base)
        .with_context(|| format!("reading branch {}", target.base))?;
    let result = gitmesh_reconciler::lint::lint(&files);
    let Some(rollout) = result
        .policies
        .rollouts
        .iter()
        .find(|r| r.value.metadata.name == target.name)
    else {
        bail!(
            "no Rollout named `{}` on {} ({})",
            target.name,
            target.base,
            short(&resolved.commit)
        );
    };
    let old = files
        .iter()
        .find(|f| f.path == rollout.file)
        .and_then(|f| match &f.content {
            Content::Bytes(b) => String::from_utf8(b.clone()).ok(),
            Content::TooLarge(_) => None,
        })
        .with_context(|| format!("reading {}", rollout.file))?;
    let Some(new) = control_edit(rollout, &old, control)? else {
        println!(
            "Rollout {} on {} already says so ({}): nothing to commit",
            target.name,
            target.base,
            match control {
                Control::Pause => "paused: true",
                Control::Resume => "not paused",
                Control::Abort => "abort: true",
            }
        );
        return Ok(ExitCode::SUCCESS);
    };
    let identity = Identity::from_git_config(&target.repo).unwrap_or_default();
    let log = StatusLog::open(&target.repo, &target.base, identity)?;
    let branch = if target.direct {
        target.base.clone()
    } else {
        let branch = target.branch.clone().unwrap_or_else(|| {
            format!(
                "gitmesh/rollout-{control}-{}-{}",
                target.name,
                short(&resolved.commit)
            )
        });
        log.branch_off(&branch, &target.base)
            .with_context(|| format!("creating branch {branch}"))?;
        branch
    };
    let message = format!(
        "rollout {}: {control}\n\n{}\n\nGitmesh-Rollout: {}\nGitmesh-Control: {control}\n",
        target.name,
        match control {
            Control::Pause =>
                "Hold the canary at its current step; a failing gate still rolls back.",
            Control::Resume => "Let the canary continue from its current step.",
            Control::Abort => "Roll back now: all traffic returns to the stable subset.",
        },
        target.name
    );
    let made = log
        .replace_desired(
            &branch,
            &rollout.file,
            old.as_bytes(),
            new.as_bytes(),
            &message,
        )
        .with_context(|| format!("committing to {branch}"))?;
    let id = match made {
        WriteBack::Committed(id) | WriteBack::Unchanged(id) => id,
    };
    if target.direct {
        println!(
            "{control}: committed {} to {branch} ({}); the reconciler applies it on its next look",
            id.short(),
            rollout.file
        );
    } else {
        println!(
            "{control}: committed {} to the new branch {branch} ({}); open a pull request to {}",
            id.short(),
            rollout.file,
            target.base
        );
    }
    Ok(ExitCode::SUCCESS)
}
