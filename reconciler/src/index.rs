//! Lookups by name over a [`PolicySet`], built once per pass so that checks
//! and compilation stay linear in the size of the mesh (a 10,000-service
//! repo must not cost 10,000² string comparisons).

use std::collections::HashMap;

use crate::load::{Located, PolicySet};
use crate::policy::{HTTPRoute, Intentions, Rollout, Service};

pub struct Index<'a> {
    pub set: &'a PolicySet,
    services: HashMap<&'a str, &'a Located<Service>>,
    routes: HashMap<&'a str, &'a Located<HTTPRoute>>,
    /// Routes attached to each service, sorted by name, each once.
    routes_by_parent: HashMap<&'a str, Vec<&'a Located<HTTPRoute>>>,
    intentions_by_destination: HashMap<&'a str, &'a Located<Intentions>>,
    rollouts_by_service: HashMap<&'a str, &'a Located<Rollout>>,
}

impl<'a> Index<'a> {
    /// Indexes `set`. Where names repeat (a lint error), the first wins.
    pub fn new(set: &'a PolicySet) -> Self {
        let mut ix = Index {
            set,
            services: HashMap::with_capacity(set.services.len()),
            routes: HashMap::with_capacity(set.routes.len()),
            routes_by_parent: HashMap::new(),
            intentions_by_destination: HashMap::new(),
            rollouts_by_service: HashMap::new(),
        };
        for s in &set.services {
            ix.services.entry(&s.value.metadata.name).or_insert(s);
        }
        for r in &set.routes {
            ix.routes.entry(&r.value.metadata.name).or_insert(r);
            for parent in &r.value.spec.parent_refs {
                ix.routes_by_parent.entry(&parent.name).or_default().push(r);
            }
        }
        for routes in ix.routes_by_parent.values_mut() {
            routes.sort_by(|a, b| a.value.metadata.name.cmp(&b.value.metadata.name));
            routes.dedup_by(|a, b| a.value.metadata.name == b.value.metadata.name);
        }
        for i in &set.intentions {
            ix.intentions_by_destination
                .entry(&i.value.spec.destination)
                .or_insert(i);
        }
        for r in &set.rollouts {
            ix.rollouts_by_service
                .entry(&r.value.spec.service)
                .or_insert(r);
        }
        ix
    }

    pub fn service(&self, name: &str) -> Option<&'a Located<Service>> {
        self.services.get(name).copied()
    }

    pub fn route(&self, name: &str) -> Option<&'a Located<HTTPRoute>> {
        self.routes.get(name).copied()
    }

    pub fn routes_of(&self, service: &str) -> &[&'a Located<HTTPRoute>] {
        self.routes_by_parent
            .get(service)
            .map_or(&[], Vec::as_slice)
    }

    pub fn intentions_for(&self, destination: &str) -> Option<&'a Located<Intentions>> {
        self.intentions_by_destination.get(destination).copied()
    }

    pub fn rollout_of(&self, service: &str) -> Option<&'a Located<Rollout>> {
        self.rollouts_by_service.get(service).copied()
    }
}
