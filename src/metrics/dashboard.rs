//! The dashboard's data: the sampler that feeds the time series and rolls the top lists
//! over, and the JSON bodies of `/stats/series` and `/stats/top`.
//!
//! Owns the clock readings (monotonic for intervals, wall clock for the points' times and
//! the top lists' minutes) and the JSON shapes; the counting and the arithmetic are in
//! `crate::stats` (`series`, `top`). The page at `/` is a plain client of these two bodies.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::stats::series::{SAMPLE_INTERVAL, SERIES_SPAN};
use crate::stats::{Point, Stats, TopReport};

/// Reads the counters into the series and moves the top lists' shards into their history
/// every `every`, forever; the first reading (at once) is the series' baseline. The metrics
/// server runs it for as long as it serves.
pub async fn sample(stats: Arc<Stats>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = SystemTime::now();
        // tokio's clock, so a test with paused time sees whole intervals.
        stats.sample_series(tokio::time::Instant::now().into_std(), unix_ms(now));
        stats.top().flush(unix_minute(now));
    }
}

fn since_epoch(now: SystemTime) -> Duration {
    // A clock set before 1970 reads as the epoch: times on the page go wrong, nothing else.
    now.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn unix_ms(now: SystemTime) -> u64 {
    u64::try_from(since_epoch(now).as_millis()).unwrap_or(u64::MAX)
}

fn unix_minute(now: SystemTime) -> u64 {
    since_epoch(now).as_secs() / 60
}

/// The `/stats/series` body.
#[derive(Serialize)]
struct SeriesBody {
    /// Seconds between two points.
    interval_seconds: u64,
    /// Seconds the series reaches back at most.
    span_seconds: u64,
    /// When this body was made, for the page's time axis.
    now_unix_ms: u64,
    /// Oldest first.
    points: Vec<Point>,
}

/// `/stats/series` as JSON.
pub fn series_json(stats: &Stats) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&SeriesBody {
        interval_seconds: SAMPLE_INTERVAL.as_secs(),
        span_seconds: SERIES_SPAN.as_secs(),
        now_unix_ms: unix_ms(SystemTime::now()),
        points: stats.series_points(),
    })
}

/// `/stats/top` as JSON: what the request path counted up to now is included.
pub fn top_json(stats: &Stats) -> serde_json::Result<Vec<u8>> {
    let report: TopReport = stats.top().report(unix_minute(SystemTime::now()));
    serde_json::to_vec(&report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Outcome;
    use crate::stats::top::{Detail, Seen};

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_sampler_adds_a_point_per_interval_after_its_baseline() {
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(sample(Arc::clone(&stats), Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(stats.series_points().is_empty(), "a baseline only");
        for _ in 0..10 {
            stats.request_finished(Outcome::Allowed, Duration::from_millis(2));
        }
        tokio::time::sleep(Duration::from_secs(11)).await;
        task.abort();
        let points = stats.series_points();
        let allowed: Vec<f64> = points.iter().map(|p| p.results.allowed).collect();
        assert_eq!(
            allowed,
            [2.0, 0.0],
            "10 requests in the first 5 s, none after"
        );
    }

    #[test]
    fn bodies_are_json_with_the_documented_keys() {
        let stats = Stats::default();
        stats.top().record(&Seen {
            destination: Some("a.example:80"),
            user: None,
            client: std::net::Ipv4Addr::LOCALHOST.into(),
            outcome: Outcome::Blocked,
            status: 403,
            bytes: 10,
            reason: Detail::Label("blocked_host"),
        });
        let top: serde_json::Value =
            serde_json::from_slice(&top_json(&stats).unwrap_or_default()).unwrap_or_default();
        assert_eq!(top["since_start"]["denied"][0]["name"], "a.example:80");
        assert_eq!(top["since_start"]["denied"][0]["detail"], "blocked_host");
        assert_eq!(top["since_start"]["blocked"], top["since_start"]["denied"]);
        assert_eq!(top["since_start"]["results"]["denied"], 1);
        assert_eq!(top["recent"]["destinations_by_requests"][0]["value"], 1);
        assert_eq!(top["recent_minutes"], 15);
        let series: serde_json::Value =
            serde_json::from_slice(&series_json(&stats).unwrap_or_default()).unwrap_or_default();
        assert_eq!(series["interval_seconds"], 5);
        assert_eq!(series["span_seconds"], 900);
        assert_eq!(series["points"], serde_json::json!([]));
    }
}
