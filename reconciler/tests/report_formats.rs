//! End-to-end checks of `gitmesh_reconciler::report` through its public API:
//! one small lint run rendered in every format.

use std::collections::BTreeMap;

use gitmesh_reconciler::diagnostic::{Code, Diagnostic, Span};
use gitmesh_reconciler::report::{Format, Report, render};
use serde_json::Value;

const REVIEWS: &str = "\
apiVersion: gitmesh.dev/v1
kind: Service
metadata:
  name: reviews
spec:
  subsets:
    - name: v1
      labels: {version: v1}
  routes:
    - backends:
        - subset: v1
          weigth: 10
";

struct Run {
    diagnostics: Vec<Diagnostic>,
    files: Vec<String>,
    sources: BTreeMap<String, String>,
}

impl Run {
    fn new() -> Run {
        let span = |line, column, end_line, end_column| Span {
            line,
            column,
            end_line,
            end_column,
        };
        let mut diagnostics = vec![
            Diagnostic::new(
                Code::UnknownField,
                "services/reviews.yaml",
                span(12, 11, 12, 17),
                "unknown field `weigth`",
            )
            .with_hint("did you mean `weight`?"),
            Diagnostic::new(
                Code::UnreachableRule,
                "routes/shop & co.yaml",
                span(3, 5, 4, 1),
                "rule 2 is never used: rule 1 matches `/` first",
            ),
            Diagnostic::new(
                Code::UnreadableFile,
                "blob.yaml",
                Span::default(),
                "file is not UTF-8",
            ),
        ];
        diagnostics.sort();
        let files = [
            "blob.yaml",
            "routes/shop & co.yaml",
            "services/ok.yaml",
            "services/reviews.yaml",
        ]
        .map(String::from)
        .to_vec();
        let mut sources = BTreeMap::new();
        sources.insert("services/reviews.yaml".to_owned(), REVIEWS.to_owned());
        sources.insert(
            "routes/shop & co.yaml".to_owned(),
            "kind: HTTPRoute\nrules:\n  - match: {path: /}\n  - match: {path: /a}\n".to_owned(),
        );
        Run {
            diagnostics,
            files,
            sources,
        }
    }

    fn render(&self, format: Format) -> String {
        render(
            format,
            &Report {
                diagnostics: &self.diagnostics,
                files: &self.files,
                sources: &self.sources,
                color: false,
            },
        )
    }
}

#[test]
fn format_names() {
    for name in ["human", "json", "sarif", "github", "junit"] {
        let format: Format = name.parse().unwrap();
        assert_eq!(format.to_string(), name);
    }
    assert!("yaml".parse::<Format>().is_err());
}

#[test]
fn human() {
    let out = Run::new().render(Format::Human);
    let expected = "\
error[GM1001]: file is not UTF-8
 --> blob.yaml

warning[GM3007]: rule 2 is never used: rule 1 matches `/` first
 --> routes/shop & co.yaml:3:5
  |
3 |   - match: {path: /}
  |     ^^^^^^^^^^^^^^^^

error[GM2002]: unknown field `weigth`
  --> services/reviews.yaml:12:11
   |
12 |           weigth: 10
   |           ^^^^^^
   = hint: did you mean `weight`?

2 errors, 1 warning in 4 files checked
";
    assert_eq!(out, expected);
}

#[test]
fn json_lines() {
    let out = Run::new().render(Format::Json);
    let lines: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["code"], "GM1001");
    assert_eq!(lines[0]["line"], 0);
    assert_eq!(lines[2]["file"], "services/reviews.yaml");
    assert_eq!(lines[2]["column"], 11);
    assert_eq!(lines[2]["endColumn"], 17);
    assert_eq!(lines[2]["hint"], "did you mean `weight`?");
    assert_eq!(lines[1]["hint"], Value::Null);
}

#[test]
fn sarif_is_valid() {
    let out = Run::new().render(Format::Sarif);
    let log: Value = serde_json::from_str(&out).unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sarif/sarif-schema-2.1.0.json"
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&log)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert_eq!(errors, Vec::<String>::new());

    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let routes = &results[1]["locations"][0]["physicalLocation"];
    assert_eq!(
        routes["artifactLocation"]["uri"],
        "routes/shop%20%26%20co.yaml"
    );
    assert_eq!(routes["region"]["startLine"], 3);
    assert_eq!(routes["region"]["endLine"], 4);
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"],
        serde_json::json!({ "startLine": 1 })
    );
}

#[test]
fn github_commands() {
    let out = Run::new().render(Format::Github);
    let expected = "\
::error file=blob.yaml,title=GM1001 unreadable file::file is not UTF-8
::warning file=routes/shop & co.yaml,line=3,endLine=4,title=GM3007 unreachable route rule::rule 2 is never used: rule 1 matches `/` first
::error file=services/reviews.yaml,line=12,col=11,endLine=12,endColumn=17,title=GM2002 unknown field::unknown field `weigth`%0Ahint: did you mean `weight`?
";
    assert_eq!(out, expected);
}

#[test]
fn junit_cases() {
    let out = Run::new().render(Format::Junit);
    assert!(out.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"gitmesh lint\" tests=\"4\" failures=\"3\" errors=\"0\">\n"));
    assert_eq!(out.matches("<testcase ").count(), 4);
    assert_eq!(out.matches("<failure ").count(), 3);
    assert!(out.contains("<testcase classname=\"gitmesh.lint\" name=\"services/ok.yaml\"/>"));
    assert!(out.contains("name=\"routes/shop &amp; co.yaml\">"));
    assert!(out.contains(
        ">12:11 GM2002 error: unknown field `weigth`\n  hint: did you mean `weight`?\n</failure>"
    ));
}

#[test]
fn clean_run() {
    let run = Run {
        diagnostics: Vec::new(),
        ..Run::new()
    };
    assert_eq!(
        run.render(Format::Human),
        "no problems in 4 files checked\n"
    );
    assert_eq!(run.render(Format::Json), "");
    assert_eq!(run.render(Format::Github), "");
    assert_eq!(run.render(Format::Junit).matches("/>").count(), 4);
    let log: Value = serde_json::from_str(&run.render(Format::Sarif)).unwrap();
    assert_eq!(log["runs"][0]["results"], serde_json::json!([]));
}
