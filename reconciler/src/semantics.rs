//! Checks across objects that no schema can express: names resolve, weights
//! and steps make sense, rules are reachable, thresholds agree. Each check is
//! a small function over the [`PolicySet`]; all of them run, so one lint run
//! reports every problem.

use std::collections::{BTreeMap, BTreeSet};

use gitmesh_proxy_config::{Action, MtlsMode, PathMatchType, ValueMatchType};

use crate::diagnostic::{Code, Diagnostic};
use crate::index::Index;
use crate::load::{Located, PolicySet};
use crate::policy::{
    FilterType, HttpPathModifier, HttpRouteMatch, IntentionSource, PathModifierType, Service,
};

/// Runs every semantic check.
pub fn check(set: &PolicySet) -> Vec<Diagnostic> {
    let ix = Index::new(set);
    let ix = &ix;
    let mut out = Vec::new();
    duplicate_names(ix, &mut out);
    meshes(ix, &mut out);
    services(ix, &mut out);
    routes(ix, &mut out);
    unreachable_rules(ix, &mut out);
    rollouts(ix, &mut out);
    intentions(ix, &mut out);
    jwt_providers(ix, &mut out);
    claims_without_jwt(ix, &mut out);
    sources_without_identity(ix, &mut out);
    denied_upstreams(ix, &mut out);
    rollout_owned_weights(ix, &mut out);
    out
}

/// The route rules whose split a Rollout owns, with the Rollout's name:
/// rules of its route (or of every route on its service, without one) that
/// send to its stable subset. Rules sending only to the canary (say, for
/// testers) keep their own backends.
pub fn rollout_owned_rules(set: &PolicySet) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    for ro in &set.rollouts {
        let spec = &ro.value.spec;
        for route in &set.routes {
            let name = &route.value.metadata.name;
            let attached = route
                .value
                .spec
                .parent_refs
                .iter()
                .any(|p| p.name == spec.service);
            if !attached || spec.route.as_ref().is_some_and(|r| r != name) {
                continue;
            }
            for (r, rule) in route.value.spec.rules.iter().enumerate() {
                // Rules that send to the stable subset carry the split;
                // a rule sending only to the canary (testers) is left alone.
                let ours = rule.backend_refs.iter().any(|b| {
                    b.name == spec.service && b.subset.as_deref() == Some(&spec.stable_subset)
                });
                if ours {
                    out.push((ro.value.metadata.name.clone(), name.clone(), r));
                }
            }
        }
    }
    out
}

/// GM3015: weights a Rollout owns, written as anything but "all on stable".
fn rollout_owned_weights(ix: &Index, out: &mut Vec<Diagnostic>) {
    let set = ix.set;
    for (rollout, route_name, r) in rollout_owned_rules(set) {
        let Some(route) = ix.route(&route_name) else {
            continue;
        };
        let Some(ro) = set
            .rollouts
            .iter()
            .find(|x| x.value.metadata.name == rollout)
        else {
            continue;
        };
        let spec = &ro.value.spec;
        let rule = &route.value.spec.rules[r];
        let canary_weight: i64 = rule
            .backend_refs
            .iter()
            .filter(|b| b.name == spec.service && b.subset.as_deref() == Some(&spec.canary_subset))
            .map(|b| b.weight)
            .sum();
        if canary_weight > 0 {
            out.push(
                diag(route, Code::WeightsOwnedByRollout, &format!("/spec/rules/{r}/backendRefs"), format!(
                    "the split between `{}` and `{}` is owned by Rollout `{rollout}`: these weights are ignored",
                    spec.stable_subset, spec.canary_subset
                ))
                .with_hint("the Rollout moves the weights step by step and writes the final ones back; give the canary weight 0 here"),
            );
        }
    }
}

fn diag<T>(obj: &Located<T>, code: Code, pointer: &str, message: String) -> Diagnostic {
    Diagnostic::new(code, &obj.file, obj.span(pointer), message)
}

fn duplicate_names(ix: &Index, out: &mut Vec<Diagnostic>) {
    let set = ix.set;
    fn check<T>(
        kind: &str,
        objects: &[Located<T>],
        name: impl Fn(&T) -> &str,
        out: &mut Vec<Diagnostic>,
    ) {
        let mut seen: BTreeMap<&str, &Located<T>> = BTreeMap::new();
        for obj in objects {
            let n = name(&obj.value);
            if let Some(first) = seen.get(n) {
                out.push(
                    diag(
                        obj,
                        Code::DuplicateName,
                        "/metadata/name",
                        format!("{kind} `{n}` is defined twice"),
                    )
                    .with_hint(format!("first defined at {}", first.name_location())),
                );
            } else {
                seen.insert(n, obj);
            }
        }
    }
    check("Service", &set.services, |s| &s.metadata.name, out);
    check("HTTPRoute", &set.routes, |r| &r.metadata.name, out);
    check("Rollout", &set.rollouts, |r| &r.metadata.name, out);
    check("Intentions", &set.intentions, |i| &i.metadata.name, out);
}

fn meshes(ix: &Index, out: &mut Vec<Diagnostic>) {
    let set = ix.set;
    for extra in set.meshes.iter().skip(1) {
        out.push(
            diag(
                extra,
                Code::DuplicateMesh,
                "/kind",
                "a repo holds at most one Mesh".into(),
            )
            .with_hint(format!("the first is at {}", set.meshes[0].name_location())),
        );
    }
    for mesh in &set.meshes {
        let spec = &mesh.value.spec;
        for (i, wave) in spec.rollout.waves.iter().enumerate() {
            if wave.proxies.is_some() == wave.percent.is_some() {
                out.push(diag(
                    mesh,
                    Code::BadThreshold,
                    &format!("/spec/rollout/waves/{i}"),
                    "a wave gives exactly one of `proxies` or `percent`".into(),
                ));
            }
        }
        if let Some(last) = spec.rollout.waves.last()
            && last.percent.is_some_and(|p| p < 100.0)
        {
            let i = spec.rollout.waves.len() - 1;
            out.push(
                diag(
                    mesh,
                    Code::BadThreshold,
                    &format!("/spec/rollout/waves/{i}"),
                    "the last wave does not reach every proxy".into(),
                )
                .with_hint("end with `percent: 100`"),
            );
        }
        if spec.rollout.progress_deadline <= spec.rollout.min_healthy_time {
            out.push(diag(
                mesh,
                Code::BadThreshold,
                "/spec/rollout/progressDeadline",
                format!(
                    "progressDeadline {} must be longer than minHealthyTime {}",
                    spec.rollout.progress_deadline, spec.rollout.min_healthy_time
                ),
            ));
        }
        if spec.metrics.source == crate::policy::MetricsSourceKind::Prometheus
            && spec.metrics.prometheus_url.is_none()
        {
            out.push(diag(
                mesh,
                Code::SchemaViolation,
                "/spec/metrics",
                "`source: prometheus` needs `prometheusUrl`".into(),
            ));
        }
    }
}

fn services(ix: &Index, out: &mut Vec<Diagnostic>) {
    let set = ix.set;
    for svc in &set.services {
        let spec = &svc.value.spec;
        let name = &svc.value.metadata.name;
        let mut subsets = BTreeSet::new();
        for (i, subset) in spec.subsets.iter().enumerate() {
            if !subsets.insert(subset.name.as_str()) {
                out.push(diag(
                    svc,
                    Code::DuplicateName,
                    &format!("/spec/subsets/{i}/name"),
                    format!("subset `{}` of `{name}` is defined twice", subset.name),
                ));
            }
        }
        for (i, upstream) in spec.upstreams.iter().enumerate() {
            unknown_service(ix, svc, &format!("/spec/upstreams/{i}"), upstream, out);
            if upstream == name {
                out.push(diag(
                    svc,
                    Code::BadThreshold,
                    &format!("/spec/upstreams/{i}"),
                    format!("`{name}` lists itself as an upstream"),
                ));
            }
        }
        if let Some(retries) = &spec.retries {
            retry_thresholds(svc, "/spec/retries", retries, out);
            if let (Some(per_try), Some(request)) = (retries.per_try_timeout, spec.timeouts.request)
                && per_try > request
            {
                out.push(diag(
                    svc,
                    Code::BadThreshold,
                    "/spec/retries/perTryTimeout",
                    format!("perTryTimeout {per_try} is longer than the request timeout {request}"),
                ));
            }
        }
        if let Some(hc) = &spec.health_check
            && hc.timeout >= hc.interval
        {
            out.push(diag(
                svc,
                Code::BadThreshold,
                "/spec/healthCheck/timeout",
                format!(
                    "health check timeout {} must be shorter than its interval {}",
                    hc.timeout, hc.interval
                ),
            ));
        }
        if let Some(od) = &spec.outlier_detection
            && od.consecutive_5xx == 0
            && od.consecutive_connect_failures == 0
        {
            out.push(
                diag(
                    svc,
                    Code::BadThreshold,
                    "/spec/outlierDetection",
                    "outlier detection with both thresholds at 0 never ejects".into(),
                )
                .with_hint(
                    "set consecutive5xx or consecutiveConnectFailures, or remove the section",
                ),
            );
        }
        for (i, endpoint) in spec.endpoints.iter().enumerate() {
            if !spec.subsets.is_empty()
                && !spec.subsets.iter().any(|s| {
                    s.labels
                        .iter()
                        .all(|(k, v)| endpoint.labels.get(k) == Some(v))
                })
            {
                out.push(diag(
                    svc,
                    Code::UnknownSubset,
                    &format!("/spec/endpoints/{i}/labels"),
                    format!(
                        "endpoint {} belongs to no subset of `{name}`",
                        endpoint.address
                    ),
                ));
            }
        }
    }
}

fn retry_thresholds<T>(
    obj: &Located<T>,
    at: &str,
    retries: &gitmesh_proxy_config::RetryPolicy,
    out: &mut Vec<Diagnostic>,
) {
    if retries.backoff.base_interval > retries.backoff.max_interval {
        out.push(diag(
            obj,
            Code::BadThreshold,
            &format!("{at}/backoff/baseInterval"),
            format!(
                "backoff baseInterval {} is above maxInterval {}",
                retries.backoff.base_interval, retries.backoff.max_interval
            ),
        ));
    }
    for (i, on) in retries.retry_on.iter().enumerate() {
        if let gitmesh_proxy_config::RetryOn::Status(code) = on
            && !(100..=599).contains(code)
        {
            out.push(diag(
                obj,
                Code::BadThreshold,
                &format!("{at}/retryOn/{i}"),
                format!("{code} is not an HTTP status code"),
            ));
        }
    }
}

fn unknown_service<T>(
    ix: &Index,
    obj: &Located<T>,
    at: &str,
    name: &str,
    out: &mut Vec<Diagnostic>,
) -> bool {
    if ix.service(name).is_some() {
        return true;
    }
    if ix.set.is_invalid(crate::policy::Kind::Service, name) {
        // It exists but did not load: its own errors say why.
        return false;
    }
    let mut d = diag(
        obj,
        Code::UnknownService,
        at,
        format!("no Service named `{name}`"),
    );
    if let Some(best) = crate::schema::closest(
        name,
        ix.set
            .services
            .iter()
            .map(|s| s.value.metadata.name.as_str()),
    ) {
        d = d.with_hint(format!("did you mean `{best}`?"));
    }
    out.push(d);
    false
}

fn unknown_subset<T>(
    obj: &Located<T>,
    at: &str,
    service: &Located<Service>,
    subset: &str,
    out: &mut Vec<Diagnostic>,
) {
    let subsets = &service.value.spec.subsets;
    if subsets.iter().any(|s| s.name == subset) {
        return;
    }
    let svc = &service.value.metadata.name;
    let mut d = diag(
        obj,
        Code::UnknownSubset,
        at,
        format!("Service `{svc}` has no subset `{subset}`"),
    );
    d = match crate::schema::closest(subset, subsets.iter().map(|s| s.name.as_str())) {
        Some(best) => d.with_hint(format!("did you mean `{best}`?")),
        None if subsets.is_empty() => d.with_hint(format!("`{svc}` defines no subsets")),
        None => d.with_hint(format!(
            "its subsets are {}",
            subsets
                .iter()
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    out.push(d);
}

/// A backend reference: the service exists, and so does the subset.
fn backend<T>(
    ix: &Index,
    obj: &Located<T>,
    at: &str,
    name: &str,
    subset: Option<&str>,
    out: &mut Vec<Diagnostic>,
) {
    if !unknown_service(ix, obj, &format!("{at}/name"), name, out) {
        return;
    }
    if let (Some(subset), Some(service)) = (subset, ix.service(name)) {
        unknown_subset(obj, &format!("{at}/subset"), service, subset, out);
    }
}

fn regex<T>(obj: &Located<T>, at: &str, pattern: &str, out: &mut Vec<Diagnostic>) {
    if let Err(e) = regex::Regex::new(pattern) {
        let reason = e.to_string();
        let reason = reason.lines().last().unwrap_or("invalid").trim();
        let reason = reason.strip_prefix("error: ").unwrap_or(reason).to_string();
        out.push(diag(
            obj,
            Code::InvalidRegex,
            at,
            format!("invalid regular expression: {reason}"),
        ));
    }
}

fn route_match_regexes<T>(
    obj: &Located<T>,
    at: &str,
    m: &HttpRouteMatch,
    out: &mut Vec<Diagnostic>,
) {
    if let Some(path) = &m.path {
        match path.kind {
            PathMatchType::RegularExpression => {
                regex(obj, &format!("{at}/path/value"), &path.value, out)
            }
            _ if !path.value.starts_with('/') => out.push(diag(
                obj,
                Code::SchemaViolation,
                &format!("{at}/path/value"),
                format!("path `{}` must start with `/`", path.value),
            )),
            _ => {}
        }
    }
    for (i, h) in m.headers.iter().enumerate() {
        if h.kind == ValueMatchType::RegularExpression {
            regex(obj, &format!("{at}/headers/{i}/value"), &h.value, out);
        }
    }
    for (i, q) in m.query_params.iter().enumerate() {
        if q.kind == ValueMatchType::RegularExpression {
            regex(obj, &format!("{at}/queryParams/{i}/value"), &q.value, out);
        }
    }
}

fn routes(ix: &Index, out: &mut Vec<Diagnostic>) {
    let set = ix.set;
    for route in &set.routes {
        let spec = &route.value.spec;
        for (i, parent) in spec.parent_refs.iter().enumerate() {
            unknown_service(
                ix,
                route,
                &format!("/spec/parentRefs/{i}/name"),
                &parent.name,
                out,
            );
        }
        for (r, rule) in spec.rules.iter().enumerate() {
            let at = format!("/spec/rules/{r}");
            for (m, matcher) in rule.matches.iter().enumerate() {
                route_match_regexes(route, &format!("{at}/matches/{m}"), matcher, out);
            }
            for (b, backend_ref) in rule.backend_refs.iter().enumerate() {
                backend(
                    ix,
                    route,
                    &format!("{at}/backendRefs/{b}"),
                    &backend_ref.name,
                    backend_ref.subset.as_deref(),
                    out,
                );
            }
            if !rule.backend_refs.is_empty() && rule.backend_refs.iter().all(|b| b.weight == 0) {
                out.push(
                    diag(
                        route,
                        Code::ZeroWeights,
                        &format!("{at}/backendRefs"),
                        format!("every backend of rule {r} has weight 0"),
                    )
                    .with_hint("give at least one backend a positive weight, or remove the rule"),
                );
            }
            let redirects = rule
                .filters
                .iter()
                .any(|f| f.kind == FilterType::RequestRedirect);
            if rule.backend_refs.is_empty() && !redirects {
                out.push(
                    diag(
                        route,
                        Code::ZeroWeights,
                        &at,
                        format!("rule {r} has no backendRefs: it can only answer 500"),
                    )
                    .with_hint("add a backendRef, or a RequestRedirect filter"),
                );
            }
            for (f, filter) in rule.filters.iter().enumerate() {
                let fat = format!("{at}/filters/{f}");
                filter_shape(route, &fat, filter, out);
                if let Some(mirror) = &filter.request_mirror {
                    backend(
                        ix,
                        route,
                        &format!("{fat}/requestMirror/backendRef"),
                        &mirror.backend_ref.name,
                        mirror.backend_ref.subset.as_deref(),
                        out,
                    );
                }
            }
            if let Some(retry) = &rule.retry {
                retry_thresholds(route, &format!("{at}/retry"), retry, out);
            }
            if let Some(t) = &rule.timeouts
                && let (Some(request), Some(backend)) = (t.request, t.backend_request)
                && backend > request
            {
                out.push(diag(
                    route,
                    Code::BadThreshold,
                    &format!("{at}/timeouts/backendRequest"),
                    format!(
                        "backendRequest {backend} is longer than the request timeout {request}"
                    ),
                ));
            }
        }
    }
}

/// Gateway API filters: `type: X` must come with the field `x` and no other.
fn filter_shape<T>(
    obj: &Located<T>,
    at: &str,
    f: &crate::policy::HttpRouteFilter,
    out: &mut Vec<Diagnostic>,
) {
    let present: Vec<(&str, FilterType)> = [
        (
            "requestHeaderModifier",
            f.request_header_modifier.is_some(),
            FilterType::RequestHeaderModifier,
        ),
        (
            "responseHeaderModifier",
            f.response_header_modifier.is_some(),
            FilterType::ResponseHeaderModifier,
        ),
        (
            "requestRedirect",
            f.request_redirect.is_some(),
            FilterType::RequestRedirect,
        ),
        (
            "urlRewrite",
            f.url_rewrite.is_some(),
            FilterType::UrlRewrite,
        ),
        (
            "requestMirror",
            f.request_mirror.is_some(),
            FilterType::RequestMirror,
        ),
    ]
    .into_iter()
    .filter(|(_, set, _)| *set)
    .map(|(name, _, kind)| (name, kind))
    .collect();
    let type_name = match f.kind {
        FilterType::UrlRewrite => "URLRewrite".to_string(),
        other => format!("{other:?}"),
    };
    let expected = match f.kind {
        FilterType::RequestHeaderModifier => "requestHeaderModifier",
        FilterType::ResponseHeaderModifier => "responseHeaderModifier",
        FilterType::RequestRedirect => "requestRedirect",
        FilterType::UrlRewrite => "urlRewrite",
        FilterType::RequestMirror => "requestMirror",
    };
    if !present.iter().any(|(_, k)| *k == f.kind) {
        out.push(diag(
            obj,
            Code::FilterMismatch,
            &format!("{at}/type"),
            format!("a filter of this type needs the field `{expected}`"),
        ));
    }
    for (name, kind) in &present {
        if *kind != f.kind {
            out.push(
                Diagnostic::new(
                    Code::FilterMismatch,
                    &obj.file,
                    obj.key_span(&format!("{at}/{name}")),
                    format!("`{name}` does not belong in a filter of type `{type_name}`"),
                )
                .with_hint("one filter configures one thing: split it into two filters"),
            );
        }
    }
    let path_modifier = |m: &HttpPathModifier, at: String, out: &mut Vec<Diagnostic>| {
        let ok = match m.kind {
            PathModifierType::ReplaceFullPath => {
                m.replace_full_path.is_some() && m.replace_prefix_match.is_none()
            }
            PathModifierType::ReplacePrefixMatch => {
                m.replace_prefix_match.is_some() && m.replace_full_path.is_none()
            }
        };
        if !ok {
            out.push(diag(
                obj,
                Code::FilterMismatch,
                &at,
                format!(
                    "a path modifier of type `{:?}` needs exactly the field `{}`",
                    m.kind,
                    match m.kind {
                        PathModifierType::ReplaceFullPath => "replaceFullPath",
                        PathModifierType::ReplacePrefixMatch => "replacePrefixMatch",
                    }
                ),
            ));
        }
    };
    if let Some(path) = f.request_redirect.as_ref().and_then(|r| r.path.as_ref()) {
        path_modifier(path, format!("{at}/requestRedirect/path"), out);
    }
    if let Some(path) = f.url_rewrite.as_ref().and_then(|r| r.path.as_ref()) {
        path_modifier(path, format!("{at}/urlRewrite/path"), out);
    }
    if let Some(r) = &f.request_redirect
        && ![301, 302, 303, 307, 308].contains(&r.status_code)
    {
        out.push(diag(
            obj,
            Code::SchemaViolation,
            &format!("{at}/requestRedirect/statusCode"),
            format!(
                "{} is not a redirect status (301, 302, 303, 307, 308)",
                r.status_code
            ),
        ));
    }
}

/// The match as the proxy ranks it; two matches with the same key tie and
/// the earlier one wins, so an identical later match can never be chosen.
fn normalized(m: &HttpRouteMatch) -> String {
    let (kind, value) = match &m.path {
        Some(p) => (p.kind, p.value.as_str()),
        None => (PathMatchType::PathPrefix, "/"),
    };
    let value = if kind == PathMatchType::PathPrefix && value.len() > 1 {
        value.trim_end_matches('/')
    } else {
        value
    };
    let mut headers: Vec<_> = m
        .headers
        .iter()
        .map(|h| format!("{:?}:{}={}", h.kind, h.name.to_ascii_lowercase(), h.value))
        .collect();
    headers.sort();
    let mut query: Vec<_> = m
        .query_params
        .iter()
        .map(|q| format!("{:?}:{}={}", q.kind, q.name, q.value))
        .collect();
    query.sort();
    format!(
        "{kind:?} {value} {} [{}] [{}]",
        m.method.as_deref().unwrap_or("*"),
        headers.join(","),
        query.join(",")
    )
}

/// GM3007: a rule whose every match is identical to a match of an earlier
/// rule (same route, or a route on the same service whose name sorts first,
/// as Gateway API breaks ties) can never be selected.
fn unreachable_rules(ix: &Index, out: &mut Vec<Diagnostic>) {
    let set = ix.set;
    let mut by_parent: BTreeMap<&str, Vec<&Located<crate::policy::HTTPRoute>>> = BTreeMap::new();
    for route in &set.routes {
        for parent in &route.value.spec.parent_refs {
            by_parent
                .entry(parent.name.as_str())
                .or_default()
                .push(route);
        }
    }
    for routes in by_parent.values_mut() {
        routes.sort_by(|a, b| a.value.metadata.name.cmp(&b.value.metadata.name));
        routes.dedup_by(|a, b| std::ptr::eq(*a, *b));
        let mut seen: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for route in routes.iter() {
            let name = &route.value.metadata.name;
            for (r, rule) in route.value.spec.rules.iter().enumerate() {
                let keys: Vec<String> = if rule.matches.is_empty() {
                    vec![normalized(&HttpRouteMatch::default())]
                } else {
                    rule.matches.iter().map(normalized).collect()
                };
                let shadows: Vec<_> = keys.iter().filter_map(|k| seen.get(k)).collect();
                if shadows.len() == keys.len()
                    && let Some((by_route, by_rule)) = shadows.first()
                {
                    let at = if rule.matches.is_empty() {
                        format!("/spec/rules/{r}")
                    } else {
                        format!("/spec/rules/{r}/matches")
                    };
                    let earlier = if by_route == name {
                        format!("rule {by_rule}")
                    } else {
                        format!("rule {by_rule} of HTTPRoute `{by_route}`")
                    };
                    out.push(
                        diag(route, Code::UnreachableRule, &at, format!("rule {r} can never match: {earlier} matches the same requests and wins the tie"))
                            .with_hint("remove the rule, or make its match more specific"),
                    );
                }
                for k in keys {
                    seen.entry(k).or_insert_with(|| (name.clone(), r));
                }
            }
        }
    }
}

fn rollouts(ix: &Index, out: &mut Vec<Diagnostic>) {
    let set = ix.set;
    let mut by_service: BTreeMap<&str, &Located<crate::policy::Rollout>> = BTreeMap::new();
    for ro in &set.rollouts {
        let spec = &ro.value.spec;
        if let Some(first) = by_service.get(spec.service.as_str()) {
            out.push(
                diag(
                    ro,
                    Code::RolloutConflict,
                    "/spec/service",
                    format!("Service `{}` already has a Rollout", spec.service),
                )
                .with_hint(format!(
                    "`{}` at {} drives it; one rollout per service at a time",
                    first.value.metadata.name,
                    first.name_location()
                )),
            );
        } else {
            by_service.insert(&spec.service, ro);
        }
        if unknown_service(ix, ro, "/spec/service", &spec.service, out)
            && let Some(service) = ix.service(&spec.service)
        {
            unknown_subset(ro, "/spec/stableSubset", service, &spec.stable_subset, out);
            unknown_subset(ro, "/spec/canarySubset", service, &spec.canary_subset, out);
        }
        if spec.stable_subset == spec.canary_subset {
            out.push(diag(
                ro,
                Code::RolloutConflict,
                "/spec/canarySubset",
                format!("canary and stable are both `{}`", spec.stable_subset),
            ));
        }
        if let Some(route_name) = &spec.route {
            match ix.route(route_name) {
                None if set.is_invalid(crate::policy::Kind::HTTPRoute, route_name) => {}
                None => {
                    let mut d = diag(
                        ro,
                        Code::UnknownRoute,
                        "/spec/route",
                        format!("no HTTPRoute named `{route_name}`"),
                    );
                    if let Some(best) = crate::schema::closest(
                        route_name,
                        set.routes.iter().map(|r| r.value.metadata.name.as_str()),
                    ) {
                        d = d.with_hint(format!("did you mean `{best}`?"));
                    }
                    out.push(d);
                }
                Some(route)
                    if !route
                        .value
                        .spec
                        .parent_refs
                        .iter()
                        .any(|p| p.name == spec.service) =>
                {
                    out.push(diag(
                        ro,
                        Code::UnknownRoute,
                        "/spec/route",
                        format!(
                            "HTTPRoute `{route_name}` does not route Service `{}`",
                            spec.service
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let steps = &spec.steps;
        for (i, pair) in steps.windows(2).enumerate() {
            if pair[1] <= pair[0] {
                out.push(diag(
                    ro,
                    Code::BadRolloutSteps,
                    &format!("/spec/steps/{}", i + 1),
                    format!(
                        "step {} ({}%) is not above the step before it ({}%)",
                        i + 1,
                        pair[1],
                        pair[0]
                    ),
                ));
            }
        }
        for (i, step) in steps.iter().enumerate() {
            if *step == 0 || *step > 100 {
                out.push(diag(
                    ro,
                    Code::BadRolloutSteps,
                    &format!("/spec/steps/{i}"),
                    format!("step {step}% is not between 1 and 100"),
                ));
            }
        }
        if steps.last().is_some_and(|s| *s != 100) {
            out.push(
                diag(
                    ro,
                    Code::BadRolloutSteps,
                    &format!("/spec/steps/{}", steps.len() - 1),
                    "the last step must be 100 (all traffic on the canary)".into(),
                )
                .with_hint("append 100 to `steps`"),
            );
        }
        let a = &spec.analysis;
        if a.interval.is_zero() {
            out.push(diag(
                ro,
                Code::BadThreshold,
                "/spec/analysis/interval",
                "the analysis interval must be above zero".into(),
            ));
        }
        if a.min_requests == 0 {
            out.push(
                diag(
                    ro,
                    Code::BadThreshold,
                    "/spec/analysis/minRequests",
                    "minRequests 0 would promote a canary that served nothing".into(),
                )
                .with_hint("use at least 1; 20 or more gives meaningful error rates"),
            );
        }
        if a.max_p99.is_some_and(|d| d.is_zero()) {
            out.push(diag(
                ro,
                Code::BadThreshold,
                "/spec/analysis/maxP99",
                "a maximum p99 of 0 can never pass".into(),
            ));
        }
        if spec.progress_deadline <= a.interval {
            out.push(diag(
                ro,
                Code::BadThreshold,
                "/spec/progressDeadline",
                format!(
                    "progressDeadline {} must be longer than the analysis interval {}",
                    spec.progress_deadline, a.interval
                ),
            ));
        }
    }
}

fn intentions(ix: &Index, out: &mut Vec<Diagnostic>) {
    let set = ix.set;
    let mut by_destination: BTreeMap<&str, &Located<crate::policy::Intentions>> = BTreeMap::new();
    for it in &set.intentions {
        let spec = &it.value.spec;
        if let Some(first) = by_destination.get(spec.destination.as_str()) {
            out.push(
                diag(
                    it,
                    Code::DuplicateName,
                    "/spec/destination",
                    format!("Service `{}` already has Intentions", spec.destination),
                )
                .with_hint(format!(
                    "merge them with `{}` at {}",
                    first.value.metadata.name,
                    first.name_location()
                )),
            );
        } else {
            by_destination.insert(&spec.destination, it);
        }
        unknown_service(ix, it, "/spec/destination", &spec.destination, out);
        let mut sources = BTreeSet::new();
        for (i, source) in spec.sources.iter().enumerate() {
            let at = format!("/spec/sources/{i}");
            if !sources.insert(source.name.as_str()) {
                out.push(diag(
                    it,
                    Code::DuplicateName,
                    &format!("{at}/name"),
                    format!("source `{}` is listed twice", source.name),
                ));
            }
            if source.name != "*" {
                unknown_service(ix, it, &format!("{at}/name"), &source.name, out);
            }
            intention_source(it, &at, source, out);
        }
    }
}

fn intention_source<T>(
    obj: &Located<T>,
    at: &str,
    source: &IntentionSource,
    out: &mut Vec<Diagnostic>,
) {
    if source.action.is_some() != source.permissions.is_empty() {
        out.push(diag(
            obj,
            Code::SchemaViolation,
            at,
            format!(
                "source `{}` needs exactly one of `action` or `permissions`",
                source.name
            ),
        ));
    }
    for (p, permission) in source.permissions.iter().enumerate() {
        let pat = format!("{at}/permissions/{p}/http");
        let http = &permission.http;
        let paths = [&http.path_exact, &http.path_prefix, &http.path_regex]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if paths > 1 {
            out.push(diag(
                obj,
                Code::SchemaViolation,
                &pat,
                "give at most one of pathExact, pathPrefix and pathRegex".into(),
            ));
        }
        if let Some(re) = &http.path_regex {
            regex(obj, &format!("{pat}/pathRegex"), re, out);
        }
        for (h, header) in http.headers.iter().enumerate() {
            if header.kind == ValueMatchType::RegularExpression {
                regex(obj, &format!("{pat}/headers/{h}/value"), &header.value, out);
            }
        }
    }
}

/// GM3017: a Service's JWT providers must each name an issuer once and
/// exactly one key source; a JWKS URL must be https (http only to a
/// loopback address).
fn jwt_providers(ix: &Index, out: &mut Vec<Diagnostic>) {
    for svc in &ix.set.services {
        let Some(jwt) = &svc.value.spec.jwt else {
            continue;
        };
        if jwt.providers.is_empty() {
            out.push(diag(
                svc,
                Code::BadJwtProvider,
                "/spec/jwt/providers",
                "`jwt` needs at least one provider".into(),
            ));
        }
        let mut issuers = BTreeSet::new();
        for (i, p) in jwt.providers.iter().enumerate() {
            let at = format!("/spec/jwt/providers/{i}");
            if p.issuer.is_empty() || !issuers.insert(p.issuer.as_str()) {
                out.push(diag(
                    svc,
                    Code::BadJwtProvider,
                    &format!("{at}/issuer"),
                    format!("issuer `{}` is empty or given twice", p.issuer),
                ));
            }
            match (&p.jwks.file, &p.jwks.url) {
                (Some(_), None) => {}
                (None, Some(url)) => {
                    if let Err(message) = gitmesh_proxy_config::check_jwks_url(url) {
                        out.push(
                            diag(svc, Code::BadJwtProvider, &format!("{at}/jwks/url"), message)
                                .with_hint("keys fetched over plain http could be swapped by anyone on the path"),
                        );
                    }
                }
                _ => out.push(diag(
                    svc,
                    Code::BadJwtProvider,
                    &format!("{at}/jwks"),
                    "give exactly one of `file` and `url`".into(),
                )),
            }
            if p.jwks.refresh.is_zero() {
                out.push(diag(
                    svc,
                    Code::BadJwtProvider,
                    &format!("{at}/jwks/refresh"),
                    "the JWKS refresh interval must be more than zero".into(),
                ));
            }
        }
    }
}

/// GM3016: a permission requires JWT claims, but its destination Service
/// has no `jwt`: no request could ever carry verified claims.
fn claims_without_jwt(ix: &Index, out: &mut Vec<Diagnostic>) {
    for it in &ix.set.intentions {
        let destination = &it.value.spec.destination;
        let has_jwt = ix
            .service(destination)
            .is_some_and(|s| s.value.spec.jwt.is_some());
        if has_jwt {
            continue;
        }
        for (i, source) in it.value.spec.sources.iter().enumerate() {
            for (p, permission) in source.permissions.iter().enumerate() {
                if !permission.claims.is_empty() {
                    out.push(
                        diag(
                            it,
                            Code::ClaimsWithoutJwt,
                            &format!("/spec/sources/{i}/permissions/{p}/claims"),
                            format!("this permission requires JWT claims, but Service `{destination}` has no `jwt`"),
                        )
                        .with_hint(format!("add `jwt.providers` to Service `{destination}`, or drop `claims`")),
                    );
                }
            }
        }
    }
}

/// GM3018: with mTLS disabled for the destination, callers carry no
/// identity, so a rule naming a source service never matches (only `*`
/// rules and the default apply).
fn sources_without_identity(ix: &Index, out: &mut Vec<Diagnostic>) {
    let mesh_mode = ix
        .set
        .meshes
        .first()
        .map_or(MtlsMode::default(), |m| m.value.spec.mtls.mode);
    for it in &ix.set.intentions {
        let destination = &it.value.spec.destination;
        let mode = ix
            .service(destination)
            .and_then(|s| s.value.spec.mtls)
            .unwrap_or(mesh_mode);
        if mode != MtlsMode::Disabled {
            continue;
        }
        for (i, source) in it.value.spec.sources.iter().enumerate() {
            if source.name != "*" {
                out.push(
                    diag(
                        it,
                        Code::SourceWithoutIdentity,
                        &format!("/spec/sources/{i}/name"),
                        format!(
                            "mTLS is disabled for `{destination}`: callers carry no identity, so the rule for `{}` never matches",
                            source.name
                        ),
                    )
                    .with_hint("enable mTLS (`permissive` or `strict`), or write the rule for `*`"),
                );
            }
        }
    }
}

/// GM3014: a Service declares an upstream whose intentions will refuse it.
fn denied_upstreams(ix: &Index, out: &mut Vec<Diagnostic>) {
    let set = ix.set;
    let default = set
        .meshes
        .first()
        .map_or(Action::Deny, |m| m.value.spec.default_intention);
    for svc in &set.services {
        let name = &svc.value.metadata.name;
        for (i, upstream) in svc.value.spec.upstreams.iter().enumerate() {
            if ix.service(upstream).is_none() {
                continue;
            }
            let intentions = ix.intentions_for(upstream);
            let sources = intentions
                .map(|it| it.value.spec.sources.as_slice())
                .unwrap_or_default();
            let rule = sources
                .iter()
                .find(|s| &s.name == name)
                .or_else(|| sources.iter().find(|s| s.name == "*"));
            let allowed = match rule {
                Some(s) if !s.permissions.is_empty() => true,
                Some(s) => s.action == Some(Action::Allow),
                None => default == Action::Allow,
            };
            if !allowed {
                out.push(
                    diag(
                        svc,
                        Code::UpstreamDenied,
                        &format!("/spec/upstreams/{i}"),
                        format!(
                            "`{name}` calls `{upstream}`, but `{upstream}`'s intentions deny it"
                        ),
                    )
                    .with_hint(format!(
                        "add `{name}` as an allowed source in the Intentions for `{upstream}`"
                    )),
                );
            }
        }
    }
}
