//! What an operator sees of a sidecar's identity (`GET /identity` on the
//! admin port): its SPIFFE ID, the certificate in use, and the mesh roots
//! it trusts, each with its SHA-256 fingerprint, so that every round of a
//! CA rotation can be checked sidecar by sidecar.

use rustls_pki_types::CertificateDer;
use serde::Serialize;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A sidecar's identity as `/identity` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityView {
    pub spiffe_id: String,
    pub certificate: Option<CertificateView>,
    pub roots: Vec<CertificateView>,
}

/// One certificate: names, serial, validity (Unix seconds) and the SHA-256
/// of its DER encoding (what `openssl x509 -fingerprint -sha256` prints,
/// lower-case and without colons).
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateView {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub sha256: String,
}

/// `None` for bytes that are not an X.509 certificate.
pub fn certificate_view(der: &CertificateDer<'_>) -> Option<CertificateView> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let validity = cert.validity();
    Some(CertificateView {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn a_certificate_is_described_by_its_names_dates_and_fingerprint() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gitmesh mesh CA test.local");
        params.serial_number = Some(rcgen::SerialNumber::from(vec![0x01, 0xab]));
        let cert = params.self_signed(&key).unwrap();
        let der = CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap();
        let view = certificate_view(&der).unwrap();
        assert_eq!(view.subject, "CN=gitmesh mesh CA test.local");
        assert_eq!(view.issuer, view.subject);
        assert_eq!(view.serial, "01:ab");
        assert!(view.not_before < view.not_after);
        assert_eq!(view.sha256.len(), 64);
        assert!(view.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(certificate_view(&CertificateDer::from(vec![1, 2, 3])), None);
    }
}
