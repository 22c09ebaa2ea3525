//! Old snapshots vs new: which services' proxies get a new config, and
//! exactly which fields changed, in paths a person can read
//! (`upstreams[reviews].routes[reviews].rules[0].backends[1].weight`).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value as Json;

use crate::compile::Snapshots;

/// One changed field. `None` on a side means the field is absent there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    pub before: Option<Json>,
    pub after: Option<Json>,
}

/// What happens to one service's proxies.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "camelCase")]
pub enum SnapshotChange {
    Added {
        service: String,
        digest: String,
    },
    Removed {
        service: String,
    },
    Changed {
        service: String,
        #[serde(rename = "fromDigest")]
        from_digest: String,
        #[serde(rename = "toDigest")]
        to_digest: String,
        fields: Vec<FieldChange>,
    },
}

impl SnapshotChange {
    pub fn service(&self) -> &str {
        match self {
            SnapshotChange::Added { service, .. }
            | SnapshotChange::Removed { service }
            | SnapshotChange::Changed { service, .. } => service,
        }
    }
}

/// Compares two compilations. Services whose digest did not change are left
/// out: their proxies get nothing.
pub fn diff(old: &Snapshots, new: &Snapshots) -> Vec<SnapshotChange> {
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        match (old.get(name), new.get(name)) {
            (None, Some(n)) => out.push(SnapshotChange::Added {
                service: name.clone(),
                digest: n.digest(),
            }),
            (Some(_), None) => out.push(SnapshotChange::Removed {
                service: name.clone(),
            }),
            (Some(o), Some(n)) => {
                let (from, to) = (o.digest(), n.digest());
                if from != to {
                    let mut fields = Vec::new();
                    let o = strip_version(serde_json::to_value(o).expect("configs serialize"));
                    let n = strip_version(serde_json::to_value(n).expect("configs serialize"));
                    diff_values("", Some(&o), Some(&n), &mut fields);
                    out.push(SnapshotChange::Changed {
                        service: name.clone(),
                        from_digest: from,
                        to_digest: to,
                        fields,
                    });
                }
            }
            (None, None) => {}
        }
    }
    out
}

fn strip_version(mut v: Json) -> Json {
    if let Json::Object(map) = &mut v {
        map.remove("version");
    }
    v
}

/// The field that names an element of a list, so lists diff by identity
/// rather than by position when they can.
fn identity(item: &Json) -> Option<String> {
    ["name", "source", "address"]
        .iter()
        .find_map(|k| item.get(*k).and_then(Json::as_str).map(str::to_string))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Recursive structural diff. Lists whose elements all have an identity are
/// matched by it; other lists by position when the lengths agree, else
/// reported whole.
pub fn diff_values(path: &str, old: Option<&Json>, new: Option<&Json>, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Some(Json::Object(a)), Some(Json::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                diff_values(&join(path, k), a.get(k), b.get(k), out);
            }
        }
        (Some(Json::Array(a)), Some(Json::Array(b))) => {
            let ids_a: Option<Vec<String>> = a.iter().map(identity).collect();
            let ids_b: Option<Vec<String>> = b.iter().map(identity).collect();
            match (ids_a, ids_b) {
                (Some(ia), Some(ib)) if !a.is_empty() || !b.is_empty() => {
                    let mut seen = BTreeSet::new();
                    for id in ia.iter().chain(ib.iter()) {
                        if !seen.insert(id.clone()) {
                            continue;
                        }
                        let x = ia.iter().position(|i| i == id).map(|p| &a[p]);
                        let y = ib.iter().position(|i| i == id).map(|p| &b[p]);
                        diff_values(&format!("{path}[{id}]"), x, y, out);
                    }
                }
                _ if a.len() == b.len() => {
                    for (i, (x, y)) in a.iter().zip(b).enumerate() {
                        diff_values(&format!("{path}[{i}]"), Some(x), Some(y), out);
                    }
                }
                _ => out.push(FieldChange {
                    path: path.to_string(),
                    before: old.cloned(),
                    after: new.cloned(),
                }),
            }
        }
        (a, b) if a != b => out.push(FieldChange {
            path: path.to_string(),
            before: a.cloned(),
            after: b.cloned(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changes(a: Json, b: Json) -> Vec<(String, Option<Json>, Option<Json>)> {
        let mut out = Vec::new();
        diff_values("", Some(&a), Some(&b), &mut out);
        out.into_iter()
            .map(|c| (c.path, c.before, c.after))
            .collect()
    }

    #[test]
    fn lists_diff_by_name_when_they_can() {
        let a = json!({"upstreams": [{"name": "a", "w": 1}, {"name": "b", "w": 1}]});
        let b = json!({"upstreams": [{"name": "b", "w": 2}, {"name": "c", "w": 1}]});
        assert_eq!(
            changes(a, b),
            [
                (
                    "upstreams[a]".into(),
                    Some(json!({"name": "a", "w": 1})),
                    None
                ),
                ("upstreams[b].w".into(), Some(json!(1)), Some(json!(2))),
                (
                    "upstreams[c]".into(),
                    None,
                    Some(json!({"name": "c", "w": 1}))
                ),
            ]
        );
    }

    #[test]
    fn other_lists_by_position_or_whole() {
        assert_eq!(
            changes(json!({"w": [1, 2]}), json!({"w": [1, 3]})),
            [("w[1]".into(), Some(json!(2)), Some(json!(3)))]
        );
        assert_eq!(
            changes(json!({"w": [1]}), json!({"w": [1, 3]})),
            [("w".into(), Some(json!([1])), Some(json!([1, 3])))]
        );
        assert!(changes(json!({"w": [1]}), json!({"w": [1]})).is_empty());
    }
}
