//! Runs the sidecar standalone, as `gitmesh proxy` will:
//! `cargo run --release -p gitmesh-proxy --example proxy -- --config FILE`.
//! Used by `bench/run.sh` and for trying the proxy before the CLI wires it.

use clap::Parser;
use gitmesh_proxy::{LogFormat, ProxyArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    proxy: ProxyArgs,
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.proxy.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    if let Err(e) = gitmesh_proxy::run(cli.proxy) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
