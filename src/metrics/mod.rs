//! Reporting the live statistics: the metrics endpoint and the periodic summary line.
//!
//! Owns the `--metrics-addr` and `--stats-interval` flags, the small HTTP server behind
//! `--metrics-addr` ([`serve`]: `/metrics` for Prometheus, `/stats` as JSON, `/stats/series`
//! and `/stats/top` for the dashboard, `/` as the HTML dashboard), the sampler that feeds
//! the dashboard's time series, and the one-line summary written to the diagnostics log. It only reads
//! [`Stats`]; counting is the job of the code that sees the traffic.

mod dashboard;
mod parents;
mod prometheus;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::stats::{Snapshot, Stats};

pub use prometheus::{CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE, render as render_prometheus};
pub use server::{MAX_CONNECTIONS, MAX_HEAD_BYTES, READ_TIMEOUT, serve};

/// Shortest accepted `--stats-interval`, in seconds; anything faster floods the log.
pub const MIN_STATS_INTERVAL_SECS: u64 = 1;

/// Live statistics reporting.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsSettings {
    /// Where to serve /metrics, /stats and /; `None`: nowhere.
    pub addr: Option<SocketAddr>,
    /// How often to log a one-line summary; `None`: never.
    pub stats_interval: Option<Duration>,
}

/// One line with the numbers an operator scans first, e.g.
/// `connections 12 (3 active) | requests 100: allowed 90 blocked 5 auth_failed 2 malformed 1
/// upstream_error 1 tunnel 1 | tunnels 1 active | bytes client in 1200 out 480000, origin out
/// 1100 in 470000 | cache hit 40 miss 50 evicted 2 held 1048576 B in 30 | p50 ≤5ms p99 ≤250ms |
/// log dropped 0 | panics 0`.
pub fn summary_line(snapshot: &Snapshot) -> String {
    let r = &snapshot.requests;
    let quantile = |q: f64| match snapshot.request_durations.quantile_bound_micros(q) {
        Some(micros) => format!("≤{}ms", micros / 1000),
        None if snapshot.request_durations.count == 0 => "-".to_owned(),
        None => ">60s".to_owned(),
    };
    format!(
        "connections {} ({} active) | requests {}: allowed {} blocked {} auth_failed {} \
         malformed {} upstream_error {} tunnel {} | tunnels {} active | bytes client in {} \
         out {}, origin out {} in {} | cache hit {} miss {} evicted {} held {} B in {} | \
         p50 {} p99 {} | log dropped {} | panics {}",
        snapshot.connections_accepted,
        snapshot.connections_active,
        r.total(),
        r.allowed,
        r.blocked,
        r.auth_failed,
        r.malformed,
        r.upstream_error,
        r.tunnel,
        snapshot.tunnels_active,
        snapshot.bytes_from_client,
        snapshot.bytes_to_client,
        snapshot.bytes_to_origin,
        snapshot.bytes_from_origin,
        snapshot.cache_hits,
        snapshot.cache_misses,
        snapshot.cache_evictions,
        snapshot.cache_bytes_held,
        snapshot.cache_entries,
        quantile(0.5),
        quantile(0.99),
        snapshot.log_lines_dropped,
        snapshot.panics_caught,
    )
}

/// Logs [`summary_line`] at `info` every `interval`, forever; spawn it and abort the task (or
/// drop it from a `select!`) at shutdown, then call [`log_final_summary`].
pub async fn periodic_summary(stats: Arc<Stats>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once; a summary of nothing at start-up is noise.
    ticker.tick().await;
    loop {
        ticker.tick().await;
        tracing::info!(target: "proxy_server::stats", "{}", summary_line(&stats.snapshot()));
    }
}

/// Logs the summary once more, labelled final; call at shutdown after the server drained and
/// before [`crate::logging::Logging::shutdown`].
pub fn log_final_summary(stats: &Stats) {
    tracing::info!(target: "proxy_server::stats", "final: {}", summary_line(&stats.snapshot()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Outcome;

    #[test]
    fn summary_line_reports_the_counted_numbers() {
        let stats = Arc::new(Stats::default());
        let _connection = stats.connection_opened(1);
        for _ in 0..9 {
            stats.request_finished(Outcome::Allowed, Duration::from_millis(3));
        }
        stats.request_finished(Outcome::Blocked, Duration::from_millis(200));
        stats.add_bytes_from_client(1200);
        stats.set_cache(crate::stats::CacheTotals {
            hits: 1,
            bytes_held: 4096,
            entries: 3,
            ..Default::default()
        });
        let line = summary_line(&stats.snapshot());
        assert!(!line.contains('\n'));
        for expected in [
            "connections 1 (1 active)",
            "requests 10: allowed 9 blocked 1 auth_failed 0",
            "bytes client in 1200 out 0",
            "cache hit 1 miss 0 evicted 0 held 4096 B in 3",
            "p50 ≤5ms p99 ≤250ms",
        ] {
            assert!(
                line.contains(expected),
                "{expected:?} missing from {line:?}"
            );
        }
        let empty = summary_line(&Stats::default().snapshot());
        assert!(empty.contains("p50 - p99 -"), "{empty}");
    }

    /// Collects formatted events in memory for one test.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut bytes = self
                .0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?;
            bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn periodic_summary_logs_once_per_interval_after_the_first() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let stats = Arc::new(Stats::default());
        stats.request_finished(Outcome::Blocked, Duration::from_millis(1));

        let task = tokio::spawn(periodic_summary(
            Arc::clone(&stats),
            Duration::from_secs(10),
        ));
        tokio::time::sleep(Duration::from_secs(35)).await;
        task.abort();
        log_final_summary(&stats);

        let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            4,
            "at 10, 20 and 30 s, then the final one: {text}"
        );
        assert!(
            lines
                .iter()
                .all(|l| l.contains("proxy_server::stats") && l.contains("blocked 1"))
        );
        assert!(lines[3].contains("final: connections 0"), "{}", lines[3]);
    }
}
