//! The reconciler's memory, written as `state.json` with every status
//! commit so a restarted reconciler resumes exactly where it stopped:
//! which version is good, which rollout is in flight and at which wave,
//! which commits were refused.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::canary::CanaryState;
use crate::waves::Progress;

/// How many refused commits are remembered (older ones may be retried).
const REMEMBERED: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedState {
    /// The last version every proxy was rolled out to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good: Option<String>,
    /// The rollout in flight, and whether its current wave was assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Progress>,
    /// Commits that failed lint (never applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
    /// Commits whose rollout was reverted (not retried).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reverted: Vec<String>,
    /// Canary rollouts, by Rollout name: step, weight, failures.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub canaries: BTreeMap<String, CanaryState>,
    /// Each canary's last recorded decision (action, step, kind of reason),
    /// by Rollout name: a hold is recorded once per step and reason, across
    /// a restart of the reconciler too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub canary_decisions: BTreeMap<String, String>,
}

impl RecordedState {
    /// Whether `commit` was already dealt with and must not start again.
    pub fn is_settled(&self, commit: &str) -> bool {
        self.last_good.as_deref() == Some(commit)
            || self.rollout.as_ref().is_some_and(|r| r.version == commit)
            || self.rejected.iter().any(|c| c == commit)
            || self.reverted.iter().any(|c| c == commit)
    }

    pub fn reject(&mut self, commit: &str) {
        remember(&mut self.rejected, commit);
    }

    pub fn revert(&mut self, commit: &str) {
        remember(&mut self.reverted, commit);
    }
}

fn remember(list: &mut Vec<String>, commit: &str) {
    if !list.iter().any(|c| c == commit) {
        list.push(commit.to_string());
    }
    if list.len() > REMEMBERED {
        list.remove(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_commits_are_not_started_again_and_round_trip() {
        let mut s = RecordedState {
            last_good: Some("a".into()),
            ..Default::default()
        };
        s.reject("b");
        s.revert("c");
        for c in ["a", "b", "c"] {
            assert!(s.is_settled(c), "{c}");
        }
        assert!(!s.is_settled("d"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(serde_json::from_value::<RecordedState>(json).unwrap(), s);
        for i in 0..100 {
            s.reject(&i.to_string());
        }
        assert_eq!(s.rejected.len(), REMEMBERED);
    }
}
