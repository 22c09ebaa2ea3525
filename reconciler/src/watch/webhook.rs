//! Checks that a webhook asking for a fetch comes from the Git host: GitHub
//! signs the body (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`), GitLab
//! sends the shared secret (`X-Gitlab-Token`). Comparisons take constant
//! time. Pure: the HTTP endpoint passes the headers and the body in.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const GITHUB_SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
pub const GITLAB_TOKEN_HEADER: &str = "X-Gitlab-Token";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
}

/// Why a webhook is refused (answer 401, change nothing).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("no webhook secret is configured")]
    NoSecret,
    #[error("neither {GITHUB_SIGNATURE_HEADER} nor {GITLAB_TOKEN_HEADER} is present")]
    Unsigned,
    #[error("{GITHUB_SIGNATURE_HEADER} is not `sha256=<64 hex digits>`")]
    Malformed,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the token does not match")]
    BadToken,
}

/// The secret as read from a file: without the trailing newline editors
/// and `echo` add.
pub fn secret_from_file(contents: &str) -> &str {
    contents.trim_end_matches(['\n', '\r'])
}

/// Checks whichever header is present, GitHub's first.
pub fn verify(
    secret: &[u8],
    github_signature: Option<&str>,
    gitlab_token: Option<&str>,
    body: &[u8],
) -> Result<Provider, WebhookError> {
    match (github_signature, gitlab_token) {
        (Some(signature), _) => verify_github(secret, body, signature).map(|()| Provider::GitHub),
        (None, Some(token)) => verify_gitlab(secret, token).map(|()| Provider::GitLab),
        (None, None) => {
            if secret.is_empty() {
                Err(WebhookError::NoSecret)
            } else {
                Err(WebhookError::Unsigned)
            }
        }
    }
}

/// Checks `X-Hub-Signature-256` against the HMAC-SHA256 of `body`.
pub fn verify_github(secret: &[u8], body: &[u8], header: &str) -> Result<(), WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::NoSecret);
    }
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::Malformed)?;
    let signature = decode_hex(hex).ok_or(WebhookError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| WebhookError::BadSignature)
}

/// Checks `X-Gitlab-Token` against the secret. Both sides are hashed first
/// so the comparison takes the same time whatever their lengths.
pub fn verify_gitlab(secret: &[u8], token: &str) -> Result<(), WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::NoSecret);
    }
    let want = Sha256::digest(secret);
    let got = Sha256::digest(token.as_bytes());
    if bool::from(want.ct_eq(&got)) {
        Ok(())
    } else {
        Err(WebhookError::BadToken)
    }
}

/// `sha256=<hex>` for `body`, as GitHub sends it (for tests and clients).
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented example ("Validating webhook deliveries"), and
    /// `python3 -c "import hmac,hashlib; print(hmac.new(b\"It's a Secret to
    /// Everybody\", b'Hello, World!', hashlib.sha256).hexdigest())"`.
    const GH_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GH_BODY: &[u8] = b"Hello, World!";
    const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_known_vectors() {
        assert_eq!(sign_github(GH_SECRET, GH_BODY), GH_SIG);
        assert_eq!(verify_github(GH_SECRET, GH_BODY, GH_SIG), Ok(()));
        assert_eq!(
            verify_github(
                GH_SECRET,
                GH_BODY,
                &GH_SIG.to_uppercase().replace("SHA256=", "sha256=")
            ),
            Ok(())
        );
        // python3 hmac.new(b'gitmesh-secret', b'{"ref":"refs/heads/main"}', sha256)
        assert_eq!(
            verify_github(
                b"gitmesh-secret",
                br#"{"ref":"refs/heads/main"}"#,
                "sha256=a2fb6b62125d1f8e8dfb7064e0f442145be10d8575fb4069317f73ff05bdf51a"
            ),
            Ok(())
        );
    }

    #[test]
    fn github_refusals() {
        assert_eq!(
            verify_github(GH_SECRET, b"Hello, World?", GH_SIG),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_github(b"wrong", GH_BODY, GH_SIG),
            Err(WebhookError::BadSignature)
        );
        let flipped = GH_SIG.replace("757107", "757108");
        assert_eq!(
            verify_github(GH_SECRET, GH_BODY, &flipped),
            Err(WebhookError::BadSignature)
        );
        for bad in [
            "",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=757107",
            "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=é57107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
        ] {
            assert_eq!(
                verify_github(GH_SECRET, GH_BODY, bad),
                Err(WebhookError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify_github(b"", GH_BODY, GH_SIG),
            Err(WebhookError::NoSecret)
        );
    }

    #[test]
    fn gitlab_token() {
        assert_eq!(verify_gitlab(b"s3cret", "s3cret"), Ok(()));
        for bad in ["", "s3cre", "s3cret ", "S3CRET", "s3cret\n"] {
            assert_eq!(
                verify_gitlab(b"s3cret", bad),
                Err(WebhookError::BadToken),
                "{bad:?}"
            );
        }
        assert_eq!(verify_gitlab(b"", ""), Err(WebhookError::NoSecret));
    }

    #[test]
    fn either_header() {
        assert_eq!(
            verify(GH_SECRET, Some(GH_SIG), None, GH_BODY),
            Ok(Provider::GitHub)
        );
        assert_eq!(
            verify(b"s3cret", None, Some("s3cret"), b"{}"),
            Ok(Provider::GitLab)
        );
        // A wrong GitHub signature is not rescued by a right GitLab token.
        assert_eq!(
            verify(
                b"s3cret",
                Some(&sign_github(b"other", b"{}")),
                Some("s3cret"),
                b"{}"
            ),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(b"s3cret", None, None, b"{}"),
            Err(WebhookError::Unsigned)
        );
        assert_eq!(verify(b"", None, None, b"{}"), Err(WebhookError::NoSecret));
    }

    #[test]
    fn secrets_from_files_lose_the_newline() {
        assert_eq!(secret_from_file("s3cret\n"), "s3cret");
        assert_eq!(secret_from_file("s3cret\r\n"), "s3cret");
        assert_eq!(secret_from_file(" s3cret "), " s3cret ");
    }
}
