//! `Intentions`: who may call a service. Consul-style: a destination, and
//! per source service either an action or a list of L7 permissions.

use std::collections::BTreeMap;

use gitmesh_proxy_config::{Action, HeaderMatch};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntentionsSpec {
    /// The Service being protected.
    pub destination: String,
    /// A source named exactly wins over `*`.
    #[schemars(length(min = 1))]
    pub sources: Vec<IntentionSource>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntentionSource {
    /// A Service name, or `*` for every caller.
    pub name: String,
    /// `allow` or `deny` every request from this source. Give either this or
    /// `permissions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// L7 rules; the most specific that fits a request decides (exact path,
    /// then longer prefix, then regex, then no path; more header and claim
    /// conditions first; file order among equals). A request that fits none
    /// gets the mesh's default intention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<IntentionPermission>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntentionPermission {
    pub action: Action,
    #[serde(default)]
    pub http: HttpPermission,
    /// Claims the request's verified JWT must carry (`role: admin`): a
    /// string claim equal to the value, an array claim containing it, or a
    /// space-separated `scope` including it. Needs `jwt` on the destination
    /// Service; a request without a token never fits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

/// Which requests a permission covers. Give at most one of the path fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPermission {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Empty means every method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}
