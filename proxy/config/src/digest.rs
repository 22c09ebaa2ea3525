//! Content digests: the same config always yields the same bytes and the same
//! digest, whatever order its sources were read in.

use sha2::{Digest, Sha256};

use crate::ProxyConfig;

impl ProxyConfig {
    /// The canonical wire bytes: compact JSON in field declaration order.
    /// Collections are ordered by the compiler, so equal configs are equal
    /// bytes.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a ProxyConfig always serializes")
    }

    /// `sha256:<hex>` of the canonical bytes, ignoring `version` so that two
    /// commits compiling to the same config share a digest (and a proxy whose
    /// config did not change is not touched).
    pub fn digest(&self) -> String {
        let mut unversioned = self.clone();
        unversioned.version.clear();
        let hash = Sha256::digest(unversioned.to_canonical_json());
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256:");
        for byte in hash {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::ProxyConfig;

    #[test]
    fn digest_ignores_version_but_not_content() {
        let a = ProxyConfig::from_json(br#"{"version":"a","service":"s"}"#).unwrap();
        let mut b = a.clone();
        b.version = "b".into();
        assert_eq!(a.digest(), b.digest());
        b.service = "t".into();
        assert_ne!(a.digest(), b.digest());
        assert!(a.digest().starts_with("sha256:") && a.digest().len() == 71);
    }
}
