//! Write-back, pure: a completed Rollout's final weights as the smallest
//! edit of its route's YAML text, so the desired-state branch matches the
//! mesh and the commit's diff is the weights and nothing else (comments,
//! order, quoting and layout are kept byte for byte).
//!
//! [`weight_edits`] finds, in the route's rules that send to the stable
//! subset (the rules the Rollout drives, as [`crate::compile`] does), the
//! `weight` of the stable and canary backendRefs; [`apply_edits`] rewrites
//! those numbers in the file's text. The git side (commit from objects,
//! compare-and-swap, push) is [`crate::status::StatusLog::replace_desired`].

use crate::diagnostic::Span;
use crate::load::Located;
use crate::policy::{HTTPRoute, RolloutSpec};

/// One number to rewrite: the `weight` value starting at `line`:`column`
/// (1-based, columns in characters, as the loader records them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightEdit {
    pub line: u32,
    pub column: u32,
    pub weight: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WriteBackError {
    #[error("the Rollout names no route: its split lives in the Rollout alone")]
    NoRoute,
    #[error("route `{0}` is not in the desired state")]
    NoSuchRoute(String),
    #[error("route `{route}` rule {rule}: {problem}")]
    Unwritable {
        route: String,
        rule: usize,
        problem: String,
    },
    #[error("{file}:{line}:{column}: no number to rewrite there")]
    NotANumber {
        file: String,
        line: u32,
        column: u32,
    },
}

/// The edits that give `route` a `canary_weight`% split between the
/// Rollout's stable and canary subsets (stable gets the rest of 100).
/// Weights already right need no edit; an empty list means nothing to do.
pub fn weight_edits(
    route: &Located<HTTPRoute>,
    spec: &RolloutSpec,
    canary_weight: u32,
) -> Result<Vec<WeightEdit>, WriteBackError> {
    let canary_weight = canary_weight.min(100);
    let name = &route.value.metadata.name;
    let mut edits = Vec::new();
    for (i, rule) in route.value.spec.rules.iter().enumerate() {
        let is = |subset: &str, b: &crate::policy::BackendRef| {
            b.name == spec.service && b.subset.as_deref() == Some(subset)
        };
        if !rule.backend_refs.iter().any(|b| is(&spec.stable_subset, b)) {
            continue;
        }
        let unwritable = |problem: String| WriteBackError::Unwritable {
            route: name.clone(),
            rule: i + 1,
            problem,
        };
        if !rule.backend_refs.iter().any(|b| is(&spec.canary_subset, b)) {
            return Err(unwritable(format!(
                "no backendRef to subset `{}` to give its weight to",
                spec.canary_subset
            )));
        }
        for (j, b) in rule.backend_refs.iter().enumerate() {
            let target = if is(&spec.stable_subset, b) {
                100 - canary_weight
            } else if is(&spec.canary_subset, b) {
                canary_weight
            } else {
                continue;
            };
            let pointer = format!("/spec/rules/{i}/backendRefs/{j}");
            let weight_span: Span = route.span(&format!("{pointer}/weight"));
            if weight_span == route.span(&pointer) {
                return Err(unwritable(format!(
                    "the backendRef to subset `{}` has no `weight` field to rewrite",
                    b.subset.as_deref().unwrap_or("")
                )));
            }
            if b.weight != i64::from(target) {
                edits.push(WeightEdit {
                    line: weight_span.line,
                    column: weight_span.column,
                    weight: target,
                });
            }
        }
    }
    Ok(edits)
}

/// `text` with each edit's number replaced; everything else untouched.
pub fn apply_edits(file: &str, text: &str, edits: &[WeightEdit]) -> Result<String, WriteBackError> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    for edit in edits {
        let bad = || WriteBackError::NotANumber {
            file: file.to_string(),
            line: edit.line,
            column: edit.column,
        };
        let line = lines
            .get_mut((edit.line as usize).wrapping_sub(1))
            .ok_or_else(bad)?;
        let start = line
            .char_indices()
            .nth((edit.column as usize).wrapping_sub(1))
            .map(|(at, _)| at)
            .ok_or_else(bad)?;
        let len = line[start..]
            .bytes()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if len == 0 {
            return Err(bad());
        }
        line.replace_range(start..start + len, &edit.weight.to_string());
    }
    Ok(lines.concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::lint;
    use crate::source::SourceFile;

    const ROUTE: &str = "# the api split
apiVersion: gitmesh.dev/v1alpha1
kind: HTTPRoute
metadata: {name: api}
spec:
  parentRefs: [{name: api}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /admin}}]
      backendRefs: [{name: api, subset: v1}]   # driven too: it sends to stable
    - backendRefs:
        - name: api
          subset: v1
          weight: 90   # stable
        - {name: api, subset: v2, weight: 10}
";

    fn route(text: &str) -> Located<HTTPRoute> {
        let result = lint(&[SourceFile::new("routes/api.yaml", text)]);
        result.policies.routes.into_iter().next().expect("a route")
    }

    fn spec() -> RolloutSpec {
        serde_json::from_value(serde_json::json!({
            "service": "api", "route": "api", "stableSubset": "v1",
            "canarySubset": "v2", "steps": [50, 100]
        }))
        .unwrap()
    }

    #[test]
    fn the_diff_is_the_weights_only() {
        let text = ROUTE.replace(
            "      backendRefs: [{name: api, subset: v1}]   # driven too: it sends to stable\n",
            "      backendRefs: [{name: api, subset: v1, weight: 1}, {name: api, subset: v2, weight: 0}]\n",
        );
        let edits = weight_edits(&route(&text), &spec(), 100).unwrap();
        assert_eq!(edits.len(), 4, "{edits:?}");
        let out = apply_edits("routes/api.yaml", &text, &edits).unwrap();
        let changed: Vec<(&str, &str)> = text
            .lines()
            .zip(out.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            changed,
            vec![
                (
                    "      backendRefs: [{name: api, subset: v1, weight: 1}, {name: api, subset: v2, weight: 0}]",
                    "      backendRefs: [{name: api, subset: v1, weight: 0}, {name: api, subset: v2, weight: 100}]"
                ),
                (
                    "          weight: 90   # stable",
                    "          weight: 0   # stable"
                ),
                (
                    "        - {name: api, subset: v2, weight: 10}",
                    "        - {name: api, subset: v2, weight: 100}"
                ),
            ]
        );
        // Written back, the weights are already right: nothing more to do.
        assert_eq!(weight_edits(&route(&out), &spec(), 100).unwrap(), vec![]);
    }

    #[test]
    fn a_rule_it_cannot_write_is_an_error_not_a_guess() {
        let err = weight_edits(&route(ROUTE), &spec(), 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "route `api` rule 1: no backendRef to subset `v2` to give its weight to"
        );
        let no_weight = ROUTE
            .replace(
                "      backendRefs: [{name: api, subset: v1}]   # driven too: it sends to stable\n",
                "",
            )
            .replace(
                "    - matches: [{path: {type: PathPrefix, value: /admin}}]\n",
                "",
            )
            .replace("          weight: 90   # stable\n", "");
        let err = weight_edits(&route(&no_weight), &spec(), 100).unwrap_err();
        assert!(err.to_string().contains("no `weight` field"), "{err}");
    }

    #[test]
    fn an_edit_off_a_number_is_refused() {
        let edit = WeightEdit {
            line: 1,
            column: 3,
            weight: 5,
        };
        assert!(matches!(
            apply_edits("f.yaml", "# comment\n", &[edit]),
            Err(WriteBackError::NotANumber { line: 1, .. })
        ));
        let past_end = WeightEdit { line: 9, ..edit };
        assert!(apply_edits("f.yaml", "a: 1\n", &[past_end]).is_err());
    }
}
