//! Pure rendering of the status branch for `gitmesh history`: a timeline
//! for people, oldest first (read top to bottom like a log, the newest step
//! last, next to the prompt), with each canary rollout's steps grouped under
//! it with its gates and numbers; and JSON for tools, in the order given
//! (newest first as [`StatusLog::history`](super::StatusLog::history)
//! returns it).

use std::fmt::Write as _;

use serde::Serialize;

use super::event::{CanaryStep, Decision, Evidence, RevertReason, StatusEvent, short};
use super::record::{CommitId, HistoryEntry};

/// How many list items (services, diagnostics) a timeline line shows.
const MAX_ITEMS: usize = 5;
const INDENT: &str = "                              ";

/// The timeline of `entries` (given newest first), printed oldest first.
pub fn render_timeline(entries: &[HistoryEntry]) -> String {
    let mut items: Vec<Item<'_>> = Vec::new();
    for entry in entries.iter().rev() {
        match &entry.event {
            Some(StatusEvent::CanaryStep(step)) => {
                let open = items.iter_mut().rev().find_map(|item| match item {
                    Item::Rollout(group) if group.is_open_for(step) => Some(group),
                    _ => None,
                });
                match open {
                    Some(group) => group.steps.push((entry, step)),
                    None => items.push(Item::Rollout(Group {
                        steps: vec![(entry, step)],
                    })),
                }
            }
            _ => items.push(Item::Single(entry)),
        }
    }
    let mut out = String::new();
    for item in items {
        match item {
            Item::Single(entry) => single(&mut out, entry),
            Item::Rollout(group) => rollout(&mut out, &group),
        }
    }
    out
}

/// The entries as a JSON array, in the order given, each with its time also
/// as a UTC timestamp.
pub fn render_json(entries: &[HistoryEntry]) -> String {
    #[derive(Serialize)]
    struct Json<'a> {
        commit: CommitId,
        time: i64,
        time_utc: String,
        author: &'a str,
        summary: &'a str,
        event: &'a Option<StatusEvent>,
    }
    let out: Vec<Json<'_>> = entries
        .iter()
        .map(|e| Json {
            commit: e.commit,
            time: e.time,
            time_utc: utc(e.time).replace(' ', "T"),
            author: &e.author,
            summary: &e.summary,
            event: &e.event,
        })
        .collect();
    let mut json = serde_json::to_string_pretty(&out).expect("history serializes");
    json.push('\n');
    json
}

enum Item<'e> {
    Single(&'e HistoryEntry),
    Rollout(Group<'e>),
}

/// The steps of one run of one rollout.
struct Group<'e> {
    steps: Vec<(&'e HistoryEntry, &'e CanaryStep)>,
}

impl Group<'_> {
    fn is_open_for(&self, step: &CanaryStep) -> bool {
        let (_, last) = self.steps.last().expect("a group has a step");
        last.rollout == step.rollout
            && last.source == step.source
            && !matches!(last.decision, Decision::Complete | Decision::Rollback)
    }
}

fn single(out: &mut String, entry: &HistoryEntry) {
    let _ = writeln!(
        out,
        "{}  {}  {}",
        utc(entry.time),
        entry.commit.short(),
        entry.summary
    );
    let Some(event) = &entry.event else {
        let _ = writeln!(
            out,
            "{INDENT}(not a gitmesh status commit, by {})",
            entry.author
        );
        return;
    };
    match event {
        StatusEvent::Applied { services, .. } => detail(out, "services", services),
        StatusEvent::Wave { proxies, .. } => detail(out, "proxies", proxies),
        StatusEvent::Reverted {
            reason,
            to,
            proxies,
            ..
        } => {
            let why = match reason {
                RevertReason::Nack { proxy, message } => format!("{proxy} NACKed: {message}"),
                RevertReason::Unhealthy { proxy } => format!("{proxy} turned unhealthy"),
                RevertReason::ProgressDeadline { deadline_ms } => format!(
                    "not done within {}",
                    super::event::format_duration(*deadline_ms)
                ),
            };
            let _ = writeln!(out, "{INDENT}why: {why}");
            let _ = writeln!(
                out,
                "{INDENT}back to: {}",
                to.as_deref().map_or("empty configuration", short)
            );
            detail(out, "proxies", proxies);
        }
        StatusEvent::Rejected {
            diagnostics, kept, ..
        } => {
            for line in diagnostics.iter().take(MAX_ITEMS) {
                let _ = writeln!(out, "{INDENT}{line}");
            }
            if diagnostics.len() > MAX_ITEMS {
                let _ = writeln!(out, "{INDENT}… and {} more", diagnostics.len() - MAX_ITEMS);
            }
            if let Some(kept) = kept {
                let _ = writeln!(out, "{INDENT}kept: {}", short(kept));
            }
        }
        StatusEvent::WriteBack { path, refused, .. } => {
            let _ = writeln!(out, "{INDENT}file: {path}");
            if let Some(why) = refused {
                let _ = writeln!(out, "{INDENT}why: {why}");
            }
        }
        StatusEvent::Superseded { .. } | StatusEvent::CanaryStep(_) => {}
    }
}

fn detail(out: &mut String, label: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let mut line = items
        .iter()
        .take(MAX_ITEMS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_ITEMS {
        let _ = write!(line, " and {} more", items.len() - MAX_ITEMS);
    }
    let _ = writeln!(out, "{INDENT}{label}: {line}");
}

fn rollout(out: &mut String, group: &Group<'_>) {
    let (_, first) = group.steps[0];
    let _ = writeln!(
        out,
        "rollout {} ({}: stable {}, canary {}; source {})",
        first.rollout,
        first.service,
        first.stable_subset,
        first.canary_subset,
        short(&first.source)
    );
    // Decisions taken without a window (a start, a pause) have none to show.
    let first_window = group
        .steps
        .iter()
        .map(|(_, s)| s.window_ms)
        .find(|w| *w > 0)
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "  gates: {}; window {}",
        first.gates.describe(),
        super::event::format_duration(first_window)
    );
    let mut gates = &first.gates;
    let mut window = first_window;
    for (entry, step) in &group.steps {
        if &step.gates != gates || (step.window_ms != window && step.window_ms > 0) {
            let _ = writeln!(
                out,
                "  gates now: {}; window {}",
                step.gates.describe(),
                super::event::format_duration(step.window_ms)
            );
            gates = &step.gates;
            window = step.window_ms;
        }
        let weights = match step.decision {
            Decision::Hold => format!("held at {}%", step.from_weight),
            _ => format!("{}% → {}%", step.from_weight, step.to_weight),
        };
        let _ = writeln!(
            out,
            "  {}  {}  step {}/{}  {:<12} {:<8}  stable {}  |  canary {}",
            utc(entry.time),
            entry.commit.short(),
            step.step,
            step.steps,
            weights,
            step.decision.as_str(),
            numbers(&step.stable),
            numbers(&step.canary),
        );
        if let Some(reason) = &step.reason {
            let _ = writeln!(out, "    {reason}");
        }
    }
}

fn numbers(e: &Evidence) -> String {
    format!(
        "{} req, {} err, p99 {}",
        e.requests,
        e.error_rate_pct
            .map_or("n/a".into(), |v| format!("{v:.2}%")),
        e.p99_ms.map_or("n/a".into(), |v| format!("{v:.1} ms"))
    )
}

/// `2026-11-25 11:02:03Z` for seconds since the Unix epoch.
pub(super) fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a date.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
