//! Client addresses blocked for failing authentication, kept apart from the failure
//! windows so that no crowd of other addresses can push a block out: the windows live in
//! a least-recently-used map where any key may be evicted, and an evicted window only
//! hands back a minute's budget; an evicted block would hand back the password oracle.
//!
//! The table is bounded ([`MAX_BLOCKS`]; one entry is an address and an instant, about
//! 50 bytes with the map's own, so the bound is about 13 MiB). Entries are in the order
//! they were made, which is the order they expire in while `auth_block` stays the same;
//! expired ones go first, oldest first, whenever a block is added, and when looked up.
//! An unexpired block is never dropped to make room: with the table full of them, a new
//! offender is not recorded as blocked, and is held instead by its own failure window,
//! which it has spent (a refusal per attempt, `auth_failures_per_minute` guesses a
//! minute rather than none for `auth_block`), and by everyone's window. Freeing an old
//! block would let a proven guesser resume at once; refusing the newcomer a block costs
//! at most a minute's budget, and a warning says the table is full.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

/// Blocked addresses held at most: four times the keys of each other kind, since an
/// entry is half the size of a window's.
pub const MAX_BLOCKS: usize = 4 * super::MAX_KEYS;

pub(super) struct Blocks {
    /// Until when each address is blocked, oldest block least recently used: lookups
    /// `peek`, so the order stays the order of insertion.
    until: Mutex<LruCache<IpAddr, Instant>>,
    /// Blocks held at most (the map itself is unbounded, so that nothing is allocated
    /// for a table that stays empty, and never evicts: this code decides).
    cap: usize,
    /// Whether the table was found full since it last took a block (warned once).
    full: AtomicBool,
}

/// What adding a block did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Added {
    Blocked,
    /// Blocked already, until the instant recorded first.
    Already,
    /// The table is full of unexpired blocks: not recorded.
    Full,
}

impl Blocks {
    pub(super) fn new(cap: usize) -> Blocks {
        Blocks {
            until: Mutex::new(LruCache::unbounded()),
            cap: cap.max(1),
            full: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<IpAddr, Instant>> {
        self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long the block on `client` has left, if one is in force.
    pub(super) fn left(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let mut blocks = self.lock();
        let until = *blocks.peek(&client)?;
        if until > now {
            return Some(until - now);
        }
        blocks.pop(&client);
        None
    }

    /// Blocks `client` until `until`, unless it is already or the table is full.
    pub(super) fn add(&self, client: IpAddr, until: Instant, now: Instant) -> Added {
        let mut blocks = self.lock();
        while blocks.peek_lru().is_some_and(|(_, &end)| end <= now) {
            blocks.pop_lru();
        }
        if blocks.peek(&client).is_some_and(|&end| end > now) {
            return Added::Already;
        }
        if blocks.len() >= self.cap {
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    blocks = blocks.len(),
                    "the table of blocked addresses is full; new offenders are held by \
                     their failure budget only until older blocks expire"
                );
            }
            return Added::Full;
        }
        self.full.store(false, Ordering::Relaxed);
        blocks.put(client, until);
        Added::Blocked
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}
