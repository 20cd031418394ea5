//! Long plain-HTTP response bodies that are not being cached move by splice(2)
//! (docs/forwarding.md, "Spliced bodies"); chunked ones and those being stored are
//! copied. Whatever the path, the client gets exactly the origin's bytes, a
//! Content-Length body leaves both connections reusable, and a body cut short on either
//! side closes the other side rather than passing as whole.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::raw::Rng;
use crate::common::*;

/// Well past the proxy's splicing threshold (256 KiB) and its first read (64 KiB).
const LONG: usize = 3 * 1024 * 1024 + 17;

fn random_body(seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(LONG)
}

/// Reads one response whose body is exactly `length` bytes after the head.
async fn read_exactly(stream: &mut TcpStream, length: usize) -> (String, Vec<u8>) {
    let head = String::from_utf8(read_head(stream).await).unwrap();
    let mut body = vec![0u8; length];
    within(stream.read_exact(&mut body)).await.unwrap();
    (head, body)
}

/// Two long Content-Length responses on one client connection: byte-exact, and the
/// origin connection is reused for the second (nothing was read past the first body).
#[tokio::test]
async fn content_length_bodies_arrive_exactly_and_both_connections_are_reused() {
    let origin = Origin::start(|seen| {
        let seed = u64::from(seen.target().ends_with("/two"));
        let body = random_body(seed);
        let mut reply =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        reply.extend_from_slice(&body);
        reply
    })
    .await;
    let proxy = Proxy::start().await;
    let mut client = within(TcpStream::connect(proxy.addr)).await.unwrap();
    for (path, seed) in [("one", 0), ("two", 1)] {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            origin.url(&format!("/{path}")),
            origin.addr
        );
        within(client.write_all(request.as_bytes())).await.unwrap();
        let (head, body) = read_exactly(&mut client, LONG).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(
            header_value(&head, "content-length"),
            Some(LONG.to_string())
        );
        assert!(body == random_body(seed), "/{path}: the body differs");
    }
    assert_eq!(origin.request_count(), 2);
    assert_eq!(
        origin.connection_count(),
        1,
        "the origin connection was not reused"
    );
    proxy.assert_healthy().await;
}

/// A body delimited by the origin's close reaches the client whole, ended by the close.
#[tokio::test]
async fn close_delimited_body_arrives_whole() {
    let origin = scripted_origin(|mut stream| async move {
        next_head(&mut stream).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let _ = stream.write_all(&random_body(7)).await;
    })
    .await;
    let proxy = Proxy::start().await;
    let request = format!("GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    let (response, ending) = exchange_ending(proxy.addr, request.as_bytes()).await;
    assert_eq!(ending, Ending::Closed);
    let (head, body) = split_head(&response);
    assert!(head.starts_with(b"HTTP/1.1 200"));
    assert!(body == random_body(7), "{} bytes of {LONG}", body.len());
    proxy.assert_healthy().await;
}

/// A chunked body takes the copy path and arrives decoded and re-encoded exactly.
#[tokio::test]
async fn chunked_body_arrives_exactly() {
    let origin = Origin::start(|_| {
        let body = random_body(3);
        let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(700 * 1024) {
            reply.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            reply.extend_from_slice(piece);
            reply.extend_from_slice(b"\r\n");
        }
        reply.extend_from_slice(b"0\r\n\r\n");
        reply
    })
    .await;
    let proxy = Proxy::start().await;
    let mut client = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        origin.url("/c"),
        origin.addr
    );
    within(client.write_all(request.as_bytes())).await.unwrap();
    let head = String::from_utf8(read_head(&mut client).await).unwrap();
    assert_eq!(
        header_value(&head, "transfer-encoding").as_deref(),
        Some("chunked")
    );
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            let mut byte = [0u8; 1];
            within(client.read_exact(&mut byte)).await.unwrap();
            line.push(byte[0]);
        }
        let size = usize::from_str_radix(std::str::from_utf8(&line).unwrap().trim(), 16).unwrap();
        let mut piece = vec![0u8; size + 2];
        within(client.read_exact(&mut piece)).await.unwrap();
        assert!(piece.ends_with(b"\r\n"));
        body.extend_from_slice(&piece[..size]);
        if size == 0 {
            break;
        }
    }
    assert!(body == random_body(3), "{} bytes of {LONG}", body.len());
    proxy.assert_healthy().await;
}

/// An origin that closes after part of a Content-Length body: the client's connection is
/// closed with fewer bytes than promised, never completed or kept for another request.
#[tokio::test]
async fn origin_breaking_off_mid_body_closes_the_client() {
    let origin = scripted_origin(|mut stream| async move {
        next_head(&mut stream).await;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 2 * LONG);
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&random_body(5)).await;
    })
    .await;
    let proxy = Proxy::start().await;
    let request = format!("GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    let (response, _) = exchange_ending(proxy.addr, request.as_bytes()).await;
    let (head, body) = split_head(&response);
    assert!(head.starts_with(b"HTTP/1.1 200"));
    assert_eq!(body.len(), LONG, "what the origin sent, and no more");
    assert!(body == random_body(5));
    proxy.assert_healthy().await;
}

/// A client that goes away mid-body: the origin's connection is closed (its writes fail)
/// rather than left streaming or pooled.
#[tokio::test]
async fn client_breaking_off_mid_body_closes_the_origin() {
    let (origin, finished) = serve_once(|mut stream| async move {
        next_head(&mut stream).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n";
        stream.write_all(head.as_bytes()).await.ok()?;
        let piece = vec![b'p'; 256 * 1024];
        for _ in 0..4000 {
            let write = tokio::time::timeout(STEP, stream.write_all(&piece)).await;
            if !matches!(write, Ok(Ok(()))) {
                return Some(());
            }
        }
        None
    })
    .await;
    let proxy = Proxy::start().await;
    let mut client = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let request = format!("GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    within(client.write_all(request.as_bytes())).await.unwrap();
    let mut part = vec![0u8; LONG];
    within(client.read_exact(&mut part)).await.unwrap();
    reset(client);
    let stopped = tokio::time::timeout(Duration::from_secs(20), finished).await;
    assert!(
        matches!(stopped, Ok(Ok(Some(())))),
        "the origin kept streaming to a proxy whose client was gone"
    );
    proxy.assert_healthy().await;
}

/// A long response the cache stores is copied, not spliced: it is stored whole, and the
/// second request is answered from the cache with the same bytes.
#[tokio::test]
async fn a_stored_response_is_still_teed_into_the_cache() {
    let origin = Origin::start(|_| {
        let body = random_body(9);
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(&body);
        reply
    })
    .await;
    let proxy = crate::common::cache::cached_proxy().await;
    let url = origin.url("/stored");
    for expected in ["MISS", "HIT"] {
        let reply = crate::common::cache::get(proxy.addr, &url, &[]).await;
        assert_eq!(reply.status, 200);
        assert!(reply.x_cache().contains(expected), "{}", reply.head);
        assert!(
            reply.body == random_body(9),
            "{} bytes of {LONG}",
            reply.body.len()
        );
    }
    assert_eq!(origin.request_count(), 1);
}
