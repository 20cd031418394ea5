//! The authentication windows and blocks on tokio's paused clock: slots reserved before
//! a check and given back after a pass, blocks that start once and outlive the eviction
//! of their address's window, a full block table that keeps its blocks, and everyone's
//! budget.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::advance;

use crate::error::OverLimit;
use crate::limits::{LimitSettings, Limiter};
use crate::stats::Stats;

fn client(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

/// `per_minute` failures a minute from an address, blocked for five minutes; everyone's
/// budget out of the way unless a test sets it.
fn settings(per_minute: u32) -> LimitSettings {
    LimitSettings {
        auth_failures_per_minute: Some(per_minute),
        auth_block: Duration::from_secs(300),
        auth_failures_per_minute_total: Some(u32::MAX),
        ..LimitSettings::default()
    }
}

fn limiter(keys: usize) -> (Limiter, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    (Limiter::with_capacity(keys, Arc::clone(&stats)), stats)
}

/// One check from `client` that fails; the refusal if it was not allowed to run.
fn fail(limiter: &Limiter, client: IpAddr, settings: &LimitSettings) -> Result<(), OverLimit> {
    limiter
        .auth_attempt(client, settings)
        .map(|attempt| attempt.failed())
}

fn brief(result: Result<impl Sized, OverLimit>) -> &'static str {
    result.err().map_or("ok", |over| over.brief)
}

#[tokio::test(start_paused = true)]
async fn the_attempt_past_the_limit_starts_a_block_without_a_check() {
    let (limiter, stats) = limiter(100);
    let three = settings(3);
    for _ in 0..3 {
        assert_eq!(fail(&limiter, client(1), &three), Ok(()));
        assert!(limiter.auth_check(client(1), &three).is_ok());
    }
    let refused = fail(&limiter, client(1), &three).expect_err("a fourth check");
    assert_eq!((refused.brief, refused.retry_after), ("auth_blocked", 300));
    assert_eq!(brief(limiter.auth_check(client(1), &three)), "auth_blocked");
    assert!(
        limiter.auth_check(client(2), &three).is_ok(),
        "only that address"
    );
    advance(Duration::from_secs(299)).await;
    let left = limiter
        .auth_check(client(1), &three)
        .map_err(|o| o.retry_after);
    assert_eq!(left, Err(1));
    advance(Duration::from_secs(1)).await;
    assert!(limiter.auth_check(client(1), &three).is_ok());
    // The window refilled during the block: three checks again.
    assert_eq!(fail(&limiter, client(1), &three), Ok(()));
    // Refused: the fourth check, and the two looks while blocked.
    assert_eq!(stats.snapshot().limited.auth_failures, 3);
}

#[tokio::test(start_paused = true)]
async fn checks_that_pass_give_their_slots_back() {
    let (limiter, _) = limiter(100);
    let two = settings(2);
    for _ in 0..50 {
        limiter.auth_attempt(client(1), &two).unwrap().succeeded();
    }
    assert_eq!(fail(&limiter, client(1), &two), Ok(()));
    assert_eq!(fail(&limiter, client(1), &two), Ok(()));
    assert_eq!(brief(fail(&limiter, client(1), &two)), "auth_blocked");
}

/// Sixty guesses at once against a limit of ten: ten checks run, the rest are refused
/// before theirs. Held slots refuse without blocking (they may pass), spent ones block.
#[tokio::test(start_paused = true)]
async fn concurrent_checks_cannot_outrun_the_limit() {
    let (limiter, _) = limiter(100);
    let ten = settings(10);
    let attempts: Vec<_> = (0..60)
        .filter_map(|_| limiter.auth_attempt(client(1), &ten).ok())
        .collect();
    assert_eq!(attempts.len(), 10);
    assert_eq!(brief(limiter.auth_attempt(client(1), &ten)), "auth_busy");
    assert!(
        limiter.auth_check(client(1), &ten).is_ok(),
        "not blocked yet"
    );
    let mut attempts = attempts.into_iter();
    // A client that goes away mid-check does not get its slot back.
    drop(attempts.next());
    attempts.for_each(super::Attempt::failed);
    assert_eq!(brief(limiter.auth_attempt(client(1), &ten)), "auth_blocked");
    // The same crowd with the right password: all its slots come back.
    let right: Vec<_> = (0..10)
        .map(|_| limiter.auth_attempt(client(2), &ten).unwrap())
        .collect();
    right.into_iter().for_each(super::Attempt::succeeded);
    assert_eq!(brief(limiter.auth_attempt(client(2), &ten)), "ok");
}

#[tokio::test(start_paused = true)]
async fn failures_spread_over_time_never_block() {
    let (limiter, _) = limiter(100);
    let two = settings(2);
    for _ in 0..20 {
        assert_eq!(fail(&limiter, client(9), &two), Ok(()));
        assert!(limiter.auth_check(client(9), &two).is_ok());
        advance(Duration::from_secs(30)).await;
    }
}

/// Issue 29, part 4: a block is not in the map that evicts; a crowd of other
/// addresses, each failing once, pushes the blocked address's window out, not its block.
#[tokio::test(start_paused = true)]
async fn blocks_outlive_the_eviction_of_their_window() {
    let (limiter, _) = limiter(100);
    let one = settings(1);
    assert_eq!(fail(&limiter, client(0), &one), Ok(()));
    assert_eq!(brief(fail(&limiter, client(0), &one)), "auth_blocked");
    for n in 1..=1_000 {
        assert_eq!(fail(&limiter, client(n), &one), Ok(()), "address {n}");
    }
    assert_eq!(limiter.auth.len(), 100, "windows stay bounded");
    assert_eq!(brief(limiter.auth_check(client(0), &one)), "auth_blocked");
    assert_eq!(limiter.blocks.len(), 1);
}

/// With the table full of unexpired blocks, a new offender is refused but not recorded
/// (its spent window holds it); no older block is freed for it; expired blocks make room.
#[tokio::test(start_paused = true)]
async fn a_full_block_table_frees_no_unexpired_block() {
    let (limiter, _) = limiter(1);
    let one = settings(1);
    let cap = crate::limits::MAX_BLOCKS / crate::limits::MAX_KEYS;
    let offenders = u32::try_from(cap).unwrap() + 1;
    for n in 0..offenders {
        assert_eq!(fail(&limiter, client(n), &one), Ok(()));
        assert_eq!(brief(fail(&limiter, client(n), &one)), "auth_blocked");
    }
    assert_eq!(limiter.blocks.len(), cap);
    for n in 0..offenders - 1 {
        assert_eq!(brief(limiter.auth_check(client(n), &one)), "auth_blocked");
    }
    let newcomer = client(offenders - 1);
    assert!(limiter.auth_check(newcomer, &one).is_ok(), "not recorded");
    let refused = fail(&limiter, newcomer, &one).expect_err("its window is spent");
    assert_eq!(refused.brief, "auth_blocked");
    assert!(refused.retry_after <= 60, "{refused:?}");
    // Once the old blocks have expired, the newcomer's next offence is recorded.
    advance(Duration::from_secs(300)).await;
    assert_eq!(fail(&limiter, newcomer, &one), Ok(()));
    assert_eq!(brief(fail(&limiter, newcomer, &one)), "auth_blocked");
    assert_eq!(limiter.blocks.len(), 1, "expired blocks went first");
    assert_eq!(brief(limiter.auth_check(newcomer, &one)), "auth_blocked");
}

/// Degrade, part 3: guesses spread over many addresses, one each, are throttled by
/// everyone's budget; no address is blocked for it, and passes cost nothing.
#[tokio::test(start_paused = true)]
async fn everyone_budget_throttles_spread_out_guessing() {
    let (limiter, _) = limiter(1000);
    let spread = LimitSettings {
        auth_failures_per_minute_total: Some(5),
        ..settings(10)
    };
    for n in 0..5 {
        assert_eq!(fail(&limiter, client(n), &spread), Ok(()));
    }
    let throttled = fail(&limiter, client(5), &spread).expect_err("spent");
    assert_eq!(
        (throttled.brief, throttled.retry_after),
        ("auth_throttled", 12)
    );
    assert!(limiter.auth_check(client(5), &spread).is_ok(), "no block");
    advance(Duration::from_secs(12)).await;
    limiter
        .auth_attempt(client(6), &spread)
        .unwrap()
        .succeeded();
    assert_eq!(fail(&limiter, client(6), &spread), Ok(()));
    assert_eq!(brief(fail(&limiter, client(7), &spread)), "auth_throttled");
}

#[test]
fn everyone_budget_is_ten_addresses_worth_by_default() {
    let mut limits = LimitSettings::default();
    assert_eq!(limits.auth_failures_total(), None);
    limits.auth_failures_per_minute = Some(20);
    assert_eq!(limits.auth_failures_total(), Some(200));
    limits.auth_failures_per_minute_total = Some(7);
    assert_eq!(limits.auth_failures_total(), Some(7));
}

/// A block shorter than the window leaves one check when it ends: the right password
/// gets in, a wrong one blocks the address again at once.
#[tokio::test(start_paused = true)]
async fn a_short_block_ends_with_one_check() {
    let (limiter, _) = limiter(100);
    let short = LimitSettings {
        auth_block: Duration::from_secs(2),
        ..settings(2)
    };
    for _ in 0..2 {
        assert_eq!(fail(&limiter, client(1), &short), Ok(()));
    }
    assert_eq!(brief(fail(&limiter, client(1), &short)), "auth_blocked");
    advance(Duration::from_secs(2)).await;
    assert!(limiter.auth_check(client(1), &short).is_ok());
    limiter.auth_attempt(client(1), &short).unwrap().succeeded();
    assert_eq!(fail(&limiter, client(1), &short), Ok(()));
    let again = fail(&limiter, client(1), &short).expect_err("blocked again");
    assert_eq!((again.brief, again.retry_after), ("auth_blocked", 2));
}
