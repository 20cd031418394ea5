//! Blocking a client address that keeps failing authentication: failures fill a bucket of
//! `auth_failures_per_minute`; the failure that finds it empty blocks the address for
//! `auth_block`, logged once, and every attempt meanwhile is refused before its
//! credentials are checked (no password guessing, and no bcrypt work to spend). Only
//! addresses that failed have state here.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::bucket::Bucket;
use super::keyed::Settle;

/// Failures are counted over this window (the "per minute" of the setting).
const WINDOW_SECONDS: u64 = 60;

/// One client address's recent failures and its block, if any.
pub(super) struct Failures {
    bucket: Bucket,
    blocked_until: Mutex<Option<Instant>>,
}

impl Failures {
    pub(super) fn new(per_minute: u32) -> Failures {
        let per_minute = u64::from(per_minute.max(1));
        // A failure is WINDOW_SECONDS units and the bucket refills `per_minute` units a
        // second: `per_minute` failures a minute, as many at once after a quiet minute.
        Failures {
            bucket: Bucket::new(per_minute, per_minute * WINDOW_SECONDS),
            blocked_until: Mutex::new(None),
        }
    }

    /// How long the block in force has left, if one is.
    pub(super) fn blocked_for(&self, now: Instant) -> Option<Duration> {
        let until = (*self.lock())?;
        (until > now).then(|| until - now)
    }

    /// Counts a failure; `true` when it starts a block of `block` from `now`.
    pub(super) fn failed(&self, now: Instant, block: Duration) -> bool {
        if self.bucket.take(WINDOW_SECONDS).is_ok() {
            return false;
        }
        let mut until = self.lock();
        if until.is_some_and(|until| until > now) {
            return false;
        }
        *until = Some(now + block);
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.blocked_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Settle for Failures {
    fn settled(&self, since: Instant, now: Instant) -> bool {
        self.blocked_for(now).is_none() && self.bucket.settled(since, now)
    }
}
