//! Authentication attempts, bounded per client address and for everyone. Every check of
//! credentials the cache does not already know takes an [`Attempt`] first: a slot in the
//! address's failure window (`auth_failures_per_minute`) and one in everyone's
//! (`auth_failures_per_minute_total`), reserved *before* the check runs, so concurrent
//! guesses cannot run more checks than the windows allow. A check that passes gives its
//! slots back; one that fails (or never finishes: the client went away) keeps them.
//!
//! An address whose window is spent, with no check of its own still running, is blocked
//! for `auth_block` (`blocks`), and has one check again when the block ends, however
//! short; one whose slots are all held by checks in flight is only refused for now (a
//! browser opening several connections with a cold cache must not block itself). Everyone's window spent throttles checks from every address, blocking
//! none: logins the cache knows still get in, new ones wait for a slot.
//!
//! A window is GCRA kept as one instant (when it is full again), so a slot can be given
//! back exactly — `governor` cannot return a cell, hence not the shared `Bucket` here.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::blocks::Added;
use super::keyed::Settle;
use super::{LimitSettings, Limiter, whole_seconds};
use crate::error::OverLimit;
use crate::stats::Limit;

/// Failures are counted over this window (the "per minute" of the settings).
const WINDOW: Duration = Duration::from_secs(60);

/// One window of authentication failures: an address's, or everyone's.
pub(super) struct Failures {
    /// The window's length divided by the failures it allows.
    interval: Duration,
    state: Mutex<State>,
}

struct State {
    /// When every slot is free again; at or before now, the window is empty.
    full_at: Instant,
    /// Slots reserved by checks still running.
    pending: u32,
}

/// Why a window gave no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spent {
    /// Every slot is taken by failures: the next one frees at this moment.
    Failures(Instant),
    /// Some slots are held by checks still running, which may give them back.
    Pending(Instant),
}

impl Failures {
    /// An empty window as of `now` (the moment its first reservation is asked at).
    pub(super) fn new(per_minute: u32, now: Instant) -> Failures {
        Failures {
            interval: WINDOW / per_minute.max(1),
            state: Mutex::new(State {
                full_at: now,
                pending: 0,
            }),
        }
    }

    /// Reserves one slot for a check about to run.
    fn reserve(&self, now: Instant) -> Result<(), Spent> {
        let mut state = self.lock();
        let taken = state.full_at.max(now) + self.interval;
        if taken <= now + WINDOW {
            state.full_at = taken;
            state.pending += 1;
            return Ok(());
        }
        let frees = taken - WINDOW;
        Err(match state.pending {
            0 => Spent::Failures(frees),
            _ => Spent::Pending(frees),
        })
    }

    /// Ends a reservation: a check that passed (or never ran) gives its slot back, a
    /// failure keeps it.
    fn settle(&self, failed: bool) {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(1);
        if !failed {
            // Past slots have already come back with time; this cannot go below now's.
            state.full_at = state
                .full_at
                .checked_sub(self.interval)
                .unwrap_or(state.full_at);
        }
    }

    /// Leaves a slot free when a block ending at `end` ends, however short the block:
    /// the address may try once more (a failure then blocks it again at once), as it
    /// could before slots were reserved. A block longer than the window changes nothing.
    fn free_one_at(&self, end: Instant) {
        let mut state = self.lock();
        let one_free = end + WINDOW - self.interval;
        state.full_at = state.full_at.min(one_free);
    }

    /// A poisoned lock only means a panic elsewhere mid-update of two plain fields.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Settle for Failures {
    fn settled(&self, _since: Instant, now: Instant) -> bool {
        let state = self.lock();
        state.pending == 0 && state.full_at <= now
    }
}

impl Limiter {
    /// Refuses anything from `client` while it is blocked for failing authentication,
    /// before its credentials are looked at: a blocked address gets no verdict.
    pub fn auth_check(&self, client: IpAddr, settings: &LimitSettings) -> Result<(), OverLimit> {
        if settings.auth_failures_per_minute.is_none() {
            return Ok(());
        }
        match self.blocks.left(client, Instant::now()) {
            Some(left) => Err(self.auth_refused(AUTH_BLOCKED, left)),
            None => Ok(()),
        }
    }

    /// Reserves, for one check of credentials from `client` about to run, a slot in
    /// everyone's failure window and in the address's; the caller settles the
    /// [`Attempt`] with the verdict. Refused (nothing reserved) when everyone's window is
    /// spent, or the address's; the address is then blocked for `auth_block`, unless
    /// checks of its own are still running (they may give their slots back).
    pub fn auth_attempt(
        &self,
        client: IpAddr,
        settings: &LimitSettings,
    ) -> Result<Attempt, OverLimit> {
        let now = Instant::now();
        let mut attempt = Attempt::default();
        if let Some(total) = settings.auth_failures_total() {
            let everyone = self
                .everyone
                .get_or_insert(total, || Failures::new(total, now));
            if let Err(spent) = everyone.reserve(now) {
                let (Spent::Failures(frees) | Spent::Pending(frees)) = spent;
                tracing::debug!(client = %client, "everyone's authentication failure budget is spent");
                return Err(self.auth_refused(AUTH_THROTTLED, frees.saturating_duration_since(now)));
            }
            attempt.everyone = Some(everyone);
        }
        let Some(per_minute) = settings.auth_failures_per_minute else {
            return Ok(attempt);
        };
        let failures = self
            .auth
            .get_or_insert(client, || Failures::new(per_minute, now));
        match failures.reserve(now) {
            Ok(()) => {
                attempt.address = Some(failures);
                Ok(attempt)
            }
            Err(spent) => {
                attempt.give_back();
                Err(self.address_spent(client, &failures, spent, now, settings))
            }
        }
    }

    /// The refusal for an address whose own window is spent, blocking it when no check
    /// of its own is still running.
    fn address_spent(
        &self,
        client: IpAddr,
        failures: &Failures,
        spent: Spent,
        now: Instant,
        settings: &LimitSettings,
    ) -> OverLimit {
        let block = settings.auth_block;
        match spent {
            Spent::Pending(frees) => {
                self.auth_refused(AUTH_BUSY, frees.saturating_duration_since(now))
            }
            Spent::Failures(frees) => match self.blocks.add(client, now + block, now) {
                Added::Blocked => {
                    failures.free_one_at(now + block);
                    tracing::warn!(
                        client = %client,
                        seconds = block.as_secs(),
                        "client blocked after {} authentication failures a minute",
                        settings.auth_failures_per_minute.unwrap_or_default()
                    );
                    self.auth_refused(AUTH_BLOCKED, block)
                }
                Added::Already => {
                    let left = self.blocks.left(client, now).unwrap_or(block);
                    self.auth_refused(AUTH_BLOCKED, left)
                }
                Added::Full => {
                    self.auth_refused(AUTH_BLOCKED, frees.saturating_duration_since(now))
                }
            },
        }
    }

    fn auth_refused(&self, why: (&'static str, &'static str), wait: Duration) -> OverLimit {
        self.stats.limited(Limit::AuthFailures);
        OverLimit {
            brief: why.0,
            reason: why.1,
            retry_after: whole_seconds(wait),
        }
    }
}

/// The authentication refusals: label and reason.
const AUTH_BLOCKED: (&str, &str) = (
    "auth_blocked",
    "too many authentication failures from this address",
);
const AUTH_BUSY: (&str, &str) = (
    "auth_busy",
    "too many authentication checks from this address at once",
);
const AUTH_THROTTLED: (&str, &str) = (
    "auth_throttled",
    "too many authentication failures from everyone; try again shortly",
);

/// Slots held for one check of credentials; see [`Limiter::auth_attempt`].
/// Dropped without a verdict, it counts as a failure: a client cannot cancel a guess
/// to get its slot back.
#[must_use = "an attempt is settled by `succeeded` or `failed`"]
#[derive(Default)]
pub struct Attempt {
    address: Option<Arc<Failures>>,
    everyone: Option<Arc<Failures>>,
}

impl Attempt {
    /// The credentials were right: the slots go back.
    pub fn succeeded(mut self) {
        self.give_back();
    }

    /// The credentials were wrong: the slots stay taken until the windows move on.
    pub fn failed(self) {}

    fn give_back(&mut self) {
        for failures in [self.address.take(), self.everyone.take()]
            .into_iter()
            .flatten()
        {
            failures.settle(false);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        for failures in [self.address.take(), self.everyone.take()]
            .into_iter()
            .flatten()
        {
            failures.settle(true);
        }
    }
}

#[cfg(test)]
mod tests;
