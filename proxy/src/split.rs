//! Weighted choice between a rule's backends, random or sticky. A sticky
//! split hashes a header or cookie onto the cumulative weights, so one user
//! keeps landing on the same backend for as long as the weights hold.

use http::{HeaderMap, HeaderName, header::COOKIE};

use gitmesh_proxy_config::{HashKind, HashOn};

use crate::balance::hash64;

/// Where a request's hash key comes from.
#[derive(Debug)]
pub enum HashKey {
    Header(HeaderName),
    Cookie(String),
}

impl HashKey {
    pub fn compile(on: &HashOn) -> Result<Self, String> {
        match on.kind {
            HashKind::Header => HeaderName::from_bytes(on.name.to_ascii_lowercase().as_bytes())
                .map(HashKey::Header)
                .map_err(|_| format!("`{}` is not a header name", on.name)),
            HashKind::Cookie => Ok(HashKey::Cookie(on.name.clone())),
        }
    }

    /// The hash of the key's value in this request, if present.
    pub fn hash(&self, headers: &HeaderMap) -> Option<u64> {
        match self {
            HashKey::Header(name) => headers.get(name).map(|v| hash64(v.as_bytes())),
            HashKey::Cookie(name) => headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    (k == name).then(|| hash64(v.as_bytes()))
                }),
        }
    }
}

/// Backends with weights, as cumulative sums for a binary search.
#[derive(Debug)]
pub struct Split<T> {
    backends: Vec<T>,
    cumulative: Vec<u64>,
    total: u64,
}

impl<T> Split<T> {
    pub fn new(weighted: impl IntoIterator<Item = (T, u32)>) -> Self {
        let mut backends = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        for (b, w) in weighted {
            if w == 0 {
                continue;
            }
            total += u64::from(w);
            backends.push(b);
            cumulative.push(total);
        }
        Split {
            backends,
            cumulative,
            total,
        }
    }

    /// The backend for a sticky hash, or a random one without. `None` when
    /// every weight is 0 (Gateway API: answer 500).
    pub fn pick(&self, hash: Option<u64>) -> Option<&T> {
        if self.total == 0 {
            return None;
        }
        if self.backends.len() == 1 {
            return self.backends.first();
        }
        let point = match hash {
            Some(h) => h % self.total,
            None => rand::random_range(0..self.total),
        };
        let i = self.cumulative.partition_point(|&c| c <= point);
        self.backends.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_split_follows_weights() {
        let s = Split::new([("v1", 90), ("v2", 10), ("none", 0)]);
        let v2 = (0..10_000).filter(|_| s.pick(None) == Some(&"v2")).count();
        assert!((800..1200).contains(&v2), "{v2}");
        assert!(Split::<&str>::new([("a", 0)]).pick(None).is_none());
    }

    #[test]
    fn sticky_split_is_stable_and_proportional() {
        let s = Split::new([("v1", 80), ("v2", 20)]);
        let mut v2 = 0;
        for u in 0..5000 {
            let h = hash64(format!("user-{u}").as_bytes());
            let first = s.pick(Some(h));
            assert_eq!(first, s.pick(Some(h)));
            v2 += usize::from(first == Some(&"v2"));
        }
        assert!((800..1200).contains(&v2), "{v2}");
    }

    #[test]
    fn cookie_and_header_keys() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; user=bob; c=3".parse().unwrap());
        h.insert("x-user", "bob".parse().unwrap());
        let c = HashKey::Cookie("user".into());
        let x = HashKey::Header(HeaderName::from_static("x-user"));
        assert_eq!(c.hash(&h), Some(hash64(b"bob")));
        assert_eq!(x.hash(&h), Some(hash64(b"bob")));
        assert_eq!(HashKey::Cookie("nope".into()).hash(&h), None);
    }
}
