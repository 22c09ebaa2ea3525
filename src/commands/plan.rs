//! `gitmesh plan`: what a change to the policy repo will do.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use gitmesh_reconciler::lint::{LintResult, lint};
use gitmesh_reconciler::load::PolicySet;
use gitmesh_reconciler::plan::plan;
use gitmesh_reconciler::report::{Format, Report, render};
use gitmesh_reconciler::source;

/// Show what a change does: which policy objects changed, which services'
/// sidecars get a new config (field by field), and which canary rollouts
/// would start. Markdown, ready to post on a pull request.
///
/// Compares two revisions (default HEAD~1 → HEAD), or with --worktree the
/// uncommitted files against HEAD.
///
/// Exit status, like `nomad job plan`: 0 no change, 1 changes, 2 error
/// (including a target revision that does not lint).
///
/// Examples:
///   gitmesh plan                         # the last commit
///   gitmesh plan origin/main HEAD        # a pull request branch
///   gitmesh plan --worktree              # before you commit
///   gitmesh plan main feature --format json
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct PlanArgs {
    /// The revision to compare from.
    #[arg(default_value = "HEAD~1")]
    from: String,
    /// The revision to compare to.
    #[arg(default_value = "HEAD")]
    to: String,
    /// Compare the files on disk (committed or not) with HEAD.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    worktree: bool,
    /// The policy repo (any path inside it).
    #[arg(long, short = 'C', default_value = ".")]
    repo: PathBuf,
    #[arg(long, value_enum, default_value_t = PlanFormat::Markdown)]
    format: PlanFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlanFormat {
    /// Markdown for a pull-request comment.
    Markdown,
    /// One JSON document.
    Json,
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let (from_label, old) = if args.worktree {
        let (set, rev) = at_rev(&args, "HEAD", true)?;
        (rev, set)
    } else {
        let (set, rev) = at_rev(&args, &args.from, args.from == "HEAD~1")?;
        (rev, set)
    };
    let (to_label, new) = if args.worktree {
        let root = source::worktree_root(&args.repo)?;
        let files = source::read_dir(&root)?;
        (
            "worktree".to_string(),
            checked(lint(&files), "the working tree")?,
        )
    } else {
        let (files, rev) = source::read_rev(&args.repo, &args.to)?;
        (rev.commit, checked(lint(&files), &args.to)?)
    };
    let p = plan(&old, &new, &from_label, &to_label);
    match args.format {
        PlanFormat::Markdown => print!("{}", p.to_markdown()),
        PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&p)?),
    }
    Ok(if p.has_changes() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The policies at a revision. The old side of a plan only needs what
/// loads; with `missing_ok`, a revision that does not exist (the parent of
/// a first commit) is an empty repo.
fn at_rev(args: &PlanArgs, rev: &str, missing_ok: bool) -> anyhow::Result<(PolicySet, String)> {
    match source::read_rev(&args.repo, rev) {
        Ok((files, resolved)) => Ok((lint(&files).policies, resolved.commit)),
        Err(source::SourceError::BadRevision { .. }) if missing_ok => {
            Ok((PolicySet::default(), "(empty)".to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The target of a plan must lint cleanly: a plan of a broken repo would
/// promise something the reconciler will refuse.
fn checked(result: LintResult, what: &str) -> anyhow::Result<PolicySet> {
    if result.errors() > 0 {
        let report = Report {
            diagnostics: &result.diagnostics,
            files: &result.files,
            sources: &result.sources,
            color: false,
        };
        eprint!("{}", render(Format::Human, &report));
        bail!("{what} has lint errors; the reconciler would refuse it");
    }
    Ok(result.policies)
}
