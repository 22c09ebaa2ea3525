use super::*;
use crate::status::fixtures::{self, NEW, SHA};

#[test]
fn every_variant_round_trips() {
    for event in fixtures::all() {
        let message = event.to_message();
        let back =
            StatusEvent::from_message(&message).unwrap_or_else(|e| panic!("{e} in\n{message}"));
        assert_eq!(back, event, "{message}");
    }
}

#[test]
fn missing_numbers_and_disabled_gates_round_trip() {
    let StatusEvent::CanaryStep(mut step) = fixtures::canary(1, 0, 0, Decision::Hold) else {
        unreachable!()
    };
    step.canary = Evidence {
        requests: 0,
        error_rate_pct: None,
        p99_ms: None,
    };
    step.gates.max_p99_ms = None;
    step.gates.relative = None;
    step.window_ms = 1_500;
    step.reason = Some("paused".into());
    let event = StatusEvent::CanaryStep(step);
    let message = event.to_message();
    assert!(
        message.contains("requests=0 error-rate=n/a p99=n/a"),
        "{message}"
    );
    assert!(message.contains("relative=off"), "{message}");
    assert!(message.contains("Gitmesh-Window: 1500ms"), "{message}");
    assert_eq!(StatusEvent::from_message(&message).unwrap(), event);
}

#[test]
fn summaries_read_well_and_fit() {
    let summaries: Vec<String> = fixtures::all().iter().map(StatusEvent::summary).collect();
    assert_eq!(
        summaries,
        [
            "applied 3f2a1c9: 2 services, 6 proxies",
            "wave 2/3 of 3f2a1c9: 3 proxies, 2 services",
            "reverted 3f2a1c9: reviews-2 NACKed",
            "reverted 3f2a1c9: ratings-1 unhealthy",
            "reverted 3f2a1c9: progress deadline 10m passed",
            "rejected 3f2a1c9: 4 lint errors",
            "superseded 3f2a1c9 by 8e7d6c5 at wave 1/3",
            "reviews: canary v3 25% → 50% (promoted)",
            "reviews: canary v3 held at 25%",
            "reviews: canary v3 50% → 0% (rolled back)",
            "reviews: canary v3 50% → 100% (complete)",
            "reviews: final weights written back to main (8e7d6c5)",
            "reviews: write-back of final weights to main refused",
            "reviews: final weights already on main",
        ]
    );
    for s in summaries {
        assert!(s.chars().count() <= 72, "{s}");
    }
}

#[test]
fn applied_message_has_body_and_trailers() {
    assert_eq!(
        fixtures::applied().to_message(),
        format!(
            "applied 3f2a1c9: 2 services, 6 proxies\n\
             \n\
             Source commit {SHA} is rolled out: 6 proxies received a new configuration.\n\
             \n\
             Services changed:\n  - ratings\n  - reviews\n\
             \n\
             Gitmesh-Event: applied\n\
             Gitmesh-Source: {SHA}\n\
             Gitmesh-Services: 2\n\
             Gitmesh-Proxies: 6\n"
        )
    );
}

#[test]
fn canary_message_carries_the_evidence() {
    let message = fixtures::canary(3, 50, 0, Decision::Rollback).to_message();
    for needle in [
        "reviews: canary v3 50% → 0% (rolled back)\n",
        "Evidence over the last 1m (rollout reviews-v3",
        "stable v2        1200       0.40%     85.0 ms",
        "canary v3         310      20.50%     92.5 ms",
        "Gates: ≥ 100 canary requests; error rate ≤ 1%; p99 ≤ 500 ms; \
         error rate ≤ stable + 0.5 pp; p99 ≤ 1.5× stable; roll back after 2 failed checks.",
        "Failed checks in a row: 2 of 2.",
        "Reason: error rate 20.5% > 1% (2 of 2 failed checks)",
        "Gitmesh-Rollout: reviews-v3\n",
        "Gitmesh-Step: 3/4\n",
        "Gitmesh-Weight: 50 -> 0\n",
        "Gitmesh-Decision: rollback\n",
        "Gitmesh-Stable: v2 requests=1200 error-rate=0.4% p99=85ms\n",
        "Gitmesh-Canary: v3 requests=310 error-rate=20.5% p99=92.5ms\n",
        "Gitmesh-Gates: min-requests=100 max-error-rate=1% max-p99=500ms \
         max-error-rate-over-stable=0.5pp max-p99-ratio=1.5 failure-limit=2\n",
        "Gitmesh-Window: 1m\n",
    ] {
        assert!(message.contains(needle), "no {needle:?} in\n{message}");
    }
}

#[test]
fn multi_line_free_text_is_folded() {
    let event = StatusEvent::Reverted {
        source: SHA.into(),
        reason: RevertReason::Nack {
            proxy: "p".into(),
            message: "line one\n\nGitmesh-Event: applied\nline three".into(),
        },
        to: None,
        proxies: vec!["a\nb".into()],
    };
    let message = event.to_message();
    assert!(
        message.contains("Gitmesh-Nack: line one Gitmesh-Event: applied line three\n"),
        "{message}"
    );
    let StatusEvent::Reverted {
        reason, proxies, ..
    } = StatusEvent::from_message(&message).unwrap()
    else {
        panic!("not a revert")
    };
    assert_eq!(proxies, ["a b"]);
    assert_eq!(
        reason,
        RevertReason::Nack {
            proxy: "p".into(),
            message: "line one Gitmesh-Event: applied line three".into()
        }
    );
}

#[test]
fn messages_that_are_not_ours_are_errors() {
    for message in [
        "",
        "\n\n\n",
        "Fix typo in README",
        "Merge branch 'main'\n\nSigned-off-by: A <a@example.invalid>\n",
        "applied 3f2a1c9: 2 services, 6 proxies\n\nGitmesh-Event: applied is mentioned in prose\nhere\n",
    ] {
        assert_eq!(
            StatusEvent::from_message(message),
            Err(ParseError::NotOurs),
            "{message:?}"
        );
    }
}

#[test]
fn damaged_messages_are_errors_not_panics() {
    let cases: &[(&str, ParseError)] = &[
        (
            "x\n\nGitmesh-Event: exploded\nGitmesh-Source: abcdef0\n",
            ParseError::UnknownEvent("exploded".into()),
        ),
        (
            "x\n\nGitmesh-Event: applied\n",
            ParseError::Missing("Gitmesh-Source"),
        ),
        (
            "x\n\nGitmesh-Event: applied\nGitmesh-Source: zzz\n",
            ParseError::Invalid {
                key: "Gitmesh-Source",
                value: "zzz".into(),
            },
        ),
        (
            "x\n\nGitmesh-Event: applied\nGitmesh-Source: abcdef0\nGitmesh-Proxies: -1\n",
            ParseError::Invalid {
                key: "Gitmesh-Proxies",
                value: "-1".into(),
            },
        ),
        (
            "x\n\nGitmesh-Event: wave\nGitmesh-Source: abcdef0\nGitmesh-Wave: 2\n",
            ParseError::Invalid {
                key: "Gitmesh-Wave",
                value: "2".into(),
            },
        ),
        (
            "x\n\nGitmesh-Event: reverted\nGitmesh-Source: abcdef0\nGitmesh-Reason: boredom\n",
            ParseError::Invalid {
                key: "Gitmesh-Reason",
                value: "boredom".into(),
            },
        ),
    ];
    for (message, want) in cases {
        assert_eq!(
            &StatusEvent::from_message(message).unwrap_err(),
            want,
            "{message}"
        );
    }
    // Every truncation of every real message: an error or an event, never a panic.
    for event in fixtures::all() {
        let message = event.to_message();
        for cut in (0..message.len()).filter(|&i| message.is_char_boundary(i)) {
            let _ = StatusEvent::from_message(&message[..cut]);
        }
    }
    // Garbage in the canary trailers.
    let message = fixtures::canary(2, 25, 50, Decision::Promote).to_message();
    for (from, to) in [
        ("p99=85ms", "p99=fast"),
        ("error-rate=0.4%", "error-rate=0.4"),
        ("25 -> 50", "25 to 50"),
        ("Gitmesh-Decision: promote", "Gitmesh-Decision: yolo"),
        ("Gitmesh-Window: 1m", "Gitmesh-Window: 1y"),
        ("max-p99-ratio=1.5", "max-p99-ratio=NaN"),
    ] {
        let broken = message.replace(from, to);
        assert_ne!(broken, message);
        assert!(StatusEvent::from_message(&broken).is_err(), "accepted {to}");
    }
}

#[test]
fn durations_format_and_parse() {
    for (ms, text) in [
        (1, "1ms"),
        (1_500, "1500ms"),
        (30_000, "30s"),
        (90_000, "90s"),
        (600_000, "10m"),
        (7_200_000, "2h"),
        (0, "0ms"),
    ] {
        assert_eq!(format_duration(ms), text);
        assert_eq!(duration("k", text), Ok(ms));
    }
    assert!(duration("k", "10").is_err());
    assert!(duration("k", "99999999999999999999h").is_err());
}

#[test]
fn trailers_are_valid_for_git_interpret_trailers() {
    for event in fixtures::all() {
        let message = event.to_message();
        let parsed = ParsedMessage::parse(&message);
        let mut child = std::process::Command::new("git")
            .args(["interpret-trailers", "--parse"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("git is installed");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(message.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let git: Vec<(String, String)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        assert_eq!(git, parsed.trailers, "{message}");
        assert!(
            git.iter()
                .any(|(k, v)| k == "Gitmesh-Event" && v == event.kind())
        );
        assert!(git.iter().any(|(k, v)| k == "Gitmesh-Source" && v == SHA));
    }
}

#[test]
fn serde_json_round_trips() {
    for event in fixtures::all() {
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            serde_json::from_str::<StatusEvent>(&json).unwrap(),
            event,
            "{json}"
        );
    }
    let json = serde_json::to_value(fixtures::superseded()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"event": "superseded", "source": SHA, "by": NEW, "wave": 1, "waves": 3})
    );
}
