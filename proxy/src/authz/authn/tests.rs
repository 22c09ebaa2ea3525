//! The authenticator with its cache of verified tokens, against key sets in
//! temp files and fixture keys (`proxy/tests/fixtures`).

use super::*;
use gitmesh_proxy_config::{Duration, JwksSource, JwtProvider};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

const RSA_A: &str = include_str!("../../../tests/fixtures/jwt-rsa-a.pem");
const RSA_B: &str = include_str!("../../../tests/fixtures/jwt-rsa-b.pem");
const JWKS_A: &str = include_str!("../../../tests/fixtures/jwks-a.json");
const JWKS_B: &str = include_str!("../../../tests/fixtures/jwks-b.json");

const NOW: u64 = 1_800_000_000;
const LEEWAY: u64 = 30;

/// A key set in a temp file (rewrite it with [`Keys::replace`]) and an
/// authenticator reading it, again after `refresh` seconds.
struct Keys {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
}

impl Keys {
    fn replace(&self, jwks: &str) {
        std::fs::write(&self.file, jwks).unwrap();
    }
}

fn authenticator(jwks: &str, refresh: u64) -> (Keys, JwtAuthenticator) {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys {
        file: dir.path().join("jwks.json"),
        _dir: dir,
    };
    keys.replace(jwks);
    let a = JwtAuthenticator::new(JwtAuthentication {
        required: true,
        providers: vec![JwtProvider {
            issuer: "https://idp.example".into(),
            audiences: vec!["reviews".into()],
            jwks: JwksSource {
                file: Some(keys.file.to_str().unwrap().into()),
                url: None,
                refresh: Duration::from_secs(refresh),
            },
            leeway_seconds: LEEWAY,
        }],
    });
    (keys, a)
}

fn token(kid: &str, pem: &str, sub: &str, exp: u64) -> HeaderMap {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    let claims = json!({"iss": "https://idp.example", "aud": "reviews", "sub": sub, "exp": exp});
    let t = encode(
        &h,
        &claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {t}").parse().unwrap(),
    );
    headers
}

async fn accept(a: &JwtAuthenticator, headers: &HeaderMap, now: u64) -> Authenticated {
    a.authenticate_at(headers, now).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_repeated_token_is_answered_from_the_cache() {
    let (_keys, a) = authenticator(JWKS_A, 300);
    let alice = token("rsa-a", RSA_A, "alice", NOW + 600);
    let first = accept(&a, &alice, NOW).await;
    assert!(!first.cached);
    let again = accept(&a, &alice, NOW + 1).await;
    assert!(again.cached);
    assert_eq!(again.claims, first.claims);
    // Another token (another subject) is checked on its own.
    let bob = accept(&a, &token("rsa-a", RSA_A, "bob", NOW + 600), NOW).await;
    assert!(!bob.cached);
    assert_eq!(bob.claims["sub"], "bob");
    assert!(accept(&a, &alice, NOW + 2).await.cached);
}

#[tokio::test]
async fn a_cached_token_still_expires() {
    let (_keys, a) = authenticator(JWKS_A, 300);
    let exp = NOW + 60;
    let alice = token("rsa-a", RSA_A, "alice", exp);
    assert!(!accept(&a, &alice, NOW).await.cached);
    assert!(accept(&a, &alice, exp + LEEWAY).await.cached, "last second");
    assert_eq!(
        a.authenticate_at(&alice, exp + LEEWAY + 1)
            .await
            .unwrap_err(),
        JwtError::Expired
    );
}

#[tokio::test]
async fn a_cached_token_is_refused_once_its_key_leaves_the_set() {
    // Refreshed on every request: a rewritten file is seen at once.
    let (keys, a) = authenticator(JWKS_A, 0);
    let alice = token("rsa-a", RSA_A, "alice", NOW + 600);
    assert!(!accept(&a, &alice, NOW).await.cached);
    // A set read again is another set, even with the same keys: the
    // token is checked again, and passes.
    assert!(!accept(&a, &alice, NOW).await.cached);

    // The issuer retires key a.
    keys.replace(JWKS_B);
    assert_eq!(
        a.authenticate_at(&alice, NOW).await.unwrap_err(),
        JwtError::UnknownKey
    );
    let carol = token("rsa-b", RSA_B, "carol", NOW + 600);
    assert_eq!(accept(&a, &carol, NOW).await.claims["sub"], "carol");
}

#[tokio::test]
async fn refused_tokens_are_not_kept() {
    let (_keys, a) = authenticator(JWKS_A, 300);
    // Signed with key b but naming key a.
    let forged = token("rsa-a", RSA_B, "mallory", NOW + 600);
    for _ in 0..2 {
        assert_eq!(
            a.authenticate_at(&forged, NOW).await.unwrap_err(),
            JwtError::BadSignature
        );
    }
    assert_eq!(a.verified.len(), 0);
}
