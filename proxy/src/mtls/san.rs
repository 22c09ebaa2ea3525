//! Reads the SPIFFE ID (the one URI SAN) out of an X.509 certificate.

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::peer::PeerIdentity;

/// The certificate's SPIFFE identity: exactly one URI SAN, of gitmesh's
/// shape. `None` for anything else (no SAN, several URIs, other schemes).
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Option<PeerIdentity> {
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let uri = uris.next()?;
    if uris.next().is_some() {
        return None;
    }
    PeerIdentity::parse(uri)
}

/// When the certificate stops being valid, in seconds since the epoch.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<(i64, i64)> {
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}
