//! gitmesh's SPIFFE IDs, `spiffe://<trust-domain>/svc/<service>`: the one
//! shape both planes read out of certificates (the proxy for its peers, the
//! reconciler for the proxies calling its API).

/// A SPIFFE identity of gitmesh's shape, `spiffe://<trust-domain>/svc/<service>`
/// (verified when it comes from a certificate the mesh CA signed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    spiffe_id: String,
    trust_domain_len: usize,
}

impl PeerIdentity {
    /// Parses a SPIFFE ID of gitmesh's shape. `None` for anything else.
    pub fn parse(spiffe_id: &str) -> Option<Self> {
        let rest = spiffe_id.strip_prefix("spiffe://")?;
        let (domain, path) = rest.split_once('/')?;
        let service = path.strip_prefix("svc/")?;
        let valid_label = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !valid_label(domain) || !valid_label(service) || service.contains('.') {
            return None;
        }
        Some(PeerIdentity {
            spiffe_id: spiffe_id.to_string(),
            trust_domain_len: domain.len(),
        })
    }

    /// The identity of `service` in `trust_domain`.
    pub fn for_service(trust_domain: &str, service: &str) -> Option<Self> {
        Self::parse(&format!("spiffe://{trust_domain}/svc/{service}"))
    }

    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    pub fn trust_domain(&self) -> &str {
        let start = "spiffe://".len();
        &self.spiffe_id[start..start + self.trust_domain_len]
    }

    /// The calling service's name.
    pub fn service(&self) -> &str {
        let start = "spiffe://".len() + self.trust_domain_len + "/svc/".len();
        &self.spiffe_id[start..]
    }
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spiffe_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gitmesh_spiffe_ids() {
        let id = PeerIdentity::parse("spiffe://gitmesh.local/svc/reviews").unwrap();
        assert_eq!(id.trust_domain(), "gitmesh.local");
        assert_eq!(id.service(), "reviews");
        assert_eq!(id.to_string(), "spiffe://gitmesh.local/svc/reviews");
        assert_eq!(
            PeerIdentity::for_service("gitmesh.local", "reviews"),
            Some(id)
        );
    }

    #[test]
    fn refuses_other_shapes() {
        for bad in [
            "",
            "https://gitmesh.local/svc/reviews",
            "spiffe://gitmesh.local/ns/default/sa/reviews",
            "spiffe://gitmesh.local/svc/",
            "spiffe:///svc/reviews",
            "spiffe://gitmesh.local/svc/Reviews",
            "spiffe://gitmesh.local/svc/a/b",
            "spiffe://gitmesh.local/svc/a.b",
        ] {
            assert_eq!(PeerIdentity::parse(bad), None, "{bad}");
        }
    }
}
