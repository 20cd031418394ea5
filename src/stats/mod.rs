//! Live statistics: counters and gauges shared by every connection task.
//!
//! Owns the numbers an administrator watches — connections, requests by outcome, tunnels,
//! bytes in each direction, cache activity, dropped log lines, caught panics and a request
//! duration histogram. Everything is a relaxed atomic: these are statistics, not
//! synchronisation, so no ordering between two counters is promised and the hot path never
//! takes a lock. "Active" gauges are only changed through RAII guards so an early return or a
//! panic in a connection task cannot leak a count. This module does no I/O; the `metrics`
//! module and the periodic summary read it through [`Stats::snapshot`].
//!
//! For the dashboard it also keeps the recent past: a time series of the counters
//! (`series`, filled by a sampler in `metrics`) and top lists by destination, user and
//! client (`top`, counted per exchange in fixed-size sketches, never a map that grows with
//! every host).

mod dns;
mod histogram;
mod inspection;
mod limited;
mod parents;
mod results;
mod ring;
mod rules;
pub mod series;
mod sketch;
pub mod top;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use dns::{DnsCounters, DnsSnapshot};
pub use histogram::{BUCKET_BOUNDS_MICROS, DurationHistogram, HistogramSnapshot};
pub use inspection::{InspectionCounters, InspectionSnapshot};
pub use limited::{Limit, LimitedCounts};
pub use parents::{ParentCounters, ParentSnapshot, ParentTable};
pub use results::Results;
pub use rules::{RuleAction, RuleCounts};
pub use series::{Point, Series};
pub use top::{Seen, TopReport, TopTallies};

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

/// Cache counters as the cache reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheTotals {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub bytes_held: u64,
    pub entries: u64,
}

/// The shared counters. Build one with `Arc::new(Stats::default())` and hand clones of the
/// `Arc` to the server, the cache, the logging pipeline and the metrics endpoint.
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
    limited: [AtomicU64; Limit::ALL.len()],
    users_throttled: AtomicU64,
    tls_handshakes_failed: AtomicU64,
    sni_refused: AtomicU64,
    proxy_headers_rejected: AtomicU64,
    request_durations: DurationHistogram,
    dns: DnsCounters,
    inspection: InspectionCounters,
    top: TopTallies,
    /// Written by the sampler every few seconds, read by `/stats/series`; never touched
    /// by the request path.
    series: Mutex<Series>,
    rules: RuleCounts,
    /// Parent proxies' state, registered by the dialer.
    pub parents: ParentTable,
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

/// Users (or client addresses) with a transfer waiting for bandwidth now.
#[derive(Debug)]
pub enum Throttled {}

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

impl Gauge for Throttled {
    fn of(stats: &Stats) -> &AtomicU64 {
        &stats.users_throttled
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

    /// Something was held back by a per-user limit.
    pub fn limited(&self, limit: Limit) {
        add(&self.limited[limit as usize], 1);
    }

    /// Counts a user as throttled until the guard drops; the limiter takes one when the
    /// first of a user's transfers starts waiting and drops it when the last stops.
    pub fn user_throttled(self: &Arc<Self>) -> ActiveGuard<Throttled> {
        add(&self.users_throttled, 1);
        ActiveGuard::new(self)
    }

    /// A log line (access or diagnostic) dropped because its queue was full.
    pub fn log_line_dropped(&self) {
        add(&self.log_lines_dropped, 1);
    }
    /// An access-policy rule decided a request.
    pub fn rule_decided(&self, rule: &Arc<str>, action: RuleAction) {
        self.rules.count(rule, action);
    }

    /// `(rule, action, count)` for every rule that decided something.
    pub fn rule_decisions(&self) -> Vec<(Arc<str>, RuleAction, u64)> {
        self.rules.snapshot()
    }

    /// A connection task panicked and the server caught it.
    pub fn panic_caught(&self) {
        add(&self.panics_caught, 1);
    }

    /// The resolver's counters, for the resolver to count with.
    pub fn dns(&self) -> &DnsCounters {
        &self.dns
    }

    /// TLS inspection's counters, for the leaf cache to count with.
    pub fn inspection(&self) -> &InspectionCounters {
        &self.inspection
    }

    /// The top lists, for the request path to count each finished exchange in.
    pub fn top(&self) -> &TopTallies {
        &self.top
    }

    /// Reads the counters into the time series, as of `at` (`unix_ms` on the wall clock).
    pub fn sample_series(&self, at: Instant, unix_ms: u64) {
        let snapshot = self.snapshot();
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        series.sample(snapshot, at, unix_ms);
    }

    /// The time series' points, oldest first.
    pub fn series_points(&self) -> Vec<Point> {
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        series.points().cloned().collect()
    }

    /// A TLS handshake with a client failed or timed out (a TLS listener).
    pub fn tls_handshake_failed(&self) {
        add(&self.tls_handshakes_failed, 1);
    }

    /// A tunnel refused for what its TLS ClientHello asked for (`--sni-check match`).
    pub fn sni_refused(&self) {
        add(&self.sni_refused, 1);
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
            limited: LimitedCounts {
                requests: load(&self.limited[Limit::Requests as usize]),
                connections: load(&self.limited[Limit::Connections as usize]),
                bandwidth: load(&self.limited[Limit::Bandwidth as usize]),
                auth_failures: load(&self.limited[Limit::AuthFailures as usize]),
            },
            users_throttled: load(&self.users_throttled),
            tls_handshakes_failed: load(&self.tls_handshakes_failed),
            sni_refused: load(&self.sni_refused),
            proxy_headers_rejected: load(&self.proxy_headers_rejected),
            request_durations: self.request_durations.snapshot(),
            dns: self.dns.snapshot(),
            inspection: self.inspection.snapshot(),
            parents: self.parents.snapshot(),
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
    pub limited: LimitedCounts,
    pub users_throttled: u64,
    pub tls_handshakes_failed: u64,
    /// Tunnels refused for their ClientHello's server name.
    pub sni_refused: u64,
    pub proxy_headers_rejected: u64,
    pub request_durations: HistogramSnapshot,
    /// The resolver's figures.
    pub dns: DnsSnapshot,
    /// TLS inspection's leaf certificates.
    pub inspection: InspectionSnapshot,
    /// Each parent proxy: up now, connection failures, requests through it.
    pub parents: Vec<ParentSnapshot>,
}

#[cfg(test)]
mod tests;
