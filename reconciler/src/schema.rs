//! The JSON Schemas of the policy kinds: generated from the Rust types,
//! checked in under `schemas/` (for editors and CI), embedded in the binary,
//! and used to validate every document with errors pointed at the exact
//! node, with "did you mean" for misspelt fields and values.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value as Json;

use crate::diagnostic::{Code, Diagnostic};
use crate::policy::Kind;
use crate::source::positions::Positions;

/// The checked-in schema files, embedded. A test keeps them equal to what
/// the Rust types generate.
const EMBEDDED: [(Kind, &str, &str); 5] = [
    (
        Kind::Mesh,
        "mesh.json",
        include_str!("../../schemas/mesh.json"),
    ),
    (
        Kind::Service,
        "service.json",
        include_str!("../../schemas/service.json"),
    ),
    (
        Kind::HTTPRoute,
        "httproute.json",
        include_str!("../../schemas/httproute.json"),
    ),
    (
        Kind::Rollout,
        "rollout.json",
        include_str!("../../schemas/rollout.json"),
    ),
    (
        Kind::Intentions,
        "intentions.json",
        include_str!("../../schemas/intentions.json"),
    ),
];

/// The schema of the proxy config wire format, embedded the same way.
pub const PROXY_CONFIG_SCHEMA: &str = include_str!("../../schemas/proxy-config.json");

/// The file name of a kind's schema under `schemas/`.
pub fn file_name(kind: Kind) -> &'static str {
    EMBEDDED.iter().find(|(k, _, _)| *k == kind).unwrap().1
}

/// The embedded schema text of a kind.
pub fn text(kind: Kind) -> &'static str {
    EMBEDDED.iter().find(|(k, _, _)| *k == kind).unwrap().2
}

/// Renders a kind's schema as the checked-in file should read: the
/// generated schema with a stable `$id`, pretty-printed.
pub fn generate(kind: Kind) -> String {
    let mut schema = kind.generate_schema().to_value();
    if let Json::Object(map) = &mut schema {
        map.insert(
            "$id".into(),
            Json::String(format!(
                "https://gitmesh.dev/schemas/v1alpha1/{}",
                file_name(kind)
            )),
        );
    }
    serde_json::to_string_pretty(&schema).expect("schemas serialize") + "\n"
}

/// The wire format's schema as its checked-in file should read.
pub fn generate_proxy_config() -> String {
    serde_json::to_string_pretty(&gitmesh_proxy_config::json_schema().to_value())
        .expect("schemas serialize")
        + "\n"
}

struct Compiled {
    kind: Kind,
    schema: Json,
    validator: jsonschema::Validator,
}

fn compiled() -> &'static [Compiled] {
    static COMPILED: OnceLock<Vec<Compiled>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        EMBEDDED
            .iter()
            .map(|(kind, _, text)| {
                let schema: Json = serde_json::from_str(text).expect("embedded schema is JSON");
                let validator =
                    jsonschema::draft202012::new(&schema).expect("embedded schema compiles");
                Compiled {
                    kind: *kind,
                    schema,
                    validator,
                }
            })
            .collect()
    })
}

/// Whether a document passes its kind's schema (the fast path).
pub fn is_valid(kind: Kind, doc: &Json) -> bool {
    compiled()
        .iter()
        .find(|c| c.kind == kind)
        .unwrap()
        .validator
        .is_valid(doc)
}

/// Validates one document against its kind's schema. Every violation becomes
/// a diagnostic at the offending node.
pub fn validate(kind: Kind, doc: &Json, positions: &Positions, file: &str) -> Vec<Diagnostic> {
    let compiled = compiled().iter().find(|c| c.kind == kind).unwrap();
    let mut out = Vec::new();
    for error in compiled.validator.iter_errors(doc) {
        let pointer = error.instance_path().as_str().to_string();
        explain(
            &compiled.schema,
            doc,
            &pointer,
            error.kind(),
            &error.to_string(),
            positions,
            file,
            &mut out,
        );
    }
    out.sort();
    out.dedup();
    out
}

#[allow(clippy::too_many_arguments)]
fn explain(
    schema: &Json,
    doc: &Json,
    pointer: &str,
    kind: &ValidationErrorKind,
    fallback: &str,
    positions: &Positions,
    file: &str,
    out: &mut Vec<Diagnostic>,
) {
    let field = display_path(pointer);
    match kind {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = allowed_properties(schema, pointer);
            for name in unexpected {
                let key_pointer = format!("{pointer}/{}", escape(name));
                let mut d = Diagnostic::new(
                    Code::UnknownField,
                    file,
                    positions.key(&key_pointer),
                    format!("unknown field `{name}` in `{field}`"),
                );
                d = match closest(name, allowed.iter().map(String::as_str)) {
                    Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                    None if !allowed.is_empty() => {
                        d.with_hint(format!("allowed fields: {}", allowed.join(", ")))
                    }
                    None => d,
                };
                out.push(d);
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            out.push(Diagnostic::new(
                Code::SchemaViolation,
                file,
                positions.key(pointer),
                format!("`{field}` is missing the required field `{name}`"),
            ));
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let choices = allowed_values(schema, pointer);
            let value = lookup(doc, pointer);
            if !choices.is_empty() && value.is_some_and(|v| !v.is_object() && !v.is_array()) {
                out.push(not_one_of(
                    &field,
                    value,
                    &choices,
                    positions.value(pointer),
                    file,
                ));
                return;
            }
            // Report the branch that came closest: not the `null` branch of
            // an optional field, and with the fewest errors.
            let best = context
                .iter()
                .filter(|errors| {
                    !errors.iter().all(|e| {
                        matches!(e.kind(), ValidationErrorKind::Type { .. })
                            && e.instance_path().as_str() == pointer
                    })
                })
                .min_by_key(|errors| errors.len());
            match best {
                Some(errors) if !errors.is_empty() => {
                    for e in errors {
                        explain(
                            schema,
                            doc,
                            e.instance_path().as_str(),
                            e.kind(),
                            &e.to_string(),
                            positions,
                            file,
                            out,
                        );
                    }
                }
                _ => out.push(Diagnostic::new(
                    Code::SchemaViolation,
                    file,
                    positions.value(pointer),
                    format!("`{field}`: {fallback}"),
                )),
            }
        }
        ValidationErrorKind::Enum { .. } | ValidationErrorKind::Constant { .. } => {
            let choices = allowed_values(schema, pointer);
            let value = lookup(doc, pointer);
            out.push(not_one_of(
                &field,
                value,
                &choices,
                positions.value(pointer),
                file,
            ));
        }
        ValidationErrorKind::Pattern { pattern } => {
            let given = lookup(doc, pointer).map(short).unwrap_or_default();
            let hint = pattern_hint(pattern);
            let mut d = Diagnostic::new(
                Code::SchemaViolation,
                file,
                positions.value(pointer),
                format!("`{field}`: {given} does not have the expected form"),
            );
            if let Some(h) = hint {
                d = d.with_hint(h);
            } else {
                d = d.with_hint(format!("must match the pattern {pattern}"));
            }
            out.push(d);
        }
        _ => out.push(Diagnostic::new(
            Code::SchemaViolation,
            file,
            positions.value(pointer),
            format!("`{field}`: {fallback}"),
        )),
    }
}

/// A value outside its allowed set, with the closest allowed one as a hint.
fn not_one_of(
    field: &str,
    value: Option<&Json>,
    choices: &[String],
    span: crate::diagnostic::Span,
    file: &str,
) -> Diagnostic {
    let given = value.map(short).unwrap_or_default();
    let d = Diagnostic::new(
        Code::SchemaViolation,
        file,
        span,
        format!("`{field}`: {given} is not one of {}", choices.join(", ")),
    );
    let plain = choices
        .iter()
        .map(|c| c.trim_matches('`').trim_matches('"'));
    match closest(given.trim_matches('"'), plain) {
        Some(best) => d.with_hint(format!("did you mean `{best}`?")),
        None => d,
    }
}

fn pattern_hint(pattern: &str) -> Option<String> {
    if pattern == gitmesh_proxy_config::DURATION_PATTERN {
        Some("write durations like `250ms`, `30s` or `1m30s`".into())
    } else if pattern.starts_with("^[a-z0-9]([-a-z0-9]*") {
        Some(
            "use lowercase letters, digits and `-`, starting and ending with a letter or digit"
                .into(),
        )
    } else {
        None
    }
}

/// `/spec/rules/0/backendRefs` → `spec.rules[0].backendRefs`.
pub fn display_path(pointer: &str) -> String {
    if pointer.is_empty() {
        return "(document)".into();
    }
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn short(value: &Json) -> String {
    let s = value.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn lookup<'a>(doc: &'a Json, pointer: &str) -> Option<&'a Json> {
    doc.pointer(pointer)
}

/// The closest candidate to `word`, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len().max(1))
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// Every schema that applies at an instance location, `$ref`s resolved and
/// `anyOf`/`oneOf`/`allOf` branches followed.
fn schemas_at<'a>(root: &'a Json, pointer: &str) -> Vec<&'a Json> {
    let mut current = expand(root, root);
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let mut next = Vec::new();
        for s in current {
            if let Some(p) = s.get("properties").and_then(|p| p.get(&seg)) {
                next.extend(expand(root, p));
            } else if let Some(items) = s.get("items").filter(|_| seg.parse::<usize>().is_ok()) {
                next.extend(expand(root, items));
            } else if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
                next.extend(expand(root, extra));
            }
        }
        current = next;
    }
    current
}

/// A schema with its `$ref` resolved and its combinator branches inlined.
fn expand<'a>(root: &'a Json, schema: &'a Json) -> Vec<&'a Json> {
    let mut out = vec![schema];
    let mut i = 0;
    while i < out.len() && out.len() < 64 {
        let s = out[i];
        if let Some(r) = s.get("$ref").and_then(Json::as_str)
            && let Some(target) = r.strip_prefix('#').and_then(|p| root.pointer(p))
        {
            out.push(target);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(branches) = s.get(key).and_then(Json::as_array) {
                out.extend(branches.iter());
            }
        }
        i += 1;
    }
    out
}

fn allowed_properties(root: &Json, pointer: &str) -> Vec<String> {
    let mut names: Vec<String> = schemas_at(root, pointer)
        .iter()
        .filter_map(|s| s.get("properties").and_then(Json::as_object))
        .flat_map(|p| p.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn allowed_values(root: &Json, pointer: &str) -> Vec<String> {
    let mut values = Vec::new();
    for s in schemas_at(root, pointer) {
        if let Some(c) = s.get("const") {
            values.push(format!(
                "`{}`",
                c.as_str().map_or(c.to_string(), str::to_string)
            ));
        }
        if let Some(e) = s.get("enum").and_then(Json::as_array) {
            values.extend(
                e.iter()
                    .map(|c| format!("`{}`", c.as_str().map_or(c.to_string(), str::to_string))),
            );
        }
    }
    values.dedup();
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{positions::to_json, yaml::parse};

    fn check(kind: Kind, text: &str) -> Vec<Diagnostic> {
        let (docs, problems) = parse(text);
        assert!(problems.is_empty());
        let (json, positions) = to_json(docs[0].root.as_ref().unwrap());
        validate(kind, &json, &positions, "x.yaml")
    }

    /// The checked-in schemas are exactly what the Rust types generate. Run
    /// with `GITMESH_UPDATE_SCHEMAS=1` to rewrite them after changing a type.
    #[test]
    fn checked_in_schemas_match_the_rust_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
        let update = std::env::var_os("GITMESH_UPDATE_SCHEMAS").is_some();
        let mut stale = Vec::new();
        let mut files: Vec<(String, String)> = Kind::ALL
            .iter()
            .map(|k| (file_name(*k).to_string(), generate(*k)))
            .collect();
        files.push(("proxy-config.json".into(), generate_proxy_config()));
        for (name, generated) in files {
            let path = dir.join(&name);
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            if on_disk != generated {
                if update {
                    std::fs::write(&path, &generated).unwrap();
                } else {
                    stale.push(name);
                }
            }
        }
        assert!(
            stale.is_empty(),
            "schemas/{stale:?} differ from the Rust types: run \
             `GITMESH_UPDATE_SCHEMAS=1 cargo test -p gitmesh-reconciler schema` and commit"
        );
    }

    #[test]
    fn unknown_fields_point_at_the_key_with_a_suggestion() {
        let d = check(
            Kind::Service,
            "apiVersion: gitmesh.dev/v1alpha1\nkind: Service\nmetadata:\n  name: a\nspec:\n  port: 80\n  protocl: http\n",
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, Code::UnknownField);
        assert_eq!((d[0].span.line, d[0].span.column), (7, 3));
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `protocol`?"));
    }

    #[test]
    fn nested_unknown_fields_through_refs_and_options() {
        let d = check(
            Kind::Service,
            "apiVersion: gitmesh.dev/v1alpha1\nkind: Service\nmetadata:\n  name: a\nspec:\n  port: 80\n  retries:\n    attempts: 2\n    perTryTimout: 1s\n",
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, Code::UnknownField);
        assert_eq!(d[0].span.line, 9);
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `perTryTimeout`?"));
    }

    #[test]
    fn wrong_values_point_at_the_value() {
        let d = check(
            Kind::Service,
            "apiVersion: gitmesh.dev/v1alpha1\nkind: Service\nmetadata:\n  name: Bad_Name\nspec:\n  port: 99999\n  protocol: htp\n  timeouts:\n    request: 5 seconds\n",
        );
        let lines: Vec<_> = d.iter().map(|d| (d.span.line, d.code)).collect();
        assert_eq!(
            lines,
            [
                (4, Code::SchemaViolation),
                (6, Code::SchemaViolation),
                (7, Code::SchemaViolation),
                (9, Code::SchemaViolation)
            ],
            "{d:#?}"
        );
        let protocol = d.iter().find(|d| d.span.line == 7).unwrap();
        assert_eq!(protocol.hint.as_deref(), Some("did you mean `http`?"));
        let duration = d.iter().find(|d| d.span.line == 9).unwrap();
        assert!(duration.hint.as_deref().unwrap().contains("250ms"));
    }

    #[test]
    fn missing_required_fields_point_at_their_parent() {
        let d = check(
            Kind::Service,
            "apiVersion: gitmesh.dev/v1alpha1\nkind: Service\nmetadata:\n  name: a\nspec:\n  protocol: http\n",
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].span.line, 5);
        assert!(
            d[0].message.contains("required field `port`"),
            "{}",
            d[0].message
        );
    }

    /// Lint refuses what a proxy would NACK: a header name with a space.
    #[test]
    fn a_prometheus_url_is_an_http_url() {
        let mesh = |url: &str| {
            format!(
                "apiVersion: gitmesh.dev/v1alpha1\nkind: Mesh\nmetadata: {{name: m}}\nspec:\n  metrics:\n    source: prometheus\n    prometheusUrl: {url}\n"
            )
        };
        for good in [
            "http://prometheus:9090",
            "https://mon.example/prom/",
            "http://127.0.0.1:9090",
        ] {
            assert!(check(Kind::Mesh, &mesh(good)).is_empty(), "{good}");
        }
        for bad in [
            "prometheus:9090",
            "http://",
            "ftp://prom",
            "'http://prom:9090?x=1'",
        ] {
            let d = check(Kind::Mesh, &mesh(bad));
            assert_eq!(d.len(), 1, "{bad}: {d:?}");
            assert_eq!(
                (d[0].code, d[0].span.line),
                (Code::SchemaViolation, 7),
                "{bad}"
            );
        }
    }

    #[test]
    fn header_names_must_be_http_tokens() {
        let d = check(
            Kind::HTTPRoute,
            "apiVersion: gitmesh.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: a}]\n  rules:\n    - backendRefs: [{name: a}]\n      filters:\n        - type: RequestHeaderModifier\n          requestHeaderModifier:\n            set: [{name: bad header, value: x}]\n",
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].code, d[0].span.line), (Code::SchemaViolation, 11));
    }

    #[test]
    fn display_paths_read_like_the_yaml() {
        assert_eq!(
            display_path("/spec/rules/0/backendRefs/1"),
            "spec.rules[0].backendRefs[1]"
        );
        assert_eq!(display_path(""), "(document)");
    }
}
