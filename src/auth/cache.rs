//! Remembers recent successful verifications so a busy client does not pay tens of
//! milliseconds of bcrypt per request, and so that credentials known good need no check
//! at all (they are let in while everyone's failure budget is spent). Keys are SHA-256 digests of the raw
//! `user:password`, so the cache holds no password; entries expire after a time
//! limit and the least recently used fall out when it is full. A new cache is made
//! with every users-file load, so a changed or removed user is never served from it.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// How many verified credentials are remembered.
pub const VERIFIED_CACHE_CAPACITY: usize = 4096;
/// How long a verification is trusted before bcrypt runs again.
pub const VERIFIED_CACHE_TTL: Duration = Duration::from_secs(5 * 60);

pub type CacheKey = [u8; 32];

pub struct VerifiedCache {
    /// A std mutex: every critical section is a hash lookup or insert, never an `.await`.
    entries: Mutex<LruCache<CacheKey, Instant>>,
    ttl: Duration,
}

impl VerifiedCache {
    pub fn new(capacity: NonZeroUsize, ttl: Duration) -> VerifiedCache {
        VerifiedCache {
            entries: Mutex::new(LruCache::new(capacity)),
            ttl,
        }
    }

    /// Whether `key` was verified less than the time limit ago.
    pub fn is_fresh(&self, key: &CacheKey) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            Some(verified_at) if verified_at.elapsed() < self.ttl => true,
            Some(_) => {
                entries.pop(key);
                false
            }
            None => false,
        }
    }

    pub fn insert(&self, key: CacheKey) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.put(key, Instant::now());
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize, ttl: Duration) -> VerifiedCache {
        VerifiedCache::new(NonZeroUsize::new(capacity).unwrap(), ttl)
    }

    #[test]
    fn fresh_then_expired() {
        let c = cache(4, Duration::from_secs(60));
        assert!(!c.is_fresh(&[1; 32]));
        c.insert([1; 32]);
        assert!(c.is_fresh(&[1; 32]));
        let expired = cache(4, Duration::ZERO);
        expired.insert([1; 32]);
        assert!(!expired.is_fresh(&[1; 32]));
        assert!(expired.is_empty(), "stale entries are dropped when seen");
    }

    #[test]
    fn bounded_by_capacity_least_recently_used_first() {
        let c = cache(2, Duration::from_secs(60));
        c.insert([1; 32]);
        c.insert([2; 32]);
        assert!(c.is_fresh(&[1; 32]));
        c.insert([3; 32]);
        assert_eq!(c.len(), 2);
        assert!(c.is_fresh(&[1; 32]));
        assert!(!c.is_fresh(&[2; 32]));
    }
}
