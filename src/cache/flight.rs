//! Single-flight for cache misses: when several requests miss on the same URI at once,
//! the first becomes the leader and fetches; the others wait, for a bounded time, until
//! the leader's guard is dropped (response stored, found not storable, or failed), then
//! look in the store again. Waiting is an optimisation only: a follower whose wait ends
//! without a stored response fetches for itself, so a slow or failed leader costs the
//! followers at most the wait bound, never an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::key::UriKey;

/// How long a follower waits for a leader before fetching itself. Long enough for a
/// typical origin round trip, short enough that a stuck leader is a small delay.
pub const DEFAULT_FLIGHT_WAIT: Duration = Duration::from_secs(5);

/// The fetches in progress, by URI. A follower holds a receiver whose sender lives in
/// the leader's guard; dropping the guard closes the channel, which wakes every
/// follower at once, including those that subscribed after the drop began (a closed
/// channel answers `changed()` immediately), so no wake-up can be missed.
#[derive(Debug, Default)]
pub struct Flights {
    // std Mutex: held only for a map operation, never across an await.
    in_progress: Mutex<HashMap<UriKey, watch::Receiver<()>>>,
}

/// The outcome of joining a flight.
pub enum Join {
    /// No fetch was in progress: the caller fetches, and its guard releases the
    /// followers when dropped.
    Leader(FlightGuard),
    /// A fetch is in progress: wait with [`Follower::wait`], then look again.
    Follower(Follower),
}

/// Held by the leader for as long as its fetch may still fill the cache.
#[derive(Debug)]
pub struct FlightGuard {
    flights: Arc<Flights>,
    key: UriKey,
    // Dropped after `Drop::drop` has removed the map entry: closing it wakes followers.
    _done: watch::Sender<()>,
}

/// A request waiting for another's fetch.
pub struct Follower {
    done: watch::Receiver<()>,
}

impl Flights {
    /// Joins the flight for `key`, becoming its leader if there is none.
    pub fn join(self: &Arc<Self>, key: &UriKey) -> Join {
        let mut in_progress = self
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(done) = in_progress.get(key) {
            return Join::Follower(Follower { done: done.clone() });
        }
        let (sender, receiver) = watch::channel(());
        in_progress.insert(key.clone(), receiver);
        Join::Leader(FlightGuard {
            flights: Arc::clone(self),
            key: key.clone(),
            _done: sender,
        })
    }

    /// Number of fetches in progress.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut in_progress = self
            .flights
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Remove only our own flight: the map entry holds a receiver of our channel.
        if in_progress
            .get(&self.key)
            .is_some_and(|r| r.same_channel(&self._done.subscribe()))
        {
            in_progress.remove(&self.key);
        }
    }
}

impl Follower {
    /// Waits until the leader is done or `limit` has passed, whichever is first.
    pub async fn wait(mut self, limit: Duration) {
        // `changed` returns Err once the sender is dropped: the leader finished.
        let _ = tokio::time::timeout(limit, self.done.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn key() -> UriKey {
        UriKey::new("http", "h", 80, b"/")
    }

    #[tokio::test]
    async fn followers_wake_when_leader_drops() {
        let flights = Arc::new(Flights::default());
        let Join::Leader(guard) = flights.join(&key()) else {
            panic!("first join must lead");
        };
        let Join::Follower(follower) = flights.join(&key()) else {
            panic!("second join must follow");
        };
        let waiter = tokio::spawn(follower.wait(Duration::from_secs(10)));
        drop(guard);
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .map_err(|_| "follower not woken")
            .and_then(|r| r.map_err(|_| "follower panicked"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(flights.is_empty());
        assert!(matches!(flights.join(&key()), Join::Leader(_)));
    }

    #[tokio::test]
    async fn wait_is_bounded() {
        let flights = Arc::new(Flights::default());
        let _guard = flights.join(&key());
        let Join::Follower(follower) = flights.join(&key()) else {
            panic!("second join must follow");
        };
        let started = Instant::now();
        follower.wait(Duration::from_millis(50)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(2));
    }
}
