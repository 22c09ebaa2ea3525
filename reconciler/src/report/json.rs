//! JSON Lines output: one JSON object per diagnostic, one per line, nothing
//! else. Keys, in this order: `code`, `severity`, `file`, `line`, `column`,
//! `endLine`, `endColumn`, `message`, `hint` (`null` when there is none) and
//! `title` (the code's short name). A whole-file diagnostic has all four
//! positions 0.

use serde_json::json;

use super::{Report, region};
use crate::diagnostic::Diagnostic;

pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    for diagnostic in report.diagnostics {
        out.push_str(&line(diagnostic));
        out.push('\n');
    }
    out
}

fn line(d: &Diagnostic) -> String {
    let span = region(d.span).unwrap_or_default();
    json!({
        "code": d.code.as_str(),
        "severity": d.severity.as_str(),
        "file": d.file,
        "line": span.line,
        "column": span.column,
        "endLine": span.end_line,
        "endColumn": span.end_column,
        "message": d.message,
        "hint": d.hint,
        "title": d.code.title(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;
    use crate::diagnostic::Code;
    use crate::report::fixtures::{self, span};

    fn render_all(diagnostics: &[Diagnostic]) -> String {
        render(&Report {
            diagnostics,
            files: &fixtures::files(),
            sources: &fixtures::sources(),
            color: true,
        })
    }

    #[test]
    fn exact_lines() {
        let out = render_all(&[fixtures::whole_file(), fixtures::typo()]);
        let expected = concat!(
            r#"{"code":"GM1001","severity":"error","file":"blob.yaml","line":0,"column":0,"endLine":0,"endColumn":0,"message":"file is not UTF-8","hint":null,"title":"unreadable file"}"#,
            "\n",
            r#"{"code":"GM2002","severity":"error","file":"services/reviews.yaml","line":12,"column":9,"endLine":12,"endColumn":15,"message":"unknown field `weigth`","hint":"did you mean `weight`?","title":"unknown field"}"#,
            "\n",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn lines_parse_back() {
        let tricky = Diagnostic::new(
            Code::UnreachableRule,
            "dir/ünï \"q\".yaml",
            span(2, 3, 5, 1),
            "line1\nline2\t\"quoted\" \\ \u{0}\u{1b} 名前",
        )
        .with_hint("</script>\r\n");
        let diagnostics = vec![fixtures::typo(), tricky.clone()];
        let out = render_all(&diagnostics);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let values: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let keys: Vec<&str> = values[1]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "code",
                "severity",
                "file",
                "line",
                "column",
                "endLine",
                "endColumn",
                "message",
                "hint",
                "title"
            ]
        );
        let v = &values[1];
        assert_eq!(v["code"], "GM3007");
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["file"], tricky.file.as_str());
        assert_eq!(v["message"], tricky.message.as_str());
        assert_eq!(v["hint"], "</script>\r\n");
        assert_eq!(v["title"], "unreachable route rule");
        assert_eq!(
            (&v["line"], &v["column"], &v["endLine"], &v["endColumn"]),
            (
                &Value::from(2),
                &Value::from(3),
                &Value::from(5),
                &Value::from(1)
            )
        );
        assert_eq!(values[0]["hint"], "did you mean `weight`?");
    }

    #[test]
    fn empty_report_prints_nothing() {
        assert_eq!(
            render(&Report {
                diagnostics: &[],
                files: &[],
                sources: &BTreeMap::new(),
                color: false,
            }),
            ""
        );
    }
}
