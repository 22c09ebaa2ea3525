//! The `gitmesh` command: thin wiring from the command line to the
//! libraries. Each subcommand lives in `commands/`; the work is done in
//! `gitmesh-reconciler` and `gitmesh-proxy`.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// gitmesh: a declarative GitOps service mesh.
///
/// Policy lives in a Git repo as YAML (Mesh, Service, HTTPRoute, Rollout,
/// Intentions). `lint` checks it, `plan` shows what a change will do,
/// `compile` prints the config each sidecar gets, `proxy` runs the sidecar,
/// and `reconcile` rolls each commit out and records every step in Git.
/// New here? `gitmesh demo` runs the whole mesh on loopback for a minute.
#[derive(Parser)]
#[command(
    name = "gitmesh",
    version,
    about,
    long_about,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Lint(commands::lint::LintArgs),
    Plan(commands::plan::PlanArgs),
    Compile(commands::compile::CompileArgs),
    Schema(commands::schema::SchemaArgs),
    Proxy(commands::proxy::ProxyCommand),
    Reconcile(commands::reconcile::ReconcileArgs),
    Status(commands::status::StatusArgs),
    History(commands::history::HistoryArgs),
    Demo(commands::demo::DemoArgs),
    Rollout(commands::rollout::RolloutArgs),
    Explain(commands::explain::ExplainArgs),
    DemoApp(commands::demo_app::DemoAppArgs),
    Ca(commands::ca::CaArgs),
}

fn main() -> ExitCode {
    commands::demo::processes::exit_with_parent_if_asked();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lint(args) => commands::lint::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Compile(args) => commands::compile::run(args),
        Command::Schema(args) => commands::schema::run(args),
        Command::Proxy(args) => commands::proxy::run(args),
        Command::Reconcile(args) => commands::reconcile::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::History(args) => commands::history::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Rollout(args) => commands::rollout::run(args),
        Command::Explain(args) => commands::explain::run(args),
        Command::DemoApp(args) => commands::demo_app::run(args),
        Command::Ca(args) => commands::ca::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            // 2: usage or IO error, the same for every command.
            ExitCode::from(2)
        }
    }
}

/// An error and its causes, `: `-joined as `{:#}` does, but without a cause
/// whose text the message already holds (many library errors name their
/// IO error in their own text and also return it as their source).
fn report(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct ReadError {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_is_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(ReadError {
            path: "a.json",
            source: io(),
        });
        assert_eq!(super::report(&e), "cannot read a.json: no such file");
        let e = anyhow::Error::new(io()).context("loading the policy");
        assert_eq!(super::report(&e), "loading the policy: no such file");
    }
}
