//! `gitmesh ca`: a mesh CA for people without a reconciler (static mTLS):
//! `init` makes a root, `issue` a sidecar certificate and key for a service.

// Doc comments here are `--help` text, written for a terminal:
// placeholders like <dir> and bare URLs are meant literally.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand};
use gitmesh_proxy::mtls::CertificateRequest;
use gitmesh_proxy::peer::PeerIdentity;
use gitmesh_reconciler::ca::MeshCa;

/// A mesh CA on disk, for static mTLS (`gitmesh proxy --tls-cert ...`).
///
/// Examples:
///   gitmesh ca init --dir ./ca --trust-domain bookinfo.local
///   gitmesh ca issue --dir ./ca --trust-domain bookinfo.local --service reviews --out ./reviews
///   gitmesh proxy --config reviews.json --tls-cert reviews/cert.pem \
///       --tls-key reviews/key.pem --ca-bundle ca/ca.pem
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Make a root (ca.pem, ca-key.pem readable by its owner only) in --dir;
    /// an existing one is kept.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_name = "DOMAIN", default_value = "gitmesh.local")]
        trust_domain: String,
    },
    /// Make a key and a certificate for --service, signed by the root in
    /// --dir: <out>/cert.pem and <out>/key.pem.
    Issue {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_name = "DOMAIN", default_value = "gitmesh.local")]
        trust_domain: String,
        #[arg(long, value_name = "NAME")]
        service: String,
        /// Lifetime of the certificate, e.g. 24h, 720h.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
        lifetime: Duration,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<gitmesh_proxy_config::Duration>()
        .map(|d| d.to_std())
        .map_err(|e| e.to_string())
}

pub fn run(args: CaArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CaCommand::Init { dir, trust_domain } => {
            let ca = MeshCa::load_or_generate(&dir, &trust_domain)?;
            println!(
                "mesh CA for {} in {}",
                ca.trust_domain(),
                dir.join("ca.pem").display()
            );
        }
        CaCommand::Issue {
            dir,
            trust_domain,
            service,
            lifetime,
            out,
        } => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            let ca = MeshCa::from_pem(
                &trust_domain,
                &read(&dir.join("ca.pem"))?,
                &read(&dir.join("ca-key.pem"))?,
            )?;
            let id = PeerIdentity::for_service(&trust_domain, &service)
                .with_context(|| format!("`{service}` is not a valid service name"))?;
            let request = CertificateRequest::generate(&id)?;
            let cert = ca.issue(&request.csr_pem, &service, lifetime, SystemTime::now())?;
            std::fs::create_dir_all(&out)?;
            write_private(&out.join("key.pem"), &request.key_pem)?;
            std::fs::write(out.join("cert.pem"), cert)?;
            println!("{id}: {}", out.join("cert.pem").display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
