//! The reconcile loop: level-triggered, like a kube-runtime controller.
//! Whatever woke it (a new commit, a proxy registering or ACKing, a tick),
//! it compares the desired state (the branch tip) with what it recorded and
//! what proxies report, takes the next step of the rollout, assigns every
//! proxy its config, and records each step on the status branch.
//!
//! Pipeline per new commit, each failure with its own stage: read (git
//! objects) → lint → compile → rollout in waves → applied | reverted.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitmesh_proxy_config::api::ConfigUpdate;
use tokio::sync::watch;

use crate::api::RegistryHandle;
use crate::ca::trust_domain_mismatch;
use crate::canary::{
    self, CanaryStatus, Scrape, Stats, WindowQuery, WindowStats, unanchored, window_stats,
};
use crate::compile::{CanaryWeights, Snapshots, compile};
use crate::diagnostic::Severity;
use crate::endpoints::Instance;
use crate::lint::lint;
use crate::policy::{MetricsSource, MetricsSourceKind, RolloutSpec};
use crate::source;
use crate::status::{Identity, RevertReason, StatusEvent, StatusLog, short};
use crate::waves::{self, ProxyReport, Revert, Step, wave_plan};

use super::assign::{Version, changed_proxies, config_for, version_for};
use super::metrics::Metrics;
use super::prometheus::Prometheus;
use super::state::RecordedState;

/// How long a Prometheus query may take (connect included).
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct DaemonSettings {
    /// The policy repo (any path inside it).
    pub repo: PathBuf,
    /// The branch holding desired state.
    pub branch: String,
    /// Where every step is recorded.
    pub status_branch: String,
    pub identity: Identity,
    /// How often the loop runs when nothing wakes it.
    pub tick: Duration,
    /// In remote mode, the remote the status branch is pushed to after
    /// each record (fetch and retry on a race, never a force-push).
    pub push_to: Option<String>,
    /// The trust domain of the mesh CA this reconciler runs, if it runs
    /// one: a commit whose Mesh names another is rejected.
    pub ca_trust_domain: Option<String>,
    /// How to authenticate to Prometheus (`metrics.source: prometheus`).
    pub prometheus_auth: Option<super::prometheus::PrometheusAuth>,
    /// After a start, how long proxies that come back already running a
    /// config keep it unchanged, so that every proxy has had time to
    /// register again: configs built from the first few registrations
    /// would leave out the endpoints of the others. The binary uses three
    /// heartbeat intervals, after which a silent proxy counts as gone.
    pub warm_up: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("opening the status branch: {0}")]
    Status(#[from] crate::status::RecordError),
}

/// The reconciler's loop state. Everything that must survive a restart is
/// in `state` and recorded in Git with each event.
pub struct Daemon {
    settings: DaemonSettings,
    registry: RegistryHandle,
    log: StatusLog,
    state: RecordedState,
    /// Whether the current wave of the rollout in flight was assigned.
    started: bool,
    /// When the rollout in flight started, for its wave clock.
    origin: Instant,
    versions: HashMap<String, Version>,
    /// Events not yet written (Git failed); retried every loop.
    pending: Vec<StatusEvent>,
    /// Recorded locally but not yet pushed (remote mode).
    unpushed: bool,
    metrics: Arc<Metrics>,
    /// When the rollout in flight was first seen, for commit-to-ACK time.
    seen_at: Option<Instant>,
    /// The analysis window of each canary Rollout (not persisted: after a
    /// restart a window starts afresh).
    windows: HashMap<String, Window>,
    /// Proxy metrics read for this pass, when a window needed them.
    scrapes: Option<super::scrape::Scrapes>,
    /// With Prometheus as the metrics source: the windows read for this
    /// pass, by Rollout, with their length (ms), or why they could not be.
    queried: HashMap<String, (u64, Result<WindowStats, String>)>,
    /// The client of the Prometheus server last configured.
    prometheus: Option<Prometheus>,
    /// Versions compiled with the canaries' current weights, by commit.
    weighted: HashMap<String, (CanaryWeights, Snapshots)>,
    /// Until then, proxies running a config keep it ([`DaemonSettings::warm_up`]).
    warm_until: Instant,
}

/// One canary's analysis window: the proxies' pages at its start.
struct Window {
    started: Instant,
    baseline: Option<BTreeMap<String, Scrape>>,
}

impl Daemon {
    /// Opens the status branch and resumes from its last recorded state.
    pub fn new(
        settings: DaemonSettings,
        registry: RegistryHandle,
        metrics: Arc<Metrics>,
    ) -> Result<Daemon, DaemonError> {
        let log = StatusLog::open(
            &settings.repo,
            &settings.status_branch,
            settings.identity.clone(),
        )?;
        if let Some(remote) = &settings.push_to {
            // Resume from the remote's status branch, not from whatever this
            // mirror last saw (a fresh data dir knows nothing).
            if let Err(e) = log.pull(remote) {
                tracing::warn!(error = %e, "cannot fetch the remote status branch; resuming from the local one");
            }
        }
        let state = match log.latest()? {
            Some((_, _, json)) => serde_json::from_value(json).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "status branch state unreadable; starting fresh");
                RecordedState::default()
            }),
            None => RecordedState::default(),
        };
        let now = Instant::now();
        // A rollout resumes at its recorded wave, whose clock restarts now.
        let origin = state.rollout.as_ref().map_or(now, |r| {
            now.checked_sub(Duration::from_millis(r.wave_started_ms))
                .unwrap_or(now)
        });
        let warm_until = now + settings.warm_up;
        Ok(Daemon {
            warm_until,
            started: state.rollout.is_some(),
            settings,
            registry,
            log,
            state,
            origin,
            versions: HashMap::new(),
            pending: Vec::new(),
            unpushed: false,
            metrics,
            seen_at: None,
            windows: HashMap::new(),
            scrapes: None,
            queried: HashMap::new(),
            prometheus: None,
            weighted: HashMap::new(),
        })
    }

    pub fn state(&self) -> &RecordedState {
        &self.state
    }

    /// Runs until `shutdown` resolves. `tips` carries the branch tip (from a
    /// watcher); the loop also wakes on proxy changes and every tick.
    pub async fn run(
        mut self,
        mut tips: watch::Receiver<Option<String>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut changes = self.registry.changes();
        let mut tick = tokio::time::interval(self.settings.tick);
        tokio::pin!(shutdown);
        loop {
            let tip = tips.borrow_and_update().clone();
            let admins = self.scrape_due(Instant::now());
            self.scrapes = if admins.is_empty() {
                None
            } else {
                Some(super::scrape::scrape_all(admins, Duration::from_secs(2)).await)
            };
            let due = self.queries_due(Instant::now());
            self.queried = self.query_prometheus(due).await;
            self.reconcile(tip.as_deref(), Instant::now());
            tokio::select! {
                _ = &mut shutdown => return,
                r = tips.changed() => if r.is_err() { return },
                _ = changes.changed() => {}
                _ = tick.tick() => {}
            }
        }
    }

    /// One pass of the loop. Idempotent: the same tip and the same proxy
    /// reports lead to the same assignments and no new record.
    pub fn reconcile(&mut self, tip: Option<&str>, now: Instant) {
        let started = Instant::now();
        self.registry.expire();
        if let Some(tip) = tip
            && !self.state.is_settled(tip)
        {
            self.metrics.commits_seen.inc();
            self.consider(tip, now);
        }
        self.advance(now);
        self.canaries(now);
        self.assign_all(now);
        self.flush();
        let running: Vec<String> = self
            .registry
            .snapshot()
            .into_iter()
            .map(|p| p.running.map_or_else(|| "none".to_string(), |r| r.version))
            .collect();
        self.metrics.set_versions(&running);
        self.metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// A commit not seen before: lint and compile it, then start rolling it
    /// out (superseding a rollout in flight), or record why not.
    fn consider(&mut self, commit: &str, now: Instant) {
        let version = match self.load(commit) {
            Ok(v) => v,
            Err((stage, diagnostics)) => {
                let errors = diagnostics.len() as u32;
                tracing::warn!(commit, stage, errors, "commit rejected");
                self.metrics.rejections.inc();
                self.state.reject(commit);
                self.pending.push(StatusEvent::Rejected {
                    source: commit.to_string(),
                    stage: stage.to_string(),
                    errors,
                    diagnostics,
                    kept: self.state.last_good.clone(),
                });
                return;
            }
        };
        let proxies: BTreeMap<String, String> = self
            .registry
            .snapshot()
            .into_iter()
            .map(|p| (p.id, p.service))
            .collect();
        let last_good = self.state.last_good.clone();
        let mut targets = changed_proxies(
            &proxies,
            last_good.as_deref().and_then(|c| self.versions.get(c)),
            &version,
        );
        if let Some(old) = self.state.rollout.take() {
            let plan = wave_plan(&version.rollout.waves, old.targets.len());
            self.pending.push(StatusEvent::Superseded {
                source: old.version.clone(),
                by: commit.to_string(),
                wave: old.wave as u32 + 1,
                waves: plan.len() as u32,
            });
            // Proxies the old rollout reached must move again.
            targets.extend(old.targets.iter().cloned());
        }
        tracing::info!(commit, targets = targets.len(), "rolling out");
        self.state.rollout = Some(waves::begin(
            commit,
            last_good.as_deref().unwrap_or("none"),
            targets,
        ));
        self.started = false;
        self.origin = now;
        self.seen_at = Some(now);
        self.versions.insert(commit.to_string(), version);
    }

    fn load(&mut self, commit: &str) -> Result<Version, (&'static str, Vec<String>)> {
        let (files, resolved) = source::read_rev(&self.settings.repo, commit)
            .map_err(|e| ("read", vec![e.to_string()]))?;
        let result = lint(&files);
        if result.errors() > 0 {
            let lines = result
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| {
                    format!(
                        "{}:{}:{}: {}[{}] {}",
                        d.file,
                        d.span.line,
                        d.span.column,
                        d.severity.as_str(),
                        d.code,
                        d.message
                    )
                })
                .collect();
            return Err(("lint", lines));
        }
        if let Some(ca_domain) = &self.settings.ca_trust_domain
            && let Some(why) = trust_domain_mismatch(&result.policies.trust_domain(), ca_domain)
        {
            return Err(("trust-domain", vec![why]));
        }
        let defaults = result
            .policies
            .meshes
            .first()
            .map(|m| m.value.spec.rollout.clone())
            .unwrap_or_default();
        let rollout = super::overrides::apply(&resolved.message, &defaults)
            .map_err(|e| ("overrides", vec![e.to_string()]))?;
        let snapshots = compile(&result.policies, commit, &CanaryWeights::new());
        // Lint should have caught anything a proxy would refuse; if a
        // compiled config still fails the proxies' own validation, refuse
        // the commit here rather than roll out a certain NACK.
        let refused: Vec<String> = snapshots
            .iter()
            .filter_map(|(service, config)| {
                config.validate().err().map(|e| format!("{service}: {e}"))
            })
            .collect();
        if !refused.is_empty() {
            return Err(("compile", refused));
        }
        Ok(Version {
            commit: commit.to_string(),
            snapshots,
            rollout,
            policies: Arc::new(result.policies),
        })
    }

    /// The version of a commit already considered (compiling it again after
    /// a restart, from Git).
    fn version(&mut self, commit: &str) -> Option<&Version> {
        if commit == "none" {
            return None;
        }
        if !self.versions.contains_key(commit) {
            let v = self.load(commit).ok()?;
            self.versions.insert(commit.to_string(), v);
        }
        self.versions.get(commit)
    }

    fn reports(&self) -> BTreeMap<String, ProxyReport> {
        self.registry
            .snapshot()
            .into_iter()
            .map(|p| {
                let (acked, nacked) = match &p.last_ack {
                    Some(a) if a.ack.accepted => (Some(a.ack.version.clone()), None),
                    Some(a) => (
                        p.running.as_ref().map(|r| r.version.clone()),
                        Some((
                            a.ack.version.clone(),
                            a.ack.reason.clone().unwrap_or_default(),
                        )),
                    ),
                    None => (p.running.as_ref().map(|r| r.version.clone()), None),
                };
                let report = ProxyReport {
                    id: p.id.clone(),
                    service: p.service.clone(),
                    acked,
                    nacked,
                    healthy: p.heard.then_some(p.healthy),
                };
                (p.id, report)
            })
            .collect()
    }

    /// Takes the next step of the rollout in flight.
    fn advance(&mut self, now: Instant) {
        let Some(progress) = self.state.rollout.clone() else {
            return;
        };
        let Some(settings) = self.version(&progress.version).map(|v| v.rollout.clone()) else {
            // Compiled before and now unreadable (history rewritten?):
            // give up on it rather than loop.
            self.state.rollout = None;
            self.state.revert(&progress.version);
            return;
        };
        let now_ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        let reports = self.reports();
        let waves_total = wave_plan(&settings.waves, progress.targets.len()).len() as u32;
        match waves::decide(&progress, self.started, &reports, &settings, now_ms) {
            Step::Wait(p) => self.state.rollout = Some(p),
            Step::StartWave {
                progress: p,
                proxies,
            } => {
                // Starting wave k means wave k-1 is ACKed and healthy.
                if p.wave > 0 {
                    self.pending.push(self.wave_event(&progress, waves_total));
                }
                tracing::info!(version = %p.version, wave = p.wave + 1, proxies = proxies.len(), "wave starts");
                self.state.rollout = Some(p);
                self.started = true;
            }
            Step::Complete { version } => {
                if !progress.targets.is_empty() {
                    self.pending.push(self.wave_event(&progress, waves_total));
                }
                let services = self.changed_services(&progress);
                tracing::info!(%version, "applied");
                self.metrics.applied.inc();
                if let Some(seen) = self.seen_at.take() {
                    self.metrics
                        .commit_to_last_ack_seconds
                        .observe(now.saturating_duration_since(seen).as_secs_f64());
                }
                self.pending.push(StatusEvent::Applied {
                    source: version.clone(),
                    services,
                    proxies: progress.targets.len() as u32,
                });
                self.state.last_good = Some(version);
                self.state.rollout = None;
                self.started = false;
            }
            Step::Revert {
                progress: p,
                proxies,
                reason,
            } => {
                tracing::warn!(version = %p.version, %reason, "reverting");
                self.metrics.reverts.inc();
                self.seen_at = None;
                let reason = match reason {
                    Revert::Nack { proxy, reason } => RevertReason::Nack {
                        proxy,
                        message: reason,
                    },
                    Revert::Unhealthy { proxy } => RevertReason::Unhealthy { proxy },
                    Revert::Deadline { .. } => RevertReason::ProgressDeadline {
                        deadline_ms: settings.progress_deadline.as_millis(),
                    },
                };
                self.pending.push(StatusEvent::Reverted {
                    source: p.version.clone(),
                    reason,
                    to: self.state.last_good.clone(),
                    proxies,
                });
                self.state.revert(&p.version);
                self.state.rollout = None;
                self.started = false;
            }
        }
    }

    fn wave_event(&self, progress: &waves::Progress, waves_total: u32) -> StatusEvent {
        let settings = self
            .versions
            .get(&progress.version)
            .map(|v| v.rollout.clone())
            .unwrap_or_default();
        let plan = wave_plan(&settings.waves, progress.targets.len());
        let size = plan
            .get(progress.wave)
            .copied()
            .unwrap_or(progress.targets.len());
        let proxies = progress.targets[..size.min(progress.targets.len())].to_vec();
        let snapshot = self.registry.snapshot();
        let mut services: Vec<String> = snapshot
            .iter()
            .filter(|p| proxies.contains(&p.id))
            .map(|p| p.service.clone())
            .collect();
        services.sort();
        services.dedup();
        StatusEvent::Wave {
            source: progress.version.clone(),
            wave: progress.wave as u32 + 1,
            waves: waves_total,
            proxies,
            services,
        }
    }

    fn changed_services(&self, progress: &waves::Progress) -> Vec<String> {
        let new = self.versions.get(&progress.version);
        let old = self.versions.get(&progress.last_good);
        let mut names: Vec<String> = new
            .map(|v| {
                v.snapshots
                    .iter()
                    .filter(|(name, config)| {
                        old.and_then(|o| o.snapshots.get(*name)).map(|c| c.digest())
                            != Some(config.digest())
                    })
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Gives every registered proxy the config it should run now; during
    /// the warm-up, only those running none.
    fn assign_all(&mut self, now: Instant) {
        let warming = now < self.warm_until;
        let proxies = self.registry.snapshot();
        let instances: Vec<Instance> = proxies
            .iter()
            .map(|p| Instance {
                service: p.service.clone(),
                address: p.address.clone(),
                labels: p.labels.clone(),
                healthy: p.healthy,
            })
            .collect();
        let settings = self
            .state
            .rollout
            .as_ref()
            .and_then(|r| self.versions.get(&r.version))
            .map(|v| v.rollout.clone())
            .unwrap_or_default();
        let commits: Vec<Option<String>> = proxies
            .iter()
            .map(|p| version_for(&p.id, &self.state, self.started, &settings).map(str::to_string))
            .collect();
        let weights = self.canary_weights();
        for commit in commits.iter().flatten() {
            // Loads (from Git) a version compiled before a restart, and
            // compiles it with the canaries' weights when they moved.
            let Some(policies) = self.version(commit).map(|v| v.policies.clone()) else {
                continue;
            };
            if weights.is_empty() {
                continue;
            }
            let stale = self.weighted.get(commit).is_none_or(|(w, _)| *w != weights);
            if stale {
                let snapshots = compile(&policies, commit, &weights);
                self.weighted
                    .insert(commit.clone(), (weights.clone(), snapshots));
            }
        }
        // Proxies of one service on one version share their config: build
        // it (instances merged, digest computed) once per pass.
        let mut built: HashMap<(&str, Option<&str>), ConfigUpdate> = HashMap::new();
        for (p, commit) in proxies.iter().zip(&commits) {
            if warming && p.running.is_some() {
                continue;
            }
            let update = built
                .entry((p.service.as_str(), commit.as_deref()))
                .or_insert_with(|| {
                    let snapshots = commit.as_deref().and_then(|c| {
                        if weights.is_empty() {
                            self.versions.get(c).map(|v| &v.snapshots)
                        } else {
                            self.weighted.get(c).map(|(_, s)| s)
                        }
                    });
                    config_for(&p.service, commit.as_deref().zip(snapshots), &instances)
                })
                .clone();
            if let Err(e) = self.registry.assign(&p.id, update) {
                tracing::debug!(proxy = %p.id, error = %e, "proxy left before its assignment");
            }
        }
    }

    /// Each canary Rollout's weight now (absent: 0%).
    fn canary_weights(&self) -> CanaryWeights {
        self.state
            .canaries
            .iter()
            .map(|(name, c)| (name.clone(), c.weight))
            .collect()
    }

    /// The Rollouts of the version every proxy runs, with that version.
    fn live_rollouts(&self) -> Vec<(String, RolloutSpec)> {
        let Some(v) = self
            .state
            .last_good
            .as_ref()
            .and_then(|c| self.versions.get(c))
        else {
            return Vec::new();
        };
        v.policies
            .rollouts
            .iter()
            .map(|r| (r.value.metadata.name.clone(), r.value.spec.clone()))
            .collect()
    }

    /// The proxies to read metrics from when a canary window starts or
    /// ends now (none when no window needs them).
    fn scrape_due(&self, now: Instant) -> Vec<(String, String)> {
        if self.metrics_source().source == MetricsSourceKind::Prometheus {
            return Vec::new();
        }
        let due = self.live_rollouts().iter().any(|(name, spec)| {
            let running = self.state.canaries.get(name).is_none_or(|c| {
                matches!(c.status, CanaryStatus::Progressing | CanaryStatus::Paused)
            });
            running
                && self.windows.get(name).is_none_or(|w| {
                    w.baseline.is_none()
                        || now.saturating_duration_since(w.started)
                            >= spec.analysis.interval.to_std()
                })
        });
        if !due {
            return Vec::new();
        }
        self.registry
            .snapshot()
            .into_iter()
            .filter_map(|p| p.admin.map(|admin| (p.id, admin)))
            .collect()
    }

    /// Where canary analysis reads metrics: the live version's `Mesh`.
    fn metrics_source(&self) -> MetricsSource {
        self.state
            .last_good
            .as_ref()
            .and_then(|c| self.versions.get(c))
            .and_then(|v| v.policies.meshes.first())
            .map(|m| m.value.spec.metrics.clone())
            .unwrap_or_default()
    }

    /// With Prometheus as the metrics source: the windows that end now,
    /// by Rollout (a window opens when its Rollout's weight is set, in
    /// [`Daemon::canaries`]).
    fn queries_due(&self, now: Instant) -> Vec<(String, WindowQuery)> {
        if self.metrics_source().source != MetricsSourceKind::Prometheus {
            return Vec::new();
        }
        self.live_rollouts()
            .into_iter()
            .filter(|(name, _)| {
                self.state.canaries.get(name).is_some_and(|c| {
                    matches!(c.status, CanaryStatus::Progressing | CanaryStatus::Paused)
                })
            })
            .filter_map(|(name, spec)| {
                let elapsed = now.saturating_duration_since(self.windows.get(&name)?.started);
                (elapsed >= spec.analysis.interval.to_std()).then(|| {
                    let query = WindowQuery {
                        service: spec.service.clone(),
                        stable: spec.stable_subset.clone(),
                        canary: spec.canary_subset.clone(),
                        window_ms: elapsed.as_millis() as u64,
                    };
                    (name, query)
                })
            })
            .collect()
    }

    /// Reads each due window from Prometheus; a failure is kept as the
    /// reason to hold.
    async fn query_prometheus(
        &mut self,
        due: Vec<(String, WindowQuery)>,
    ) -> HashMap<String, (u64, Result<WindowStats, String>)> {
        if due.is_empty() {
            return HashMap::new();
        }
        let url = self.metrics_source().prometheus_url.unwrap_or_default();
        if self
            .prometheus
            .as_ref()
            .is_none_or(|p| p.base() != url.trim_end_matches('/'))
        {
            self.prometheus = Prometheus::new(
                &url,
                PROMETHEUS_TIMEOUT,
                self.settings.prometheus_auth.clone(),
            )
            .inspect_err(|e| tracing::warn!(error = %e, "no Prometheus client"))
            .ok();
        }
        let at = std::time::SystemTime::now();
        let mut out = HashMap::new();
        for (name, query) in due {
            let result = match &self.prometheus {
                Some(p) => p.window(&query, at).await.map_err(|e| e.to_string()),
                None => Err(format!("Prometheus at {url}: no client")),
            };
            if let Err(e) = &result {
                tracing::warn!(rollout = %name, error = %e, "cannot read the canary window from Prometheus");
            }
            out.insert(name, (query.window_ms, result));
        }
        out
    }

    /// Moves every canary Rollout of the live version one step: start it,
    /// open or close its analysis window, and record each decision.
    fn canaries(&mut self, now: Instant) {
        let Some(source) = self.state.last_good.clone() else {
            return;
        };
        // After a restart the live version is read from Git again first:
        // until it is, the recorded canary states must not be dropped.
        if self.version(&source).is_none() {
            return;
        }
        let rollouts = self.live_rollouts();
        self.state
            .canaries
            .retain(|name, _| rollouts.iter().any(|(n, _)| n == name));
        self.state
            .canary_decisions
            .retain(|name, _| rollouts.iter().any(|(n, _)| n == name));
        self.windows
            .retain(|name, _| rollouts.iter().any(|(n, _)| n == name));
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for (name, spec) in rollouts {
            let Some(state) = self.state.canaries.get(&name).cloned() else {
                if let Some(why) = self.empty_subset(&source, &spec)
                    && !spec.abort
                {
                    // Not started: no traffic moves to a subset that
                    // cannot take it. Recorded once.
                    let key = decision_key(canary::Action::Hold, 0, &why);
                    if self.state.canary_decisions.get(&name) != Some(&key) {
                        self.state.canary_decisions.insert(name.clone(), key);
                        let (_, mut outcome) = canary::start(&name, &spec, wall_ms);
                        outcome.action = canary::Action::Hold;
                        outcome.to_weight = 0;
                        outcome.reason = Some(format!("not started: {why}"));
                        self.pending.push(canary::to_event(
                            &source,
                            &spec,
                            &outcome,
                            &Stats::default(),
                            &Stats::default(),
                            0,
                        ));
                    }
                    continue;
                }
                let (state, outcome) = canary::start(&name, &spec, wall_ms);
                tracing::info!(rollout = %name, weight = state.weight, "canary starts");
                self.pending.push(canary::to_event(
                    &source,
                    &spec,
                    &outcome,
                    &Stats::default(),
                    &Stats::default(),
                    0,
                ));
                self.state.canaries.insert(name, state);
                continue;
            };
            let (mut stable, mut canary_stats, mut window_ms) =
                (Stats::default(), Stats::default(), 0);
            let mut verdict = None;
            let empty = self.empty_subset(&source, &spec);
            if self.metrics_source().source == MetricsSourceKind::Prometheus {
                // The window opens with the Rollout's weight, and closes
                // with the answer read from Prometheus for this pass.
                let window = self.windows.entry(name.clone()).or_insert(Window {
                    started: now,
                    baseline: None,
                });
                if let Some((ms, result)) = self.queried.remove(&name) {
                    window_ms = ms;
                    window.started = now;
                    verdict = Some(match result {
                        Ok(w) => {
                            let v = canary::evaluate(&w.stable, &w.canary, &spec.analysis);
                            (stable, canary_stats) = (w.stable, w.canary);
                            let url = self.metrics_source().prometheus_url.unwrap_or_default();
                            canary::from_prometheus(v, &url)
                        }
                        Err(why) => canary::Verdict::NoData { reason: why },
                    });
                }
            } else if let Some(scrapes) = self.scrapes.as_ref().map(|s| &s.pages) {
                let window = self.windows.entry(name.clone()).or_insert(Window {
                    started: now,
                    baseline: None,
                });
                let elapsed = now.saturating_duration_since(window.started);
                match &window.baseline {
                    None => {
                        window.baseline = Some(scrapes.clone());
                        window.started = now;
                    }
                    Some(base) if elapsed >= spec.analysis.interval.to_std() => {
                        let s = window_stats(base, scrapes, &spec.service, &spec.stable_subset);
                        let c = window_stats(base, scrapes, &spec.service, &spec.canary_subset);
                        // No proxy read at both ends (a sidecar not up yet
                        // at the start) makes no window: a new one starts
                        // from this reading, and nothing is decided on it.
                        if !unanchored(&s, &c) {
                            let unreadable = self
                                .scrapes
                                .as_ref()
                                .map(|s| s.unreadable.clone())
                                .unwrap_or_default();
                            verdict = Some(canary::with_unreadable(
                                canary::evaluate(&s, &c, &spec.analysis),
                                &unreadable,
                            ));
                            (stable, canary_stats) = (s, c);
                            window_ms = elapsed.as_millis() as u64;
                        }
                        window.baseline = Some(scrapes.clone());
                        window.started = now;
                    }
                    Some(_) => {}
                }
            }
            // A subset without instances gives no evidence worth the name:
            // whatever the window says, hold (never promote).
            if let (Some(why), Some(_)) = (&empty, &verdict) {
                verdict = Some(canary::Verdict::NoData {
                    reason: why.clone(),
                });
            }
            let (next, outcome) = canary::decide(&state, &spec, verdict.as_ref(), wall_ms);
            if let Some(outcome) = outcome {
                tracing::info!(rollout = %name, from = outcome.from_weight, to = outcome.to_weight, action = ?outcome.action, "canary decision");
                if outcome.from_weight != outcome.to_weight {
                    // The next window starts once the new weights apply.
                    self.windows.remove(&name);
                }
                // A hold is recorded once per step: a canary waiting for
                // traffic must not add a commit every window.
                let kind = outcome
                    .reason
                    .as_deref()
                    .and_then(|r| r.split(':').next())
                    .unwrap_or("");
                let key = decision_key(outcome.action, outcome.step, kind);
                let repeat = outcome.action == canary::Action::Hold
                    && self.state.canary_decisions.get(&name) == Some(&key);
                self.state.canary_decisions.insert(name.clone(), key);
                if repeat {
                    self.state.canaries.insert(name, next);
                    continue;
                }
                self.pending.push(canary::to_event(
                    &source,
                    &spec,
                    &outcome,
                    &stable,
                    &canary_stats,
                    window_ms,
                ));
                if outcome.action == canary::Action::Complete
                    && spec.on_success.write_back
                    && let Some(event) = self.write_back(&source, &name, &spec, next.weight)
                {
                    self.pending.push(event);
                }
            }
            self.state.canaries.insert(name, next);
        }
    }

    /// Why a Rollout cannot be judged now: its stable or canary subset has
    /// no registered instance (`None` when both have one).
    fn empty_subset(&self, source: &str, spec: &RolloutSpec) -> Option<String> {
        let policies = self.versions.get(source)?.policies.clone();
        let service = policies
            .services
            .iter()
            .find(|s| s.value.metadata.name == spec.service)?;
        let proxies = self.registry.snapshot();
        let mut missing = Vec::new();
        for name in [&spec.stable_subset, &spec.canary_subset] {
            let Some(subset) = service.value.spec.subsets.iter().find(|s| &s.name == name) else {
                missing.push(format!("subset {name} of {} is not defined", spec.service));
                continue;
            };
            let instances = proxies
                .iter()
                .filter(|p| {
                    p.service == spec.service
                        && subset
                            .labels
                            .iter()
                            .all(|(k, v)| p.labels.get(k) == Some(v))
                })
                .count()
                + service
                    .value
                    .spec
                    .endpoints
                    .iter()
                    .filter(|e| {
                        subset
                            .labels
                            .iter()
                            .all(|(k, v)| e.labels.get(k) == Some(v))
                    })
                    .count();
            if instances == 0 {
                let labels: Vec<String> = subset
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                missing.push(format!(
                    "subset {name} of {} has no instances ({})",
                    spec.service,
                    labels.join(",")
                ));
            }
        }
        (!missing.is_empty()).then(|| missing.join("; "))
    }

    /// Writes a completed Rollout's final weights into its route file on
    /// the desired-state branch (and pushes it in remote mode), returning
    /// the record of what happened. `None` for a Rollout without a route:
    /// its split lives in the Rollout alone, with nothing in Git to edit.
    /// The mesh keeps the final weights whatever happens here; the commit
    /// changes nothing for the proxies (the Rollout owns that split).
    fn write_back(
        &self,
        source: &str,
        rollout: &str,
        spec: &RolloutSpec,
        weight: u32,
    ) -> Option<StatusEvent> {
        let route_name = spec.route.as_ref()?;
        let branch = self.settings.branch.clone();
        let route = self.versions.get(source).and_then(|v| {
            v.policies
                .routes
                .iter()
                .find(|r| &r.value.metadata.name == route_name)
                .cloned()
        });
        let path = route.as_ref().map_or_else(String::new, |r| r.file.clone());
        let event = |commit: Option<String>, refused: Option<String>| StatusEvent::WriteBack {
            source: source.to_string(),
            rollout: rollout.to_string(),
            service: spec.service.clone(),
            branch: branch.clone(),
            path: path.clone(),
            commit,
            refused,
        };
        let result = (|| -> Result<Option<String>, String> {
            let route = route.as_ref().ok_or_else(|| {
                canary::WriteBackError::NoSuchRoute(route_name.clone()).to_string()
            })?;
            let edits = canary::weight_edits(route, spec, weight).map_err(|e| e.to_string())?;
            if edits.is_empty() {
                return Ok(None);
            }
            let (files, _) =
                source::read_rev(&self.settings.repo, source).map_err(|e| e.to_string())?;
            let old = files
                .iter()
                .find(|f| f.path == route.file)
                .and_then(|f| match &f.content {
                    source::Content::Bytes(b) => String::from_utf8(b.clone()).ok(),
                    source::Content::TooLarge(_) => None,
                })
                .ok_or_else(|| format!("{} is not readable at {}", route.file, short(source)))?;
            let new = canary::apply_edits(&route.file, &old, &edits).map_err(|e| e.to_string())?;
            let message = format!(
                "{}: canary {} complete, final weights written back\n\n\
                 Rollout {rollout} completed at {weight}% (source {source}). The\n\
                 weights of route {route_name} now match the mesh; the reconciler\n\
                 made this commit and treats it as no change.\n\n\
                 Gitmesh-Rollout: {rollout}\nGitmesh-Write-Back: {}\n",
                spec.service,
                spec.canary_subset,
                short(source),
            );
            if self.settings.push_to.is_some() {
                // The mirror tracks the remote under refs/remotes/origin/:
                // write on top of what the remote has.
                self.log
                    .reset_branch(
                        &branch,
                        &format!("refs/remotes/{}/{branch}", crate::watch::REMOTE),
                    )
                    .map_err(|e| e.to_string())?;
            }
            let made = self
                .log
                .replace_desired(
                    &branch,
                    &route.file,
                    old.as_bytes(),
                    new.as_bytes(),
                    &message,
                )
                .map_err(|e| e.to_string())?;
            let id = match made {
                crate::status::WriteBack::Committed(id) => id,
                crate::status::WriteBack::Unchanged(_) => return Ok(None),
            };
            if let Some(remote) = &self.settings.push_to {
                self.log
                    .push(remote, &branch)
                    .map_err(|e| format!("commit {} made, but {e}", id.short()))?;
            }
            Ok(Some(id.to_string()))
        })();
        Some(match result {
            Ok(commit) => {
                tracing::info!(rollout, commit = ?commit, "final weights written back");
                event(commit, None)
            }
            Err(why) => {
                tracing::warn!(rollout, %why, "write-back refused; the mesh keeps the final weights");
                event(None, Some(why))
            }
        })
    }

    /// Writes pending events to the status branch, each with the state as
    /// it is now; keeps them for the next pass if Git fails.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            self.push();
            return;
        }
        let state = serde_json::to_value(&self.state).expect("state serializes");
        while let Some(event) = self.pending.first() {
            match self.log.record(event, &state) {
                Ok(id) => {
                    tracing::info!(commit = %id.short(), summary = %event.summary(), "recorded");
                    self.pending.remove(0);
                    self.unpushed = true;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record on the status branch; will retry");
                    return;
                }
            }
        }
        self.push();
    }

    /// Remote mode: publishes what was recorded. A failed push (the remote
    /// is down) is retried on the next pass; the commits stay local.
    fn push(&mut self) {
        let Some(remote) = &self.settings.push_to else {
            return;
        };
        if !self.unpushed {
            return;
        }
        match self.log.push(remote, &self.settings.status_branch) {
            Ok(report) => {
                tracing::debug!(tip = %report.tip.short(), "status branch pushed");
                self.unpushed = false;
            }
            Err(e) => tracing::warn!(error = %e, "cannot push the status branch; will retry"),
        }
    }
}

/// How a canary decision is remembered, to record a hold only once per
/// step and kind of reason.
fn decision_key(action: canary::Action, step: u32, kind: &str) -> String {
    format!("{action:?} {step} {kind}")
}
