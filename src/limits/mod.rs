//! Per-user limits: how fast, how many at once and how much a user (or, without a login,
//! a client address) may use the proxy, and how long a client address that keeps failing
//! authentication is refused. This module owns the settings and, keyed by user, the state
//! that enforces them ([`Limiter`]); the policy decides which limits apply to a request
//! (everyone's `[limits]`, or those of the rule that allowed it) and the front end passes
//! them in. It answers nothing itself: a refusal is an [`OverLimit`] the front end turns
//! into its protocol's answer (HTTP: 429 with `Retry-After`).
//!
//! Buckets are GCRA (`governor`, on tokio's clock: `bucket`); keyed state is bounded
//! (`keyed`); bandwidth is paced per chunk (`pacer`); authentication failures block an
//! address (`auth`). State is per process: limits are not shared across a fleet. When a
//! setting is off, its check returns before touching any state.
//!
//! Why `governor` and not buckets of our own: GCRA keeps one atomic word per bucket and
//! answers "not until" exactly, which is what `Retry-After` and pacing need; its keyed
//! limiters are not used because each rule may set its own rate for the same user, and
//! because eviction here must also respect open connections and blocks (`keyed`).

mod auth;
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
use auth::Failures;
use bucket::Bucket;
pub use keyed::MAX_KEYS;
use keyed::{Keyed, Settle};
use pacer::Throttle;
pub use pacer::{Paced, Pacer};

/// How long a client address is refused after too many authentication failures, unless
/// the policy says otherwise (`auth_block_seconds`).
pub const DEFAULT_AUTH_BLOCK: Duration = Duration::from_secs(300);

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
        }
    }
}

impl LimitSettings {
    /// Whether any limit keyed by user is set (authentication failures are keyed by
    /// address and checked apart).
    fn any_per_user(&self) -> bool {
        self.requests_per_second.is_some() || self.connections.is_some() || self.bandwidth.is_some()
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
    auth: Keyed<IpAddr, Failures>,
    stats: Arc<Stats>,
}

impl Limiter {
    pub fn new(stats: Arc<Stats>) -> Limiter {
        Limiter::with_capacity(MAX_KEYS, stats)
    }

    /// A limiter holding at most `keys` keys of each kind.
    pub fn with_capacity(keys: usize, stats: Arc<Stats>) -> Limiter {
        Limiter {
            requests: Keyed::new(keys),
            connections: Keyed::new(keys),
            bandwidth: Keyed::new(keys),
            auth: Keyed::new(keys),
            stats,
        }
    }

    /// Applies `settings` to one admitted request of `user` (or of `client` without a
    /// login): the connection count at the connection's first request, then the request
    /// rate; grants the user's bandwidth. Requests a bucket refuses are not counted
    /// against the connection cap, nor the other way round.
    pub fn admit(
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

    /// Refuses an attempt from `client` while it is blocked for failing authentication.
    pub fn auth_check(&self, client: IpAddr, settings: &LimitSettings) -> Result<(), OverLimit> {
        if settings.auth_failures_per_minute.is_none() {
            return Ok(());
        }
        let Some(failures) = self.auth.peek(&client) else {
            return Ok(());
        };
        let Some(left) = failures.blocked_for(Instant::now()) else {
            return Ok(());
        };
        self.stats.limited(Limit::AuthFailures);
        Err(OverLimit {
            brief: "auth_blocked",
            reason: "too many authentication failures from this address",
            retry_after: whole_seconds(left),
        })
    }

    /// Counts an authentication failure (credentials sent and not accepted) from
    /// `client`; past the limit the address is blocked for `auth_block`.
    pub fn auth_failed(&self, client: IpAddr, settings: &LimitSettings) {
        let Some(per_minute) = settings.auth_failures_per_minute else {
            return;
        };
        let failures = self
            .auth
            .get_or_insert(client, || Failures::new(per_minute));
        if failures.failed(Instant::now(), settings.auth_block) {
            tracing::warn!(
                client = %client,
                seconds = settings.auth_block.as_secs(),
                "client blocked after more than {per_minute} authentication failures a minute"
            );
        }
    }

    /// Keys held, of every kind (for tests of the bound).
    pub fn keys(&self) -> usize {
        self.requests.len() + self.connections.len() + self.bandwidth.len() + self.auth.len()
    }
}

/// A wait as `Retry-After` gives it: whole seconds, rounded up, at least one.
fn whole_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}
