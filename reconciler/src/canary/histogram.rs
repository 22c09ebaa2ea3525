//! A cumulative latency histogram as Prometheus exposes it (`le` upper
//! bounds, counts of observations at or below each bound, a final `+Inf`
//! bucket), and the three things canary analysis does with one: sum the
//! histograms of several proxies, subtract the start of a window from its
//! end, and estimate a quantile the way PromQL's `histogram_quantile` does.

/// One `_bucket` series: observations `≤ le`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub le: f64,
    pub count: u64,
}

/// Buckets sorted by bound, the last one `+Inf`, counts non-decreasing.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    buckets: Vec<Bucket>,
}

/// Why buckets do not form a histogram, or two histograms cannot be combined.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HistogramError {
    #[error("no `le=\"+Inf\"` bucket")]
    NoInfBucket,
    #[error("bucket bound `{0}` is not a number")]
    NanBound(f64),
    #[error("two buckets with le=\"{0}\"")]
    DuplicateBound(f64),
    #[error("bucket le=\"{le}\" counts {count}, fewer than a smaller bucket's {below}")]
    NotCumulative { le: f64, count: u64, below: u64 },
    #[error("the histograms have different bucket bounds")]
    LayoutMismatch,
}

impl Histogram {
    /// Checks and sorts the buckets of one series.
    pub fn from_buckets(mut buckets: Vec<Bucket>) -> Result<Self, HistogramError> {
        if let Some(b) = buckets.iter().find(|b| b.le.is_nan()) {
            return Err(HistogramError::NanBound(b.le));
        }
        buckets.sort_by(|a, b| a.le.total_cmp(&b.le));
        for pair in buckets.windows(2) {
            if pair[0].le == pair[1].le {
                return Err(HistogramError::DuplicateBound(pair[0].le));
            }
            if pair[1].count < pair[0].count {
                return Err(HistogramError::NotCumulative {
                    le: pair[1].le,
                    count: pair[1].count,
                    below: pair[0].count,
                });
            }
        }
        match buckets.last() {
            Some(last) if last.le == f64::INFINITY => Ok(Histogram { buckets }),
            _ => Err(HistogramError::NoInfBucket),
        }
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Every observation: the `+Inf` bucket's count.
    /// The same buckets, every count zero: what a series counted before it
    /// existed.
    pub fn zeroed(&self) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|b| Bucket { le: b.le, count: 0 })
                .collect(),
        }
    }

    pub fn total(&self) -> u64 {
        self.buckets.last().map_or(0, |b| b.count)
    }

    fn same_layout(&self, other: &Histogram) -> bool {
        self.buckets.len() == other.buckets.len()
            && self
                .buckets
                .iter()
                .zip(&other.buckets)
                .all(|(a, b)| a.le == b.le)
    }

    /// The histogram of both sets of observations (several proxies' views
    /// of one subset). Only histograms with the same bounds add up.
    pub fn add(&self, other: &Histogram) -> Result<Histogram, HistogramError> {
        if !self.same_layout(other) {
            return Err(HistogramError::LayoutMismatch);
        }
        let buckets = self
            .buckets
            .iter()
            .zip(&other.buckets)
            .map(|(a, b)| Bucket {
                le: a.le,
                count: a.count.saturating_add(b.count),
            })
            .collect();
        Ok(Histogram { buckets })
    }

    /// The observations made since `start` (`self` is the later reading).
    /// `None` when a count went down or the bounds changed: the process
    /// restarted in between and the difference means nothing.
    pub fn since(&self, start: &Histogram) -> Option<Histogram> {
        if !self.same_layout(start) {
            return None;
        }
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (end, start) in self.buckets.iter().zip(&start.buckets) {
            buckets.push(Bucket {
                le: end.le,
                count: end.count.checked_sub(start.count)?,
            });
        }
        // Each bucket's increase is itself cumulative in `le`; a violation
        // can only come from a reset that happened to leave every count
        // higher, so refuse it as well.
        Histogram::from_buckets(buckets).ok()
    }

    /// The `q`-quantile (0 < q ≤ 1) in the unit of the bounds, linearly
    /// interpolated inside the bucket it falls in, exactly as PromQL's
    /// `histogram_quantile`: the first bucket starts at 0; a quantile that
    /// falls in the `+Inf` bucket is reported as the highest finite bound
    /// (so it is a lower bound of the truth). `None` without observations,
    /// without a finite bucket, or for q outside (0, 1].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(q > 0.0 && q <= 1.0) || self.buckets.len() < 2 {
            return None;
        }
        let observations = self.total() as f64;
        if observations == 0.0 {
            return None;
        }
        let rank = q * observations;
        let last = self.buckets.len() - 1;
        let b = self.buckets[..last]
            .iter()
            .position(|b| b.count as f64 >= rank)
            .unwrap_or(last);
        if b == last {
            return Some(self.buckets[last - 1].le);
        }
        let end = self.buckets[b].le;
        if b == 0 && end <= 0.0 {
            return Some(end);
        }
        let (start, below) = match b {
            0 => (0.0, 0.0),
            _ => (self.buckets[b - 1].le, self.buckets[b - 1].count as f64),
        };
        let in_bucket = self.buckets[b].count as f64 - below;
        Some(start + (end - start) * ((rank - below) / in_bucket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(pairs: &[(f64, u64)]) -> Histogram {
        Histogram::from_buckets(
            pairs
                .iter()
                .map(|&(le, count)| Bucket { le, count })
                .collect(),
        )
        .unwrap()
    }

    const INF: f64 = f64::INFINITY;

    #[test]
    fn p99_is_interpolated_inside_its_bucket() {
        // 100 observations: 50 ≤ 0.1 s, 40 in (0.1, 0.2], 10 in (0.2, 0.4].
        // Rank 99 is the 9th of the 10 in (0.2, 0.4]: 0.2 + 0.2 × 9/10.
        let h = hist(&[(0.05, 0), (0.1, 50), (0.2, 90), (0.4, 100), (INF, 100)]);
        let p99 = h.quantile(0.99).unwrap();
        assert!((p99 - 0.38).abs() < 1e-12, "{p99}");
        // Median: rank 50 is the last of the first non-empty bucket.
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 0.1).abs() < 1e-12, "{p50}");
    }

    #[test]
    fn first_bucket_starts_at_zero() {
        let h = hist(&[(0.2, 10), (INF, 10)]);
        let p90 = h.quantile(0.9).unwrap();
        assert!((p90 - 0.18).abs() < 1e-12, "{p90}");
    }

    #[test]
    fn quantile_in_the_inf_bucket_is_the_highest_finite_bound() {
        let h = hist(&[(0.1, 50), (0.2, 90), (INF, 100)]);
        assert_eq!(h.quantile(0.99), Some(0.2));
    }

    #[test]
    fn no_observations_or_no_finite_bucket_has_no_quantile() {
        assert_eq!(hist(&[(0.1, 0), (INF, 0)]).quantile(0.99), None);
        assert_eq!(hist(&[(INF, 10)]).quantile(0.99), None);
        assert_eq!(hist(&[(0.1, 1), (INF, 1)]).quantile(0.0), None);
        assert_eq!(hist(&[(0.1, 1), (INF, 1)]).quantile(f64::NAN), None);
    }

    #[test]
    fn buckets_are_sorted_and_checked() {
        let h = hist(&[(INF, 3), (0.2, 2), (0.1, 1)]);
        let les: Vec<f64> = h.buckets().iter().map(|b| b.le).collect();
        assert_eq!(les, vec![0.1, 0.2, INF]);
        let bad = |pairs: &[(f64, u64)]| {
            Histogram::from_buckets(
                pairs
                    .iter()
                    .map(|&(le, count)| Bucket { le, count })
                    .collect(),
            )
            .unwrap_err()
        };
        assert_eq!(bad(&[(0.1, 1)]), HistogramError::NoInfBucket);
        assert_eq!(bad(&[]), HistogramError::NoInfBucket);
        assert_eq!(
            bad(&[(0.1, 1), (0.1, 1), (INF, 1)]),
            HistogramError::DuplicateBound(0.1)
        );
        assert!(matches!(
            bad(&[(0.1, 5), (INF, 3)]),
            HistogramError::NotCumulative {
                count: 3,
                below: 5,
                ..
            }
        ));
        assert!(matches!(
            bad(&[(f64::NAN, 5), (INF, 5)]),
            HistogramError::NanBound(_)
        ));
    }

    #[test]
    fn add_sums_bucket_by_bucket_and_refuses_other_bounds() {
        let a = hist(&[(0.1, 1), (INF, 2)]);
        let b = hist(&[(0.1, 3), (INF, 7)]);
        assert_eq!(a.add(&b).unwrap(), hist(&[(0.1, 4), (INF, 9)]));
        let c = hist(&[(0.2, 3), (INF, 7)]);
        assert_eq!(a.add(&c), Err(HistogramError::LayoutMismatch));
    }

    #[test]
    fn since_subtracts_and_detects_resets() {
        let start = hist(&[(0.1, 10), (INF, 12)]);
        let end = hist(&[(0.1, 15), (INF, 20)]);
        assert_eq!(end.since(&start), Some(hist(&[(0.1, 5), (INF, 8)])));
        // A restarted process counts from zero again.
        let restarted = hist(&[(0.1, 2), (INF, 3)]);
        assert_eq!(restarted.since(&start), None);
        // Increases that are not cumulative can only come from a reset.
        let odd = hist(&[(0.1, 19), (INF, 20)]);
        assert_eq!(odd.since(&start), None);
        assert_eq!(end.since(&hist(&[(0.2, 0), (INF, 0)])), None);
    }
}
