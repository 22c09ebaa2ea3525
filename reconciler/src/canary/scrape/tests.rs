use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram as PromHistogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::*;

// The proxy's label sets and families (proxy/src/metrics.rs), so this test
// reads exactly what a real sidecar's `/metrics` writes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrafficLabels {
    direction: &'static str,
    service: String,
    subset: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    direction: &'static str,
    service: String,
    subset: String,
    class: &'static str,
}

fn latency_histogram() -> PromHistogram {
    PromHistogram::new(exponential_buckets(0.000_05, 2.0, 21))
}

struct FakeProxy {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<TrafficLabels, PromHistogram, fn() -> PromHistogram>,
}

impl FakeProxy {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("gitmesh");
        let requests = Family::default();
        registry.register("requests", "Requests by status class", requests.clone());
        let latency = Family::new_with_constructor(latency_histogram as fn() -> PromHistogram);
        registry.register(
            "request_duration_seconds",
            "Time to response headers, including retries",
            latency.clone(),
        );
        let retries: Family<TrafficLabels, Counter> = Family::default();
        registry.register("retries", "Retries sent", retries.clone());
        retries
            .get_or_create(&TrafficLabels {
                direction: "outbound",
                service: "reviews".into(),
                subset: "v1".into(),
            })
            .inc();
        FakeProxy {
            registry,
            requests,
            latency,
        }
    }

    fn record(&self, direction: &'static str, subset: &str, status: u16, elapsed: Duration) {
        let class = ["1xx", "2xx", "3xx", "4xx", "5xx"][usize::from(status / 100).clamp(1, 5) - 1];
        self.requests
            .get_or_create(&RequestLabels {
                direction,
                service: "reviews".into(),
                subset: subset.into(),
                class,
            })
            .inc();
        self.latency
            .get_or_create(&TrafficLabels {
                direction,
                service: "reviews".into(),
                subset: subset.into(),
            })
            .observe(elapsed.as_secs_f64());
    }

    fn page(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).unwrap();
        out
    }
}

#[test]
fn reads_what_the_proxy_writes() {
    let proxy = FakeProxy::new();
    proxy.record("outbound", "v1", 200, Duration::from_millis(1));
    proxy.record("outbound", "v1", 200, Duration::from_millis(3));
    proxy.record("outbound", "v1", 503, Duration::from_micros(300));
    proxy.record("outbound", "v2", 404, Duration::from_millis(2));
    // The inbound side is the service's own view, not a caller's.
    proxy.record("inbound", "v1", 500, Duration::from_millis(1));
    let page = proxy.page();
    let scrape = Scrape::parse(&page).unwrap();

    let v1 = scrape.get("reviews", "v1").unwrap();
    assert_eq!((v1.requests, v1.errors), (3, 1), "{page}");
    let h = v1.latency.as_ref().unwrap();
    assert_eq!(h.buckets().len(), 22);
    assert_eq!(h.buckets()[0].le, 0.000_05);
    assert_eq!(h.total(), 3);
    // 300µs ≤ 0.0004; 1ms ≤ 0.0016; 3ms ≤ 0.0032.
    let at = |le: f64| h.buckets().iter().find(|b| b.le == le).unwrap().count;
    assert_eq!((at(0.0004), at(0.0016), at(0.0032)), (1, 2, 3));

    let v2 = scrape.get("reviews", "v2").unwrap();
    assert_eq!((v2.requests, v2.errors), (1, 0));
    assert_eq!(scrape.get("reviews", "v3"), None);
    assert_eq!(scrape.iter().count(), 2);
}

#[test]
fn reads_the_classic_text_format_with_escapes_and_timestamps() {
    let page = "\
# HELP gitmesh_requests_total Requests by status class.
# TYPE gitmesh_requests_total counter
gitmesh_requests_total{direction=\"outbound\",service=\"we\\\"ird\\\\svc\",subset=\"a,b=}\\n\",class=\"2xx\"} 98 1700000000000
gitmesh_requests_total{ class = \"5xx\" , subset=\"a,b=}\\n\", service=\"we\\\"ird\\\\svc\",direction=\"outbound\", } 2e0
\tgitmesh_request_duration_seconds_bucket{direction=\"outbound\",service=\"we\\\"ird\\\\svc\",subset=\"a,b=}\\n\",le=\"+Inf\"} 100
gitmesh_request_duration_seconds_bucket{direction=\"outbound\",service=\"we\\\"ird\\\\svc\",subset=\"a,b=}\\n\",le=\"0.1\"} 60 # {trace_id=\"x\"} 0.05
gitmesh_request_duration_seconds_sum{direction=\"outbound\",service=\"we\\\"ird\\\\svc\",subset=\"a,b=}\\n\"} 7.5
gitmesh_request_duration_seconds_count{direction=\"outbound\",service=\"we\\\"ird\\\\svc\",subset=\"a,b=}\\n\"} 100
process_start_time_seconds 1.7e9
other_gauge{x=\"\"} NaN
other_gauge{x=\"y\"} -Inf
";
    let scrape = Scrape::parse(page).unwrap();
    let s = scrape.get("we\"ird\\svc", "a,b=}\n").unwrap();
    assert_eq!((s.requests, s.errors), (100, 2));
    assert_eq!(s.latency.as_ref().unwrap().total(), 100);
}

#[test]
fn stops_at_eof() {
    let page = "gitmesh_requests_total{direction=\"outbound\",service=\"s\",subset=\"v1\",class=\"2xx\"} 4\n# EOF\nthis is not read\n";
    let s = Scrape::parse(page).unwrap();
    assert_eq!(s.get("s", "v1").unwrap().requests, 4);
}

#[test]
fn an_empty_page_is_an_empty_reading() {
    assert_eq!(Scrape::parse("").unwrap(), Scrape::default());
    assert_eq!(Scrape::parse("# EOF\n").unwrap(), Scrape::default());
}

fn err(page: &str) -> ScrapeError {
    Scrape::parse(page).unwrap_err()
}

const OK_LABELS: &str = "direction=\"outbound\",service=\"s\",subset=\"v1\"";

#[test]
fn garbage_is_a_typed_error() {
    assert!(matches!(
        err("<html><body>502 Bad Gateway</body></html>"),
        ScrapeError::Syntax { line: 1, .. }
    ));
    assert!(matches!(
        err("{\"error\": \"oops\"}"),
        ScrapeError::Syntax { line: 1, .. }
    ));
    // Truncated in the middle of a label value.
    assert!(matches!(
        err("# TYPE x counter\ngitmesh_requests_total{direction=\"outb"),
        ScrapeError::Syntax { line: 2, .. }
    ));
    assert!(matches!(
        err("gitmesh_requests_total{direction=\"outbound\"}"),
        ScrapeError::Syntax { line: 1, .. }
    ));
    assert!(matches!(err("metric abc"), ScrapeError::Syntax { .. }));
    assert!(matches!(err("metric 1 2 3"), ScrapeError::Syntax { .. }));
    assert!(matches!(
        err("metric{a=\"\\x\"} 1"),
        ScrapeError::Syntax { .. }
    ));
    assert!(matches!(err("metric{a=b} 1"), ScrapeError::Syntax { .. }));
    assert!(matches!(
        err("metric{a=\"1\",a=\"2\"} 1"),
        ScrapeError::Syntax { .. }
    ));
    assert!(matches!(
        err("metric{a=\"1\" b=\"2\"} 1"),
        ScrapeError::Syntax { .. }
    ));
    assert!(matches!(err("9metric 1"), ScrapeError::Syntax { .. }));
    let e = err("metric{a=\"1\"}1");
    assert_eq!(
        e.to_string(),
        "line 1: expected a space before the value, found `1`"
    );
}

#[test]
fn bad_values_of_our_series_are_errors() {
    let counter =
        |labels: &str, value: &str| format!("gitmesh_requests_total{{{labels}}} {value}\n");
    let with_class = format!("{OK_LABELS},class=\"2xx\"");
    for value in ["-1", "1.5", "NaN", "+Inf", "1e300"] {
        assert!(
            matches!(
                err(&counter(&with_class, value)),
                ScrapeError::BadCount { line: 1, .. }
            ),
            "{value}"
        );
    }
    assert_eq!(
        err(&counter(OK_LABELS, "1")),
        ScrapeError::MissingLabel {
            line: 1,
            metric: REQUESTS_METRIC,
            label: "class"
        }
    );
    assert!(matches!(
        err(&counter("service=\"s\",subset=\"v1\",class=\"2xx\"", "1")),
        ScrapeError::MissingLabel {
            label: "direction",
            ..
        }
    ));
    let twice = counter(&with_class, "1") + &counter(&with_class, "2");
    assert!(matches!(
        err(&twice),
        ScrapeError::Duplicate { line: 2, .. }
    ));

    let bucket = |le: &str, value: &str| {
        format!("gitmesh_request_duration_seconds_bucket{{{OK_LABELS},le=\"{le}\"}} {value}\n")
    };
    assert!(matches!(
        err(&bucket("fast", "1")),
        ScrapeError::BadBound { .. }
    ));
    assert!(matches!(
        err(&bucket("NaN", "1")),
        ScrapeError::BadBound { .. }
    ));
    let no_inf = bucket("0.1", "1");
    assert!(matches!(
        err(&no_inf),
        ScrapeError::Histogram {
            problem: HistogramError::NoInfBucket,
            ..
        }
    ));
    let shrinking = bucket("0.1", "5") + &bucket("+Inf", "3");
    assert!(matches!(
        err(&shrinking),
        ScrapeError::Histogram {
            problem: HistogramError::NotCumulative { .. },
            ..
        }
    ));
    let dup = bucket("0.1", "1") + &bucket("1e-1", "1") + &bucket("+Inf", "1");
    assert!(matches!(err(&dup), ScrapeError::Duplicate { line: 2, .. }));
}

#[test]
fn other_families_and_directions_are_not_checked_beyond_syntax() {
    let page = "gitmesh_requests_total{direction=\"inbound\",service=\"s\",subset=\"\",class=\"2xx\"} 1.5\nsomething_else{le=\"soon\"} 3\n";
    assert_eq!(Scrape::parse(page).unwrap(), Scrape::default());
}

#[test]
fn no_prefix_of_a_real_page_panics() {
    let proxy = FakeProxy::new();
    proxy.record("outbound", "v1", 200, Duration::from_millis(1));
    proxy.record("outbound", "v2é", 500, Duration::from_millis(9));
    let page = proxy.page();
    for (end, _) in page.char_indices() {
        let _ = Scrape::parse(&page[..end]);
    }
    for bytes in [
        &b"\xff\xfe garbage"[..],
        b"\0\0\0",
        b"{}}}{{",
        b"a{=\"\"} 1",
    ] {
        let _ = Scrape::parse(&String::from_utf8_lossy(bytes));
    }
}

#[test]
fn proxies_add_up() {
    let a = FakeProxy::new();
    let b = FakeProxy::new();
    a.record("outbound", "v2", 200, Duration::from_millis(1));
    a.record("outbound", "v2", 500, Duration::from_millis(1));
    b.record("outbound", "v2", 200, Duration::from_millis(5));
    b.record("outbound", "v1", 200, Duration::from_millis(5));
    let a = Scrape::parse(&a.page()).unwrap();
    let b = Scrape::parse(&b.page()).unwrap();
    let sum = a.merge(&b).unwrap();
    let v2 = sum.get("reviews", "v2").unwrap();
    assert_eq!((v2.requests, v2.errors), (3, 1));
    assert_eq!(v2.latency.as_ref().unwrap().total(), 3);
    assert_eq!(sum.get("reviews", "v1").unwrap().requests, 1);
}

#[test]
fn since_is_the_increase_or_none_after_a_restart() {
    let proxy = FakeProxy::new();
    proxy.record("outbound", "v2", 200, Duration::from_millis(1));
    let start = Scrape::parse(&proxy.page()).unwrap();
    proxy.record("outbound", "v2", 500, Duration::from_millis(1));
    proxy.record("outbound", "v2", 200, Duration::from_millis(1));
    let end = Scrape::parse(&proxy.page()).unwrap();
    let (start, end) = (
        start.get("reviews", "v2").unwrap(),
        end.get("reviews", "v2").unwrap(),
    );
    let d = end.since(start).unwrap();
    assert_eq!((d.requests, d.errors), (2, 1));
    assert_eq!(d.latency.unwrap().total(), 2);
    // Read backwards, the counters went down: a restart.
    assert_eq!(start.since(end), None);
}
