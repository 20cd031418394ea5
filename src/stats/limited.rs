//! The per-user limits' counters as statistics see them: which limit held something back
//! (`proxy_limited_total{limit="…"}`), one label each. The limits themselves live in
//! `limits`; this is only their vocabulary in the numbers.

use serde::Serialize;

/// Which per-user limit held something back (see `limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A request over `requests_per_second` (answered 429).
    Requests,
    /// A connection over `connections` (answered 429 and closed).
    Connections,
    /// A transfer that waited for `bandwidth` (slowed, not failed).
    Bandwidth,
    /// An authentication attempt refused unchecked: its client address is blocked after
    /// too many failures, its checks in flight hold the address's failure budget, or
    /// everyone's failure budget is spent.
    AuthFailures,
}

impl Limit {
    pub const ALL: [Limit; 4] = [
        Limit::Requests,
        Limit::Connections,
        Limit::Bandwidth,
        Limit::AuthFailures,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Requests => "requests",
            Limit::Connections => "connections",
            Limit::Bandwidth => "bandwidth",
            Limit::AuthFailures => "auth_failures",
        }
    }
}

/// Things held back by each per-user limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LimitedCounts {
    pub requests: u64,
    pub connections: u64,
    pub bandwidth: u64,
    pub auth_failures: u64,
}

impl LimitedCounts {
    /// The count for one limit.
    pub fn get(&self, limit: Limit) -> u64 {
        match limit {
            Limit::Requests => self.requests,
            Limit::Connections => self.connections,
            Limit::Bandwidth => self.bandwidth,
            Limit::AuthFailures => self.auth_failures,
        }
    }
}
