//! `Service`: one service of the mesh, its versions (subsets) and how its
//! callers' sidecars treat it.

use std::collections::BTreeMap;

use gitmesh_proxy_config::{
    CircuitBreaker, HealthCheck, JwtAuthentication, LoadBalancer, MtlsMode, OutlierDetection,
    Protocol, RetryPolicy, Timeouts,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// `http` (HTTP/1.1), `http2` (h2c prior knowledge) or `grpc`.
    #[serde(default)]
    pub protocol: Protocol,
    /// The port the service's app listens on.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u32,
    /// Versions of the service, told apart by instance labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// Services this one calls. Its sidecar gets config for these (and for
    /// services whose intentions name it), not for the whole mesh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Overrides the mesh-wide mTLS mode for this service's inbound side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsMode>,
    /// End-user JWT authentication on this service's inbound side: trusted
    /// issuers, audiences and where their keys are. Intentions can then
    /// require claims (`permissions[].claims`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuthentication>,
    /// Instances known in advance (plain machines without a registering
    /// sidecar). Registered instances are added to these at run time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<StaticEndpoint>,
}

/// A version of a service: the instances whose labels include all of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticEndpoint {
    /// `host:port`.
    #[schemars(regex(pattern = r"^[^\s:]+:[0-9]{1,5}$"))]
    pub address: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}
