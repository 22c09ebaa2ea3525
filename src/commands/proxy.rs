//! `gitmesh proxy`: run the sidecar (the work is in `gitmesh-proxy`).

use std::process::ExitCode;

use clap::Args;
use gitmesh_proxy::{LogFormat, ProxyArgs, ProxyError};

/// Run the sidecar proxy beside one instance of an app.
///
/// The app calls other services through the outbound listener
/// (`http://reviews/...` with the proxy as HTTP_PROXY, or with the Host
/// header naming the service); peers reach the app through the inbound
/// listener; the admin listener serves /metrics, /ready and /config.
///
/// Static mode reads a config file in the wire format that
/// `gitmesh compile --service NAME` prints (`gitmesh schema ProxyConfig`).
/// The last accepted config is kept in --state-dir, so a restarted proxy
/// serves traffic even before it hears from anyone.
///
/// Examples:
///   gitmesh compile examples/bookinfo --service productpage > pp.json
///   gitmesh proxy --config pp.json --check
///   gitmesh proxy --config pp.json --app 127.0.0.1:9080
///   curl -x http://127.0.0.1:15001 http://reviews/reviews/1
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct ProxyCommand {
    #[command(flatten)]
    args: ProxyArgs,
}

pub fn run(cmd: ProxyCommand) -> anyhow::Result<ExitCode> {
    if cmd.args.check {
        return check(&cmd.args);
    }
    super::init_logging(matches!(cmd.args.log_format, LogFormat::Json));
    gitmesh_proxy::run(cmd.args)?;
    Ok(ExitCode::SUCCESS)
}

/// `--check`: one line when the config would be accepted, else one line per
/// problem (`file: where: what`) and exit code 1.
fn check(args: &ProxyArgs) -> anyhow::Result<ExitCode> {
    match gitmesh_proxy::check(args) {
        Ok(checked) => {
            println!("{checked}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (ProxyError::Identity(_) | ProxyError::ReadTlsFile { .. })) => {
            eprintln!("mTLS: {e}");
            eprintln!("refused: the mTLS identity");
            Ok(ExitCode::FAILURE)
        }
        Err(ProxyError::InvalidConfig { path, invalid }) => {
            let file = path
                .map(|p| format!("{}: ", p.display()))
                .unwrap_or_default();
            for p in &invalid.problems {
                eprintln!("{file}{}: {}", p.at, p.message);
            }
            eprintln!(
                "{file}refused: {} problem{}",
                invalid.problems.len(),
                if invalid.problems.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
