//! One compiled HTTPRoute match (path, method, headers, query params) and the
//! test of a request against it. Regular expressions are compiled here once
//! per config and match the whole value, as Envoy's do.

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

use gitmesh_proxy_config::{PathMatch, PathMatchType, RouteMatch, ValueMatchType};

/// The parts of a request that routing looks at.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

#[derive(Debug)]
pub enum PathMatcher {
    Exact(String),
    /// Normalised without a trailing `/` (so the root prefix is empty).
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
pub enum ValueMatcher {
    Exact(String),
    Regex(Regex),
}

#[derive(Debug)]
pub struct MatchSpec {
    pub path: PathMatcher,
    pub method: Option<Method>,
    pub headers: Vec<(HeaderName, ValueMatcher)>,
    pub query: Vec<(String, ValueMatcher)>,
}

/// Why a match could not be compiled (names that are not HTTP tokens).
#[derive(Debug, PartialEq, Eq)]
pub struct CompileError(pub String);

fn anchored(pattern: &str) -> Result<Regex, CompileError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| CompileError(e.to_string()))
}

impl ValueMatcher {
    pub fn compile(kind: ValueMatchType, value: &str) -> Result<Self, CompileError> {
        Ok(match kind {
            ValueMatchType::Exact => ValueMatcher::Exact(value.to_string()),
            ValueMatchType::RegularExpression => ValueMatcher::Regex(anchored(value)?),
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatcher::Exact(v) => v == value,
            ValueMatcher::Regex(r) => r.is_match(value),
        }
    }
}

impl PathMatcher {
    pub fn compile(path: &PathMatch) -> Result<Self, CompileError> {
        Ok(match path.kind {
            PathMatchType::Exact => PathMatcher::Exact(path.value.clone()),
            PathMatchType::PathPrefix => {
                PathMatcher::Prefix(path.value.trim_end_matches('/').to_string())
            }
            PathMatchType::RegularExpression => PathMatcher::Regex(anchored(&path.value)?),
        })
    }

    /// Whether `path` matches; for a prefix, also how many bytes it covers
    /// (what `ReplacePrefixMatch` replaces).
    pub fn matches(&self, path: &str) -> Option<Option<usize>> {
        match self {
            PathMatcher::Exact(p) => (p == path).then_some(None),
            PathMatcher::Prefix(p) => {
                let whole_segment = path.starts_with(p.as_str())
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'));
                whole_segment.then_some(Some(p.len()))
            }
            PathMatcher::Regex(r) => r.is_match(path).then_some(None),
        }
    }
}

impl MatchSpec {
    /// The match-everything spec of a rule without matches (`PathPrefix /`).
    pub fn everything() -> Self {
        MatchSpec {
            path: PathMatcher::Prefix(String::new()),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }

    pub fn compile(m: &RouteMatch) -> Result<Self, CompileError> {
        let path = match &m.path {
            Some(p) => PathMatcher::compile(p)?,
            None => PathMatcher::Prefix(String::new()),
        };
        let method = m
            .method
            .as_deref()
            .map(|s| Method::from_bytes(s.to_ascii_uppercase().as_bytes()))
            .transpose()
            .map_err(|_| CompileError(format!("`{:?}` is not an HTTP method", m.method)))?;
        let headers = m
            .headers
            .iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| CompileError(format!("`{}` is not a header name", h.name)))?;
                Ok((name, ValueMatcher::compile(h.kind, &h.value)?))
            })
            .collect::<Result<_, CompileError>>()?;
        let query = m
            .query_params
            .iter()
            .map(|q| Ok((q.name.clone(), ValueMatcher::compile(q.kind, &q.value)?)))
            .collect::<Result<_, CompileError>>()?;
        Ok(MatchSpec {
            path,
            method,
            headers,
            query,
        })
    }

    /// `Some(prefix_len)` when the request matches (see [`PathMatcher::matches`]).
    pub fn matches(&self, req: &RequestView<'_>) -> Option<Option<usize>> {
        if let Some(m) = &self.method
            && m != req.method
        {
            return None;
        }
        let prefix = self.path.matches(req.path)?;
        for (name, matcher) in &self.headers {
            let any = req
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| matcher.matches(v)));
            if !any {
                return None;
            }
        }
        for (name, matcher) in &self.query {
            if !query_value(req.query, name).is_some_and(|v| matcher.matches(v)) {
                return None;
            }
        }
        Some(prefix)
    }
}

/// The first value of query parameter `name` (raw, not percent-decoded).
fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> PathMatcher {
        PathMatcher::compile(&PathMatch {
            kind: PathMatchType::PathPrefix,
            value: p.into(),
        })
        .unwrap()
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let m = prefix("/v2");
        assert_eq!(m.matches("/v2"), Some(Some(3)));
        assert_eq!(m.matches("/v2/x"), Some(Some(3)));
        assert_eq!(m.matches("/v2x"), None);
        assert_eq!(m.matches("/v"), None);
        assert_eq!(prefix("/v2/").matches("/v2/x"), Some(Some(3)));
        assert_eq!(prefix("/").matches("/anything"), Some(Some(0)));
        assert_eq!(prefix("/").matches("/"), Some(Some(0)));
    }

    #[test]
    fn regex_matches_the_whole_path() {
        let m = PathMatcher::compile(&PathMatch {
            kind: PathMatchType::RegularExpression,
            value: "/users/[0-9]+".into(),
        })
        .unwrap();
        assert!(m.matches("/users/42").is_some());
        assert!(m.matches("/users/42/x").is_none());
    }

    #[test]
    fn headers_are_case_insensitive_and_query_exact() {
        let spec = MatchSpec::compile(
            &serde_json::from_str(
                r#"{"method":"get","headers":[{"name":"X-User","value":"bob"}],
                    "queryParams":[{"name":"v","value":"2"}]}"#,
            )
            .unwrap(),
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "bob".parse().unwrap());
        let view = |q, m: &'static Method| RequestView {
            method: m,
            path: "/a",
            query: q,
            headers: &headers,
        };
        assert!(spec.matches(&view(Some("a=1&v=2"), &Method::GET)).is_some());
        assert!(spec.matches(&view(Some("V=2"), &Method::GET)).is_none());
        assert!(spec.matches(&view(Some("v=2"), &Method::POST)).is_none());
        assert!(spec.matches(&view(None, &Method::GET)).is_none());
    }
}
