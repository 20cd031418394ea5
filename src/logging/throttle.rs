//! Warnings that cannot flood: at most one line of a kind per interval, and that line
//! carries how many of its kind were held back since the last one. A full log disk, a
//! process out of file descriptors or a scanner hammering a port repeat one failure
//! thousands of times a second; the count keeps the information, the limit keeps the
//! console and `proxy.log` (often on the same full disk) usable.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a warning of one kind may be written.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(5);

/// One kind of warning's limiter. `const`-constructible, so a call site can keep its own in
/// a `static`.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// When the next warning may be written; `None` before the first.
    next: Option<Instant>,
    /// Warnings held back since the last one written.
    held: u64,
}

impl Throttle {
    pub const fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            state: Mutex::new(State {
                next: None,
                held: 0,
            }),
        }
    }

    /// Whether a warning may be written now: `Some(held)` with the number held back since
    /// the last one written, or `None` when this one is held back (and counted).
    pub fn due(&self) -> Option<u64> {
        self.due_at(Instant::now())
    }

    /// [`Throttle::due`] at a given time.
    pub fn due_at(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means another thread panicked while counting; the count is
        // still a count.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.next.is_some_and(|next| now < next) {
            state.held += 1;
            return None;
        }
        state.next = Some(now + self.interval);
        Some(std::mem::take(&mut state.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_with_the_count_held_back() {
        let throttle = Throttle::new(Duration::from_secs(5));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(throttle.due_at(at(0)), Some(0), "the first one is written");
        for ms in [1, 100, 4_999] {
            assert_eq!(throttle.due_at(at(ms)), None, "{ms} ms");
        }
        assert_eq!(
            throttle.due_at(at(5_000)),
            Some(3),
            "then one with the count"
        );
        assert_eq!(throttle.due_at(at(5_001)), None);
        assert_eq!(
            throttle.due_at(at(60_000)),
            Some(1),
            "a quiet stretch writes at once"
        );
        assert_eq!(throttle.due_at(at(60_001)), None);
    }

    #[test]
    fn a_thousand_failures_a_second_make_one_line_every_interval() {
        let throttle = Throttle::new(WARNING_INTERVAL);
        let start = Instant::now();
        let written: Vec<u64> = (0..30_000u64)
            .filter_map(|ms| throttle.due_at(start + Duration::from_millis(ms)))
            .collect();
        // 30 s of failures every millisecond: a line at 0, 5, 10, 15, 20 and 25 s.
        assert_eq!(written.len(), 6);
        assert_eq!(written[0], 0);
        assert!(
            written[1..].iter().all(|&held| held == 4_999),
            "{written:?}"
        );
    }
}
