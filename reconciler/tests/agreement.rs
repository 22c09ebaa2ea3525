//! The Rust types and the JSON Schemas agree: every example document passes
//! both, and a field that does not exist is refused by both, wherever it is
//! added.

use std::path::Path;

use gitmesh_reconciler::load::Loaded;
use gitmesh_reconciler::policy::Kind;
use gitmesh_reconciler::schema;
use gitmesh_reconciler::source::positions::{Positions, to_json};
use gitmesh_reconciler::source::{Content, read_dir, yaml};
use serde_json::Value;

/// Every policy document under the example repos and the template.
fn example_documents() -> Vec<(String, Kind, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for repo in ["examples/bookinfo", "policy-repo-template"] {
        let Ok(files) = read_dir(&root.join(repo)) else {
            continue;
        };
        for file in files.iter().filter(|f| f.is_yaml()) {
            let Content::Bytes(bytes) = &file.content else {
                panic!("{} too large", file.path)
            };
            let (docs, problems) = yaml::parse(std::str::from_utf8(bytes).unwrap());
            assert!(problems.is_empty(), "{repo}/{}: {problems:?}", file.path);
            for doc in docs {
                let Some(root) = doc.root else { continue };
                let (json, _) = to_json(&root);
                let kind = Kind::parse(json["kind"].as_str().unwrap()).unwrap();
                out.push((format!("{repo}/{}", file.path), kind, json));
            }
        }
    }
    out
}

fn schema_accepts(kind: Kind, json: &Value) -> bool {
    schema::validate(kind, json, &Positions::default(), "x").is_empty()
}

/// Pointers of every JSON object inside `v`.
fn objects(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            out.push(at.clone());
            for (k, child) in map {
                objects(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                objects(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_example_passes_schema_and_types() {
    let docs = example_documents();
    assert!(docs.len() >= 11, "found only {} documents", docs.len());
    let mut kinds = std::collections::BTreeSet::new();
    for (file, kind, json) in &docs {
        assert!(schema_accepts(*kind, json), "{file}: schema refuses it");
        kind.deserialize_check(json.clone())
            .unwrap_or_else(|e| panic!("{file}: types refuse it: {e}"));
        kinds.insert(*kind);
    }
    assert_eq!(
        kinds.len(),
        Kind::ALL.len(),
        "the examples cover every kind"
    );
}

#[test]
fn unknown_fields_are_refused_by_both_everywhere() {
    let mut refused = 0;
    for (file, kind, json) in example_documents() {
        let mut pointers = Vec::new();
        objects(&json, String::new(), &mut pointers);
        for pointer in pointers {
            let mut mutated = json.clone();
            let target = mutated.pointer_mut(&pointer).unwrap();
            target
                .as_object_mut()
                .unwrap()
                .insert("zzNotAField".into(), Value::String("x".into()));
            let by_schema = schema_accepts(kind, &mutated);
            let by_types = kind.deserialize_check(mutated).is_ok();
            assert_eq!(
                by_schema, by_types,
                "{file} at `{pointer}`: schema accepts={by_schema}, types accept={by_types}"
            );
            // Free-form maps (labels) take any key; every struct refuses.
            let free_form = pointer.ends_with("/labels") || pointer.ends_with("/annotations");
            assert_eq!(by_schema, free_form, "{file} at `{pointer}`");
            refused += usize::from(!by_schema);
        }
    }
    assert!(refused >= 80, "only {refused} mutations checked");
}

#[test]
fn loading_keeps_working_on_the_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo");
    let loaded: Loaded = gitmesh_reconciler::load::load(&read_dir(&root).unwrap());
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    assert_eq!(loaded.policies.len(), 11);
}
