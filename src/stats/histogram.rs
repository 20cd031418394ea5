//! A fixed-bucket duration histogram built from relaxed atomics.
//!
//! Owns the bucket bounds and the per-bucket counts for request durations. Recording is three
//! relaxed `fetch_add`s and never locks, so a connection task can call it on every request.
//! Buckets are stored non-cumulatively (one count per interval) and made cumulative only in
//! [`HistogramSnapshot`], which is what the Prometheus exposition wants (`le` buckets).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the duration buckets, in microseconds (1 ms … 60 s). A request slower than
/// the last bound lands in the implicit `+Inf` bucket. The spread follows the usual Prometheus
/// latency layout: fine below 100 ms where forwarded requests live, coarse above for slow
/// origins and long downloads.
pub const BUCKET_BOUNDS_MICROS: [u64; 14] = [
    1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Number of buckets including the final `+Inf` one.
const BUCKET_COUNT: usize = BUCKET_BOUNDS_MICROS.len() + 1;

/// Live histogram: one counter per bucket plus running sum and count.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    buckets: [AtomicU64; BUCKET_COUNT],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// Plain numbers taken from a [`DurationHistogram`] at one moment. Serialised (for `/stats`)
/// as `{"buckets":[{"le_seconds":0.001,"count":n},…,{"le_seconds":null,"count":n}],
/// "sum_seconds":s,"count":n}` with cumulative counts and `null` for `+Inf`, because
/// `u64::MAX` is not a number JavaScript can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// `(upper bound in microseconds, cumulative count)`; the last entry's bound is `u64::MAX`
    /// and stands for `+Inf`, so its count equals `count` when no recording raced the snapshot.
    pub cumulative: Vec<(u64, u64)>,
    /// Sum of every recorded duration, in microseconds.
    pub sum_micros: u64,
    /// Number of recorded durations.
    pub count: u64,
}

impl DurationHistogram {
    /// Records one duration. Durations beyond `u64::MAX` microseconds saturate.
    pub fn record(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let index = BUCKET_BOUNDS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKET_BOUNDS_MICROS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the counters. Each load is relaxed, so a snapshot taken while requests finish may
    /// be off by the few in flight; the `+Inf` bucket is made equal to the summed buckets so
    /// the exposition stays self-consistent (`_bucket{le="+Inf"}` is the bucket total).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let mut cumulative = Vec::with_capacity(BUCKET_COUNT);
        for (index, bucket) in self.buckets.iter().enumerate() {
            running = running.saturating_add(bucket.load(Ordering::Relaxed));
            let bound = BUCKET_BOUNDS_MICROS.get(index).copied().unwrap_or(u64::MAX);
            cumulative.push((bound, running));
        }
        HistogramSnapshot {
            cumulative,
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
            count: running,
        }
    }
}

impl HistogramSnapshot {
    /// Estimated duration below which `quantile` (0.0–1.0) of recordings fall: the upper bound
    /// of the first bucket that reaches that share, or `None` with no recordings or when the
    /// share lands in `+Inf`. Coarse by design; it feeds the one-line summary only.
    pub fn quantile_bound_micros(&self, quantile: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let wanted = (self.count as f64 * quantile.clamp(0.0, 1.0))
            .ceil()
            .max(1.0) as u64;
        self.cumulative
            .iter()
            .find(|(_, count)| *count >= wanted)
            .map(|(bound, _)| *bound)
            .filter(|&bound| bound != u64::MAX)
    }
}

#[derive(Serialize)]
struct BucketView {
    le_seconds: Option<f64>,
    count: u64,
}

#[derive(Serialize)]
struct HistogramView {
    buckets: Vec<BucketView>,
    sum_seconds: f64,
    count: u64,
}

impl Serialize for HistogramSnapshot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let buckets = self
            .cumulative
            .iter()
            .map(|&(bound, count)| BucketView {
                le_seconds: (bound != u64::MAX).then(|| bound as f64 / 1e6),
                count,
            })
            .collect();
        HistogramView {
            buckets,
            sum_seconds: self.sum_micros as f64 / 1e6,
            count: self.count,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_bucket_whose_bound_covers_them() {
        let histogram = DurationHistogram::default();
        histogram.record(Duration::from_micros(1_000)); // exactly on the first bound
        histogram.record(Duration::from_micros(1_001)); // just above: second bucket
        histogram.record(Duration::from_millis(30)); // 25 ms < 30 ms <= 50 ms
        histogram.record(Duration::from_secs(3600)); // +Inf
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 4);
        assert_eq!(snapshot.sum_micros, 1_000 + 1_001 + 30_000 + 3_600_000_000);
        let count_at = |bound: u64| {
            snapshot
                .cumulative
                .iter()
                .find(|(b, _)| *b == bound)
                .map(|(_, c)| *c)
        };
        assert_eq!(count_at(1_000), Some(1));
        assert_eq!(count_at(5_000), Some(2));
        assert_eq!(count_at(25_000), Some(2));
        assert_eq!(count_at(50_000), Some(3));
        assert_eq!(count_at(60_000_000), Some(3));
        assert_eq!(count_at(u64::MAX), Some(4));
        assert_eq!(snapshot.cumulative.len(), BUCKET_COUNT);
    }

    #[test]
    fn cumulative_counts_never_decrease() {
        let histogram = DurationHistogram::default();
        for millis in [0u64, 2, 7, 7, 90, 400, 1200, 70_000] {
            histogram.record(Duration::from_millis(millis));
        }
        let snapshot = histogram.snapshot();
        let counts: Vec<u64> = snapshot.cumulative.iter().map(|(_, c)| *c).collect();
        assert!(
            counts.windows(2).all(|pair| pair[0] <= pair[1]),
            "{counts:?}"
        );
        assert_eq!(counts.last().copied(), Some(8));
    }

    #[test]
    fn quantile_bound_picks_the_first_bucket_reaching_the_share() {
        let histogram = DurationHistogram::default();
        assert_eq!(histogram.snapshot().quantile_bound_micros(0.5), None);
        for _ in 0..9 {
            histogram.record(Duration::from_millis(3));
        }
        histogram.record(Duration::from_millis(700));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.quantile_bound_micros(0.5), Some(5_000));
        assert_eq!(snapshot.quantile_bound_micros(0.9), Some(5_000));
        assert_eq!(snapshot.quantile_bound_micros(0.99), Some(1_000_000));
    }
}
