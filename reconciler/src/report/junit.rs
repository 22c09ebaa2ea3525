//! JUnit XML output: one test suite, one test case per checked file. A file
//! with diagnostics (errors or warnings) fails, with one `<failure>` whose
//! `type` is the file's first code, whose `message` is the first diagnostic's
//! message and whose body lists all of the file's diagnostics, one per line,
//! as `line:column code severity: message`:
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?>
//! <testsuites name="gitmesh lint" tests="2" failures="1" errors="0">
//!   <testsuite name="gitmesh lint" tests="2" failures="1" errors="0" skipped="0">
//!     <testcase classname="gitmesh.lint" name="services/ok.yaml"/>
//!     <testcase classname="gitmesh.lint" name="services/reviews.yaml">
//!       <failure type="GM2002" message="unknown field `weigth`">12:9 GM2002 error: unknown field `weigth`
//!   hint: did you mean `weight`?
//! </failure>
//!     </testcase>
//!   </testsuite>
//! </testsuites>
//! ```
//!
//! Test cases follow [`Report::files`]; a file that has diagnostics but is
//! missing there gets a test case after them, so no diagnostic is lost.
//! Text is XML-escaped and characters XML 1.0 forbids (control characters
//! other than tab, line feed and carriage return) are removed.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Report, region};
use crate::diagnostic::Diagnostic;

const SUITE: &str = "gitmesh lint";
const CLASSNAME: &str = "gitmesh.lint";

pub(super) fn render(report: &Report) -> String {
    let mut by_file: BTreeMap<&str, Vec<&Diagnostic>> = BTreeMap::new();
    for diagnostic in report.diagnostics {
        by_file
            .entry(&diagnostic.file)
            .or_default()
            .push(diagnostic);
    }
    let mut cases: Vec<&str> = Vec::new();
    let checked = report.files.iter().map(String::as_str);
    let extra = report.diagnostics.iter().map(|d| d.file.as_str());
    for file in checked.chain(extra) {
        if !cases.contains(&file) {
            cases.push(file);
        }
    }
    let tests = cases.len();
    let failures = cases.iter().filter(|f| by_file.contains_key(*f)).count();

    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{SUITE}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{SUITE}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">"
    );
    for file in cases {
        let name = attribute(file);
        match by_file.get(file) {
            None => {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{CLASSNAME}\" name=\"{name}\"/>"
                );
            }
            Some(diagnostics) => {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{CLASSNAME}\" name=\"{name}\">"
                );
                failure(&mut out, diagnostics);
                out.push_str("    </testcase>\n");
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn failure(out: &mut String, diagnostics: &[&Diagnostic]) {
    let first = diagnostics[0];
    let message = match diagnostics.len() {
        1 => first.message.clone(),
        n => format!("{} (and {} more)", first.message, n - 1),
    };
    let mut body = String::new();
    for d in diagnostics {
        if let Some(r) = region(d.span) {
            let _ = write!(body, "{}:{} ", r.line, r.column);
        }
        let _ = writeln!(
            body,
            "{} {}: {}",
            d.code.as_str(),
            d.severity.as_str(),
            d.message
        );
        if let Some(hint) = &d.hint {
            let _ = writeln!(body, "  hint: {hint}");
        }
    }
    let _ = writeln!(
        out,
        "      <failure type=\"{}\" message=\"{}\">{}</failure>",
        attribute(first.code.as_str()),
        attribute(&message),
        text(&body)
    );
}

/// Escapes character data (element content).
fn text(s: &str) -> String {
    escape(s, false)
}

/// Escapes an attribute value. Tabs and line breaks become character
/// references, which parsers keep (literal ones are normalized to spaces).
fn attribute(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            // Not allowed in XML 1.0 (C0 controls, U+FFFE, U+FFFF) or
            // discouraged (DEL, C1 controls): dropped.
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::diagnostic::Code;
    use crate::report::fixtures::{self, span};

    fn render_with(diagnostics: &[Diagnostic], files: &[String]) -> String {
        render(&Report {
            diagnostics,
            files,
            sources: &BTreeMap::new(),
            color: true,
        })
    }

    #[test]
    fn one_case_per_file() {
        let diagnostics = vec![
            fixtures::unreachable(),
            fixtures::typo(),
            Diagnostic::new(
                Code::DuplicateKey,
                "services/reviews.yaml",
                span(14, 3, 14, 9),
                "duplicate key `routes`",
            ),
        ];
        let out = render_with(&diagnostics, &fixtures::files());
        let expected = "\
<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<testsuites name=\"gitmesh lint\" tests=\"3\" failures=\"2\" errors=\"0\">
  <testsuite name=\"gitmesh lint\" tests=\"3\" failures=\"2\" errors=\"0\" skipped=\"0\">
    <testcase classname=\"gitmesh.lint\" name=\"routes/main.yaml\">
      <failure type=\"GM3007\" message=\"rule 2 is never used\">3:5 GM3007 warning: rule 2 is never used
</failure>
    </testcase>
    <testcase classname=\"gitmesh.lint\" name=\"services/ok.yaml\"/>
    <testcase classname=\"gitmesh.lint\" name=\"services/reviews.yaml\">
      <failure type=\"GM2002\" message=\"unknown field `weigth` (and 1 more)\">12:9 GM2002 error: unknown field `weigth`
  hint: did you mean `weight`?
14:3 GM1003 error: duplicate key `routes`
</failure>
    </testcase>
  </testsuite>
</testsuites>
";
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_report() {
        let out = render_with(&[], &[]);
        assert_eq!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"gitmesh lint\" tests=\"0\" failures=\"0\" errors=\"0\">\n  <testsuite name=\"gitmesh lint\" tests=\"0\" failures=\"0\" errors=\"0\" skipped=\"0\">\n  </testsuite>\n</testsuites>\n"
        );
    }

    #[test]
    fn whole_file_and_unlisted_files() {
        // blob.yaml was not in `files`: it still gets a (failing) case, last.
        let out = render_with(
            &[fixtures::whole_file()],
            &["a.yaml".to_owned(), "a.yaml".to_owned()],
        );
        assert!(out.contains("tests=\"2\" failures=\"1\""), "{out}");
        let a = out.find("name=\"a.yaml\"/>").unwrap();
        let blob = out
            .find("<testcase classname=\"gitmesh.lint\" name=\"blob.yaml\">\n      <failure type=\"GM1001\" message=\"file is not UTF-8\">GM1001 error: file is not UTF-8\n</failure>")
            .unwrap();
        assert!(a < blob);
        assert_eq!(out.matches("<testcase").count(), 2);
    }

    #[test]
    fn xml_escaping() {
        assert_eq!(
            text("a & b < c > d \"e\" 'f'"),
            "a &amp; b &lt; c &gt; d &quot;e&quot; &apos;f&apos;"
        );
        assert_eq!(text("l1\n\tl2\r\n"), "l1\n\tl2&#13;\n");
        assert_eq!(attribute("l1\n\tl2\r\n"), "l1&#10;&#9;l2&#13;&#10;");
        assert_eq!(text("]]> &amp;"), "]]&gt; &amp;amp;");
        // Control characters XML cannot carry are removed.
        assert_eq!(text("a\u{0}b\u{1b}[31mc\u{7f}\u{85}d\u{FFFF}"), "ab[31mcd");
        // Non-ASCII text is kept as is (the document is UTF-8).
        assert_eq!(text("名前 «ü»"), "名前 «ü»");
    }

    #[test]
    fn hostile_names_and_messages() {
        let d = Diagnostic::new(
            Code::SecretInRepo,
            "a\"b'<c>&.yaml",
            span(1, 1, 1, 2),
            "key \"x\" <leaked> & \u{1}more",
        )
        .with_hint("use a <secretRef>");
        let files = vec!["a\"b'<c>&.yaml".to_owned()];
        let out = render_with(&[d], &files);
        assert!(out.contains(
            "<testcase classname=\"gitmesh.lint\" name=\"a&quot;b&apos;&lt;c&gt;&amp;.yaml\">\n      <failure type=\"GM3010\" message=\"key &quot;x&quot; &lt;leaked&gt; &amp; more\">1:1 GM3010 error: key &quot;x&quot; &lt;leaked&gt; &amp; more\n  hint: use a &lt;secretRef&gt;\n</failure>"
        ), "{out}");
        assert!(!out.contains('\u{1}'));
        // Apart from the markup, no raw `<`, `>` or `&` survives.
        let markup_free = out
            .replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "")
            .replace("<testsuites ", "")
            .replace("</testsuites>", "")
            .replace("<testsuite ", "")
            .replace("</testsuite>", "")
            .replace("<testcase ", "")
            .replace("</testcase>", "")
            .replace("<failure ", "")
            .replace("</failure>", "");
        let markup_free = markup_free
            .replace("\">", "")
            .replace("&amp;", "")
            .replace("&lt;", "")
            .replace("&gt;", "")
            .replace("&quot;", "")
            .replace("&apos;", "");
        assert!(!markup_free.contains(['<', '>', '&']), "{markup_free}");
    }
}
