//! SARIF 2.1.0 output, for GitHub code scanning (`github/codeql-action/upload-sarif`)
//! and other static-analysis dashboards.
//!
//! One run; the driver `gitmesh` lists one rule per [`Code`] in [`Code::ALL`]
//! (so `ruleIndex` is a code's position there) and each diagnostic becomes a
//! result. File paths are relative to `%SRCROOT%`, the repository root, and
//! are percent-encoded as URI references. Columns count Unicode code points
//! (`columnKind`), like [`Span`](crate::diagnostic::Span). A whole-file
//! diagnostic (line 0) gets the region `{"startLine": 1}`, all of line 1:
//! GitHub code scanning needs a `region.startLine` on every result to place
//! its alert (see the SARIF multitool's GitHub rule GH1003).

use serde_json::{Value, json};

use super::{Report, message_with_hint, region};
use crate::diagnostic::{Code, Diagnostic, Severity};

/// Where the SARIF 2.1.0 JSON schema lives, as GitHub documents it.
pub(super) const SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// Where people can read about gitmesh and its diagnostic codes.
pub(super) const INFORMATION_URI: &str = "https://example.invalid/gitmesh";

pub(super) fn render(report: &Report) -> String {
    let mut text =
        serde_json::to_string_pretty(&log(report)).expect("JSON values always serialize");
    text.push('\n');
    text
}

fn log(report: &Report) -> Value {
    let rules: Vec<Value> = Code::ALL.iter().map(|&code| rule(code)).collect();
    let results: Vec<Value> = report.diagnostics.iter().map(result).collect();
    json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "gitmesh",
                    "informationUri": INFORMATION_URI,
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// The rule's `name`: the code's identifier in Pascal case, like
/// `UnknownField`, as SARIF recommends.
fn rule_name(code: Code) -> String {
    format!("{code:?}")
}

fn rule(code: Code) -> Value {
    json!({
        "id": code.as_str(),
        "name": rule_name(code),
        "shortDescription": { "text": code.title() },
        "defaultConfiguration": { "level": level(code.severity()) },
    })
}

fn result(d: &Diagnostic) -> Value {
    let rule_index = Code::ALL
        .iter()
        .position(|&code| code == d.code)
        .expect("Code::ALL lists every code");
    let region = match region(d.span) {
        Some(r) => json!({
            "startLine": r.line,
            "startColumn": r.column,
            "endLine": r.end_line,
            "endColumn": r.end_column,
        }),
        // Whole file: GitHub code scanning wants a start line on every result.
        None => json!({ "startLine": 1 }),
    };
    let physical = json!({
        "artifactLocation": {
            "uri": uri_reference(&d.file),
            "uriBaseId": "%SRCROOT%",
        },
        "region": region,
    });
    json!({
        "ruleId": d.code.as_str(),
        "ruleIndex": rule_index,
        "level": level(d.severity),
        "message": { "text": message_with_hint(d) },
        "locations": [{ "physicalLocation": physical }],
    })
}

/// A repo-relative path as a relative URI reference: every byte but the
/// unreserved characters and `/` is percent-encoded (so spaces, `%`, `#`,
/// `?`, a `:` that would read as a scheme, and non-ASCII UTF-8 all survive).
fn uri_reference(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{self, span};

    /// The official OASIS SARIF 2.1.0 schema (errata 01), from
    /// `oasis-tcs/sarif-spec` `Schemata/sarif-schema-2.1.0.json`.
    const SCHEMA: &str = include_str!("../../tests/data/sarif/sarif-schema-2.1.0.json");

    fn sarif(diagnostics: &[Diagnostic]) -> Value {
        let text = render(&Report {
            diagnostics,
            files: &fixtures::files(),
            sources: &fixtures::sources(),
            color: true,
        });
        serde_json::from_str(&text).expect("SARIF output is JSON")
    }

    fn schema_errors(instance: &Value) -> Vec<String> {
        let schema: Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
        let validator = jsonschema::draft4::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("schema compiles");
        validator
            .iter_errors(instance)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    fn all_kinds() -> Vec<Diagnostic> {
        vec![
            fixtures::whole_file(),
            fixtures::unreachable(),
            fixtures::typo(),
            Diagnostic::new(
                Code::BadRolloutSteps,
                "dir with space/ünï#1.yaml",
                span(4, 3, 6, 1),
                "steps\ngo down",
            ),
            Diagnostic::new(
                Code::UpstreamDenied,
                "c:odd.yaml",
                span(2, 0, 0, 0),
                "denied",
            ),
        ]
    }

    #[test]
    fn validates_against_the_official_schema() {
        let log = sarif(&all_kinds());
        assert_eq!(schema_errors(&log), Vec::<String>::new());
        let empty = sarif(&[]);
        assert_eq!(schema_errors(&empty), Vec::<String>::new());
    }

    #[test]
    fn schema_check_can_fail() {
        let mut log = sarif(&[fixtures::typo()]);
        log["runs"][0]["results"][0]["level"] = json!("fatal");
        log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
            json!(0);
        log["runs"][0]["tool"]["driver"]["bogus"] = json!(true);
        let errors = schema_errors(&log);
        assert!(errors.iter().any(|e| e.contains("/level")), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("/startLine")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("bogus")), "{errors:?}");
        let mut log = sarif(&[]);
        log["version"] = json!("2.0.0");
        assert!(!schema_errors(&log).is_empty());
    }

    #[test]
    fn log_and_driver() {
        let log = sarif(&[]);
        assert_eq!(log["$schema"], SCHEMA_URI);
        assert_eq!(log["version"], "2.1.0");
        let runs = log["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1);
        let driver = &runs[0]["tool"]["driver"];
        assert_eq!(driver["name"], "gitmesh");
        assert_eq!(driver["informationUri"], INFORMATION_URI);
        assert_eq!(runs[0]["columnKind"], "unicodeCodePoints");
        assert_eq!(runs[0]["results"], json!([]));
        let rules = driver["rules"].as_array().unwrap();
        assert_eq!(rules.len(), Code::ALL.len());
        for (rule, code) in rules.iter().zip(Code::ALL) {
            assert_eq!(rule["id"], code.as_str());
            assert_eq!(rule["shortDescription"]["text"], code.title());
            assert_eq!(
                rule["defaultConfiguration"]["level"],
                level(code.severity())
            );
        }
        assert_eq!(
            rules[6],
            json!({
                "id": "GM2002",
                "name": "UnknownField",
                "shortDescription": { "text": "unknown field" },
                "defaultConfiguration": { "level": "error" },
            })
        );
        assert_eq!(rules[13]["defaultConfiguration"]["level"], "warning");
    }

    #[test]
    fn results() {
        let log = sarif(&all_kinds());
        let results = log["runs"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), 5);
        assert_eq!(
            results[2],
            json!({
                "ruleId": "GM2002",
                "ruleIndex": 6,
                "level": "error",
                "message": { "text": "unknown field `weigth`\nhint: did you mean `weight`?" },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {
                            "uri": "services/reviews.yaml",
                            "uriBaseId": "%SRCROOT%",
                        },
                        "region": {
                            "startLine": 12,
                            "startColumn": 9,
                            "endLine": 12,
                            "endColumn": 15,
                        },
                    }
                }],
            })
        );
        // Whole file: all of line 1.
        assert_eq!(
            results[0]["locations"][0]["physicalLocation"],
            json!({
                "artifactLocation": { "uri": "blob.yaml", "uriBaseId": "%SRCROOT%" },
                "region": { "startLine": 1 },
            })
        );
        assert_eq!(results[0]["ruleIndex"], 0);
        // Warnings.
        assert_eq!(results[1]["level"], "warning");
        assert_eq!(results[1]["ruleId"], "GM3007");
        assert_eq!(results[1]["ruleIndex"], 13);
        // Multi-line span, awkward path.
        let physical = &results[3]["locations"][0]["physicalLocation"];
        assert_eq!(
            physical["artifactLocation"]["uri"],
            "dir%20with%20space/%C3%BCn%C3%AF%231.yaml"
        );
        assert_eq!(
            physical["region"],
            json!({ "startLine": 4, "startColumn": 3, "endLine": 6, "endColumn": 1 })
        );
        assert_eq!(results[3]["message"]["text"], "steps\ngo down");
        // Degenerate span: made consistent.
        let physical = &results[4]["locations"][0]["physicalLocation"];
        assert_eq!(physical["artifactLocation"]["uri"], "c%3Aodd.yaml");
        assert_eq!(
            physical["region"],
            json!({ "startLine": 2, "startColumn": 1, "endLine": 2, "endColumn": 2 })
        );
        // Every rule index points at the rule with the result's id.
        let rules = &log["runs"][0]["tool"]["driver"]["rules"];
        for result in results {
            let index = result["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(rules[index]["id"], result["ruleId"]);
        }
    }

    #[test]
    fn uri_references() {
        assert_eq!(uri_reference("a/b-c_d.e~f.yaml"), "a/b-c_d.e~f.yaml");
        assert_eq!(uri_reference("a b/100%?#[x]"), "a%20b/100%25%3F%23%5Bx%5D");
        assert_eq!(uri_reference("é"), "%C3%A9");
    }

    #[test]
    fn rule_names_are_identifiers() {
        for &code in Code::ALL {
            let name = rule_name(code);
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
            assert!(name.starts_with(|c: char| c.is_ascii_uppercase()), "{name}");
        }
    }
}
