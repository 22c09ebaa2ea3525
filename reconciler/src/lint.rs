//! `gitmesh lint`: load, validate and scan a repo, and gather every
//! diagnostic in one sorted list. Pure over the files it is given.

use std::collections::BTreeMap;

use crate::diagnostic::{Diagnostic, Severity};
use crate::load::{PolicySet, load};
use crate::source::SourceFile;
use crate::{secrets, semantics};

/// The outcome of checking a repo.
#[derive(Clone, Debug, Default)]
pub struct LintResult {
    pub policies: PolicySet,
    /// Sorted by file, line, column.
    pub diagnostics: Vec<Diagnostic>,
    pub files: Vec<String>,
    pub sources: BTreeMap<String, String>,
}

impl LintResult {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }

    /// Whether the repo may be applied: no errors (and, when asked, no
    /// warnings either).
    pub fn passes(&self, deny_warnings: bool) -> bool {
        self.errors() == 0 && (!deny_warnings || self.warnings() == 0)
    }
}

/// Checks every file: YAML as policy, every text file for secrets. Semantic
/// checks run on the documents that loaded, so one run reports everything.
pub fn lint(files: &[SourceFile]) -> LintResult {
    let loaded = load(files);
    let mut diagnostics = loaded.diagnostics;
    diagnostics.extend(semantics::check(&loaded.policies));
    for (file, text) in &loaded.sources {
        diagnostics.extend(secrets::scan(file, text));
    }
    diagnostics.sort_by(|a, b| {
        (&a.file, a.span.line, a.span.column, a.code).cmp(&(
            &b.file,
            b.span.line,
            b.span.column,
            b.code,
        ))
    });
    diagnostics.dedup();
    LintResult {
        policies: loaded.policies,
        diagnostics,
        files: loaded.files,
        sources: loaded.sources,
    }
}
