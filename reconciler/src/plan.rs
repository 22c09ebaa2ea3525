//! `gitmesh plan`: what a change to the policy repo will do, before it is
//! merged. Which objects changed, which services' proxies get a new config
//! (field by field), and which canary rollouts would start, restart or stop.
//! Rendered as Markdown for a pull-request comment, or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;
use serde_json::Value as Json;

use crate::compile::{CanaryWeights, compile};
use crate::diff::{SnapshotChange, diff};
use crate::load::{Located, PolicySet};
use crate::policy::Rollout;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub from: String,
    pub to: String,
    pub objects: Vec<ObjectChange>,
    pub proxies: Vec<SnapshotChange>,
    pub rollouts: Vec<RolloutChange>,
    /// Things a reader should know to understand the plan.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectChange {
    pub kind: String,
    pub name: String,
    /// Where the object is now (or was, when removed).
    pub file: String,
    pub change: Change,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    Added,
    Modified,
    Removed,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutChange {
    pub name: String,
    pub service: String,
    /// `start` (new), `restart` (its spec changed: it starts again from the
    /// first step) or `stop` (removed: traffic stays where the route says).
    pub action: &'static str,
    pub stable_subset: String,
    pub canary_subset: String,
    pub steps: Vec<u32>,
    pub interval: String,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.objects.is_empty() || !self.proxies.is_empty() || !self.rollouts.is_empty()
    }
}

/// Plans the move from `old` to `new` (both already linted without errors).
pub fn plan(old: &PolicySet, new: &PolicySet, from: &str, to: &str) -> Plan {
    let none = CanaryWeights::new();
    let proxies = diff(&compile(old, from, &none), &compile(new, to, &none));
    let objects = objects(old, new);
    let mut notes = Vec::new();
    for (rollout, route, rule) in crate::semantics::rollout_owned_rules(new) {
        let touched = objects
            .iter()
            .any(|o| o.kind == "HTTPRoute" && o.name == route && o.change == Change::Modified);
        if touched {
            notes.push(format!(
                "HTTPRoute `{route}` rule {rule}: the split there is owned by Rollout `{rollout}`; \
                 weights written in the route do not reach proxies"
            ));
        }
    }
    Plan {
        from: from.to_string(),
        to: to.to_string(),
        objects,
        proxies,
        rollouts: rollouts(&old.rollouts, &new.rollouts),
        notes,
    }
}

fn index<T: Serialize>(
    kind: &str,
    objects: &[Located<T>],
    name: impl Fn(&T) -> &str,
    out: &mut BTreeMap<(String, String), (String, Json)>,
) {
    for o in objects {
        let value = serde_json::to_value(&o.value).expect("policies serialize");
        out.insert(
            (kind.to_string(), name(&o.value).to_string()),
            (o.file.clone(), value),
        );
    }
}

fn all_objects(set: &PolicySet) -> BTreeMap<(String, String), (String, Json)> {
    let mut out = BTreeMap::new();
    index("Mesh", &set.meshes, |m| &m.metadata.name, &mut out);
    index("Service", &set.services, |m| &m.metadata.name, &mut out);
    index("HTTPRoute", &set.routes, |m| &m.metadata.name, &mut out);
    index("Rollout", &set.rollouts, |m| &m.metadata.name, &mut out);
    index(
        "Intentions",
        &set.intentions,
        |m| &m.metadata.name,
        &mut out,
    );
    out
}

fn objects(old: &PolicySet, new: &PolicySet) -> Vec<ObjectChange> {
    let (a, b) = (all_objects(old), all_objects(new));
    let mut out = Vec::new();
    for (key, (file, value)) in &b {
        let change = match a.get(key) {
            None => Change::Added,
            Some((_, before)) if before != value => Change::Modified,
            Some(_) => continue,
        };
        out.push(ObjectChange {
            kind: key.0.clone(),
            name: key.1.clone(),
            file: file.clone(),
            change,
        });
    }
    for (key, (file, _)) in &a {
        if !b.contains_key(key) {
            out.push(ObjectChange {
                kind: key.0.clone(),
                name: key.1.clone(),
                file: file.clone(),
                change: Change::Removed,
            });
        }
    }
    out.sort_by(|x, y| (&x.kind, &x.name).cmp(&(&y.kind, &y.name)));
    out
}

fn rollouts(old: &[Located<Rollout>], new: &[Located<Rollout>]) -> Vec<RolloutChange> {
    let find = |set: &[Located<Rollout>], name: &str| {
        set.iter()
            .find(|r| r.value.metadata.name == name)
            .map(|r| r.value.clone())
    };
    let describe = |r: &Rollout, action| RolloutChange {
        name: r.metadata.name.clone(),
        service: r.spec.service.clone(),
        action,
        stable_subset: r.spec.stable_subset.clone(),
        canary_subset: r.spec.canary_subset.clone(),
        steps: r.spec.steps.clone(),
        interval: r.spec.analysis.interval.to_string(),
    };
    let mut out = Vec::new();
    for r in new {
        match find(old, &r.value.metadata.name) {
            None => out.push(describe(&r.value, "start")),
            // Pausing or resuming is not a restart.
            Some(before) if before.spec != r.value.spec => {
                let mut a = before.spec.clone();
                a.paused = r.value.spec.paused;
                let mut b = a.clone();
                b.abort = r.value.spec.abort;
                let action = if r.value.spec.abort && !before.spec.abort && b == r.value.spec {
                    "abort"
                } else if a == r.value.spec {
                    if r.value.spec.paused {
                        "pause"
                    } else {
                        "resume"
                    }
                } else {
                    "restart"
                };
                out.push(describe(&r.value, action));
            }
            Some(_) => {}
        }
    }
    for r in old {
        if find(new, &r.value.metadata.name).is_none() {
            out.push(describe(&r.value, "stop"));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn short(rev: &str) -> &str {
    if rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
        &rev[..12]
    } else {
        rev
    }
}

fn show(v: &Option<Json>) -> String {
    match v {
        None => "(none)".into(),
        Some(Json::String(s)) => s.clone(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 80 {
                format!("{}…", s.chars().take(80).collect::<String>())
            } else {
                s
            }
        }
    }
}

impl Plan {
    /// Markdown for a pull-request comment (also readable in a terminal).
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## gitmesh plan: {} → {}\n",
            short(&self.from),
            short(&self.to)
        );
        if !self.has_changes() {
            s.push_str("No changes: every proxy keeps its config.\n");
            return s;
        }
        let _ = writeln!(
            s,
            "{} object(s) changed, {} service(s) get a new proxy config, {} rollout(s) affected.\n",
            self.objects.len(),
            self.proxies.len(),
            self.rollouts.len()
        );
        if !self.objects.is_empty() {
            s.push_str("### Policy objects\n\n");
            for o in &self.objects {
                let sign = match o.change {
                    Change::Added => "+",
                    Change::Modified => "~",
                    Change::Removed => "-",
                };
                let _ = writeln!(s, "- `{sign}` {}/{} ({})", o.kind, o.name, o.file);
            }
            s.push('\n');
        }
        if !self.proxies.is_empty() {
            s.push_str(
                "### Proxies\n\nThese services' sidecars get a new config, rolled out in waves:\n\n",
            );
            for p in &self.proxies {
                match p {
                    SnapshotChange::Added { service, digest } => {
                        let _ = writeln!(s, "- `+` **{service}**: first config ({digest})");
                    }
                    SnapshotChange::Removed { service } => {
                        let _ = writeln!(
                            s,
                            "- `-` **{service}**: service removed; its proxies are told to stop routing"
                        );
                    }
                    SnapshotChange::Changed {
                        service, fields, ..
                    } => {
                        let _ = writeln!(s, "- `~` **{service}**: {} field(s)", fields.len());
                        for f in fields.iter().take(50) {
                            let _ = writeln!(
                                s,
                                "  - `{}`: {} → {}",
                                f.path,
                                show(&f.before),
                                show(&f.after)
                            );
                        }
                        if fields.len() > 50 {
                            let _ = writeln!(s, "  - … and {} more", fields.len() - 50);
                        }
                    }
                }
            }
            s.push('\n');
        }
        if !self.notes.is_empty() {
            s.push_str("### Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
            s.push('\n');
        }
        if !self.rollouts.is_empty() {
            s.push_str("### Rollouts\n\n");
            for r in &self.rollouts {
                let steps = r
                    .steps
                    .iter()
                    .map(|p| format!("{p}%"))
                    .collect::<Vec<_>>()
                    .join(" → ");
                let _ = match r.action {
                    "stop" => writeln!(
                        s,
                        "- **{}** stops: {} keeps the weights its routes declare",
                        r.name, r.service
                    ),
                    action => writeln!(
                        s,
                        "- **{}** will {action}: {} {} → {} in steps {steps}, each checked over {}",
                        r.name, r.service, r.stable_subset, r.canary_subset, r.interval
                    ),
                };
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::lint;
    use crate::source::SourceFile;

    fn set(files: &[(&str, &str)]) -> PolicySet {
        let files: Vec<_> = files.iter().map(|(p, t)| SourceFile::new(*p, *t)).collect();
        let r = lint(&files);
        assert_eq!(r.errors(), 0, "{:#?}", r.diagnostics);
        r.policies
    }

    const SERVICES: &str = "apiVersion: gitmesh.dev/v1alpha1\nkind: Service\nmetadata: {name: web}\nspec: {port: 80, upstreams: [reviews]}\n---\napiVersion: gitmesh.dev/v1alpha1\nkind: Service\nmetadata: {name: reviews}\nspec:\n  port: 80\n  subsets: [{name: v1, labels: {v: '1'}}, {name: v2, labels: {v: '2'}}]\n---\napiVersion: gitmesh.dev/v1alpha1\nkind: Intentions\nmetadata: {name: reviews}\nspec: {destination: reviews, sources: [{name: web, action: allow}]}\n";
    const ROUTE_90: &str = "apiVersion: gitmesh.dev/v1alpha1\nkind: HTTPRoute\nmetadata: {name: reviews}\nspec:\n  parentRefs: [{name: reviews}]\n  rules:\n    - backendRefs: [{name: reviews, subset: v1, weight: 90}, {name: reviews, subset: v2, weight: 10}]\n";

    #[test]
    fn nothing_changed_means_no_plan() {
        let a = set(&[("s.yaml", SERVICES), ("r.yaml", ROUTE_90)]);
        let p = plan(&a, &a.clone(), "a", "b");
        assert!(!p.has_changes());
        assert!(p.to_markdown().contains("No changes"));
    }

    #[test]
    fn a_weight_change_names_the_field_and_the_proxies() {
        let a = set(&[("s.yaml", SERVICES), ("r.yaml", ROUTE_90)]);
        let b = set(&[
            ("s.yaml", SERVICES),
            (
                "r.yaml",
                &ROUTE_90.replace("90", "50").replace("10}", "50}"),
            ),
        ]);
        let p = plan(&a, &b, "a", "b");
        assert_eq!(p.objects.len(), 1);
        assert_eq!(p.objects[0].change, Change::Modified);
        assert_eq!(p.proxies.len(), 1, "only web calls reviews");
        assert_eq!(p.proxies[0].service(), "web");
        let md = p.to_markdown();
        assert!(
            md.contains(
                "`upstreams[reviews].routes[reviews].rules[0].backends[0].weight`: 90 → 50"
            ),
            "{md}"
        );
    }

    #[test]
    fn new_rollouts_start_and_pausing_is_not_a_restart() {
        let rollout = "apiVersion: gitmesh.dev/v1alpha1\nkind: Rollout\nmetadata: {name: reviews-v2}\nspec: {service: reviews, route: reviews, stableSubset: v1, canarySubset: v2, steps: [25, 100]}\n";
        let a = set(&[("s.yaml", SERVICES), ("r.yaml", ROUTE_90)]);
        let b = set(&[
            ("s.yaml", SERVICES),
            ("r.yaml", ROUTE_90),
            ("ro.yaml", rollout),
        ]);
        let p = plan(&a, &b, "a", "b");
        assert_eq!(p.rollouts[0].action, "start");
        assert!(
            p.to_markdown()
                .contains("reviews v1 → v2 in steps 25% → 100%")
        );
        let paused = rollout.replace("steps: [25, 100]", "steps: [25, 100], paused: true");
        let c = set(&[
            ("s.yaml", SERVICES),
            ("r.yaml", ROUTE_90),
            ("ro.yaml", &paused),
        ]);
        assert_eq!(plan(&b, &c, "b", "c").rollouts[0].action, "pause");
        assert_eq!(plan(&a, &c, "a", "c").rollouts[0].action, "start");
        assert_eq!(plan(&b, &a, "b", "a").rollouts[0].action, "stop");
        let aborted = rollout.replace("steps: [25, 100]", "steps: [25, 100], abort: true");
        let d = set(&[
            ("s.yaml", SERVICES),
            ("r.yaml", ROUTE_90),
            ("ro.yaml", &aborted),
        ]);
        assert_eq!(plan(&b, &d, "b", "d").rollouts[0].action, "abort");
        // Removing `abort` starts it again.
        assert_eq!(plan(&d, &b, "d", "b").rollouts[0].action, "restart");
    }
}
