//! `POST /v1/certificates`: a sidecar proves with a bootstrap token that it
//! may take a service's identity and gets a short-lived certificate for its
//! CSR. Tokens are per service or global, compared in constant time; a
//! wrong or missing token gets nothing, and every outcome is counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gitmesh_proxy_config::api::{CertificateSigningRequest, IssuedCertificate};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use subtle::ConstantTimeEq;

use crate::ca::{CsrRefused, MeshCa};

/// Shortest token accepted from configuration.
pub const MIN_TOKEN_BYTES: usize = 16;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `issued`, `bad-token` or `bad-csr`.
    pub outcome: &'static str,
}

/// The bootstrap tokens: one per service, and an optional global one for
/// services without their own.
#[derive(Clone, Default)]
pub struct BootstrapTokens {
    global: Option<Vec<u8>>,
    per_service: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for BootstrapTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapTokens")
            .field("global", &self.global.is_some())
            .field("services", &self.per_service.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenFileError {
    #[error("line {line}: expected `<service>: <token>` or `*: <token>`")]
    Syntax { line: usize },
    #[error("line {line}: the token is shorter than {MIN_TOKEN_BYTES} bytes")]
    TooShort { line: usize },
    #[error("no token in the file")]
    Empty,
}

impl BootstrapTokens {
    /// One token for every service.
    pub fn global(token: &str) -> Result<Self, TokenFileError> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_BYTES {
            return Err(TokenFileError::TooShort { line: 1 });
        }
        Ok(BootstrapTokens {
            global: Some(token.as_bytes().to_vec()),
            per_service: BTreeMap::new(),
        })
    }

    /// Parses a token file: `<service>: <token>` lines, `*: <token>` for
    /// the global one, `#` comments and blank lines ignored.
    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut tokens = BootstrapTokens::default();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (who, token) = line
                .split_once(':')
                .ok_or(TokenFileError::Syntax { line: line_no })?;
            let (who, token) = (who.trim(), token.trim());
            if who.is_empty() {
                return Err(TokenFileError::Syntax { line: line_no });
            }
            if token.len() < MIN_TOKEN_BYTES {
                return Err(TokenFileError::TooShort { line: line_no });
            }
            let token = token.as_bytes().to_vec();
            if who == "*" {
                tokens.global = Some(token);
            } else {
                tokens.per_service.insert(who.to_string(), token);
            }
        }
        if tokens.global.is_none() && tokens.per_service.is_empty() {
            return Err(TokenFileError::Empty);
        }
        Ok(tokens)
    }

    /// Whether `presented` vouches for `service`: its own token if it has
    /// one, else the global one.
    pub fn admits(&self, service: &str, presented: &[u8]) -> bool {
        let expected = match self.per_service.get(service) {
            Some(t) => t,
            None => match &self.global {
                Some(t) => t,
                None => return false,
            },
        };
        // `ct_eq` on slices of different lengths is false without looking
        // at the contents; lengths are not secret here.
        bool::from(expected.as_slice().ct_eq(presented))
    }
}

/// Why a certificate request got nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("missing or wrong bootstrap token for this service")]
    Token,
    #[error(transparent)]
    Csr(#[from] CsrRefused),
}

/// The CA as the proxy API serves it.
#[derive(Debug)]
pub struct CertificateService {
    ca: MeshCa,
    tokens: BootstrapTokens,
    lifetime: Duration,
    outcomes: Family<OutcomeLabels, Counter>,
}

impl CertificateService {
    /// `outcomes` is the counter family the reconciler's metrics export.
    pub fn new(
        ca: MeshCa,
        tokens: BootstrapTokens,
        lifetime: Duration,
        outcomes: Family<OutcomeLabels, Counter>,
    ) -> Arc<Self> {
        Arc::new(CertificateService {
            ca,
            tokens,
            lifetime,
            outcomes,
        })
    }

    pub fn ca(&self) -> &MeshCa {
        &self.ca
    }

    fn count(&self, outcome: &'static str) {
        self.outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Checks the token, then signs. `token` is the bearer token as sent.
    pub fn issue(
        &self,
        token: Option<&str>,
        request: &CertificateSigningRequest,
        now: SystemTime,
    ) -> Result<IssuedCertificate, Refused> {
        let admitted = token.is_some_and(|t| self.tokens.admits(&request.service, t.as_bytes()));
        if !admitted {
            self.count("bad-token");
            tracing::warn!(service = %request.service, "certificate request with a missing or wrong bootstrap token");
            return Err(Refused::Token);
        }
        match self
            .ca
            .issue(&request.csr, &request.service, self.lifetime, now)
        {
            Ok(certificate) => {
                self.count("issued");
                tracing::info!(service = %request.service, "issued a certificate");
                Ok(IssuedCertificate {
                    certificate,
                    ca_bundle: self.ca.cert_pem().to_string(),
                })
            }
            Err(e) => {
                self.count("bad-csr");
                tracing::warn!(service = %request.service, reason = %e, "refused a CSR");
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "reviews-token-0123456789";
    const T2: &str = "global-token-0123456789";

    #[test]
    fn per_service_tokens_win_over_the_global_one() {
        let tokens =
            BootstrapTokens::parse(&format!("# tokens\nreviews: {T1}\n\n*: {T2}\n")).unwrap();
        assert!(tokens.admits("reviews", T1.as_bytes()));
        assert!(!tokens.admits("reviews", T2.as_bytes()));
        assert!(tokens.admits("ratings", T2.as_bytes()));
        assert!(!tokens.admits("ratings", T1.as_bytes()));
        assert!(!tokens.admits("ratings", b""));
        let only_reviews = BootstrapTokens::parse(&format!("reviews: {T1}")).unwrap();
        assert!(!only_reviews.admits("ratings", T1.as_bytes()));
    }

    #[test]
    fn token_files_are_checked() {
        assert_eq!(
            BootstrapTokens::parse("reviews short").unwrap_err(),
            TokenFileError::Syntax { line: 1 }
        );
        assert_eq!(
            BootstrapTokens::parse("\nreviews: short").unwrap_err(),
            TokenFileError::TooShort { line: 2 }
        );
        assert_eq!(
            BootstrapTokens::parse("# nothing\n").unwrap_err(),
            TokenFileError::Empty
        );
        assert!(BootstrapTokens::global("tiny").is_err());
    }

    #[test]
    fn wrong_tokens_get_nothing_and_are_counted() {
        let now = SystemTime::now();
        let ca = MeshCa::generate("mesh.test", now).unwrap();
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        let svc = CertificateService::new(
            ca,
            BootstrapTokens::global(T2).unwrap(),
            Duration::from_secs(3600),
            outcomes.clone(),
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://mesh.test/svc/reviews".try_into().unwrap(),
        )];
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let req = CertificateSigningRequest {
            service: "reviews".into(),
            csr,
        };
        assert_eq!(svc.issue(None, &req, now), Err(Refused::Token));
        assert_eq!(svc.issue(Some("nope"), &req, now), Err(Refused::Token));
        let issued = svc.issue(Some(T2), &req, now).unwrap();
        assert!(
            issued
                .certificate
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(issued.ca_bundle, svc.ca().cert_pem());
        let wrong_service = CertificateSigningRequest {
            service: "ratings".into(),
            ..req
        };
        assert!(matches!(
            svc.issue(Some(T2), &wrong_service, now),
            Err(Refused::Csr(CsrRefused::WrongIdentity { .. }))
        ));
        let count = |outcome| outcomes.get_or_create(&OutcomeLabels { outcome }).get();
        assert_eq!(
            (count("bad-token"), count("issued"), count("bad-csr")),
            (2, 1, 1)
        );
    }
}
