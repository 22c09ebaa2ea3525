//! Source files → typed policy objects, each remembering where it came from.
//!
//! The first stage of the pipeline: parse YAML (positions kept), recognise
//! the envelope, validate against the kind's schema, deserialize. Every
//! problem becomes a diagnostic; a document with problems is left out of the
//! [`PolicySet`] so later stages only ever see well-formed objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::policy::{API_VERSION, HTTPRoute, Intentions, Kind, Mesh, Rollout, Service};
use crate::schema;
use crate::source::positions::{FilePositions, LazyPositions, to_value};
use crate::source::{Content, MAX_FILE_BYTES, SourceFile, yaml};

/// A policy object and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub file: String,
    pub positions: Arc<LazyPositions>,
}

impl<T> Located<T> {
    /// Span of the value at a JSON Pointer inside this object.
    pub fn span(&self, pointer: &str) -> Span {
        self.positions.get().value(pointer)
    }

    /// Span of the key at a JSON Pointer inside this object.
    pub fn key_span(&self, pointer: &str) -> Span {
        self.positions.get().key(pointer)
    }

    /// `file:line` of the object's name, for "first defined at" hints.
    pub fn name_location(&self) -> String {
        format!("{}:{}", self.file, self.span("/metadata/name").line)
    }
}

/// Every well-formed policy object of a repo, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicySet {
    pub meshes: Vec<Located<Mesh>>,
    pub services: Vec<Located<Service>>,
    pub routes: Vec<Located<HTTPRoute>>,
    pub rollouts: Vec<Located<Rollout>>,
    pub intentions: Vec<Located<Intentions>>,
    /// Objects that did not load (schema errors), by kind and name, so that
    /// references to them are not reported again as unknown.
    pub invalid: Vec<(Kind, String)>,
}

impl PolicySet {
    /// The mesh's SPIFFE trust domain: the Mesh's `trustDomain`, or the
    /// default when the repo has no Mesh.
    pub fn trust_domain(&self) -> String {
        self.meshes.first().map_or_else(
            || crate::policy::MeshSpec::default().trust_domain,
            |m| m.value.spec.trust_domain.clone(),
        )
    }

    /// Whether an object of this kind and name exists but did not load.
    pub fn is_invalid(&self, kind: Kind, name: &str) -> bool {
        self.invalid.iter().any(|(k, n)| *k == kind && n == name)
    }
}

/// For lookups by name, build an [`crate::index::Index`].
impl PolicySet {
    pub fn len(&self) -> usize {
        self.meshes.len()
            + self.services.len()
            + self.routes.len()
            + self.rollouts.len()
            + self.intentions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What loading a repo produced.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub policies: PolicySet,
    pub diagnostics: Vec<Diagnostic>,
    /// Every file looked at (policy or not), sorted.
    pub files: Vec<String>,
    /// Text of every readable file, for source snippets and secret scanning.
    pub sources: BTreeMap<String, String>,
}

/// Loads every YAML file as policy; keeps the text of all text files.
pub fn load(files: &[SourceFile]) -> Loaded {
    let mut loaded = Loaded::default();
    for file in files {
        loaded.files.push(file.path.clone());
        let bytes = match &file.content {
            Content::Bytes(bytes) => bytes,
            Content::TooLarge(size) => {
                if file.is_yaml() {
                    loaded.diagnostics.push(too_large(&file.path, *size));
                }
                continue;
            }
        };
        if bytes.len() as u64 > MAX_FILE_BYTES && file.is_yaml() {
            loaded
                .diagnostics
                .push(too_large(&file.path, bytes.len() as u64));
            continue;
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => text,
            _ => {
                if file.is_yaml() {
                    loaded.diagnostics.push(
                        Diagnostic::new(
                            Code::UnreadableFile,
                            &file.path,
                            Span::default(),
                            "file is not UTF-8 text",
                        )
                        .with_hint("policy files are YAML text in UTF-8"),
                    );
                }
                continue;
            }
        };
        if file.is_yaml() {
            load_file(&file.path, text, &mut loaded);
        }
        loaded.sources.insert(file.path.clone(), text.to_string());
    }
    loaded
}

fn too_large(path: &str, size: u64) -> Diagnostic {
    Diagnostic::new(
        Code::UnreadableFile,
        path,
        Span::default(),
        format!(
            "file is {:.1} MB, above the {} MB limit for policy files",
            size as f64 / 1e6,
            MAX_FILE_BYTES / (1024 * 1024)
        ),
    )
}

/// Loads the documents of one YAML file (exposed for the fuzz target and
/// benchmarks, which have no repo).
pub fn load_file(path: &str, text: &str, loaded: &mut Loaded) {
    let (documents, problems) = yaml::parse(text);
    for p in problems {
        loaded
            .diagnostics
            .push(Diagnostic::new(p.code, path, p.span, p.message));
    }
    let file_positions = FilePositions::new(Arc::from(text));
    for (i, doc) in documents.iter().enumerate() {
        let Some(root) = &doc.root else { continue };
        if root.value == yaml::Value::Null {
            continue;
        }
        let positions = Arc::new(LazyPositions::new(file_positions.clone(), i));
        load_document(
            path,
            to_value(root),
            positions,
            &mut loaded.policies,
            &mut loaded.diagnostics,
        );
    }
}

fn load_document(
    file: &str,
    json: Json,
    positions: Arc<LazyPositions>,
    set: &mut PolicySet,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let Some(kind) = envelope(file, &json, &positions, diagnostics) else {
        return;
    };
    if !schema::is_valid(kind, &json) {
        diagnostics.extend(schema::validate(kind, &json, positions.get(), file));
        if let Some(name) = json.pointer("/metadata/name").and_then(Json::as_str) {
            set.invalid.push((kind, name.to_string()));
        }
        return;
    }
    match kind {
        Kind::Mesh => push(file, json, positions, &mut set.meshes, diagnostics),
        Kind::Service => push(file, json, positions, &mut set.services, diagnostics),
        Kind::HTTPRoute => push(file, json, positions, &mut set.routes, diagnostics),
        Kind::Rollout => push(file, json, positions, &mut set.rollouts, diagnostics),
        Kind::Intentions => push(file, json, positions, &mut set.intentions, diagnostics),
    }
}

fn push<T: DeserializeOwned>(
    file: &str,
    json: Json,
    positions: Arc<LazyPositions>,
    into: &mut Vec<Located<T>>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    match serde_json::from_value::<T>(json) {
        Ok(value) => into.push(Located {
            value,
            file: file.to_string(),
            positions,
        }),
        // The schema accepted what the types refuse: a gitmesh bug, but
        // still reported as a diagnostic rather than a panic.
        Err(e) => diagnostics.push(Diagnostic::new(
            Code::SchemaViolation,
            file,
            positions.get().value(""),
            format!("{e} (the schema accepted this document; please report it)"),
        )),
    }
}

/// Recognises `apiVersion` and `kind`, or says why the document is not a
/// gitmesh policy.
fn envelope(
    file: &str,
    json: &Json,
    lazy: &LazyPositions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Kind> {
    let not_policy = |span, message: String| Diagnostic::new(Code::NotAPolicy, file, span, message);
    let positions = || lazy.get();
    let Json::Object(map) = json else {
        diagnostics.push(
            not_policy(
                positions().value(""),
                "a policy document must be a mapping with apiVersion, kind, metadata and spec"
                    .into(),
            )
            .with_hint("files outside dot-folders must hold gitmesh policy only"),
        );
        return None;
    };
    let mut ok = true;
    match map.get("apiVersion") {
        Some(Json::String(v)) if v == API_VERSION => {}
        Some(other) => {
            ok = false;
            diagnostics.push(
                not_policy(
                    positions().value("/apiVersion"),
                    format!("unsupported apiVersion {other}"),
                )
                .with_hint(format!("this gitmesh reads `apiVersion: {API_VERSION}`")),
            );
        }
        None => {
            ok = false;
            diagnostics.push(
                not_policy(positions().value(""), "document has no `apiVersion`".into()).with_hint(
                    format!("start each document with `apiVersion: {API_VERSION}`"),
                ),
            );
        }
    }
    let kind = match map.get("kind") {
        Some(Json::String(k)) => match Kind::parse(k) {
            Some(kind) => Some(kind),
            None => {
                let names = Kind::ALL.iter().map(|k| k.as_str());
                let mut d = not_policy(positions().value("/kind"), format!("unknown kind `{k}`"));
                d = match schema::closest(k, names) {
                    Some(best) => d.with_hint(format!("did you mean `{best}`?")),
                    None => d.with_hint(format!(
                        "kinds are {}",
                        Kind::ALL
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                };
                diagnostics.push(d);
                None
            }
        },
        Some(other) => {
            diagnostics.push(not_policy(
                positions().value("/kind"),
                format!("`kind` must be a string, not {other}"),
            ));
            None
        }
        None => {
            diagnostics.push(not_policy(
                positions().value(""),
                "document has no `kind`".into(),
            ));
            None
        }
    };
    kind.filter(|_| ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Loaded {
        load(&[SourceFile::new("p.yaml", text)])
    }

    const SERVICE: &str = "apiVersion: gitmesh.dev/v1alpha1\nkind: Service\nmetadata:\n  name: reviews\nspec:\n  port: 9080\n";

    #[test]
    fn loads_several_kinds_from_one_file() {
        let text = format!(
            "{SERVICE}---\napiVersion: gitmesh.dev/v1alpha1\nkind: Mesh\nmetadata:\n  name: mesh\nspec: {{}}\n"
        );
        let l = load_text(&text);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        assert_eq!(l.policies.services[0].value.metadata.name, "reviews");
        assert_eq!(l.policies.services[0].span("/spec/port").line, 6);
        assert_eq!(
            l.policies.meshes[0].value.spec.status_branch,
            "gitmesh/status"
        );
        assert_eq!(l.policies.meshes[0].span("/metadata/name").line, 11);
    }

    #[test]
    fn not_policies_are_explained() {
        let l = load_text(
            "apiVersion: v1\nkind: Servce\nmetadata: {name: a}\n---\n- a\n---\nkind: Mesh\n",
        );
        let got: Vec<_> = l
            .diagnostics
            .iter()
            .map(|d| (d.code, d.span.line, d.hint.clone()))
            .collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got.iter().all(|(c, _, _)| *c == Code::NotAPolicy));
        assert_eq!(got[1].2.as_deref(), Some("did you mean `Service`?"));
        assert!(l.policies.is_empty());
    }

    #[test]
    fn hostile_files_end_as_diagnostics() {
        let files = [
            SourceFile::new("bin.yaml", vec![0u8, 159, 146, 150]),
            SourceFile {
                path: "big.yaml".into(),
                content: Content::TooLarge(10_000_000),
            },
            SourceFile::new("ten-mb.yaml", "a: 1\n".repeat(2_000_000)),
            SourceFile::new("deep.yaml", "a: ".to_string() + &"[".repeat(1000)),
            SourceFile::new("nan.yaml", format!("{SERVICE}  weird: .nan\n")),
        ];
        let l = load(&files);
        let codes: Vec<_> = l
            .diagnostics
            .iter()
            .map(|d| (d.file.as_str(), d.code))
            .collect();
        assert_eq!(
            codes,
            [
                ("bin.yaml", Code::UnreadableFile),
                ("big.yaml", Code::UnreadableFile),
                ("ten-mb.yaml", Code::UnreadableFile),
                ("deep.yaml", Code::YamlTooComplex),
                ("nan.yaml", Code::UnknownField),
            ]
        );
    }
}
