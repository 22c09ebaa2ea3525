//! A synthetic policy repo of any size, for benchmarks and load tests:
//! `n` services in rings of ten, each calling the next, with a route that
//! splits two subsets and an intention allowing its caller.

use crate::source::SourceFile;

/// One YAML file per service: its Service, HTTPRoute and Intentions.
/// `n` must leave every ring of ten at least two services (a service never
/// calls itself): n >= 2 and n % 10 != 1.
pub fn mesh(n: usize) -> Vec<SourceFile> {
    assert!(
        n >= 2 && n % 10 != 1,
        "every ring of a synthetic mesh needs two services"
    );
    (0..n)
        .map(|i| {
            let name = format!("svc-{i:05}");
            let ring = i / 10 * 10;
            let size = 10.min(n - ring).max(2);
            let next = format!("svc-{:05}", ring + (i - ring + 1) % size);
            let caller = format!("svc-{:05}", ring + (i - ring + size - 1) % size);
            let text = format!(
                "apiVersion: gitmesh.dev/v1alpha1
kind: Service
metadata:
  name: {name}
spec:
  port: 8080
  upstreams: [{next}]
  subsets:
    - {{name: v1, labels: {{version: v1}}}}
    - {{name: v2, labels: {{version: v2}}}}
  timeouts: {{request: 2s, connect: 250ms}}
  retries: {{attempts: 2, perTryTimeout: 500ms, retryOn: [connect-failure, 503]}}
---
apiVersion: gitmesh.dev/v1alpha1
kind: HTTPRoute
metadata:
  name: {name}
spec:
  parentRefs: [{{name: {name}}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /api}}, method: GET}}]
      backendRefs:
        - {{name: {name}, subset: v1, weight: 90}}
        - {{name: {name}, subset: v2, weight: 10}}
    - backendRefs: [{{name: {name}, subset: v1}}]
---
apiVersion: gitmesh.dev/v1alpha1
kind: Intentions
metadata:
  name: {name}
spec:
  destination: {name}
  sources: [{{name: {caller}, action: allow}}]
"
            );
            SourceFile::new(format!("services/{name}.yaml"), text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_small_synthetic_mesh_is_clean() {
        for n in [2, 7, 25] {
            let r = crate::lint::lint(&super::mesh(n));
            assert!(r.diagnostics.is_empty(), "{n}: {:#?}", &r.diagnostics[..1]);
            assert_eq!(r.policies.services.len(), n);
        }
    }
}
