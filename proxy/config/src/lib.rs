//! The proxy's configuration language: the pure-data contract between the
//! reconciler (which compiles policy into it) and the sidecar (which runs it).
//!
//! No IO and no async here, as in linkerd2-proxy's `client-policy`: serde
//! types, a [`Duration`] both sides print alike, validation that explains a
//! refusal, and a content digest.

pub mod api;
mod digest;
mod duration;
mod spiffe;
mod types;
mod validate;

pub use self::duration::{DURATION_PATTERN, Duration, DurationError};
pub use self::spiffe::PeerIdentity;
pub use self::types::{
    Action, Authorization, AuthorizationRule, Backend, Backoff, CircuitBreaker, Endpoint, Fault,
    FaultAbort, FaultDelay, Filter, HashKind, HashOn, Header, HeaderMatch, HeaderModifier,
    HealthCheck, Inbound, JwksSource, JwtAuthentication, JwtProvider, LoadBalancer,
    LoadBalancerPolicy, MeshSettings, Mirror, MtlsMode, OutlierDetection, PathMatch, PathMatchType,
    PathModifier, Permission, Protocol, ProxyConfig, QueryParamMatch, Redirect, RetryBudget,
    RetryOn, RetryPolicy, Route, RouteMatch, RouteRule, RouteTimeouts, SubsetSelector, Timeouts,
    Upstream, UrlRewrite, ValueMatchType,
};
pub use self::validate::{InvalidConfig, Problem, check_jwks_url};

/// The JSON Schema of the wire format, for editors and for `gitmesh schema`.
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(ProxyConfig)
}
