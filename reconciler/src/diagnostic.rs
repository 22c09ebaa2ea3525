//! Diagnostics: one problem in a policy repo, pointing at file, line and
//! column, with a stable code that CI systems and people can look up.

use std::fmt;

/// A position range in a source file. Lines and columns count from 1;
/// columns count characters, not bytes. `end` is exclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub line: u32,
    pub column: u32,
    pub end_line: u32,
    pub end_column: u32,
}

impl Span {
    pub fn point(line: u32, column: u32) -> Span {
        Span {
            line,
            column,
            end_line: line,
            end_column: column + 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $severity:ident, $title:literal; )*) => {
        /// Every diagnostic gitmesh can report. Codes are stable: a code is
        /// never reused for another meaning. The README lists them all.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable code, like `GM1001`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// A short name for the rule (used by SARIF and JUnit).
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }
        }
    };
}

codes! {
    /// The file could not be read as YAML text: binary, not UTF-8, too large.
    UnreadableFile = "GM1001", Error, "unreadable file";
    /// The YAML does not parse.
    YamlSyntax = "GM1002", Error, "YAML syntax error";
    /// A mapping has the same key twice.
    DuplicateKey = "GM1003", Error, "duplicate key";
    /// Too deep, or aliases expand too much (a "billion laughs" document).
    YamlTooComplex = "GM1004", Error, "YAML too complex";
    /// The document is not a gitmesh policy: missing or unknown apiVersion/kind.
    NotAPolicy = "GM1005", Error, "not a gitmesh policy";
    /// A value breaks the kind's JSON Schema (type, required, range, pattern).
    SchemaViolation = "GM2001", Error, "schema violation";
    /// A field the kind does not have (typos must not pass silently).
    UnknownField = "GM2002", Error, "unknown field";
    /// Two objects of one kind share a name.
    DuplicateName = "GM3001", Error, "duplicate name";
    /// A reference to a service that does not exist.
    UnknownService = "GM3002", Error, "unknown service";
    /// A reference to a subset the service does not define.
    UnknownSubset = "GM3003", Error, "unknown subset";
    /// A Rollout names an HTTPRoute that does not exist or does not route its service.
    UnknownRoute = "GM3004", Error, "unknown route";
    /// Every backend of a rule has weight 0: the rule can only answer errors.
    ZeroWeights = "GM3005", Error, "all backend weights are zero";
    /// Rollout steps must strictly increase and end at 100.
    BadRolloutSteps = "GM3006", Error, "bad rollout steps";
    /// An earlier rule catches every request this rule would match.
    UnreachableRule = "GM3007", Warning, "unreachable route rule";
    /// More than one Mesh object.
    DuplicateMesh = "GM3008", Error, "more than one Mesh";
    /// Thresholds that contradict each other or cannot be met.
    BadThreshold = "GM3009", Error, "threshold out of range";
    /// A private key, token or password committed to the policy repo.
    SecretInRepo = "GM3010", Error, "secret committed";
    /// A regular expression that does not compile.
    InvalidRegex = "GM3011", Error, "invalid regular expression";
    /// A filter whose `type` does not match the field it configures.
    FilterMismatch = "GM3012", Error, "filter type mismatch";
    /// Two Rollouts drive the same service, or a Rollout's canary is its stable.
    RolloutConflict = "GM3013", Error, "conflicting rollout";
    /// A declared upstream that the destination's intentions deny.
    UpstreamDenied = "GM3014", Warning, "upstream denied by intentions";
    /// Route weights between a Rollout's stable and canary subsets: the
    /// Rollout sets them as it progresses, so what the route says is ignored.
    WeightsOwnedByRollout = "GM3015", Warning, "weights owned by a Rollout";
    /// An intention permission requires JWT claims on a Service without `jwt`.
    ClaimsWithoutJwt = "GM3016", Error, "claims without JWT";
    /// A JWT provider without exactly one key source, with a plain-http
    /// JWKS URL, or with an empty or repeated issuer.
    BadJwtProvider = "GM3017", Error, "bad JWT provider";
    /// An intention names a source service, but mTLS is disabled for the
    /// destination: callers carry no identity, so the rule never matches.
    SourceWithoutIdentity = "GM3018", Warning, "intention source without identity";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a policy repo.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// Path relative to the repo root, with `/` separators.
    pub file: String,
    pub span: Span,
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(
        code: Code,
        file: impl Into<String>,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            span,
            code,
            severity: code.severity(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(s.len() == 6 && s.starts_with("GM"), "{s}");
            assert!(seen.insert(s), "{s} used twice");
        }
    }
}
