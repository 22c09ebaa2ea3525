//! What the user sees: on a terminal, a line per step and a compact table
//! (traffic split, error rate, p99 per version) refreshed in place; when
//! stdout is not a terminal, the same lines without the live table; with
//! `--json`, one JSON object per line and per event, for scripts and tests.

use std::io::Write;

use serde_json::{Value, json};

use super::traffic::Summary;

pub enum Display {
    /// A terminal: the live table is redrawn in place; `drawn` lines of it
    /// are on screen now.
    Live {
        drawn: usize,
    },
    Plain,
    Json,
}

impl Display {
    pub fn new(json: bool) -> Self {
        if json {
            Display::Json
        } else if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            Display::Live { drawn: 0 }
        } else {
            Display::Plain
        }
    }

    pub fn is_json(&self) -> bool {
        matches!(self, Display::Json)
    }

    /// A line of text for people (ignored in JSON mode).
    pub fn say(&mut self, text: &str) {
        if self.is_json() {
            return;
        }
        self.clear_live();
        println!("{text}");
    }

    /// A machine-readable event (JSON mode only).
    pub fn event(&mut self, event: Value) {
        if let Display::Json = self {
            println!("{event}");
            let _ = std::io::stdout().flush();
        }
    }

    /// The end of a state (begun by a commit or a recorded step): the
    /// traffic measured while it held. `status` is the summary line of the
    /// step, `recorded` the step as the status branch holds it (null for
    /// the desired-state commit that opens a phase).
    pub fn step(
        &mut self,
        phase: &str,
        status: &str,
        status_commit: Option<&str>,
        recorded: &Value,
        measured: &Summary,
        seconds: f64,
    ) {
        match self {
            Display::Json => self.event(json!({
                "event": "step",
                "phase": phase,
                "status": status,
                "statusCommit": status_commit,
                "recorded": recorded,
                "seconds": round(seconds),
                "traffic": measured,
            })),
            // A state that held for less than a tick (several steps
            // recorded at once) has nothing to show.
            _ if seconds < 0.5 => {}
            _ => {
                self.clear_live();
                println!("      {}", split_line(measured, seconds));
            }
        }
    }

    /// Redraws the live table (terminal only).
    pub fn live(&mut self, recent: &Summary, latest: &str) {
        let Display::Live { .. } = self else { return };
        self.clear_live();
        let mut lines = vec![format!(
            "    {:<8} {:>7} {:>8} {:>8} {:>9}",
            "version", "share", "req/s", "errors", "p99"
        )];
        for (version, v) in &recent.versions {
            let bar = "█".repeat((v.share_pct / 5.0).round() as usize);
            lines.push(format!(
                "    {:<8} {:>6.1}% {:>8.0} {:>7.1}% {:>7}  {bar}",
                version,
                v.share_pct,
                v.requests as f64 * recent.rate / recent.requests.max(1) as f64,
                v.error_rate_pct,
                v.p99_ms.map_or("-".to_string(), |p| format!("{p:.0}ms")),
            ));
        }
        let routes: Vec<String> = recent
            .callers
            .iter()
            .enumerate()
            .map(|(i, c)| format!("web-{}: {}", i + 1, dominant(&c.route_share_pct)))
            .collect();
        lines.push(format!("    route per caller: {}", routes.join("  ")));
        lines.push(format!("    last status commit: {latest}"));
        for line in &lines {
            println!("{line}");
        }
        let _ = std::io::stdout().flush();
        *self = Display::Live { drawn: lines.len() };
    }

    /// Erases the live table so a permanent line can be printed above it.
    fn clear_live(&mut self) {
        if let Display::Live { drawn } = self
            && *drawn > 0
        {
            print!("\x1b[{drawn}F\x1b[J");
            *drawn = 0;
        }
    }
}

fn dominant(shares: &std::collections::BTreeMap<String, f64>) -> String {
    shares
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or("-".to_string(), |(route, pct)| format!("{route} {pct:.0}%"))
}

/// `v1 80.0% v2 20.0% · errors 0.0% · p99 v1 21ms v2 22ms · 412 requests in 3.1s`
pub fn split_line(s: &Summary, seconds: f64) -> String {
    let shares: Vec<String> = s
        .versions
        .iter()
        .map(|(v, st)| format!("{v} {:.1}%", st.share_pct))
        .collect();
    let p99s: Vec<String> = s
        .versions
        .iter()
        .filter_map(|(v, st)| st.p99_ms.map(|p| format!("{v} {p:.0}ms")))
        .collect();
    let line = format!(
        "traffic {} · errors {:.1}% · p99 {} · {} requests in {:.1}s",
        if shares.is_empty() {
            "none".to_string()
        } else {
            shares.join(" ")
        },
        s.error_rate_pct,
        if p99s.is_empty() {
            "-".to_string()
        } else {
            p99s.join(" ")
        },
        s.requests,
        seconds,
    );
    // Route revisions per caller, while callers disagree or one is mixed.
    let routes: std::collections::BTreeSet<&String> = s
        .callers
        .iter()
        .flat_map(|c| c.route_share_pct.keys())
        .collect();
    if routes.len() > 1 {
        let per_caller: Vec<String> = s
            .callers
            .iter()
            .enumerate()
            .map(|(i, c)| format!("web-{} {}", i + 1, dominant(&c.route_share_pct)))
            .collect();
        format!("{line}\n      routes {}", per_caller.join(" · "))
    } else {
        line
    }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::demo::traffic::{CallerStats, VersionStats};

    #[test]
    fn the_split_line_names_every_version() {
        let mut s = Summary {
            requests: 100,
            error_rate_pct: 1.0,
            ..Summary::default()
        };
        s.versions.insert(
            "v1".into(),
            VersionStats {
                requests: 80,
                share_pct: 80.0,
                p99_ms: Some(21.0),
                ..VersionStats::default()
            },
        );
        s.versions.insert(
            "v2".into(),
            VersionStats {
                requests: 20,
                share_pct: 20.0,
                ..VersionStats::default()
            },
        );
        assert_eq!(
            split_line(&s, 2.0),
            "traffic v1 80.0% v2 20.0% · errors 1.0% · p99 v1 21ms · 100 requests in 2.0s"
        );
        let caller = |route: &str, pct: f64| CallerStats {
            requests: 10,
            route_share_pct: [(route.to_string(), pct)].into_iter().collect(),
        };
        s.callers = vec![caller("r2", 100.0), caller("r1", 100.0)];
        assert!(
            split_line(&s, 2.0).ends_with("\n      routes web-1 r2 100% · web-2 r1 100%"),
            "{}",
            split_line(&s, 2.0)
        );
    }
}
