//! The server name a tunnel's TLS ClientHello asks for (SNI), with real TLS clients
//! (rustls, curl) through the real proxy: recorded in the log, a name other than the
//! CONNECT host refused before a byte reaches the target (domain fronting), an address
//! CONNECT checked by the name's rules, `--sni-check off`, SOCKS5 alike, and a target
//! that speaks first not kept waiting for a hello that never comes.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::common::observe::{Running, Squid, get};
use crate::common::raw::RawOrigin;
use crate::common::tls::TlsOrigin;
use crate::common::*;

/// A TLS client that trusts `origin`'s certificate.
fn connector(origin: &TlsOrigin) -> TlsConnector {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let mut roots = RootCertStore::empty();
    let der = rustls_pemfile_cert(&origin.cert_pem);
    roots.add(der).unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

fn rustls_pemfile_cert(pem: &str) -> tokio_rustls::rustls::pki_types::CertificateDer<'static> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// Opens a CONNECT tunnel to `target` and returns the stream after the proxy's yes.
async fn tunnel(proxy: std::net::SocketAddr, target: &str) -> TcpStream {
    let mut stream = within(TcpStream::connect(proxy)).await.unwrap();
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = within(read_head(&mut stream)).await;
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A TLS handshake over `stream` asking for `name`, then one request; the response
/// read whole (the origin answers with a Content-Length).
async fn https_get(connector: &TlsConnector, stream: TcpStream, name: &str) -> Option<Vec<u8>> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut tls = within(connector.connect(name, stream)).await.ok()?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 4096];
    for _ in 0..64 {
        let n = within(tls.read(&mut chunk)).await.ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && let Some(length) = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
            && body.len() >= length
        {
            return Some(got);
        }
    }
    (!got.is_empty()).then_some(got)
}

/// The `count`th access-log line is a tunnel refused for its ClientHello's `name`.
async fn assert_refused_for(proxy: &ProxyProcess, count: usize, name: &str) {
    wait_lines(proxy, count).await;
    let line = last_line(proxy);
    assert_eq!(
        (line.result.as_str(), line.sni.as_str()),
        ("TCP_DENIED/403", name),
        "{line:?}"
    );
}

fn last_line(proxy: &ProxyProcess) -> Squid {
    let lines = proxy.access_log();
    Squid::parse(lines.last().expect("an access-log line"))
}

async fn wait_lines(proxy: &ProxyProcess, count: usize) {
    wait_until("the access-log lines", STEP, || async {
        proxy.access_log().len() >= count
    })
    .await;
}

#[tokio::test]
async fn a_hello_for_another_name_is_refused_before_the_target_hears_a_byte() {
    let origin = RawOrigin::start().await;
    let running = Running::start(&["--metrics-addr", "127.0.0.1:0"]).await;
    let proxy = &running.proxy;
    let tls = TlsOrigin::start(Arc::new(b"secret".to_vec())).await;
    let connector = connector(&tls);
    // The rules see localhost; the TLS session asks for another name.
    let target = format!("localhost:{}", origin.addr.port());
    let stream = tunnel(proxy.addr, &target).await;
    assert!(
        https_get(&connector, stream, "fronted.example")
            .await
            .is_none()
    );
    assert_refused_for(proxy, 1, "fronted.example").await;
    assert_eq!(last_line(proxy).url, target, "both names in the line");
    assert!(
        origin.wait_all_closed(STEP).await,
        "the target connection is closed"
    );
    assert!(
        origin.connections().iter().all(|c| c.bytes.is_empty()),
        "the target heard nothing"
    );
    // The same name as the CONNECT host goes through, and is recorded.
    let target = format!("localhost:{}", tls.addr.port());
    let stream = tunnel(proxy.addr, &target).await;
    let body = https_get(&connector, stream, "localhost")
        .await
        .expect("served");
    assert!(body.ends_with(b"secret"));
    wait_lines(proxy, 2).await;
    let line = last_line(proxy);
    assert!(line.result.starts_with("TCP_TUNNEL/200"), "{line:?}");
    assert_eq!(line.sni, "localhost");
    let (_, metrics) = get(running.metrics.expect("metrics address"), "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("proxy_sni_refused_total 1"), "{metrics}");
}

#[tokio::test]
async fn an_address_connect_meets_the_rules_by_its_name() {
    let files = Scratch::new("sni-rules");
    let blacklist = files.write("blocked.txt", "blocked.example\n");
    let mut args = LOCAL.to_vec();
    args.extend(["--blacklist", text(&blacklist)]);
    let proxy = ProxyProcess::start(&args).await;
    let tls = TlsOrigin::start(Arc::new(b"by address".to_vec())).await;
    let connector = connector(&tls);
    let target = tls.addr.to_string();
    let stream = tunnel(proxy.addr, &target).await;
    assert!(
        https_get(&connector, stream, "blocked.example")
            .await
            .is_none()
    );
    assert_refused_for(&proxy, 1, "blocked.example").await;
    // A name the rules allow, at the address the tunnel was opened to.
    let stream = tunnel(proxy.addr, &target).await;
    let body = https_get(&connector, stream, "localhost")
        .await
        .expect("served");
    assert!(body.ends_with(b"by address"));
}

#[tokio::test]
async fn sni_check_off_only_records_the_name_and_json_shows_it() {
    let mut args = LOCAL.to_vec();
    args.extend(["--sni-check", "off", "--log-format", "json"]);
    let proxy = ProxyProcess::start(&args).await;
    let tls = TlsOrigin::start(Arc::new(b"fronted".to_vec())).await;
    let connector = connector(&tls);
    let stream = tunnel(proxy.addr, &format!("127.0.0.1:{}", tls.addr.port())).await;
    // The certificate names localhost; the name asked for differs from the CONNECT
    // target, and with the check off the tunnel carries it.
    let body = https_get(&connector, stream, "localhost")
        .await
        .expect("served");
    assert!(body.ends_with(b"fronted"));
    wait_lines(&proxy, 1).await;
    let lines = proxy.access_log();
    let json: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(json["sni"], "localhost", "{json}");
    assert_eq!(json["squid_code"], "TCP_TUNNEL", "{json}");
    assert!(json["alpn"].is_null(), "no ALPN offered: {json}");
}

#[tokio::test]
async fn socks5_tunnels_are_checked_alike() {
    let origin = RawOrigin::start().await;
    let mut args = LOCAL.to_vec();
    args.extend(["--socks", "127.0.0.1:0"]);
    let proxy = ProxyProcess::start(&args).await;
    let socks = proxy.listener("socks5").await;
    let tls = TlsOrigin::start(Arc::new(Vec::new())).await;
    let mut stream = within(TcpStream::connect(socks)).await.unwrap();
    stream.write_all(&[5, 1, 0]).await.unwrap();
    let mut choice = [0u8; 2];
    within(stream.read_exact(&mut choice)).await.unwrap();
    let host = b"localhost";
    let mut request = vec![5, 1, 0, 3, host.len() as u8];
    request.extend(host);
    request.extend(origin.addr.port().to_be_bytes());
    stream.write_all(&request).await.unwrap();
    let mut reply = [0u8; 10];
    within(stream.read_exact(&mut reply)).await.unwrap();
    assert_eq!(reply[1], 0, "SOCKS5 succeeded");
    assert!(
        https_get(&connector(&tls), stream, "fronted.example")
            .await
            .is_none()
    );
    assert_refused_for(&proxy, 1, "fronted.example").await;
    assert!(origin.connections().iter().all(|c| c.bytes.is_empty()));
}

#[tokio::test]
async fn a_target_that_speaks_first_is_not_kept_waiting() {
    // An SSH-like server greets first; the client says nothing until it has the banner.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"SSH-2.0-test\r\n").await;
            let mut echo = [0u8; 64];
            if let Ok(n) = stream.read(&mut echo).await {
                let _ = stream.write_all(&echo[..n]).await;
            }
        }
    });
    // A header timeout far past the step deadline: waiting for a hello would fail here.
    let mut args = LOCAL.to_vec();
    args.extend(["--header-timeout", "120"]);
    let proxy = ProxyProcess::start(&args).await;
    let mut stream = tunnel(proxy.addr, &addr.to_string()).await;
    let mut banner = [0u8; 14];
    within(stream.read_exact(&mut banner)).await.unwrap();
    assert_eq!(&banner, b"SSH-2.0-test\r\n");
    stream.write_all(b"hello").await.unwrap();
    let mut echo = [0u8; 5];
    within(stream.read_exact(&mut echo)).await.unwrap();
    assert_eq!(&echo, b"hello");
    drop(stream);
    // A fresh connection is served as usual.
    let origin = Origin::fixed("healthy").await;
    let response = crate::common::access::get(proxy.addr, &origin.addr.to_string(), "").await;
    assert!(response.ends_with(b"healthy"));
}

/// A hello sent in part and then stalled is not let through unchecked when the wait for
/// the rest ends: the tunnel is refused and the target hears nothing.
#[tokio::test]
async fn a_stalled_hello_is_refused_not_waved_through() {
    let origin = RawOrigin::start().await;
    let mut args = LOCAL.to_vec();
    args.extend(["--header-timeout", "1"]);
    let proxy = ProxyProcess::start(&args).await;
    let mut stream = tunnel(proxy.addr, &format!("localhost:{}", origin.addr.port())).await;
    // A handshake record header promising 512 bytes, and only the first few of them.
    stream
        .write_all(&[22, 3, 1, 2, 0, 1, 0, 1, 252])
        .await
        .unwrap();
    assert!(read_to_close(&mut stream).await.is_empty());
    assert_refused_for(&proxy, 1, "-").await;
    assert!(origin.connections().iter().all(|c| c.bytes.is_empty()));
}
