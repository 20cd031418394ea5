//! Every kind of listener in one process (the real binary): the main listener on TLS with
//! PROXY-protocol from 127.0.0.2, a SOCKS5 listener beside it, the PAC file. One connection
//! count, one access log: SOCKS sessions are logged as `SOCKS5`, the address a PROXY
//! header carried stands for its client.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::common::listeners::{TestPki, announced, connect_from};
use crate::common::*;

/// A GET through the TLS listener from 127.0.0.2, behind a PROXY v1 header naming
/// `client`; the response.
pub async fn get_behind_balancer(
    pki: &TestPki,
    proxy: std::net::SocketAddr,
    client: &str,
    url: &str,
) -> Vec<u8> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&pki.ca).unwrap())
        .unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut stream = connect_from("127.0.0.2".parse().unwrap(), proxy).await;
    let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 {}\r\n", proxy.port());
    within(stream.write_all(header.as_bytes())).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = within(TlsConnector::from(Arc::new(config)).connect(name, stream))
        .await
        .unwrap();
    let request = format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    within(tls.write_all(request.as_bytes())).await.unwrap();
    let mut response = Vec::new();
    let _ = within(tls.read_to_end(&mut response)).await;
    response
}

#[tokio::test]
async fn tls_socks_proxy_protocol_and_pac_in_one_process() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let pki = TestPki::new();
    let flags = pki.flags();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(LOCAL);
    args.extend([
        "--socks",
        "127.0.0.1:0",
        "--proxy-protocol-from",
        "127.0.0.2/32",
    ]);
    let mut proxy = ProxyProcess::start(&args).await;
    let socks = announced(&proxy.stderr, "socks5").await;
    let origin = Origin::fixed("everywhere").await;

    let https_proxy = format!("https://localhost:{}", proxy.addr.port());
    let via_tls = ["-x", &https_proxy, "--proxy-cacert", text(&pki.ca)];
    let (code, out, err) = curl(&[&via_tls[..], &[&origin.url("/tls")]].concat()).await;
    assert_eq!((code, out.as_slice()), (0, &b"everywhere"[..]), "{err}");

    let (code, out, err) =
        curl(&["-x", &format!("socks5h://{socks}"), &origin.url("/socks")]).await;
    assert_eq!((code, out.as_slice()), (0, &b"everywhere"[..]), "{err}");

    let response =
        get_behind_balancer(&pki, proxy.addr, "198.51.100.20", &origin.url("/balanced")).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );

    let pac_url = format!("https://localhost:{}/proxy.pac", proxy.addr.port());
    let (code, out, err) = curl(&["--cacert", text(&pki.ca), &pac_url]).await;
    assert_eq!(code, 0, "{err}");
    let pac = String::from_utf8_lossy(&out);
    assert!(
        pac.contains(&format!("HTTPS localhost:{}", proxy.addr.port())),
        "{pac}"
    );

    assert_eq!(proxy.stop().await, Some(0));
    let log = proxy.access_log();
    let line = |needle: &str| {
        log.iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {log:#?}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let socks_line = line(" SOCKS5 ");
    assert_eq!(socks_line[6], origin.addr.to_string(), "{socks_line:?}");
    assert!(socks_line[3].ends_with("/200"), "{socks_line:?}");
    assert_eq!(line("/balanced")[2], "198.51.100.20");
    assert_eq!(line("/tls")[2], "127.0.0.1");
    assert!(
        log.iter().any(|l| l.contains(" GET /proxy.pac ")),
        "{log:#?}"
    );
}

#[tokio::test]
async fn bad_listener_settings_stop_the_start_with_code_2() {
    let files = Scratch::new("bad-listeners");
    let missing = files.path("missing.pem");
    let not_a_key = files.write("key.pem", "not a key");
    let out = run_binary(&[
        "--tls-cert",
        text(&missing),
        "--tls-key",
        text(&not_a_key),
        "--port",
        "0",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing.pem") && stderr.contains("key.pem"),
        "{stderr}"
    );

    // A port held here, so the binary could not take it anyway (that would exit with 1).
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let same = format!("127.0.0.1:{port}");
    let out = run_binary(&["--port", &port, "--socks", &same]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("two listeners on one address"));

    let out = run_binary(&["--pac-file", text(&files.path("none.pac")), "--port", "0"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read PAC file"));
}
