//! Finds secrets committed to a policy repo: private keys, certificates,
//! cloud and forge tokens, JWTs, private JWK members (`d`, `p`, `q`, `dp`,
//! `dq`, `qi`, `k`), tokens on command lines and `password:`-style values.
//! Every text file is scanned, not only YAML. Messages never repeat the
//! secret itself.

use std::sync::OnceLock;

use regex::Regex;

use crate::diagnostic::{Code, Diagnostic, Span};

struct Detector {
    what: &'static str,
    pattern: Regex,
}

fn detectors() -> &'static [Detector] {
    static DETECTORS: OnceLock<Vec<Detector>> = OnceLock::new();
    DETECTORS.get_or_init(|| {
        [
            (
                "a private key",
                r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----",
            ),
            ("a private key", r"PuTTY-User-Key-File-[0-9]+:"),
            (
                "a certificate",
                r"-----BEGIN (TRUSTED |X509 )?CERTIFICATE-----",
            ),
            ("an AWS access key", r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
            (
                "a GitHub token",
                r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})\b",
            ),
            ("a GitLab token", r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
            ("a Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
            (
                "a JSON Web Token",
                r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
            ),
            // A token on a command line: `--bootstrap-token abc…`.
            (
                "a token on a command line",
                r"--[a-z-]*(token|password|secret)[ =]['\x22]?[A-Za-z0-9_][A-Za-z0-9_.~+/-]{7,}",
            ),
        ]
        .into_iter()
        .map(|(what, p)| Detector {
            what,
            pattern: Regex::new(p).expect("secret patterns compile"),
        })
        .collect()
    })
}

/// The private members of a JSON Web Key (RFC 7518 §6.2.2, §6.3.2, §6.4):
/// the EC or RSA private exponent `d`, the RSA primes and CRT values, the
/// symmetric `k`. In JSON or YAML, checked only in text that has a `kty`.
fn jwk_private_member() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r#"(?m)(?:^|[{,\s])["']?(d|p|q|dp|dq|qi|k)["']?[ \t]*:[ \t]*["']?([A-Za-z0-9_-]{6,})"#,
        )
        .expect("JWK member pattern compiles")
    })
}

fn has_jwk(text: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r#"["']?\bkty["']?[ \t]*:"#).expect("kty pattern compiles"))
        .is_match(text)
}

/// `password: x`, `dbPassword = "x"`, `apiKey: x`: a key that names a secret,
/// with a literal value. Keys ending in File, Path, Env or Ref point at a
/// secret kept elsewhere and are fine.
fn assignment() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r#"(?im)^[ \t]*-?[ \t]*["']?([a-z0-9_.-]*(?: [a-z0-9_.-]*)*?(password|passwd|secret|token|api[_-]?key|private[_-]?key|credentials?))["']?[ \t]*[:=][ \t]*(.*)$"#,
        )
        .expect("assignment pattern compiles")
    })
}

/// Values that are clearly not secrets: empty, a reference, a placeholder.
fn is_placeholder(value: &str) -> bool {
    let v = value
        .split(" #")
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches(|c| c == '"' || c == '\'');
    v.is_empty()
        || v.len() < 4
        || v.starts_with("${")
        || v.starts_with('<')
        || v.starts_with('/')
        || v.starts_with("env:")
        || v.starts_with("file:")
        || v.starts_with('{')
        || v.starts_with('[')
        || v.starts_with('|')
        || v.starts_with('>')
        || v.eq_ignore_ascii_case("null")
        || v.eq_ignore_ascii_case("redacted")
        || v.chars().all(|c| c == '*' || c == 'x' || c == 'X')
}

/// Scans one text file. Each pattern runs once over the whole text (not
/// once per line): a 10,000-file repo is scanned in milliseconds.
pub fn scan(file: &str, text: &str) -> Vec<Diagnostic> {
    let mut hits: Vec<(usize, usize, String)> = Vec::new();
    for d in detectors() {
        for m in d.pattern.find_iter(text) {
            hits.push((m.start(), m.end(), d.what.to_string()));
        }
    }
    if has_jwk(text) {
        for c in jwk_private_member().captures_iter(text) {
            let (member, value) = (c.get(1).expect("group 1"), c.get(2).expect("group 2"));
            hits.push((
                value.start(),
                value.end(),
                format!("the private member `{}` of a JSON Web Key", member.as_str()),
            ));
        }
    }
    // A line with a known secret is reported once, for that secret.
    let flagged: Vec<usize> = hits
        .iter()
        .map(|(start, _, _)| line_start(text, *start))
        .collect();
    for c in assignment().captures_iter(text) {
        let key = c.get(1).expect("group 1");
        let value = c.get(3).expect("group 3");
        if !flagged.contains(&line_start(text, key.start())) && !is_placeholder(value.as_str()) {
            hits.push((
                value.start(),
                value.end(),
                format!("a secret value in `{}`", key.as_str()),
            ));
        }
    }
    hits.sort();
    hits.into_iter()
        .map(|(start, end, what)| finding(file, text, start, end, &what))
        .collect()
}

fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |i| i + 1)
}

fn finding(file: &str, text: &str, start: usize, end: usize, what: &str) -> Diagnostic {
    let line_begin = line_start(text, start);
    let line = text[..start].matches('\n').count() as u32 + 1;
    let col = |byte: usize| text[line_begin..byte].chars().count() as u32 + 1;
    let end = end.min(text[start..].find('\n').map_or(text.len(), |i| start + i));
    let span = Span {
        line,
        column: col(start),
        end_line: line,
        end_column: col(end).max(col(start) + 1),
    };
    Diagnostic::new(
        Code::SecretInRepo,
        file,
        span,
        format!("{what} is committed to the policy repo"),
    )
    .with_hint(
        "remove it and rotate it: Git keeps history. Reference secrets by file or environment \
         variable instead; the mesh CA issues certificates itself",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(u32, u32)> {
        scan("f", text)
            .iter()
            .map(|d| (d.span.line, d.span.column))
            .collect()
    }

    #[test]
    fn catches_keys_tokens_and_passwords() {
        assert_eq!(found("x\n-----BEGIN RSA PRIVATE KEY-----\n"), [(2, 1)]);
        assert_eq!(found("-----BEGIN EC PRIVATE KEY-----"), [(1, 1)]);
        assert_eq!(found("-----BEGIN PRIVATE KEY-----"), [(1, 1)]);
        assert_eq!(found("-----BEGIN CERTIFICATE-----"), [(1, 1)]);
        assert_eq!(found("key: AKIAIOSFODNN7EXAMPLE"), [(1, 6)]);
        assert_eq!(found(&format!("t: ghp_{}", "a".repeat(36))), [(1, 4)]);
        assert_eq!(found("  password: hunter22"), [(1, 13)]);
        assert_eq!(found("dbPassword = \"s3cr3t!\""), [(1, 14)]);
        assert_eq!(found("bootstrapToken: abcdef123"), [(1, 17)]);
        assert_eq!(found("database password: hunter22-x"), [(1, 20)]);
        assert_eq!(
            found(
                "auth: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
            ),
            [(1, 7)]
        );
        assert_eq!(
            found(r#"{"kty":"EC","crv":"P-256","x":"abc","d":"Xf3sKnH2Jq8vLmP0aB7cD9eF1gH3iJ5k"}"#),
            [(1, 42)]
        );
    }

    fn what(text: &str) -> Vec<String> {
        scan("f", text).into_iter().map(|d| d.message).collect()
    }

    #[test]
    fn catches_every_pem_private_key_and_certificate_form() {
        for header in [
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----BEGIN EC PRIVATE KEY-----",
            "-----BEGIN DSA PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "-----BEGIN PGP PRIVATE KEY BLOCK-----",
            "-----BEGIN ED25519 PRIVATE KEY-----",
            "PuTTY-User-Key-File-3: ssh-ed25519",
        ] {
            assert_eq!(
                what(&format!("key: |\n  {header}\n  MIIB\n")),
                ["a private key is committed to the policy repo"],
                "{header}"
            );
        }
        for header in [
            "-----BEGIN CERTIFICATE-----",
            "-----BEGIN TRUSTED CERTIFICATE-----",
            "-----BEGIN X509 CERTIFICATE-----",
        ] {
            assert_eq!(
                what(header),
                ["a certificate is committed to the policy repo"],
                "{header}"
            );
        }
        // Public keys and requests are not secrets.
        assert!(found("-----BEGIN PUBLIC KEY-----").is_empty());
        assert!(found("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host").is_empty());
    }

    #[test]
    fn catches_bootstrap_tokens_in_every_shape() {
        assert_eq!(found("bootstrapToken: 7f3a9c0e5d2b"), [(1, 17)]);
        assert_eq!(found("GITMESH_BOOTSTRAP_TOKEN=7f3a9c0e5d2b"), [(1, 25)]);
        assert_eq!(found("  - --bootstrap-token=7f3a9c0e5d2b"), [(1, 5)]);
        assert_eq!(
            found("args: [\"--bootstrap-token 7f3a9c0e5d2b\"]"),
            [(1, 9)]
        );
        for ok in [
            "bootstrapTokenFile: /etc/gitmesh/token",
            "bootstrapTokenEnv: GITMESH_BOOTSTRAP_TOKEN",
            "--bootstrap-token-file /etc/gitmesh/token",
            "--bootstrap-token $GITMESH_TOKEN",
            "--bootstrap-token /run/secrets/token",
        ] {
            assert!(found(ok).is_empty(), "{ok}: {:?}", what(ok));
        }
    }

    #[test]
    fn catches_every_private_jwk_member_in_json_and_yaml() {
        for member in ["d", "p", "q", "dp", "dq", "qi"] {
            let json = format!(
                r#"{{"keys":[{{"kty":"RSA","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri","e":"AQAB","{member}":"VFCWOqXr8nvZNyaaJLXdnNPXZKRaWCjkU5Q2egQQpTBMwhprMzWzpR8Sxq1O"}}]}}"#
            );
            assert_eq!(
                what(&json),
                [format!(
                    "the private member `{member}` of a JSON Web Key is committed to the policy repo"
                )],
                "{member}"
            );
            let yaml =
                format!("keys:\n  - kty: RSA\n    e: AQAB\n    {member}: VFCWOqXr8nvZNyaaJLXd\n");
            assert_eq!(found(&yaml).len(), 1, "{member} in YAML");
        }
        let symmetric = r#"{"kty":"oct","kid":"hmac","k":"GawgguFyGrWKav7AX4VKUg"}"#;
        assert_eq!(found(symmetric).len(), 1);
    }

    #[test]
    fn a_public_jwks_passes() {
        for public in [
            include_str!("../../proxy/tests/fixtures/jwks-a.json"),
            include_str!("../../proxy/tests/fixtures/jwks-b.json"),
            "keys:\n  - kty: EC\n    kid: ec-1\n    crv: P-256\n    x: f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\n    y: x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\n",
        ] {
            assert!(found(public).is_empty(), "{:?}", what(public));
        }
    }

    #[test]
    fn leaves_references_and_placeholders_alone() {
        for ok in [
            "passwordFile: /etc/gitmesh/pw",
            "password: ${DB_PASSWORD}",
            "token: <set me>",
            "password: \"\"",
            "tokenEnv: GITMESH_TOKEN",
            "secret: ******",
            r#"{"kty":"EC","crv":"P-256","x":"abc","y":"def"}"#,
            "description: rotate the token weekly",
            "# the token: is set by the operator, not here",
        ] {
            assert!(found(ok).is_empty(), "{ok}");
        }
    }

    #[test]
    fn never_echoes_the_secret() {
        let d = scan("f", "password: hunter22");
        assert!(!d[0].message.contains("hunter22"));
        assert!(!d[0].hint.as_ref().unwrap().contains("hunter22"));
    }
}
