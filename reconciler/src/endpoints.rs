//! Instances that register at run time become endpoints of every config
//! that calls their service. Endpoints are not policy: they reach every
//! proxy at once, whatever wave of a policy rollout it is in, so this runs
//! on each proxy's assigned config just before it is sent.

use std::collections::BTreeMap;

use gitmesh_proxy_config::{Endpoint, ProxyConfig, SubsetSelector};

/// A registered instance of a service (its sidecar's inbound address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub service: String,
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub healthy: bool,
}

/// `config` with the instances of each of its upstreams added to the
/// endpoints the policy declares statically (a static endpoint wins over an
/// instance at the same address). Endpoints are sorted by address, so the
/// result (and its digest) does not depend on registration order.
pub fn with_instances(config: &ProxyConfig, instances: &[Instance]) -> ProxyConfig {
    let mut by_service: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    for i in instances {
        by_service.entry(&i.service).or_default().push(i);
    }
    let mut out = config.clone();
    for upstream in &mut out.upstreams {
        let Some(found) = by_service.get(upstream.name.as_str()) else {
            continue;
        };
        for i in found {
            if upstream.endpoints.iter().any(|e| e.address == i.address) {
                continue;
            }
            upstream.endpoints.push(Endpoint {
                address: i.address.clone(),
                subset: SubsetSelector::find(&upstream.subsets, &i.labels).map(|s| s.name.clone()),
                weight: 1,
                healthy: i.healthy,
                labels: i.labels.clone(),
            });
        }
        upstream.endpoints.sort_by(|a, b| a.address.cmp(&b.address));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProxyConfig {
        ProxyConfig::from_json(
            br#"{"version":"c1","service":"web","upstreams":[{"name":"api",
                 "endpoints":[{"address":"10.0.0.9:80","subset":"v1"}],
                 "subsets":[{"name":"v1","labels":{"version":"v1"}},{"name":"v2","labels":{"version":"v2"}}]}]}"#,
        )
        .unwrap()
    }

    fn instance(service: &str, address: &str, version: &str) -> Instance {
        Instance {
            service: service.into(),
            address: address.into(),
            labels: BTreeMap::from([("version".to_string(), version.to_string())]),
            healthy: true,
        }
    }

    #[test]
    fn instances_join_their_service_in_their_subset() {
        let c = with_instances(
            &config(),
            &[
                instance("api", "127.0.0.1:2", "v2"),
                instance("api", "127.0.0.1:1", "v3"),
                instance("db", "127.0.0.1:3", "v1"),
                instance("api", "10.0.0.9:80", "v2"),
            ],
        );
        let e: Vec<_> = c.upstreams[0]
            .endpoints
            .iter()
            .map(|e| (e.address.as_str(), e.subset.as_deref()))
            .collect();
        assert_eq!(
            e,
            [
                ("10.0.0.9:80", Some("v1")),
                ("127.0.0.1:1", None),
                ("127.0.0.1:2", Some("v2")),
            ]
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn registration_order_does_not_change_the_digest() {
        let a = instance("api", "127.0.0.1:1", "v1");
        let b = instance("api", "127.0.0.1:2", "v2");
        let x = with_instances(&config(), &[a.clone(), b.clone()]);
        let y = with_instances(&config(), &[b, a]);
        assert_eq!(x.digest(), y.digest());
        assert_ne!(x.digest(), config().digest());
    }
}
