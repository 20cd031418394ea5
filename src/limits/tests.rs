//! Unit tests of the limiter on tokio's paused clock: time moves only when a test sleeps
//! or every task waits on a timer, so rates and blocks are checked exactly and nothing
//! really waits.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, advance};

use super::*;

fn limiter() -> (Limiter, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    (Limiter::new(Arc::clone(&stats)), stats)
}

fn client(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn settings(adjust: impl FnOnce(&mut LimitSettings)) -> LimitSettings {
    let mut settings = LimitSettings::default();
    adjust(&mut settings);
    settings
}

/// Admits one request on a fresh connection.
fn request(
    limiter: &Limiter,
    user: Option<&str>,
    settings: &LimitSettings,
) -> Result<Grant, OverLimit> {
    limiter.grant(&mut Seat::default(), user, client(1), settings)
}

#[tokio::test(start_paused = true)]
async fn requests_burst_then_refill_at_the_rate() {
    let (limiter, stats) = limiter();
    let five = settings(|s| s.requests_per_second = Some(5));
    for _ in 0..5 {
        assert!(request(&limiter, None, &five).is_ok());
    }
    let refused = request(&limiter, None, &five)
        .err()
        .expect("over the burst");
    assert_eq!((refused.brief, refused.retry_after), ("rate_limited", 1));
    // One request's worth comes back every 200 ms.
    advance(Duration::from_millis(190)).await;
    assert!(request(&limiter, None, &five).is_err());
    advance(Duration::from_millis(10)).await;
    assert!(request(&limiter, None, &five).is_ok());
    assert!(request(&limiter, None, &five).is_err());
    // A full second refills the whole burst, and no more.
    advance(Duration::from_secs(5)).await;
    let allowed = (0..10)
        .filter(|_| request(&limiter, None, &five).is_ok())
        .count();
    assert_eq!(allowed, 5);
    assert_eq!(stats.snapshot().limited.requests, 8);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_the_wait_rounded_up() {
    let (limiter, _) = limiter();
    let slow = settings(|s| s.requests_per_second = Some(1));
    assert!(request(&limiter, None, &slow).is_ok());
    advance(Duration::from_millis(100)).await;
    let refused = request(&limiter, None, &slow).err().expect("over");
    assert_eq!(refused.retry_after, 1, "0.9 s rounds up to 1");
    assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
    assert_eq!(whole_seconds(Duration::ZERO), 1);
}

#[tokio::test(start_paused = true)]
async fn users_and_addresses_have_separate_budgets() {
    let (limiter, _) = limiter();
    let one = settings(|s| s.requests_per_second = Some(1));
    assert!(request(&limiter, Some("alice"), &one).is_ok());
    assert!(request(&limiter, Some("alice"), &one).is_err());
    assert!(request(&limiter, Some("bob"), &one).is_ok());
    // Without a login the client address is the key.
    assert!(
        limiter
            .grant(&mut Seat::default(), None, client(7), &one)
            .is_ok()
    );
    assert!(
        limiter
            .grant(&mut Seat::default(), None, client(8), &one)
            .is_ok()
    );
    assert!(
        limiter
            .grant(&mut Seat::default(), None, client(7), &one)
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn connections_are_counted_once_each_until_their_seat_drops() {
    let (limiter, stats) = limiter();
    let two = settings(|s| s.connections = Some(2));
    let (mut first, mut second, mut third) = (Seat::default(), Seat::default(), Seat::default());
    assert!(
        limiter
            .grant(&mut first, Some("a"), client(1), &two)
            .is_ok()
    );
    // Later requests on a counted connection do not count again.
    for _ in 0..5 {
        assert!(
            limiter
                .grant(&mut first, Some("a"), client(1), &two)
                .is_ok()
        );
    }
    assert!(
        limiter
            .grant(&mut second, Some("a"), client(1), &two)
            .is_ok()
    );
    let refused = limiter
        .grant(&mut third, Some("a"), client(1), &two)
        .err()
        .expect("a third connection");
    assert_eq!(refused.brief, "connection_limit");
    assert!(
        limiter
            .grant(&mut Seat::default(), Some("b"), client(1), &two)
            .is_ok()
    );
    drop(first);
    assert!(
        limiter
            .grant(&mut third, Some("a"), client(1), &two)
            .is_ok()
    );
    assert_eq!(stats.snapshot().limited.connections, 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_connection_gives_its_count_back() {
    let (limiter, _) = limiter();
    let one = settings(|s| s.connections = Some(1));
    let mut seat = Seat::default();
    assert!(limiter.grant(&mut seat, None, client(1), &one).is_ok());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _held = seat;
        panic!("connection task failed");
    }));
    assert!(result.is_err());
    assert!(request(&limiter, None, &one).is_ok());
}

#[tokio::test(start_paused = true)]
async fn no_limits_keep_no_state() {
    let (limiter, _) = limiter();
    let none = LimitSettings::default();
    for last in 0..50 {
        let grant = limiter.grant(&mut Seat::default(), None, client(last), &none);
        assert!(grant.is_ok_and(|grant| grant.pacer.is_none()));
        limiter.auth_attempt(client(last), &none).unwrap().failed();
        assert!(limiter.auth_check(client(last), &none).is_ok());
    }
    assert_eq!(limiter.keys(), 0);
}

/// A deadline on the paused clock for anything that waits on a pacer: a pacer that never
/// lets bytes through fails the test instead of hanging it.
const PACED_DEADLINE: Duration = Duration::from_secs(600);

/// Moves `total` bytes through the pacer in chunks and returns the paused time it took.
async fn paced_transfer(pacer: &Pacer, total: usize) -> Duration {
    let start = Instant::now();
    let transfer = async {
        let mut left = total;
        while left > 0 {
            let chunk = left.min(pacer.chunk());
            pacer.acquire(chunk).await;
            left -= chunk;
        }
    };
    tokio::time::timeout(PACED_DEADLINE, transfer)
        .await
        .expect("the pacer stalled");
    start.elapsed()
}

fn expected_secs(total: usize, burst: usize, rate: u64) -> f64 {
    (total - burst) as f64 / rate as f64
}

#[tokio::test(start_paused = true)]
async fn bandwidth_paces_to_the_rate_after_one_burst() {
    let (limiter, stats) = limiter();
    for rate in [100_000u64, 1 << 20, 100 << 20, 3 << 30] {
        let limited = settings(|s| s.bandwidth = Some(rate));
        let user = format!("user-{rate}");
        let pacer = request(&limiter, Some(&user), &limited)
            .ok()
            .and_then(|grant| grant.pacer)
            .expect("a pacer");
        let total = pacer.chunk() * 40 + 123;
        let took = paced_transfer(&pacer, total).await.as_secs_f64();
        let expected = expected_secs(total, pacer.chunk(), rate);
        assert!(
            (took - expected).abs() <= expected * 0.01,
            "{rate} B/s: {took} s for {total} bytes, expected {expected}"
        );
    }
    assert!(stats.snapshot().limited.bandwidth > 0);
    assert_eq!(stats.snapshot().users_throttled, 0, "nobody waits now");
}

#[tokio::test(start_paused = true)]
async fn a_users_transfers_share_one_budget_and_count_as_one_throttled_user() {
    let (limiter, stats) = limiter();
    let rate = 64 * 1024;
    let limited = settings(|s| s.bandwidth = Some(rate));
    let pacer = |user| {
        request(&limiter, Some(user), &limited)
            .ok()
            .and_then(|grant| grant.pacer)
            .expect("a pacer")
    };
    let (first, second) = (pacer("carol"), pacer("carol"));
    let total = first.chunk() * 10;
    let (one, two, ()) = tokio::join!(
        paced_transfer(&first, total),
        paced_transfer(&second, total),
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(stats.snapshot().users_throttled, 1);
        }
    );
    let took = one.max(two).as_secs_f64();
    let expected = expected_secs(2 * total, first.chunk(), rate);
    assert!(
        (took - expected).abs() <= expected * 0.02,
        "{took} vs {expected}"
    );
    assert_eq!(stats.snapshot().users_throttled, 0);
    // Another user's budget is untouched by carol's.
    let other = pacer("dave");
    assert_eq!(paced_transfer(&other, other.chunk()).await, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_paced_writer_passes_everything_at_the_rate() {
    let (limiter, _) = limiter();
    let rate = 100_000;
    let limited = settings(|s| s.bandwidth = Some(rate));
    let pacer = request(&limiter, None, &limited).ok().and_then(|g| g.pacer);
    let burst = pacer.as_ref().map_or(0, Pacer::chunk);
    let mut written = Vec::new();
    let payload = vec![7u8; 300_000];
    let start = Instant::now();
    let mut paced = Paced::new(&mut written, pacer);
    tokio::time::timeout(PACED_DEADLINE, paced.write_all(&payload))
        .await
        .expect("the paced writer stalled")
        .expect("write to memory");
    let took = start.elapsed().as_secs_f64();
    assert_eq!(written, payload);
    let expected = expected_secs(payload.len(), burst, rate);
    assert!(
        (took - expected).abs() <= expected * 0.01,
        "{took} vs {expected}"
    );
    // Without a pacer it is a plain writer.
    let mut plain = Vec::new();
    let start = Instant::now();
    let mut unpaced = Paced::new(&mut plain, None);
    tokio::time::timeout(PACED_DEADLINE, unpaced.write_all(&payload))
        .await
        .expect("stalled")
        .expect("write");
    assert_eq!(
        (plain.len(), start.elapsed()),
        (payload.len(), Duration::ZERO)
    );
}

#[tokio::test(start_paused = true)]
async fn key_state_stays_bounded() {
    let stats = Arc::new(Stats::default());
    let limiter = Limiter::with_capacity(100, stats);
    let limited = settings(|s| {
        s.requests_per_second = Some(10);
        s.auth_failures_per_minute = Some(1);
        s.auth_failures_per_minute_total = Some(u32::MAX);
    });
    let address = |n: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
    // Many more keys than the cap: the oldest go, in use or not.
    for n in 0..10_000 {
        let _ = limiter.grant(&mut Seat::default(), None, address(n), &limited);
        if let Ok(attempt) = limiter.auth_attempt(address(n), &limited) {
            attempt.failed();
        }
    }
    assert_eq!(limiter.requests.len(), 100);
    assert_eq!(limiter.auth.len(), 100);
    // Settled keys leave as new ones arrive, well before the cap.
    let few = settings(|s| s.requests_per_second = Some(10));
    let small = Limiter::with_capacity(1000, Arc::new(Stats::default()));
    for n in 0..50 {
        let _ = small.grant(&mut Seat::default(), None, address(n), &few);
    }
    advance(Duration::from_secs(2)).await;
    for n in 50..100 {
        let _ = small.grant(&mut Seat::default(), None, address(n), &few);
    }
    assert_eq!(small.keys(), 50, "the first fifty were full again and went");
}

#[tokio::test(start_paused = true)]
async fn keys_in_use_are_not_swept() {
    let limiter = Limiter::with_capacity(1000, Arc::new(Stats::default()));
    let one = settings(|s| s.connections = Some(1));
    let mut open = Seat::default();
    assert!(
        limiter
            .grant(&mut open, Some("eve"), client(1), &one)
            .is_ok()
    );
    advance(Duration::from_secs(3600)).await;
    for n in 0..20 {
        let _ = limiter.grant(&mut Seat::default(), None, client(n), &one);
    }
    // Eve's connection is still open, so her count survived the sweeps.
    assert!(
        limiter
            .grant(&mut Seat::default(), Some("eve"), client(1), &one)
            .is_err()
    );
}
