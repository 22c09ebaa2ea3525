//! `gitmesh compile`: print the config each service's sidecars get.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use gitmesh_reconciler::compile::{CanaryWeights, compile};
use gitmesh_reconciler::lint::lint;
use gitmesh_reconciler::report::{Format, Report, render};

/// Compile a policy repo into sidecar configs (the wire format of
/// `gitmesh proxy --config`), one per service, with their digests.
///
/// Examples:
///   gitmesh compile examples/bookinfo --service productpage > productpage.json
///   gitmesh proxy --config productpage.json ...
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct CompileArgs {
    /// The policy repo (with --rev, any path inside the Git repo).
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Compile this Git revision instead of the files on disk.
    #[arg(long, value_name = "REV")]
    rev: Option<String>,
    /// Print only this service's config (as a plain ProxyConfig document).
    #[arg(long)]
    service: Option<String>,
}

pub fn run(args: CompileArgs) -> anyhow::Result<ExitCode> {
    let (files, version) = super::read_repo(&args.path, args.rev.as_deref())?;
    let result = lint(&files);
    if result.errors() > 0 {
        let report = Report {
            diagnostics: &result.diagnostics,
            files: &result.files,
            sources: &result.sources,
            color: false,
        };
        eprint!("{}", render(Format::Human, &report));
        bail!("the policy repo has errors; nothing compiled");
    }
    let snapshots = compile(&result.policies, &version, &CanaryWeights::new());
    match args.service {
        Some(name) => match snapshots.get(&name) {
            Some(config) => println!("{}", serde_json::to_string_pretty(config)?),
            None => bail!(
                "no Service `{name}`; services are {}",
                snapshots.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        },
        None => {
            let all: serde_json::Map<String, serde_json::Value> = snapshots
                .iter()
                .map(|(name, config)| {
                    let mut v = serde_json::to_value(config).expect("configs serialize");
                    v.as_object_mut()
                        .expect("a config is an object")
                        .insert("digest".into(), config.digest().into());
                    (name.clone(), v)
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
