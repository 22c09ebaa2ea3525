//! `gitmesh lint`: check a policy repo and report every problem.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use gitmesh_reconciler::lint::lint;
use gitmesh_reconciler::report::{Format, Report, render};

/// Check a policy repo: YAML syntax, schemas, references, weights, rollout
/// steps, unreachable rules, secrets. Reports every problem with file, line
/// and column.
///
/// Exit status: 0 clean (warnings allowed unless --deny-warnings), 1 problems
/// found, 2 usage or IO error — the same in every format.
///
/// Examples:
///   gitmesh lint examples/bookinfo
///   gitmesh lint . --rev origin/main --format sarif > gitmesh.sarif
///   gitmesh lint --format github        # annotations in GitHub Actions
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct LintArgs {
    /// The policy repo (a directory; with --rev, any path inside the Git repo).
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Check this Git revision (branch, tag, sha, HEAD~1) straight from Git
    /// objects instead of the files on disk.
    #[arg(long, value_name = "REV")]
    rev: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Human)]
    format: FormatArg,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    deny_warnings: bool,
    /// Colors in human output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// rustc-style messages with the source line and a caret.
    Human,
    /// One JSON object per line: code, severity, file, line, column, message, hint.
    Json,
    /// SARIF 2.1.0, for GitHub code scanning.
    Sarif,
    /// GitHub Actions annotations (::error file=…,line=…::).
    Github,
    /// JUnit XML, one test case per file.
    Junit,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

pub fn run(args: LintArgs) -> anyhow::Result<ExitCode> {
    let (files, _) = super::read_repo(&args.path, args.rev.as_deref())?;
    let result = lint(&files);
    let format = match args.format {
        FormatArg::Human => Format::Human,
        FormatArg::Json => Format::Json,
        FormatArg::Sarif => Format::Sarif,
        FormatArg::Github => Format::Github,
        FormatArg::Junit => Format::Junit,
    };
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let report = Report {
        diagnostics: &result.diagnostics,
        files: &result.files,
        sources: &result.sources,
        color,
    };
    print!("{}", render(format, &report));
    Ok(if result.passes(args.deny_warnings) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
