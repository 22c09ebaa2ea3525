//! Intentions and JWT from a policy repo to the proxy binary: `gitmesh
//! compile` output runs in `gitmesh proxy`, and requests to its inbound
//! listener are authenticated and authorized before the app sees them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

/// Status, `x-gitmesh-error` (or empty) and body of one GET.
fn call(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: api\r\n{auth}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let reason = head
        .lines()
        .find_map(|l| l.strip_prefix("x-gitmesh-error: "))
        .unwrap_or("")
        .to_string();
    (status, reason, body.to_string())
}

fn token(role: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"iss": "https://idp.test", "aud": "api", "exp": now + 600, "role": role});
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa-a".into());
    let pem = include_str!("../proxy/tests/fixtures/jwt-rsa-a.pem");
    encode(
        &h,
        &claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[test]
fn intentions_and_jwt_compiled_from_policy_are_enforced_by_the_proxy_binary() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = root().join("proxy/tests/fixtures/jwks-a.json");
    let policy = format!(
        r#"apiVersion: gitmesh.dev/v1alpha1
kind: Mesh
metadata: {{name: m}}
spec: {{defaultIntention: deny}}
---
apiVersion: gitmesh.dev/v1alpha1
kind: Service
metadata: {{name: api}}
spec:
  port: 8080
  jwt:
    required: false
    providers:
      - issuer: https://idp.test
        audiences: [api]
        jwks: {{file: "{}"}}
---
apiVersion: gitmesh.dev/v1alpha1
kind: Intentions
metadata: {{name: api}}
spec:
  destination: api
  sources:
    - name: "*"
      permissions:
        - action: allow
          http: {{pathPrefix: /admin}}
          claims: {{role: admin}}
        - action: allow
          http: {{pathPrefix: /public, methods: [GET]}}
"#,
        jwks.display()
    );
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let out = gitmesh(dir.path(), &["compile", ".", "--service", "api"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let config = dir.path().join("api.json");
    std::fs::write(&config, &out.stdout).unwrap();

    let app = upstream("app");
    let (outbound, inbound, admin) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_gitmesh"))
        .args(["proxy", "--config", config.to_str().unwrap()])
        .args([
            "--outbound",
            &outbound.to_string(),
            "--inbound",
            &inbound.to_string(),
        ])
        .args(["--admin", &admin.to_string(), "--app", &app.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(admin, "/ready", "admin").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "the proxy never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }

    assert_eq!(
        call(inbound, "/public/a", None),
        (200, String::new(), "app /public/a".into())
    );
    assert_eq!(
        call(inbound, "/x/../public/b", None).2,
        "app /public/b",
        "normalized path forwarded"
    );
    assert_eq!(call(inbound, "/private", None).1, "denied-by-intention");
    assert_eq!(call(inbound, "/admin", None).1, "missing-claim");
    assert_eq!(
        call(inbound, "/admin", Some(&token("user"))).1,
        "missing-claim"
    );
    assert_eq!(call(inbound, "/admin", Some(&token("admin"))).0, 200);
    assert_eq!(
        call(inbound, "/public/a", Some("not.a.token")),
        (401, "jwt-malformed".into(), "jwt-malformed".into())
    );
    let (_, metrics) = get(admin, "/metrics", "admin").unwrap();
    assert!(
        metrics.contains(r#"gitmesh_errors_total{direction="inbound",reason="missing-claim"} 2"#),
        "{metrics}"
    );
}
