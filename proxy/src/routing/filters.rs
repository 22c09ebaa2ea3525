//! Gateway API filters compiled once per config: request and response header
//! modifiers, redirects and URL rewrites. Mirrors live in `mirror.rs`.

use http::{HeaderMap, HeaderName, HeaderValue};

use gitmesh_proxy_config::{HeaderModifier, PathModifier, Redirect, UrlRewrite};

use super::matcher::CompileError;

/// Set, add and remove headers; names are case-insensitive.
#[derive(Debug, Default)]
pub struct HeaderEdit {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), CompileError> {
    let n = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| CompileError(format!("`{name}` is not a valid header name")))?;
    let v = HeaderValue::from_str(value)
        .map_err(|_| CompileError(format!("`{value}` is not a valid header value")))?;
    Ok((n, v))
}

impl HeaderEdit {
    pub fn compile(m: &HeaderModifier) -> Result<Self, CompileError> {
        Ok(HeaderEdit {
            set: m
                .set
                .iter()
                .map(|h| header(&h.name, &h.value))
                .collect::<Result<_, _>>()?,
            add: m
                .add
                .iter()
                .map(|h| header(&h.name, &h.value))
                .collect::<Result<_, _>>()?,
            remove: m
                .remove
                .iter()
                .map(|n| header(n, "").map(|(n, _)| n))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
        for n in &self.remove {
            headers.remove(n);
        }
    }
}

/// Applies a path modifier; `prefix_len` is how much of `path` the rule's
/// `PathPrefix` matched (0 when the rule had none).
pub fn modify_path(modifier: &PathModifier, path: &str, prefix_len: Option<usize>) -> String {
    match modifier {
        PathModifier::ReplaceFullPath(p) => p.clone(),
        PathModifier::ReplacePrefixMatch(replacement) => {
            let rest = &path[prefix_len.unwrap_or(0).min(path.len())..];
            let base = replacement.trim_end_matches('/');
            let mut out = String::with_capacity(base.len() + rest.len() + 1);
            out.push_str(base);
            if !rest.is_empty() && !rest.starts_with('/') {
                out.push('/');
            }
            out.push_str(rest);
            if out.is_empty() {
                out.push('/');
            }
            out
        }
    }
}

/// The parts of the incoming request a redirect starts from.
#[derive(Debug)]
pub struct RedirectFrom<'a> {
    pub host: &'a str,
    pub port: Option<u16>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub prefix_len: Option<usize>,
}

/// The `Location` of a `RequestRedirect`: unspecified parts come from the
/// request; a changed scheme drops the port unless one is given.
pub fn redirect_location(r: &Redirect, from: &RedirectFrom<'_>) -> String {
    let scheme = r.scheme.as_deref().unwrap_or("http");
    let host = r.hostname.as_deref().unwrap_or(from.host);
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => Some(p),
        (None, Some(_)) => None,
        (None, None) => from.port,
    };
    let port = port.filter(|&p| !(scheme == "http" && p == 80 || scheme == "https" && p == 443));
    let path = match &r.path {
        Some(m) => modify_path(m, from.path, from.prefix_len),
        None => from.path.to_string(),
    };
    let mut out = format!("{scheme}://{host}");
    if let Some(p) = port {
        out.push(':');
        out.push_str(&p.to_string());
    }
    out.push_str(&path);
    if let Some(q) = from.query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A compiled `URLRewrite`.
#[derive(Debug)]
pub struct Rewrite {
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathModifier>,
}

impl Rewrite {
    pub fn compile(r: &UrlRewrite) -> Result<Self, CompileError> {
        let hostname = r
            .hostname
            .as_deref()
            .map(|h| {
                HeaderValue::from_str(h)
                    .map_err(|_| CompileError(format!("`{h}` is not a valid hostname")))
            })
            .transpose()?;
        Ok(Rewrite {
            hostname,
            path: r.path.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_prefix_keeps_segments_clean() {
        let p = |r: &str| PathModifier::ReplacePrefixMatch(r.into());
        assert_eq!(modify_path(&p("/v3"), "/v2/x", Some(3)), "/v3/x");
        assert_eq!(modify_path(&p("/"), "/v2/x", Some(3)), "/x");
        assert_eq!(modify_path(&p("/"), "/v2", Some(3)), "/");
        assert_eq!(modify_path(&p("/new/"), "/v2", Some(3)), "/new");
        assert_eq!(
            modify_path(&PathModifier::ReplaceFullPath("/f".into()), "/a/b", Some(2)),
            "/f"
        );
    }

    #[test]
    fn redirect_fills_from_request() {
        let r: Redirect = serde_json::from_str(r#"{"scheme":"https","statusCode":301}"#).unwrap();
        let from = RedirectFrom {
            host: "reviews",
            port: Some(8080),
            path: "/a",
            query: Some("x=1"),
            prefix_len: None,
        };
        assert_eq!(redirect_location(&r, &from), "https://reviews/a?x=1");
        let r: Redirect = serde_json::from_str(
            r#"{"hostname":"new","port":9000,"path":{"type":"ReplacePrefixMatch","value":"/b"}}"#,
        )
        .unwrap();
        let from = RedirectFrom {
            prefix_len: Some(2),
            ..from
        };
        assert_eq!(redirect_location(&r, &from), "http://new:9000/b?x=1");
    }

    #[test]
    fn header_edit_sets_adds_removes() {
        let m: HeaderModifier = serde_json::from_str(
            r#"{"set":[{"name":"X-A","value":"1"}],"add":[{"name":"x-b","value":"2"}],"remove":["X-C"]}"#,
        )
        .unwrap();
        let e = HeaderEdit::compile(&m).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-a", "0".parse().unwrap());
        h.insert("x-b", "1".parse().unwrap());
        h.insert("x-c", "1".parse().unwrap());
        e.apply(&mut h);
        assert_eq!(h["x-a"], "1");
        assert_eq!(h.get_all("x-b").iter().count(), 2);
        assert!(!h.contains_key("x-c"));
        let bad: HeaderModifier =
            serde_json::from_str(r#"{"set":[{"name":"bad name","value":"1"}]}"#).unwrap();
        assert!(HeaderEdit::compile(&bad).is_err());
    }
}
