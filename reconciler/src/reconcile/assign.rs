//! What each proxy should run now: a pure function of the recorded state,
//! the compiled versions and the registered instances.
//!
//! A proxy in the updated part of the rollout in flight runs the new
//! version; every other proxy runs the last good one. Endpoints (registered
//! instances) are merged into whichever version a proxy runs, so instances
//! coming and going reach every proxy at once, whatever its wave.

use std::collections::BTreeMap;

use gitmesh_proxy_config::ProxyConfig;
use gitmesh_proxy_config::api::ConfigUpdate;

use crate::compile::Snapshots;
use crate::endpoints::{Instance, with_instances};
use crate::policy::RolloutDefaults;
use crate::waves::wave_plan;

use super::state::RecordedState;

/// One compiled commit.
#[derive(Clone, Debug)]
pub struct Version {
    pub commit: String,
    /// Compiled with every canary at 0%.
    pub snapshots: Snapshots,
    pub rollout: RolloutDefaults,
    /// The policies, to compile again with the canaries' current weights.
    pub policies: std::sync::Arc<crate::load::PolicySet>,
}

/// The policy version proxy `id` should run: the rollout's version if the
/// proxy is in a wave already started, else the last good version.
pub fn version_for<'a>(
    id: &str,
    state: &'a RecordedState,
    started: bool,
    settings: &RolloutDefaults,
) -> Option<&'a str> {
    if let Some(r) = &state.rollout {
        let plan = wave_plan(&settings.waves, r.targets.len());
        let updated = if started {
            plan.get(r.wave).copied().unwrap_or(0)
        } else if r.wave == 0 {
            0
        } else {
            plan.get(r.wave - 1).copied().unwrap_or(0)
        };
        if r.targets[..updated.min(r.targets.len())]
            .iter()
            .any(|t| t == id)
        {
            return Some(&r.version);
        }
    }
    state.last_good.as_deref()
}

/// The config a proxy of `service` gets from `version` (a commit and its
/// snapshots; an empty config, with no upstreams, when there is no version
/// yet or the version has no such service), with the registered instances
/// merged in.
pub fn config_for(
    service: &str,
    version: Option<(&str, &Snapshots)>,
    instances: &[Instance],
) -> ConfigUpdate {
    let config = match version.and_then(|(_, snapshots)| snapshots.get(service)) {
        Some(config) => with_instances(config, instances),
        None => ProxyConfig {
            version: version.map_or("none".to_string(), |(commit, _)| commit.to_string()),
            service: service.to_string(),
            mesh: Default::default(),
            inbound: Default::default(),
            upstreams: Vec::new(),
        },
    };
    ConfigUpdate {
        digest: config.digest(),
        config,
    }
}

/// Proxies whose config differs between two versions: the rollout targets.
pub fn changed_proxies(
    proxies: &BTreeMap<String, String>,
    from: Option<&Version>,
    to: &Version,
) -> Vec<String> {
    proxies
        .iter()
        .filter(|(_, service)| {
            let before = from
                .and_then(|v| v.snapshots.get(*service))
                .map(ProxyConfig::digest);
            let after = to.snapshots.get(*service).map(ProxyConfig::digest);
            before != after
        })
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waves::begin;

    fn settings() -> RolloutDefaults {
        RolloutDefaults::default()
    }

    #[test]
    fn only_started_waves_get_the_new_version() {
        let mut state = RecordedState {
            last_good: Some("old".into()),
            ..Default::default()
        };
        state.rollout = Some(begin(
            "new",
            "old",
            (0..8).map(|i| format!("p{i}")).collect(),
        ));
        let s = settings();
        assert_eq!(version_for("p0", &state, false, &s), Some("old"));
        assert_eq!(version_for("p0", &state, true, &s), Some("new"));
        assert_eq!(version_for("p1", &state, true, &s), Some("old"));
        state.rollout.as_mut().unwrap().wave = 1;
        // Wave 1 (25% of 8 = 2) not assigned yet: still only p0.
        assert_eq!(version_for("p1", &state, false, &s), Some("old"));
        assert_eq!(version_for("p1", &state, true, &s), Some("new"));
        assert_eq!(version_for("p7", &state, true, &s), Some("old"));
        assert_eq!(version_for("stranger", &state, true, &s), Some("old"));
    }

    #[test]
    fn unknown_service_gets_an_empty_valid_config() {
        let update = config_for("nobody", None, &[]);
        assert_eq!(update.config.version, "none");
        assert!(update.config.validate().is_ok());
        assert_eq!(update.digest, update.config.digest());
    }
}
