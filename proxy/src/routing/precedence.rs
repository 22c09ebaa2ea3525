//! Gateway API precedence between matches of all rules of all routes of a
//! service: an `Exact` path first, then a regular expression, then the
//! longest `PathPrefix`; then a method match; then the most header matches;
//! then the most query-param matches; ties go to the route name
//! (alphabetical), then rule order, then match order.
//!
//! Regular expressions rank between exact and prefix, as in Envoy Gateway;
//! the spec leaves their place to the implementation.

use std::cmp::Reverse;

use super::matcher::{MatchSpec, PathMatcher};

/// Sort key of one match: smaller sorts first and wins.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Precedence<'a> {
    path_kind: u8,
    path_len: Reverse<usize>,
    has_method: Reverse<bool>,
    headers: Reverse<usize>,
    query: Reverse<usize>,
    route: &'a str,
    rule: usize,
    index: usize,
}

impl<'a> Precedence<'a> {
    pub fn of(spec: &MatchSpec, route: &'a str, rule: usize, index: usize) -> Self {
        let (path_kind, path_len) = match &spec.path {
            PathMatcher::Exact(p) => (0, p.len()),
            PathMatcher::Regex(r) => (1, r.as_str().len()),
            PathMatcher::Prefix(p) => (2, p.len()),
        };
        Precedence {
            path_kind,
            path_len: Reverse(path_len),
            has_method: Reverse(spec.method.is_some()),
            headers: Reverse(spec.headers.len()),
            query: Reverse(spec.query.len()),
            route,
            rule,
            index,
        }
    }
}

/// Orders `(precedence, payload)` pairs best first.
pub fn sort<T>(entries: &mut [(Precedence<'_>, T)]) {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
}
