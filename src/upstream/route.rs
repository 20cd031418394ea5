//! Which way a connection leaves ([`Routes::hops`]): the first `[[routes]]` entry whose
//! `dest` matches the target, else the `--parent` list, else direct. A route is an
//! ordered list of hops — direct or a named parent — tried in turn. Also each parent's
//! failover state: a parent that could not be reached is down for a back-off that
//! doubles with each failure in a row, up to [`BACKOFF_CAP_FACTOR`] times the first, and
//! is skipped while it lasts; the first success ends it.
//!
//! Routes match the target as the client named it — a name by the `dest` names and
//! wildcards, an address literal by its networks — before any lookup: a parent may
//! resolve the name itself, so a CIDR entry never matches a name here.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::acl::{DestList, Host, normalise};
use crate::stats::{ParentCounters, Stats};

use super::parent::Parent;

/// How much longer than the first back-off the longest one is.
pub const BACKOFF_CAP_FACTOR: u32 = 32;
/// The first back-off of a parent that failed [seconds].
pub const DEFAULT_PARENT_BACKOFF_SECS: u64 = 2;

/// One step of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    Direct,
    /// The parent at this index of [`EgressSettings::parents`].
    Parent(usize),
}

/// One `[[routes]]` entry.
#[derive(Clone)]
pub struct RouteRule {
    /// `None`: every destination (`dest = ["*"]` or no `dest`).
    pub dest: Option<DestList>,
    /// The `dest` entries as written: settings are compared by their debug form (for
    /// "takes effect after a restart"), and hash tables print in no fixed order.
    pub written: Vec<String>,
    pub hops: Vec<Hop>,
}

impl std::fmt::Debug for RouteRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteRule")
            .field("dest", &self.written)
            .field("hops", &self.hops)
            .finish()
    }
}

/// How traffic leaves the proxy, as the settings say.
#[derive(Debug, Clone)]
pub struct EgressSettings {
    pub parents: Vec<Arc<Parent>>,
    pub routes: Vec<RouteRule>,
    /// The hops for a destination no route matches: the `--parent` list, else direct.
    pub fallback: Vec<Hop>,
    /// A failed parent's first back-off.
    pub backoff: Duration,
}

impl Default for EgressSettings {
    fn default() -> EgressSettings {
        EgressSettings {
            parents: Vec::new(),
            routes: Vec::new(),
            fallback: vec![Hop::Direct],
            backoff: Duration::from_secs(DEFAULT_PARENT_BACKOFF_SECS),
        }
    }
}

/// The routes and each parent's live state.
pub struct Routes {
    settings: EgressSettings,
    states: Vec<ParentState>,
}

struct ParentState {
    counters: Arc<ParentCounters>,
    /// Held for a compare and a store, never across I/O.
    backoff: Mutex<Backoff>,
}

#[derive(Default)]
struct Backoff {
    failures_in_row: u32,
    until: Option<Instant>,
}

impl Routes {
    /// The routes of `settings`, their parents registered in `stats`.
    pub fn new(settings: EgressSettings, stats: &Stats) -> Routes {
        let states: Vec<ParentState> = settings
            .parents
            .iter()
            .map(|parent| ParentState {
                counters: Arc::new(ParentCounters::new(Arc::clone(&parent.name))),
                backoff: Mutex::default(),
            })
            .collect();
        stats
            .parents
            .register(states.iter().map(|s| Arc::clone(&s.counters)).collect());
        Routes { settings, states }
    }

    /// Whether every destination goes direct (no parents at all): the dialer's fast path.
    pub fn all_direct(&self) -> bool {
        self.settings.routes.is_empty() && self.settings.fallback == [Hop::Direct]
    }

    /// The hops for `host`, in order.
    pub fn hops(&self, host: &str) -> &[Hop] {
        if self.settings.routes.is_empty() {
            return &self.settings.fallback;
        }
        let host = normalise(host);
        let matches = |dest: &Option<DestList>| match (dest, &host) {
            (None, _) => true,
            (Some(rules), Host::Name(name)) => rules.blocks_name(name),
            (Some(rules), Host::Ip(ip)) => rules.blocks_addr(*ip),
        };
        self.settings
            .routes
            .iter()
            .find(|route| matches(&route.dest))
            .map_or(&self.settings.fallback, |route| &route.hops)
    }

    pub fn parent(&self, index: usize) -> &Arc<Parent> {
        &self.settings.parents[index]
    }

    /// Whether parent `index` is backed off at `now`.
    pub fn is_down(&self, index: usize, now: Instant) -> bool {
        let backoff = self.lock(index);
        backoff.until.is_some_and(|until| now < until)
    }

    /// Parent `index` could not be reached: down for its next back-off.
    pub fn failed(&self, index: usize, reason: &str) {
        let wait = {
            let mut backoff = self.lock(index);
            backoff.failures_in_row = backoff.failures_in_row.saturating_add(1);
            let wait = backoff_after(self.settings.backoff, backoff.failures_in_row);
            backoff.until = Some(Instant::now() + wait);
            wait
        };
        self.states[index].counters.failed();
        let parent = &self.parent(index).name;
        tracing::warn!(%parent, reason, retry_in = ?wait, "parent proxy down");
    }

    /// A connection through parent `index` was made: it is up.
    pub fn succeeded(&self, index: usize) {
        let was_down = {
            let mut backoff = self.lock(index);
            let was_down = backoff.failures_in_row > 0;
            *backoff = Backoff::default();
            was_down
        };
        self.states[index].counters.used();
        if was_down {
            let parent = &self.parent(index).name;
            tracing::info!(%parent, "parent proxy back up");
        }
    }

    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, Backoff> {
        self.states[index]
            .backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The back-off after `failures` failures in a row: `first`, doubled for each failure
/// after the first, capped at [`BACKOFF_CAP_FACTOR`] times `first`.
fn backoff_after(first: Duration, failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(BACKOFF_CAP_FACTOR);
    first.saturating_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::DestListBuilder;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let first = Duration::from_secs(2);
        let waits: Vec<u64> = (1..=8).map(|n| backoff_after(first, n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 64, 64]);
        assert_eq!(backoff_after(first, u32::MAX).as_secs(), 64);
    }

    fn rules(entries: &[&str]) -> Option<DestList> {
        let mut builder = DestListBuilder::default();
        for entry in entries {
            builder.add_line(entry).unwrap();
        }
        Some(builder.build())
    }

    #[test]
    fn the_first_matching_route_wins_and_names_meet_no_networks() {
        let settings = EgressSettings {
            routes: vec![
                RouteRule {
                    dest: rules(&["*.corp.example", "10.0.0.0/8"]),
                    written: Vec::new(),
                    hops: vec![Hop::Direct],
                },
                RouteRule {
                    dest: None,
                    written: Vec::new(),
                    hops: vec![Hop::Parent(0), Hop::Parent(1)],
                },
            ],
            ..EgressSettings::default()
        };
        let routes = Routes::new(settings, &Stats::default());
        assert_eq!(routes.hops("Git.Corp.Example."), [Hop::Direct]);
        assert_eq!(routes.hops("10.1.2.3"), [Hop::Direct]);
        assert_eq!(
            routes.hops("corp.example"),
            [Hop::Parent(0), Hop::Parent(1)]
        );
        assert_eq!(routes.hops("example.org"), [Hop::Parent(0), Hop::Parent(1)]);
        assert!(!routes.all_direct());
        assert!(Routes::new(EgressSettings::default(), &Stats::default()).all_direct());
    }
}
