//! The recent past as a time series: one point per sample, the last 15 minutes of them.
//!
//! Owns the ring of points and the arithmetic that turns two readings of the counters into
//! a point: rates per second over the interval between them (requests by outcome, bytes
//! each way), the gauges at the later reading (connections, tunnels), and latency
//! percentiles over the requests that finished in the interval, from the difference of two
//! histogram readings. It does no I/O and reads no clock; the sampler in `metrics` says
//! when each reading was taken.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::ring::Ring;
use super::{HistogramSnapshot, RequestCounts, Results, Snapshot};

/// Time between two points.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// How far back the series reaches.
pub const SERIES_SPAN: Duration = Duration::from_secs(15 * 60);
/// Points kept: the span over the interval (180).
pub const SERIES_POINTS: usize = (SERIES_SPAN.as_secs() / SAMPLE_INTERVAL.as_secs()) as usize;

/// One point of the series: what happened between the previous reading and this one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// When the reading was taken, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Finished exchanges per second, by result: what the dashboard draws.
    pub results: Results<f64>,
    /// Finished exchanges per second, by outcome (the access log's words).
    pub requests: Rates,
    /// Bytes per second read from clients (requests, uploads).
    pub bytes_from_clients: f64,
    /// Bytes per second written to clients (responses, downloads).
    pub bytes_to_clients: f64,
    /// Client connections and tunnels open at the reading.
    pub connections: u64,
    pub tunnels: u64,
    /// Latency estimates in milliseconds over the requests that finished in the interval
    /// (interpolated within the histogram's buckets); `None` when none did.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Per-second rates, one per outcome.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rates {
    pub allowed: f64,
    pub blocked: f64,
    pub auth_failed: f64,
    pub malformed: f64,
    pub upstream_error: f64,
    pub tunnel: f64,
}

/// The last points, and the reading the next point is measured from.
#[derive(Debug)]
pub struct Series {
    points: Ring<Point>,
    last: Option<(Instant, Snapshot)>,
}

impl Default for Series {
    fn default() -> Self {
        Series::with_capacity(SERIES_POINTS)
    }
}

impl Series {
    pub fn with_capacity(points: usize) -> Series {
        Series {
            points: Ring::with_capacity(points),
            last: None,
        }
    }

    /// Takes a reading made at `at` (`unix_ms` on the wall clock). The first reading only
    /// sets the baseline; each later one adds a point, unless no time passed.
    pub fn sample(&mut self, snapshot: Snapshot, at: Instant, unix_ms: u64) {
        if let Some((then, before)) = &self.last {
            let seconds = at.saturating_duration_since(*then).as_secs_f64();
            if seconds <= 0.0 {
                return;
            }
            let point = point_between(before, &snapshot, seconds, unix_ms);
            self.points.push(point);
        }
        self.last = Some((at, snapshot));
    }

    /// The points, oldest first.
    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }
}

fn point_between(before: &Snapshot, after: &Snapshot, seconds: f64, unix_ms: u64) -> Point {
    // Three decimals are plenty for a chart and keep the JSON short.
    let rate = |then: u64, now: u64| {
        let per_second = now.saturating_sub(then) as f64 / seconds;
        (per_second * 1000.0).round() / 1000.0
    };
    let requests = rates(&before.requests, &after.requests, rate);
    let results =
        Results::of(&after.requests).since(&Results::of(&before.requests), |n| rate(0, n));
    let durations = difference(&before.request_durations, &after.request_durations);
    Point {
        unix_ms,
        results,
        requests,
        bytes_from_clients: rate(before.bytes_from_client, after.bytes_from_client),
        bytes_to_clients: rate(before.bytes_to_client, after.bytes_to_client),
        connections: after.connections_active,
        tunnels: after.tunnels_active,
        p50_ms: quantile_ms(&durations, 0.5),
        p99_ms: quantile_ms(&durations, 0.99),
    }
}

fn rates(before: &RequestCounts, after: &RequestCounts, rate: impl Fn(u64, u64) -> f64) -> Rates {
    Rates {
        allowed: rate(before.allowed, after.allowed),
        blocked: rate(before.blocked, after.blocked),
        auth_failed: rate(before.auth_failed, after.auth_failed),
        malformed: rate(before.malformed, after.malformed),
        upstream_error: rate(before.upstream_error, after.upstream_error),
        tunnel: rate(before.tunnel, after.tunnel),
    }
}

/// What was recorded between two readings of one histogram: cumulative counts per bound.
fn difference(before: &HistogramSnapshot, after: &HistogramSnapshot) -> Vec<(u64, u64)> {
    after
        .cumulative
        .iter()
        .zip(&before.cumulative)
        .map(|(&(bound, now), &(_, then))| (bound, now.saturating_sub(then)))
        .collect()
}

/// The `quantile` of the durations in `cumulative`, in milliseconds: the bucket that
/// reaches the share, interpolated linearly within it (the usual Prometheus
/// `histogram_quantile` estimate). Past the last finite bound, that bound.
fn quantile_ms(cumulative: &[(u64, u64)], quantile: f64) -> Option<f64> {
    let total = cumulative.last().map(|&(_, count)| count)?;
    if total == 0 {
        return None;
    }
    let rank = total as f64 * quantile;
    let (mut lower_bound, mut lower_count) = (0u64, 0u64);
    for &(bound, count) in cumulative {
        if count as f64 >= rank && count > lower_count {
            if bound == u64::MAX {
                return Some(lower_bound as f64 / 1000.0);
            }
            let share = (rank - lower_count as f64) / (count - lower_count) as f64;
            let micros = lower_bound as f64 + (bound - lower_bound) as f64 * share.clamp(0.0, 1.0);
            return Some(micros / 1000.0);
        }
        (lower_bound, lower_count) = (bound, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Outcome, Stats};

    #[test]
    fn points_are_rates_over_the_interval_and_gauges_at_its_end() {
        let stats = std::sync::Arc::new(Stats::default());
        let mut series = Series::with_capacity(4);
        let start = Instant::now();
        series.sample(stats.snapshot(), start, 1_000);
        assert_eq!(
            series.points().count(),
            0,
            "the first reading is a baseline"
        );
        for _ in 0..10 {
            stats.request_finished(Outcome::Allowed, Duration::from_millis(3));
        }
        stats.request_finished(Outcome::Blocked, Duration::from_micros(500));
        stats.add_bytes_to_client(5000);
        stats.add_bytes_from_client(1000);
        let _connection = stats.connection_opened(10);
        let _tunnel = stats.tunnel_opened();
        series.sample(stats.snapshot(), start + Duration::from_secs(5), 6_000);
        let points: Vec<&Point> = series.points().collect();
        assert_eq!(points.len(), 1);
        let point = points[0];
        assert_eq!(point.unix_ms, 6_000);
        assert_eq!((point.requests.allowed, point.requests.blocked), (2.0, 0.2));
        assert_eq!(point.requests.tunnel, 0.0);
        assert_eq!(
            (point.bytes_to_clients, point.bytes_from_clients),
            (1000.0, 200.0)
        );
        assert_eq!((point.connections, point.tunnels), (1, 1));
        // 11 requests: 1 under 1 ms, 10 in (1 ms, 5 ms]. The median is the 5.5th: 4.5/10 of
        // the way through the second bucket; the 99th percentile sits near its top.
        assert_eq!(point.p50_ms, Some(1.0 + 4.0 * 0.45));
        let p99 = point.p99_ms.unwrap_or_default();
        assert!(p99 > 4.5 && p99 <= 5.0, "{p99}");
        // A quiet interval: zero rates, no latency, gauges as they stand.
        series.sample(stats.snapshot(), start + Duration::from_secs(10), 11_000);
        let quiet = series.points().last().cloned();
        assert_eq!(
            quiet.as_ref().map(|p| (p.requests.allowed, p.p50_ms)),
            Some((0.0, None))
        );
        assert_eq!(quiet.map(|p| p.connections), Some(1));
    }

    #[test]
    fn the_series_keeps_only_the_newest_points_and_ignores_a_repeated_instant() {
        let stats = Stats::default();
        let mut series = Series::with_capacity(3);
        let start = Instant::now();
        for n in 0..6u64 {
            series.sample(stats.snapshot(), start + Duration::from_secs(n), n);
        }
        series.sample(stats.snapshot(), start + Duration::from_secs(5), 99);
        let times: Vec<u64> = series.points().map(|p| p.unix_ms).collect();
        assert_eq!(times, [3, 4, 5]);
        assert_eq!(SERIES_POINTS, 180);
    }

    #[test]
    fn quantiles_of_slow_and_empty_intervals() {
        assert_eq!(quantile_ms(&[(1000, 0), (u64::MAX, 0)], 0.5), None);
        // Everything past the last bound: reported as that bound.
        assert_eq!(
            quantile_ms(&[(1000, 0), (60_000_000, 0), (u64::MAX, 4)], 0.5),
            Some(60_000.0)
        );
        // Everything in the first bucket: interpolated from zero.
        assert_eq!(
            quantile_ms(&[(1000, 4), (5000, 4), (u64::MAX, 4)], 0.5),
            Some(0.5)
        );
    }
}
