//! Parent proxies as an administrator watches them: for each, whether it is up now, how
//! many connections to it failed (each one that marked it down or kept it down) and how
//! many requests and tunnels went through it. The dialer registers the parents once at
//! start and updates their counters; `/metrics` and `/stats` read them. Relaxed atomics,
//! like every other counter here; the list itself is written once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde::Serialize;

/// One parent's live counters.
#[derive(Debug)]
pub struct ParentCounters {
    pub name: Arc<str>,
    up: AtomicBool,
    failures: AtomicU64,
    requests: AtomicU64,
}

impl ParentCounters {
    pub fn new(name: Arc<str>) -> ParentCounters {
        ParentCounters {
            name,
            up: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// A connection to the parent failed: it is down (for its back-off).
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.up.store(false, Ordering::Relaxed);
    }

    /// A connection through the parent worked (it is up), for one more request.
    pub fn used(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.up.store(true, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ParentSnapshot {
        ParentSnapshot {
            name: self.name.to_string(),
            up: self.up.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// Every parent's counters, registered once at start.
#[derive(Debug, Default)]
pub struct ParentTable {
    parents: OnceLock<Vec<Arc<ParentCounters>>>,
}

impl ParentTable {
    /// Registers the parents (the first call wins; there is one dialer per server).
    pub fn register(&self, parents: Vec<Arc<ParentCounters>>) {
        let _ = self.parents.set(parents);
    }

    pub fn snapshot(&self) -> Vec<ParentSnapshot> {
        self.parents
            .get()
            .map(|all| all.iter().map(|p| p.snapshot()).collect())
            .unwrap_or_default()
    }
}

/// One parent's counters at one moment, as `/stats` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParentSnapshot {
    pub name: String,
    pub up: bool,
    pub failures: u64,
    pub requests: u64,
}
