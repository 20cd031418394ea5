//! Live statistics: counters and gauges shared by every connection task.
//!
//! Owns the numbers an administrator watches — connections, requests by outcome, tunnels,
//! bytes in each direction, cache activity, dropped log lines, caught panics and a request
//! duration histogram. Everything is a relaxed atomic: these are statistics, not
//! synchronisation, so no ordering between two counters is promised and the hot path never
//! takes a lock. "Active" gauges are only changed through RAII guards so an early return or a
//! panic in a connection task cannot leak a count. This module does no I/O; the `metrics`
//! module and the periodic summary read it through [`Stats::snapshot`].

mod histogram;

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

pub use histogram::{BUCKET_BOUNDS_MICROS, DurationHistogram, HistogramSnapshot};

/// How one request (or one CONNECT tunnel) ended, as far as the access log and the counters
/// care. One label per value, used verbatim in the access log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Passed auth and ACL and was answered: forwarded to the origin or served from the cache.
    Allowed,
    /// Refused by the ACL (403).
    Blocked,
    /// Refused for missing or wrong proxy credentials (407).
    AuthFailed,
    /// The request could not be parsed or broke a limit (400, 413, 431, 501…).
    Malformed,
    /// The origin could not be reached or answered badly (502, 504).
    UpstreamError,
    /// A CONNECT tunnel that was opened; logged when it closes.
    Tunnel,
}

impl Outcome {
    /// Every outcome, in the order the metrics list them.
    pub const ALL: [Outcome; 6] = [
        Outcome::Allowed,
        Outcome::Blocked,
        Outcome::AuthFailed,
        Outcome::Malformed,
        Outcome::UpstreamError,
        Outcome::Tunnel,
    ];

    /// The short label written in logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Blocked => "blocked",
            Outcome::AuthFailed => "auth_failed",
            Outcome::Malformed => "malformed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Tunnel => "tunnel",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The shared counters. Build one with `Arc::new(Stats::default())` and hand clones of the
/// `Arc` to the server, the cache, the logging pipeline and the metrics endpoint.
/// Cache counters as the cache reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheTotals {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub bytes_held: u64,
    pub entries: u64,
}

#[derive(Debug, Default)]
pub struct Stats {
    connections_accepted: AtomicU64,
    connections_active: AtomicU64,
    requests: [AtomicU64; Outcome::ALL.len()],
    tunnels_opened: AtomicU64,
    tunnels_active: AtomicU64,
    bytes_from_client: AtomicU64,
    bytes_to_client: AtomicU64,
    bytes_to_origin: AtomicU64,
    bytes_from_origin: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_evictions: AtomicU64,
    cache_bytes_held: AtomicU64,
    cache_entries: AtomicU64,
    log_lines_dropped: AtomicU64,
    panics_caught: AtomicU64,
    tls_handshakes_failed: AtomicU64,
    proxy_headers_rejected: AtomicU64,
    request_durations: DurationHistogram,
}

/// Keeps an "active" gauge raised while alive; lowers it exactly once when dropped. One
/// pointer wide: every connection task holds one for as long as the connection lives.
#[derive(Debug)]
#[must_use = "the gauge is lowered as soon as the guard is dropped"]
pub struct ActiveGuard<G: Gauge> {
    stats: Arc<Stats>,
    gauge: PhantomData<G>,
}

/// A client connection's place under `--max-connections`, and its count in the
/// active-connections gauge.
pub type ConnectionSlot = ActiveGuard<Connections>;

/// Which gauge an [`ActiveGuard`] holds up.
pub trait Gauge {
    fn of(stats: &Stats) -> &AtomicU64;
}

#[derive(Debug)]
pub enum Connections {}

#[derive(Debug)]
pub enum Tunnels {}

impl Gauge for Connections {
    fn of(stats: &Stats) -> &AtomicU64 {
        &stats.connections_active
    }
}

impl Gauge for Tunnels {
    fn of(stats: &Stats) -> &AtomicU64 {
        &stats.tunnels_active
    }
}

impl<G: Gauge> ActiveGuard<G> {
    fn new(stats: &Arc<Stats>) -> ActiveGuard<G> {
        ActiveGuard {
            stats: Arc::clone(stats),
            gauge: PhantomData,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl<G: Gauge> Drop for ActiveGuard<G> {
    fn drop(&mut self) {
        G::of(&self.stats).fetch_sub(1, Ordering::Relaxed);
    }
}

fn add(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

impl Stats {
    /// Counts an accepted connection and keeps it active until the slot drops, if fewer
    /// than `max` are active; `None` otherwise (the caller refuses the connection, which
    /// is not counted). Take it right after `accept` and move it into the connection task.
    pub fn connection_opened(self: &Arc<Self>, max: usize) -> Option<ConnectionSlot> {
        let max = u64::try_from(max).unwrap_or(u64::MAX);
        self.connections_active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |active| {
                (active < max).then_some(active + 1)
            })
            .ok()?;
        add(&self.connections_accepted, 1);
        Some(ActiveGuard::new(self))
    }

    /// Connections open now.
    pub fn connections_active(&self) -> u64 {
        self.connections_active.load(Ordering::Relaxed)
    }

    /// Counts a CONNECT tunnel once it is established (2xx sent) and keeps it active until the
    /// guard drops.
    pub fn tunnel_opened(self: &Arc<Self>) -> ActiveGuard<Tunnels> {
        add(&self.tunnels_opened, 1);
        add(&self.tunnels_active, 1);
        ActiveGuard::new(self)
    }

    /// Counts one finished request (or closed tunnel) by outcome. The duration goes into the
    /// histogram for every outcome except [`Outcome::Tunnel`], whose lifetime is a session
    /// length rather than a request latency and would swamp the upper buckets.
    pub fn request_finished(&self, outcome: Outcome, duration: Duration) {
        add(&self.requests[outcome.index()], 1);
        if outcome != Outcome::Tunnel {
            self.request_durations.record(duration);
        }
    }

    /// Bytes read from a client socket (request heads, bodies, tunnel upload).
    pub fn add_bytes_from_client(&self, bytes: u64) {
        add(&self.bytes_from_client, bytes);
    }
    /// Bytes written to a client socket (responses, error pages, tunnel download).
    pub fn add_bytes_to_client(&self, bytes: u64) {
        add(&self.bytes_to_client, bytes);
    }
    /// Bytes written to an origin socket.
    pub fn add_bytes_to_origin(&self, bytes: u64) {
        add(&self.bytes_to_origin, bytes);
    }
    /// Bytes read from an origin socket.
    pub fn add_bytes_from_origin(&self, bytes: u64) {
        add(&self.bytes_from_origin, bytes);
    }

    /// The cache's own running totals, copied in after each cache operation (the cache
    /// keeps the counts; this is where statistics readers find them).
    pub fn set_cache(&self, totals: CacheTotals) {
        let set = |counter: &AtomicU64, value| counter.store(value, Ordering::Relaxed);
        set(&self.cache_hits, totals.hits);
        set(&self.cache_misses, totals.misses);
        set(&self.cache_evictions, totals.evictions);
        set(&self.cache_bytes_held, totals.bytes_held);
        set(&self.cache_entries, totals.entries);
    }

    /// A log line (access or diagnostic) dropped because its queue was full.
    pub fn log_line_dropped(&self) {
        add(&self.log_lines_dropped, 1);
    }
    /// A connection task panicked and the server caught it.
    pub fn panic_caught(&self) {
        add(&self.panics_caught, 1);
    }

    /// A TLS handshake with a client failed or timed out (a TLS listener).
    pub fn tls_handshake_failed(&self) {
        add(&self.tls_handshakes_failed, 1);
    }

    /// A connection that owed a PROXY-protocol header sent none, a bad one or none in time.
    pub fn proxy_header_rejected(&self) {
        add(&self.proxy_headers_rejected, 1);
    }

    /// Reads every counter into plain numbers.
    pub fn snapshot(&self) -> Snapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let requests = |outcome: Outcome| load(&self.requests[outcome.index()]);
        Snapshot {
            connections_accepted: load(&self.connections_accepted),
            connections_active: load(&self.connections_active),
            requests: RequestCounts {
                allowed: requests(Outcome::Allowed),
                blocked: requests(Outcome::Blocked),
                auth_failed: requests(Outcome::AuthFailed),
                malformed: requests(Outcome::Malformed),
                upstream_error: requests(Outcome::UpstreamError),
                tunnel: requests(Outcome::Tunnel),
            },
            tunnels_opened: load(&self.tunnels_opened),
            tunnels_active: load(&self.tunnels_active),
            bytes_from_client: load(&self.bytes_from_client),
            bytes_to_client: load(&self.bytes_to_client),
            bytes_to_origin: load(&self.bytes_to_origin),
            bytes_from_origin: load(&self.bytes_from_origin),
            cache_hits: load(&self.cache_hits),
            cache_misses: load(&self.cache_misses),
            cache_evictions: load(&self.cache_evictions),
            cache_bytes_held: load(&self.cache_bytes_held),
            cache_entries: load(&self.cache_entries),
            log_lines_dropped: load(&self.log_lines_dropped),
            panics_caught: load(&self.panics_caught),
            tls_handshakes_failed: load(&self.tls_handshakes_failed),
            proxy_headers_rejected: load(&self.proxy_headers_rejected),
            request_durations: self.request_durations.snapshot(),
        }
    }
}

/// Finished requests per outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub allowed: u64,
    pub blocked: u64,
    pub auth_failed: u64,
    pub malformed: u64,
    pub upstream_error: u64,
    pub tunnel: u64,
}

impl RequestCounts {
    /// The count for one outcome.
    pub fn get(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Allowed => self.allowed,
            Outcome::Blocked => self.blocked,
            Outcome::AuthFailed => self.auth_failed,
            Outcome::Malformed => self.malformed,
            Outcome::UpstreamError => self.upstream_error,
            Outcome::Tunnel => self.tunnel,
        }
    }

    /// All finished requests and tunnels.
    pub fn total(&self) -> u64 {
        Outcome::ALL.iter().map(|&outcome| self.get(outcome)).sum()
    }
}

/// Every statistic as plain numbers at one moment; serialised as the `/stats` JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub connections_accepted: u64,
    pub connections_active: u64,
    pub requests: RequestCounts,
    pub tunnels_opened: u64,
    pub tunnels_active: u64,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    pub bytes_to_origin: u64,
    pub bytes_from_origin: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    pub cache_bytes_held: u64,
    pub cache_entries: u64,
    pub log_lines_dropped: u64,
    pub panics_caught: u64,
    pub tls_handshakes_failed: u64,
    pub proxy_headers_rejected: u64,
    pub request_durations: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_raise_gauges_while_alive_and_lower_them_once() {
        let stats = Arc::new(Stats::default());
        let first = stats.connection_opened(2).unwrap();
        let second = stats.connection_opened(2).unwrap();
        assert!(
            stats.connection_opened(2).is_none(),
            "a third is over the cap"
        );
        let tunnel = stats.tunnel_opened();
        let snapshot = stats.snapshot();
        assert_eq!(
            (snapshot.connections_accepted, snapshot.connections_active),
            (2, 2)
        );
        assert_eq!((snapshot.tunnels_opened, snapshot.tunnels_active), (1, 1));
        drop(first);
        assert_eq!(stats.snapshot().connections_active, 1);
        drop(tunnel);
        drop(second);
        let snapshot = stats.snapshot();
        assert_eq!(
            (snapshot.connections_accepted, snapshot.connections_active),
            (2, 0)
        );
        assert_eq!((snapshot.tunnels_opened, snapshot.tunnels_active), (1, 0));
    }

    #[test]
    fn guard_is_released_when_a_task_panics() {
        let stats = Arc::new(Stats::default());
        let guard = stats.connection_opened(1).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = guard;
            panic!("connection task failed");
        }));
        assert!(result.is_err());
        assert_eq!(stats.snapshot().connections_active, 0);
    }

    #[test]
    fn outcomes_are_counted_separately_and_tunnels_stay_out_of_the_histogram() {
        let stats = Stats::default();
        let mix = [
            (Outcome::Allowed, 5),
            (Outcome::Blocked, 3),
            (Outcome::AuthFailed, 2),
            (Outcome::Malformed, 1),
            (Outcome::UpstreamError, 4),
            (Outcome::Tunnel, 6),
        ];
        for (outcome, times) in mix {
            for _ in 0..times {
                stats.request_finished(outcome, Duration::from_millis(2));
            }
        }
        let snapshot = stats.snapshot();
        for (outcome, times) in mix {
            assert_eq!(snapshot.requests.get(outcome), times, "{}", outcome.label());
        }
        assert_eq!(snapshot.requests.total(), 21);
        assert_eq!(snapshot.request_durations.count, 15);
    }

    #[test]
    fn byte_and_cache_counters_accumulate() {
        let stats = Stats::default();
        stats.add_bytes_from_client(10);
        stats.add_bytes_from_client(5);
        stats.add_bytes_to_client(7);
        stats.add_bytes_to_origin(3);
        stats.add_bytes_from_origin(100);
        let totals = CacheTotals {
            hits: 1,
            misses: 2,
            evictions: 1,
            bytes_held: 2048,
            entries: 1,
        };
        stats.set_cache(totals);
        stats.log_line_dropped();
        stats.panic_caught();
        let s = stats.snapshot();
        assert_eq!(
            (
                s.bytes_from_client,
                s.bytes_to_client,
                s.bytes_to_origin,
                s.bytes_from_origin
            ),
            (15, 7, 3, 100)
        );
        assert_eq!((s.cache_hits, s.cache_misses, s.cache_evictions), (1, 2, 1));
        assert_eq!((s.cache_bytes_held, s.cache_entries), (2048, 1));
        assert_eq!((s.log_lines_dropped, s.panics_caught), (1, 1));
    }

    #[test]
    fn labels_are_distinct_and_snake_case() {
        let labels: Vec<&str> = Outcome::ALL.iter().map(|o| o.label()).collect();
        let mut unique = labels.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), labels.len());
        assert!(
            labels
                .iter()
                .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
