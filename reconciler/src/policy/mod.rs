//! The policy model: the five kinds people write in a policy repo, as Rust
//! types. The JSON Schemas under `schemas/` are generated from these types
//! (`gitmesh schema`), so the two cannot drift apart.
//!
//! Every object has a Kubernetes-style envelope: `apiVersion:
//! gitmesh.dev/v1alpha1`, `kind`, `metadata.name` and `spec`.
//!
//! Conventions: durations are strings like `250ms`, `30s`, `1m30s`.
//! Percentages are numbers from 0 to 100 (`percent: 0.5` is half a percent);
//! weights are relative non-negative integers, as in Gateway API.

mod intentions;
mod mesh;
mod rollout;
mod route;
mod service;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use self::intentions::{HttpPermission, IntentionPermission, IntentionSource, IntentionsSpec};
pub use self::mesh::{
    MeshSpec, MetricsSource, MetricsSourceKind, MtlsSettings, RolloutDefaults, Wave,
};
pub use self::rollout::{Analysis, OnSuccess, RelativeGates, RolloutSpec};
pub use self::route::{
    BackendRef, FilterType, HttpPathModifier, HttpRouteFilter, HttpRouteMatch, HttpRouteRule,
    HttpRouteSpec, HttpRouteTimeouts, MirrorPolicy, ParentRef, PathModifierType, RedirectPolicy,
    SessionPersistence, SessionPersistenceType, UrlRewritePolicy,
};
pub use self::service::{ServiceSpec, StaticEndpoint, Subset};

/// The only API version this release reads.
pub const API_VERSION: &str = "gitmesh.dev/v1alpha1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "gitmesh.dev/v1alpha1")]
    V1Alpha1,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Unique among objects of the same kind; lowercase letters, digits and
    /// `-`, like a DNS label.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub name: String,
    /// Free-form labels, for people and tools.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form notes, for people and tools.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Declares one envelope type per kind: `apiVersion`, `kind` (a one-value
/// enum so the schema pins it), `metadata`, `spec`.
macro_rules! kinds {
    ($( $(#[$doc:meta])* $name:ident($kind_enum:ident) => $spec:ty; )*) => {
        $(
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
            pub enum $kind_enum { $name }

            $(#[$doc])*
            #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            pub struct $name {
                pub api_version: ApiVersion,
                pub kind: $kind_enum,
                pub metadata: Metadata,
                pub spec: $spec,
            }
        )*

        /// The kinds a policy repo may hold.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind { $($name,)* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$name,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Kind::$name => stringify!($name),)* }
            }

            pub fn parse(name: &str) -> Option<Kind> {
                match name { $(stringify!($name) => Some(Kind::$name),)* _ => None }
            }

            /// Deserializes a document as this kind, discarding the value:
            /// the Rust-side half of the check that types and schemas agree.
            pub fn deserialize_check(self, json: serde_json::Value) -> Result<(), serde_json::Error> {
                match self { $(Kind::$name => serde_json::from_value::<$name>(json).map(drop),)* }
            }

            /// The kind's JSON Schema, generated from its Rust type.
            pub fn generate_schema(self) -> schemars::Schema {
                match self { $(Kind::$name => schemars::schema_for!($name),)* }
            }
        }
    };
}

kinds! {
    /// Mesh-wide settings. At most one per repo; without one, defaults apply.
    Mesh(MeshKind) => MeshSpec;
    /// A service of the mesh: its protocol, versions (subsets) and how callers
    /// treat it (load balancing, timeouts, retries, circuit breaking).
    Service(ServiceKind) => ServiceSpec;
    /// How requests to a service are routed: Gateway API HTTPRoute, mesh
    /// profile (its parent is a Service).
    HTTPRoute(HttpRouteKind) => HttpRouteSpec;
    /// A canary release: traffic shifted from a stable to a canary subset in
    /// steps, promoted only while metric gates pass.
    Rollout(RolloutKind) => RolloutSpec;
    /// Who may call a service (by source service), and with which requests.
    Intentions(IntentionsKind) => IntentionsSpec;
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
