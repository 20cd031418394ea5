//! Per-key limiter state that stays bounded whatever clients do: at most a fixed number
//! of keys, least recently used first out, and keys whose state has settled (a bucket full
//! again, no connection open, no failure slot taken) dropped as new keys arrive. Dropping a
//! settled key changes no decision: its state would be rebuilt exactly as it was.
//!
//! The map sits behind a `std::sync::Mutex` held only for a lookup or an insertion, never
//! across an `.await`; values are `Arc`s, so a connection or a transfer keeps its own state
//! alive (and the key in use) for as long as it needs it.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lru::LruCache;
use tokio::time::Instant;

/// Keys of each kind held at most; past this the least recently used goes, settled or not
/// (its next request then starts with a fresh budget). About 100 bytes a key.
pub const MAX_KEYS: usize = 65_536;

/// Settled entries looked at, oldest first, each time a new key arrives: more than one,
/// so the map shrinks back after a crowd of keys has gone quiet.
const SWEEP: usize = 4;

/// State that can say when dropping it would change nothing.
pub(super) trait Settle {
    /// Whether state last used at `since` has returned to its initial condition by `now`.
    fn settled(&self, since: Instant, now: Instant) -> bool;
}

struct Entry<V> {
    value: Arc<V>,
    used: Instant,
}

pub(super) struct Keyed<K: Hash + Eq, V> {
    entries: Mutex<LruCache<K, Entry<V>>>,
}

impl<K: Hash + Eq, V: Settle> Keyed<K, V> {
    pub(super) fn new(cap: usize) -> Keyed<K, V> {
        let cap = NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN);
        Keyed {
            entries: Mutex::new(LruCache::new(cap)),
        }
    }

    /// A poisoned lock only means a panic elsewhere mid-update of plain counters; the
    /// map itself is still sound.
    fn lock(&self) -> MutexGuard<'_, LruCache<K, Entry<V>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state of `key`, made by `make` if it has none; marks it used now.
    pub(super) fn get_or_insert(&self, key: K, make: impl FnOnce() -> V) -> Arc<V> {
        let now = Instant::now();
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(&key) {
            entry.used = now;
            return Arc::clone(&entry.value);
        }
        sweep(&mut entries, now);
        let value = Arc::new(make());
        let entry = Entry {
            value: Arc::clone(&value),
            used: now,
        };
        // At the cap this pushes the least recently used key out.
        entries.push(key, entry);
        value
    }

    /// Keys held now.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Drops up to [`SWEEP`] of the least recently used entries while they are settled and
/// nobody holds them.
fn sweep<K: Hash + Eq, V: Settle>(entries: &mut LruCache<K, Entry<V>>, now: Instant) {
    for _ in 0..SWEEP {
        let settled = entries.peek_lru().is_some_and(|(_, entry)| {
            Arc::strong_count(&entry.value) == 1 && entry.value.settled(entry.used, now)
        });
        if !settled {
            return;
        }
        entries.pop_lru();
    }
}
