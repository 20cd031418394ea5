//! One GCRA bucket (the `governor` crate's direct rate limiter) on tokio's clock, so
//! that unit tests can pause time and the limiter sleeps with the same clock it reads.
//! A bucket counts units (requests, bytes, failures); at high rates several bytes make
//! one `governor` cell, so a cell's period stays at a microsecond or more and rounding it
//! to whole nanoseconds costs under 0.1 % of the rate.

use std::num::NonZeroU32;
use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

/// Shortest period of one cell; faster rates put more units in a cell.
const MIN_CELL_PERIOD_NANOS: u64 = 1_000;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A moment on tokio's clock, as `governor` needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Moment(Instant);

impl Add<Nanos> for Moment {
    type Output = Moment;

    fn add(self, later: Nanos) -> Moment {
        Moment(self.0 + Duration::from(later))
    }
}

impl Reference for Moment {
    fn duration_since(&self, earlier: Moment) -> Nanos {
        Nanos::from(self.0.saturating_duration_since(earlier.0))
    }

    fn saturating_sub(&self, duration: Nanos) -> Moment {
        Moment(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

/// tokio's clock: paused in unit tests, real otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TokioClock;

impl Clock for TokioClock {
    type Instant = Moment;

    fn now(&self) -> Moment {
        Moment(Instant::now())
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Moment>>;

/// `rate` units a second, up to `burst` at once after a pause.
pub(super) struct Bucket {
    limiter: Limiter,
    /// Units per `governor` cell.
    unit: u64,
    /// Cells the bucket holds when full.
    burst: u32,
    /// How long an emptied bucket takes to fill again.
    refill: Duration,
}

impl Bucket {
    /// A bucket of `rate` units per second holding `burst` units (both at least one).
    pub(super) fn new(rate: u64, burst: u64) -> Bucket {
        let rate = rate.max(1);
        let unit = rate
            .div_ceil(NANOS_PER_SECOND / MIN_CELL_PERIOD_NANOS)
            .max(1);
        let period = Duration::from_nanos(NANOS_PER_SECOND.saturating_mul(unit) / rate);
        let cells = u32::try_from((burst / unit).max(1)).unwrap_or(u32::MAX);
        let burst = NonZeroU32::new(cells).unwrap_or(NonZeroU32::MIN);
        // A period of at least a microsecond is never zero, so the quota always exists.
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        Bucket {
            limiter: RateLimiter::direct_with_clock(quota, TokioClock),
            unit,
            burst: burst.get(),
            refill: quota.burst_size_replenished_in(),
        }
    }

    /// Takes `units` now (at most a full bucket's worth counts), or says when they can
    /// be taken; nothing is taken then.
    pub(super) fn take(&self, units: u64) -> Result<(), Instant> {
        let cells = u32::try_from(units.div_ceil(self.unit))
            .unwrap_or(u32::MAX)
            .clamp(1, self.burst);
        let cells = NonZeroU32::new(cells).unwrap_or(NonZeroU32::MIN);
        match self.limiter.check_n(cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.earliest_possible().0),
            // Unreachable after the clamp; a bucket too small lets the units through
            // rather than stalling a transfer for ever.
            Err(_) => Ok(()),
        }
    }

    /// Whether a bucket last used at `since` is full again by `now`, so that dropping
    /// it and starting afresh would change nothing.
    pub(super) fn settled(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) >= self.refill
    }
}
