//! The memory that holds stored responses: a byte-bounded LRU of URIs, each with its
//! `Vary` variants, and the counters the statistics read. Knows sizes and recency, not
//! HTTP rules: what may be stored or served is decided in `policy` before and after.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use lru::LruCache;

use crate::http::Headers;

use super::key::{UriKey, VarySelector};
use super::policy::Freshness;

/// Bytes charged to every entry beyond its header and body bytes: the entry, its
/// key and its LRU node, so that many tiny entries still count against the limit.
pub const ENTRY_OVERHEAD: usize = 256;

/// Variants kept per URI; a response varying on a field with many values (a
/// `User-Agent`, say) would otherwise fill the cache with one resource.
pub const MAX_VARIANTS: usize = 8;

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    pub status: u16,
    pub reason: Bytes,
    /// The response fields as stored (`policy::storable_fields`).
    pub headers: Headers,
    pub body: Bytes,
    /// The request field values this variant was stored for.
    pub vary: VarySelector,
    pub freshness: Freshness,
}

impl Entry {
    /// The bytes this entry is charged for.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum();
        ENTRY_OVERHEAD + self.reason.len() + headers + self.body.len() + self.vary.size()
    }
}

/// Cache counters, relaxed atomics: each is read on its own for statistics.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Stale entries confirmed by a 304 and served.
    pub revalidations: AtomicU64,
    pub stores: AtomicU64,
    pub evictions: AtomicU64,
    /// Bytes held, as charged by [`Entry::size`].
    pub bytes: AtomicU64,
    /// Stored responses (variants counted separately).
    pub entries: AtomicU64,
}

/// The counters at one moment, for the statistics page and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub revalidations: u64,
    pub stores: u64,
    pub evictions: u64,
    pub bytes: u64,
    pub entries: u64,
}

impl Stats {
    /// Reads every counter; each read is independent (relaxed), which is all a
    /// statistics display needs.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            revalidations: self.revalidations.load(Relaxed),
            stores: self.stores.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            entries: self.entries.load(Relaxed),
        }
    }
}

/// URIs and their variants, most recently used last out.
struct Inner {
    lru: LruCache<UriKey, Vec<Arc<Entry>>>,
    bytes: usize,
    entries: usize,
}

/// The byte-bounded store. The lock is a `std::sync::Mutex`, held only for map
/// operations that never await or do I/O: a few microseconds, much cheaper than an
/// async mutex, and it cannot be held across an `.await` by construction because no
/// method here is async. Bodies are `Bytes`, so handing one out is a reference-count
/// bump done under the lock, and writing it to a socket happens after it is released.
pub struct Store {
    inner: Mutex<Inner>,
    capacity: usize,
    max_object: usize,
    stats: Stats,
}

impl Store {
    /// A store holding at most `capacity` bytes, and no single entry over `max_object`
    /// (clamped to `capacity`).
    pub fn new(capacity: usize, max_object: usize) -> Store {
        Store {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                entries: 0,
            }),
            capacity,
            max_object: max_object.min(capacity),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The largest entry size (as charged by [`Entry::size`]) that may be stored.
    pub fn max_object(&self) -> usize {
        self.max_object
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the map consistent (every
        // mutation below completes before anything can panic), so keep using it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The variant of `key` whose `Vary` selector matches `request`; marks it used.
    pub fn get(&self, key: &UriKey, request: &Headers) -> Option<Arc<Entry>> {
        let mut inner = self.lock();
        let variants = inner.lru.get(key)?;
        // Newest first: after a Vary change the latest response is the one to use.
        variants
            .iter()
            .rev()
            .find(|e| e.vary.matches(request))
            .cloned()
    }

    /// Stores `entry` under `key`, replacing a variant with the same selector, then
    /// evicts least recently used URIs until the store is within its capacity.
    /// Returns false (and stores nothing) when the entry is over the object limit.
    pub fn insert(&self, key: UriKey, entry: Arc<Entry>) -> bool {
        let size = entry.size();
        if size > self.max_object {
            return false;
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        let variants = inner.lru.get_or_insert_mut(key, Vec::new);
        let mut removed = Vec::new();
        variants.retain(|old| {
            let same = old.vary == entry.vary;
            if same {
                removed.push(old.size());
            }
            !same
        });
        if variants.len() >= MAX_VARIANTS {
            removed.push(variants.remove(0).size());
        }
        variants.push(entry);
        inner.entries = inner.entries + 1 - removed.len();
        inner.bytes = inner.bytes + size - removed.iter().sum::<usize>();
        self.evict(inner);
        self.stats.stores.fetch_add(1, Relaxed);
        self.publish(inner);
        true
    }

    /// Drops every variant of `key` (RFC 9111 §4.4 invalidation). Returns whether
    /// anything was held.
    pub fn remove(&self, key: &UriKey) -> bool {
        let mut inner = self.lock();
        let Some(variants) = inner.lru.pop(key) else {
            return false;
        };
        inner.entries -= variants.len();
        inner.bytes -= variants.iter().map(|e| e.size()).sum::<usize>();
        self.publish(&inner);
        true
    }

    /// Evicts least recently used entries until within capacity. When one URI is all
    /// that is left, its oldest variants go first.
    fn evict(&self, inner: &mut Inner) {
        while inner.bytes > self.capacity {
            let evicted = if inner.lru.len() > 1 {
                inner
                    .lru
                    .pop_lru()
                    .map(|(_, variants)| variants)
                    .unwrap_or_default()
            } else {
                match inner.lru.iter_mut().next() {
                    Some((_, variants)) if !variants.is_empty() => vec![variants.remove(0)],
                    _ => break,
                }
            };
            inner.entries -= evicted.len();
            inner.bytes -= evicted.iter().map(|e| e.size()).sum::<usize>();
            self.stats
                .evictions
                .fetch_add(evicted.len() as u64, Relaxed);
        }
    }

    fn publish(&self, inner: &Inner) {
        self.stats.bytes.store(inner.bytes as u64, Relaxed);
        self.stats.entries.store(inner.entries as u64, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;
    use std::time::{Duration, SystemTime};

    fn entry(body_len: usize, vary: VarySelector) -> Entry {
        Entry {
            status: 200,
            reason: Bytes::from_static(b"OK"),
            headers: [Header::new("Content-Type", "text/plain")]
                .into_iter()
                .collect(),
            body: Bytes::from(vec![b'x'; body_len]),
            vary,
            freshness: Freshness {
                lifetime: Duration::from_secs(60),
                initial_age: Duration::ZERO,
                response_time: SystemTime::UNIX_EPOCH,
                no_cache: false,
            },
        }
    }

    fn key(path: &str) -> UriKey {
        UriKey::new("http", "h", 80, path.as_bytes())
    }

    #[test]
    fn evicts_least_recently_used_at_byte_limit() {
        let one = entry(1000, VarySelector::default()).size();
        let store = Store::new(3 * one, one);
        for path in ["/a", "/b", "/c"] {
            assert!(store.insert(key(path), Arc::new(entry(1000, VarySelector::default()))));
        }
        // Touch /a so that /b is the least recently used.
        assert!(store.get(&key("/a"), &Headers::new()).is_some());
        assert!(store.insert(key("/d"), Arc::new(entry(1000, VarySelector::default()))));
        assert!(store.get(&key("/b"), &Headers::new()).is_none());
        for path in ["/a", "/c", "/d"] {
            assert!(store.get(&key(path), &Headers::new()).is_some(), "{path}");
        }
        let stats = store.stats().snapshot();
        assert_eq!((stats.evictions, stats.entries, stats.stores), (1, 3, 4));
        assert_eq!(stats.bytes, 3 * one as u64);
    }

    #[test]
    fn over_max_object_is_not_stored() {
        let store = Store::new(1 << 20, 2000);
        assert!(!store.insert(key("/big"), Arc::new(entry(2000, VarySelector::default()))));
        assert!(store.get(&key("/big"), &Headers::new()).is_none());
        assert_eq!(store.stats().bytes.load(Relaxed), 0);
    }

    #[test]
    fn variants_live_side_by_side_and_replace_their_own() {
        let vary: Headers = [Header::new("Vary", "Accept-Language")]
            .into_iter()
            .collect();
        let en: Headers = [Header::new("Accept-Language", "en")].into_iter().collect();
        let fr: Headers = [Header::new("Accept-Language", "fr")].into_iter().collect();
        let selector =
            |request: &Headers| VarySelector::from_response(&vary, request).unwrap_or_default();
        let store = Store::new(1 << 20, 1 << 20);
        store.insert(key("/"), Arc::new(entry(1, selector(&en))));
        store.insert(key("/"), Arc::new(entry(2, selector(&fr))));
        store.insert(key("/"), Arc::new(entry(3, selector(&en))));
        assert_eq!(store.get(&key("/"), &en).map(|e| e.body.len()), Some(3));
        assert_eq!(store.get(&key("/"), &fr).map(|e| e.body.len()), Some(2));
        assert!(store.get(&key("/"), &Headers::new()).is_none());
        assert_eq!(store.stats().entries.load(Relaxed), 2);
        assert!(store.remove(&key("/")));
        assert_eq!(store.stats().entries.load(Relaxed), 0);
        assert_eq!(store.stats().bytes.load(Relaxed), 0);
    }
}
