//! `gitmesh status`: ask a running reconciler about its proxies.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

/// Show the proxies a running reconciler knows: their service, address,
/// the version they run, whether it is the one assigned, and their health.
///
/// Examples:
///   gitmesh status
///   gitmesh status --reconciler http://10.0.0.5:15010 --json
///   gitmesh status --reconciler https://127.0.0.1:15010 \
///       --ca-bundle mesh-policy/.git/gitmesh/ca/ca.pem
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    /// The reconciler's proxy API (its --listen address); https:// when it
    /// runs the mesh CA.
    #[arg(long, default_value = "http://127.0.0.1:15010")]
    reconciler: String,
    /// The mesh CA's root (PEM) to verify an https:// reconciler with (the
    /// only root trusted then).
    #[arg(long, value_name = "FILE")]
    ca_bundle: Option<std::path::PathBuf>,
    /// Print the raw JSON of /v1/status.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/v1/status", args.reconciler.trim_end_matches('/'));
    let mut client =
        reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(5));
    if let Some(path) = &args.ca_bundle {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let root = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        client = client
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root);
    }
    let response = client
        .build()?
        .get(&url)
        .send()
        .with_context(|| format!("asking {url}; is `gitmesh reconcile` running there?"))?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    let status: serde_json::Value = response.json().context("reading the reconciler's answer")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    let proxies = status["proxies"].as_array().cloned().unwrap_or_default();
    if proxies.is_empty() {
        println!("no proxies registered");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<14} {:<22} {:<9} {:<9} HEALTH",
        "PROXY", "SERVICE", "ADDRESS", "VERSION", "SYNCED"
    );
    for p in proxies {
        let running = p["running"]["digest"].as_str();
        let synced = running.is_some() && running == p["assignedDigest"].as_str();
        let version = p["running"]["version"].as_str().unwrap_or("-");
        println!(
            "{:<24} {:<14} {:<22} {:<9} {:<9} {}",
            p["id"].as_str().unwrap_or("?"),
            p["service"].as_str().unwrap_or("?"),
            p["address"].as_str().unwrap_or("?"),
            &version[..version.len().min(7)],
            if synced { "yes" } else { "pending" },
            if p["healthy"].as_bool() == Some(true) {
                "healthy"
            } else {
                "unhealthy"
            },
        );
    }
    Ok(ExitCode::SUCCESS)
}
