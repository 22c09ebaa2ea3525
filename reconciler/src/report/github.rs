//! GitHub Actions workflow commands, one line per diagnostic, which GitHub
//! shows as annotations on the run and on the pull request's diff:
//!
//! ```text
//! ::error file=services/reviews.yaml,line=12,col=9,endLine=12,endColumn=15,title=GM2002 unknown field::unknown field `weigth`%0Ahint: did you mean `weight`?
//! ```
//!
//! A whole-file diagnostic (line 0) carries only `file`. Columns are given
//! only for single-line spans, which is all GitHub uses them for.
//!
//! Escaping follows the runner (`toolkit/core` `command.ts`): in the message
//! `%`, `\r` and `\n` become `%25`, `%0D` and `%0A`; in property values `:` and
//! `,` also become `%3A` and `%2C`. A message can therefore never end the
//! command early or start a new one.

use std::fmt::Write;

use super::{Report, message_with_hint, region};
use crate::diagnostic::Diagnostic;

pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    for diagnostic in report.diagnostics {
        command(&mut out, diagnostic);
    }
    out
}

fn command(out: &mut String, d: &Diagnostic) {
    let mut properties = vec![format!("file={}", escape_property(&d.file))];
    if let Some(r) = region(d.span) {
        properties.push(format!("line={}", r.line));
        if r.end_line == r.line {
            properties.push(format!("col={}", r.column));
        }
        properties.push(format!("endLine={}", r.end_line));
        if r.end_line == r.line {
            properties.push(format!("endColumn={}", r.end_column));
        }
    }
    let title = format!("{} {}", d.code.as_str(), d.code.title());
    properties.push(format!("title={}", escape_property(&title)));
    let _ = writeln!(
        out,
        "::{} {}::{}",
        d.severity.as_str(),
        properties.join(","),
        escape_data(&message_with_hint(d))
    );
}

/// Escapes a command's message.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command property's value.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
    fn error_with_hint() {
        assert_eq!(
            render_all(&[fixtures::typo()]),
            "::error file=services/reviews.yaml,line=12,col=9,endLine=12,endColumn=15,title=GM2002 unknown field::unknown field `weigth`%0Ahint: did you mean `weight`?\n"
        );
    }

    #[test]
    fn warnings_whole_files_and_multi_line_spans() {
        let multi = Diagnostic::new(
            Code::BadRolloutSteps,
            "r.yaml",
            span(4, 3, 6, 1),
            "steps go down",
        );
        let out = render_all(&[fixtures::whole_file(), fixtures::unreachable(), multi]);
        let expected = "\
::error file=blob.yaml,title=GM1001 unreadable file::file is not UTF-8
::warning file=routes/main.yaml,line=3,col=5,endLine=3,endColumn=9,title=GM3007 unreachable route rule::rule 2 is never used
::error file=r.yaml,line=4,endLine=6,title=GM3006 bad rollout steps::steps go down
";
        assert_eq!(out, expected);
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_data("100% a:b,c\r\nd"), "100%25 a:b,c%0D%0Ad");
        assert_eq!(
            escape_property("100% a:b,c\r\nd"),
            "100%25 a%3Ab%2Cc%0D%0Ad"
        );
        // `%` is escaped first, so existing escapes are not decoded later.
        assert_eq!(escape_data("%0A"), "%250A");

        let d = Diagnostic::new(
            Code::InvalidRegex,
            "we,ird:dir/50%.yaml",
            span(1, 2, 1, 3),
            "bad regex `a:b,c` at 100%\n::error::injected",
        )
        .with_hint("escape it\r");
        let out = render_all(&[d]);
        assert_eq!(
            out,
            "::error file=we%2Cird%3Adir/50%25.yaml,line=1,col=2,endLine=1,endColumn=3,title=GM3011 invalid regular expression::bad regex `a:b,c` at 100%25%0A::error::injected%0Ahint: escape it%0D\n"
        );
        // One diagnostic, one line: nothing can start a second command.
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn non_ascii_is_kept_and_columns_are_characters() {
        let d = Diagnostic::new(
            Code::UnknownField,
            "ünï/名前.yaml",
            span(2, 3, 2, 5),
            "champ « poids »",
        );
        assert_eq!(
            render_all(&[d]),
            "::error file=ünï/名前.yaml,line=2,col=3,endLine=2,endColumn=5,title=GM2002 unknown field::champ « poids »\n"
        );
    }

    #[test]
    fn empty_report_prints_nothing() {
        let out = render(&Report {
            diagnostics: &[],
            files: &[],
            sources: &BTreeMap::new(),
            color: false,
        });
        assert_eq!(out, "");
    }
}
