//! Abuse: slowloris, a crowd of 2,000 clients, a connection flood past
//! `--max-connections`, and garbage connections. The proxy must cut off what is slow,
//! refuse what is over the cap with a prompt 503, answer everyone else correctly with
//! bounded memory, and serve a normal request at the end of each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::raw::{Rng, open_files_limit};
use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Clients in the crowd test.
const CROWD: usize = 2000;
/// Body bytes per crowd response: enough to take more than one read on each side.
const CROWD_BODY: usize = 8 * 1024;

/// The body the crowd origin sends for `/item/<n>`: distinct per client, so a response
/// delivered to the wrong client or spliced from two is caught.
fn crowd_body(path: &str) -> String {
    let tag = format!("{path};");
    tag.repeat(CROWD_BODY / tag.len() + 1)[..CROWD_BODY].to_string()
}

/// A GET for `url` on a fresh connection, read until the proxy closes.
async fn get(proxy: SocketAddr, url: &str) -> Vec<u8> {
    let request = format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    exchange(proxy, request.as_bytes()).await
}

/// Clients that send their head one byte a second are each cut off at the header
/// timeout with a 408 (not a byte of it reaching the origin), while a normal client is
/// served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_by_the_header_timeout() {
    let header_timeout = Duration::from_secs(2);
    let proxy = Proxy::start_with(|c| c.timeouts.header = header_timeout).await;
    let origin = Origin::fixed("fine").await;
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/slow"));
    let mut drips = Vec::new();
    for _ in 0..20 {
        let request = request.clone().into_bytes();
        let addr = proxy.addr;
        drips.push(tokio::spawn(async move {
            let mut stream = within(TcpStream::connect(addr)).await.unwrap();
            let started = Instant::now();
            let mut sent = 0;
            for byte in &request {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                sent += 1;
                // Wake early if the proxy has answered and closed.
                let mut peek = [0u8; 1];
                let closed = tokio::time::timeout(Duration::from_secs(1), stream.peek(&mut peek));
                if let Ok(Ok(_)) = closed.await {
                    break;
                }
            }
            let (answer, _) = read_until_end(&mut stream).await;
            (started.elapsed(), sent, answer)
        }));
    }
    // Served while the drips are open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = get(proxy.addr, &origin.url("/normal")).await;
    assert!(
        answer.ends_with(b"fine"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    for drip in drips {
        let (elapsed, sent, answer) = within(drip).await.unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 408 "),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        assert!(
            sent < request.len(),
            "the whole head went through ({sent} bytes)"
        );
        assert!(
            elapsed < header_timeout + Duration::from_secs(2),
            "{elapsed:?}"
        );
    }
    assert_eq!(origin.request_count(), 1, "a slow head reached the origin");
    proxy.assert_healthy().await;
}

/// 2,000 clients at once against the real binary: every response arrives whole and to
/// the right client, within 10 s, and the proxy's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_clients_are_all_answered() {
    let mut proxy = ProxyProcess::start(&LOCAL).await;
    let origin = Origin::start(|seen| {
        let path = seen.target();
        ok(&crowd_body(&path))
    })
    .await;
    // Each client costs two descriptors here (client and origin side) and two in the
    // proxy: pace to the open-files limit rather than fail on a small one.
    let at_once = ((open_files_limit().saturating_sub(200)) / 2).clamp(50, CROWD as u64) as usize;
    let gate = Arc::new(Semaphore::new(at_once));
    let baseline = proxy.rss_kib();
    let peak = PeakRss::start(proxy.pid());
    let started = Instant::now();
    let mut clients = Vec::with_capacity(CROWD);
    for n in 0..CROWD {
        let gate = gate.clone();
        let url = origin.url(&format!("/item/{n}"));
        let addr = proxy.addr;
        clients.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return false;
            };
            let request = format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).await.is_err() {
                return false;
            }
            let (answer, _) = read_until_end(&mut stream).await;
            let want = crowd_body(&format!("/item/{n}"));
            status(&answer) == 200 && answer.ends_with(want.as_bytes())
        }));
    }
    let mut good = 0;
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        for client in clients {
            good += usize::from(client.await.unwrap());
        }
    });
    answered
        .await
        .expect("the crowd was not answered within a minute");
    let elapsed = started.elapsed();
    let peak = peak.stop();
    assert!(proxy.is_running(), "the proxy exited");
    eprintln!(
        "crowd: {CROWD} clients ({at_once} at once) in {elapsed:?}; proxy RSS {baseline} KiB \
         before, {peak} KiB peak"
    );
    assert_eq!(
        good,
        CROWD,
        "{} of {CROWD} clients got a wrong or no answer",
        CROWD - good
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    // Bounded: a few buffers per connection in flight (48 KiB each at most, measured
    // ~15 KiB), nothing per request retained.
    assert!(
        peak < baseline + 160 * 1024,
        "peak RSS {peak} KiB from {baseline} KiB"
    );
    assert_eq!(origin.request_count(), CROWD);
    let answer = get(proxy.addr, &origin.url("/item/after")).await;
    assert_eq!(status(&answer), 200);
}

/// A burst far past `--max-connections`: everyone over the limit gets a prompt 503
/// with `Retry-After` (none is left hanging), and once the holders leave, a full set is
/// served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_gets_503_and_the_proxy_recovers() {
    const LIMIT: usize = 20;
    let proxy = Proxy::start_with(|c| c.max_connections = LIMIT).await;
    let origin = Origin::fixed("served").await;
    let mut holders = Vec::new();
    for _ in 0..LIMIT {
        holders.push(within(TcpStream::connect(proxy.addr)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..200 {
        let url = origin.url("/over");
        let addr = proxy.addr;
        flood.push(tokio::spawn(async move { get(addr, &url).await }));
    }
    for answer in flood {
        let answer = within(answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(origin.request_count(), 0);
    drop(holders);
    // The holders' tasks end as soon as they see the close; then a full set fits.
    let probe = origin.url("/probe");
    wait_until("the proxy recovers", Duration::from_secs(5), || async {
        status(&get(proxy.addr, &probe).await) == 200
    })
    .await;
    // Let the probe's own task end and give its permit back.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut full = Vec::new();
    for _ in 0..LIMIT {
        let url = origin.url("/again");
        let addr = proxy.addr;
        full.push(tokio::spawn(async move { get(addr, &url).await }));
    }
    for answer in full {
        assert!(within(answer).await.unwrap().ends_with(b"served"));
    }
    proxy.assert_healthy().await;
}

/// One garbage connection: random bytes, a random printable line, a cut-off request,
/// a TLS hello sent to the plain port, an oversized head, or nothing at all.
fn garbage(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => {
            let len = 1 + rng.below(4096) as usize;
            rng.bytes(len)
        }
        1 => {
            let len = 1 + rng.below(200) as usize;
            let mut line: Vec<u8> = (0..len).map(|_| b' ' + (rng.below(95) as u8)).collect();
            line.extend_from_slice(b"\r\n\r\n");
            line
        }
        2 => b"POST http://127.0.0.1:1/x HTTP/1.1\r\nHost: x\r\nContent-Le".to_vec(),
        3 => b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        4 => format!(
            "GET http://a/ HTTP/1.1\r\nHost: x\r\nX: {}\r\n",
            "g".repeat(70 * 1024)
        )
        .into_bytes(),
        _ => Vec::new(),
    }
}

/// Hundreds of garbage connections, while normal clients are served correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_flood_leaves_normal_requests_unaffected() {
    let proxy = Proxy::start().await;
    let origin = Origin::start(|seen| ok(&seen.request_line())).await;
    let addr = proxy.addr;
    let normal = {
        let origin = origin.clone();
        tokio::spawn(async move {
            for n in 0..40 {
                let answer = get(addr, &origin.url(&format!("/n{n}"))).await;
                let want = format!("GET /n{n} HTTP/1.1");
                assert!(
                    answer.ends_with(want.as_bytes()),
                    "{}",
                    String::from_utf8_lossy(&answer)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut rng = Rng::new(0x5eed);
    let mut statuses = std::collections::BTreeMap::new();
    for _batch in 0..6 {
        let mut batch = Vec::new();
        for _ in 0..50 {
            let bytes = garbage(&mut rng);
            batch.push(tokio::spawn(async move {
                status(&send_and_half_close(addr, &bytes).await)
            }));
        }
        for answer in batch {
            *statuses.entry(within(answer).await.unwrap()).or_insert(0) += 1;
        }
    }
    within(normal).await.unwrap();
    for status in statuses.keys() {
        assert!(
            matches!(status, 0 | 400 | 414 | 431 | 501),
            "garbage got {status}: {statuses:?}"
        );
    }
    assert_eq!(origin.request_count(), 40, "garbage reached the origin");
    proxy.assert_healthy().await;
}
