//! Per-user limits end to end (issue 12, "Limits"): a real proxy on an ephemeral port in
//! front of real local origins. Over the request rate: 429 with `Retry-After`; over the
//! connection cap: 429 and close; bandwidth measured on loopback for a tunnel and for a
//! forwarded body; a client address blocked after too many authentication failures, and
//! let in again after the block; users with separate budgets. Each adversarial test ends
//! with a request on a fresh connection, once the limit it hit allows one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proxy_server::limits::LimitSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::access::*;
use crate::common::*;

/// The rate the bandwidth tests ask for, and the share by which what they measure may
/// miss it (loopback, a busy machine).
const RATE: u64 = 1024 * 1024;
const TOLERANCE: f64 = 0.20;

/// What the pacer lets through at once after a pause (its burst: an eighth of a second
/// of the rate here); a measured transfer is this much more than three seconds' worth.
const BURST: u64 = RATE / 8;
const PACED_BYTES: u64 = 3 * RATE + BURST;

fn limits(adjust: impl FnOnce(&mut LimitSettings)) -> Arc<LimitSettings> {
    let mut settings = LimitSettings::default();
    adjust(&mut settings);
    Arc::new(settings)
}

/// A keep-alive GET through the proxy on an open connection; the whole response.
async fn get_on(stream: &mut TcpStream, url: &str, extra: &str) -> Vec<u8> {
    let request = format!("GET {url} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
    within(stream.write_all(request.as_bytes())).await.unwrap();
    read_response(stream).await
}

fn retry_after(response: &[u8]) -> Option<u64> {
    header_value(&String::from_utf8_lossy(response), "retry-after")?
        .parse()
        .ok()
}

/// A 429 with `Retry-After` and a one-line body naming the limit, closing the connection.
fn assert_too_many(response: &[u8], what: &str) {
    let text = String::from_utf8_lossy(response);
    assert!(
        text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{what}: {text}"
    );
    assert!(
        retry_after(response).is_some_and(|s| s >= 1),
        "{what}: {text}"
    );
    assert!(text.contains("\r\nConnection: close\r\n"), "{what}: {text}");
    let body = body(response);
    assert!(body.starts_with("Too many requests: "), "{what}: {body}");
    assert!(body.len() < SHORT_BODY, "{what}: {body}");
}

#[tokio::test]
async fn over_the_request_rate_a_request_gets_429_with_retry_after() {
    let origin = Origin::fixed("ok").await;
    let proxy =
        Proxy::start_with(|c| c.access.limits = limits(|l| l.requests_per_second = Some(2))).await;
    let started = Instant::now();
    let mut served = 0;
    let refused = loop {
        let response = exchange(proxy.addr, get_close(&origin).as_bytes()).await;
        if status(&response) != 200 {
            break response;
        }
        served += 1;
        assert!(served < 50, "never refused");
    };
    assert_too_many(&refused, "over the rate");
    // The burst is honoured, and no more than the rate refilled meanwhile.
    let refilled = (started.elapsed().as_secs_f64() * 2.0).ceil() as u32;
    assert!((2..=2 + refilled).contains(&served), "{served} served");
    // curl, as a real client, sees the same answer.
    let proxy_url = proxy.url();
    let (_, out, _) = curl(&["-i", "-x", &proxy_url, &origin.url("/")]).await;
    let text = String::from_utf8_lossy(&out).to_lowercase();
    assert!(
        text.contains(" 429 ") && text.contains("retry-after: "),
        "{text}"
    );
    assert!(proxy.snapshot().limited.requests >= 2);
    // Half a second refills one request's worth.
    tokio::time::sleep(Duration::from_millis(600)).await;
    proxy.assert_healthy().await;
}

fn get_close(origin: &Origin) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/")
    )
}

#[tokio::test]
async fn users_have_separate_budgets() {
    let files = Scratch::new("limits-users");
    let users = users_file(&files);
    let origin = Origin::fixed("ok").await;
    let proxy = Proxy::start_with(|c| {
        c.access.auth_file = Some(users);
        c.access.limits = limits(|l| l.requests_per_second = Some(1));
    })
    .await;
    let authority = origin.addr.to_string();
    let (plain, hashed) = (login(CLEAR_USER), login(BCRYPT_USER));
    assert_eq!(status(&get(proxy.addr, &authority, &plain).await), 200);
    assert_too_many(&get(proxy.addr, &authority, &plain).await, "plain again");
    // Same client address, another user: a budget of its own.
    assert_eq!(status(&get(proxy.addr, &authority, &hashed).await), 200);
    assert_too_many(&get(proxy.addr, &authority, &hashed).await, "hashed again");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status(&get(proxy.addr, &authority, &plain).await),
        200,
        "refilled"
    );
}

#[tokio::test]
async fn over_the_connection_cap_a_connection_gets_429_and_is_closed() {
    let origin = Origin::fixed("ok").await;
    let proxy = Proxy::start_with(|c| c.access.limits = limits(|l| l.connections = Some(2))).await;
    let url = origin.url("/");
    let mut first = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let mut second = within(TcpStream::connect(proxy.addr)).await.unwrap();
    assert!(get_on(&mut first, &url, "").await.ends_with(b"ok"));
    assert!(get_on(&mut second, &url, "").await.ends_with(b"ok"));
    // Both stay counted while open, however many requests they carry.
    assert!(get_on(&mut first, &url, "").await.ends_with(b"ok"));
    let (refused, ending) = exchange_ending(proxy.addr, get_close(&origin).as_bytes()).await;
    assert_too_many(&refused, "a third connection");
    assert_eq!(ending, Ending::Closed);
    assert_eq!(proxy.snapshot().limited.connections, 1);
    // Once one closes, a new connection is served.
    drop(first);
    wait_until("a closed connection gives its place back", STEP, || async {
        status(&exchange(proxy.addr, get_close(&origin).as_bytes()).await) == 200
    })
    .await;
    assert!(get_on(&mut second, &url, "").await.ends_with(b"ok"));
    drop(second);
    wait_until("the proxy is healthy", STEP, || async {
        status(&exchange(proxy.addr, get_close(&origin).as_bytes()).await) == 200
    })
    .await;
    proxy.assert_healthy().await;
}

/// Reads exactly `total` bytes and returns how long they took from the first one.
async fn timed_read(stream: &mut TcpStream, total: u64) -> Duration {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let mut first = None;
    let read = async {
        while got < total {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {got} of {total} bytes");
            first.get_or_insert_with(Instant::now);
            got += n as u64;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the paced transfer stalled");
    first.map_or(Duration::ZERO, |start| start.elapsed())
}

/// The rate a transfer of [`PACED_BYTES`] achieved after its burst, within tolerance.
fn assert_paced(took: Duration, what: &str) {
    let rate = (PACED_BYTES - BURST) as f64 / took.as_secs_f64();
    let off = (rate - RATE as f64).abs() / RATE as f64;
    eprintln!("{what}: {rate:.0} B/s over {took:?}");
    assert!(
        off <= TOLERANCE,
        "{what}: {rate:.0} B/s over {took:?}, asked for {RATE} B/s"
    );
}

#[tokio::test]
async fn bandwidth_paces_a_tunnel() {
    let source = scripted_origin(|mut stream| async move {
        let chunk = vec![b't'; 64 * 1024];
        let mut left = PACED_BYTES as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            if stream.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
        let _ = stream.shutdown().await;
    })
    .await;
    let proxy = Proxy::start_with(|c| c.access.limits = limits(|l| l.bandwidth = Some(RATE))).await;
    let mut tunnel = open_tunnel(proxy.addr, &source.to_string(), "").await;
    let took = timed_read(&mut tunnel, PACED_BYTES).await;
    assert_paced(took, "tunnel");
    assert!(proxy.snapshot().limited.bandwidth > 0);
    drop(tunnel);
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn bandwidth_paces_a_forwarded_body() {
    let origin = Origin::start(|_| {
        let mut response =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {PACED_BYTES}\r\n\r\n").into_bytes();
        response.resize(response.len() + PACED_BYTES as usize, b'b');
        response
    })
    .await;
    let proxy = Proxy::start_with(|c| c.access.limits = limits(|l| l.bandwidth = Some(RATE))).await;
    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let request = get_close(&origin);
    within(stream.write_all(request.as_bytes())).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // The head came out of the burst; time the body (less the head's share of it).
    let took = timed_read(&mut stream, PACED_BYTES).await;
    assert_paced(took, "forwarded body");
    // The transfer was slowed, never failed: it ends cleanly.
    assert!(read_to_close(&mut stream).await.is_empty());
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn auth_failures_block_the_address_until_the_block_ends() {
    let files = Scratch::new("limits-auth");
    let users = users_file(&files);
    let origin = Origin::fixed("ok").await;
    let proxy = Proxy::start_with(|c| {
        c.access.auth_file = Some(users);
        c.access.limits = limits(|l| {
            l.auth_failures_per_minute = Some(2);
            l.auth_block = Duration::from_secs(2);
        });
    })
    .await;
    let authority = origin.addr.to_string();
    let wrong = login((CLEAR_USER.0, "guess"));
    // Asking without credentials is how clients learn to log in: never a failure.
    for _ in 0..5 {
        assert_eq!(status(&get(proxy.addr, &authority, "").await), 407);
    }
    // Two failures a minute are allowed; the third attempt starts the block, unchecked.
    for _ in 0..2 {
        assert_eq!(status(&get(proxy.addr, &authority, &wrong).await), 407);
    }
    assert_too_many(
        &get(proxy.addr, &authority, &wrong).await,
        "the attempt past the limit",
    );
    let blocked = get(proxy.addr, &authority, &login(CLEAR_USER)).await;
    assert_too_many(&blocked, "right password while blocked");
    assert!(retry_after(&blocked).is_some_and(|s| s <= 2));
    assert_too_many(
        &get(proxy.addr, &authority, "").await,
        "no credentials while blocked",
    );
    assert!(proxy.snapshot().limited.auth_failures >= 3);
    let started = Instant::now();
    wait_until("the block ends", Duration::from_secs(5), || async {
        status(&get(proxy.addr, &authority, &login(CLEAR_USER)).await) == 200
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "lifted early"
    );
    // A fresh connection with a good login is served.
    assert!(
        get(proxy.addr, &authority, &login(BCRYPT_USER))
            .await
            .ends_with(b"ok")
    );
}
