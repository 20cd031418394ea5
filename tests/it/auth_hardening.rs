//! Issue 29, "Hardening, round 2", authentication: every front end takes the one
//! authentication path (SOCKS5 failures count, and a blocked address gets no verdict
//! over SOCKS5 either); a block survives a crowd of other addresses pushing its failure
//! window out; concurrent guesses from one address run no more checks than the limit;
//! guesses spread over many addresses are throttled by everyone's budget while a user the
//! cache knows still gets in. Attackers connect from other loopback addresses
//! (127.0.0.0/8); each test ends with a normal login from 127.0.0.1 on a fresh
//! connection.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use proxy_server::config::{Config, Listener};
use proxy_server::limits::LimitSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::common::access::*;
use crate::common::listeners::{connect_from, socks_greet};
use crate::common::*;

fn loopback(third: u8, fourth: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, third, fourth))
}

/// Authentication on, with a SOCKS5 listener beside the HTTP one (`Proxy::addrs[1]`),
/// `per_minute` failures a minute from an address and a five-minute block.
fn guarded(per_minute: u32, files: &Scratch) -> impl FnOnce(&mut Config) {
    let users = users_file(files);
    move |c: &mut Config| {
        c.access.auth_file = Some(users);
        c.listeners
            .push(Listener::socks5("127.0.0.1:0".parse().unwrap()));
        c.access.limits = std::sync::Arc::new(LimitSettings {
            auth_failures_per_minute: Some(per_minute),
            auth_block: Duration::from_secs(300),
            ..LimitSettings::default()
        });
    }
}

/// A plain GET for `authority` from the loopback address `from`, with `extra` field
/// lines, on a fresh connection; the response, read until the proxy closes.
async fn get_from(from: IpAddr, proxy: SocketAddr, authority: &str, extra: &str) -> Vec<u8> {
    let mut stream = connect_from(from, proxy).await;
    let request = format!(
        "GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n{extra}Connection: close\r\n\r\n"
    );
    within(stream.write_all(request.as_bytes())).await.unwrap();
    read_to_close(&mut stream).await
}

/// A SOCKS5 username/password login (RFC 1929) from `from`; the status the proxy
/// answers (0: accepted). The connection is dropped after it.
async fn socks_login(from: IpAddr, socks: SocketAddr, (user, password): (&str, &str)) -> u8 {
    let mut stream = connect_from(from, socks).await;
    assert_eq!(socks_greet(&mut stream, &[2]).await, 2);
    let mut message = vec![1, user.len() as u8];
    message.extend(user.as_bytes());
    message.push(password.len() as u8);
    message.extend(password.as_bytes());
    within(stream.write_all(&message)).await.unwrap();
    let mut status = [0u8; 2];
    within(stream.read_exact(&mut status)).await.unwrap();
    assert_eq!(status[0], 1, "{status:?}");
    status[1]
}

/// A normal login from 127.0.0.1 on a fresh connection, over HTTP and over SOCKS5
/// (curl), each to a fresh origin: the proxy is healthy.
async fn assert_healthy(proxy: &Proxy) {
    let origin = Origin::fixed("healthy").await;
    let response = get(proxy.addr, &origin.addr.to_string(), &login(CLEAR_USER)).await;
    assert!(
        response.starts_with(b"HTTP/1.1 200") && response.ends_with(b"healthy"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    // `clear:pass#1`, percent-encoded for the URL.
    let socks = format!(
        "socks5h://{}:clear%3Apass%231@{}",
        CLEAR_USER.0, proxy.addrs[1]
    );
    let (code, out, err) = curl(&["-x", &socks, &origin.url("/")]).await;
    assert_eq!((code, out.as_slice()), (0, &b"healthy"[..]), "{err}");
}

/// Part 1: thirty wrong SOCKS5 passwords count like HTTP's, so the address is blocked;
/// then its right password gets a failure status with no check, over SOCKS5 and HTTP.
/// An address HTTP blocked gets no verdict over SOCKS5 either. The refusals are recorded
/// as blocked (the log's 429), not as failed logins.
#[tokio::test]
async fn socks5_logins_take_the_same_path_as_http() {
    let files = Scratch::new("hardening-socks");
    let proxy = Proxy::start_with(guarded(5, &files)).await;
    let (http, socks) = (proxy.addr, proxy.addrs[1]);
    let origin = Origin::fixed("ok").await;
    let authority = origin.addr.to_string();
    let guesser = loopback(0, 2);
    for n in 0..30 {
        let status = socks_login(guesser, socks, (CLEAR_USER.0, "guess")).await;
        assert_ne!(status, 0, "guess {n} accepted");
    }
    let right = socks_login(guesser, socks, CLEAR_USER).await;
    assert_ne!(
        right, 0,
        "a blocked address got a verdict on its right password"
    );
    let over_http = get_from(guesser, http, &authority, &login(CLEAR_USER)).await;
    assert_eq!(
        status(&over_http),
        429,
        "SOCKS5 failures count for HTTP too"
    );

    let other = loopback(0, 3);
    for _ in 0..5 {
        let wrong = get_from(other, http, &authority, &login((CLEAR_USER.0, "guess"))).await;
        assert_eq!(status(&wrong), 407);
    }
    let blocked = get_from(other, http, &authority, &login(CLEAR_USER)).await;
    assert_eq!(status(&blocked), 429);
    assert_ne!(
        socks_login(other, socks, CLEAR_USER).await,
        0,
        "HTTP's block holds over SOCKS5"
    );
    // Five checks of each address failed; every other attempt was refused unchecked.
    wait_until("the sessions are recorded", STEP, || {
        let seen = proxy.snapshot();
        async move { seen.requests.auth_failed == 10 && seen.requests.blocked == 29 }
    })
    .await;
    assert!(proxy.snapshot().limited.auth_failures >= 29);
    assert_eq!(origin.request_count(), 0);
    assert_healthy(&proxy).await;
}

/// Part 4: with the limiter holding 16 keys of each kind, twenty other addresses failing
/// once each push the blocked address's failure window out; its block stays.
#[tokio::test]
async fn a_block_outlives_a_crowd_of_failing_addresses() {
    let files = Scratch::new("hardening-evict");
    let proxy = Proxy::start_with_services(guarded(3, &files), |s| s.limiter_keys = 16).await;
    let origin = Origin::fixed("ok").await;
    let authority = origin.addr.to_string();
    let blocked = loopback(0, 2);
    let wrong = login((CLEAR_USER.0, "guess"));
    let mut answers = Vec::new();
    while answers.last() != Some(&429) {
        assert!(answers.len() < 10, "never blocked: {answers:?}");
        answers.push(status(
            &get_from(blocked, proxy.addr, &authority, &wrong).await,
        ));
    }
    let right = get_from(blocked, proxy.addr, &authority, &login(CLEAR_USER)).await;
    assert_eq!(status(&right), 429);
    for n in 1..=20 {
        let crowd = get_from(loopback(1, n), proxy.addr, &authority, &wrong).await;
        assert_eq!(status(&crowd), 407, "address {n}");
    }
    let right = get_from(blocked, proxy.addr, &authority, &login(CLEAR_USER)).await;
    assert_eq!(status(&right), 429, "the block was evicted");
    assert_eq!(origin.request_count(), 0);
    assert_healthy(&proxy).await;
}

/// Degrade: sixty wrong bcrypt passwords at once from one address, against a limit of
/// ten a minute, get ten verdicts; the other fifty are refused before any check.
#[tokio::test]
async fn concurrent_guesses_run_no_more_checks_than_the_limit() {
    let files = Scratch::new("hardening-concurrent");
    let proxy = Proxy::start_with(guarded(10, &files)).await;
    let origin = Origin::fixed("ok").await;
    let guesser = loopback(0, 4);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        origin.url("/"),
        login((BCRYPT_USER.0, "guess"))
    );
    // Every connection is open before the first guess is sent.
    let mut streams = Vec::new();
    for _ in 0..60 {
        streams.push(connect_from(guesser, proxy.addr).await);
    }
    let mut guesses = JoinSet::new();
    for mut stream in streams {
        let request = request.clone();
        guesses.spawn(async move {
            within(stream.write_all(request.as_bytes())).await.unwrap();
            status(&read_to_close(&mut stream).await)
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = within(guesses.join_next()).await {
        answers.push(answer.unwrap());
    }
    let verdicts = answers.iter().filter(|s| **s == 407).count();
    let refused = answers.iter().filter(|s| **s == 429).count();
    assert_eq!((verdicts, refused), (10, 50), "{answers:?}");
    assert_eq!(origin.request_count(), 0);
    assert_healthy(&proxy).await;
}

/// Degrade: one guess each from forty addresses, a fake user each, with one failure a
/// minute per address (everyone's budget: ten by default) gets ten checks; the rest are
/// throttled and no address is blocked for it. A user who logged in before still gets in
/// at once, over HTTP and SOCKS5; a login the cache does not know waits for the budget.
#[tokio::test]
async fn guesses_from_many_addresses_are_throttled_and_known_users_get_in() {
    let files = Scratch::new("hardening-spread");
    let proxy = Proxy::start_with(guarded(1, &files)).await;
    let origin = Origin::fixed("ok").await;
    let authority = origin.addr.to_string();
    let known = get(proxy.addr, &authority, &login(BCRYPT_USER)).await;
    assert_eq!(status(&known), 200, "{}", String::from_utf8_lossy(&known));
    let mut guesses = JoinSet::new();
    for n in 1..=40u8 {
        let (proxy, authority) = (proxy.addr, authority.clone());
        guesses.spawn(async move {
            let fake = login((&format!("fake{n}"), "guess"));
            status(&get_from(loopback(2, n), proxy, &authority, &fake).await)
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = within(guesses.join_next()).await {
        answers.push(answer.unwrap());
    }
    let verdicts = answers.iter().filter(|s| **s == 407).count();
    assert_eq!(
        (verdicts, answers.len() - verdicts),
        (10, 30),
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|s| [407, 429].contains(s)),
        "{answers:?}"
    );
    let started = std::time::Instant::now();
    let cached = get(proxy.addr, &authority, &login(BCRYPT_USER)).await;
    assert_eq!(status(&cached), 200, "a known user was throttled");
    eprintln!(
        "a known user's login during the flood: {:?}",
        started.elapsed()
    );
    let cold = get_from(loopback(0, 9), proxy.addr, &authority, &login(CLEAR_USER)).await;
    assert_eq!(status(&cold), 429, "a new check while the budget is spent");
    assert_eq!(origin.request_count(), 2);
    // The health check's clear-text login is new to the cache: it waits for a slot of
    // everyone's budget (one every six seconds).
    wait_until(
        "everyone's budget has room",
        Duration::from_secs(8),
        || async { status(&get(proxy.addr, &authority, &login(CLEAR_USER)).await) == 200 },
    )
    .await;
    assert_healthy(&proxy).await;
}
