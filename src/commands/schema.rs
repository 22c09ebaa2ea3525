//! `gitmesh schema`: print the JSON Schemas, for editors and other tools.

// Doc comments here are `--help` text, written for a terminal:
// placeholders like <dir> and bare URLs are meant literally.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use gitmesh_reconciler::policy::Kind;
use gitmesh_reconciler::schema;

/// Print the JSON Schema (draft 2020-12) of a policy kind, or list them.
///
/// Editors validate while you type with a first line like:
///   # yaml-language-server: $schema=https://gitmesh.dev/schemas/v1alpha1/service.json
/// or point it at the files under schemas/ in the gitmesh repo.
///
/// Examples:
///   gitmesh schema                 # list the kinds
///   gitmesh schema HTTPRoute > httproute.json
///   gitmesh schema ProxyConfig     # the sidecar's config wire format
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct SchemaArgs {
    /// Mesh, Service, HTTPRoute, Rollout, Intentions or ProxyConfig
    /// (case-insensitive).
    kind: Option<String>,
}

pub fn run(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let Some(name) = args.kind else {
        println!("Policy kinds (apiVersion: gitmesh.dev/v1alpha1):");
        for kind in Kind::ALL {
            println!(
                "  {:<12} schemas/{}",
                kind.as_str(),
                schema::file_name(*kind)
            );
        }
        println!(
            "Wire format:\n  {:<12} schemas/proxy-config.json",
            "ProxyConfig"
        );
        return Ok(ExitCode::SUCCESS);
    };
    if name.eq_ignore_ascii_case("proxyconfig") {
        print!("{}", schema::PROXY_CONFIG_SCHEMA);
        return Ok(ExitCode::SUCCESS);
    }
    match Kind::ALL
        .iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(&name))
    {
        Some(kind) => {
            print!("{}", schema::text(*kind));
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "unknown kind `{name}`; kinds are {}, ProxyConfig",
            Kind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
