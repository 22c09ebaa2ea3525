//! Checks a [`ProxyConfig`] before a proxy runs it. A config that fails is
//! refused with every reason at once (the NACK the reconciler receives), and
//! the proxy keeps the config it had.

use std::collections::BTreeSet;
use std::fmt;

use crate::types::*;

/// Why a config was refused: every problem found, each with where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidConfig {
    pub problems: Vec<Problem>,
}

/// One problem: a path into the config (`upstreams[reviews].routes[0]…`) and
/// what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub at: String,
    pub message: String,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid proxy config: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{}: {}", p.at, p.message)?;
        }
        Ok(())
    }
}

impl ProxyConfig {
    /// Parses and validates a config from its JSON wire form.
    pub fn from_json(bytes: &[u8]) -> Result<ProxyConfig, InvalidConfig> {
        let config: ProxyConfig = serde_json::from_slice(bytes).map_err(|e| InvalidConfig {
            problems: vec![Problem {
                at: format!("line {} column {}", e.line(), e.column()),
                message: e.to_string(),
            }],
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks everything serde cannot: names resolve, numbers are in range,
    /// regular expressions compile.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let mut v = Validator::default();
        if self.version.is_empty() {
            v.problem("version", "must not be empty");
        }
        if self.service.is_empty() {
            v.problem("service", "must not be empty");
        }
        if self.mesh.trust_domain.is_empty() {
            v.problem("mesh.trustDomain", "must not be empty");
        }
        self.validate_authorization(&mut v);
        let mut names = BTreeSet::new();
        for upstream in &self.upstreams {
            if !names.insert(upstream.name.as_str()) {
                v.problem(
                    format!("upstreams[{}]", upstream.name),
                    "appears more than once",
                );
            }
        }
        for upstream in &self.upstreams {
            self.validate_upstream(upstream, &names, &mut v);
        }
        v.finish()
    }

    fn validate_authorization(&self, v: &mut Validator) {
        for (i, rule) in self.inbound.authorization.rules.iter().enumerate() {
            let at = format!("inbound.authorization.rules[{i}]");
            if rule.source.is_empty() {
                v.problem(format!("{at}.source"), "must not be empty");
            }
            for (j, permission) in rule.permissions.iter().enumerate() {
                let at = format!("{at}.permissions[{j}]");
                if let Some(path) = &permission.path {
                    v.path_match(&format!("{at}.path"), path);
                }
                for (k, h) in permission.headers.iter().enumerate() {
                    v.header_name(&format!("{at}.headers[{k}].name"), &h.name);
                    v.value_match(&format!("{at}.headers[{k}]"), h.kind, &h.value);
                }
                for (method_index, m) in permission.methods.iter().enumerate() {
                    if !is_token(m) {
                        v.problem(
                            format!("{at}.methods[{method_index}]"),
                            format!("`{m}` is not an HTTP method"),
                        );
                    }
                }
                if !permission.claims.is_empty() && self.inbound.jwt.is_none() {
                    v.problem(
                        format!("{at}.claims"),
                        "requires claims but inbound.jwt is not configured: no request could match",
                    );
                }
            }
        }
        if let Some(jwt) = &self.inbound.jwt {
            if jwt.providers.is_empty() {
                v.problem("inbound.jwt.providers", "must name at least one provider");
            }
            let mut issuers = BTreeSet::new();
            for (i, p) in jwt.providers.iter().enumerate() {
                let at = format!("inbound.jwt.providers[{i}]");
                if p.issuer.is_empty() {
                    v.problem(format!("{at}.issuer"), "must not be empty");
                } else if !issuers.insert(p.issuer.as_str()) {
                    v.problem(
                        format!("{at}.issuer"),
                        format!("issuer `{}` is given twice", p.issuer),
                    );
                }
                match (&p.jwks.file, &p.jwks.url) {
                    (Some(_), None) => {}
                    (None, Some(url)) => {
                        if let Err(m) = check_jwks_url(url) {
                            v.problem(format!("{at}.jwks.url"), m);
                        }
                    }
                    _ => v.problem(format!("{at}.jwks"), "give exactly one of `file` and `url`"),
                }
                if p.jwks.refresh.is_zero() {
                    v.problem(format!("{at}.jwks.refresh"), "must be more than zero");
                }
            }
        }
    }

    fn validate_upstream(&self, u: &Upstream, names: &BTreeSet<&str>, v: &mut Validator) {
        let at = format!("upstreams[{}]", u.name);
        if u.name.is_empty() {
            v.problem(&at, "name must not be empty");
        }
        for (i, e) in u.endpoints.iter().enumerate() {
            if !is_host_port(&e.address) {
                v.problem(
                    format!("{at}.endpoints[{i}].address"),
                    format!("`{}` is not host:port", e.address),
                );
            }
        }
        if u.load_balancer.policy == LoadBalancerPolicy::RingHash && u.endpoints.len() > 10_000 {
            v.problem(
                format!("{at}.loadBalancer"),
                "ring hash supports at most 10000 endpoints",
            );
        }
        if let Some(r) = &u.retries {
            v.retry(&format!("{at}.retries"), r);
        }
        if let Some(hash) = &u.load_balancer.hash_on {
            v.header_name(&format!("{at}.loadBalancer.hashOn.name"), &hash.name);
        }
        if let Some(o) = &u.outlier_detection {
            v.percent(
                &format!("{at}.outlierDetection.maxEjectionPercent"),
                o.max_ejection_percent,
            );
            if o.interval.is_zero() {
                v.problem(
                    format!("{at}.outlierDetection.interval"),
                    "must be above zero",
                );
            }
        }
        if let Some(h) = &u.health_check {
            if !h.path.starts_with('/') {
                v.problem(format!("{at}.healthCheck.path"), "must start with `/`");
            }
            if h.interval.is_zero() || h.timeout.is_zero() {
                v.problem(
                    format!("{at}.healthCheck"),
                    "interval and timeout must be above zero",
                );
            }
        }
        for route in &u.routes {
            for (i, rule) in route.rules.iter().enumerate() {
                let at = format!("{at}.routes[{}].rules[{i}]", route.name);
                self.validate_rule(&at, rule, names, v);
            }
        }
    }

    fn validate_rule(&self, at: &str, rule: &RouteRule, names: &BTreeSet<&str>, v: &mut Validator) {
        for (i, m) in rule.matches.iter().enumerate() {
            let at = format!("{at}.matches[{i}]");
            if let Some(path) = &m.path {
                v.path_match(&format!("{at}.path"), path);
            }
            for (k, h) in m.headers.iter().enumerate() {
                v.header_name(&format!("{at}.headers[{k}].name"), &h.name);
                v.value_match(&format!("{at}.headers[{k}]"), h.kind, &h.value);
            }
            for (k, q) in m.query_params.iter().enumerate() {
                v.value_match(&format!("{at}.queryParams[{k}]"), q.kind, &q.value);
            }
        }
        for (i, b) in rule.backends.iter().enumerate() {
            v.backend(&format!("{at}.backends[{i}]"), b, names);
        }
        for (i, f) in rule.filters.iter().enumerate() {
            let at = format!("{at}.filters[{i}]");
            match f {
                Filter::RequestRedirect(r) => {
                    v.hostname(&format!("{at}.hostname"), r.hostname.as_ref());
                    if ![301, 302, 303, 307, 308].contains(&r.status_code) {
                        v.problem(
                            format!("{at}.statusCode"),
                            format!(
                                "{} is not a redirect status (301, 302, 303, 307, 308)",
                                r.status_code
                            ),
                        );
                    }
                }
                Filter::RequestMirror(m) => {
                    v.percent(&format!("{at}.percent"), m.percent);
                    v.backend(&format!("{at}.backend"), &m.backend, names);
                }
                Filter::RequestHeaderModifier(m) | Filter::ResponseHeaderModifier(m) => {
                    v.header_modifier(&at, m);
                }
                Filter::UrlRewrite(r) => v.hostname(&format!("{at}.hostname"), r.hostname.as_ref()),
            }
        }
        if let Some(r) = &rule.retries {
            v.retry(&format!("{at}.retries"), r);
        }
        if let Some(sticky) = &rule.sticky {
            v.header_name(&format!("{at}.sticky.name"), &sticky.name);
        }
        if let Some(fault) = &rule.fault {
            if let Some(d) = &fault.delay {
                v.percent(&format!("{at}.fault.delay.percent"), d.percent);
            }
            if let Some(a) = &fault.abort {
                v.percent(&format!("{at}.fault.abort.percent"), a.percent);
                if !(200..=599).contains(&a.status) {
                    v.problem(
                        format!("{at}.fault.abort.status"),
                        format!("{} is not an HTTP status between 200 and 599", a.status),
                    );
                }
            }
        }
    }
}

fn is_host_port(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.chars().any(|c| c.is_whitespace() || c == '/')
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

/// An HTTP field name (RFC 9110 `token`).
/// A JWKS URL must be https, or http to a loopback host (tests, a local
/// identity provider): keys fetched in clear text over a network could be
/// swapped by anyone on the path.
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("`{url}` is not an https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
        Ok(())
    } else {
        Err(format!(
            "`{url}` must use https (plain http is allowed only to a loopback address)"
        ))
    }
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An HTTP field value: no CR, LF or NUL (they would split the message).
fn is_field_value(value: &str) -> bool {
    !value.contains(['\r', '\n', '\0'])
}

/// A DNS host name (as a redirect or rewrite target).
fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with(['-', '.'])
        && !host.ends_with(['-', '.'])
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            at: at.into(),
            message: message.into(),
        });
    }

    fn finish(self) -> Result<(), InvalidConfig> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidConfig {
                problems: self.problems,
            })
        }
    }

    fn percent(&mut self, at: &str, value: f64) {
        if !(0.0..=100.0).contains(&value) {
            self.problem(at, format!("{value} is not a percentage between 0 and 100"));
        }
    }

    fn regex(&mut self, at: &str, pattern: &str) {
        if let Err(e) = regex::Regex::new(pattern) {
            self.problem(at, format!("invalid regular expression: {e}"));
        }
    }

    fn path_match(&mut self, at: &str, path: &PathMatch) {
        match path.kind {
            PathMatchType::RegularExpression => self.regex(at, &path.value),
            PathMatchType::Exact | PathMatchType::PathPrefix => {
                if !path.value.starts_with('/') {
                    self.problem(at, format!("path `{}` must start with `/`", path.value));
                }
            }
        }
    }

    fn value_match(&mut self, at: &str, kind: ValueMatchType, value: &str) {
        if kind == ValueMatchType::RegularExpression {
            self.regex(at, value);
        }
    }

    fn header_name(&mut self, at: &str, name: &str) {
        if !is_token(name) {
            self.problem(at, format!("`{name}` is not a valid HTTP header name"));
        }
    }

    fn header_modifier(&mut self, at: &str, m: &HeaderModifier) {
        for (i, h) in m.set.iter().chain(&m.add).enumerate() {
            self.header_name(&format!("{at}.headers[{i}].name"), &h.name);
            if !is_field_value(&h.value) {
                self.problem(
                    format!("{at}.headers[{i}].value"),
                    "a header value must not contain CR, LF or NUL",
                );
            }
        }
        for (i, name) in m.remove.iter().enumerate() {
            self.header_name(&format!("{at}.remove[{i}]"), name);
        }
    }

    fn hostname(&mut self, at: &str, host: Option<&String>) {
        if let Some(host) = host
            && !is_hostname(host)
        {
            self.problem(at, format!("`{host}` is not a host name"));
        }
    }

    fn retry(&mut self, at: &str, r: &RetryPolicy) {
        self.percent(&format!("{at}.budget.percent"), r.budget.percent);
        if r.backoff.base_interval > r.backoff.max_interval {
            self.problem(
                format!("{at}.backoff"),
                format!(
                    "baseInterval {} is above maxInterval {}",
                    r.backoff.base_interval, r.backoff.max_interval
                ),
            );
        }
        for on in &r.retry_on {
            if let RetryOn::Status(code) = on
                && !(100..=599).contains(code)
            {
                self.problem(
                    format!("{at}.retryOn"),
                    format!("{code} is not an HTTP status"),
                );
            }
        }
    }

    /// A backend must name an upstream of this config. Its subset may have
    /// no endpoint right now: instances come and go.
    fn backend(&mut self, at: &str, b: &Backend, names: &BTreeSet<&str>) {
        if !names.contains(b.service.as_str()) {
            self.problem(
                format!("{at}.service"),
                format!("`{}` is not an upstream of this config", b.service),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> ProxyConfig {
        ProxyConfig::from_json(
            br#"{"version":"v1","service":"productpage",
                 "upstreams":[{"name":"reviews","endpoints":[{"address":"127.0.0.1:9001","subset":"v1"}],
                   "routes":[{"name":"r","rules":[{"backends":[{"service":"reviews","subset":"v1","weight":90}]}]}]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn defaults_fill_a_short_config() {
        let c = minimal();
        let u = &c.upstreams[0];
        assert_eq!(u.circuit_breaker.max_requests, 1024);
        assert_eq!(u.endpoints[0].weight, 1);
        assert!(u.endpoints[0].healthy);
        assert_eq!(c.mesh.trust_domain, "gitmesh.local");
        assert_eq!(c.inbound.authorization.default_action, Action::Allow);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            ProxyConfig::from_json(br#"{"version":"v1","service":"a","upstream":[]}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `upstream`"),
            "{err}"
        );
    }

    #[test]
    fn collects_every_problem() {
        let mut c = minimal();
        let rule = &mut c.upstreams[0].routes[0].rules[0];
        rule.backends.push(Backend {
            service: "ratings".into(),
            subset: None,
            weight: 1,
        });
        rule.matches.push(RouteMatch {
            path: Some(PathMatch {
                kind: PathMatchType::RegularExpression,
                value: "(".into(),
            }),
            ..Default::default()
        });
        rule.fault = Some(Fault {
            delay: None,
            abort: Some(FaultAbort {
                status: 999,
                percent: 150.0,
            }),
        });
        c.upstreams[0].endpoints[0].address = "nowhere".into();
        let err = c.validate().unwrap_err();
        let ats: Vec<_> = err.problems.iter().map(|p| p.at.as_str()).collect();
        assert_eq!(
            ats,
            [
                "upstreams[reviews].endpoints[0].address",
                "upstreams[reviews].routes[r].rules[0].matches[0].path",
                "upstreams[reviews].routes[r].rules[0].backends[1].service",
                "upstreams[reviews].routes[r].rules[0].fault.abort.percent",
                "upstreams[reviews].routes[r].rules[0].fault.abort.status",
            ]
        );
    }

    #[test]
    fn header_names_values_and_hosts_are_checked() {
        let mut c = minimal();
        let rule = &mut c.upstreams[0].routes[0].rules[0];
        rule.filters
            .push(Filter::RequestHeaderModifier(HeaderModifier {
                set: vec![Header {
                    name: "bad header".into(),
                    value: "a\r\nx-injected: 1".into(),
                }],
                add: Vec::new(),
                remove: vec!["x-ok".into()],
            }));
        rule.filters.push(Filter::UrlRewrite(UrlRewrite {
            hostname: Some("not a host".into()),
            path: None,
        }));
        c.upstreams[0].endpoints[0].address = "a b:80".into();
        let err = c.validate().unwrap_err();
        let ats: Vec<_> = err.problems.iter().map(|p| p.at.as_str()).collect();
        assert_eq!(
            ats,
            [
                "upstreams[reviews].endpoints[0].address",
                "upstreams[reviews].routes[r].rules[0].filters[0].headers[0].name",
                "upstreams[reviews].routes[r].rules[0].filters[0].headers[0].value",
                "upstreams[reviews].routes[r].rules[0].filters[1].hostname",
            ]
        );
        assert!(is_token("x-gitmesh-route") && !is_token("") && !is_token("a:b"));
        assert!(is_hostname("reviews.bookinfo.local") && !is_hostname("-x") && !is_hostname("a_b"));
    }

    #[test]
    fn retry_on_reads_names_and_codes() {
        let r: RetryPolicy =
            serde_json::from_str(r#"{"attempts":2,"retryOn":["5xx","reset",503]}"#).unwrap();
        assert_eq!(
            r.retry_on,
            [RetryOn::ServerError, RetryOn::Reset, RetryOn::Status(503)]
        );
        assert_eq!(
            serde_json::to_string(&r.retry_on).unwrap(),
            r#"["5xx","reset",503]"#
        );
    }

    #[test]
    fn filters_use_gateway_api_type_names() {
        let f: Vec<Filter> = serde_json::from_str(
            r#"[{"type":"URLRewrite","path":{"type":"ReplacePrefixMatch","value":"/"}},
                {"type":"RequestHeaderModifier","set":[{"name":"x-a","value":"1"}]}]"#,
        )
        .unwrap();
        assert!(
            matches!(&f[0], Filter::UrlRewrite(r) if r.path == Some(PathModifier::ReplacePrefixMatch("/".into())))
        );
        assert!(matches!(&f[1], Filter::RequestHeaderModifier(m) if m.set.len() == 1));
    }

    #[test]
    fn authorization_and_jwt_problems_are_collected() {
        let c = ProxyConfig::from_json(
            br#"{"version": "v", "service": "api", "inbound": {
                "authorization": {"rules": [{"source": "*", "permissions": [
                    {"action": "allow", "methods": ["GET PUT"], "claims": {"role": "admin"}}
                ]}]},
                "jwt": {"providers": [
                    {"issuer": "a", "jwks": {"url": "http://idp.example.com/k"}},
                    {"issuer": "a", "jwks": {"file": "/k", "url": "https://x/k"}},
                    {"issuer": "b", "jwks": {"url": "http://127.0.0.1:8080/k", "refresh": "0s"}}
                ]}
            }}"#,
        );
        let problems: Vec<String> = c.unwrap_err().problems.into_iter().map(|p| p.at).collect();
        assert_eq!(
            problems,
            [
                "inbound.authorization.rules[0].permissions[0].methods[0]",
                "inbound.jwt.providers[0].jwks.url",
                "inbound.jwt.providers[1].issuer",
                "inbound.jwt.providers[1].jwks",
                "inbound.jwt.providers[2].jwks.refresh",
            ]
        );
        assert!(check_jwks_url("https://idp.example.com/jwks").is_ok());
        assert!(check_jwks_url("http://localhost:9/jwks").is_ok());
        assert!(check_jwks_url("http://[::1]:9/jwks").is_ok());
        assert!(check_jwks_url("http://127.0.0.1.evil.com/jwks").is_err());
        assert!(check_jwks_url("http://localhost@evil.com/jwks").is_err());
        assert!(check_jwks_url("ftp://x/jwks").is_err());
    }
}
