//! `gitmesh explain ROLLOUT [STEP]`: why a canary decision was taken.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use gitmesh_reconciler::status::{Identity, StatusLog, render_explanation};

/// Explain a canary decision from the evidence in its status commit: the
/// requests, error rates and p99 of both subsets over the window, each gate
/// checked again on those numbers (pass, FAIL, no data, skipped), the
/// failure streak and the recorded reason. Without STEP, the rollout's
/// latest decision; with STEP (1-based; 0 is the start), every decision
/// about that step in the rollout's latest run.
///
/// Reads Git only: it works on any clone, with no reconciler running.
///
/// Examples:
///   gitmesh explain reviews-v2 --repo ./mesh-policy
///   gitmesh explain reviews-v2 2
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct ExplainArgs {
    /// The Rollout's `metadata.name`.
    rollout: String,
    /// The step (1-based; 0 is the start).
    step: Option<u32>,
    /// The policy repo (any path inside it).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The status branch.
    #[arg(long, default_value = "gitmesh/status")]
    status_branch: String,
    /// How many of the latest status commits to search.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let log = StatusLog::open(&args.repo, &args.status_branch, Identity::default())?;
    let entries = log.history(args.limit)?;
    match render_explanation(&entries, &args.rollout, args.step) {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}
