//! A log line that a flood must not multiply: scanners probe TLS ports with anything but
//! a handshake, and a misconfigured balancer fails every PROXY header. At most one line
//! per [`WINDOW`] goes out, saying how many like it were held back since the last one.
//! Counters in the statistics still count every event.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The shortest time between two lines of one kind.
pub const WINDOW: Duration = Duration::from_secs(10);

/// One kind of noisy event's log state. `const`-constructible, for a `static`.
pub struct Throttle {
    /// Milliseconds since the process's first throttled event when the last line went
    /// out, plus one (0: never).
    last_logged: AtomicU64,
    held_back: AtomicU64,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            last_logged: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may go out now, `n` being how many were held back before it;
    /// `None` when this one is held back.
    pub fn admit(&self) -> Option<u64> {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let elapsed = EPOCH.get_or_init(Instant::now).elapsed();
        self.admit_at(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }

    /// [`Throttle::admit`] at `now`, milliseconds on the throttle's clock.
    fn admit_at(&self, now: u64) -> Option<u64> {
        let now = now.saturating_add(1);
        let last = self.last_logged.load(Ordering::Relaxed);
        let window = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        let due = last == 0 || now.saturating_sub(last) >= window;
        if due
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_and_the_rest_are_counted() {
        let throttle = Throttle::new();
        assert_eq!(throttle.admit_at(0), Some(0));
        for at in [1, 500, 9_998] {
            assert_eq!(throttle.admit_at(at), None);
        }
        assert_eq!(throttle.admit_at(10_000), Some(3));
        assert_eq!(throttle.admit_at(10_001), None);
        assert_eq!(throttle.admit_at(25_000), Some(1));
    }
}
