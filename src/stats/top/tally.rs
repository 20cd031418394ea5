//! One tally of the top lists: a sketch per list, and the totals the lists are shares of.
//!
//! A tally is what a shard counts between two flushes, what one minute of history holds,
//! and what "since start" holds; they differ only in capacity. Merging two tallies merges
//! each sketch.

use std::net::IpAddr;

use serde::Serialize;

use super::Seen;
use crate::stats::sketch::{Counted, Detail, SpaceSaving};
use crate::stats::{Outcome, RequestCounts, Results};

/// Every list's sketch, and the totals over all keys.
#[derive(Debug, Clone)]
pub struct Tally {
    requests: u64,
    /// Exchanges by outcome (`Outcome::index`).
    outcomes: [u64; Outcome::ALL.len()],
    bytes: u64,
    destinations: SpaceSaving<String>,
    destination_bytes: SpaceSaving<String>,
    users: SpaceSaving<String>,
    user_bytes: SpaceSaving<String>,
    clients: SpaceSaving<IpAddr>,
    client_bytes: SpaceSaving<IpAddr>,
    blocked: SpaceSaving<String>,
    failing: SpaceSaving<String>,
}

impl Tally {
    /// An empty tally whose sketches hold `capacity` keys each; allocates nothing yet.
    pub fn new(capacity: usize) -> Tally {
        Tally {
            requests: 0,
            outcomes: [0; Outcome::ALL.len()],
            bytes: 0,
            destinations: SpaceSaving::new(capacity),
            destination_bytes: SpaceSaving::new(capacity),
            users: SpaceSaving::new(capacity),
            user_bytes: SpaceSaving::new(capacity),
            clients: SpaceSaving::new(capacity),
            client_bytes: SpaceSaving::new(capacity),
            blocked: SpaceSaving::new(capacity),
            failing: SpaceSaving::new(capacity),
        }
    }

    /// Counts one finished exchange in every list it belongs to.
    pub fn record(&mut self, seen: &Seen<'_>) {
        self.requests = self.requests.saturating_add(1);
        let outcome = &mut self.outcomes[seen.outcome.index()];
        *outcome = outcome.saturating_add(1);
        self.bytes = self.bytes.saturating_add(seen.bytes);
        if let Some(destination) = seen.destination {
            self.destinations.add(destination, 1, Detail::None);
            if seen.bytes > 0 {
                self.destination_bytes
                    .add(destination, seen.bytes, Detail::None);
            }
            if seen.outcome == Outcome::Blocked {
                self.blocked.add(destination, 1, seen.reason.clone());
            }
            if seen.origin_failed() {
                self.failing
                    .add(destination, 1, Detail::Status(seen.status));
            }
        }
        if let Some(user) = seen.user {
            self.users.add(user, 1, Detail::None);
            if seen.bytes > 0 {
                self.user_bytes.add(user, seen.bytes, Detail::None);
            }
        }
        self.clients.add(&seen.client, 1, Detail::None);
        if seen.bytes > 0 {
            self.client_bytes
                .add(&seen.client, seen.bytes, Detail::None);
        }
    }

    /// Adds `other` into this tally.
    pub fn merge(&mut self, other: &Tally) {
        self.requests = self.requests.saturating_add(other.requests);
        for (mine, theirs) in self.outcomes.iter_mut().zip(other.outcomes) {
            *mine = mine.saturating_add(theirs);
        }
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.destinations.merge(&other.destinations);
        self.destination_bytes.merge(&other.destination_bytes);
        self.users.merge(&other.users);
        self.user_bytes.merge(&other.user_bytes);
        self.clients.merge(&other.clients);
        self.client_bytes.merge(&other.client_bytes);
        self.blocked.merge(&other.blocked);
        self.failing.merge(&other.failing);
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.requests == 0
    }

    /// The `n` first of every list.
    pub fn lists(&self, n: usize) -> TopLists {
        let count = |outcome: Outcome| self.outcomes[outcome.index()];
        let counts = RequestCounts {
            allowed: count(Outcome::Allowed),
            blocked: count(Outcome::Blocked),
            auth_failed: count(Outcome::AuthFailed),
            malformed: count(Outcome::Malformed),
            upstream_error: count(Outcome::UpstreamError),
            tunnel: count(Outcome::Tunnel),
        };
        let denied = entries(&self.blocked, n);
        TopLists {
            requests: self.requests,
            results: Results::of(&counts),
            bytes: self.bytes,
            destinations_by_requests: entries(&self.destinations, n),
            destinations_by_bytes: entries(&self.destination_bytes, n),
            users_by_requests: entries(&self.users, n),
            users_by_bytes: entries(&self.user_bytes, n),
            clients_by_requests: entries(&self.clients, n),
            clients_by_bytes: entries(&self.client_bytes, n),
            blocked: denied.clone(),
            denied,
            failing: entries(&self.failing, n),
        }
    }
}

fn entries<K: std::hash::Hash + Eq + Clone + Ord + ToString>(
    sketch: &SpaceSaving<K>,
    n: usize,
) -> Vec<Entry> {
    sketch.top(n).into_iter().map(Entry::from).collect()
}

/// The top lists over one span of time, as `/stats/top` serves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopLists {
    /// Exchanges counted in the span (every key, not only the listed ones).
    pub requests: u64,
    /// The same exchanges by result (allowed, denied by policy, login required, errors).
    pub results: Results<u64>,
    /// Bytes to and from clients in the span.
    pub bytes: u64,
    /// Destinations (`host:port` as the client named it) by exchanges.
    pub destinations_by_requests: Vec<Entry>,
    pub destinations_by_bytes: Vec<Entry>,
    /// Authenticated users (empty without authentication).
    pub users_by_requests: Vec<Entry>,
    pub users_by_bytes: Vec<Entry>,
    /// Client addresses.
    pub clients_by_requests: Vec<Entry>,
    pub clients_by_bytes: Vec<Entry>,
    /// Destinations denied by policy (403 from a rule or the blacklist, 429 from a
    /// limit); `detail`: the rule or reason.
    pub denied: Vec<Entry>,
    /// The same list under its old name, kept for scripts written before `denied`.
    pub blocked: Vec<Entry>,
    /// Destinations whose origin failed (502, 504) or answered 5xx; `detail`: the last
    /// status.
    pub failing: Vec<Entry>,
}

/// One line of a top list. `value` is an upper bound; the truth is at least
/// `value - overcount` (`overcount` is 0 unless the sketch had to make room for this key).
/// Called `error` before, which read as a count of errors: a failing origin showed
/// `error 0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    pub value: u64,
    pub overcount: u64,
    pub detail: Option<String>,
}

impl<K: ToString> From<&Counted<K>> for Entry {
    fn from(counted: &Counted<K>) -> Entry {
        Entry {
            name: counted.key.to_string(),
            value: counted.count,
            overcount: counted.error,
            detail: counted.detail.text(),
        }
    }
}
