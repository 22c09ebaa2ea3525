use super::*;
use crate::status::event::Decision;
use crate::status::fixtures;

fn entry(n: u8, time: i64, event: StatusEvent) -> HistoryEntry {
    let hex = format!("{n:02x}").repeat(20);
    HistoryEntry {
        commit: hex.parse().unwrap(),
        time,
        offset_minutes: 0,
        author: "gitmesh <gitmesh@localhost>".into(),
        summary: event.summary(),
        event: Some(event),
    }
}

/// Newest first, as `StatusLog::history` returns them.
fn sample() -> Vec<HistoryEntry> {
    let t = 1_700_000_000;
    let mut entries = vec![
        entry(1, t, fixtures::rejected()),
        entry(2, t + 60, fixtures::applied()),
        entry(3, t + 120, fixtures::canary(1, 0, 25, Decision::Promote)),
        entry(4, t + 150, fixtures::wave()),
        entry(5, t + 180, fixtures::canary(2, 25, 25, Decision::Hold)),
        entry(6, t + 240, fixtures::canary(2, 25, 0, Decision::Rollback)),
        entry(7, t + 300, fixtures::canary(1, 0, 25, Decision::Promote)),
    ];
    entries.push(HistoryEntry {
        event: None,
        summary: "Initial commit".into(),
        ..entry(8, t + 360, fixtures::applied())
    });
    entries.reverse();
    entries
}

#[test]
fn timeline_is_oldest_first_with_rollouts_grouped() {
    let text = render_timeline(&sample());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "2023-11-14 22:13:20Z  0101010  rejected 3f2a1c9: 4 lint errors"
    );
    assert!(
        lines[1]
            .trim_start()
            .starts_with("routes/reviews.yaml:12:7"),
        "{text}"
    );
    let rollout_headers: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("rollout reviews-v3"))
        .map(|(i, _)| i)
        .collect();
    // The rolled-back run and the restarted one are two groups.
    assert_eq!(rollout_headers.len(), 2, "{text}");
    let first = rollout_headers[0];
    assert_eq!(
        lines[first],
        "rollout reviews-v3 (reviews: stable v2, canary v3; source 3f2a1c9)"
    );
    assert!(
        lines[first + 1].starts_with("  gates: ≥ 100 canary requests;"),
        "{text}"
    );
    assert!(lines[first + 1].ends_with("; window 1m"), "{text}");
    // The three steps of the first run sit together under it, although a
    // wave was recorded between them.
    assert!(lines[first + 2].contains("step 1/4  0% → 25%"), "{text}");
    assert!(
        lines[first + 3].contains("held at 25%") && lines[first + 3].contains("hold"),
        "{text}"
    );
    assert_eq!(
        lines[first + 4],
        "    not enough data: 40 canary requests < 100"
    );
    assert!(
        lines[first + 5].contains("25% → 0%") && lines[first + 5].contains("rollback"),
        "{text}"
    );
    assert!(
        lines[first + 5].contains(
            "stable 1200 req, 0.40% err, p99 85.0 ms  |  canary 310 req, 20.50% err, p99 92.5 ms"
        ),
        "{text}"
    );
    assert!(lines[first + 6].contains("error rate 20.5% > 1%"), "{text}");
    assert!(lines[first + 7].contains("wave 2/3 of 3f2a1c9"), "{text}");
    assert!(text.contains("(not a gitmesh status commit, by gitmesh <gitmesh@localhost>)"));
    assert!(text.ends_with("(not a gitmesh status commit, by gitmesh <gitmesh@localhost>)\n"));
}

#[test]
fn timeline_details_for_each_kind() {
    let entries: Vec<HistoryEntry> = [
        fixtures::reverted_nack(),
        fixtures::reverted_unhealthy(),
        fixtures::reverted_deadline(),
        fixtures::superseded(),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, e)| entry(i as u8, 0, e))
    .rev()
    .collect();
    let text = render_timeline(&entries);
    for needle in [
        "why: reviews-2 NACKed: route reviews-by-header: unknown cluster `reviews-v9`",
        "back to: 1b2c3d4",
        "proxies: reviews-1, reviews-2",
        "why: ratings-1 turned unhealthy",
        "back to: empty configuration",
        "why: not done within 10m",
        "1970-01-01 00:00:00Z  0303030  superseded 3f2a1c9 by 8e7d6c5 at wave 1/3",
    ] {
        assert!(text.contains(needle), "no {needle:?} in\n{text}");
    }
    assert_eq!(render_timeline(&[]), "");
}

#[test]
fn long_lists_are_cut() {
    let event = StatusEvent::Applied {
        source: fixtures::SHA.into(),
        services: (0..8).map(|i| format!("s{i}")).collect(),
        proxies: 9,
    };
    let text = render_timeline(&[entry(1, 0, event)]);
    assert!(
        text.contains("services: s0, s1, s2, s3, s4 and 3 more"),
        "{text}"
    );
}

#[test]
fn json_keeps_order_and_events() {
    let entries = sample();
    let json: serde_json::Value = serde_json::from_str(&render_json(&entries)).unwrap();
    let array = json.as_array().unwrap();
    assert_eq!(array.len(), entries.len());
    assert_eq!(array[0]["summary"], "Initial commit");
    assert_eq!(array[0]["event"], serde_json::Value::Null);
    let last = &array[array.len() - 1];
    assert_eq!(last["commit"], "01".repeat(20));
    assert_eq!(last["time_utc"], "2023-11-14T22:13:20Z");
    assert_eq!(last["event"]["event"], "rejected");
    assert_eq!(last["event"]["errors"], 4);
    let canary = &array[1]["event"];
    assert_eq!(canary["event"], "canary");
    assert_eq!(canary["decision"], "promote");
    assert_eq!(canary["gates"]["relative"]["max_p99_ratio"], 1.5);
}

#[test]
fn utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00Z");
    assert_eq!(utc(-1), "1969-12-31 23:59:59Z");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00Z");
    assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20Z");
    assert_eq!(utc(4_102_444_800), "2100-01-01 00:00:00Z");
}

#[test]
fn a_start_without_a_window_does_not_hide_the_rollouts_window() {
    let t = 1_700_000_000;
    let mut start = fixtures::canary(0, 0, 25, Decision::Promote);
    if let StatusEvent::CanaryStep(s) = &mut start {
        s.window_ms = 0;
    }
    let entries = vec![
        entry(2, t + 60, fixtures::canary(1, 25, 50, Decision::Promote)),
        entry(1, t, start),
    ];
    let text = render_timeline(&entries);
    assert!(text.contains("; window 1m\n"), "{text}");
    assert!(!text.contains("gates now"), "{text}");
    assert!(!text.contains("window 0ms"), "{text}");
}
