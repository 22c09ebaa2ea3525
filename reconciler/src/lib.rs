//! gitmesh's control plane: from a commit of policy files to per-proxy
//! configuration, and the plan of what a change will do.
//!
//! Read the modules in pipeline order: [`source`] (files from a directory or
//! a Git revision) → [`load`] (YAML with positions, envelope, schema, typed
//! objects) → [`semantics`] (cross-object checks) → [`compile`] (one
//! [`gitmesh_proxy_config::ProxyConfig`] per service) → [`diff`] → [`plan`].
//! [`lint`] runs the checking half; [`report`] renders its diagnostics.

pub mod api;
pub mod ca;
pub mod canary;
pub mod compile;
pub mod diagnostic;
pub mod diff;
pub mod endpoints;
pub mod index;
pub mod lint;
pub mod load;
pub mod plan;
pub mod policy;
pub mod reconcile;
pub mod reference;
pub mod report;
pub mod schema;
pub mod secrets;
pub mod semantics;
pub mod source;
pub mod status;
pub mod synthetic;
pub mod watch;
pub mod waves;
