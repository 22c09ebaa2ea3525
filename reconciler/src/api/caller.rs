//! Who calls the proxy API, from the TLS client certificate, and whether it
//! may act for a service. Under the mesh CA the API is HTTPS only and every
//! route that speaks for a proxy (register, long-poll, ACK/NACK, heartbeat)
//! needs the certificate of that proxy's service: a sidecar presents the
//! one the CA issued it. Without it, anyone who can reach the API could
//! register as any service or NACK a rollout into a revert. The CA's own
//! route (`POST /v1/certificates`, token-authenticated), status, metrics
//! and the webhook stay open to callers without a certificate.

use gitmesh_proxy_config::PeerIdentity;
use http::StatusCode;
use x509_parser::extensions::GeneralName;

/// The caller of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiCaller {
    /// Plain HTTP (no mesh CA): there is nothing to check against.
    Open,
    /// TLS without a client certificate.
    Anonymous,
    /// A certificate of the mesh CA for `spiffe://<trust domain>/svc/<service>`.
    Service(String),
    /// A certificate of the mesh CA that names no service of its trust
    /// domain (what it names, for the answer).
    Other(String),
}

impl ApiCaller {
    /// The caller presenting `chain` (verified by rustls against the mesh
    /// CA), or [`ApiCaller::Anonymous`] without one.
    pub fn of(chain: Option<&[rustls_pki_types::CertificateDer<'_>]>, trust_domain: &str) -> Self {
        let Some(leaf) = chain.and_then(|c| c.first()) else {
            return ApiCaller::Anonymous;
        };
        let uris = match x509_parser::parse_x509_certificate(leaf.as_ref()) {
            Ok((_, cert)) => match cert.subject_alternative_name() {
                Ok(Some(san)) => san
                    .value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) => Some(u.to_string()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            Err(_) => Vec::new(),
        };
        match uris.as_slice() {
            [one] => match PeerIdentity::parse(one) {
                Some(id) if id.trust_domain() == trust_domain => {
                    ApiCaller::Service(id.service().to_string())
                }
                _ => ApiCaller::Other(one.clone()),
            },
            [] => ApiCaller::Other("no SPIFFE ID".to_string()),
            many => ApiCaller::Other(many.join(", ")),
        }
    }

    /// Whether this caller may speak for a proxy of `service`; otherwise
    /// the status and the reason to answer.
    pub fn may_act_for(&self, service: &str) -> Result<(), (StatusCode, String)> {
        match self {
            ApiCaller::Open => Ok(()),
            ApiCaller::Service(s) if s == service => Ok(()),
            ApiCaller::Anonymous => Err((
                StatusCode::UNAUTHORIZED,
                format!(
                    "this route needs the mesh certificate of service `{service}` \
                     (a sidecar presents the one the mesh CA issued it)"
                ),
            )),
            ApiCaller::Service(s) => Err((
                StatusCode::FORBIDDEN,
                format!("the certificate is for service `{s}`, not `{service}`"),
            )),
            ApiCaller::Other(what) => Err((
                StatusCode::FORBIDDEN,
                format!("the certificate names no service of this mesh ({what})"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    use super::*;
    use crate::ca::MeshCa;

    fn cert_for(ca: &MeshCa, service: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(ca.spiffe_id(service)).unwrap(),
        )];
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let pem = ca
            .issue(&csr, service, Duration::from_secs(600), SystemTime::now())
            .unwrap();
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn a_service_certificate_acts_for_its_service_only() {
        let ca = MeshCa::generate("mesh.test", SystemTime::now()).unwrap();
        let reviews = [cert_for(&ca, "reviews")];
        let caller = ApiCaller::of(Some(&reviews), "mesh.test");
        assert_eq!(caller, ApiCaller::Service("reviews".into()));
        assert!(caller.may_act_for("reviews").is_ok());
        let (status, why) = caller.may_act_for("details").unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(why.contains("`reviews`, not `details`"), "{why}");
        // The same certificate read against another trust domain names no
        // service of that mesh.
        let other = ApiCaller::of(Some(&reviews), "other.test");
        assert!(matches!(&other, ApiCaller::Other(id) if id == "spiffe://mesh.test/svc/reviews"));
        assert_eq!(
            other.may_act_for("reviews").unwrap_err().0,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn no_certificate_is_refused_and_plain_http_is_open() {
        let anonymous = ApiCaller::of(None, "mesh.test");
        assert_eq!(anonymous, ApiCaller::Anonymous);
        assert_eq!(
            anonymous.may_act_for("reviews").unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(ApiCaller::of(Some(&[]), "mesh.test"), ApiCaller::Anonymous);
        assert!(ApiCaller::Open.may_act_for("reviews").is_ok());
    }
}
