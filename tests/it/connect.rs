//! CONNECT tunnels and protocol upgrades: a TLS download intact through the tunnel
//! (curl and an HTTP client crate), bytes sent ahead of the 200, refused tunnels closing
//! the connection, WebSocket-style 101 upgrades, idle tunnels timing out.

use std::sync::Arc;
use std::time::Duration;

use crate::common::tls::TlsOrigin;
use crate::common::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn tls_download_through_tunnel_is_intact() {
    let body = Arc::new(pattern(8 * 1024 * 1024 + 17));
    let origin = TlsOrigin::start(body.clone()).await;
    let proxy = Proxy::start().await;
    let files = Scratch::new("connect-ca");
    let ca = files.write("ca.pem", &origin.cert_pem);
    let url = format!("https://localhost:{}/blob", origin.addr.port());
    let (code, out, err) = curl(&["-p", "-x", &proxy.url(), "--cacert", text(&ca), &url]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(Sha256::digest(&out), Sha256::digest(&*body));
}

#[tokio::test]
async fn https_with_http_client_crate_keeps_tls_alive_in_tunnel() {
    let body = Arc::new(pattern(100_000));
    let origin = TlsOrigin::start(body.clone()).await;
    let proxy = Proxy::start().await;
    let cert = reqwest::Certificate::from_pem(origin.cert_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::https(proxy.url()).unwrap())
        .add_root_certificate(cert)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/", origin.addr.port());
    for _ in 0..3 {
        let response = within(client.get(&url).send()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(within(response.bytes()).await.unwrap(), &body[..]);
    }
}

#[tokio::test]
async fn bytes_sent_behind_the_connect_head_are_relayed() {
    let echo = echo_origin().await;
    let proxy = Proxy::start().await;
    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let request = format!("{}early bytes", connect_request(&echo.to_string(), ""));
    stream.write_all(request.as_bytes()).await.unwrap();
    let expected = [ESTABLISHED, b"early bytes"].concat();
    let mut got = vec![0; expected.len()];
    within(stream.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, expected);
    stream.write_all(b" and later ones").await.unwrap();
    let mut more = vec![0; 15];
    within(stream.read_exact(&mut more)).await.unwrap();
    assert_eq!(more, b" and later ones");
}

#[tokio::test]
async fn refused_connect_closes_and_never_parses_the_tunnel_bytes() {
    let origin = Origin::fixed("must not be reached").await;
    let closed = closed_port().await;
    let proxy = Proxy::start().await;
    let smuggled = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        origin.url("/smuggled")
    );
    let request = format!("CONNECT {closed} HTTP/1.1\r\nHost: x\r\n\r\n{smuggled}");
    let response = exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(status(&response), 502);
    assert_eq!(response.windows(9).filter(|w| w == b"HTTP/1.1 ").count(), 1);
    assert_eq!(origin.request_count(), 0);
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn websocket_upgrade_becomes_a_relay() {
    let (addr, origin) = serve_once(|mut stream| async move {
        let head = read_head(&mut stream).await;
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.contains("Upgrade: websocket\r\n") && head.contains("Connection: Upgrade\r\n"),
            "{head}"
        );
        stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nserver-first")
            .await
            .unwrap();
        let mut buf = [0u8; 5];
        within(stream.read_exact(&mut buf)).await.unwrap();
        stream.write_all(&buf).await.unwrap();
    })
    .await;
    let proxy = Proxy::start().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "GET http://{addr}/chat HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Upgrade: websocket\r\n") && head.contains("Connection: Upgrade\r\n"),
        "{head}"
    );
    let mut first = [0u8; 12];
    within(stream.read_exact(&mut first)).await.unwrap();
    assert_eq!(&first, b"server-first");
    stream.write_all(b"hello").await.unwrap();
    let mut echo = [0u8; 5];
    within(stream.read_exact(&mut echo)).await.unwrap();
    assert_eq!(&echo, b"hello");
    within(origin).await.unwrap();
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn upgrade_refused_by_origin_is_a_normal_response() {
    let origin = Origin::fixed("no upgrade here").await;
    let proxy = Proxy::start().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..2 {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            origin.url("/")
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        assert!(
            read_response(&mut stream)
                .await
                .ends_with(b"no upgrade here")
        );
    }
}

#[tokio::test]
async fn idle_tunnel_is_closed() {
    let echo = echo_origin().await;
    let proxy = Proxy::start_with(|c| c.timeouts.idle = Duration::from_secs(1)).await;
    let mut stream = open_tunnel(proxy.addr, &echo.to_string(), "").await;
    let started = std::time::Instant::now();
    assert!(read_to_close(&mut stream).await.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "idle tunnel was not closed"
    );
    proxy.assert_healthy().await;
}
