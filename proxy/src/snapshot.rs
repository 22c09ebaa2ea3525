//! Compiles a validated [`ProxyConfig`] into the immutable [`Snapshot`] the
//! request path reads: route tables, rules with their filters and splits,
//! pools of endpoints with balancers, and pre-resolved metric handles.
//!
//! Live state (connection pools, endpoint health, ejections, in-flight
//! counts) is carried over from the previous snapshot where the new config
//! still names the same service and endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use gitmesh_proxy_config::{
    Filter, HealthCheck, InvalidConfig, MtlsMode, Problem, Protocol, ProxyConfig, Redirect,
    RouteRule, Upstream,
};

use crate::authz::{Authorizer, JwtAuthenticator};
use crate::balance::Balancer;
use crate::breaker::Breaker;
use crate::connect::{ClientKey, UpstreamClient};
use crate::endpoint::EndpointState;
use crate::fault::FaultPlan;
use crate::metrics::{Metrics, TrafficMetrics};
use crate::mtls::{MeshTls, UpstreamTls};
use crate::outlier::OutlierPolicy;
use crate::pool::{Pool, UpstreamService};
use crate::retry::RetryPlan;
use crate::routing::{HeaderEdit, Rewrite, RouteTable};
use crate::split::{HashKey, Split};

/// Everything the request path needs from one config version.
#[derive(Debug)]
pub struct Snapshot {
    pub config: ProxyConfig,
    /// `/config`'s body, rendered once.
    pub config_json: Bytes,
    /// Routing per destination service name (what the app puts in Host).
    pub services: HashMap<String, ServiceRoutes>,
    pub upstreams: Vec<Arc<UpstreamService>>,
    pub inbound_metrics: TrafficMetrics,
    /// Whole-service pools to probe, with their checks.
    pub health_checks: Vec<(Arc<Pool>, HealthCheck)>,
    /// Intentions, compiled.
    pub authorizer: Authorizer,
    /// JWT authentication; its key caches survive config swaps that keep
    /// the same JWT settings.
    pub jwt: Option<Arc<JwtAuthenticator>>,
}

#[derive(Debug)]
pub struct ServiceRoutes {
    pub name: String,
    /// `None` when the service has no routes: rule 0 takes everything.
    pub table: Option<RouteTable>,
    pub rules: Vec<Rule>,
}

/// One compiled route rule.
#[derive(Debug)]
pub struct Rule {
    pub route: Arc<str>,
    pub request_headers: Vec<HeaderEdit>,
    pub response_headers: Vec<HeaderEdit>,
    pub redirect: Option<(Redirect, StatusCode)>,
    pub rewrite: Option<Rewrite>,
    pub mirrors: Vec<(Arc<Pool>, f64)>,
    pub split: Split<Arc<Pool>>,
    pub sticky: Option<HashKey>,
    pub request_timeout: Option<Duration>,
    pub per_try_timeout: Option<Duration>,
    pub retry: Option<Arc<RetryPlan>>,
    pub fault: Option<FaultPlan>,
}

struct Compiler<'a> {
    config: &'a ProxyConfig,
    metrics: &'a Metrics,
    previous: Option<&'a Snapshot>,
    tls: Option<&'a Arc<MeshTls>>,
    problems: Vec<Problem>,
    upstreams: HashMap<String, Arc<UpstreamService>>,
    pools: HashMap<(String, Option<String>), Arc<Pool>>,
}

impl Snapshot {
    /// Compiles `config` (already validated). Problems that only show here
    /// (header names or values that are not valid HTTP) refuse the config.
    pub fn compile(
        config: ProxyConfig,
        metrics: &Metrics,
        previous: Option<&Snapshot>,
        tls: Option<&Arc<MeshTls>>,
    ) -> Result<Snapshot, InvalidConfig> {
        let mut c = Compiler {
            config: &config,
            metrics,
            previous,
            tls,
            problems: Vec::new(),
            upstreams: HashMap::new(),
            pools: HashMap::new(),
        };
        for u in &config.upstreams {
            if let Some(s) = c.upstream(u) {
                c.upstreams.insert(u.name.clone(), Arc::new(s));
            }
        }
        let mut services = HashMap::new();
        for u in &config.upstreams {
            if let Some(routes) = c.routes(u) {
                services.insert(u.name.clone(), routes);
            }
        }
        let mut health_checks = Vec::new();
        for u in &config.upstreams {
            if let Some(check) = &u.health_check
                && let Some(pool) = c.pool(&u.name, None)
            {
                health_checks.push((pool, check.clone()));
            }
        }
        let authorizer =
            match Authorizer::compile(&config.mesh.trust_domain, &config.inbound.authorization) {
                Ok(a) => Some(a),
                Err(problems) => {
                    for (at, message) in problems {
                        c.problem(at, message);
                    }
                    None
                }
            };
        let jwt = config.inbound.jwt.as_ref().map(|settings| {
            match previous.and_then(|p| p.jwt.as_ref()) {
                Some(old) if old.config() == settings => old.clone(),
                _ => Arc::new(JwtAuthenticator::new(settings.clone())),
            }
        });
        if !c.problems.is_empty() {
            return Err(InvalidConfig {
                problems: c.problems,
            });
        }
        let mut upstreams: Vec<_> = c.upstreams.into_values().collect();
        drop(c.pools);
        upstreams.sort_by(|a, b| a.name.cmp(&b.name));
        let config_json = Bytes::from(
            serde_json::to_vec_pretty(&serde_json::json!({
                "version": config.version,
                "digest": config.digest(),
                "config": config,
            }))
            .expect("a config always serializes"),
        );
        let inbound_metrics = metrics.traffic("inbound", &config.service, "");
        Ok(Snapshot {
            config,
            config_json,
            services,
            upstreams,
            inbound_metrics,
            health_checks,
            authorizer: authorizer.expect("no problems, so it compiled"),
            jwt,
        })
    }

    fn previous_upstream(&self, name: &str) -> Option<&Arc<UpstreamService>> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

impl Compiler<'_> {
    /// mTLS to `u`'s sidecars when this proxy has an identity and neither
    /// the mesh nor the upstream service turned mTLS off.
    fn upstream_tls(&self, u: &Upstream) -> Option<UpstreamTls> {
        let mode = u.mtls.unwrap_or(self.config.mesh.mtls);
        if mode == MtlsMode::Disabled {
            return None;
        }
        self.tls.and_then(|t| t.upstream(&u.name))
    }

    fn problem(&mut self, at: String, message: impl Into<String>) {
        self.problems.push(Problem {
            at,
            message: message.into(),
        });
    }

    fn upstream(&mut self, u: &Upstream) -> Option<UpstreamService> {
        let at = format!("upstreams[{}]", u.name);
        let previous = self.previous.and_then(|p| p.previous_upstream(&u.name));
        let key = ClientKey {
            http2: matches!(u.protocol, Protocol::Http2 | Protocol::Grpc),
            connect_timeout: u.timeouts.connect.map(|d| d.to_std()),
            tls: self.upstream_tls(u),
        };
        let (client, in_flight) = match previous {
            Some(p) if p.client.key == key => (p.client.clone(), p.in_flight.clone()),
            Some(p) => (UpstreamClient::new(key), p.in_flight.clone()),
            None => (UpstreamClient::new(key), Arc::default()),
        };
        let mut endpoints = Vec::with_capacity(u.endpoints.len());
        for (i, e) in u.endpoints.iter().enumerate() {
            let reused = previous.and_then(|p| p.endpoints.iter().find(|s| s.address == e.address));
            let state = match reused {
                Some(s) => s.clone(),
                None => match EndpointState::new(&e.address) {
                    Ok(s) => Arc::new(s),
                    Err(m) => {
                        self.problem(format!("{at}.endpoints[{i}].address"), m);
                        continue;
                    }
                },
            };
            state.reported_healthy.store(e.healthy, Ordering::Relaxed);
            endpoints.push(state);
        }
        let hash_on = match u.load_balancer.hash_on.as_ref().map(HashKey::compile) {
            Some(Ok(k)) => Some(k),
            Some(Err(m)) => {
                self.problem(format!("{at}.loadBalancer.hashOn"), m);
                None
            }
            None => None,
        };
        let breaker = Breaker::new(
            u.circuit_breaker.clone(),
            !client.key.http2,
            in_flight.clone(),
            client.counters.clone(),
        );
        Some(UpstreamService {
            name: u.name.clone(),
            client,
            breaker,
            in_flight,
            outlier: u.outlier_detection.as_ref().map(OutlierPolicy::new),
            endpoints,
            hash_on,
            metrics: self.metrics.service(&u.name),
        })
    }

    /// The pool of `service` restricted to `subset`, built once per config.
    fn pool(&mut self, service: &str, subset: Option<&str>) -> Option<Arc<Pool>> {
        let key = (service.to_string(), subset.map(str::to_string));
        if let Some(p) = self.pools.get(&key) {
            return Some(p.clone());
        }
        let upstream = self.upstreams.get(service)?.clone();
        let config = self.config.upstreams.iter().find(|u| u.name == service)?;
        let mut endpoints = Vec::new();
        let mut weights = Vec::new();
        for e in &config.endpoints {
            if subset.is_some() && e.subset.as_deref() != subset {
                continue;
            }
            if let Some(s) = upstream.endpoints.iter().find(|s| s.address == e.address) {
                endpoints.push(s.clone());
                weights.push((e.address.clone(), e.weight));
            }
        }
        let balancer = Balancer::new(
            config.load_balancer.policy,
            weights.iter().map(|(a, w)| (a.as_str(), *w)),
        );
        let pool = Arc::new(Pool {
            metrics: self
                .metrics
                .traffic("outbound", service, subset.unwrap_or("")),
            service: upstream,
            subset: subset.map(str::to_string),
            endpoints,
            balancer,
        });
        self.pools.insert(key, pool.clone());
        Some(pool)
    }

    fn routes(&mut self, u: &Upstream) -> Option<ServiceRoutes> {
        self.upstreams.get(&u.name)?;
        let default_retry = u.retries.as_ref().map(|r| Arc::new(RetryPlan::new(r)));
        if u.routes.is_empty() {
            let pool = self.pool(&u.name, None)?;
            let rule = Rule {
                route: Arc::from(""),
                request_headers: Vec::new(),
                response_headers: Vec::new(),
                redirect: None,
                rewrite: None,
                mirrors: Vec::new(),
                split: Split::new([(pool, 1)]),
                sticky: None,
                request_timeout: u.timeouts.request.map(|d| d.to_std()),
                per_try_timeout: default_retry.as_ref().and_then(|r| r.per_try_timeout),
                retry: default_retry,
                fault: None,
            };
            return Some(ServiceRoutes {
                name: u.name.clone(),
                table: None,
                rules: vec![rule],
            });
        }
        let table = match RouteTable::compile(&u.routes) {
            Ok(t) => Some(t),
            Err(errors) => {
                for (at, e) in errors {
                    self.problem(format!("upstreams[{}].{at}", u.name), e.0);
                }
                None
            }
        };
        let mut rules = Vec::new();
        for route in &u.routes {
            let name: Arc<str> = Arc::from(route.name.as_str());
            for (i, rule) in route.rules.iter().enumerate() {
                let at = format!("upstreams[{}].routes[{}].rules[{i}]", u.name, route.name);
                rules.push(self.rule(&at, name.clone(), rule, u, &default_retry));
            }
        }
        Some(ServiceRoutes {
            name: u.name.clone(),
            table: Some(table?),
            rules,
        })
    }

    fn rule(
        &mut self,
        at: &str,
        route: Arc<str>,
        rule: &RouteRule,
        u: &Upstream,
        default_retry: &Option<Arc<RetryPlan>>,
    ) -> Rule {
        let mut request_headers = Vec::new();
        let mut response_headers = Vec::new();
        let mut redirect = None;
        let mut rewrite = None;
        let mut mirrors = Vec::new();
        for (i, f) in rule.filters.iter().enumerate() {
            let at = format!("{at}.filters[{i}]");
            match f {
                Filter::RequestHeaderModifier(m) => match HeaderEdit::compile(m) {
                    Ok(e) => request_headers.push(e),
                    Err(e) => self.problem(at, e.0),
                },
                Filter::ResponseHeaderModifier(m) => match HeaderEdit::compile(m) {
                    Ok(e) => response_headers.push(e),
                    Err(e) => self.problem(at, e.0),
                },
                Filter::RequestRedirect(r) => match StatusCode::from_u16(r.status_code) {
                    Ok(s) => redirect = Some((r.clone(), s)),
                    Err(_) => self.problem(at, "not an HTTP status"),
                },
                Filter::UrlRewrite(r) => match Rewrite::compile(r) {
                    Ok(r) => rewrite = Some(r),
                    Err(e) => self.problem(at, e.0),
                },
                Filter::RequestMirror(m) => {
                    if let Some(pool) = self.pool(&m.backend.service, m.backend.subset.as_deref()) {
                        mirrors.push((pool, m.percent));
                    }
                }
            }
        }
        let mut backends = Vec::new();
        for b in &rule.backends {
            if let Some(pool) = self.pool(&b.service, b.subset.as_deref()) {
                backends.push((pool, b.weight));
            }
        }
        let sticky = match rule.sticky.as_ref().map(HashKey::compile) {
            Some(Ok(k)) => Some(k),
            Some(Err(m)) => {
                self.problem(format!("{at}.sticky"), m);
                None
            }
            None => None,
        };
        let retry = match &rule.retries {
            Some(r) => Some(Arc::new(RetryPlan::new(r))),
            None => default_retry.clone(),
        };
        let timeouts = rule.timeouts.as_ref();
        Rule {
            route,
            request_headers,
            response_headers,
            redirect,
            rewrite,
            mirrors,
            split: Split::new(backends),
            sticky,
            request_timeout: timeouts
                .and_then(|t| t.request)
                .or(u.timeouts.request)
                .map(|d| d.to_std()),
            per_try_timeout: timeouts
                .and_then(|t| t.backend_request)
                .map(|d| d.to_std())
                .or_else(|| retry.as_ref().and_then(|r| r.per_try_timeout)),
            retry,
            fault: rule.fault.as_ref().map(FaultPlan::new),
        }
    }
}
