//! Inbound authorization: compiled intentions and the pure decision of
//! whether one request may reach the local app.
//!
//! Order of evaluation (the most specific rule wins):
//!
//! 1. **Source.** The rule whose `source` names the caller's service exactly
//!    (from its verified SPIFFE ID, in the mesh's trust domain) applies;
//!    only when there is none does the `*` rule apply. A caller without an
//!    identity (a plaintext connection) or from another trust domain matches
//!    only `*`. The applicable rule decides alone: an exact rule whose
//!    permissions do not fit does not fall through to `*`.
//! 2. **Permissions** of that rule, in the order the reconciler compiled
//!    them (most specific first: exact path, then longer prefix, then
//!    regex, then no path; more header and claim conditions first): the
//!    first whose method, path, headers and claims all fit decides.
//! 3. **The rule's action**, when it has no permissions.
//! 4. **The default** (`Mesh.defaultIntention`) when no rule applies or no
//!    permission of the applicable rule fits.
//!
//! Paths are matched after [`path::normalize`].

mod authn;
mod jwks;
pub mod jwt;
pub mod path;
mod verified;

pub use self::authn::JwtAuthenticator;

use std::collections::BTreeMap;
use std::fmt;

use gitmesh_proxy_config::{Action, Authorization, AuthorizationRule, Permission};
use http::{HeaderMap, HeaderName, Method};
use serde_json::{Map, Value};

use crate::peer::PeerIdentity;
use crate::routing::{PathMatcher, ValueMatcher};

/// What the decision looks at.
#[derive(Clone, Copy, Debug)]
pub struct AuthzRequest<'a> {
    pub peer: Option<&'a PeerIdentity>,
    pub method: &'a Method,
    /// Already normalized.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The verified JWT's claims, if the request carried one.
    pub claims: Option<&'a Map<String, Value>>,
}

/// Which rule decided, for the `x-gitmesh-rule` header and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecidedBy {
    /// `source=<name>` (the rule's action).
    Source(String),
    /// `source=<name> permission=<index>`.
    Permission(String, usize),
    /// No permission of `source=<name>` fit; the default applied.
    NoPermissionFits(String),
    /// No rule names the caller; the default applied.
    Default,
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecidedBy::Source(s) => write!(f, "source={s}"),
            DecidedBy::Permission(s, i) => write!(f, "source={s} permission={i}"),
            DecidedBy::NoPermissionFits(s) => write!(f, "source={s} no-permission-fits default"),
            DecidedBy::Default => f.write_str("default"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub by: DecidedBy,
    /// Set when an allowing permission fit in everything but its claims:
    /// the claims it missed (so a 403 can say why).
    pub missing_claims: Vec<String>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.action == Action::Allow
    }

    /// The `x-gitmesh-error` reason of a denial.
    pub fn reason(&self) -> &'static str {
        if self.missing_claims.is_empty() {
            "denied-by-intention"
        } else {
            "missing-claim"
        }
    }
}

#[derive(Debug)]
struct CompiledPermission {
    action: Action,
    methods: Vec<Method>,
    path: Option<PathMatcher>,
    headers: Vec<(HeaderName, ValueMatcher)>,
    claims: BTreeMap<String, String>,
}

#[derive(Debug)]
struct CompiledRule {
    source: String,
    action: Action,
    permissions: Vec<CompiledPermission>,
}

/// Intentions compiled once per config.
#[derive(Debug)]
pub struct Authorizer {
    trust_domain: String,
    default_action: Action,
    exact: BTreeMap<String, CompiledRule>,
    any: Option<CompiledRule>,
}

impl Authorizer {
    /// Compiles `auth` (validated). Errors name the field, as
    /// `InvalidConfig` problems do.
    pub fn compile(
        trust_domain: &str,
        auth: &Authorization,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut exact = BTreeMap::new();
        let mut any = None;
        for (i, rule) in auth.rules.iter().enumerate() {
            let at = format!("inbound.authorization.rules[{i}]");
            let compiled = compile_rule(&at, rule, &mut problems);
            let duplicate = if rule.source == "*" {
                any.replace(compiled).is_some()
            } else {
                exact.insert(rule.source.clone(), compiled).is_some()
            };
            if duplicate {
                problems.push((
                    format!("{at}.source"),
                    format!("source `{}` has more than one rule", rule.source),
                ));
            }
        }
        if problems.is_empty() {
            Ok(Authorizer {
                trust_domain: trust_domain.to_string(),
                default_action: auth.default_action,
                exact,
                any,
            })
        } else {
            Err(problems)
        }
    }

    /// Whether the request may pass, and which rule said so.
    pub fn decide(&self, req: &AuthzRequest<'_>) -> Decision {
        let named = req
            .peer
            .filter(|p| p.trust_domain() == self.trust_domain)
            .and_then(|p| self.exact.get(p.service()));
        let Some(rule) = named.or(self.any.as_ref()) else {
            return Decision {
                action: self.default_action,
                by: DecidedBy::Default,
                missing_claims: Vec::new(),
            };
        };
        if rule.permissions.is_empty() {
            return Decision {
                action: rule.action,
                by: DecidedBy::Source(rule.source.clone()),
                missing_claims: Vec::new(),
            };
        }
        let mut missing_claims = Vec::new();
        for (i, p) in rule.permissions.iter().enumerate() {
            if !p.fits_request(req) {
                continue;
            }
            let missing = p.missing_claims(req.claims);
            if missing.is_empty() {
                return Decision {
                    action: p.action,
                    by: DecidedBy::Permission(rule.source.clone(), i),
                    missing_claims: Vec::new(),
                };
            }
            if p.action == Action::Allow && missing_claims.is_empty() {
                missing_claims = missing;
            }
        }
        let action = self.default_action;
        Decision {
            action,
            by: DecidedBy::NoPermissionFits(rule.source.clone()),
            missing_claims: if action == Action::Deny {
                missing_claims
            } else {
                Vec::new()
            },
        }
    }
}

fn compile_rule(
    at: &str,
    rule: &AuthorizationRule,
    problems: &mut Vec<(String, String)>,
) -> CompiledRule {
    let permissions = rule
        .permissions
        .iter()
        .enumerate()
        .filter_map(|(j, p)| compile_permission(&format!("{at}.permissions[{j}]"), p, problems))
        .collect();
    CompiledRule {
        source: rule.source.clone(),
        action: rule.action,
        permissions,
    }
}

fn compile_permission(
    at: &str,
    p: &Permission,
    problems: &mut Vec<(String, String)>,
) -> Option<CompiledPermission> {
    let before = problems.len();
    let methods = p
        .methods
        .iter()
        .filter_map(
            |m| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => Some(m),
                Err(_) => {
                    problems.push((
                        format!("{at}.methods"),
                        format!("`{m}` is not an HTTP method"),
                    ));
                    None
                }
            },
        )
        .collect();
    let path = p
        .path
        .as_ref()
        .and_then(|path| match PathMatcher::compile(path) {
            Ok(m) => Some(m),
            Err(e) => {
                problems.push((format!("{at}.path"), e.0));
                None
            }
        });
    let headers = p
        .headers
        .iter()
        .filter_map(|h| {
            let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes());
            match (name, ValueMatcher::compile(h.kind, &h.value)) {
                (Ok(n), Ok(m)) => Some((n, m)),
                (Err(_), _) => {
                    problems.push((
                        format!("{at}.headers"),
                        format!("`{}` is not a header name", h.name),
                    ));
                    None
                }
                (_, Err(e)) => {
                    problems.push((format!("{at}.headers"), e.0));
                    None
                }
            }
        })
        .collect();
    (problems.len() == before).then(|| CompiledPermission {
        action: p.action,
        methods,
        path,
        headers,
        claims: p.claims.clone(),
    })
}

impl CompiledPermission {
    /// Method, path and headers (claims are checked apart, to explain a 403).
    fn fits_request(&self, req: &AuthzRequest<'_>) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(req.method) {
            return false;
        }
        if let Some(p) = &self.path
            && p.matches(req.path).is_none()
        {
            return false;
        }
        self.headers.iter().all(|(name, m)| {
            req.headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| m.matches(v)))
        })
    }

    /// The required claims the token lacks (all of them without a token).
    fn missing_claims(&self, claims: Option<&Map<String, Value>>) -> Vec<String> {
        self.claims
            .iter()
            .filter(|(name, want)| {
                !claims
                    .and_then(|c| c.get(*name))
                    .is_some_and(|v| claim_has(name, v, want))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// A string claim equal to `want`, an array containing it, or a number or
/// boolean printing as it. A space-separated `scope` string contains it.
fn claim_has(name: &str, value: &Value, want: &str) -> bool {
    match value {
        Value::String(s) if name == "scope" => s.split(' ').any(|part| part == want),
        Value::String(s) => s == want,
        Value::Array(items) => items.iter().any(|v| v.as_str() == Some(want)),
        Value::Bool(b) => b.to_string() == want,
        Value::Number(n) => n.to_string() == want,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
