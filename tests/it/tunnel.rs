//! The relay under CONNECT tunnels (spliced through a pipe on Linux): half-closes pass
//! through, bulk transfers both ways at once arrive intact and are counted to the byte,
//! and a peer resetting its connection mid-transfer ends the tunnel promptly.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::raw::Pattern;
use crate::common::*;
use proxy_server::stats::Snapshot;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes each way in the bulk test: many pipe-fulls, so fill/drain cycles, partial
/// splices and full socket buffers all happen.
const BULK: u64 = 64 * 1024 * 1024;
/// Deadline for the bulk transfer (a debug build on a shared machine).
const BULK_DEADLINE: Duration = Duration::from_secs(120);
const WRITE_CHUNK: usize = 256 * 1024;
const TO_ORIGIN_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const TO_CLIENT_SEED: u64 = 0xd1b5_4a32_d192_ed03;

/// Writes `len` bytes of the `seed` pattern, then shuts the sending side down.
async fn send(mut to: impl AsyncWrite + Unpin, seed: u64, len: u64) {
    let mut pattern = Pattern::new(seed);
    let mut chunk = vec![0u8; WRITE_CHUNK];
    let mut sent = 0u64;
    while sent < len {
        let n = (len - sent).min(WRITE_CHUNK as u64) as usize;
        pattern.fill(&mut chunk[..n]);
        to.write_all(&chunk[..n]).await.unwrap();
        sent += n as u64;
    }
    to.shutdown().await.unwrap();
}

/// Reads to EOF, checking every byte against the `seed` pattern; returns the count.
async fn receive(mut from: impl AsyncRead + Unpin, seed: u64) -> u64 {
    let mut pattern = Pattern::new(seed);
    let mut buf = vec![0u8; WRITE_CHUNK];
    let mut expected = vec![0u8; WRITE_CHUNK];
    let mut received = 0u64;
    loop {
        let n = from.read(&mut buf).await.unwrap();
        if n == 0 {
            return received;
        }
        pattern.fill(&mut expected[..n]);
        if buf[..n] != expected[..n] {
            panic!("stream differs within {n} bytes after offset {received}");
        }
        received += n as u64;
    }
}

/// Statistics once no tunnel is open any more (the relay has returned its totals).
async fn after_tunnels_close(proxy: &Proxy) -> Snapshot {
    wait_until("every tunnel closes", STEP, || async {
        let snapshot = proxy.snapshot();
        snapshot.tunnels_opened > 0 && snapshot.tunnels_active == 0
    })
    .await;
    proxy.snapshot()
}

/// A tunnel through `proxy` to `target`, and the length of the CONNECT head it took.
async fn tunnel(proxy: &Proxy, target: SocketAddr) -> (TcpStream, u64) {
    let authority = target.to_string();
    let stream = open_tunnel(proxy.addr, &authority, "").await;
    (stream, connect_request(&authority, "").len() as u64)
}

#[tokio::test]
async fn half_close_passes_through_and_the_reply_still_arrives() {
    let (target, origin) = serve_once(|mut stream| async move {
        let mut question = Vec::new();
        // Returns only once the client's half-close has come through the tunnel.
        stream.read_to_end(&mut question).await.unwrap();
        let answer = format!("answer to {}", String::from_utf8_lossy(&question));
        stream.write_all(answer.as_bytes()).await.unwrap();
    })
    .await;
    let proxy = Proxy::start().await;
    let (mut stream, _) = tunnel(&proxy, target).await;
    stream.write_all(b"a question").await.unwrap();
    stream.shutdown().await.unwrap();
    let reply = read_to_close(&mut stream).await;
    assert_eq!(reply, b"answer to a question");
    within(origin).await.unwrap();
    let snapshot = after_tunnels_close(&proxy).await;
    assert_eq!(snapshot.bytes_to_origin, 10);
    assert_eq!(snapshot.bytes_from_origin, 20);
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn bulk_both_ways_at_once_is_intact_and_counted_exactly() {
    let (target, origin) = serve_once(|stream| async move {
        let (read, write) = stream.into_split();
        let (received, ()) = tokio::join!(
            receive(read, TO_ORIGIN_SEED),
            send(write, TO_CLIENT_SEED, BULK)
        );
        received
    })
    .await;
    let proxy = Proxy::start().await;
    let (stream, head_len) = tunnel(&proxy, target).await;
    let (read, write) = stream.into_split();
    let transfer = async {
        tokio::join!(
            receive(read, TO_CLIENT_SEED),
            send(write, TO_ORIGIN_SEED, BULK)
        )
    };
    let (to_client, ()) = tokio::time::timeout(BULK_DEADLINE, transfer)
        .await
        .expect("bulk transfer timed out");
    assert_eq!(to_client, BULK);
    assert_eq!(within(origin).await.unwrap(), BULK);
    let snapshot = after_tunnels_close(&proxy).await;
    assert_eq!(snapshot.bytes_to_origin, BULK);
    assert_eq!(snapshot.bytes_from_origin, BULK);
    assert_eq!(snapshot.bytes_from_client, head_len + BULK);
    assert_eq!(snapshot.bytes_to_client, ESTABLISHED.len() as u64 + BULK);
    proxy.assert_healthy().await;
}

/// Sends the pattern until the connection fails or `limit` bytes are out.
async fn send_until_refused(mut to: impl AsyncWrite + Unpin, limit: u64) -> u64 {
    let chunk = vec![7u8; WRITE_CHUNK];
    let mut sent = 0u64;
    while sent < limit {
        if to.write_all(&chunk).await.is_err() {
            break;
        }
        sent += WRITE_CHUNK as u64;
    }
    sent
}

/// More than any socket and pipe buffers on the way can absorb: a sender that gets this
/// far was never stopped.
const RESET_LIMIT: u64 = 1024 * 1024 * 1024;

#[tokio::test]
async fn origin_reset_mid_transfer_ends_the_tunnel() {
    let (target, origin) = serve_once(|mut stream| async move {
        let mut some = vec![0u8; 1024 * 1024];
        stream.read_exact(&mut some).await.unwrap();
        // Closing with unread data and a zero linger sends a reset, not a FIN.
        reset(stream);
    })
    .await;
    let proxy = Proxy::start().await;
    let (stream, _) = tunnel(&proxy, target).await;
    let (mut read, write) = stream.into_split();
    let (sent, _) = within(async {
        tokio::join!(send_until_refused(write, RESET_LIMIT), async {
            let mut rest = Vec::new();
            let _ = read.read_to_end(&mut rest).await;
        })
    })
    .await;
    assert!(sent < RESET_LIMIT, "the tunnel kept taking bytes");
    within(origin).await.unwrap();
    after_tunnels_close(&proxy).await;
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn client_reset_mid_transfer_ends_the_tunnel() {
    let (target, origin) =
        serve_once(|stream| async move { send_until_refused(stream, RESET_LIMIT).await }).await;
    let proxy = Proxy::start().await;
    let (mut stream, _) = tunnel(&proxy, target).await;
    let mut some = vec![0u8; 1024 * 1024];
    within(stream.read_exact(&mut some)).await.unwrap();
    reset(stream);
    let sent = within(origin).await.unwrap();
    assert!(sent < RESET_LIMIT, "the tunnel kept taking bytes");
    after_tunnels_close(&proxy).await;
    proxy.assert_healthy().await;
}
