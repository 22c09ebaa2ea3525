//! Human output, in the style of rustc:
//!
//! ```text
//! error[GM2002]: unknown field `weigth`
//!   --> services/reviews.yaml:12:9
//!    |
//! 12 |         weigth: 10
//!    |         ^^^^^^
//!    = hint: did you mean `weight`?
//!
//! 1 error in 3 files checked
//! ```
//!
//! Only the first line of a span is shown; a span that goes on past it is
//! underlined to the end of that line. Tabs are shown as four spaces and carets
//! follow them, as do East Asian wide characters (two columns). Control
//! characters in file names, messages and source lines are shown as `�` so a
//! policy file cannot send escape sequences to the terminal.

use std::fmt::Write;

use super::{Report, plural, region, source_line};
use crate::diagnostic::{Diagnostic, Severity, Span};

const BOLD: &str = "1";
const RED: &str = "1;31";
const YELLOW: &str = "1;33";
const BLUE: &str = "1;34";

/// How many spaces a tab is shown as.
const TAB_WIDTH: usize = 4;

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, sgr: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

pub(super) fn render(report: &Report) -> String {
    let style = Style {
        color: report.color,
    };
    let mut out = String::new();
    for diagnostic in report.diagnostics {
        render_diagnostic(&mut out, diagnostic, report, &style);
        out.push('\n');
    }
    let (errors, warnings) = report.counts();
    let files = plural(report.files.len(), "file");
    let summary = match (errors, warnings) {
        (0, 0) => format!("no problems in {files} checked"),
        (e, 0) => format!("{} in {files} checked", plural(e, "error")),
        (0, w) => format!("{} in {files} checked", plural(w, "warning")),
        (e, w) => format!(
            "{}, {} in {files} checked",
            plural(e, "error"),
            plural(w, "warning")
        ),
    };
    out.push_str(&style.paint(BOLD, &summary));
    out.push('\n');
    out
}

fn render_diagnostic(out: &mut String, d: &Diagnostic, report: &Report, style: &Style) {
    let level = match d.severity {
        Severity::Error => RED,
        Severity::Warning => YELLOW,
    };
    let head = format!("{}[{}]", d.severity.as_str(), d.code.as_str());
    let message = clean(&d.message);
    let _ = writeln!(
        out,
        "{}{}",
        style.paint(level, &head),
        style.paint(BOLD, &format!(": {message}"))
    );

    let region = region(d.span);
    let width = region.map_or(1, |r| r.line.to_string().len());
    let pad = " ".repeat(width);
    let file = clean(&d.file);
    let location = match region {
        Some(r) => format!("{file}:{}:{}", r.line, r.column),
        None => file,
    };
    let _ = writeln!(out, "{pad}{} {location}", style.paint(BLUE, "-->"));

    let snippet = region.and_then(|r| Some((r, source_line(report.sources, &d.file, r.line)?)));
    if let Some((r, text)) = snippet {
        let bar = style.paint(BLUE, "|");
        let (shown, caret_pad, caret_len) = layout(text, r);
        let _ = writeln!(out, "{pad} {bar}");
        let number = style.paint(BLUE, &format!("{:>width$} |", r.line));
        if shown.is_empty() {
            let _ = writeln!(out, "{number}");
        } else {
            let _ = writeln!(out, "{number} {shown}");
        }
        let carets = style.paint(level, &"^".repeat(caret_len));
        let _ = writeln!(out, "{pad} {bar} {}{carets}", " ".repeat(caret_pad));
    }

    if let Some(hint) = &d.hint {
        // Continuation lines start under the hint's first character.
        let indent = " ".repeat(width + " = hint: ".len());
        let hint = clean(hint).replace('\n', &format!("\n{indent}"));
        let _ = writeln!(
            out,
            "{pad} {} {} {hint}",
            style.paint(BLUE, "="),
            style.paint(BOLD, "hint:")
        );
    }
}

/// The source line as shown, how many columns precede the first caret, and
/// how many carets there are (at least one).
fn layout(text: &str, r: Span) -> (String, usize, usize) {
    let chars: Vec<char> = text.chars().collect();
    let len = chars.len();
    // 0-based character indexes; positions past the line end are virtual
    // characters one column wide, so a caret can point just past the text.
    let start = (r.column as usize).min(len + 1) - 1;
    let end = if r.end_line == r.line {
        (r.end_column as usize).min(len + 1) - 1
    } else {
        len
    };
    let end = end.max(start + 1);
    let columns = |i: usize| chars.get(i).map_or(1, |&c| display_width(c));
    let caret_pad = (0..start).map(columns).sum();
    let caret_len = (start..end).map(columns).sum::<usize>().max(1);
    let shown = chars
        .iter()
        .map(|&c| match c {
            '\t' => " ".repeat(TAB_WIDTH),
            c if c.is_control() => '\u{FFFD}'.to_string(),
            c => c.to_string(),
        })
        .collect();
    (shown, caret_pad, caret_len)
}

/// Terminal columns taken by `c` as shown by [`layout`]: 4 for a tab, 0 for
/// combining marks and zero-width characters, 2 for East Asian wide and
/// emoji characters, 1 otherwise. A compact approximation of Unicode's
/// East Asian Width that covers the common cases.
fn display_width(c: char) -> usize {
    const ZERO: &[(u32, u32)] = &[
        (0x0300, 0x036F),
        (0x0483, 0x0489),
        (0x0591, 0x05BD),
        (0x0610, 0x061A),
        (0x064B, 0x065F),
        (0x0E31, 0x0E31),
        (0x0E34, 0x0E3A),
        (0x1AB0, 0x1AFF),
        (0x1DC0, 0x1DFF),
        (0x200B, 0x200F),
        (0x2060, 0x2064),
        (0x20D0, 0x20FF),
        (0xFE00, 0xFE0F),
        (0xFE20, 0xFE2F),
        (0xFEFF, 0xFEFF),
        (0xE0100, 0xE01EF),
    ];
    const WIDE: &[(u32, u32)] = &[
        (0x1100, 0x115F),
        (0x2E80, 0x303E),
        (0x3041, 0x33FF),
        (0x3400, 0x4DBF),
        (0x4E00, 0x9FFF),
        (0xA000, 0xA4CF),
        (0xA960, 0xA97F),
        (0xAC00, 0xD7A3),
        (0xF900, 0xFAFF),
        (0xFE30, 0xFE4F),
        (0xFF00, 0xFF60),
        (0xFFE0, 0xFFE6),
        (0x1F300, 0x1F64F),
        (0x1F900, 0x1F9FF),
        (0x20000, 0x2FFFD),
        (0x30000, 0x3FFFD),
    ];
    let cp = u32::from(c);
    let within = |ranges: &[(u32, u32)]| ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&cp));
    if c == '\t' {
        TAB_WIDTH
    } else if c.is_control() {
        1 // shown as U+FFFD
    } else if within(ZERO) {
        0
    } else if within(WIDE) {
        2
    } else {
        1
    }
}

/// Replaces control characters other than line feeds and tabs with `�`.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::diagnostic::Code;
    use crate::report::fixtures::{self, span};

    fn render_one(d: Diagnostic, source: Option<&str>) -> String {
        let mut sources = BTreeMap::new();
        if let Some(source) = source {
            sources.insert(d.file.clone(), source.to_owned());
        }
        let files = vec![d.file.clone()];
        let diagnostics = vec![d];
        render(&Report {
            diagnostics: &diagnostics,
            files: &files,
            sources: &sources,
            color: false,
        })
    }

    /// The snippet lines (gutter and all) of a one-line source.
    fn snippet(source: &str, column: u32, end_column: u32) -> String {
        let d = Diagnostic::new(
            Code::SchemaViolation,
            "f.yaml",
            span(1, column, 1, end_column),
            "m",
        );
        let out = render_one(d, Some(source));
        out.lines().skip(2).take(3).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn rustc_style_snippet() {
        let diagnostics = vec![fixtures::typo()];
        let out = render(&Report {
            diagnostics: &diagnostics,
            files: &fixtures::files(),
            sources: &fixtures::sources(),
            color: false,
        });
        let expected = "\
error[GM2002]: unknown field `weigth`
  --> services/reviews.yaml:12:9
   |
12 |         weigth: 10
   |         ^^^^^^
   = hint: did you mean `weight`?

1 error in 3 files checked
";
        assert_eq!(out, expected);
    }

    #[test]
    fn several_diagnostics_and_summary() {
        let diagnostics = vec![
            fixtures::whole_file(),
            fixtures::unreachable(),
            fixtures::typo(),
        ];
        let out = render(&Report {
            diagnostics: &diagnostics,
            files: &fixtures::files(),
            sources: &fixtures::sources(),
            color: false,
        });
        let expected = "\
error[GM1001]: file is not UTF-8
 --> blob.yaml

warning[GM3007]: rule 2 is never used
 --> routes/main.yaml:3:5
  |
3 |   - name: a
  |     ^^^^

error[GM2002]: unknown field `weigth`
  --> services/reviews.yaml:12:9
   |
12 |         weigth: 10
   |         ^^^^^^
   = hint: did you mean `weight`?

2 errors, 1 warning in 3 files checked
";
        assert_eq!(out, expected);
    }

    #[test]
    fn summaries() {
        let render_counts = |diagnostics: &[Diagnostic], files: usize| {
            let files = vec!["x".to_owned(); files];
            render(&Report {
                diagnostics,
                files: &files,
                sources: &BTreeMap::new(),
                color: false,
            })
        };
        assert_eq!(render_counts(&[], 3), "no problems in 3 files checked\n");
        assert_eq!(render_counts(&[], 1), "no problems in 1 file checked\n");
        assert_eq!(render_counts(&[], 0), "no problems in 0 files checked\n");
        let warning = fixtures::unreachable();
        let out = render_counts(&[warning.clone(), warning], 1);
        assert!(out.ends_with("\n\n2 warnings in 1 file checked\n"), "{out}");
    }

    #[test]
    fn missing_source_or_line_gives_no_snippet() {
        let out = render_one(fixtures::typo(), None);
        assert_eq!(
            out,
            "error[GM2002]: unknown field `weigth`\n  --> services/reviews.yaml:12:9\n   = hint: did you mean `weight`?\n\n1 error in 1 file checked\n"
        );
        // Line past the end of the file.
        let out = render_one(fixtures::typo(), Some("a: 1\n"));
        assert!(!out.contains('|'), "{out}");
        // Whole-file diagnostic, even with the source known.
        let out = render_one(
            fixtures::whole_file().with_hint("save it as UTF-8"),
            Some("x"),
        );
        assert_eq!(
            out,
            "error[GM1001]: file is not UTF-8\n --> blob.yaml\n  = hint: save it as UTF-8\n\n1 error in 1 file checked\n"
        );
    }

    #[test]
    fn caret_positions() {
        assert_eq!(snippet("abcdef", 2, 4), "  |\n1 | abcdef\n  |  ^^");
        // A point span.
        assert_eq!(snippet("abcdef", 1, 2), "  |\n1 | abcdef\n  | ^");
        // An empty span still gets one caret.
        assert_eq!(snippet("abcdef", 3, 3), "  |\n1 | abcdef\n  |   ^");
        // Column 0 means column 1.
        assert_eq!(snippet("abcdef", 0, 0), "  |\n1 | abcdef\n  | ^");
        // End past the end of the line: carets stop at the line end.
        assert_eq!(snippet("abc", 2, 40), "  |\n1 | abc\n  |  ^^");
    }

    #[test]
    fn column_past_end_of_line() {
        // Just past the last character (e.g. a missing value).
        assert_eq!(snippet("key:", 5, 6), "  |\n1 | key:\n  |     ^");
        // Far past it: clamped to just past the end.
        assert_eq!(snippet("key:", 30, 31), "  |\n1 | key:\n  |     ^");
        // Empty line.
        assert_eq!(snippet("", 1, 2), "  |\n1 |\n  | ^");
    }

    #[test]
    fn multi_line_span_underlines_to_end_of_first_line() {
        let d = Diagnostic::new(Code::SchemaViolation, "f.yaml", span(2, 3, 4, 2), "m");
        let out = render_one(d, Some("a:\n  b: 1\n  c: 2\n  d: 3\n"));
        assert!(out.contains("2 |   b: 1\n  |   ^^^^\n"), "{out}");
        // Starting at the line break itself.
        let d = Diagnostic::new(Code::SchemaViolation, "f.yaml", span(1, 3, 2, 1), "m");
        let out = render_one(d, Some("a:\n  b: 1\n"));
        assert!(out.contains("1 | a:\n  |   ^\n"), "{out}");
    }

    #[test]
    fn tabs_stay_aligned() {
        // Tab before the span: the caret moves by the tab's four columns.
        assert_eq!(
            snippet("\tkey: x", 2, 5),
            "  |\n1 |     key: x\n  |     ^^^"
        );
        // Tab inside the span: four carets for it.
        assert_eq!(snippet("a\tb", 2, 4), "  |\n1 | a    b\n  |  ^^^^^");
    }

    #[test]
    fn columns_count_characters() {
        // Two-byte characters before the span: one column each.
        assert_eq!(
            snippet("né: ünknown", 5, 12),
            "  |\n1 | né: ünknown\n  |     ^^^^^^^"
        );
        // Wide characters take two columns, before and inside the span.
        assert_eq!(
            snippet("名前: 値x", 5, 6),
            "  |\n1 | 名前: 値x\n  |       ^^"
        );
        // A combining accent adds no column.
        assert_eq!(snippet("e\u{301}x", 3, 4), "  |\n1 | e\u{301}x\n  |  ^");
    }

    #[test]
    fn wide_line_numbers_align() {
        let mut source = "x\n".repeat(12344);
        source.push_str("    bad: 1\n");
        let d = Diagnostic::new(
            Code::SchemaViolation,
            "f.yaml",
            span(12345, 5, 12345, 8),
            "m",
        )
        .with_hint("h");
        let out = render_one(d, Some(&source));
        let expected = "\
error[GM2001]: m
     --> f.yaml:12345:5
      |
12345 |     bad: 1
      |     ^^^
      = hint: h
";
        assert!(out.starts_with(expected), "{out}");
    }

    #[test]
    fn control_characters_are_neutralized() {
        let d = Diagnostic::new(
            Code::SchemaViolation,
            "f\x1b.yaml",
            span(1, 3, 1, 4),
            "bad \x1b[31m",
        )
        .with_hint("first\nsecond");
        let out = render_one(d, Some("a:\x07b"));
        assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
        assert!(
            out.starts_with("error[GM2001]: bad \u{FFFD}[31m\n --> f\u{FFFD}.yaml:1:3\n"),
            "{out}"
        );
        assert!(out.contains("1 | a:\u{FFFD}b\n  |   ^\n"), "{out}");
        // Multi-line hints continue under the hint text.
        assert!(out.contains("  = hint: first\n          second\n"), "{out}");
    }

    #[test]
    fn colors_only_when_asked() {
        let diagnostics = vec![fixtures::typo(), fixtures::unreachable()];
        let files = fixtures::files();
        let sources = fixtures::sources();
        let mut report = Report {
            diagnostics: &diagnostics,
            files: &files,
            sources: &sources,
            color: false,
        };
        assert!(!render(&report).contains('\x1b'));
        report.color = true;
        let out = render(&report);
        assert!(out.starts_with(
            "\x1b[1;31merror[GM2002]\x1b[0m\x1b[1m: unknown field `weigth`\x1b[0m\n  \x1b[1;34m-->\x1b[0m services/reviews.yaml:12:9\n"
        ), "{out:?}");
        assert!(
            out.contains("   \x1b[1;34m|\x1b[0m         \x1b[1;31m^^^^^^\x1b[0m\n"),
            "{out:?}"
        );
        assert!(
            out.contains("\x1b[1;34m12 |\x1b[0m         weigth: 10\n"),
            "{out:?}"
        );
        assert!(
            out.contains("   \x1b[1;34m=\x1b[0m \x1b[1mhint:\x1b[0m did you"),
            "{out:?}"
        );
        assert!(out.contains("\x1b[1;33mwarning[GM3007]\x1b[0m"), "{out:?}");
        assert!(out.contains("\x1b[1;33m^^^^\x1b[0m"), "{out:?}");
        // Without the escapes, the text is the plain output.
        let stripped = out
            .split("\x1b[")
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part
                } else {
                    &part[part.find('m').unwrap() + 1..]
                }
            })
            .collect::<String>();
        report.color = false;
        assert_eq!(stripped, render(&report));
    }
}
