//! Limits and lifecycle: the connection cap answers 503 and recovers, slow heads and
//! idle connections are cut off, shutdown drains requests in flight and exits 0, bad
//! flags exit 2, and a 200 MiB body each way streams through bounded memory.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn connection_cap_answers_503_and_recovers() {
    let origin = Origin::fixed("fine").await;
    let proxy = Proxy::start_with(|c| c.max_connections = 2).await;
    let first = TcpStream::connect(proxy.addr).await.unwrap();
    let second = TcpStream::connect(proxy.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = exchange(
        proxy.addr,
        format!("GET {} HTTP/1.1\r\n\r\n", origin.url("/")).as_bytes(),
    )
    .await;
    let text = String::from_utf8(refused).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("Retry-After: 1\r\n"));
    drop(first);
    drop(second);
    let deadline = Instant::now() + STEP;
    loop {
        let request = format!(
            "GET {} HTTP/1.1\r\nConnection: close\r\n\r\n",
            origin.url("/")
        );
        let response = exchange(proxy.addr, request.as_bytes()).await;
        if status(&response) == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn slow_request_head_is_cut_off() {
    let proxy = Proxy::start_with(|c| c.timeouts.header = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    for byte in b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Slow: yes\r\n" {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let _ = within(stream.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn silent_connection_is_closed_after_header_timeout() {
    let proxy = Proxy::start_with(|c| c.timeouts.header = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    assert!(read_to_close(&mut stream).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn idle_keep_alive_is_closed() {
    let origin = Origin::fixed("x").await;
    let proxy = Proxy::start_with(|c| c.timeouts.idle = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(format!("GET {} HTTP/1.1\r\n\r\n", origin.url("/")).as_bytes())
        .await
        .unwrap();
    assert!(read_response(&mut stream).await.ends_with(b"x"));
    let started = Instant::now();
    assert!(read_to_close(&mut stream).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// An origin that waits `delay` before answering each request.
async fn slow_origin(delay: Duration) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_response(&mut stream).await;
                tokio::time::sleep(delay).await;
                let _ = stream.write_all(&ok("slow but complete")).await;
            });
        }
    });
    addr
}

/// A request to `slow` through the proxy at `addr`, answered when the task ends.
fn request_in_flight(addr: SocketAddr, slow: SocketAddr) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET http://{slow}/ HTTP/1.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        read_to_close(&mut stream).await
    })
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let slow = slow_origin(Duration::from_millis(700)).await;
    let proxy = Proxy::start().await;
    let addr = proxy.addr;
    let in_flight = request_in_flight(addr, slow);
    let idle = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.shutdown().await;
    let response = String::from_utf8(within(in_flight).await.unwrap()).unwrap();
    assert!(response.ends_with("slow but complete"), "{response}");
    assert!(response.contains("Connection: close\r\n"));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    drop(idle);
}

#[tokio::test]
async fn binary_exits_0_on_sigterm_after_draining() {
    let slow = slow_origin(Duration::from_millis(700)).await;
    let mut proxy = ProxyProcess::start(&LOCAL).await;
    let addr = proxy.addr;
    let in_flight = request_in_flight(addr, slow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let response = within(in_flight).await.unwrap();
    assert!(response.ends_with(b"slow but complete"));
    let exit = within(proxy.child.wait()).await.unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test]
async fn bad_flags_exit_2_with_a_message() {
    for args in [
        &["--port", "http"][..],
        &["--max-connections", "0"],
        &["--idle-timeout", "-1"],
        &["--no-such-flag"],
    ] {
        let out = within(
            tokio::process::Command::new(env!("CARGO_BIN_EXE_proxy-server"))
                .args(args)
                .output(),
        )
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error:"),
            "{args:?}"
        );
    }
    let help = within(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_proxy-server"))
            .arg("--help")
            .output(),
    )
    .await
    .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--host",
        "--port",
        "--max-connections",
        "--connect-timeout",
        "--header-timeout",
        "--idle-timeout",
        "--workers",
        "--log-level",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

const BIG: u64 = 200 * 1024 * 1024;

/// Sends or swallows `BIG` bytes per request: GET downloads them, POST uploads are counted.
async fn bulk_origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                if head.starts_with(b"GET") {
                    let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
                    stream.write_all(header.as_bytes()).await.unwrap();
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
            });
        }
    });
    addr
}

#[tokio::test]
async fn large_bodies_stream_in_bounded_memory() {
    let origin = bulk_origin().await;
    let proxy = ProxyProcess::start(&LOCAL).await;
    let baseline = proxy.rss_kib();
    let pid_rss = {
        let pid = proxy.pid();
        move || {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
        }
    };
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(pid_rss(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Download.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(format!("GET http://{origin}/big HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
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
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            format!("POST http://{origin}/up HTTP/1.1\r\nContent-Length: {BIG}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
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
    sampler.abort();
    let grew = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(baseline);
    eprintln!(
        "baseline RSS {baseline} KiB, peak growth {grew} KiB over 2 x {} MiB",
        BIG >> 20
    );
    assert!(
        grew < 16 * 1024,
        "proxy memory grew by {grew} KiB while streaming"
    );
}
