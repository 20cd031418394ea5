//! The resolver's figures: names asked for, answers from the cache, callers that waited
//! for another's query, failed lookups, and how long queries took. Relaxed atomics like
//! every other counter here; the resolver (`upstream::resolve`) counts, `/metrics` and
//! `/stats` read a [`DnsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::{DurationHistogram, HistogramSnapshot};

#[derive(Debug, Default)]
pub struct DnsCounters {
    lookups: AtomicU64,
    cache_hits: AtomicU64,
    collapsed: AtomicU64,
    failures: AtomicU64,
    query_durations: DurationHistogram,
}

/// The resolver's figures at one moment (`/stats` → `dns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsSnapshot {
    /// Names resolved (IP literals excluded).
    pub lookups: u64,
    /// Lookups answered from the cache, positive or negative.
    pub cache_hits: u64,
    /// Lookups that waited for the same name's query already in flight.
    pub collapsed: u64,
    /// Queries that found no address, timed out or failed.
    pub failures: u64,
    /// How long queries took (cache hits are not queries).
    pub query_durations: HistogramSnapshot,
}

impl DnsCounters {
    pub fn lookup(&self) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn collapsed(&self) {
        self.collapsed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// One query sent (to the servers or the hosts file) that took `took`.
    pub fn queried(&self, took: Duration) {
        self.query_durations.record(took);
    }

    pub fn snapshot(&self) -> DnsSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        DnsSnapshot {
            lookups: load(&self.lookups),
            cache_hits: load(&self.cache_hits),
            collapsed: load(&self.collapsed),
            failures: load(&self.failures),
            query_durations: self.query_durations.snapshot(),
        }
    }
}
