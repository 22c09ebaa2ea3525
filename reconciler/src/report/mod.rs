//! Report renderers for `gitmesh lint`.
//!
//! A [`Report`] is the outcome of one lint run: the diagnostics, every file
//! that was checked and (optionally) the files' contents for source snippets.
//! [`render`] turns it into text in one of the output [`Format`]s:
//!
//! * [`Format::Human`]: rustc-style messages with source snippets and carets,
//!   then a summary line; ANSI colors only when [`Report::color`] is set.
//! * [`Format::Json`]: JSON Lines, one object per diagnostic.
//! * [`Format::Sarif`]: a SARIF 2.1.0 log, for GitHub code scanning and other
//!   static-analysis dashboards.
//! * [`Format::Github`]: GitHub Actions workflow commands (`::error ...`), which
//!   become inline annotations on pull requests.
//! * [`Format::Junit`]: JUnit XML, one test case per checked file, for CI
//!   systems that show test reports.
//!
//! Every renderer is a pure function of the report: the same input always gives
//! byte-for-byte the same output (no clocks, no environment, no hash order).
//!
//! Positions follow [`Span`]: lines and columns count from 1, columns count
//! characters (not bytes), the end is exclusive. A diagnostic on line 0 is about
//! the whole file: it gets no snippet and no line/column anywhere.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::diagnostic::{Diagnostic, Severity, Span};

mod github;
mod human;
mod json;
mod junit;
mod sarif;

/// An output format of `gitmesh lint`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// rustc-style text for people at a terminal.
    #[default]
    Human,
    /// JSON Lines: one JSON object per diagnostic.
    Json,
    /// SARIF 2.1.0, for GitHub code scanning.
    Sarif,
    /// GitHub Actions workflow commands (annotations).
    Github,
    /// JUnit XML test report.
    Junit,
}

impl Format {
    /// Every format, in the order of [`Format::NAMES`].
    pub const ALL: &'static [Format] = &[
        Format::Human,
        Format::Json,
        Format::Sarif,
        Format::Github,
        Format::Junit,
    ];

    /// The command-line names, for `--format` (e.g. clap's
    /// `PossibleValuesParser::new(Format::NAMES)`).
    pub const NAMES: &'static [&'static str] = &["human", "json", "sarif", "github", "junit"];

    /// The command-line name: `human`, `json`, `sarif`, `github` or `junit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Human => "human",
            Format::Json => "json",
            Format::Sarif => "sarif",
            Format::Github => "github",
            Format::Junit => "junit",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown format name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseFormatError {
    name: String,
}

impl fmt::Display for ParseFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown report format `{}` (expected one of: {})",
            self.name,
            Format::NAMES.join(", ")
        )
    }
}

impl std::error::Error for ParseFormatError {}

impl FromStr for Format {
    type Err = ParseFormatError;

    /// Parses a command-line name, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .iter()
            .copied()
            .find(|format| format.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseFormatError { name: s.to_owned() })
    }
}

/// Everything a renderer needs about one lint run.
#[derive(Clone, Copy, Debug)]
pub struct Report<'a> {
    /// The problems found, sorted by (file, line, column).
    pub diagnostics: &'a [Diagnostic],
    /// Every file that was checked, including those without problems.
    pub files: &'a [String],
    /// File contents by repo-relative path, for source snippets. A file that
    /// is missing here simply gets no snippet.
    pub sources: &'a BTreeMap<String, String>,
    /// Whether human output may use ANSI colors.
    pub color: bool,
}

impl Report<'_> {
    /// The number of errors and of warnings.
    pub fn counts(&self) -> (usize, usize) {
        let errors = self
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        (errors, self.diagnostics.len() - errors)
    }
}

/// Renders `report` in `format`. The text ends with a newline unless it is
/// empty (JSON Lines and GitHub commands of a report without diagnostics).
pub fn render(format: Format, report: &Report) -> String {
    match format {
        Format::Human => human::render(report),
        Format::Json => json::render(report),
        Format::Sarif => sarif::render(report),
        Format::Github => github::render(report),
        Format::Junit => junit::render(report),
    }
}

/// The span made consistent for output, or `None` for a whole-file
/// diagnostic (line 0). Columns become at least 1, the end is never before
/// the start, and an empty single-line span covers one character.
fn region(span: Span) -> Option<Span> {
    if span.line == 0 {
        return None;
    }
    let column = span.column.max(1);
    let end_line = span.end_line.max(span.line);
    let end_column = if end_line == span.line {
        span.end_column.max(column + 1)
    } else {
        span.end_column.max(1)
    };
    Some(Span {
        line: span.line,
        column,
        end_line,
        end_column,
    })
}

/// Line `line` (1-based) of `file`, without its line break, when the source
/// is known and long enough.
fn source_line<'s>(
    sources: &'s BTreeMap<String, String>,
    file: &str,
    line: u32,
) -> Option<&'s str> {
    let index = usize::try_from(line).ok()?.checked_sub(1)?;
    let text = sources.get(file)?.split('\n').nth(index)?;
    Some(text.strip_suffix('\r').unwrap_or(text))
}

/// The message, then the hint on its own line.
fn message_with_hint(diagnostic: &Diagnostic) -> String {
    match &diagnostic.hint {
        Some(hint) => format!("{}\nhint: {hint}", diagnostic.message),
        None => diagnostic.message.clone(),
    }
}

/// `1 error`, `2 errors`.
fn plural(n: usize, singular: &str) -> String {
    if n == 1 {
        format!("{n} {singular}")
    } else {
        format!("{n} {singular}s")
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Shared test inputs.

    use std::collections::BTreeMap;

    use crate::diagnostic::{Code, Diagnostic, Span};

    pub(crate) fn span(line: u32, column: u32, end_line: u32, end_column: u32) -> Span {
        Span {
            line,
            column,
            end_line,
            end_column,
        }
    }

    /// The `weigth` typo of the module docs, plus a warning elsewhere.
    pub(crate) fn typo() -> Diagnostic {
        Diagnostic::new(
            Code::UnknownField,
            "services/reviews.yaml",
            span(12, 9, 12, 15),
            "unknown field `weigth`",
        )
        .with_hint("did you mean `weight`?")
    }

    pub(crate) fn unreachable() -> Diagnostic {
        Diagnostic::new(
            Code::UnreachableRule,
            "routes/main.yaml",
            span(3, 5, 3, 9),
            "rule 2 is never used",
        )
    }

    pub(crate) fn whole_file() -> Diagnostic {
        Diagnostic::new(
            Code::UnreadableFile,
            "blob.yaml",
            Span::default(),
            "file is not UTF-8",
        )
    }

    pub(crate) fn reviews_source() -> String {
        let mut text = String::new();
        for i in 1..=11 {
            text.push_str(&format!("# line {i}\n"));
        }
        text.push_str("        weigth: 10\n");
        text
    }

    pub(crate) fn sources() -> BTreeMap<String, String> {
        let mut sources = BTreeMap::new();
        sources.insert("services/reviews.yaml".to_owned(), reviews_source());
        sources.insert(
            "routes/main.yaml".to_owned(),
            "kind: HTTPRoute\nrules:\n  - name: a\n".to_owned(),
        );
        sources
    }

    pub(crate) fn files() -> Vec<String> {
        [
            "routes/main.yaml",
            "services/ok.yaml",
            "services/reviews.yaml",
        ]
        .map(String::from)
        .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Code;

    #[test]
    fn format_names_round_trip() {
        assert_eq!(Format::ALL.len(), Format::NAMES.len());
        for (format, name) in Format::ALL.iter().zip(Format::NAMES) {
            assert_eq!(format.as_str(), *name);
            assert_eq!(format.to_string(), *name);
            assert_eq!(name.parse::<Format>(), Ok(*format));
        }
        assert_eq!("SARIF".parse::<Format>(), Ok(Format::Sarif));
        let err = "xml".parse::<Format>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown report format `xml` (expected one of: human, json, sarif, github, junit)"
        );
        assert_eq!(Format::default(), Format::Human);
    }

    #[test]
    fn region_normalizes_spans() {
        use fixtures::span;
        assert_eq!(region(Span::default()), None);
        assert_eq!(region(span(0, 3, 0, 4)), None);
        assert_eq!(region(span(2, 0, 0, 0)), Some(span(2, 1, 2, 2)));
        assert_eq!(region(span(2, 5, 2, 5)), Some(span(2, 5, 2, 6)));
        assert_eq!(region(span(2, 5, 1, 1)), Some(span(2, 5, 2, 6)));
        assert_eq!(region(span(2, 5, 4, 0)), Some(span(2, 5, 4, 1)));
        assert_eq!(region(span(2, 5, 4, 3)), Some(span(2, 5, 4, 3)));
    }

    #[test]
    fn source_lines() {
        let mut sources = BTreeMap::new();
        sources.insert("a".to_owned(), "one\r\ntwo\n\nfour".to_owned());
        assert_eq!(source_line(&sources, "a", 1), Some("one"));
        assert_eq!(source_line(&sources, "a", 2), Some("two"));
        assert_eq!(source_line(&sources, "a", 3), Some(""));
        assert_eq!(source_line(&sources, "a", 4), Some("four"));
        assert_eq!(source_line(&sources, "a", 5), None);
        assert_eq!(source_line(&sources, "a", 0), None);
        assert_eq!(source_line(&sources, "b", 1), None);
    }

    #[test]
    fn counts_and_plurals() {
        let diagnostics = vec![
            fixtures::typo(),
            fixtures::unreachable(),
            fixtures::whole_file(),
        ];
        let report = Report {
            diagnostics: &diagnostics,
            files: &[],
            sources: &BTreeMap::new(),
            color: false,
        };
        assert_eq!(report.counts(), (2, 1));
        assert_eq!(plural(1, "error"), "1 error");
        assert_eq!(plural(0, "error"), "0 errors");
        assert_eq!(plural(2, "file"), "2 files");
    }

    #[test]
    fn every_format_is_deterministic() {
        let diagnostics = vec![
            fixtures::whole_file(),
            fixtures::unreachable(),
            fixtures::typo(),
            Diagnostic::new(
                Code::SecretInRepo,
                "ünï/cödé.yaml",
                Span::point(1, 3),
                "secret `ключ`",
            ),
        ];
        let files = fixtures::files();
        let sources = fixtures::sources();
        for color in [false, true] {
            let report = Report {
                diagnostics: &diagnostics,
                files: &files,
                sources: &sources,
                color,
            };
            for &format in Format::ALL {
                let first = render(format, &report);
                assert!(!first.is_empty(), "{format}");
                assert!(first.ends_with('\n'), "{format}");
                assert_eq!(first, render(format, &report), "{format}");
            }
        }
    }
}
