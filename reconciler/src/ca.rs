//! The mesh certificate authority: a root key and certificate (generated
//! into the data dir or loaded from files the operator names, never from
//! the policy repo) that signs short-lived SPIFFE certificates for
//! sidecars from the CSRs they send. The private key of a sidecar never
//! reaches the reconciler; a CSR asking for anything but the one identity
//! its token vouches for is refused with the reason.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Largest CSR accepted, in bytes of PEM.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// Default lifetime of a sidecar certificate.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Lifetime of a generated root.
const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Why the CA could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the CA key is not a usable PEM private key: {0}")]
    BadKey(String),
    #[error("the CA certificate is not a usable PEM certificate: {0}")]
    BadCertificate(String),
    #[error("cannot generate the CA: {0}")]
    Generate(String),
    #[error("`{0}` is not a valid trust domain (lowercase letters, digits, '-' and '.')")]
    BadTrustDomain(String),
}

/// Why a CSR got no certificate. Shown to the caller as is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrRefused {
    #[error("the CSR is larger than {MAX_CSR_BYTES} bytes")]
    TooLarge,
    #[error("the CSR is not a PEM certificate request with a valid signature: {0}")]
    Malformed(String),
    #[error("`{0}` is not a valid service name")]
    BadService(String),
    #[error("the CSR must name exactly one SAN, the URI {expected}; it names {found}")]
    WrongIdentity { expected: String, found: String },
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// A root CA for one trust domain.
pub struct MeshCa {
    trust_domain: String,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl MeshCa {
    /// A new root (ECDSA P-256, ten years).
    pub fn generate(trust_domain: &str, now: SystemTime) -> Result<Self, CaError> {
        if !valid_label(trust_domain) {
            return Err(CaError::BadTrustDomain(trust_domain.to_string()));
        }
        let generate = |e: rcgen::Error| CaError::Generate(e.to_string());
        let key = KeyPair::generate().map_err(generate)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("gitmesh mesh CA {trust_domain}"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + ROOT_LIFETIME).into();
        let cert = params.self_signed(&key).map_err(generate)?;
        Ok(MeshCa {
            trust_domain: trust_domain.to_string(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A root from its PEM certificate and key.
    pub fn from_pem(trust_domain: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        if !valid_label(trust_domain) {
            return Err(CaError::BadTrustDomain(trust_domain.to_string()));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::BadKey(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| CaError::BadCertificate(e.to_string()))?;
        Ok(MeshCa {
            trust_domain: trust_domain.to_string(),
            cert_pem: cert_pem.to_string(),
            issuer,
        })
    }

    /// Loads `ca.pem` and `ca-key.pem` from `dir`, or generates them there
    /// (the key readable by its owner only).
    pub fn load_or_generate(dir: &Path, trust_domain: &str) -> Result<Self, CaError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca-key.pem");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CaError::Io { path, source }
        };
        if cert_path.exists() {
            let cert = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            let key = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            return Self::from_pem(trust_domain, &cert, &key);
        }
        let ca = Self::generate(trust_domain, SystemTime::now())?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_private(&key_path, &ca.key_pem()).map_err(io(&key_path))?;
        std::fs::write(&cert_path, ca.cert_pem()).map_err(io(&cert_path))?;
        Ok(ca)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The root certificate: the bundle sidecars trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The SPIFFE ID of `service` in this trust domain.
    pub fn spiffe_id(&self, service: &str) -> String {
        format!("spiffe://{}/svc/{service}", self.trust_domain)
    }

    /// Signs a certificate for `service` from `csr_pem`, valid from a
    /// minute before `now` (clock skew) for `lifetime`. Only the CSR's
    /// public key is used; every other field is set here.
    pub fn issue(
        &self,
        csr_pem: &str,
        service: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<String, CsrRefused> {
        if csr_pem.len() > MAX_CSR_BYTES {
            return Err(CsrRefused::TooLarge);
        }
        if !valid_label(service) || service.contains('.') {
            return Err(CsrRefused::BadService(service.to_string()));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CsrRefused::Malformed(e.to_string()))?;
        let expected = self.spiffe_id(service);
        let asked: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .map(|san| match san {
                SanType::URI(u) => u.as_str().to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        if asked.len() != 1 || asked[0] != expected {
            return Err(CsrRefused::WrongIdentity {
                expected,
                found: if asked.is_empty() {
                    "none".to_string()
                } else {
                    asked.join(", ")
                },
            });
        }
        let mut params = CertificateParams::default();
        let uri = rcgen::string::Ia5String::try_from(expected.as_str())
            .map_err(|e| CsrRefused::Sign(e.to_string()))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, service);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + lifetime).into();
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| CsrRefused::Sign(e.to_string()))?;
        Ok(cert.pem())
    }
}

/// A server certificate and its key (PEM), issued by the mesh CA for the
/// reconciler's own proxy API.
#[derive(Clone)]
pub struct ServerCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl MeshCa {
    /// Makes a key here and signs a `serverAuth` certificate for the proxy
    /// API, valid from a minute before `now` for `lifetime`, whose SANs are
    /// `names`: IP addresses become IP SANs, anything else a DNS name.
    pub fn issue_server(
        &self,
        names: &[String],
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<ServerCertificate, CsrRefused> {
        let sign = |e: rcgen::Error| CsrRefused::Sign(e.to_string());
        let key = KeyPair::generate().map_err(sign)?;
        let mut params = CertificateParams::default();
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    rcgen::string::Ia5String::try_from(name.as_str()).map_err(sign)?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "gitmesh proxy API");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + lifetime).into();
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(sign)?;
        Ok(ServerCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Why a mesh whose policy names `policy_domain` cannot be served by a CA
/// issuing identities in `ca_domain` (`None` when they agree). Sidecars
/// check the peer's SPIFFE ID against the policy's trust domain, so every
/// certificate of the other domain would be refused.
pub fn trust_domain_mismatch(policy_domain: &str, ca_domain: &str) -> Option<String> {
    (policy_domain != ca_domain).then(|| {
        format!(
            "the Mesh's trustDomain is {policy_domain:?}, but this reconciler's mesh CA \
             issues identities in {ca_domain:?}: every sidecar would refuse the others' \
             certificates. Restart the reconciler with --trust-domain {policy_domain} \
             (every sidecar then gets a new certificate), or keep trustDomain: {ca_domain}"
        )
    })
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_trust_domain_mismatch_names_both_and_the_fix() {
        assert_eq!(
            super::trust_domain_mismatch("bookinfo.local", "bookinfo.local"),
            None
        );
        let why = super::trust_domain_mismatch("prod.example", "gitmesh.local").unwrap();
        assert!(why.contains("\"prod.example\""), "{why}");
        assert!(why.contains("\"gitmesh.local\""), "{why}");
        assert!(why.contains("--trust-domain prod.example"), "{why}");
    }

    use super::*;

    fn csr_for(sans: Vec<SanType>) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(rcgen::string::Ia5String::try_from(s).unwrap())
    }

    #[test]
    fn issues_a_spiffe_certificate_from_a_matching_csr() {
        let now = SystemTime::now();
        let ca = MeshCa::generate("mesh.test", now).unwrap();
        let csr = csr_for(vec![uri("spiffe://mesh.test/svc/reviews")]);
        let pem = ca
            .issue(&csr, "reviews", Duration::from_secs(3600), now)
            .unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap();
        let der: rustls_pki_types::CertificateDer = der;
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::URI("spiffe://mesh.test/svc/reviews")]
        );
        let v = cert.validity();
        assert_eq!(
            v.not_after.timestamp() - v.not_before.timestamp(),
            3600 + 60
        );
        assert!(!cert.is_ca());
    }

    #[test]
    fn refuses_csrs_for_another_identity_or_malformed() {
        let now = SystemTime::now();
        let ca = MeshCa::generate("mesh.test", now).unwrap();
        let day = DEFAULT_CERT_LIFETIME;
        let other = csr_for(vec![uri("spiffe://mesh.test/svc/ratings")]);
        assert!(matches!(
            ca.issue(&other, "reviews", day, now),
            Err(CsrRefused::WrongIdentity { .. })
        ));
        let foreign = csr_for(vec![uri("spiffe://evil.test/svc/reviews")]);
        assert!(matches!(
            ca.issue(&foreign, "reviews", day, now),
            Err(CsrRefused::WrongIdentity { .. })
        ));
        let two = csr_for(vec![
            uri("spiffe://mesh.test/svc/reviews"),
            SanType::DnsName("reviews".try_into().unwrap()),
        ]);
        assert!(matches!(
            ca.issue(&two, "reviews", day, now),
            Err(CsrRefused::WrongIdentity { .. })
        ));
        let none = csr_for(vec![]);
        let refused = ca.issue(&none, "reviews", day, now).unwrap_err();
        assert!(refused.to_string().contains("it names none"), "{refused}");
        for garbage in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        ] {
            assert!(matches!(
                ca.issue(garbage, "reviews", day, now),
                Err(CsrRefused::Malformed(_))
            ));
        }
        // A CSR whose body was altered after signing.
        let good = csr_for(vec![uri("spiffe://mesh.test/svc/reviews")]);
        let tampered = good.replacen("MII", "MIJ", 1);
        assert!(ca.issue(&tampered, "reviews", day, now).is_err());
        assert_eq!(
            ca.issue(&"A".repeat(MAX_CSR_BYTES + 1), "reviews", day, now),
            Err(CsrRefused::TooLarge)
        );
        assert!(matches!(
            ca.issue(&good, "../etc", day, now),
            Err(CsrRefused::BadService(_))
        ));
    }

    #[test]
    fn a_generated_root_is_kept_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = MeshCa::load_or_generate(dir.path(), "mesh.test").unwrap();
        let again = MeshCa::load_or_generate(dir.path(), "mesh.test").unwrap();
        assert_eq!(first.cert_pem(), again.cert_pem());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
