//! The policy reference (`docs/policy-reference.md`), generated from the
//! embedded JSON Schemas: one section per kind, one table per object type
//! with every field's type, default, constraints and description. Pure: a
//! test compares it with the checked-in file and fails when they drift
//! (`GITMESH_UPDATE_DOCS=1 cargo test -p gitmesh-reconciler reference`
//! rewrites it).

use std::collections::HashSet;
use std::fmt::Write;

use serde_json::{Map, Value as Json};

use crate::policy::Kind;
use crate::schema;

/// The whole reference, as Markdown.
pub fn render() -> String {
    let mut out = String::new();
    out.push_str(
        "# Policy reference\n\n\
         <!-- Generated from schemas/ by reconciler/src/reference.rs; do not edit.\n     \
         Regenerate: GITMESH_UPDATE_DOCS=1 cargo test -p gitmesh-reconciler reference -->\n\n\
         Every policy document has the envelope `apiVersion: gitmesh.dev/v1alpha1`, `kind`,\n\
         `metadata` (`name`: lowercase letters, digits and `-`; optional `labels` and\n\
         `annotations`) and `spec`. Unknown fields are errors (GM2002). Durations are\n\
         strings such as `250ms`, `30s`, `1m30s`; percentages are numbers from 0 to 100.\n\
         The JSON Schemas themselves are under `schemas/` (`gitmesh schema KIND`).\n\n",
    );
    for kind in Kind::ALL {
        let _ = writeln!(
            out,
            "- [{}](#{})",
            kind.as_str(),
            kind.as_str().to_lowercase()
        );
    }
    out.push('\n');
    for kind in Kind::ALL {
        // The embedded schemas are checked by their own test; a kind whose
        // schema does not parse is left out rather than panicking.
        if let Ok(schema) = serde_json::from_str::<Json>(schema::text(*kind)) {
            render_kind(&mut out, *kind, &schema);
        }
    }
    out
}

fn render_kind(out: &mut String, kind: Kind, schema: &Json) {
    let name = kind.as_str();
    let _ = writeln!(out, "## {name}\n");
    if let Some(text) = schema.get("description").and_then(Json::as_str) {
        let _ = writeln!(out, "{}\n", paragraph(text));
    }
    let _ = writeln!(
        out,
        "Schema: [`schemas/{file}`](../schemas/{file}).\n",
        file = schema::file_name(kind)
    );
    let empty = Map::new();
    let defs = schema
        .get("$defs")
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    // Definitions in the order a reader meets them, from `spec` down.
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    if let Some(spec) = schema.pointer("/properties/spec") {
        collect_refs(spec, defs, &mut order, &mut seen);
    }
    for def in order {
        let Some(def_schema) = defs.get(&def) else {
            continue;
        };
        let _ = writeln!(out, "### {name}: {def}\n");
        if let Some(text) = def_schema.get("description").and_then(Json::as_str) {
            let _ = writeln!(out, "{}\n", paragraph(text));
        }
        render_def(out, kind, def_schema);
    }
}

/// Appends every `$ref` reachable from `node` (depth first, each once).
fn collect_refs(
    node: &Json,
    defs: &Map<String, Json>,
    order: &mut Vec<String>,
    seen: &mut HashSet<String>,
) {
    match node {
        Json::Object(map) => {
            if let Some(target) = map.get("$ref").and_then(Json::as_str)
                && let Some(def) = target.strip_prefix("#/$defs/")
                && seen.insert(def.to_string())
            {
                order.push(def.to_string());
                if let Some(schema) = defs.get(def) {
                    collect_refs(schema, defs, order, seen);
                }
            }
            for (key, value) in map {
                if key != "$ref" && key != "default" && key != "examples" {
                    collect_refs(value, defs, order, seen);
                }
            }
        }
        Json::Array(items) => {
            for item in items {
                collect_refs(item, defs, order, seen);
            }
        }
        _ => {}
    }
}

fn render_def(out: &mut String, kind: Kind, def: &Json) {
    if let Some(properties) = def.get("properties").and_then(Json::as_object) {
        let required: HashSet<&str> = def
            .get("required")
            .and_then(Json::as_array)
            .map(|r| r.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        out.push_str("| field | type | default | description |\n|---|---|---|---|\n");
        for (field, schema) in properties {
            let name = if required.contains(field.as_str()) {
                format!("`{field}` (required)")
            } else {
                format!("`{field}`")
            };
            let default = schema
                .get("default")
                .map(|d| format!("`{}`", cell(&d.to_string())))
                .unwrap_or_default();
            let mut description = schema
                .get("description")
                .and_then(Json::as_str)
                .map(paragraph)
                .unwrap_or_default();
            let limits = constraints(schema);
            if !limits.is_empty() {
                if !description.is_empty() {
                    description.push(' ');
                }
                description.push_str(&format!("({limits})"));
            }
            let _ = writeln!(
                out,
                "| {name} | {} | {default} | {} |",
                cell(&type_of(kind, schema)),
                cell(&description)
            );
        }
        out.push('\n');
        return;
    }
    let variants = def
        .get("oneOf")
        .or_else(|| def.get("anyOf"))
        .and_then(Json::as_array);
    if let Some(variants) = variants {
        out.push_str("One of:\n\n");
        for variant in variants {
            let text = variant
                .get("description")
                .and_then(Json::as_str)
                .map(|d| format!(": {}", paragraph(d)))
                .unwrap_or_default();
            let _ = writeln!(out, "- {}{text}", type_of(kind, variant));
        }
        out.push('\n');
        return;
    }
    let limits = constraints(def);
    let _ = writeln!(
        out,
        "Type: {}{}\n",
        type_of(kind, def),
        if limits.is_empty() {
            String::new()
        } else {
            format!(" ({limits})")
        }
    );
}

/// A field's type in words, with links to the definitions it names.
fn type_of(kind: Kind, schema: &Json) -> String {
    if let Some(target) = schema.get("$ref").and_then(Json::as_str) {
        let def = target.trim_start_matches("#/$defs/");
        return format!(
            "[{def}](#{}-{})",
            kind.as_str().to_lowercase(),
            def.to_lowercase()
        );
    }
    if let Some(value) = schema.get("const") {
        return format!("`{}`", value_text(value));
    }
    if let Some(values) = schema.get("enum").and_then(Json::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("`{}`", value_text(v)))
            .collect();
        return values.join(" \\| ");
    }
    if let Some(variants) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Json::as_array)
    {
        let types: Vec<String> = variants
            .iter()
            .filter(|v| v.get("type").and_then(Json::as_str) != Some("null"))
            .map(|v| type_of(kind, v))
            .collect();
        return types.join(" or ");
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts
            .iter()
            .filter_map(Json::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    };
    let words: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "array" => format!(
                "list of {}",
                schema
                    .get("items")
                    .map_or("anything".to_string(), |i| type_of(kind, i))
            ),
            "object" => match schema.get("additionalProperties") {
                Some(value @ Json::Object(_)) => {
                    format!("map of string to {}", type_of(kind, value))
                }
                _ => "object".to_string(),
            },
            other => other.to_string(),
        })
        .collect();
    if words.is_empty() {
        "any".to_string()
    } else {
        words.join(" or ")
    }
}

/// Ranges, lengths and patterns, in words.
fn constraints(schema: &Json) -> String {
    let mut parts = Vec::new();
    let num = |key: &str| schema.get(key).map(value_text);
    match (num("minimum"), num("maximum")) {
        (Some(min), Some(max)) if !(min == "0" && max == "65535") => {
            parts.push(format!("{min} to {max}"))
        }
        (Some(min), None) if min != "0" => parts.push(format!("at least {min}")),
        (None, Some(max)) => parts.push(format!("at most {max}")),
        _ => {}
    }
    if let Some(min) = num("exclusiveMinimum") {
        parts.push(format!("above {min}"));
    }
    if let Some(min) = num("minItems").filter(|m| m != "0") {
        parts.push(format!("at least {min} items"));
    }
    if let Some(max) = num("maxLength") {
        parts.push(format!("at most {max} characters"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Json::as_str) {
        parts.push(format!("pattern `{pattern}`"));
    }
    parts.join(", ")
}

fn value_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Schema descriptions are wrapped doc comments: one paragraph per blank
/// line, lines joined with spaces.
fn paragraph(text: &str) -> String {
    text.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace("\n\n", "<br>")
        .replace('\n', " ")
        .replace('|', "\\|")
        .replace("\\\\|", "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in reference is what the schemas generate. Run with
    /// `GITMESH_UPDATE_DOCS=1` to rewrite it after changing a type.
    #[test]
    fn reference_matches_the_checked_in_file() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy-reference.md");
        let generated = render();
        if std::env::var_os("GITMESH_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/policy-reference.md is out of date: run \
             `GITMESH_UPDATE_DOCS=1 cargo test -p gitmesh-reconciler reference` and commit"
        );
    }

    #[test]
    fn every_kind_and_every_spec_field_is_documented() {
        let text = render();
        for kind in Kind::ALL {
            assert!(
                text.contains(&format!("\n## {}\n", kind.as_str())),
                "{kind:?}"
            );
        }
        // A few fields from different kinds, with their links and defaults.
        assert!(
            text.contains("| `failureLimit` | integer | `2` |"),
            "{text}"
        );
        assert!(text.contains("[Analysis](#rollout-analysis)"));
        assert!(text.contains("### Rollout: Analysis"));
        assert!(text.contains("`canarySubset` (required)"));
    }

    #[test]
    fn types_read_as_words() {
        let kind = Kind::Service;
        let t = |v: Json| type_of(kind, &v);
        assert_eq!(t(serde_json::json!({"type": ["string", "null"]})), "string");
        assert_eq!(
            t(serde_json::json!({"type": "array", "items": {"$ref": "#/$defs/Subset"}})),
            "list of [Subset](#service-subset)"
        );
        assert_eq!(
            t(serde_json::json!({"type": "object", "additionalProperties": {"type": "string"}})),
            "map of string to string"
        );
        assert_eq!(t(serde_json::json!({"enum": ["a", "b"]})), "`a` \\| `b`");
        assert_eq!(
            constraints(&serde_json::json!({"minimum": 1, "maximum": 100})),
            "1 to 100"
        );
    }
}
