//! Every case of the rule order, with identities inserted directly.

use super::*;
use gitmesh_proxy_config::{HeaderMatch, PathMatch, PathMatchType, ValueMatchType};

fn peer(service: &str) -> PeerIdentity {
    PeerIdentity::for_service("gitmesh.local", service).unwrap()
}

fn perm(action: Action, methods: &[&str], path: Option<(PathMatchType, &str)>) -> Permission {
    Permission {
        action,
        methods: methods.iter().map(|m| m.to_string()).collect(),
        path: path.map(|(kind, value)| PathMatch {
            kind,
            value: value.into(),
        }),
        headers: Vec::new(),
        claims: BTreeMap::new(),
    }
}

fn rule(source: &str, action: Action, permissions: Vec<Permission>) -> AuthorizationRule {
    AuthorizationRule {
        source: source.into(),
        action,
        permissions,
    }
}

fn authorizer(default_action: Action, rules: Vec<AuthorizationRule>) -> Authorizer {
    Authorizer::compile(
        "gitmesh.local",
        &Authorization {
            default_action,
            rules,
        },
    )
    .unwrap()
}

struct Req {
    peer: Option<PeerIdentity>,
    method: Method,
    path: &'static str,
    headers: HeaderMap,
    claims: Option<Map<String, Value>>,
}

fn req(peer_name: Option<&str>, method: &str, path: &'static str) -> Req {
    Req {
        peer: peer_name.map(peer),
        method: Method::from_bytes(method.as_bytes()).unwrap(),
        path,
        headers: HeaderMap::new(),
        claims: None,
    }
}

fn decide(a: &Authorizer, r: &Req) -> Decision {
    a.decide(&AuthzRequest {
        peer: r.peer.as_ref(),
        method: &r.method,
        path: r.path,
        headers: &r.headers,
        claims: r.claims.as_ref(),
    })
}

use Action::{Allow, Deny};

#[test]
fn no_rules_means_the_default() {
    for default in [Allow, Deny] {
        let a = authorizer(default, vec![]);
        for r in [req(None, "GET", "/"), req(Some("web"), "POST", "/x")] {
            let d = decide(&a, &r);
            assert_eq!((d.action, d.by), (default, DecidedBy::Default));
        }
    }
}

#[test]
fn exact_source_wins_over_wildcard() {
    let a = authorizer(
        Allow,
        vec![rule("*", Deny, vec![]), rule("web", Allow, vec![])],
    );
    let d = decide(&a, &req(Some("web"), "GET", "/"));
    assert_eq!((d.action, d.by), (Allow, DecidedBy::Source("web".into())));
    let d = decide(&a, &req(Some("other"), "GET", "/"));
    assert_eq!((d.action, d.by), (Deny, DecidedBy::Source("*".into())));

    let a = authorizer(
        Allow,
        vec![rule("*", Allow, vec![]), rule("evil", Deny, vec![])],
    );
    assert_eq!(decide(&a, &req(Some("evil"), "GET", "/")).action, Deny);
    assert_eq!(decide(&a, &req(Some("good"), "GET", "/")).action, Allow);
}

#[test]
fn unauthenticated_callers_match_only_the_wildcard() {
    let a = authorizer(Deny, vec![rule("web", Allow, vec![])]);
    let d = decide(&a, &req(None, "GET", "/"));
    assert_eq!((d.action, d.by), (Deny, DecidedBy::Default));

    let a = authorizer(
        Deny,
        vec![rule("web", Allow, vec![]), rule("*", Allow, vec![])],
    );
    let d = decide(&a, &req(None, "GET", "/"));
    assert_eq!((d.action, d.by), (Allow, DecidedBy::Source("*".into())));
}

#[test]
fn another_trust_domain_counts_as_unauthenticated() {
    let a = authorizer(Deny, vec![rule("web", Allow, vec![])]);
    let mut r = req(None, "GET", "/");
    r.peer = PeerIdentity::for_service("other.domain", "web");
    assert_eq!(decide(&a, &r).action, Deny);
}

#[test]
fn a_named_rule_does_not_fall_through_to_the_wildcard() {
    // `web` may only GET; `*` may do anything; a POST from web is not
    // rescued by `*` but goes to the default.
    let a = authorizer(
        Deny,
        vec![
            rule("web", Allow, vec![perm(Allow, &["GET"], None)]),
            rule("*", Allow, vec![]),
        ],
    );
    assert_eq!(decide(&a, &req(Some("web"), "GET", "/")).action, Allow);
    let d = decide(&a, &req(Some("web"), "POST", "/"));
    assert_eq!(d.reason(), "denied-by-intention");
    assert_eq!(
        (d.action, d.by),
        (Deny, DecidedBy::NoPermissionFits("web".into()))
    );
}

#[test]
fn no_fitting_permission_means_the_default_even_when_it_allows() {
    let a = authorizer(
        Allow,
        vec![rule("web", Allow, vec![perm(Deny, &["DELETE"], None)])],
    );
    assert_eq!(decide(&a, &req(Some("web"), "DELETE", "/")).action, Deny);
    let d = decide(&a, &req(Some("web"), "GET", "/"));
    assert_eq!(
        (d.action, d.by),
        (Allow, DecidedBy::NoPermissionFits("web".into()))
    );
}

#[test]
fn first_fitting_permission_decides() {
    // Compiled order (most specific first): exact deny, then prefix allow.
    let a = authorizer(
        Deny,
        vec![rule(
            "web",
            Allow,
            vec![
                perm(Deny, &[], Some((PathMatchType::Exact, "/api/admin"))),
                perm(Allow, &[], Some((PathMatchType::PathPrefix, "/api"))),
            ],
        )],
    );
    let d = decide(&a, &req(Some("web"), "GET", "/api/admin"));
    assert_eq!(
        (d.action, d.by),
        (Deny, DecidedBy::Permission("web".into(), 0))
    );
    let d = decide(&a, &req(Some("web"), "GET", "/api/users"));
    assert_eq!(
        (d.action, d.by),
        (Allow, DecidedBy::Permission("web".into(), 1))
    );
    assert_eq!(decide(&a, &req(Some("web"), "GET", "/apix")).action, Deny);
    assert_eq!(decide(&a, &req(Some("web"), "GET", "/other")).action, Deny);
}

#[test]
fn methods_paths_and_regexes() {
    let a = authorizer(
        Deny,
        vec![rule(
            "*",
            Allow,
            vec![
                perm(
                    Allow,
                    &["get", "HEAD"],
                    Some((PathMatchType::RegularExpression, "/users/[0-9]+")),
                ),
                perm(Allow, &["POST"], Some((PathMatchType::Exact, "/users"))),
            ],
        )],
    );
    assert!(decide(&a, &req(None, "GET", "/users/42")).allowed());
    assert!(decide(&a, &req(None, "HEAD", "/users/42")).allowed());
    assert!(
        !decide(&a, &req(None, "GET", "/users/42/x")).allowed(),
        "regex is anchored"
    );
    assert!(!decide(&a, &req(None, "DELETE", "/users/42")).allowed());
    assert!(decide(&a, &req(None, "POST", "/users")).allowed());
    assert!(!decide(&a, &req(None, "POST", "/users/")).allowed());
}

#[test]
fn headers_must_all_fit() {
    let mut p = perm(Allow, &[], None);
    p.headers = vec![
        HeaderMatch {
            kind: ValueMatchType::Exact,
            name: "X-Tenant".into(),
            value: "acme".into(),
        },
        HeaderMatch {
            kind: ValueMatchType::RegularExpression,
            name: "x-version".into(),
            value: "v[12]".into(),
        },
    ];
    let a = authorizer(Deny, vec![rule("*", Allow, vec![p])]);
    let mut r = req(None, "GET", "/");
    r.headers.insert("x-tenant", "acme".parse().unwrap());
    assert!(!decide(&a, &r).allowed(), "one of two headers");
    r.headers.insert("x-version", "v2".parse().unwrap());
    assert!(decide(&a, &r).allowed());
    r.headers.insert("x-version", "v3".parse().unwrap());
    assert!(!decide(&a, &r).allowed());
}

fn claims(json: &str) -> Option<Map<String, Value>> {
    serde_json::from_str(json).unwrap()
}

#[test]
fn required_claims() {
    let mut admin = perm(Allow, &[], Some((PathMatchType::PathPrefix, "/admin")));
    admin.claims = BTreeMap::from([("role".into(), "admin".into())]);
    let mut scoped = perm(Allow, &[], Some((PathMatchType::PathPrefix, "/orders")));
    scoped.claims = BTreeMap::from([("scope".into(), "orders:read".into())]);
    let a = authorizer(Deny, vec![rule("*", Allow, vec![admin, scoped])]);

    let mut r = req(None, "GET", "/admin/x");
    let d = decide(&a, &r);
    assert!(!d.allowed());
    assert_eq!(d.reason(), "missing-claim");
    assert_eq!(d.missing_claims, ["role"]);

    r.claims = claims(r#"{"role": "user"}"#);
    assert_eq!(decide(&a, &r).reason(), "missing-claim");
    r.claims = claims(r#"{"role": "admin"}"#);
    assert!(decide(&a, &r).allowed());
    r.claims = claims(r#"{"role": ["user", "admin"]}"#);
    assert!(decide(&a, &r).allowed());

    let mut r = req(None, "GET", "/orders/1");
    r.claims = claims(r#"{"scope": "profile orders:read"}"#);
    assert!(decide(&a, &r).allowed());
    r.claims = claims(r#"{"scope": "orders:readx"}"#);
    assert!(!decide(&a, &r).allowed());
}

#[test]
fn a_later_permission_without_claims_can_still_allow() {
    let mut admin = perm(Allow, &[], Some((PathMatchType::PathPrefix, "/admin")));
    admin.claims = BTreeMap::from([("role".into(), "admin".into())]);
    let public = perm(Allow, &["GET"], None);
    let a = authorizer(Deny, vec![rule("*", Allow, vec![admin, public])]);
    let d = decide(&a, &req(None, "GET", "/admin"));
    assert_eq!(
        (d.action, d.by),
        (Allow, DecidedBy::Permission("*".into(), 1))
    );
    let d = decide(&a, &req(None, "POST", "/admin"));
    assert_eq!(d.reason(), "missing-claim");
}

#[test]
fn decided_by_names_the_rule() {
    assert_eq!(
        DecidedBy::Permission("web".into(), 2).to_string(),
        "source=web permission=2"
    );
    assert_eq!(DecidedBy::Source("*".into()).to_string(), "source=*");
    assert_eq!(DecidedBy::Default.to_string(), "default");
}

#[test]
fn compile_refuses_bad_rules_with_their_place() {
    let mut bad = perm(
        Allow,
        &["GET PUT"],
        Some((PathMatchType::RegularExpression, "(")),
    );
    bad.headers.push(HeaderMatch {
        kind: ValueMatchType::Exact,
        name: "bad name".into(),
        value: "x".into(),
    });
    let err = Authorizer::compile(
        "gitmesh.local",
        &Authorization {
            default_action: Deny,
            rules: vec![rule("web", Allow, vec![bad]), rule("web", Deny, vec![])],
        },
    )
    .unwrap_err();
    let at: Vec<&str> = err.iter().map(|(at, _)| at.as_str()).collect();
    assert_eq!(
        at,
        [
            "inbound.authorization.rules[0].permissions[0].methods",
            "inbound.authorization.rules[0].permissions[0].path",
            "inbound.authorization.rules[0].permissions[0].headers",
            "inbound.authorization.rules[1].source",
        ]
    );
}
