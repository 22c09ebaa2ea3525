//! The progressive-rollout decision across proxies: a pure function from
//! what is desired and what each proxy reports to what to do next.
//!
//! A new policy version (a source commit) reaches the proxies whose config
//! changes in cumulative waves (for example one proxy, then 25%, then all).
//! A wave is done when each of its proxies has ACKed the new version and
//! stayed healthy for `min_healthy_time`; then the next wave starts. A NACK,
//! a proxy of an updated wave turning unhealthy, or the progress deadline
//! passing reverts every updated proxy to the last good version.
//!
//! Level-triggered, as kube-runtime's reconcilers: [`decide`] looks only at
//! the present (desired version, proxy reports, the rollout's recorded
//! progress and the time) and returns the next step. Calling it twice with
//! the same input gives the same answer; nothing here keeps history.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::{RolloutDefaults, Wave};

/// What one proxy reports, as the reconciler last heard it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyReport {
    pub id: String,
    pub service: String,
    /// The policy version (source commit) the proxy last ACKed.
    pub acked: Option<String>,
    /// The policy version the proxy last refused, with the reason.
    pub nacked: Option<(String, String)>,
    /// As its last heartbeat said; `None` before the first heartbeat
    /// (unknown: waited for, never a reason to revert).
    pub healthy: Option<bool>,
}

/// A rollout of one policy version in progress, as recorded (in Git, on the
/// status branch) so that a restarted reconciler resumes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The version being rolled out.
    pub version: String,
    /// The version proxies go back to on failure.
    pub last_good: String,
    /// The proxies whose config changes, in wave order.
    pub targets: Vec<String>,
    /// Index of the wave being rolled out now.
    pub wave: usize,
    /// Milliseconds since the rollout started when the current wave started.
    pub wave_started_ms: u64,
    /// Milliseconds since the rollout started when every proxy of the
    /// current wave was first seen ACKed and healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_healthy_since_ms: Option<u64>,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep waiting (optionally with updated bookkeeping to record).
    Wait(Progress),
    /// Start wave `progress.wave`: assign the new version to `proxies`.
    StartWave {
        progress: Progress,
        proxies: Vec<String>,
    },
    /// Every target runs the new version and stayed healthy: done.
    Complete { version: String },
    /// Put every updated proxy back on `progress.last_good`.
    Revert {
        progress: Progress,
        proxies: Vec<String>,
        reason: Revert,
    },
}

/// Why a rollout was reverted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revert {
    Nack { proxy: String, reason: String },
    Unhealthy { proxy: String },
    Deadline { waited: Duration },
}

impl std::fmt::Display for Revert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Revert::Nack { proxy, reason } => {
                write!(f, "proxy {proxy} refused the config: {reason}")
            }
            Revert::Unhealthy { proxy } => write!(f, "proxy {proxy} turned unhealthy"),
            Revert::Deadline { waited } => write!(
                f,
                "the wave did not become healthy within the progress deadline ({}s)",
                waited.as_secs()
            ),
        }
    }
}

/// How many of `total` proxies the cumulative wave `wave` covers.
pub fn wave_size(wave: &Wave, total: usize) -> usize {
    let n = match (wave.proxies, wave.percent) {
        (Some(p), _) => p as usize,
        (None, Some(pct)) => ((pct / 100.0) * total as f64).ceil() as usize,
        (None, None) => total,
    };
    n.clamp(1, total.max(1)).min(total)
}

/// The sizes of every wave over `total` proxies, cumulative and strictly
/// increasing, the last one covering all (waves that would add nobody are
/// skipped; a missing final wave is added).
pub fn wave_plan(waves: &[Wave], total: usize) -> Vec<usize> {
    if total == 0 {
        return Vec::new();
    }
    let mut sizes: Vec<usize> = Vec::new();
    for w in waves {
        let n = wave_size(w, total);
        if sizes.last().is_none_or(|last| n > *last) {
            sizes.push(n);
        }
    }
    if sizes.last() != Some(&total) {
        sizes.push(total);
    }
    sizes
}

/// Starts a rollout of `version` to the proxies whose config it changes.
/// `targets` are sorted so every reconciler picks the same first proxies.
pub fn begin(version: &str, last_good: &str, mut targets: Vec<String>) -> Progress {
    targets.sort();
    targets.dedup();
    Progress {
        version: version.to_string(),
        last_good: last_good.to_string(),
        targets,
        wave: 0,
        wave_started_ms: 0,
        wave_healthy_since_ms: None,
    }
}

/// The next step of a rollout. `now_ms` counts from the rollout's start
/// (the caller keeps the origin). `started` tells whether wave
/// `progress.wave` has been assigned yet.
pub fn decide(
    progress: &Progress,
    started: bool,
    reports: &BTreeMap<String, ProxyReport>,
    settings: &RolloutDefaults,
    now_ms: u64,
) -> Step {
    let plan = wave_plan(&settings.waves, progress.targets.len());
    if progress.targets.is_empty() {
        return Step::Complete {
            version: progress.version.clone(),
        };
    }
    let size = plan[progress.wave.min(plan.len() - 1)];
    let updated = &progress.targets[..size];
    if !started {
        return Step::StartWave {
            progress: Progress {
                wave_started_ms: now_ms,
                wave_healthy_since_ms: None,
                ..progress.clone()
            },
            proxies: updated.to_vec(),
        };
    }
    let revert = |reason| Step::Revert {
        progress: progress.clone(),
        proxies: updated.to_vec(),
        reason,
    };
    // A failure anywhere in the updated proxies reverts them all.
    for id in updated {
        // A proxy that went away is not a failure of the config; it no
        // longer counts (the wave completes without it).
        let Some(r) = reports.get(id) else { continue };
        if let Some((version, reason)) = &r.nacked
            && *version == progress.version
        {
            return revert(Revert::Nack {
                proxy: id.clone(),
                reason: reason.clone(),
            });
        }
        if r.acked.as_deref() == Some(&progress.version) && r.healthy == Some(false) {
            return revert(Revert::Unhealthy { proxy: id.clone() });
        }
    }
    let all_good = updated.iter().all(|id| {
        reports.get(id).is_none_or(|r| {
            r.acked.as_deref() == Some(&progress.version) && r.healthy == Some(true)
        })
    });
    let waited = Duration::from_millis(now_ms.saturating_sub(progress.wave_started_ms));
    if !all_good {
        if waited >= settings.progress_deadline.to_std() {
            return revert(Revert::Deadline { waited });
        }
        return Step::Wait(Progress {
            wave_healthy_since_ms: None,
            ..progress.clone()
        });
    }
    let since = progress.wave_healthy_since_ms.unwrap_or(now_ms);
    if now_ms.saturating_sub(since) < settings.min_healthy_time.as_millis() {
        return Step::Wait(Progress {
            wave_healthy_since_ms: Some(since),
            ..progress.clone()
        });
    }
    if progress.wave + 1 >= plan.len() {
        return Step::Complete {
            version: progress.version.clone(),
        };
    }
    let next = Progress {
        wave: progress.wave + 1,
        wave_started_ms: now_ms,
        wave_healthy_since_ms: None,
        ..progress.clone()
    };
    let proxies = progress.targets[..plan[next.wave]].to_vec();
    Step::StartWave {
        progress: next,
        proxies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitmesh_proxy_config::Duration as D;

    fn settings() -> RolloutDefaults {
        RolloutDefaults {
            waves: vec![
                Wave {
                    proxies: Some(1),
                    percent: None,
                },
                Wave {
                    proxies: None,
                    percent: Some(25.0),
                },
                Wave {
                    proxies: None,
                    percent: Some(100.0),
                },
            ],
            min_healthy_time: D::from_secs(10),
            progress_deadline: D::from_secs(60),
        }
    }

    fn reports(acked: &[(&str, &str, bool)]) -> BTreeMap<String, ProxyReport> {
        acked
            .iter()
            .map(|(id, version, healthy)| {
                (
                    id.to_string(),
                    ProxyReport {
                        id: id.to_string(),
                        service: "s".into(),
                        acked: Some(version.to_string()),
                        nacked: None,
                        healthy: Some(*healthy),
                    },
                )
            })
            .collect()
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("p{i:02}")).collect()
    }

    #[test]
    fn wave_plans_are_cumulative_and_end_with_everyone() {
        let w = settings().waves;
        assert_eq!(wave_plan(&w, 1), [1]);
        assert_eq!(wave_plan(&w, 4), [1, 4]);
        assert_eq!(wave_plan(&w, 12), [1, 3, 12]);
        assert_eq!(wave_plan(&w, 0), Vec::<usize>::new());
        let partial = [Wave {
            proxies: None,
            percent: Some(50.0),
        }];
        assert_eq!(
            wave_plan(&partial, 10),
            [5, 10],
            "a missing final wave is added"
        );
    }

    #[test]
    fn waves_advance_only_after_ack_and_min_healthy_time() {
        let s = settings();
        let p = begin("new", "old", ids(12));
        let Step::StartWave { progress, proxies } = decide(&p, false, &BTreeMap::new(), &s, 0)
        else {
            panic!()
        };
        assert_eq!(proxies, ["p00"]);
        // Not ACKed yet: wait.
        let r = reports(&[("p00", "old", true)]);
        assert!(matches!(
            decide(&progress, true, &r, &s, 1_000),
            Step::Wait(_)
        ));
        // ACKed and healthy: the clock for min healthy time starts.
        let r = reports(&[("p00", "new", true)]);
        let Step::Wait(progress) = decide(&progress, true, &r, &s, 2_000) else {
            panic!()
        };
        assert_eq!(progress.wave_healthy_since_ms, Some(2_000));
        assert!(matches!(
            decide(&progress, true, &r, &s, 11_999),
            Step::Wait(_)
        ));
        let Step::StartWave { progress, proxies } = decide(&progress, true, &r, &s, 12_000) else {
            panic!()
        };
        assert_eq!(progress.wave, 1);
        assert_eq!(proxies, ["p00", "p01", "p02"]);
    }

    #[test]
    fn deciding_twice_gives_the_same_step() {
        let s = settings();
        let p = Progress {
            wave: 1,
            wave_started_ms: 100,
            ..begin("new", "old", ids(12))
        };
        let r = reports(&[
            ("p00", "new", true),
            ("p01", "new", true),
            ("p02", "old", true),
        ]);
        assert_eq!(
            decide(&p, true, &r, &s, 5_000),
            decide(&p, true, &r, &s, 5_000)
        );
    }

    #[test]
    fn a_nack_reverts_every_updated_proxy() {
        let s = settings();
        let p = Progress {
            wave: 1,
            ..begin("new", "old", ids(12))
        };
        let mut r = reports(&[("p00", "new", true), ("p01", "new", true)]);
        r.insert(
            "p02".into(),
            ProxyReport {
                id: "p02".into(),
                service: "s".into(),
                acked: Some("old".into()),
                nacked: Some(("new".into(), "bad regex".into())),
                healthy: Some(true),
            },
        );
        let Step::Revert {
            proxies,
            reason,
            progress,
        } = decide(&p, true, &r, &s, 1_000)
        else {
            panic!()
        };
        assert_eq!(proxies, ["p00", "p01", "p02"]);
        assert_eq!(progress.last_good, "old");
        assert_eq!(
            reason.to_string(),
            "proxy p02 refused the config: bad regex"
        );
    }

    #[test]
    fn unhealthy_after_update_reverts_and_deadline_reverts() {
        let s = settings();
        let p = begin("new", "old", ids(3));
        let r = reports(&[("p00", "new", false)]);
        assert!(matches!(
            decide(&p, true, &r, &s, 1_000),
            Step::Revert {
                reason: Revert::Unhealthy { .. },
                ..
            }
        ));
        let r = reports(&[("p00", "old", true)]);
        assert!(matches!(decide(&p, true, &r, &s, 59_999), Step::Wait(_)));
        assert!(matches!(
            decide(&p, true, &r, &s, 60_000),
            Step::Revert {
                reason: Revert::Deadline { .. },
                ..
            }
        ));
    }

    /// An ACK can arrive before the first heartbeat: unknown health is
    /// waited for, not taken as a failure.
    #[test]
    fn unknown_health_waits_and_never_reverts() {
        let s = settings();
        let p = begin("new", "old", ids(1));
        let mut r = reports(&[("p00", "new", true)]);
        r.get_mut("p00").unwrap().healthy = None;
        assert!(matches!(decide(&p, true, &r, &s, 1_000), Step::Wait(_)));
        r.get_mut("p00").unwrap().healthy = Some(true);
        assert!(matches!(decide(&p, true, &r, &s, 2_000), Step::Wait(_)));
    }

    #[test]
    fn the_last_wave_completes_and_departed_proxies_do_not_block() {
        let s = settings();
        let p = Progress {
            wave: 1,
            wave_healthy_since_ms: Some(0),
            ..begin("new", "old", ids(3))
        };
        // p02 went away mid-rollout.
        let r = reports(&[("p00", "new", true), ("p01", "new", true)]);
        assert_eq!(
            decide(&p, true, &r, &s, 10_000),
            Step::Complete {
                version: "new".into()
            }
        );
        let nobody = begin("new", "old", vec![]);
        assert!(matches!(
            decide(&nobody, false, &r, &s, 0),
            Step::Complete { .. }
        ));
    }
}
