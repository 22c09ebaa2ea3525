//! Manual control of a Rollout the GitOps way, pure: `pause`, `resume` and
//! `abort` as the smallest edit of the Rollout's YAML text (`paused: true`,
//! `paused: false`, `abort: true`), which `gitmesh rollout` commits for a
//! pull request or straight to the watched branch. The reconciler then
//! reads the commit like any other: pausing holds at the step (a failing
//! gate still rolls back), resuming restarts the step's clock, aborting
//! rolls back to the stable subset at once.

use std::fmt;

use crate::load::Located;
use crate::policy::Rollout;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Abort,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Abort => "abort",
        }
    }

    /// The field set and the value it gets.
    fn field(self) -> (&'static str, bool) {
        match self {
            Control::Pause => ("paused", true),
            Control::Resume => ("paused", false),
            Control::Abort => ("abort", true),
        }
    }
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("{file}:{line}:{column}: cannot edit `{field}` there")]
    Unwritable {
        file: String,
        field: &'static str,
        line: u32,
        column: u32,
    },
}

/// The Rollout file's text with `control` applied, or `None` when the
/// Rollout already says so (nothing to commit).
pub fn control_edit(
    rollout: &Located<Rollout>,
    text: &str,
    control: Control,
) -> Result<Option<String>, ControlError> {
    let (field, value) = control.field();
    let spec = &rollout.value.spec;
    let current = match field {
        "paused" => spec.paused,
        _ => spec.abort,
    };
    if current == value {
        return Ok(None);
    }
    let pointer = format!("/spec/{field}");
    let spec_span = rollout.span("/spec");
    let span = rollout.span(&pointer);
    let unwritable = |line: u32, column: u32| ControlError::Unwritable {
        file: rollout.file.clone(),
        field,
        line,
        column,
    };
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let at = |lines: &Vec<String>, line: u32, column: u32| -> Option<(usize, usize)> {
        let l = (line as usize).checked_sub(1)?;
        let byte = lines
            .get(l)?
            .char_indices()
            .nth((column as usize).checked_sub(1)?)?
            .0;
        Some((l, byte))
    };
    if span != spec_span {
        // The field is there: rewrite its value.
        let (l, start) =
            at(&lines, span.line, span.column).ok_or(unwritable(span.line, span.column))?;
        let len = lines[l][start..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if len == 0 {
            return Err(unwritable(span.line, span.column));
        }
        lines[l].replace_range(start..start + len, if value { "true" } else { "false" });
        return Ok(Some(lines.concat()));
    }
    let (l, start) = at(&lines, spec_span.line, spec_span.column)
        .ok_or(unwritable(spec_span.line, spec_span.column))?;
    if lines[l][start..].starts_with('{') {
        // A flow mapping: the field goes first inside the braces.
        lines[l].insert_str(start + 1, &format!("{field}: {value}, "));
        return Ok(Some(lines.concat()));
    }
    // A block mapping: a line before its first key, indented alike.
    let first = rollout.key_span("/spec/service");
    let (fl, _) =
        at(&lines, first.line, first.column).ok_or(unwritable(first.line, first.column))?;
    let indent: String = lines[fl].chars().take_while(|c| *c == ' ').collect();
    let key_line = &lines[fl];
    if key_line.trim_start().starts_with('-') || first.column as usize != indent.len() + 1 {
        return Err(unwritable(first.line, first.column));
    }
    lines.insert(fl, format!("{indent}{field}: {value}\n"));
    Ok(Some(lines.concat()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::lint;
    use crate::source::SourceFile;

    const BLOCK: &str = "apiVersion: gitmesh.dev/v1alpha1
kind: Rollout
metadata: {name: api-v2}
spec:
  # the api canary
  service: api
  stableSubset: v1
  canarySubset: v2
  steps: [50, 100]
";

    fn rollout(text: &str) -> Located<Rollout> {
        let result = lint(&[SourceFile::new("rollouts/api.yaml", text)]);
        result
            .policies
            .rollouts
            .into_iter()
            .next()
            .expect("a rollout")
    }

    fn edit(text: &str, control: Control) -> Option<String> {
        control_edit(&rollout(text), text, control).unwrap()
    }

    #[test]
    fn pause_resume_and_abort_edit_one_line_of_a_block_mapping() {
        let paused = edit(BLOCK, Control::Pause).unwrap();
        assert_eq!(
            paused,
            BLOCK.replace("  service: api\n", "  paused: true\n  service: api\n")
        );
        assert!(rollout(&paused).value.spec.paused);
        assert_eq!(edit(&paused, Control::Pause), None);
        let resumed = edit(&paused, Control::Resume).unwrap();
        assert_eq!(
            resumed,
            BLOCK.replace("  service: api\n", "  paused: false\n  service: api\n")
        );
        assert!(!rollout(&resumed).value.spec.paused);
        assert_eq!(edit(BLOCK, Control::Resume), None);
        let aborted = edit(&resumed, Control::Abort).unwrap();
        assert!(rollout(&aborted).value.spec.abort);
        assert!(
            aborted.contains("  abort: true\n  service: api\n"),
            "{aborted}"
        );
    }

    #[test]
    fn a_flow_mapping_gets_the_field_inside_its_braces() {
        let text = "apiVersion: gitmesh.dev/v1alpha1\nkind: Rollout\nmetadata: {name: r}\n\
                    spec: {service: api, stableSubset: v1, canarySubset: v2, steps: [100], paused: true}\n";
        // Resuming rewrites the word only.
        let resumed = edit(text, Control::Resume).unwrap();
        assert_eq!(resumed, text.replace("paused: true", "paused: false"));
        let aborted = edit(&resumed, Control::Abort).unwrap();
        assert!(
            aborted.contains("spec: {abort: true, service: api"),
            "{aborted}"
        );
        assert!(rollout(&aborted).value.spec.abort);
    }
}
