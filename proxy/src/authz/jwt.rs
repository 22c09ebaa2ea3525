//! JWT verification, pure: a bearer token, the configured providers and
//! their current key sets in, the verified claims or a typed refusal out.
//! Keys are fetched elsewhere ([`super::jwks`]); the time is a parameter.
//!
//! Only RS256 and ES256 are accepted (never `none` or an HMAC algorithm a
//! public key could be abused as). The provider is chosen by the token's
//! `iss`; its key by `kid` (or, without a `kid`, each key of the set).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use gitmesh_proxy_config::JwtProvider;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was refused; each is a 401 whose `x-gitmesh-error` is
/// [`JwtError::reason`], except [`JwtError::KeysUnavailable`] (503).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("not a well-formed JWT")]
    Malformed,
    #[error("algorithm not accepted (only RS256 and ES256)")]
    Algorithm,
    #[error("no provider trusts this issuer")]
    UnknownIssuer,
    #[error("no key of the issuer's set has this key id")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is not for this audience")]
    WrongAudience,
    #[error("the issuer's keys could not be fetched")]
    KeysUnavailable,
}

impl JwtError {
    /// The `x-gitmesh-error` reason (and metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Missing => "jwt-missing",
            JwtError::TooLarge => "jwt-too-large",
            JwtError::Malformed => "jwt-malformed",
            JwtError::Algorithm => "jwt-bad-algorithm",
            JwtError::UnknownIssuer => "jwt-unknown-issuer",
            JwtError::UnknownKey => "jwt-unknown-key",
            JwtError::BadSignature => "jwt-bad-signature",
            JwtError::Expired => "jwt-expired",
            JwtError::NotYetValid => "jwt-not-yet-valid",
            JwtError::WrongAudience => "jwt-wrong-audience",
            JwtError::KeysUnavailable => "jwks-unavailable",
        }
    }
}

/// The bearer token of `Authorization: Bearer <token>`, if any.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, JwtError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| JwtError::Malformed)?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(JwtError::Malformed);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic…) is the app's business, not a JWT.
        return Ok(None);
    }
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    if token.is_empty() {
        return Err(JwtError::Malformed);
    }
    Ok(Some(token))
}

/// What verification needs to know about a token before its signature is
/// checked: its issuer (to pick the provider) and key id.
#[derive(Debug, PartialEq, Eq)]
pub struct Unverified {
    pub issuer: String,
    pub kid: Option<String>,
    pub alg: Algorithm,
}

/// Reads the header and the `iss` claim without trusting them.
pub fn peek(token: &str) -> Result<Unverified, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        ErrorKind::InvalidAlgorithmName => JwtError::Algorithm,
        _ => JwtError::Malformed,
    })?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(JwtError::Algorithm);
    }
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Malformed)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    let Some(Value::String(issuer)) = claims.get("iss") else {
        return Err(JwtError::UnknownIssuer);
    };
    Ok(Unverified {
        issuer: issuer.clone(),
        kid: header.kid,
        alg: header.alg,
    })
}

/// Verifies `token` against `provider`'s `keys` at `now` (seconds since the
/// epoch) and returns its claims.
pub fn verify(
    token: &str,
    provider: &JwtProvider,
    keys: &JwkSet,
    now: u64,
) -> Result<Map<String, Value>, JwtError> {
    let head = peek(token)?;
    if head.issuer != provider.issuer {
        return Err(JwtError::UnknownIssuer);
    }
    let candidates: Vec<_> = match &head.kid {
        Some(kid) => keys
            .keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid))
            .collect(),
        None => keys.keys.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(JwtError::UnknownKey);
    }
    let mut validation = Validation::new(head.alg);
    // Time is checked below against `now`, so that this stays pure.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_issuer(&[&provider.issuer]);
    if provider.audiences.is_empty() {
        validation.set_required_spec_claims(&["iss"]);
        validation.validate_aud = false;
    } else {
        validation.set_required_spec_claims(&["iss", "aud"]);
        validation.set_audience(&provider.audiences);
    }
    let mut last = JwtError::BadSignature;
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation) {
            Ok(data) => return check_times(data.claims, provider.leeway_seconds, now),
            Err(e) => {
                last = match e.kind() {
                    ErrorKind::InvalidAudience => return Err(JwtError::WrongAudience),
                    ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                        return Err(JwtError::WrongAudience);
                    }
                    ErrorKind::InvalidIssuer => return Err(JwtError::UnknownIssuer),
                    ErrorKind::InvalidAlgorithm => JwtError::Algorithm,
                    ErrorKind::Json(_)
                    | ErrorKind::Utf8(_)
                    | ErrorKind::Base64(_)
                    | ErrorKind::InvalidToken => {
                        return Err(JwtError::Malformed);
                    }
                    _ => JwtError::BadSignature,
                }
            }
        }
    }
    Err(last)
}

fn check_times(
    claims: Map<String, Value>,
    leeway: u64,
    now: u64,
) -> Result<Map<String, Value>, JwtError> {
    // A token must expire: one without `exp` would be valid forever.
    let exp = numeric_date(&claims, "exp")?.ok_or(JwtError::Expired)?;
    if now > exp.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(JwtError::NotYetValid);
    }
    Ok(claims)
}

/// The last second (since the epoch) a verified token with these claims is
/// accepted: its `exp` plus `leeway`.
pub fn accepted_until(claims: &Map<String, Value>, leeway: u64) -> Option<u64> {
    let exp = numeric_date(claims, "exp").ok().flatten()?;
    Some(exp.saturating_add(leeway))
}

/// A NumericDate claim (seconds since the epoch; fractions dropped).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or(JwtError::Malformed),
    }
}

#[cfg(test)]
mod tests;
