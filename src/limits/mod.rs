//! Per-user limits: how fast, how many at once and how much a user (or, without a login,
//! a client address) may use the proxy, and how long a client address that keeps failing
//! authentication is refused. This module owns the settings and, keyed by user, the state
//! that enforces them ([`Limiter`]); the policy decides which limits apply to a request
//! (everyone's `[limits]`, or those of the rule that allowed it) and the front end passes
//! them in. It answers nothing itself: a refusal is an [`OverLimit`] the front end turns
//! into its protocol's answer (HTTP: 429 with `Retry-After`).
//!
//! Buckets are GCRA (`governor`, on tokio's clock: `bucket`); keyed state is bounded
//! (`keyed`); bandwidth is paced per chunk (`pacer`); a check of credentials reserves a
//! slot in its address's and everyone's failure windows before it runs (`auth`), and an
//! address that spends its window is blocked in a table of its own that eviction cannot
//! empty (`blocks`). State is per process: limits are not shared across a fleet. When a
//! setting is off, its check returns before touching any state.
//!
//! Why `governor` and not buckets of our own: GCRA keeps one atomic word per bucket and
//! answers "not until" exactly, which is what `Retry-After` and pacing need; its keyed
//! limiters are not used because each rule may set its own rate for the same user, and
//! because eviction here must also respect open connections and blocks (`keyed`).

mod auth;
mod blocks;
mod bucket;
mod keyed;
mod pacer;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::OverLimit;
use crate::stats::{Limit, Stats};
pub use auth::Attempt;
use auth::Failures;
use blocks::Blocks;
pub use blocks::MAX_BLOCKS;
use bucket::Bucket;
pub use keyed::MAX_KEYS;
use keyed::{Keyed, Settle};
use pacer::Throttle;
pub use pacer::{Paced, Pacer};

/// How long a client address is refused after too many authentication failures, unless
/// the policy says otherwise (`auth_block_seconds`).
pub const DEFAULT_AUTH_BLOCK: Duration = Duration::from_secs(300);

/// Everyone's authentication failures a minute, unless `auth_failures_per_minute_total`
/// says otherwise: this many addresses' worth of `auth_failures_per_minute`. Enough for
/// the typing mistakes of a whole office, and it caps what guessing spread over many
/// addresses costs (each failure may be a bcrypt check).
pub const DEFAULT_AUTH_FAILURES_TOTAL_ADDRESSES: u32 = 10;

/// Windows of everyone's failures held at once: one per rate in use (a reload may
/// change it).
const EVERYONE_KEYS: usize = 4;

/// One set of limits; each is off (`None`) unless given.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    /// Requests per second, as a token bucket that allows bursts of this size; over it a
    /// request gets `429` with `Retry-After`.
    pub requests_per_second: Option<u32>,
    /// Client connections open at once; over it a connection gets `429` and is closed.
    pub connections: Option<u32>,
    /// Bytes per second across all of a user's connections and tunnels, both directions;
    /// over it transfers are slowed, never failed.
    pub bandwidth: Option<u64>,
    /// Authentication failures per minute from one client address; past it, further
    /// attempts from that address get `429` for `auth_block`.
    pub auth_failures_per_minute: Option<u32>,
    pub auth_block: Duration,
    /// Authentication failures per minute from all addresses together; past it, checks
    /// of credentials the verification cache does not know get `429` until the window
    /// moves on. `None`: [`DEFAULT_AUTH_FAILURES_TOTAL_ADDRESSES`] times
    /// `auth_failures_per_minute`, when that is set.
    pub auth_failures_per_minute_total: Option<u32>,
}

impl Default for LimitSettings {
    /// No limits.
    fn default() -> LimitSettings {
        LimitSettings {
            requests_per_second: None,
            connections: None,
            bandwidth: None,
            auth_failures_per_minute: None,
            auth_block: DEFAULT_AUTH_BLOCK,
            auth_failures_per_minute_total: None,
        }
    }
}

impl LimitSettings {
    /// Whether any limit keyed by user is set (authentication failures are keyed by
    /// address and checked apart).
    fn any_per_user(&self) -> bool {
        self.requests_per_second.is_some() || self.connections.is_some() || self.bandwidth.is_some()
    }

    /// Everyone's authentication failures a minute, given or by default.
    pub fn auth_failures_total(&self) -> Option<u32> {
        self.auth_failures_per_minute_total.or_else(|| {
            self.auth_failures_per_minute
                .map(|n| n.saturating_mul(DEFAULT_AUTH_FAILURES_TOTAL_ADDRESSES))
        })
    }
}

/// Who a limit counts against: the authenticated user, or the client address when there
/// is no login.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserKey {
    User(Arc<str>),
    Client(IpAddr),
}

impl UserKey {
    pub fn of(user: Option<&str>, client: IpAddr) -> UserKey {
        match user {
            Some(name) => UserKey::User(Arc::from(name)),
            None => UserKey::Client(client),
        }
    }
}

/// A user's request bucket.
struct Requests(Bucket);

impl Settle for Requests {
    fn settled(&self, since: Instant, now: Instant) -> bool {
        self.0.settled(since, now)
    }
}

/// A user's open client connections.
#[derive(Default)]
struct Connections(AtomicU32);

impl Settle for Connections {
    fn settled(&self, _since: Instant, _now: Instant) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// Keeps one connection counted against its user until dropped (an RAII guard: a
/// panic or an early return cannot leak a count).
struct Counted(Arc<Connections>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client connection's place in its user's connection count. The user is known at
/// the connection's first request, so the count starts there; the connection then counts
/// against that user until it closes, whoever its later requests authenticate as.
#[derive(Default)]
pub struct Seat {
    /// `Some` once the connection counts against a user. One pointer: every idle
    /// connection's future holds a seat.
    counted: Option<Counted>,
}

/// What the limits give one admitted request: the user's bandwidth, when limited.
#[derive(Default)]
pub struct Grant {
    pub pacer: Option<Pacer>,
}

/// Every user's limiter state, for the whole process.
pub struct Limiter {
    requests: Keyed<(UserKey, u32), Requests>,
    connections: Keyed<UserKey, Connections>,
    bandwidth: Keyed<(UserKey, u64), Throttle>,
    /// Each client address's failure window.
    auth: Keyed<IpAddr, Failures>,
    /// Everyone's failure window, by its rate.
    everyone: Keyed<u32, Failures>,
    blocks: Blocks,
    stats: Arc<Stats>,
}

impl Limiter {
    pub fn new(stats: Arc<Stats>) -> Limiter {
        Limiter::with_capacity(MAX_KEYS, stats)
    }

    /// A limiter holding at most `keys` keys of each kind, and blocks in proportion
    /// ([`MAX_BLOCKS`] to [`MAX_KEYS`]).
    pub fn with_capacity(keys: usize, stats: Arc<Stats>) -> Limiter {
        Limiter {
            requests: Keyed::new(keys),
            connections: Keyed::new(keys),
            bandwidth: Keyed::new(keys),
            auth: Keyed::new(keys),
            everyone: Keyed::new(EVERYONE_KEYS),
            blocks: Blocks::new(keys.saturating_mul(MAX_BLOCKS / MAX_KEYS)),
            stats,
        }
    }

    /// Applies `settings` to one admitted request of `user` (or of `client` without a
    /// login): the connection count at the connection's first request, then the request
    /// rate; grants the user's bandwidth. Requests a bucket refuses are not counted
    /// against the connection cap, nor the other way round.
    pub fn grant(
        &self,
        seat: &mut Seat,
        user: Option<&str>,
        client: IpAddr,
        settings: &LimitSettings,
    ) -> Result<Grant, OverLimit> {
        if !settings.any_per_user() {
            return Ok(Grant::default());
        }
        let key = UserKey::of(user, client);
        if let Some(max) = settings.connections {
            self.take_seat(seat, &key, max)?;
        }
        if let Some(rate) = settings.requests_per_second {
            self.take_request(&key, rate)?;
        }
        let pacer = settings.bandwidth.map(|rate| {
            let stats = &self.stats;
            let throttle = self
                .bandwidth
                .get_or_insert((key, rate), || Throttle::new(rate, Arc::clone(stats)));
            Pacer::new(throttle)
        });
        Ok(Grant { pacer })
    }

    fn take_seat(&self, seat: &mut Seat, key: &UserKey, max: u32) -> Result<(), OverLimit> {
        if seat.counted.is_some() {
            return Ok(());
        }
        let open = self
            .connections
            .get_or_insert(key.clone(), Connections::default);
        let counted = open
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !counted {
            self.stats.limited(Limit::Connections);
            return Err(OverLimit {
                brief: "connection_limit",
                reason: "too many connections open for this user",
                retry_after: 1,
            });
        }
        seat.counted = Some(Counted(open));
        Ok(())
    }

    fn take_request(&self, key: &UserKey, rate: u32) -> Result<(), OverLimit> {
        let burst = u64::from(rate);
        let bucket = self
            .requests
            .get_or_insert((key.clone(), rate), || Requests(Bucket::new(burst, burst)));
        let Err(at) = bucket.0.take(1) else {
            return Ok(());
        };
        self.stats.limited(Limit::Requests);
        Err(OverLimit {
            brief: "rate_limited",
            reason: "over the request rate for this user",
            retry_after: whole_seconds(at.saturating_duration_since(Instant::now())),
        })
    }

    /// Keys held, of every kind (for tests of the bound).
    pub fn keys(&self) -> usize {
        self.requests.len()
            + self.connections.len()
            + self.bandwidth.len()
            + self.auth.len()
            + self.everyone.len()
            + self.blocks.len()
    }
}

/// A wait as `Retry-After` gives it: whole seconds, rounded up, at least one.
fn whole_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}
