//! The wire types: one [`ProxyConfig`] is everything a sidecar needs to run.
//!
//! The reconciler compiles policy into these (one snapshot per service) and
//! the proxy runs them; `gitmesh proxy --config FILE` reads the same JSON.
//! Field names are camelCase like the policy files; optional sections have
//! defaults so a hand-written static config stays short.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// A complete, self-contained configuration for the proxies of one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// Which policy this came from: the source commit, or any label in
    /// static mode. Shown on `/config` and as a metric label.
    pub version: String,
    /// The service whose instances run this config (the local app's service).
    pub service: String,
    /// Mesh-wide settings that the proxy needs (identity, mTLS).
    #[serde(default)]
    pub mesh: MeshSettings,
    /// How peers reach the local app, and who may.
    #[serde(default)]
    pub inbound: Inbound,
    /// The services the local app may call, sorted by name.
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshSettings {
    /// SPIFFE trust domain: identities are `spiffe://<trustDomain>/svc/<service>`.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Transport security between sidecars.
    #[serde(default)]
    pub mtls: MtlsMode,
}

fn default_trust_domain() -> String {
    "gitmesh.local".to_string()
}

impl Default for MeshSettings {
    fn default() -> Self {
        Self {
            trust_domain: default_trust_domain(),
            mtls: MtlsMode::default(),
        }
    }
}

/// `strict`: mTLS only. `permissive`: mTLS and plaintext (for migration).
/// `disabled`: plaintext only (static setups and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MtlsMode {
    Strict,
    #[default]
    Permissive,
    Disabled,
}

/// The inbound side: the local app and the authorization peers must pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inbound {
    /// Overrides the mesh-wide mTLS mode for this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsMode>,
    #[serde(default)]
    pub authorization: Authorization,
    /// JWT authentication of end-user tokens on inbound requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuthentication>,
}

/// Requests carry a JWT (`Authorization: Bearer …`) that one of the
/// providers must have signed. A bad token is refused with 401; a missing
/// one too unless `required` is false (its claims are then absent, and
/// permissions that require claims do not match).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtAuthentication {
    /// Whether a request without a token is refused (401).
    #[serde(default = "default_true")]
    pub required: bool,
    /// Trusted issuers; a token is checked by the provider whose `issuer`
    /// equals its `iss` claim.
    #[schemars(length(min = 1))]
    pub providers: Vec<JwtProvider>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtProvider {
    /// The `iss` claim this provider's tokens carry.
    pub issuer: String,
    /// The token's `aud` must name at least one of these; empty: not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where the provider's public keys are.
    pub jwks: JwksSource,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_leeway() -> u64 {
    30
}

/// A JSON Web Key Set, from a file on the proxy's host or an URL (https, or
/// http to a loopback address), cached and refreshed every `refresh`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwksSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How long fetched keys are used before they are fetched again. A
    /// token signed by an unknown key id also triggers a refetch (at most
    /// once per 5 s).
    #[serde(default = "default_jwks_refresh")]
    pub refresh: Duration,
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}

/// Intentions, compiled: who may call this service, and with what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorization {
    /// What happens to a caller that no rule names.
    #[serde(default = "Action::allow")]
    pub default_action: Action,
    /// One rule per source; a source named exactly wins over `*`.
    #[serde(default)]
    pub rules: Vec<AuthorizationRule>,
}

impl Default for Authorization {
    fn default() -> Self {
        Self {
            default_action: Action::Allow,
            rules: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    fn allow() -> Self {
        Action::Allow
    }
}

/// What one source may do. Without `permissions`, `action` decides. With
/// them, the first permission that fits the request decides, and a request
/// that fits none falls back to the default action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationRule {
    /// The calling service's name, or `*` for any caller.
    pub source: String,
    /// Applies when `permissions` is empty.
    #[serde(default = "Action::allow")]
    pub action: Action,
    /// L7 rules, most specific first (the compiler sorts them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permission {
    pub action: Action,
    /// Methods this permission covers; empty means any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// Claims the request's verified JWT must carry (a string claim equal to
    /// the value, or an array claim containing it). Without a token such a
    /// permission never matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

/// One destination service the local app may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Upstream {
    /// The service name; the app reaches it as `http://<name>/...`.
    pub name: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// The upstream service's own mTLS mode when it overrides the mesh's
    /// (`disabled`: callers reach it in plaintext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsMode>,
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// Instances of the service. Each belongs to at most one subset.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// How instances map to subsets (an instance belongs to the first
    /// subset whose labels it all has). The reconciler uses it to place
    /// instances that register at run time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<SubsetSelector>,
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
    /// HTTP routes attached to this service. With none, every request goes to
    /// all endpoints of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

/// A subset of a service's instances, selected by labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubsetSelector {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl SubsetSelector {
    /// The first subset whose labels `labels` all has.
    pub fn find<'a>(
        subsets: &'a [SubsetSelector],
        labels: &BTreeMap<String, String>,
    ) -> Option<&'a SubsetSelector> {
        subsets
            .iter()
            .find(|s| s.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Protocol {
    /// HTTP/1.1 to the upstream.
    #[default]
    Http,
    /// HTTP/2 with prior knowledge (h2c) to the upstream.
    Http2,
    /// gRPC: HTTP/2 with prior knowledge; gRPC status mapping for metrics.
    Grpc,
}

/// How an endpoint is chosen among the healthy, non-ejected ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    #[serde(default)]
    pub policy: LoadBalancerPolicy,
    /// For `ringHash`: what to hash. Without it, the client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalancerPolicy {
    #[default]
    RoundRobin,
    /// Smooth weighted round robin over endpoint weights.
    Weighted,
    /// Least outstanding requests, power of two random choices.
    LeastRequest,
    /// Consistent hashing on a ring (see `hashOn`).
    RingHash,
}

/// A request attribute to hash for sticky decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashOn {
    pub kind: HashKind,
    #[schemars(regex(pattern = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"))]
    /// Header or cookie name.
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HashKind {
    Header,
    Cookie,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// `host:port` the proxy connects to (for meshed peers, their inbound
    /// listener).
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// As last reported by the instance's own sidecar; unhealthy endpoints are
    /// not chosen.
    #[serde(default = "default_true")]
    pub healthy: bool,
    /// Labels of the instance, for display and metrics.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn default_weight() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// Whole request, all retries included. None: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Duration>,
    /// TCP connect to an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first try (so `2` means up to 3 tries).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// When to retry.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<RetryOn>,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default)]
    pub budget: RetryBudget,
}

fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::ConnectFailure, RetryOn::GatewayError]
}

/// A retry condition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// Any 5xx response.
    #[serde(rename = "5xx")]
    ServerError,
    /// 502, 503 or 504.
    GatewayError,
    /// The connection to the endpoint could not be made.
    ConnectFailure,
    /// The endpoint reset or closed the connection before answering.
    Reset,
    /// The per-try timeout fired.
    PerTryTimeout,
    /// One specific status code.
    #[serde(untagged)]
    Status(u16),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backoff {
    /// First retry waits a random time in `[0, baseInterval]`, doubling the
    /// bound on each retry (full jitter).
    #[serde(default = "default_backoff_base")]
    pub base_interval: Duration,
    #[serde(default = "default_backoff_max")]
    pub max_interval: Duration,
}

fn default_backoff_base() -> Duration {
    Duration::from_millis(25)
}

fn default_backoff_max() -> Duration {
    Duration::from_millis(250)
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base_interval: default_backoff_base(),
            max_interval: default_backoff_max(),
        }
    }
}

/// Retries may add at most `percent` of the live request rate, plus
/// `minRetriesPerSecond`, so that a failing upstream cannot be stormed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Percent, 0–100, of requests in the last 10 s that may be retries.
    #[serde(default = "default_budget_percent")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percent: f64,
    #[serde(default = "default_budget_min")]
    pub min_retries_per_second: u32,
}

fn default_budget_percent() -> f64 {
    20.0
}

fn default_budget_min() -> u32 {
    10
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            percent: default_budget_percent(),
            min_retries_per_second: default_budget_min(),
        }
    }
}

/// Limits past which the proxy answers 503 at once
/// (`x-gitmesh-overloaded: <limit>`), protecting the upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    #[serde(default = "default_limit")]
    pub max_connections: u32,
    #[serde(default = "default_limit")]
    pub max_pending_requests: u32,
    #[serde(default = "default_limit")]
    pub max_requests: u32,
}

fn default_limit() -> u32 {
    1024
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            max_connections: default_limit(),
            max_pending_requests: default_limit(),
            max_requests: default_limit(),
        }
    }
}

/// Passive health: endpoints that keep failing are ejected for a while.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Consecutive 5xx answers before ejection (0 disables).
    #[serde(default = "default_consecutive")]
    pub consecutive_5xx: u32,
    /// Consecutive connect failures or resets before ejection (0 disables).
    #[serde(default = "default_consecutive")]
    pub consecutive_connect_failures: u32,
    /// How often ejections are re-examined.
    #[serde(default = "default_outlier_interval")]
    pub interval: Duration,
    /// Ejection lasts `baseEjectionTime × times ejected so far`.
    #[serde(default = "default_base_ejection")]
    pub base_ejection_time: Duration,
    /// Never eject more than this percent (0–100) of a service's endpoints.
    #[serde(default = "default_max_ejection_percent")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub max_ejection_percent: f64,
}

fn default_consecutive() -> u32 {
    5
}

fn default_outlier_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_base_ejection() -> Duration {
    Duration::from_secs(30)
}

fn default_max_ejection_percent() -> f64 {
    50.0
}

/// Active health checks: the proxy probes each endpoint itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// HTTP path probed with GET; 2xx means healthy.
    #[schemars(regex(pattern = "^/"))]
    pub path: String,
    #[serde(default = "default_hc_interval")]
    pub interval: Duration,
    #[serde(default = "default_hc_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_hc_unhealthy")]
    pub unhealthy_threshold: u32,
    #[serde(default = "default_hc_healthy")]
    pub healthy_threshold: u32,
}

fn default_hc_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_hc_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_hc_unhealthy() -> u32 {
    3
}

fn default_hc_healthy() -> u32 {
    2
}

/// One HTTPRoute attached to an upstream. Rules of all routes of a service
/// are merged and ordered by Gateway API precedence in the proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// The HTTPRoute's name (for metrics, logs and precedence ties).
    pub name: String,
    pub rules: Vec<RouteRule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteRule {
    /// Any one match selects the rule; none means "match everything".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RouteMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// Weighted backends. Empty: answer 500 (Gateway API semantics).
    pub backends: Vec<Backend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<RouteTimeouts>,
    /// Overrides the upstream's retry policy for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Sticky split: hash this header or cookie to pick the backend, so one
    /// user stays on one version while weights hold still.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<HashOn>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<QueryParamMatch>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatch {
    #[serde(rename = "type", default)]
    pub kind: PathMatchType,
    pub value: String,
}

/// Gateway API path match types. `PathPrefix` matches whole segments:
/// `/v2` matches `/v2` and `/v2/x`, not `/v2x`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PathMatchType {
    Exact,
    #[default]
    PathPrefix,
    RegularExpression,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    /// Compared case-insensitively.
    #[schemars(regex(pattern = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"))]
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParamMatch {
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    /// Compared exactly (case-sensitive).
    pub name: String,
    pub value: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ValueMatchType {
    #[default]
    Exact,
    RegularExpression,
}

/// A weighted destination of a rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// An upstream of this config (usually the route's own service).
    pub service: String,
    /// Restrict to endpoints of this subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Relative weight; 0 takes no traffic.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Duration>,
    /// Each try to a backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<Duration>,
}

/// Request and response filters, Gateway API style.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "PascalCase", deny_unknown_fields)]
pub enum Filter {
    RequestHeaderModifier(HeaderModifier),
    ResponseHeaderModifier(HeaderModifier),
    RequestRedirect(Redirect),
    #[serde(rename = "URLRewrite")]
    UrlRewrite(UrlRewrite),
    RequestMirror(Mirror),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderModifier {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<Header>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<Header>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")))]
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Header {
    #[schemars(regex(pattern = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"))]
    pub name: String,
    #[schemars(regex(pattern = r"^[^\r\n\x00]*$"))]
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$"))]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "default_redirect_status")]
    pub status_code: u16,
}

fn default_redirect_status() -> u16 {
    302
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$"))]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

/// How a redirect or rewrite changes the path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "value")]
pub enum PathModifier {
    ReplaceFullPath(String),
    /// Replaces the part matched by the rule's `PathPrefix`.
    ReplacePrefixMatch(String),
}

/// Send a copy of a share of requests to another backend; its answer is
/// dropped and it never delays or fails the real request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mirror {
    pub backend: Backend,
    /// Percent (0–100) of matching requests to copy.
    #[serde(default = "default_hundred")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percent: f64,
}

fn default_hundred() -> f64 {
    100.0
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    pub duration: Duration,
    /// Percent (0–100) of requests delayed.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percent: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    #[schemars(range(min = 200, max = 599))]
    pub status: u16,
    /// Percent (0–100) of requests aborted.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percent: f64,
}
