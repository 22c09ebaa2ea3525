//! Path normalization before authorization: the path an intention is checked
//! against must be the path the app serves, or `/public/../admin` walks past
//! a `PathPrefix /admin` deny. The inbound side checks and forwards the same
//! normalized path.
//!
//! Steps, in order: percent-decode the unreserved characters (RFC 3986
//! §2.3: letters, digits, `-`, `.`, `_`, `~`) and upper-case the hex of any
//! other escape; merge runs of `/`; remove `.` and `..` segments (RFC 3986
//! §5.2.4, never above the root). An encoded `/` or `\` (`%2F`, `%5C`), an
//! encoded NUL, a literal `\`, a bad escape or a path not starting with `/`
//! is refused: the app could read it either way.

use std::borrow::Cow;

/// Why a request path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F`, `%5C`, `%00` or a literal `\`: ambiguous to the app.
    AmbiguousSeparator,
    /// Not an absolute path (`*`, `http://…` forms, empty).
    NotAbsolute,
}

impl PathError {
    /// The `x-gitmesh-error` reason.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::BadEscape => "bad-path-escape",
            PathError::AmbiguousSeparator => "ambiguous-path",
            PathError::NotAbsolute => "bad-path",
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes unreserved escapes, canonicalizes the rest. The result is ASCII
/// when the input is (a request path always is).
fn decode(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let b = hi << 4 | lo;
                if matches!(b, b'/' | b'\\' | 0) {
                    return Err(PathError::AmbiguousSeparator);
                }
                if is_unreserved(b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
                i += 3;
            }
            b'\\' => return Err(PathError::AmbiguousSeparator),
            _ => {
                // Non-ASCII cannot appear in an `http::Uri` path; keep whole
                // characters anyway so slicing stays on boundaries.
                let c = path[i..].chars().next().expect("in bounds");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    Ok(out)
}

/// Whether `path` is already normal: no escape, backslash, empty, `.` or
/// `..` segment. Most paths are, and skip the rewrite.
fn is_normal(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains(['%', '\\'])
        && !path.contains("//")
        && path
            .split('/')
            .all(|segment| !matches!(segment, "." | ".."))
}

/// The normalized form of an absolute request path (no query); borrowed
/// when it already is.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    normalize_owned(path).map(Cow::Owned)
}

fn normalize_owned(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode(path)?;
    let trailing_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        let fast = normalize(p).map(Cow::into_owned);
        assert_eq!(fast, normalize_owned(p), "fast path agrees on {p:?}");
        fast
    }

    #[test]
    fn leaves_clean_paths_alone() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a/b/",
            "/api/v1/users/42",
            "/a%20b",
            "/~user",
        ] {
            assert_eq!(n(p).unwrap(), p, "{p}");
        }
    }

    #[test]
    fn removes_dot_segments_and_merges_slashes() {
        assert_eq!(n("/a/../admin").unwrap(), "/admin");
        assert_eq!(n("/public/../../admin/x").unwrap(), "/admin/x");
        assert_eq!(n("//admin").unwrap(), "/admin");
        assert_eq!(n("/a//b///c").unwrap(), "/a/b/c");
        assert_eq!(n("/./admin/.").unwrap(), "/admin/");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/..").unwrap(), "/");
        assert_eq!(n("/admin/..x").unwrap(), "/admin/..x");
    }

    #[test]
    fn decodes_unreserved_escapes_before_dot_removal() {
        assert_eq!(n("/%61dmin").unwrap(), "/admin");
        assert_eq!(n("/a/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/a/%2E./admin").unwrap(), "/admin");
        assert_eq!(n("/%7euser").unwrap(), "/~user");
        // Reserved characters stay encoded, with upper-case hex.
        assert_eq!(n("/a%3fb").unwrap(), "/a%3Fb");
        assert_eq!(n("/a%20b").unwrap(), "/a%20b");
    }

    #[test]
    fn refuses_ambiguous_and_malformed_paths() {
        assert_eq!(n("/a%2fadmin"), Err(PathError::AmbiguousSeparator));
        assert_eq!(n("/a%2F..%2Fadmin"), Err(PathError::AmbiguousSeparator));
        assert_eq!(n("/a%5cadmin"), Err(PathError::AmbiguousSeparator));
        assert_eq!(n("/a\\admin"), Err(PathError::AmbiguousSeparator));
        assert_eq!(n("/a%00"), Err(PathError::AmbiguousSeparator));
        assert_eq!(n("/a%2"), Err(PathError::BadEscape));
        assert_eq!(n("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(n("*"), Err(PathError::NotAbsolute));
        assert_eq!(n(""), Err(PathError::NotAbsolute));
    }

    #[test]
    fn is_idempotent() {
        for p in ["/a/../b//c/%2e/d", "/%41/./b/", "/x%3F"] {
            let once = n(p).unwrap();
            assert_eq!(n(&once).unwrap(), once, "{p}");
        }
    }
}
