//! The window's PromQL, and answers as Prometheus 2.42 writes them: the
//! `CAPTURED_*` bodies are verbatim answers of Debian's Prometheus to
//! [`WindowQuery`]'s queries during tests/canary_prometheus.rs, after the
//! canary reached 100% (so stable had no traffic in that window).

use super::*;

/// `requests()` of api v1|v2 over 4000 ms: the proxy exports every status
/// class, at 0 until one is answered.
const CAPTURED_REQUESTS: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"class":"1xx","subset":"v1"},"value":[1796363605.165,"0"]},{"metric":{"class":"1xx","subset":"v2"},"value":[1796363605.165,"0"]},{"metric":{"class":"2xx","subset":"v1"},"value":[1796363605.165,"0"]},{"metric":{"class":"2xx","subset":"v2"},"value":[1796363605.165,"140.14014014014012"]},{"metric":{"class":"3xx","subset":"v1"},"value":[1796363605.165,"0"]},{"metric":{"class":"3xx","subset":"v2"},"value":[1796363605.165,"0"]},{"metric":{"class":"4xx","subset":"v1"},"value":[1796363605.165,"0"]},{"metric":{"class":"4xx","subset":"v2"},"value":[1796363605.165,"0"]},{"metric":{"class":"5xx","subset":"v1"},"value":[1796363605.165,"0"]},{"metric":{"class":"5xx","subset":"v2"},"value":[1796363605.165,"0"]}]}}"#;

/// `p99()` of the same window: `NaN` for the subset without observations.
const CAPTURED_P99: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"subset":"v1"},"value":[1796363605.184,"NaN"]},{"metric":{"subset":"v2"},"value":[1796363605.184,"0.025593846153846155"]}]}}"#;

/// The same query over a time without samples.
const CAPTURED_EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

#[test]
fn a_captured_answer_reads_as_the_window_it_describes() {
    let w = query().stats(CAPTURED_REQUESTS, CAPTURED_P99).unwrap();
    assert_eq!(
        w.canary,
        Stats {
            requests: 140,
            errors: 0,
            p99_ms: Some(25.593846153846155),
            ..Stats::default()
        }
    );
    // Stable took no traffic: zero requests and no p99, which the gates
    // treat as too little data for the relative gates.
    assert_eq!(w.stable, Stats::default());
}

fn query() -> WindowQuery {
    WindowQuery {
        service: "api".into(),
        stable: "v1".into(),
        canary: "v2".into(),
        window_ms: 4000,
    }
}

/// A `vector` answer of `series` (`(labels JSON, value)`).
fn vector(series: &[(&str, &str)]) -> String {
    let result: Vec<String> = series
        .iter()
        .map(|(labels, v)| format!(r#"{{"metric":{labels},"value":[1796362927.515,"{v}"]}}"#))
        .collect();
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        result.join(",")
    )
}

fn counts() -> String {
    vector(&[
        (r#"{"class":"2xx","subset":"v1"}"#, "801.3333333333334"),
        (r#"{"class":"5xx","subset":"v1"}"#, "0"),
        (r#"{"class":"2xx","subset":"v2"}"#, "160.4"),
        (r#"{"class":"5xx","subset":"v2"}"#, "40.2"),
    ])
}

fn p99s() -> String {
    vector(&[
        (r#"{"subset":"v1"}"#, "0.0245"),
        (r#"{"subset":"v2"}"#, "0.0981"),
    ])
}

#[test]
fn queries_use_the_proxies_metric_names_split_by_subset() {
    let q = query();
    assert_eq!(
        q.requests(),
        "sum by (subset, class) (increase(gitmesh_requests_total\
         {direction=\"outbound\",service=\"api\",subset=~\"v1|v2\"}[4000ms]))"
    );
    assert_eq!(
        q.p99(),
        "histogram_quantile(0.99, sum by (subset, le) (increase(\
         gitmesh_request_duration_seconds_bucket\
         {direction=\"outbound\",service=\"api\",subset=~\"v1|v2\"}[4000ms])))"
    );
}

#[test]
fn label_values_are_escaped_for_promql_and_the_subset_regex() {
    let q = WindowQuery {
        service: "a\"b".into(),
        stable: "v1.0".into(),
        canary: "v2".into(),
        window_ms: 1500,
    };
    let text = q.requests();
    assert!(text.contains(r#"service="a\"b""#), "{text}");
    // `.` is a regex metacharacter: escaped once for the regex, then the
    // backslash once more for the PromQL string.
    assert!(text.contains(r#"subset=~"v1\\.0|v2""#), "{text}");
    assert!(text.contains("[1500ms]"), "{text}");
}

#[test]
fn counts_and_p99_become_the_stats_the_gates_take() {
    let w = query().stats(&counts(), &p99s()).unwrap();
    // Extrapolated increases are rounded to whole requests.
    assert_eq!((w.stable.requests, w.stable.errors), (801, 0));
    assert_eq!((w.canary.requests, w.canary.errors), (201, 40));
    let rate = w.canary.error_rate_pct().unwrap();
    assert!((rate - 19.9).abs() < 0.01, "{rate}");
    assert_eq!(w.stable.p99_ms, Some(24.5));
    let p99 = w.canary.p99_ms.unwrap();
    assert!((p99 - 98.1).abs() < 1e-9, "{p99}");
    assert_eq!(w.canary.left_out(), "");
}

#[test]
fn a_subset_without_series_has_no_requests_and_nan_is_no_latency() {
    let counts = vector(&[(r#"{"class":"2xx","subset":"v1"}"#, "50")]);
    let p99 = vector(&[
        (r#"{"subset":"v1"}"#, "NaN"),
        (r#"{"subset":"v2"}"#, "+Inf"),
    ]);
    let w = query().stats(&counts, &p99).unwrap();
    assert_eq!((w.stable.requests, w.stable.p99_ms), (50, None));
    assert_eq!(w.canary, Stats::default());
}

#[test]
fn no_request_series_at_all_is_an_error_not_zero_traffic() {
    let err = query().stats(CAPTURED_EMPTY, CAPTURED_EMPTY).unwrap_err();
    assert_eq!(
        err,
        PrometheusError::NoSeries {
            metric: "gitmesh_requests_total",
            service: "api".into(),
            window_ms: 4000
        }
    );
    assert!(err.to_string().contains("does Prometheus scrape"), "{err}");
}

#[test]
fn a_query_error_says_what_prometheus_said() {
    // Prometheus' answer (HTTP 400) to a query it cannot parse.
    let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:9: parse error: unexpected \"(\" in grouping opts, expected label"}"#;
    let err = query().stats(body, &p99s()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the query failed (bad_data): invalid parameter \"query\": 1:9: parse error: \
         unexpected \"(\" in grouping opts, expected label"
    );
    let err = query().stats(&counts(), body).unwrap_err();
    assert!(matches!(err, PrometheusError::Failed { .. }), "{err}");
}

#[test]
fn garbage_is_an_error() {
    let html = "<html><body>502 Bad Gateway</body></html>";
    let err = query().stats(html, &p99s()).unwrap_err();
    assert!(
        matches!(&err, PrometheusError::NotJson { found, .. } if found.starts_with("<html>")),
        "{err}"
    );
    // A range query's matrix is not what was asked.
    let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","instance":"127.0.0.1:19391","job":"self"},"values":[[1796362927.515,"1"]]}]}}"#;
    let err = query().stats(matrix, &p99s()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unexpected answer: result type `matrix`, expected `vector`"
    );
    // A series without the grouping labels.
    let err = query()
        .stats(&vector(&[(r#"{"subset":"v1"}"#, "3")]), &p99s())
        .unwrap_err();
    assert!(err.to_string().contains("no `class` label"), "{err}");
    // Values that are not counts.
    for bad in ["-1", "NaN", "lots"] {
        let body = vector(&[(r#"{"class":"2xx","subset":"v2"}"#, bad)]);
        let err = query().stats(&body, &p99s()).unwrap_err();
        assert!(
            matches!(&err, PrometheusError::BadValue { value, .. } if value == bad),
            "{bad}: {err}"
        );
    }
    // A success without data, and a value that is not a pair.
    let err = query()
        .stats(r#"{"status":"success"}"#, &p99s())
        .unwrap_err();
    assert!(matches!(err, PrometheusError::Shape(_)), "{err}");
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":"3"}]}}"#;
    let err = query().stats(body, &p99s()).unwrap_err();
    assert!(matches!(err, PrometheusError::Shape(_)), "{err}");
}

#[test]
fn a_verdict_on_prometheus_numbers_says_where_they_came_from() {
    let url = "http://prom:9090";
    assert_eq!(
        from_prometheus(Verdict::Pass { note: None }, url),
        Verdict::Pass {
            note: Some("metrics from Prometheus at http://prom:9090".into())
        }
    );
    assert_eq!(
        from_prometheus(
            Verdict::Pass {
                note: Some("gates relative to stable skipped".into())
            },
            url
        ),
        Verdict::Pass {
            note: Some(
                "gates relative to stable skipped; metrics from Prometheus at http://prom:9090"
                    .into()
            )
        }
    );
    assert_eq!(
        from_prometheus(
            Verdict::NoData {
                reason: "canary had 3 requests".into()
            },
            url
        ),
        Verdict::NoData {
            reason: "canary had 3 requests (metrics from Prometheus at http://prom:9090)".into()
        }
    );
    let fail = Verdict::Fail {
        gate: crate::canary::Gate::ErrorRate,
        detail: "canary error rate 20%".into(),
    };
    assert_eq!(from_prometheus(fail.clone(), url), fail);
}
