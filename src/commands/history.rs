//! `gitmesh history`: the status branch as a timeline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use gitmesh_reconciler::status::{Identity, StatusLog, render_json, render_timeline};

/// Show what the reconciler did, from the status branch: versions applied,
/// waves, reverts with their reason, rejected commits with their
/// diagnostics, canary steps with their numbers. Oldest first.
///
/// Reads Git only: it works on any clone, with no reconciler running.
///
/// Examples:
///   gitmesh history --repo ./mesh-policy
///   gitmesh history --format json | jq '.[] | select(.event.event == "reverted")'
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct HistoryArgs {
    /// The policy repo (any path inside it).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The status branch.
    #[arg(long, default_value = "gitmesh/status")]
    status_branch: String,
    /// How many of the latest steps to show.
    #[arg(long, default_value_t = 200)]
    limit: usize,
    #[arg(long, value_enum, default_value_t = HistoryFormat::Text)]
    format: HistoryFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum HistoryFormat {
    /// A readable timeline.
    Text,
    /// One JSON array of entries.
    Json,
}

pub fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let log = StatusLog::open(&args.repo, &args.status_branch, Identity::default())?;
    let entries = log.history(args.limit)?;
    match args.format {
        HistoryFormat::Text if entries.is_empty() => {
            println!(
                "no history yet: the branch `{}` has no status commits",
                args.status_branch
            );
        }
        HistoryFormat::Text => print!("{}", render_timeline(&entries)),
        HistoryFormat::Json => println!("{}", render_json(&entries)),
    }
    Ok(ExitCode::SUCCESS)
}
