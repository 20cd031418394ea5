//! The TLS listener (an HTTPS proxy): curl through `--proxy https://…` with the test CA
//! to HTTP and HTTPS origins, with credentials; a client that never completes the
//! handshake is closed at the header timeout and counted; a plain HTTP request on the TLS
//! port is told so in plain HTTP; the certificate is re-read on SIGHUP by the real binary
//! (a bad pair keeps the old one).

use std::sync::Arc;
use std::time::Duration;

use proxy_server::config::TlsFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::access::{CLEAR_USER, users_file};
use crate::common::listeners::{TestPki, other_pair};
use crate::common::tls::TlsOrigin;
use crate::common::*;

/// The proxy with its main listener on TLS, adjusted further by `adjust`.
async fn tls_proxy(pki: &TestPki, adjust: impl FnOnce(&mut proxy_server::config::Config)) -> Proxy {
    let files = TlsFiles {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
    };
    Proxy::start_with(|c| {
        c.listeners[0].tls = Some(files);
        adjust(c);
    })
    .await
}

/// curl through the HTTPS proxy at `proxy`; (exit code, body, stderr).
async fn via_https_proxy(
    pki: &TestPki,
    proxy: std::net::SocketAddr,
    extra: &[&str],
) -> (i32, Vec<u8>, String) {
    let proxy_url = format!("https://127.0.0.1:{}", proxy.port());
    let mut args = vec!["-x", &proxy_url, "--proxy-cacert", text(&pki.ca)];
    args.extend(extra);
    curl(&args).await
}

#[tokio::test]
async fn curl_through_an_https_proxy_reaches_http_and_https_origins_with_credentials() {
    let pki = TestPki::new();
    let users = users_file(&pki.files);
    let proxy = tls_proxy(&pki, |c| c.access.auth_file = Some(users)).await;
    let origin = Origin::fixed("over tls").await;
    let user = format!("{}:{}", CLEAR_USER.0, CLEAR_USER.1);
    let url = origin.url("/plain");
    let (code, body, err) = via_https_proxy(&pki, proxy.addr, &["--proxy-user", &user, &url]).await;
    assert_eq!((code, body.as_slice()), (0, &b"over tls"[..]), "{err}");
    assert_eq!(origin.requests()[0].target(), "/plain");

    // Without credentials: the 407 travels inside the TLS session.
    let (code, status, err) = via_https_proxy(
        &pki,
        proxy.addr,
        &["-o", "/dev/null", "-w", "%{http_code}", &url],
    )
    .await;
    assert_eq!((code, status.as_slice()), (0, &b"407"[..]), "{err}");

    // TLS inside the tunnel inside TLS: the tunnel copies instead of splicing.
    let blob = Arc::new(
        (0..300_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let tls_origin = TlsOrigin::start(blob.clone()).await;
    let origin_ca = pki.files.write("origin.pem", &tls_origin.cert_pem);
    let https_url = format!("https://localhost:{}/blob", tls_origin.addr.port());
    let (code, body, err) = via_https_proxy(
        &pki,
        proxy.addr,
        &[
            "--proxy-user",
            &user,
            "--cacert",
            text(&origin_ca),
            &https_url,
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        body == *blob,
        "the download through both TLS layers differs"
    );
    let stats = proxy.snapshot();
    assert_eq!(stats.tunnels_opened, 1);
    assert_eq!(stats.tls_handshakes_failed, 0);
}

#[tokio::test]
async fn silent_clients_time_out_and_plain_http_is_told_to_use_tls() {
    let pki = TestPki::new();
    let proxy = tls_proxy(&pki, |c| c.timeouts.header = Duration::from_secs(1)).await;

    // Connected, never a byte: closed at the header timeout, not held.
    let mut silent = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let started = std::time::Instant::now();
    let (rest, _) = read_until_end(&mut silent).await;
    assert!(rest.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held {:?}",
        started.elapsed()
    );

    // Half a handshake: the same.
    let mut partial = within(TcpStream::connect(proxy.addr)).await.unwrap();
    within(partial.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]))
        .await
        .unwrap();
    let (rest, _) = read_until_end(&mut partial).await;
    assert!(rest.is_empty(), "{rest:?}");

    // Plain HTTP on the TLS port: a readable 400, then the close.
    let origin = Origin::fixed("never").await;
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/"));
    let response = exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(
        status(&response),
        400,
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(
        body(&response).contains("speaks TLS"),
        "{}",
        body(&response)
    );
    assert_eq!(origin.request_count(), 0);

    // Garbage that claims to be TLS: a failed handshake, closed.
    let mut garbage = within(TcpStream::connect(proxy.addr)).await.unwrap();
    within(garbage.write_all(&[0x16; 64])).await.unwrap();
    let mut sink = Vec::new();
    let _ = within(garbage.read_to_end(&mut sink)).await;

    wait_until("three failed handshakes counted", STEP, || async {
        proxy.snapshot().tls_handshakes_failed >= 3
    })
    .await;
    assert!(proxy.snapshot().tls_handshakes_failed <= 4);

    // Healthy on a fresh connection.
    let healthy = Origin::fixed("healthy").await;
    let (code, out, err) = via_https_proxy(&pki, proxy.addr, &[&healthy.url("/")]).await;
    assert_eq!((code, out.as_slice()), (0, &b"healthy"[..]), "{err}");
}

#[tokio::test]
async fn the_binary_rereads_its_certificate_on_sighup() {
    let pki = TestPki::new();
    let flags = pki.flags();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(LOCAL);
    let proxy = ProxyProcess::start(&args).await;
    let origin = Origin::fixed("reloaded").await;
    let url = origin.url("/");
    let (code, _, err) = via_https_proxy(&pki, proxy.addr, &[&url]).await;
    assert_eq!(code, 0, "{err}");

    // A new pair (self-signed for localhost): the test CA no longer vouches for it.
    let (cert, key) = other_pair("localhost");
    let new_ca = pki.files.write("new-ca.pem", &cert);
    std::fs::write(&pki.cert, &cert).unwrap();
    std::fs::write(&pki.key, &key).unwrap();
    proxy.signal("HUP").await;
    proxy.stderr.wait_for("TLS certificate reloaded", 1).await;
    let (code, _, _) = via_https_proxy(&pki, proxy.addr, &[&url]).await;
    assert_ne!(code, 0, "the old CA still verifies the proxy");
    let by_name = format!("https://localhost:{}", proxy.addr.port());
    let new_trust = ["-x", &by_name, "--proxy-cacert", text(&new_ca), &url];
    let (code, out, err) = curl(&new_trust).await;
    assert_eq!((code, out.as_slice()), (0, &b"reloaded"[..]), "{err}");

    // A broken key: logged, and the pair in force stays.
    std::fs::write(&pki.key, "not a key").unwrap();
    proxy.signal("HUP").await;
    proxy.stderr.wait_for("TLS reload failed", 1).await;
    let (code, out, err) = curl(&new_trust).await;
    assert_eq!((code, out.as_slice()), (0, &b"reloaded"[..]), "{err}");
}
