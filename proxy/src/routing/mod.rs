//! Routing: which rule of a service's HTTPRoutes a request takes. All
//! matches are compiled and sorted by precedence once per config
//! ([`RouteTable::compile`]); a lookup is then a scan for the first match.

mod filters;
mod matcher;
mod precedence;

use gitmesh_proxy_config::Route;

pub use self::filters::{HeaderEdit, RedirectFrom, Rewrite, modify_path, redirect_location};
use self::matcher::MatchSpec;
pub use self::matcher::{CompileError, PathMatcher, RequestView, ValueMatcher};
use self::precedence::Precedence;

/// The rule a request matched and how much of its path a prefix covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched {
    /// Index of the rule in `routes.iter().flat_map(|r| &r.rules)` order.
    pub rule: usize,
    pub prefix_len: Option<usize>,
}

/// Every match of every rule of one service, best first.
#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<(MatchSpec, usize)>,
}

impl RouteTable {
    /// Compiles and orders the matches. Errors name the route and rule.
    pub fn compile(routes: &[Route]) -> Result<Self, Vec<(String, CompileError)>> {
        let mut keyed = Vec::new();
        let mut errors = Vec::new();
        let mut flat = 0;
        for route in routes {
            for (r, rule) in route.rules.iter().enumerate() {
                if rule.matches.is_empty() {
                    keyed.push((MatchSpec::everything(), (route.name.as_str(), r, 0, flat)));
                }
                for (m, spec) in rule.matches.iter().enumerate() {
                    match MatchSpec::compile(spec) {
                        Ok(spec) => keyed.push((spec, (route.name.as_str(), r, m, flat))),
                        Err(e) => errors
                            .push((format!("routes[{}].rules[{r}].matches[{m}]", route.name), e)),
                    }
                }
                flat += 1;
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut sorted: Vec<(Precedence<'_>, (MatchSpec, usize))> = keyed
            .into_iter()
            .map(|(spec, (route, rule, index, flat))| {
                (Precedence::of(&spec, route, rule, index), (spec, flat))
            })
            .collect();
        precedence::sort(&mut sorted);
        Ok(RouteTable {
            entries: sorted.into_iter().map(|(_, e)| e).collect(),
        })
    }

    pub fn lookup(&self, req: &RequestView<'_>) -> Option<Matched> {
        self.entries.iter().find_map(|(spec, rule)| {
            spec.matches(req).map(|prefix_len| Matched {
                rule: *rule,
                prefix_len,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Method};

    fn table(json: &str) -> RouteTable {
        let routes: Vec<Route> = serde_json::from_str(json).unwrap();
        RouteTable::compile(&routes).unwrap()
    }

    fn rule_for(t: &RouteTable, method: &Method, path: &str, headers: &HeaderMap) -> Option<usize> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        t.lookup(&RequestView {
            method,
            path,
            query,
            headers,
        })
        .map(|m| m.rule)
    }

    const B: &str = r#""backends":[]"#;

    #[test]
    fn exact_beats_longest_prefix_beats_shorter() {
        let t = table(&format!(
            r#"[{{"name":"a","rules":[
                {{"matches":[{{"path":{{"type":"PathPrefix","value":"/"}}}}],{B}}},
                {{"matches":[{{"path":{{"type":"PathPrefix","value":"/api"}}}}],{B}}},
                {{"matches":[{{"path":{{"type":"PathPrefix","value":"/api/v2"}}}}],{B}}},
                {{"matches":[{{"path":{{"type":"Exact","value":"/api/v2/x"}}}}],{B}}}
            ]}}]"#
        ));
        let h = HeaderMap::new();
        let g = &Method::GET;
        assert_eq!(rule_for(&t, g, "/api/v2/x", &h), Some(3));
        assert_eq!(rule_for(&t, g, "/api/v2/y", &h), Some(2));
        assert_eq!(rule_for(&t, g, "/api/v2x", &h), Some(1));
        assert_eq!(rule_for(&t, g, "/other", &h), Some(0));
    }

    #[test]
    fn method_then_headers_then_query_break_ties() {
        let t = table(&format!(
            r#"[{{"name":"a","rules":[
                {{"matches":[{{"path":{{"value":"/p"}},"queryParams":[{{"name":"q","value":"1"}}]}}],{B}}},
                {{"matches":[{{"path":{{"value":"/p"}},"headers":[{{"name":"x","value":"1"}}]}}],{B}}},
                {{"matches":[{{"path":{{"value":"/p"}},"headers":[{{"name":"x","value":"1"}},{{"name":"y","value":"1"}}]}}],{B}}},
                {{"matches":[{{"path":{{"value":"/p"}},"method":"POST"}}],{B}}}
            ]}}]"#
        ));
        let mut h = HeaderMap::new();
        h.insert("x", "1".parse().unwrap());
        h.insert("y", "1".parse().unwrap());
        assert_eq!(rule_for(&t, &Method::POST, "/p?q=1", &h), Some(3));
        assert_eq!(rule_for(&t, &Method::GET, "/p?q=1", &h), Some(2));
        h.remove("y");
        assert_eq!(rule_for(&t, &Method::GET, "/p?q=1", &h), Some(1));
        assert_eq!(
            rule_for(&t, &Method::GET, "/p?q=1", &HeaderMap::new()),
            Some(0)
        );
        assert_eq!(rule_for(&t, &Method::GET, "/p", &HeaderMap::new()), None);
    }

    #[test]
    fn ties_go_to_route_name_then_rule_order() {
        let t = table(&format!(
            r#"[{{"name":"zeta","rules":[{{"matches":[{{"path":{{"value":"/p"}}}}],{B}}}]}},
               {{"name":"alpha","rules":[{{"matches":[{{"path":{{"value":"/p"}}}}],{B}}},
                                       {{"matches":[{{"path":{{"value":"/p"}}}}],{B}}}]}}]"#
        ));
        // Flattened order: zeta.0 = 0, alpha.0 = 1, alpha.1 = 2.
        assert_eq!(rule_for(&t, &Method::GET, "/p", &HeaderMap::new()), Some(1));
    }

    #[test]
    fn rule_without_matches_takes_everything_last() {
        let t = table(&format!(
            r#"[{{"name":"a","rules":[{{{B}}},{{"matches":[{{"path":{{"type":"RegularExpression","value":"/u/[0-9]+"}}}}],{B}}}]}}]"#
        ));
        let h = HeaderMap::new();
        assert_eq!(rule_for(&t, &Method::GET, "/u/12", &h), Some(1));
        assert_eq!(rule_for(&t, &Method::GET, "/u/ab", &h), Some(0));
    }
}
