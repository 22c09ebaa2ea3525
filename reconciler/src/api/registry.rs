//! The proxies the reconciler knows: who registered, what each runs, what it
//! was assigned, its last ACK or NACK, and whether it still heartbeats.
//!
//! Pure: no clock (every method that needs the time takes `now`), no IO, no
//! locks. The HTTP side ([`super::server`]) wraps one [`Registry`] in a lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitmesh_proxy_config::api::{Ack, ConfigUpdate, Heartbeat, Registered, Registration, Running};
use rand::Rng;
use serde::Serialize;

/// How many heartbeat intervals may pass in silence before a proxy is gone.
pub const MISSED_HEARTBEATS: u32 = 3;

/// Why a registry call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("no proxy with id `{0}` is registered (register again, keeping the id)")]
    UnknownProxy(String),
    #[error("invalid registration: {0}")]
    InvalidRegistration(String),
}

/// The last ACK or NACK a proxy sent, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastAck {
    #[serde(flatten)]
    pub ack: Ack,
    #[serde(skip)]
    pub at: Instant,
}

/// One registered proxy, as the reconciler sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyView {
    pub id: String,
    pub service: String,
    /// `host:port` where peers reach this instance.
    pub address: String,
    /// Its admin listener (`/metrics`), when it said.
    pub admin: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// What the proxy last said it runs (registration, ACK or heartbeat).
    pub running: Option<Running>,
    /// What the reconciler wants it to run (shared: proxies of one service
    /// usually hold the same one, and snapshots clone cheaply).
    #[serde(skip)]
    pub assigned: Option<Arc<ConfigUpdate>>,
    /// The digest of `assigned`, for the status page.
    pub assigned_digest: Option<String>,
    pub last_ack: Option<LastAck>,
    /// Its own readiness, as its last heartbeat said. `false` until the
    /// first heartbeat.
    pub healthy: bool,
    /// Whether a heartbeat arrived since it registered: until then its
    /// health is unknown, not bad.
    #[serde(skip)]
    pub heard: bool,
    #[serde(skip)]
    pub last_heartbeat: Instant,
}

impl ProxyView {
    /// Runs what it was assigned (nothing assigned counts as converged).
    pub fn converged(&self) -> bool {
        match (&self.assigned, &self.running) {
            (None, _) => true,
            (Some(a), Some(r)) => a.digest == r.digest,
            (Some(_), None) => false,
        }
    }
}

/// The set of registered proxies.
#[derive(Debug)]
pub struct Registry {
    proxies: BTreeMap<String, ProxyView>,
    heartbeat_interval: Duration,
}

impl Registry {
    /// An empty registry telling proxies to heartbeat every
    /// `heartbeat_interval`.
    pub fn new(heartbeat_interval: Duration) -> Self {
        Registry {
            proxies: BTreeMap::new(),
            heartbeat_interval,
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// Adds a proxy, or refreshes it when it registers again with its `id`
    /// (after a reconciler restart, or its own reconnect): its assignment
    /// stays, the rest comes from the registration.
    pub fn register(
        &mut self,
        registration: Registration,
        now: Instant,
    ) -> Result<Registered, RegistryError> {
        check_registration(&registration)?;
        let id = match registration.id {
            Some(id) => id,
            None => self.fresh_id(&registration.service),
        };
        let entry = self.proxies.entry(id.clone()).or_insert_with(|| ProxyView {
            id: id.clone(),
            service: String::new(),
            address: String::new(),
            admin: None,
            labels: BTreeMap::new(),
            running: None,
            assigned: None,
            assigned_digest: None,
            last_ack: None,
            healthy: false,
            heard: false,
            last_heartbeat: now,
        });
        entry.service = registration.service;
        entry.address = registration.address;
        entry.admin = registration.admin;
        entry.labels = registration.labels;
        entry.running = registration.running;
        entry.last_heartbeat = now;
        Ok(Registered {
            id,
            heartbeat_interval_ms: u64::try_from(self.heartbeat_interval.as_millis())
                .unwrap_or(u64::MAX),
        })
    }

    /// Records an ACK (the proxy now runs `ack.digest`) or a NACK (it keeps
    /// what it ran). Counts as a sign of life.
    pub fn ack(&mut self, id: &str, ack: Ack, now: Instant) -> Result<(), RegistryError> {
        let p = self.entry(id)?;
        if ack.accepted {
            p.running = Some(Running {
                version: ack.version.clone(),
                digest: ack.digest.clone(),
            });
        }
        p.last_ack = Some(LastAck { ack, at: now });
        p.last_heartbeat = now;
        Ok(())
    }

    /// Records a heartbeat. Returns whether something the reconciler acts on
    /// (health, running config) changed.
    pub fn heartbeat(
        &mut self,
        id: &str,
        heartbeat: Heartbeat,
        now: Instant,
    ) -> Result<bool, RegistryError> {
        let p = self.entry(id)?;
        let changed = !p.heard
            || p.healthy != heartbeat.healthy
            || p.running.as_ref() != Some(&heartbeat.running);
        p.healthy = heartbeat.healthy;
        p.heard = true;
        p.running = Some(heartbeat.running);
        p.last_heartbeat = now;
        Ok(changed)
    }

    /// Sets what `id` should run. Returns whether the assigned digest
    /// changed (only then does a waiting long poll need waking).
    ///
    /// The digest is trusted here (hashing every config for every proxy
    /// would cost more than the rest of a rollout step): build updates with
    /// [`ConfigUpdate::new`]. A proxy checks it and NACKs a mismatch.
    pub fn assign(&mut self, id: &str, update: Arc<ConfigUpdate>) -> Result<bool, RegistryError> {
        let p = self.entry(id)?;
        let changed = p.assigned_digest.as_deref() != Some(update.digest.as_str());
        p.assigned_digest = Some(update.digest.clone());
        p.assigned = Some(update);
        Ok(changed)
    }

    /// Drops every proxy that missed [`MISSED_HEARTBEATS`] heartbeats and
    /// returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<ProxyView> {
        let limit = self.heartbeat_interval * MISSED_HEARTBEATS;
        let gone: Vec<String> = self
            .proxies
            .values()
            .filter(|p| now.saturating_duration_since(p.last_heartbeat) > limit)
            .map(|p| p.id.clone())
            .collect();
        gone.iter()
            .filter_map(|id| self.proxies.remove(id))
            .collect()
    }

    /// Every proxy, by id.
    pub fn proxies(&self) -> impl Iterator<Item = &ProxyView> {
        self.proxies.values()
    }

    pub fn get(&self, id: &str) -> Result<&ProxyView, RegistryError> {
        self.proxies
            .get(id)
            .ok_or_else(|| RegistryError::UnknownProxy(id.to_string()))
    }

    pub fn len(&self) -> usize {
        self.proxies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }

    fn entry(&mut self, id: &str) -> Result<&mut ProxyView, RegistryError> {
        self.proxies
            .get_mut(id)
            .ok_or_else(|| RegistryError::UnknownProxy(id.to_string()))
    }

    /// `<service>-<6 random lowercase letters and digits>`, unused so far.
    fn fresh_id(&self, service: &str) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        loop {
            let suffix: String = (0..6)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect();
            let id = format!("{service}-{suffix}");
            if !self.proxies.contains_key(&id) {
                return id;
            }
        }
    }
}

/// Whether `id` can travel in a URL path as is: ASCII letters, digits, `.`,
/// `_` and `-`, at most 128 of them.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_registration(r: &Registration) -> Result<(), RegistryError> {
    let bad = |why: String| Err(RegistryError::InvalidRegistration(why));
    if r.service.is_empty() || !is_valid_id(&r.service) {
        return bad(format!(
            "service `{}` must be letters, digits, `.`, `_` or `-`",
            r.service
        ));
    }
    if r.address.is_empty() || !r.address.contains(':') {
        return bad(format!("address `{}` must be host:port", r.address));
    }
    if let Some(id) = &r.id
        && !is_valid_id(id)
    {
        return bad(format!(
            "id `{id}` must be 1 to 128 letters, digits, `.`, `_` or `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitmesh_proxy_config::ProxyConfig;

    fn registration(service: &str, id: Option<&str>) -> Registration {
        Registration {
            admin: None,
            id: id.map(str::to_string),
            service: service.to_string(),
            address: "127.0.0.1:15006".to_string(),
            labels: BTreeMap::from([("version".to_string(), "v1".to_string())]),
            running: None,
        }
    }

    fn config(version: &str, service: &str) -> ProxyConfig {
        ProxyConfig::from_json(
            format!(r#"{{"version":"{version}","service":"{service}"}}"#).as_bytes(),
        )
        .unwrap()
    }

    fn update(config: ProxyConfig) -> Arc<ConfigUpdate> {
        Arc::new(ConfigUpdate::new(config))
    }

    fn second(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn register_generates_distinct_ids_named_after_the_service() {
        let mut r = Registry::new(second(5));
        let t = Instant::now();
        let a = r.register(registration("reviews", None), t).unwrap();
        let b = r.register(registration("reviews", None), t).unwrap();
        assert!(a.id.starts_with("reviews-") && a.id.len() == "reviews-".len() + 6);
        assert_ne!(a.id, b.id);
        assert!(is_valid_id(&a.id));
        assert_eq!(a.heartbeat_interval_ms, 5000);
        assert_eq!(r.len(), 2);
        let p = r.get(&a.id).unwrap();
        assert_eq!(p.labels["version"], "v1");
        assert!(!p.healthy, "unhealthy until the first heartbeat");
    }

    #[test]
    fn re_registering_keeps_the_id_and_the_assignment() {
        let mut r = Registry::new(second(5));
        let t = Instant::now();
        let id = r.register(registration("a", None), t).unwrap().id;
        let update = update(config("v1", "a"));
        assert!(r.assign(&id, update.clone()).unwrap());
        let mut again = registration("a", Some(&id));
        again.address = "10.0.0.9:15006".into();
        again.running = Some(Running::of(&config("v0", "a")));
        assert_eq!(r.register(again, t).unwrap().id, id);
        let p = r.get(&id).unwrap();
        assert_eq!(p.address, "10.0.0.9:15006");
        assert_eq!(p.assigned, Some(update));
        assert_eq!(p.running.as_ref().unwrap().version, "v0");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_registration_with_an_unknown_id_is_adopted() {
        let mut r = Registry::new(second(5));
        let got = r
            .register(registration("a", Some("a-kept01")), Instant::now())
            .unwrap();
        assert_eq!(got.id, "a-kept01");
        assert!(r.get("a-kept01").is_ok());
    }

    #[test]
    fn bad_registrations_are_refused_with_the_reason() {
        let mut r = Registry::new(second(5));
        let t = Instant::now();
        let err = r
            .register(registration("a", Some("a/../b")), t)
            .unwrap_err();
        assert!(matches!(err, RegistryError::InvalidRegistration(ref m) if m.contains("a/../b")));
        let err = r.register(registration("", None), t).unwrap_err();
        assert!(err.to_string().contains("service"));
        let mut no_port = registration("a", None);
        no_port.address = "localhost".into();
        assert!(
            r.register(no_port, t)
                .unwrap_err()
                .to_string()
                .contains("host:port")
        );
        assert!(r.is_empty());
    }

    #[test]
    fn ack_moves_running_and_nack_keeps_it() {
        let mut r = Registry::new(second(5));
        let t = Instant::now();
        let id = r.register(registration("a", None), t).unwrap().id;
        let v1 = update(config("v1", "a"));
        r.assign(&id, v1.clone()).unwrap();
        assert!(!r.get(&id).unwrap().converged());
        r.ack(
            &id,
            Ack {
                version: "v1".into(),
                digest: v1.digest.clone(),
                accepted: true,
                reason: None,
            },
            t,
        )
        .unwrap();
        assert!(r.get(&id).unwrap().converged());
        let nack = Ack {
            version: "v2".into(),
            digest: "sha256:bad".into(),
            accepted: false,
            reason: Some("upstreams[0]: unknown".into()),
        };
        r.ack(&id, nack.clone(), t + second(1)).unwrap();
        let p = r.get(&id).unwrap();
        assert_eq!(p.running.as_ref().unwrap().digest, v1.digest);
        assert_eq!(p.last_ack.as_ref().unwrap().ack, nack);
        assert_eq!(p.last_ack.as_ref().unwrap().at, t + second(1));
    }

    #[test]
    fn heartbeat_reports_changes_only() {
        let mut r = Registry::new(second(5));
        let t = Instant::now();
        let id = r.register(registration("a", None), t).unwrap().id;
        let hb = Heartbeat {
            healthy: true,
            running: Running::of(&config("v1", "a")),
        };
        assert!(r.heartbeat(&id, hb.clone(), t).unwrap());
        assert!(!r.heartbeat(&id, hb.clone(), t + second(5)).unwrap());
        assert!(
            r.heartbeat(
                &id,
                Heartbeat {
                    healthy: false,
                    ..hb
                },
                t + second(10)
            )
            .unwrap()
        );
        assert!(!r.get(&id).unwrap().healthy);
        assert_eq!(r.get(&id).unwrap().last_heartbeat, t + second(10));
    }

    #[test]
    fn assign_reports_a_digest_change() {
        let mut r = Registry::new(second(5));
        let id = r
            .register(registration("a", None), Instant::now())
            .unwrap()
            .id;
        let v1 = update(config("v1", "a"));
        assert!(r.assign(&id, v1.clone()).unwrap());
        assert!(!r.assign(&id, v1).unwrap(), "same digest: nothing to wake");
        // Same content, new version: same digest, not a change, but the
        // newer version is what a proxy asking now gets.
        assert!(!r.assign(&id, update(config("v2", "a"))).unwrap());
        let assigned = r.get(&id).unwrap().assigned.clone().unwrap();
        assert_eq!(assigned.config.version, "v2");
        assert!(r.assign(&id, update(config("v3", "b"))).unwrap());
    }

    #[test]
    fn unknown_ids_are_typed_errors() {
        let mut r = Registry::new(second(5));
        let t = Instant::now();
        let unknown = RegistryError::UnknownProxy("nope".into());
        assert_eq!(r.get("nope").unwrap_err(), unknown);
        assert_eq!(
            r.assign("nope", update(config("v1", "a"))).unwrap_err(),
            unknown
        );
        let hb = Heartbeat {
            healthy: true,
            running: Running::of(&config("v1", "a")),
        };
        assert_eq!(r.heartbeat("nope", hb, t).unwrap_err(), unknown);
        let ack = Ack {
            version: "v".into(),
            digest: "d".into(),
            accepted: true,
            reason: None,
        };
        assert_eq!(r.ack("nope", ack, t).unwrap_err(), unknown);
        assert!(unknown.to_string().contains("register again"));
    }

    #[test]
    fn expire_drops_proxies_silent_for_three_intervals() {
        let mut r = Registry::new(second(5));
        let t = Instant::now();
        let quiet = r.register(registration("a", None), t).unwrap().id;
        let chatty = r.register(registration("a", None), t).unwrap().id;
        let hb = Heartbeat {
            healthy: true,
            running: Running::of(&config("v1", "a")),
        };
        r.heartbeat(&chatty, hb, t + second(10)).unwrap();
        assert!(
            r.expire(t + second(15)).is_empty(),
            "exactly 3 intervals is still alive"
        );
        let gone = r.expire(t + second(16));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].id, quiet);
        assert!(r.get(&quiet).is_err());
        assert_eq!(
            r.proxies().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            [chatty.as_str()]
        );
    }

    #[test]
    fn status_json_shows_the_assigned_digest_but_not_the_whole_config() {
        let mut r = Registry::new(second(5));
        let id = r
            .register(registration("a", None), Instant::now())
            .unwrap()
            .id;
        let v1 = update(config("v1", "a"));
        r.assign(&id, v1.clone()).unwrap();
        let json = serde_json::to_value(r.get(&id).unwrap()).unwrap();
        assert_eq!(json["assignedDigest"], v1.digest.as_str());
        assert_eq!(json["service"], "a");
        assert_eq!(json["healthy"], false);
        assert!(json.get("assigned").is_none() && json.get("lastHeartbeat").is_none());
    }
}
