//! Policy → one [`ProxyConfig`] per service: the control plane compiling to
//! the data plane's language. Pure and deterministic: the same policies give
//! the same bytes whatever order the files were read in.
//!
//! Scoping: a service's sidecar gets only the upstreams its app may call —
//! those it declares in `spec.upstreams` and those whose Intentions name it
//! as an allowed source — plus the services their routes send to (backends
//! and mirrors). It never gets the whole mesh.

use std::collections::{BTreeMap, BTreeSet};

use gitmesh_proxy_config::{
    Action, Authorization, AuthorizationRule, Backend, Endpoint, Filter, HashKind, HashOn, Inbound,
    MeshSettings, Mirror, PathMatch, PathMatchType, PathModifier, Permission, ProxyConfig,
    Redirect, Route, RouteMatch, RouteRule, RouteTimeouts, SubsetSelector, Upstream, UrlRewrite,
};

use crate::index::Index;
use crate::load::PolicySet;
use crate::policy::{
    FilterType, HttpPathModifier, HttpRouteRule, IntentionsSpec, MeshSpec, PathModifierType,
    Rollout, Service, SessionPersistenceType,
};

/// Compiled configs, by service name.
pub type Snapshots = BTreeMap<String, ProxyConfig>;

/// Where each running canary stands: rollout name → percent of traffic on
/// the canary. A Rollout missing here has not started (0%).
pub type CanaryWeights = BTreeMap<String, u32>;

/// Compiles every service's config. `version` labels the snapshots (the
/// source commit); it does not enter their digests.
pub fn compile(set: &PolicySet, version: &str, canary: &CanaryWeights) -> Snapshots {
    let mesh = set
        .meshes
        .first()
        .map(|m| m.value.spec.clone())
        .unwrap_or_default();
    let services: BTreeMap<&str, &Service> = set
        .services
        .iter()
        .map(|s| (s.value.metadata.name.as_str(), &s.value))
        .collect();
    let intentions: BTreeMap<&str, &IntentionsSpec> = set
        .intentions
        .iter()
        .map(|i| (i.value.spec.destination.as_str(), &i.value.spec))
        .collect();
    let ix = Index::new(set);
    let allowed = allowed_destinations(&intentions);
    let upstreams: BTreeMap<&str, Upstream> = services
        .iter()
        .map(|(name, svc)| (*name, upstream(&ix, name, svc, canary)))
        .collect();
    services
        .iter()
        .map(|(name, svc)| {
            let config = ProxyConfig {
                version: version.to_string(),
                service: name.to_string(),
                mesh: MeshSettings {
                    trust_domain: mesh.trust_domain.clone(),
                    mtls: mesh.mtls.mode,
                },
                inbound: Inbound {
                    mtls: svc.spec.mtls,
                    authorization: authorization(&mesh, intentions.get(name).copied()),
                    jwt: svc.spec.jwt.clone(),
                },
                upstreams: callees(svc, allowed.get(name), &upstreams)
                    .into_iter()
                    .filter_map(|callee| upstreams.get(callee.as_str()).cloned())
                    .collect(),
            };
            (name.to_string(), config)
        })
        .collect()
}

/// For each source service, the destinations whose Intentions name it as an
/// allowed caller (explicitly: `*` does not widen a proxy's config).
fn allowed_destinations<'a>(
    intentions: &BTreeMap<&'a str, &'a IntentionsSpec>,
) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (destination, spec) in intentions {
        for s in &spec.sources {
            let allows = s.action == Some(Action::Allow) || !s.permissions.is_empty();
            if allows && s.name != *destination && s.name != "*" {
                out.entry(s.name.as_str()).or_default().push(destination);
            }
        }
    }
    out
}

/// The services `name` may call, closed over what their routes send to.
fn callees(
    svc: &Service,
    allowed: Option<&Vec<&str>>,
    upstreams: &BTreeMap<&str, Upstream>,
) -> BTreeSet<String> {
    let mut wanted: Vec<String> = svc.spec.upstreams.clone();
    wanted.extend(allowed.into_iter().flatten().map(|d| d.to_string()));
    let mut out = BTreeSet::new();
    while let Some(next) = wanted.pop() {
        if !upstreams.contains_key(next.as_str()) || !out.insert(next.clone()) {
            continue;
        }
        for route in &upstreams[next.as_str()].routes {
            for rule in &route.rules {
                wanted.extend(rule.backends.iter().map(|b| b.service.clone()));
                wanted.extend(rule.filters.iter().filter_map(|f| match f {
                    Filter::RequestMirror(m) => Some(m.backend.service.clone()),
                    _ => None,
                }));
            }
        }
    }
    out
}

fn upstream(ix: &Index, name: &str, svc: &Service, canary: &CanaryWeights) -> Upstream {
    let spec = &svc.spec;
    let subsets: Vec<SubsetSelector> = spec
        .subsets
        .iter()
        .map(|s| SubsetSelector {
            name: s.name.clone(),
            labels: s.labels.clone(),
        })
        .collect();
    let endpoints = spec
        .endpoints
        .iter()
        .map(|e| Endpoint {
            address: e.address.clone(),
            subset: SubsetSelector::find(&subsets, &e.labels).map(|s| s.name.clone()),
            weight: 1,
            healthy: true,
            labels: e.labels.clone(),
        })
        .collect();
    let rollout = ix.rollout_of(name).map(|r| &r.value);
    let attached = ix.routes_of(name);
    let mut routes: Vec<Route> = attached
        .iter()
        .map(|r| Route {
            name: r.value.metadata.name.clone(),
            rules: r.value.spec.rules.iter().map(rule).collect(),
        })
        .collect();
    if let Some(rollout) = rollout {
        let weight = canary
            .get(&rollout.metadata.name)
            .copied()
            .unwrap_or(0)
            .min(100);
        apply_canary(name, rollout, weight, &mut routes);
    }
    Upstream {
        name: name.to_string(),
        protocol: spec.protocol,
        mtls: spec.mtls,
        load_balancer: spec.load_balancer.clone(),
        endpoints,
        subsets,
        timeouts: spec.timeouts.clone(),
        retries: spec.retries.clone(),
        circuit_breaker: spec.circuit_breaker.clone(),
        outlier_detection: spec.outlier_detection.clone(),
        health_check: spec.health_check.clone(),
        routes,
    }
}

/// The rollout owns the split between its stable and canary subsets: in its
/// route's rules that send to the stable subset, the two get `100 - weight`
/// and `weight` (rules sending only to the canary keep their backends).
/// Without a route, a catch-all route carries the split.
fn apply_canary(service: &str, rollout: &Rollout, weight: u32, routes: &mut Vec<Route>) {
    let spec = &rollout.spec;
    let split = || {
        vec![
            Backend {
                service: service.to_string(),
                subset: Some(spec.stable_subset.clone()),
                weight: 100 - weight,
            },
            Backend {
                service: service.to_string(),
                subset: Some(spec.canary_subset.clone()),
                weight,
            },
        ]
    };
    match &spec.route {
        Some(route_name) => {
            for route in routes.iter_mut().filter(|r| &r.name == route_name) {
                for rule in &mut route.rules {
                    let ours = |b: &Backend| {
                        b.service == service
                            && (b.subset.as_deref() == Some(spec.stable_subset.as_str())
                                || b.subset.as_deref() == Some(spec.canary_subset.as_str()))
                    };
                    let stable = |b: &Backend| {
                        b.service == service
                            && b.subset.as_deref() == Some(spec.stable_subset.as_str())
                    };
                    if rule.backends.iter().any(stable) {
                        rule.backends.retain(|b| !ours(b));
                        rule.backends.extend(split());
                    }
                }
            }
        }
        None => {
            routes.push(Route {
                name: format!("rollout-{}", rollout.metadata.name),
                rules: vec![RouteRule {
                    matches: Vec::new(),
                    filters: Vec::new(),
                    backends: split(),
                    timeouts: None,
                    retries: None,
                    fault: None,
                    sticky: None,
                }],
            });
        }
    }
}

fn rule(r: &HttpRouteRule) -> RouteRule {
    RouteRule {
        matches: r
            .matches
            .iter()
            .map(|m| RouteMatch {
                path: m.path.clone(),
                method: m.method.clone(),
                headers: m.headers.clone(),
                query_params: m.query_params.clone(),
            })
            .collect(),
        filters: r.filters.iter().filter_map(filter).collect(),
        backends: r
            .backend_refs
            .iter()
            .map(|b| Backend {
                service: b.name.clone(),
                subset: b.subset.clone(),
                weight: b.weight.clamp(0, u32::MAX as i64) as u32,
            })
            .collect(),
        timeouts: r.timeouts.as_ref().map(|t| RouteTimeouts {
            request: t.request,
            backend_request: t.backend_request,
        }),
        retries: r.retry.clone(),
        fault: r.fault.clone(),
        sticky: r.session_persistence.as_ref().map(|s| HashOn {
            kind: match s.kind {
                SessionPersistenceType::Cookie => HashKind::Cookie,
                SessionPersistenceType::Header => HashKind::Header,
            },
            name: s.session_name.clone(),
        }),
    }
}

fn path_modifier(m: &HttpPathModifier) -> Option<PathModifier> {
    match m.kind {
        PathModifierType::ReplaceFullPath => m
            .replace_full_path
            .clone()
            .map(PathModifier::ReplaceFullPath),
        PathModifierType::ReplacePrefixMatch => m
            .replace_prefix_match
            .clone()
            .map(PathModifier::ReplacePrefixMatch),
    }
}

fn filter(f: &crate::policy::HttpRouteFilter) -> Option<Filter> {
    Some(match f.kind {
        FilterType::RequestHeaderModifier => {
            Filter::RequestHeaderModifier(f.request_header_modifier.clone()?)
        }
        FilterType::ResponseHeaderModifier => {
            Filter::ResponseHeaderModifier(f.response_header_modifier.clone()?)
        }
        FilterType::RequestRedirect => {
            let r = f.request_redirect.as_ref()?;
            Filter::RequestRedirect(Redirect {
                scheme: r.scheme.clone(),
                hostname: r.hostname.clone(),
                port: r.port.and_then(|p| u16::try_from(p).ok()),
                path: r.path.as_ref().and_then(path_modifier),
                status_code: r.status_code,
            })
        }
        FilterType::UrlRewrite => {
            let r = f.url_rewrite.as_ref()?;
            Filter::UrlRewrite(UrlRewrite {
                hostname: r.hostname.clone(),
                path: r.path.as_ref().and_then(path_modifier),
            })
        }
        FilterType::RequestMirror => {
            let m = f.request_mirror.as_ref()?;
            Filter::RequestMirror(Mirror {
                backend: Backend {
                    service: m.backend_ref.name.clone(),
                    subset: m.backend_ref.subset.clone(),
                    weight: 1,
                },
                percent: m.percent,
            })
        }
    })
}

fn authorization(mesh: &MeshSpec, intentions: Option<&IntentionsSpec>) -> Authorization {
    let mut rules: Vec<AuthorizationRule> = intentions
        .map(|spec| {
            spec.sources
                .iter()
                .map(|s| AuthorizationRule {
                    source: s.name.clone(),
                    action: s.action.unwrap_or(Action::Allow),
                    permissions: by_specificity(
                        s.permissions
                            .iter()
                            .map(|p| Permission {
                                action: p.action,
                                methods: p.http.methods.clone(),
                                path: permission_path(&p.http),
                                headers: p.http.headers.clone(),
                                claims: p.claims.clone(),
                            })
                            .collect(),
                    ),
                })
                .collect()
        })
        .unwrap_or_default();
    rules.sort_by(|a, b| a.source.cmp(&b.source));
    Authorization {
        default_action: mesh.default_intention,
        rules,
    }
}

/// Most specific first, so that the proxy's first fit is the most specific
/// one: exact path, then prefix (longer first), then regex, then no path;
/// then more header and claim conditions, then a method list over any
/// method. A stable sort: file order among equals.
fn by_specificity(mut permissions: Vec<Permission>) -> Vec<Permission> {
    permissions.sort_by_key(|p| {
        let (path_rank, prefix_len) = match &p.path {
            Some(PathMatch {
                kind: PathMatchType::Exact,
                ..
            }) => (0, 0),
            Some(PathMatch {
                kind: PathMatchType::PathPrefix,
                value,
            }) => (1, usize::MAX - value.trim_end_matches('/').len()),
            Some(PathMatch {
                kind: PathMatchType::RegularExpression,
                ..
            }) => (2, 0),
            None => (3, 0),
        };
        (
            path_rank,
            prefix_len,
            usize::MAX - (p.headers.len() + p.claims.len()),
            p.methods.is_empty(),
        )
    });
    permissions
}

fn permission_path(http: &crate::policy::HttpPermission) -> Option<PathMatch> {
    let (kind, value) = if let Some(v) = &http.path_exact {
        (PathMatchType::Exact, v)
    } else if let Some(v) = &http.path_prefix {
        (PathMatchType::PathPrefix, v)
    } else {
        (PathMatchType::RegularExpression, http.path_regex.as_ref()?)
    };
    Some(PathMatch {
        kind,
        value: value.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::lint;
    use crate::source::SourceFile;

    const MESH: &str = r#"
apiVersion: gitmesh.dev/v1alpha1
kind: Service
metadata: {name: productpage}
spec: {port: 9080, upstreams: [reviews]}
---
apiVersion: gitmesh.dev/v1alpha1
kind: Service
metadata: {name: reviews}
spec:
  port: 9080
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
  endpoints:
    - {address: "127.0.0.1:9001", labels: {version: v1}}
---
apiVersion: gitmesh.dev/v1alpha1
kind: Service
metadata: {name: ratings}
spec: {port: 9080}
---
apiVersion: gitmesh.dev/v1alpha1
kind: Service
metadata: {name: details}
spec: {port: 9080}
---
apiVersion: gitmesh.dev/v1alpha1
kind: Intentions
metadata: {name: ratings}
spec:
  destination: ratings
  sources: [{name: reviews, action: allow}]
---
apiVersion: gitmesh.dev/v1alpha1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{name: reviews}]
  rules:
    - backendRefs: [{name: reviews, subset: v1, weight: 90}, {name: reviews, subset: v2, weight: 10}]
"#;

    fn snapshots(files: &[SourceFile], canary: &CanaryWeights) -> Snapshots {
        let result = lint(files);
        assert_eq!(result.errors(), 0, "{:#?}", result.diagnostics);
        compile(&result.policies, "v1", canary)
    }

    #[test]
    fn each_proxy_gets_only_what_it_calls() {
        let s = snapshots(&[SourceFile::new("m.yaml", MESH)], &CanaryWeights::new());
        let names = |svc: &str| -> Vec<String> {
            s[svc].upstreams.iter().map(|u| u.name.clone()).collect()
        };
        assert_eq!(names("productpage"), ["reviews"]);
        assert_eq!(names("reviews"), ["ratings"], "via the ratings intention");
        assert!(names("details").is_empty());
        let reviews = &s["productpage"].upstreams[0];
        assert_eq!(reviews.endpoints[0].subset.as_deref(), Some("v1"));
        assert_eq!(reviews.routes[0].rules[0].backends[1].weight, 10);
        let ratings_in = &s["ratings"].inbound.authorization;
        assert_eq!(ratings_in.default_action, Action::Deny);
        assert_eq!(ratings_in.rules[0].source, "reviews");
    }

    #[test]
    fn same_bytes_whatever_the_file_order() {
        let docs: Vec<&str> = MESH.split("\n---\n").collect();
        let forward: Vec<_> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| SourceFile::new(format!("f{i}.yaml"), *d))
            .collect();
        let backward: Vec<_> = docs
            .iter()
            .rev()
            .enumerate()
            .map(|(i, d)| SourceFile::new(format!("f{i}.yaml"), *d))
            .collect();
        let a = snapshots(&forward, &CanaryWeights::new());
        let b = snapshots(&backward, &CanaryWeights::new());
        for (name, config) in &a {
            assert_eq!(
                config.to_canonical_json(),
                b[name].to_canonical_json(),
                "{name}"
            );
            assert_eq!(config.digest(), b[name].digest());
        }
    }

    #[test]
    fn a_rollout_owns_the_split_of_its_route() {
        let rollout = r#"
apiVersion: gitmesh.dev/v1alpha1
kind: Rollout
metadata: {name: reviews-v2}
spec: {service: reviews, route: reviews, stableSubset: v1, canarySubset: v2, steps: [10, 50, 100]}
"#;
        let files = [
            SourceFile::new("m.yaml", MESH),
            SourceFile::new("r.yaml", rollout),
        ];
        let weights = |canary: &CanaryWeights| -> Vec<(Option<String>, u32)> {
            snapshots(&files, canary)["productpage"].upstreams[0].routes[0].rules[0]
                .backends
                .iter()
                .map(|b| (b.subset.clone(), b.weight))
                .collect()
        };
        assert_eq!(
            weights(&CanaryWeights::new()),
            [(Some("v1".into()), 100), (Some("v2".into()), 0)]
        );
        let at_50 = CanaryWeights::from([("reviews-v2".to_string(), 50)]);
        assert_eq!(
            weights(&at_50),
            [(Some("v1".into()), 50), (Some("v2".into()), 50)]
        );
    }

    #[test]
    fn permissions_are_ordered_most_specific_first_and_jwt_is_compiled() {
        let policy = r#"
apiVersion: gitmesh.dev/v1alpha1
kind: Service
metadata: {name: api}
spec:
  port: 8080
  jwt:
    providers:
      - issuer: https://idp.example
        audiences: [api]
        jwks: {url: "https://idp.example/jwks.json"}
---
apiVersion: gitmesh.dev/v1alpha1
kind: Intentions
metadata: {name: api}
spec:
  destination: api
  sources:
    - name: "*"
      permissions:
        - {action: allow, http: {methods: [GET]}}
        - {action: allow, http: {pathRegex: "/v[0-9]+/.*"}}
        - {action: allow, http: {pathPrefix: /api}}
        - {action: allow, http: {pathPrefix: /api/admin}, claims: {role: admin}}
        - {action: deny, http: {pathPrefix: /api/admin}}
        - {action: deny, http: {pathExact: /api/admin/keys}}
"#;
        let s = snapshots(
            &[
                SourceFile::new("m.yaml", MESH),
                SourceFile::new("api.yaml", policy),
            ],
            &CanaryWeights::new(),
        );
        let inbound = &s["api"].inbound;
        let order: Vec<(Option<&str>, Action, usize)> = inbound.authorization.rules[0]
            .permissions
            .iter()
            .map(|p| {
                (
                    p.path.as_ref().map(|p| p.value.as_str()),
                    p.action,
                    p.claims.len(),
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                (Some("/api/admin/keys"), Action::Deny, 0),
                (Some("/api/admin"), Action::Allow, 1),
                (Some("/api/admin"), Action::Deny, 0),
                (Some("/api"), Action::Allow, 0),
                (Some("/v[0-9]+/.*"), Action::Allow, 0),
                (None, Action::Allow, 0),
            ]
        );
        let jwt = inbound.jwt.as_ref().expect("jwt compiled");
        assert!(jwt.required);
        assert_eq!(jwt.providers[0].audiences, ["api"]);
        s["api"].validate().expect("valid wire config");
    }
}
