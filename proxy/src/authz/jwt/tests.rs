//! Tokens signed at test time with fixture keys (`proxy/tests/fixtures`).

use super::*;
use gitmesh_proxy_config::{Duration, JwksSource};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

const RSA_A: &str = include_str!("../../../tests/fixtures/jwt-rsa-a.pem");
const RSA_B: &str = include_str!("../../../tests/fixtures/jwt-rsa-b.pem");
const EC_A: &str = include_str!("../../../tests/fixtures/jwt-ec-a.pem");
const JWKS_A: &str = include_str!("../../../tests/fixtures/jwks-a.json");

const NOW: u64 = 1_800_000_000;

fn keys() -> JwkSet {
    serde_json::from_str(JWKS_A).unwrap()
}

fn provider() -> JwtProvider {
    JwtProvider {
        issuer: "https://idp.example".into(),
        audiences: vec!["reviews".into()],
        jwks: JwksSource {
            file: Some("/dev/null".into()),
            url: None,
            refresh: Duration::from_secs(300),
        },
        leeway_seconds: 30,
    }
}

fn claims() -> Value {
    json!({"iss": "https://idp.example", "aud": "reviews", "sub": "alice", "exp": NOW + 600, "role": "admin"})
}

fn rs256(kid: &str, pem: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    encode(
        &h,
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn es256(claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec-a".into());
    encode(
        &h,
        claims,
        &EncodingKey::from_ec_pem(EC_A.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn check(token: &str) -> Result<Map<String, Value>, JwtError> {
    verify(token, &provider(), &keys(), NOW)
}

#[test]
fn valid_rs256_and_es256_tokens_pass() {
    let c = check(&rs256("rsa-a", RSA_A, &claims())).unwrap();
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["role"], "admin");
    assert_eq!(check(&es256(&claims())).unwrap()["sub"], "alice");
}

#[test]
fn a_token_without_kid_is_tried_against_every_key() {
    let h = Header::new(Algorithm::ES256);
    let t = encode(
        &h,
        &claims(),
        &EncodingKey::from_ec_pem(EC_A.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(check(&t).is_ok());
}

#[test]
fn forged_tokens_are_refused() {
    // Signed by another key, claiming a kid of the set.
    assert_eq!(
        check(&rs256("rsa-a", RSA_B, &claims())),
        Err(JwtError::BadSignature)
    );
    // Signed by a key the set does not have.
    assert_eq!(
        check(&rs256("rsa-b", RSA_B, &claims())),
        Err(JwtError::UnknownKey)
    );
    // Payload swapped after signing.
    let good = rs256("rsa-a", RSA_A, &claims());
    let other = rs256(
        "rsa-a",
        RSA_A,
        &json!({"iss": "https://idp.example", "aud": "reviews", "exp": NOW + 600, "role": "root"}),
    );
    let parts: Vec<&str> = good.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    assert_eq!(check(&spliced), Err(JwtError::BadSignature));
}

#[test]
fn weak_algorithms_are_refused() {
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"k"),
    )
    .unwrap();
    assert_eq!(check(&hs), Err(JwtError::Algorithm));
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    assert!(matches!(
        check(&none),
        Err(JwtError::Algorithm | JwtError::Malformed)
    ));
    // An ES256 header on an RSA kid.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("rsa-a".into());
    let t = encode(
        &h,
        &claims(),
        &EncodingKey::from_ec_pem(EC_A.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(check(&t).is_err());
}

#[test]
fn time_audience_and_issuer() {
    let mut c = claims();
    c["exp"] = json!(NOW - 31);
    assert_eq!(check(&rs256("rsa-a", RSA_A, &c)), Err(JwtError::Expired));
    c["exp"] = json!(NOW - 29);
    assert!(
        check(&rs256("rsa-a", RSA_A, &c)).is_ok(),
        "within the leeway"
    );
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        check(&rs256("rsa-a", RSA_A, &c)),
        Err(JwtError::Expired),
        "no exp"
    );

    let mut c = claims();
    c["nbf"] = json!(NOW + 120);
    assert_eq!(
        check(&rs256("rsa-a", RSA_A, &c)),
        Err(JwtError::NotYetValid)
    );

    let mut c = claims();
    c["aud"] = json!("ratings");
    assert_eq!(
        check(&rs256("rsa-a", RSA_A, &c)),
        Err(JwtError::WrongAudience)
    );
    c["aud"] = json!(["ratings", "reviews"]);
    assert!(check(&rs256("rsa-a", RSA_A, &c)).is_ok());
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        check(&rs256("rsa-a", RSA_A, &c)),
        Err(JwtError::WrongAudience)
    );

    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    assert_eq!(
        check(&rs256("rsa-a", RSA_A, &c)),
        Err(JwtError::UnknownIssuer)
    );
}

#[test]
fn malformed_and_huge_tokens() {
    for bad in [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "eyJhbGciOiJSUzI1NiJ9.!!!.x",
        ".....",
    ] {
        assert!(
            matches!(check(bad), Err(JwtError::Malformed | JwtError::Algorithm)),
            "{bad:?}: {:?}",
            check(bad)
        );
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
    let not_json = format!("{header}.{}.sig", URL_SAFE_NO_PAD.encode(b"[1,2"));
    assert_eq!(check(&not_json), Err(JwtError::Malformed));
    let no_iss = format!("{header}.{}.sig", URL_SAFE_NO_PAD.encode(b"{}"));
    assert_eq!(check(&no_iss), Err(JwtError::UnknownIssuer));
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(check(&huge), Err(JwtError::TooLarge));
}

#[test]
fn bearer_header_parsing() {
    let mut h = HeaderMap::new();
    assert_eq!(bearer(&h), Ok(None));
    h.insert("authorization", "Bearer abc.def.ghi".parse().unwrap());
    assert_eq!(bearer(&h), Ok(Some("abc.def.ghi")));
    h.insert("authorization", "bearer   abc".parse().unwrap());
    assert_eq!(bearer(&h), Ok(Some("abc")));
    h.insert("authorization", "Basic dXNlcjpwdw==".parse().unwrap());
    assert_eq!(bearer(&h), Ok(None));
    h.insert("authorization", "Bearer".parse().unwrap());
    assert_eq!(bearer(&h), Err(JwtError::Malformed));
    h.insert("authorization", "Bearer ".parse().unwrap());
    assert_eq!(bearer(&h), Err(JwtError::Malformed));
    h.insert(
        "authorization",
        format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1))
            .parse()
            .unwrap(),
    );
    assert_eq!(bearer(&h), Err(JwtError::TooLarge));
}
