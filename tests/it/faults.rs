//! Fault injection: origins that reset, stall, or send garbage; clients that vanish
//! mid-transfer; tunnel peers that half-close. Nothing may hang, no broken body may pass
//! for a complete one, no broken origin connection may be pooled, and the proxy stays
//! healthy after each. Origins that cannot be reached at all are in `errors`.

use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Bytes of body an origin sends before it fails.
const PARTIAL: usize = 1000;

/// An origin that answers with `head` and part of a body, then resets the connection.
async fn resetting_origin(head: &'static str, chunked: bool) -> std::net::SocketAddr {
    scripted_origin(move |mut stream| async move {
        next_head(&mut stream).await;
        let mut reply = head.as_bytes().to_vec();
        if chunked {
            reply.extend_from_slice(format!("{PARTIAL:x}\r\n").as_bytes());
        }
        reply.extend_from_slice(&[b'x'; PARTIAL]);
        let _ = stream.write_all(&reply).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        reset(stream);
    })
    .await
}

/// An origin reset in the middle of the body: the client connection ends promptly and
/// never with what looks like a complete body. Where the client could not tell (the
/// body runs to the close), the proxy must abort the client connection too.
#[tokio::test]
async fn origin_reset_mid_response_is_never_passed_off_as_complete() {
    let proxy = Proxy::start().await;
    let cases = [
        (
            "Content-Length",
            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
            false,
            "HTTP/1.1",
        ),
        (
            "chunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
            "HTTP/1.1",
        ),
        (
            "close-delimited",
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            false,
            "HTTP/1.1",
        ),
        (
            "chunked to HTTP/1.0",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
            "HTTP/1.0",
        ),
    ];
    for (name, head, chunked, version) in cases {
        let origin = resetting_origin(head, chunked).await;
        let started = Instant::now();
        let (response, ending) = exchange_ending(
            proxy.addr,
            format!("GET http://{origin}/ {version}\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: took {:?}",
            started.elapsed()
        );
        assert_eq!(status(&response), 200, "{name}");
        let body = split_head(&response).1;
        let text = String::from_utf8_lossy(&response);
        match name {
            "Content-Length" => assert!(body.len() < 100_000, "{name}: full body"),
            "chunked" => assert!(!body.ends_with(b"0\r\n\r\n"), "{name}: terminated: {text}"),
            _ => assert_eq!(
                ending,
                Ending::Aborted,
                "{name}: a clean close passes a cut body off as whole"
            ),
        }
        proxy.assert_healthy().await;
    }
}

/// An origin that reads a request, sends `reply` (perhaps nothing), and then holds the
/// connection open in silence for longer than any test lasts.
async fn stalling_origin(reply: &'static [u8]) -> std::net::SocketAddr {
    scripted_origin(move |mut stream| async move {
        next_head(&mut stream).await;
        let _ = stream.write_all(reply).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await
}

/// An origin that never answers: 504 after the response timeout, no longer; one that
/// goes silent mid-body: the client is cut off.
#[tokio::test]
async fn silent_origin_gets_504_after_the_response_timeout() {
    let proxy = Proxy::start_with(|c| c.timeouts.response = Duration::from_secs(1)).await;
    let origin = stalling_origin(b"").await;
    let started = Instant::now();
    let response = exchange(
        proxy.addr,
        format!("GET http://{origin}/ HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
        "{text}"
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );

    // Silent in the middle of the body: the client is cut off, not left waiting.
    let stalling = stalling_origin(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello").await;
    let started = Instant::now();
    let response = exchange(
        proxy.addr,
        format!("GET http://{stalling}/ HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        response.ends_with(b"\r\n\r\nhello"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    proxy.assert_healthy().await;
}

/// Responses that are not valid HTTP: 502, and the connection closed.
#[tokio::test]
async fn malformed_responses_get_502() {
    let proxy = Proxy::start().await;
    let big_field = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70 * 1024)
    );
    let cases: Vec<(&str, String)> = vec![
        ("non-numeric status", "HTTP/1.1 abc OK\r\n\r\n".into()),
        ("misspelt version", "HTP/1.1 200 OK\r\n\r\n".into()),
        ("HTTP/2 status line", "HTTP/2.0 200 OK\r\n\r\n".into()),
        (
            "status over 599",
            "HTTP/1.1 999 Nope\r\nContent-Length: 0\r\n\r\n".into(),
        ),
        (
            "status under 100",
            "HTTP/1.1 099 Nope\r\nContent-Length: 0\r\n\r\n".into(),
        ),
        ("binary garbage", "\0\x01\x02garbage\r\n\r\n".into()),
        (
            "field without colon",
            "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n".into(),
        ),
        (
            "folded field",
            "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n".into(),
        ),
        (
            "NUL in value",
            "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n".into(),
        ),
        (
            "space before colon",
            "HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n".into(),
        ),
        (
            "differing Content-Length",
            "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab".into(),
        ),
        (
            "negative Content-Length",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n".into(),
        ),
        ("head over 64 KiB", big_field),
        ("closed without a byte", String::new()),
        (
            "closed inside the head",
            "HTTP/1.1 200 OK\r\nContent-Le".into(),
        ),
    ];
    for (name, reply) in cases {
        let reply: std::sync::Arc<str> = reply.into();
        let origin = scripted_origin(move |mut stream| {
            let reply = reply.clone();
            async move {
                next_head(&mut stream).await;
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
                    .await;
            }
        })
        .await;
        let response = exchange(
            proxy.addr,
            format!("GET http://{origin}/ HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await;
        let text = String::from_utf8_lossy(&response);
        assert_eq!(status(&response), 502, "{name}: {text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{name}: {text}");
        assert!(
            !text.contains("garbage") && !text.contains("X-A"),
            "{name}: origin bytes leaked: {text}"
        );
    }
    // The same from an origin that keeps its connection open after the bad head.
    let origin = Origin::start(|_| b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n".to_vec()).await;
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/"));
    assert_eq!(status(&exchange(proxy.addr, request.as_bytes()).await), 502);
    // A malformed chunk in the middle of a response body: cut off, never terminated.
    let origin = scripted_origin(|mut stream| async move {
        next_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let response = exchange(
        proxy.addr,
        format!("GET http://{origin}/ HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        !response.ends_with(b"0\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    proxy.assert_healthy().await;
}

/// An origin that reports, for each connection, when it saw the end of it (EOF or reset)
/// after reading the head and whatever body came.
async fn eof_watching_origin(
    reply: Option<&'static [u8]>,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<usize>) {
    let (seen, saw) = mpsc::unbounded_channel();
    let origin = scripted_origin(move |mut stream| {
        let seen = seen.clone();
        async move {
            let mut total = next_head(&mut stream).await.map_or(0, |head| head.len());
            if let Some(reply) = reply {
                let _ = stream.write_all(reply).await;
            }
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => total += n,
                    Ok(_) => break,
                    Err(_) => return,
                }
            }
            let _ = seen.send(total);
        }
    })
    .await;
    (origin, saw)
}

/// A client that vanishes mid-upload: the origin connection is closed (the origin sees
/// its end promptly), never pooled for the next request.
#[tokio::test]
async fn client_gone_mid_upload_closes_the_origin_connection() {
    let proxy = Proxy::start().await;
    for framing in ["Content-Length: 10000000", "Transfer-Encoding: chunked"] {
        let (origin, mut ended) = eof_watching_origin(None).await;
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        let head = format!("POST http://{origin}/up HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n");
        client.write_all(head.as_bytes()).await.unwrap();
        let piece = if framing.starts_with("Transfer") {
            format!("10000\r\n{}\r\n", "u".repeat(0x10000)).into_bytes()
        } else {
            vec![b'u'; 0x10000]
        };
        client.write_all(&piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(client);
        let seen = tokio::time::timeout(Duration::from_secs(5), ended.recv()).await;
        let seen = seen.expect("origin connection left open after the client vanished");
        assert!(
            seen.unwrap() > head.len(),
            "{framing}: the body never started"
        );
        proxy.assert_healthy().await;
    }
}

/// A client that vanishes mid-download: the proxy stops, and the origin's connection is
/// closed rather than pooled (its writes fail promptly).
#[tokio::test]
async fn client_gone_mid_download_closes_the_origin_connection() {
    let proxy = Proxy::start().await;
    let (failed, mut write_failed) = mpsc::unbounded_channel();
    let origin = scripted_origin(move |mut stream| {
        let failed = failed.clone();
        async move {
            next_head(&mut stream).await;
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n";
            if stream.write_all(head).await.is_err() {
                return;
            }
            let piece = vec![b'd'; 16 * 1024];
            for _ in 0..2000 {
                let write = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&piece));
                if !matches!(write.await, Ok(Ok(()))) {
                    let _ = failed.send(());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    })
    .await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(format!("GET http://{origin}/big HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    client.read_exact(&mut first).await.unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"));
    drop(client);
    let gone = tokio::time::timeout(Duration::from_secs(8), write_failed.recv()).await;
    assert!(
        gone.is_ok(),
        "the origin kept streaming to a proxy whose client was gone"
    );
    proxy.assert_healthy().await;
}

/// A half-close passes through a tunnel in each direction: the side that stopped
/// sending still receives, and the other side still sends.
#[tokio::test]
async fn tunnel_passes_half_close_both_ways() {
    let proxy = Proxy::start().await;
    // The client finishes first; the origin answers after it sees the end.
    let echo_after_eof = scripted_origin(|mut stream| async move {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got)).await;
        let mut reply = b"pong:".to_vec();
        reply.extend_from_slice(&got);
        let _ = stream.write_all(&reply).await;
    })
    .await;
    let mut client = open_tunnel(proxy.addr, &echo_after_eof.to_string(), "").await;
    client.write_all(b"ping").await.unwrap();
    client.shutdown().await.unwrap();
    let (reply, ending) = read_until_end(&mut client).await;
    assert_eq!((reply, ending), (b"pong:ping".to_vec(), Ending::Closed));

    // The origin finishes first; the client still gets its bytes through afterwards.
    let (heard, mut got) = mpsc::unbounded_channel();
    let speaks_first = scripted_origin(move |mut stream| {
        let heard = heard.clone();
        async move {
            let _ = stream.write_all(b"hello").await;
            let _ = stream.shutdown().await;
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
            let _ = heard.send(rest);
        }
    })
    .await;
    let mut client = open_tunnel(proxy.addr, &speaks_first.to_string(), "").await;
    let mut hello = [0u8; 5];
    client.read_exact(&mut hello).await.unwrap();
    let mut after = [0u8; 1];
    let eof = tokio::time::timeout(Duration::from_secs(5), client.read(&mut after)).await;
    assert!(
        matches!(eof, Ok(Ok(0))),
        "the origin's half-close did not reach the client"
    );
    client.write_all(b"still here").await.unwrap();
    client.shutdown().await.unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), got.recv())
        .await
        .unwrap();
    assert_eq!(rest.unwrap(), b"still here");
    proxy.assert_healthy().await;
}

/// With the cache on, a cacheable response the origin breaks off is not stored: the
/// next request goes to the origin and gets the whole body.
#[tokio::test]
async fn a_response_cut_off_is_never_cached() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let proxy = Proxy::start_with(|c| crate::common::cache::cache_on(c, 64, 8192)).await;
    for framing in ["Content-Length: 100000\r\n", "Connection: close\r\n"] {
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        let origin = scripted_origin(move |mut stream| {
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                next_head(&mut stream).await;
                let head = format!("HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n{framing}\r\n");
                if first {
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&[b'p'; PARTIAL]).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    reset(stream);
                } else {
                    let whole = "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 5\r\n\r\nwhole";
                    let _ = stream.write_all(whole.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            }
        })
        .await;
        let request = format!(
            "GET http://{origin}/cacheable HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let cut = exchange(proxy.addr, request.as_bytes()).await;
        assert!(split_head(&cut).1.len() <= PARTIAL, "{framing}");
        let again = exchange(proxy.addr, request.as_bytes()).await;
        assert!(
            again.ends_with(b"\r\n\r\nwhole"),
            "{framing}: {}",
            String::from_utf8_lossy(&again)
        );
        assert_eq!(
            served.load(Ordering::SeqCst),
            2,
            "{framing}: the second request was not sent on"
        );
    }
    proxy.assert_healthy().await;
}
