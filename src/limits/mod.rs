//! Per-user limits: how fast, how many at once and how much a user (or, without a login,
//! a client address) may use the proxy, and how long a client address that keeps failing
//! authentication is refused. This module owns the settings and, keyed by user, the state
//! that enforces them; the policy decides which limits apply to a request (everyone's
//! `[limits]`, or those of the rule that allowed it).

use std::time::Duration;

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
