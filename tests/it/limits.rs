//! Limits and lifecycle of the proxy in-process: silent and idle connections are cut
//! off, shutdown drains requests in flight, and a 200 MiB body each way streams through
//! bounded memory. The connection cap and slow heads are in `abuse`; the binary's exit
//! codes and signals in `cli`.

use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn silent_connection_is_closed_after_header_timeout() {
    let proxy = Proxy::start_with(|c| c.timeouts.header = Duration::from_secs(1)).await;
    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let started = Instant::now();
    assert!(read_to_close(&mut stream).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn idle_keep_alive_is_closed() {
    let origin = Origin::fixed("x").await;
    let proxy = Proxy::start_with(|c| c.timeouts.idle = Duration::from_secs(1)).await;
    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/"));
    within(stream.write_all(request.as_bytes())).await.unwrap();
    assert!(read_response(&mut stream).await.ends_with(b"x"));
    let started = Instant::now();
    assert!(read_to_close(&mut stream).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let (slow, received) = slow_origin(Duration::from_millis(700), ok("slow but complete")).await;
    let proxy = Proxy::start().await;
    let addr = proxy.addr;
    let request = format!("GET http://{slow}/ HTTP/1.1\r\nHost: x\r\n\r\n");
    let in_flight = tokio::spawn(async move { exchange(addr, request.as_bytes()).await });
    let idle = within(TcpStream::connect(addr)).await.unwrap();
    wait_until("the request reaches the origin", STEP, || async {
        received.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    proxy.shutdown().await;
    let response = String::from_utf8(within(in_flight).await.unwrap()).unwrap();
    assert!(response.ends_with("slow but complete"), "{response}");
    assert!(response.contains("Connection: close\r\n"));
    assert!(
        within(TcpStream::connect(addr)).await.is_err(),
        "still accepting after shutdown"
    );
    drop(idle);
}

const BIG: u64 = 200 * 1024 * 1024;

/// Sends or swallows `BIG` bytes per request: GET downloads them, POST uploads are counted.
async fn bulk_origin() -> std::net::SocketAddr {
    scripted_origin(|mut stream| async move {
        let Some(head) = next_head(&mut stream).await else {
            return;
        };
        if head.starts_with(b"GET") {
            let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
            if stream.write_all(header.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![b'd'; 1024 * 1024];
            for _ in 0..BIG / block.len() as u64 {
                if stream.write_all(&block).await.is_err() {
                    return;
                }
            }
        } else {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            while total < BIG {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
            let _ = stream.write_all(&ok(&total.to_string())).await;
        }
    })
    .await
}

#[tokio::test]
async fn large_bodies_stream_in_bounded_memory() {
    let origin = bulk_origin().await;
    let proxy = ProxyProcess::start(&LOCAL).await;
    let baseline = proxy.rss_kib();
    let peak = PeakRss::start(proxy.pid());
    // Download.
    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let request = format!("GET http://{origin}/big HTTP/1.1\r\nHost: x\r\n\r\n");
    within(stream.write_all(request.as_bytes())).await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < BIG + 30 && Instant::now() < deadline {
        let n = within(stream.read(&mut buf)).await.unwrap();
        if n == 0 {
            break;
        }
        received += n as u64;
        // Read slowly at first so the proxy has to hold back, not buffer ahead.
        if received < 8 * 1024 * 1024 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(received > BIG, "download incomplete: {received}");
    // Upload.
    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let request =
        format!("POST http://{origin}/up HTTP/1.1\r\nHost: x\r\nContent-Length: {BIG}\r\n\r\n");
    within(stream.write_all(request.as_bytes())).await.unwrap();
    let block = vec![b'u'; 1024 * 1024];
    for _ in 0..BIG / block.len() as u64 {
        within(stream.write_all(&block)).await.unwrap();
    }
    let response = read_response(&mut stream).await;
    assert!(
        response.ends_with(BIG.to_string().as_bytes()),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let grew = peak.stop().saturating_sub(baseline);
    eprintln!(
        "baseline RSS {baseline} KiB, peak growth {grew} KiB over 2 x {} MiB",
        BIG >> 20
    );
    assert!(
        grew < 16 * 1024,
        "proxy memory grew by {grew} KiB while streaming"
    );
}
