//! `--max-buffer-memory`: body buffers of all connections together grow only within the
//! budget. Clients that read a long body quickly (so the proxy's reads grow) and then
//! stop reading leave the proxy holding what it read last for each of them; with a small
//! budget that stays small, with a large one it does not (the second test shows the
//! first can fail). The bodies are chunked, so they take the copy path through the
//! proxy's own buffers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::observe::{Running, get};
use crate::common::*;

/// Clients that read, then stall.
const CLIENTS: usize = 50;
/// What each client reads before it stops: past `http::io::GROW_AFTER` (8 MiB), so the
/// proxy's reads for it have started to grow.
const READ_FIRST: usize = 12 * 1024 * 1024;
/// Each response's body: far more than the kernel buffers hold.
const BODY_CHUNKS: usize = 256;
const CHUNK: usize = 1024 * 1024;

/// An origin that answers every request with a chunked body of [`BODY_CHUNKS`] 1 MiB
/// chunks, as fast as the connection takes them, counting the bytes it wrote.
async fn chunked_bulk_origin() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        let chunk: Arc<Vec<u8>> = Arc::new(
            format!("{CHUNK:x}\r\n")
                .into_bytes()
                .into_iter()
                .chain(std::iter::repeat_n(b'b', CHUNK))
                .chain(*b"\r\n")
                .collect(),
        );
        while let Ok((mut stream, _)) = listener.accept().await {
            let (chunk, counter) = (chunk.clone(), counter.clone());
            tokio::spawn(async move {
                next_head(&mut stream).await?;
                let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                stream.write_all(head).await.ok()?;
                for _ in 0..BODY_CHUNKS {
                    stream.write_all(&chunk).await.ok()?;
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                stream.write_all(b"0\r\n\r\n").await.ok()
            });
        }
    });
    (addr, sent)
}

/// Opens a client through `proxy`, asks for the bulk body and reads [`READ_FIRST`] bytes
/// of it; the connection is returned unread from then on.
async fn read_then_stall(proxy: SocketAddr, origin: SocketAddr) -> TcpStream {
    let mut stream = within(TcpStream::connect(proxy)).await.unwrap();
    let request = format!("GET http://{origin}/bulk HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    within(stream.write_all(request.as_bytes())).await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0;
    while read < READ_FIRST {
        let n = within(stream.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed after {read} bytes");
        read += n;
    }
    stream
}

/// Starts the binary with `budget_mib`, stalls [`CLIENTS`] clients on it, waits until
/// the origin has stopped sending, and returns the proxy's resident growth in KiB and
/// the budget in use it reports.
async fn stalled_growth(budget_mib: &str) -> (u64, u64) {
    let (origin, sent) = chunked_bulk_origin().await;
    let running = Running::start(&[
        "--max-buffer-memory",
        budget_mib,
        "--metrics-addr",
        "127.0.0.1:0",
    ])
    .await;
    let proxy = running.addr();
    let baseline = running.proxy.rss_kib();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS / 10 {
        let batch: Vec<_> = (0..10)
            .map(|_| tokio::spawn(read_then_stall(proxy, origin)))
            .collect();
        for client in batch {
            clients.push(client.await.unwrap());
        }
    }
    // Every body is now stuck: the origin stops once the kernel buffers are full.
    let mut last = u64::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = sent.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let grown = running.proxy.rss_kib().saturating_sub(baseline);
    let (_, metrics) = get(running.metrics.unwrap(), "/metrics").await;
    let used = String::from_utf8_lossy(&metrics)
        .lines()
        .find_map(|l| l.strip_prefix("proxy_buffer_memory_used_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the budget gauge");
    drop(clients);
    (grown, used)
}

/// A 4 MiB budget: the proxy holds the budget plus one small read per stalled client.
#[tokio::test]
async fn stalled_clients_hold_small_buffers_once_the_budget_is_spent() {
    let (grown, used) = stalled_growth("4").await;
    eprintln!("budget 4 MiB: resident growth {grown} KiB, budget used {used} bytes");
    assert!(used > 0, "reads never grew: the test would prove nothing");
    assert!(used <= 4 << 20, "{used}");
    assert!(
        grown < 40 * 1024,
        "{CLIENTS} stalled clients grew the proxy by {grown} KiB"
    );
}

/// The same with a budget too large to matter: the proxy holds grown reads for every
/// stalled client, over the bound the test above holds to.
#[tokio::test]
async fn without_a_budget_stalled_clients_hold_grown_buffers() {
    let (grown, used) = stalled_growth("4096").await;
    eprintln!("budget 4 GiB: resident growth {grown} KiB, budget used {used} bytes");
    assert!(used > 24 << 20, "{used}");
    assert!(grown > 40 * 1024, "{grown} KiB");
}
