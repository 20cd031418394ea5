//! Top lists: which destinations, users and clients carry the traffic, which destinations
//! are blocked and which origins fail, since start and over the last minutes.
//!
//! Owns the counting of each finished exchange by key, in bounded memory (a space-saving
//! sketch per list, see `sketch`), and the history those counts roll into. It does no I/O
//! and reads no clock: the caller says which minute it is.
//!
//! The request path calls [`TopTallies::record`], which must cost next to nothing. Each
//! thread records into its own shard (a tally behind a `std::sync::Mutex`, picked once per
//! thread), so workers never wait for each other; the only other party that takes a
//! shard's lock is [`TopTallies::flush`], which swaps the shard's tally for an empty one
//! and merges it outside the lock. The lock is never held across an `.await`. Why not a
//! `try_lock` that skips the count when busy: the lock is contended only during that swap,
//! a few instructions, and a skipped count would make the lists wrong in exactly the tests
//! and bursts where someone looks at them. Why not one global lock: every worker would
//! queue on it, a cost that grows with cores. Why not per-key sharding: one exchange
//! counts under several keys (destination, user, client), so it would take several locks.

mod tally;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use super::Outcome;
use super::ring::Ring;
pub use super::sketch::Detail;
pub use tally::{Entry, Tally, TopLists};

/// Shards of the live tally; threads beyond this many share shards.
const SHARDS: usize = 16;
/// Keys each list of a shard holds between two flushes (every few seconds).
const SHARD_CAPACITY: usize = 64;
/// Keys each list holds for one minute of history.
const MINUTE_CAPACITY: usize = 64;
/// Keys each list holds since start, and when the minutes are merged into one window.
const SPAN_CAPACITY: usize = 256;
/// Minutes in the recent window, the current (partial) one included.
pub const WINDOW_MINUTES: u64 = 15;
/// Entries in each list served.
pub const LIST_LENGTH: usize = 10;

/// One finished exchange, as the top lists see it.
#[derive(Debug, Clone)]
pub struct Seen<'a> {
    /// `host:port` as the client named it; `None` when the request never got that far.
    pub destination: Option<&'a str>,
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    pub client: IpAddr,
    pub outcome: Outcome,
    /// The status sent to the client (0 when none was).
    pub status: u16,
    /// Bytes to and from the client.
    pub bytes: u64,
    /// For a blocked exchange: the rule, or the refusal's label.
    pub reason: Detail,
}

impl Seen<'_> {
    /// Whether the origin failed: unreachable or bad (502, 504), or a 5xx of its own.
    fn origin_failed(&self) -> bool {
        match self.outcome {
            Outcome::UpstreamError => true,
            Outcome::Allowed => (500..600).contains(&self.status),
            _ => false,
        }
    }
}

/// The live top lists: per-thread shards for the request path, and the history.
#[derive(Debug)]
pub struct TopTallies {
    shards: [Mutex<Tally>; SHARDS],
    history: Mutex<History>,
}

#[derive(Debug)]
struct History {
    since_start: Tally,
    /// `(minute since the Unix epoch, what was counted in it)`, oldest first.
    minutes: Ring<(u64, Tally)>,
}

impl Default for TopTallies {
    fn default() -> Self {
        TopTallies {
            shards: std::array::from_fn(|_| Mutex::new(Tally::new(SHARD_CAPACITY))),
            history: Mutex::new(History {
                since_start: Tally::new(SPAN_CAPACITY),
                minutes: Ring::with_capacity(WINDOW_MINUTES as usize),
            }),
        }
    }
}

/// A lock that a panic elsewhere cannot make unusable: a tally is plain counts, valid at
/// any point a panic could interrupt it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This thread's shard, picked round-robin the first time the thread records.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

/// Both spans of the top lists, as `/stats/top` serves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopReport {
    pub since_start: TopLists,
    /// The last [`WINDOW_MINUTES`] minutes, counted in whole minutes (the current one so far).
    pub recent: TopLists,
    pub recent_minutes: u64,
}

impl TopTallies {
    /// Counts one finished exchange. Called on the request path.
    pub fn record(&self, seen: &Seen<'_>) {
        if let Some(shard) = self.shards.get(shard_index()) {
            lock(shard).record(seen);
        }
    }

    /// Moves what the shards counted into the history, under `minute` (minutes since the
    /// Unix epoch): into "since start" and into that minute's tally.
    pub fn flush(&self, minute: u64) {
        let mut counted = Tally::new(SPAN_CAPACITY);
        for shard in &self.shards {
            let taken = std::mem::replace(&mut *lock(shard), Tally::new(SHARD_CAPACITY));
            counted.merge(&taken);
        }
        if counted.is_empty() {
            return;
        }
        let mut history = lock(&self.history);
        history.since_start.merge(&counted);
        match history.minutes.newest_mut() {
            Some((newest, tally)) if *newest == minute => tally.merge(&counted),
            _ => {
                let mut tally = Tally::new(MINUTE_CAPACITY);
                tally.merge(&counted);
                history.minutes.push((minute, tally));
            }
        }
    }

    /// Flushes, then lists the top [`LIST_LENGTH`] of each list since start and over the
    /// [`WINDOW_MINUTES`] minutes up to `minute`.
    pub fn report(&self, minute: u64) -> TopReport {
        self.flush(minute);
        let history = lock(&self.history);
        let mut recent = Tally::new(SPAN_CAPACITY);
        let window = minute.saturating_sub(WINDOW_MINUTES - 1)..=minute;
        for (_, tally) in history.minutes.iter().filter(|(m, _)| window.contains(m)) {
            recent.merge(tally);
        }
        TopReport {
            since_start: history.since_start.lists(LIST_LENGTH),
            recent: recent.lists(LIST_LENGTH),
            recent_minutes: WINDOW_MINUTES,
        }
    }
}

#[cfg(test)]
mod tests;
