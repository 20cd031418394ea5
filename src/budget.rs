//! The process-wide memory budget for body buffers (`--max-buffer-memory`). Every buffer
//! that moves body bytes starts at a small base size it never asks for; growing past
//! that base (a response read doubling towards `http::io::MAX_READ_CHUNK`, a tunnel's
//! copy buffer) takes the extra bytes from this budget first, and a buffer the budget
//! cannot pay for stays small: the transfer goes on, more slowly, and never fails for
//! want of budget. What was taken is given back when the buffer shrinks or is dropped.
//!
//! One budget for the whole process, in a `static`, rather than a handle passed down:
//! every connection's read state would otherwise carry a pointer it needs only on the
//! rare read that grows, and the idle connection's future is held to a size (see
//! `http_proxy`'s size test). The limit is set once at start (`server::run`), like the
//! logging's global subscriber. This module owns only counting; what a buffer's base
//! size is and when it wants to grow belong to the buffer's owner.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// `--max-buffer-memory` when not given, in MiB.
pub const DEFAULT_MAX_BUFFER_MEMORY_MIB: u64 = 256;

/// The budget every body buffer in the process draws from.
static GLOBAL: Budget = Budget::new(DEFAULT_MAX_BUFFER_MEMORY_MIB as usize * 1024 * 1024);

/// The process's budget.
pub fn global() -> &'static Budget {
    &GLOBAL
}

/// A limit in bytes and what is taken of it, as relaxed atomics: the figure only has to
/// hold across all connections, not order anything else.
#[derive(Debug)]
pub struct Budget {
    limit: AtomicUsize,
    used: AtomicUsize,
    /// Times a buffer wanted to grow and was refused.
    refused: AtomicU64,
}

/// What the budget stands at, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub limit: usize,
    pub used: usize,
    pub refused: u64,
}

impl Budget {
    pub const fn new(limit: usize) -> Budget {
        Budget {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Changes the limit; what is taken stays taken (a lower limit only refuses growth
    /// until enough is given back).
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// Takes `bytes` if they fit under the limit; `false` (and nothing taken) otherwise.
    pub fn try_take(&self, bytes: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let taken = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&total| total <= limit)
            })
            .is_ok();
        if !taken {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Gives back `bytes` taken earlier.
    pub fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Takes `bytes` as a [`Lease`] that gives them back when dropped.
    pub fn lease(&'static self, bytes: usize) -> Option<Lease> {
        // `then`, not `then_some`: a refused lease must never be built (its drop gives back).
        self.try_take(bytes).then(|| Lease {
            budget: self,
            bytes,
        })
    }

    pub fn usage(&self) -> Usage {
        Usage {
            limit: self.limit.load(Ordering::Relaxed),
            used: self.used.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// Bytes taken from a budget for as long as this lives.
#[derive(Debug)]
pub struct Lease {
    budget: &'static Budget,
    bytes: usize,
}

impl Lease {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> &'static Budget {
        Box::leak(Box::new(Budget::new(limit)))
    }

    #[test]
    fn takes_up_to_the_limit_and_no_further() {
        let budget = budget(100);
        assert!(budget.try_take(60));
        assert!(budget.try_take(40));
        assert!(!budget.try_take(1), "spent");
        budget.give_back(40);
        assert!(!budget.try_take(41));
        assert!(budget.try_take(40));
        let usage = budget.usage();
        assert_eq!((usage.used, usage.refused), (100, 2));
    }

    #[test]
    fn a_lease_gives_back_when_dropped() {
        let budget = budget(10);
        let lease = budget.lease(10).unwrap();
        assert_eq!(lease.bytes(), 10);
        assert!(budget.lease(1).is_none());
        drop(lease);
        assert_eq!(budget.usage().used, 0);
        assert!(budget.lease(10).is_some());
    }

    #[test]
    fn lowering_the_limit_refuses_growth_until_enough_is_back() {
        let budget = budget(100);
        assert!(budget.try_take(80));
        budget.set_limit(50);
        assert!(!budget.try_take(1));
        budget.give_back(80);
        assert!(budget.try_take(50));
        assert!(!budget.try_take(usize::MAX), "no overflow");
    }

    #[test]
    fn threads_never_take_more_than_the_limit_together() {
        let budget = budget(1000);
        let granted: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..1000).filter(|_| budget.try_take(3)).count() * 3))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert!(granted <= 1000, "{granted}");
        assert_eq!(budget.usage().used, granted);
    }
}
