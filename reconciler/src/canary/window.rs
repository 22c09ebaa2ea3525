//! One analysis window of one subset: from every caller proxy's cumulative
//! [`Sample`]s at the window's start and end, the requests, errors and p99
//! latency of the window alone.
//!
//! Each proxy's increase is computed on its own, then the increases are
//! summed (as PromQL's `sum(increase(…))`). A proxy that restarted during the
//! window (a counter went down, or its buckets changed) or that has a
//! reading at only one end contributes nothing: no data is better than
//! negative or inflated numbers, and the gates turn too little data into a
//! hold, never a promotion.

use std::collections::{BTreeMap, BTreeSet};

use super::scrape::{Sample, Scrape};
use crate::status::Evidence;

/// What one subset did over a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    /// 99th percentile latency in milliseconds, from the histogram buckets;
    /// `None` without observations. A p99 beyond the last finite bucket is
    /// reported as that bucket's bound (as `histogram_quantile` does).
    pub p99_ms: Option<f64>,
    /// Proxies whose increase is counted.
    pub observers: u32,
    /// Proxies left out because their counters reset during the window.
    pub resets: u32,
    /// Proxies left out because they had a reading at only one end.
    pub missing: u32,
}

impl Stats {
    /// The stats of an increase (a [`Sample`] over a window).
    pub fn of(window: &Sample) -> Stats {
        Stats {
            requests: window.requests,
            errors: window.errors,
            p99_ms: window
                .latency
                .as_ref()
                .and_then(|h| h.quantile(0.99))
                .map(|s| s * 1_000.0),
            observers: 0,
            resets: 0,
            missing: 0,
        }
    }

    /// Errors as a percentage of requests (0–100); `None` without requests.
    pub fn error_rate_pct(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 * 100.0 / self.requests as f64)
    }

    /// The evidence recorded in a status commit.
    pub fn evidence(&self) -> Evidence {
        Evidence {
            requests: self.requests,
            error_rate_pct: self.error_rate_pct(),
            p99_ms: self.p99_ms,
        }
    }

    /// `" (left out: 1 proxy restarted during the window)"`, or empty when
    /// every proxy counted; appended to "not enough data" reasons.
    pub fn left_out(&self) -> String {
        let mut parts = Vec::new();
        if self.resets > 0 {
            parts.push(format!(
                "{} restarted during the window",
                proxies(self.resets)
            ));
        }
        if self.missing > 0 {
            parts.push(format!(
                "{} read at only one end of the window",
                proxies(self.missing)
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" (left out: {})", parts.join(", "))
        }
    }
}

fn proxies(n: u32) -> String {
    format!("{n} {}", if n == 1 { "proxy" } else { "proxies" })
}

/// The window's stats from each observer's (start, end) readings of one
/// subset. An observer with neither reading is not one (it does not call
/// this subset) and is not counted anywhere.
pub fn subset_window<'a, I>(readings: I) -> Stats
where
    I: IntoIterator<Item = (Option<&'a Sample>, Option<&'a Sample>)>,
{
    let mut sum = Sample::default();
    let (mut observers, mut resets, mut missing) = (0, 0, 0);
    for reading in readings {
        match reading {
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => missing += 1,
            (Some(start), Some(end)) => match end.since(start).map(|d| sum.add(&d)) {
                Some(Ok(total)) => {
                    sum = total;
                    observers += 1;
                }
                // A proxy whose buckets differ from the others' counts as
                // restarted (with another version of the proxy).
                None | Some(Err(_)) => resets += 1,
            },
        }
    }
    Stats {
        observers,
        resets,
        missing,
        ..Stats::of(&sum)
    }
}

/// The window's stats of `service`'s `subset` from every caller proxy's
/// page at the window's start and end, keyed by proxy id. A proxy read at
/// the start whose page had no series for the subset had counted nothing
/// for it yet (a subset that just started taking traffic): it counts from
/// zero rather than being left out.
pub fn window_stats(
    start: &BTreeMap<String, Scrape>,
    end: &BTreeMap<String, Scrape>,
    service: &str,
    subset: &str,
) -> Stats {
    let ids: Vec<&String> = start
        .keys()
        .chain(end.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    fn series<'p>(
        pages: &'p BTreeMap<String, Scrape>,
        id: &str,
        service: &str,
        subset: &str,
    ) -> Option<&'p Sample> {
        pages.get(id).and_then(|s| s.get(service, subset))
    }
    let read = |pages, id: &String| series(pages, id, service, subset);
    let zeros: Vec<Option<Sample>> = ids
        .iter()
        .map(|id| match (start.get(*id), read(end, id)) {
            (Some(page), Some(last)) if page.get(service, subset).is_none() => Some(last.zeroed()),
            _ => None,
        })
        .collect();
    subset_window(
        ids.iter()
            .zip(&zeros)
            .map(|(id, zero)| (zero.as_ref().or_else(|| read(start, id)), read(end, id))),
    )
}

/// Whether a window measured nothing: no proxy was read at both of its ends
/// for either subset, though some were read at one end (a caller's sidecar
/// that was not up yet when the window opened). Such a window is not
/// judged; a new one starts from the later reading.
pub fn unanchored(stable: &Stats, canary: &Stats) -> bool {
    stable.observers + canary.observers == 0 && stable.missing + canary.missing > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::histogram::{Bucket, Histogram};

    const INF: f64 = f64::INFINITY;

    fn sample(requests: u64, errors: u64, buckets: &[(f64, u64)]) -> Sample {
        Sample {
            requests,
            errors,
            latency: Some(
                Histogram::from_buckets(
                    buckets
                        .iter()
                        .map(|&(le, count)| Bucket { le, count })
                        .collect(),
                )
                .unwrap(),
            ),
        }
    }

    #[test]
    fn window_is_the_increase_summed_over_proxies() {
        // Proxy a: 100 requests before the window, 100 more during it.
        let a0 = sample(100, 1, &[(0.1, 90), (0.2, 100), (INF, 100)]);
        let a1 = sample(200, 11, &[(0.1, 150), (0.2, 190), (INF, 200)]);
        // Proxy b: 100 requests during the window.
        let b0 = sample(0, 0, &[(0.1, 0), (0.2, 0), (INF, 0)]);
        let b1 = sample(100, 10, &[(0.1, 60), (0.2, 100), (INF, 100)]);
        let s = subset_window([(Some(&a0), Some(&a1)), (Some(&b0), Some(&b1))]);
        assert_eq!((s.requests, s.errors, s.observers), (200, 20, 2));
        assert_eq!(s.error_rate_pct(), Some(10.0));
        // Window buckets: ≤0.1: 60+60=120, ≤0.2: 90+100=190, +Inf: 200.
        // Rank 198 is past 190: it falls in +Inf, so p99 = 0.2 s.
        assert_eq!(s.p99_ms, Some(200.0));
        assert_eq!(s.left_out(), "");
    }

    #[test]
    fn p99_interpolates_the_window_buckets() {
        let start = sample(
            1000,
            0,
            &[(0.05, 500), (0.1, 900), (0.2, 1000), (INF, 1000)],
        );
        // During the window: 100 ≤ 50 ms, 80 in (50, 100], 20 in (100, 200].
        let end = sample(
            1200,
            0,
            &[(0.05, 600), (0.1, 1080), (0.2, 1200), (INF, 1200)],
        );
        let s = subset_window([(Some(&start), Some(&end))]);
        // Rank 0.99 × 200 = 198 → 18th of the 20 in (100, 200]: 100 + 100 × 18/20.
        let p99 = s.p99_ms.unwrap();
        assert!((p99 - 190.0).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn a_counter_reset_means_no_data_for_that_proxy() {
        let a0 = sample(500, 5, &[(0.1, 500), (INF, 500)]);
        let a1 = sample(30, 0, &[(0.1, 30), (INF, 30)]); // restarted
        let b0 = sample(10, 0, &[(0.1, 10), (INF, 10)]);
        let b1 = sample(50, 4, &[(0.1, 40), (INF, 50)]);
        let s = subset_window([(Some(&a0), Some(&a1)), (Some(&b0), Some(&b1))]);
        assert_eq!((s.requests, s.errors), (40, 4));
        assert_eq!((s.observers, s.resets, s.missing), (1, 1, 0));
        assert_eq!(
            s.left_out(),
            " (left out: 1 proxy restarted during the window)"
        );
        // Only restarted proxies: nothing at all, never negative numbers.
        let s = subset_window([(Some(&a0), Some(&a1))]);
        assert_eq!((s.requests, s.error_rate_pct(), s.p99_ms), (0, None, None));
    }

    #[test]
    fn a_histogram_reset_alone_also_counts_as_a_restart() {
        let a0 = sample(10, 0, &[(0.1, 10), (INF, 10)]);
        let a1 = sample(20, 0, &[(0.1, 5), (INF, 20)]);
        let s = subset_window([(Some(&a0), Some(&a1))]);
        assert_eq!((s.requests, s.resets), (0, 1));
    }

    #[test]
    fn a_reading_at_one_end_only_is_left_out() {
        let a = sample(10, 0, &[(0.1, 10), (INF, 10)]);
        let s = subset_window([(None, Some(&a)), (Some(&a), None), (None, None)]);
        assert_eq!((s.requests, s.observers, s.missing), (0, 0, 2));
        assert_eq!(
            s.left_out(),
            " (left out: 2 proxies read at only one end of the window)"
        );
    }

    #[test]
    fn proxies_with_other_buckets_are_left_out() {
        let a0 = sample(0, 0, &[(0.1, 0), (INF, 0)]);
        let a1 = sample(10, 0, &[(0.1, 10), (INF, 10)]);
        let b0 = sample(0, 0, &[(0.5, 0), (INF, 0)]);
        let b1 = sample(10, 0, &[(0.5, 10), (INF, 10)]);
        let s = subset_window([(Some(&a0), Some(&a1)), (Some(&b0), Some(&b1))]);
        assert_eq!((s.requests, s.observers, s.resets), (10, 1, 1));
    }

    #[test]
    fn window_stats_reads_pages_by_proxy() {
        let page = |ok: u64, failed: u64| {
            let labels = "direction=\"outbound\",service=\"reviews\",subset=\"v2\"";
            Scrape::parse(&format!(
                "gitmesh_requests_total{{{labels},class=\"2xx\"}} {ok}\n\
                 gitmesh_requests_total{{{labels},class=\"5xx\"}} {failed}\n\
                 gitmesh_request_duration_seconds_bucket{{{labels},le=\"0.1\"}} {}\n\
                 gitmesh_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n",
                ok + failed,
                ok + failed
            ))
            .unwrap()
        };
        let start = BTreeMap::from([
            ("productpage-1".to_string(), page(10, 0)),
            ("productpage-2".to_string(), page(5, 0)),
        ]);
        let end = BTreeMap::from([
            ("productpage-1".to_string(), page(170, 40)),
            ("productpage-2".to_string(), page(5, 0)),
            ("productpage-3".to_string(), page(1, 0)),
        ]);
        let s = window_stats(&start, &end, "reviews", "v2");
        assert_eq!((s.requests, s.errors), (200, 40));
        assert_eq!(s.error_rate_pct(), Some(20.0));
        assert_eq!((s.observers, s.missing), (2, 1));
        let none = window_stats(&start, &end, "reviews", "v1");
        assert_eq!(none, Stats::default());
    }

    #[test]
    fn a_subset_new_on_a_page_read_at_the_start_counts_from_zero() {
        let labels = |subset: &str| {
            format!("direction=\"outbound\",service=\"reviews\",subset=\"{subset}\"")
        };
        let series = |subset: &str, n: u64| {
            let l = labels(subset);
            format!(
                "gitmesh_requests_total{{{l},class=\"2xx\"}} {n}\n\
                 gitmesh_request_duration_seconds_bucket{{{l},le=\"0.1\"}} {n}\n\
                 gitmesh_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {n}\n"
            )
        };
        // The caller was read at both ends; v2 appeared in between.
        let start = BTreeMap::from([(
            "web-1".to_string(),
            Scrape::parse(&series("v1", 50)).unwrap(),
        )]);
        let end = BTreeMap::from([(
            "web-1".to_string(),
            Scrape::parse(&(series("v1", 80) + &series("v2", 30))).unwrap(),
        )]);
        let v2 = window_stats(&start, &end, "reviews", "v2");
        assert_eq!((v2.requests, v2.observers, v2.missing), (30, 1, 0));
        // The latency histogram counts from zero too (p99 interpolated in
        // the first bucket, as histogram_quantile does).
        assert!(v2.p99_ms.is_some_and(|p| (p - 99.0).abs() < 1e-9), "{v2:?}");
        let v1 = window_stats(&start, &end, "reviews", "v1");
        assert_eq!((v1.requests, v1.observers), (30, 1));
        // A caller with no page at the start is still left out.
        let late = window_stats(&BTreeMap::new(), &end, "reviews", "v2");
        assert_eq!((late.requests, late.observers, late.missing), (0, 0, 1));
        assert!(unanchored(
            &window_stats(&BTreeMap::new(), &end, "reviews", "v1"),
            &late
        ));
    }

    #[test]
    fn only_a_window_read_at_one_end_everywhere_is_unanchored() {
        let stats = |observers, missing| Stats {
            observers,
            missing,
            ..Stats::default()
        };
        assert!(unanchored(&stats(0, 1), &stats(0, 1)));
        assert!(unanchored(&stats(0, 1), &stats(0, 0)));
        // Some evidence (even of zero requests) is judged.
        assert!(!unanchored(&stats(1, 1), &stats(0, 1)));
        // No caller at all: judged (and held for too little data).
        assert!(!unanchored(&stats(0, 0), &stats(0, 0)));
    }

    #[test]
    fn evidence_carries_the_numbers() {
        let s = Stats {
            requests: 200,
            errors: 1,
            p99_ms: Some(85.0),
            ..Stats::default()
        };
        assert_eq!(
            s.evidence(),
            Evidence {
                requests: 200,
                error_rate_pct: Some(0.5),
                p99_ms: Some(85.0)
            }
        );
        assert_eq!(Stats::default().evidence().error_rate_pct, None);
    }
}
