//! Listeners from the configuration file's `[[listen]]` tables (the real binary): every
//! kind beside the command line's main listener in one process — TLS taking PROXY headers
//! from 127.0.0.2, SOCKS5 taking them from 127.0.0.3, plain HTTP taking them from
//! 127.0.0.1 — with paths relative to the file, reached by curl (`--proxy https://` with
//! `--proxy-cacert`, `socks5h://`, `--haproxy-protocol`) and by hand-written headers; the
//! certificate and the PAC file re-read on SIGHUP, a changed listener set logged as
//! needing a restart; and bad tables stopping `--check-config` with `file:line` and 2.

use tokio::io::AsyncWriteExt;

use crate::common::listeners::{
    TestPki, announced, connect_from, other_pair, proxy_v2, socks_greet, socks_request,
};
use crate::common::*;
use crate::listen_all::get_behind_balancer;

/// Every listener kind; paths relative to the file, which sits beside the PKI's files.
const LISTENERS: &str = r#"
pac_file = "proxy.pac"

[[listen]]
addr = "127.0.0.1:0"
tls_cert = "proxy.pem"
tls_key = "proxy.key"
proxy_protocol_from = ["127.0.0.2/32"]

[[listen]]
addr = "127.0.0.1:0"
protocol = "socks5"
proxy_protocol_from = ["127.0.0.3"]

[[listen]]
addr = "127.0.0.1:0"
proxy_protocol_from = ["127.0.0.1/32"]
"#;

/// A GET over SOCKS5 from 127.0.0.3, behind a PROXY v2 header naming `client`.
async fn socks_behind_balancer(
    socks: std::net::SocketAddr,
    client: &str,
    origin: std::net::SocketAddr,
    path: &str,
) -> Vec<u8> {
    let mut stream = connect_from("127.0.0.3".parse().unwrap(), socks).await;
    let header = proxy_v2(client.parse().unwrap(), socks);
    within(stream.write_all(&header)).await.unwrap();
    assert_eq!(socks_greet(&mut stream, &[0]).await, 0);
    let std::net::SocketAddr::V4(target) = origin else {
        panic!("IPv4 origin");
    };
    let mut request = vec![5, 1, 0, 1];
    request.extend(target.ip().octets());
    request.extend(target.port().to_be_bytes());
    assert_eq!(socks_request(&mut stream, &request).await, 0);
    let get = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    within(stream.write_all(get.as_bytes())).await.unwrap();
    read_response(&mut stream).await
}

#[tokio::test]
async fn every_listener_kind_from_the_file_in_one_process() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let pki = TestPki::new();
    pki.files.write(
        "proxy.pac",
        "function FindProxyForURL(u, h) { return \"DIRECT\"; }",
    );
    let config = pki.files.write("proxy.toml", LISTENERS);
    let mut args = vec!["--config", text(&config)];
    args.extend(LOCAL);
    let mut proxy = ProxyProcess::start(&args).await;
    let tls = announced(&proxy.stderr, "https").await;
    let socks = announced(&proxy.stderr, "socks5").await;
    let balanced = announced(&proxy.stderr, "http").await;
    let origin = Origin::fixed("from the file").await;
    let expected = (0, &b"from the file"[..]);

    let https_proxy = format!("https://localhost:{}", tls.port());
    let via_tls = |ca: &str, path: &str| {
        let args = ["-x", &https_proxy, "--proxy-cacert", ca, &origin.url(path)];
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move { curl(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let (code, out, err) = via_tls(text(&pki.ca), "/tls").await;
    assert_eq!((code, out.as_slice()), expected, "{err}");
    let socks_url = format!("socks5h://{socks}");
    let (code, out, err) = curl(&["-x", &socks_url, &origin.url("/socks")]).await;
    assert_eq!((code, out.as_slice()), expected, "{err}");
    let plain = format!("http://{balanced}");
    let haproxy = ["--haproxy-protocol", "-x", &plain, &origin.url("/haproxy")];
    let (code, out, err) = curl(&haproxy).await;
    assert_eq!((code, out.as_slice()), expected, "{err}");
    // The same listener refuses a client that sends no header (it is a listed source).
    let (code, _, _) = curl(&["-x", &plain, &origin.url("/no-header")]).await;
    assert_ne!(code, 0, "a listed source without a PROXY header was served");
    // The main listener (flags) is plain HTTP and takes no header.
    let main = format!("http://{}", proxy.addr);
    let (code, out, err) = curl(&["-x", &main, &origin.url("/main")]).await;
    assert_eq!((code, out.as_slice()), expected, "{err}");

    let response = get_behind_balancer(&pki, tls, "198.51.100.20", &origin.url("/tls-pp")).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );
    let response =
        socks_behind_balancer(socks, "198.51.100.30:4000", origin.addr, "/socks-pp").await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );

    let pac_url = format!("http://{}/proxy.pac", proxy.addr);
    let (code, out, err) = curl(&[&pac_url]).await;
    assert_eq!(
        (code, out.as_slice()),
        (
            0,
            &b"function FindProxyForURL(u, h) { return \"DIRECT\"; }"[..]
        ),
        "{err}"
    );

    // SIGHUP: a new pair, a new PAC file, one more listener (which needs a restart).
    let (cert, key) = other_pair("localhost");
    let new_ca = pki.files.write("new-ca.pem", &cert);
    std::fs::write(&pki.cert, &cert).unwrap();
    std::fs::write(&pki.key, &key).unwrap();
    pki.files.write("proxy.pac", "// second");
    let more = format!("{LISTENERS}\n[[listen]]\naddr = \"127.0.0.1:0\"\nprotocol = \"socks5\"\n");
    std::fs::write(&config, more).unwrap();
    proxy.signal("HUP").await;
    proxy.stderr.wait_for("TLS certificate reloaded", 1).await;
    proxy.stderr.wait_for("PAC file reloaded", 1).await;
    proxy
        .stderr
        .wait_for("takes effect after a restart", 1)
        .await;
    assert!(
        proxy.stderr.text().contains("listen addresses"),
        "{}",
        proxy.stderr.text()
    );
    let (code, out, err) = via_tls(text(&new_ca), "/reloaded").await;
    assert_eq!((code, out.as_slice()), expected, "{err}");
    let (code, out, err) = curl(&[&pac_url]).await;
    assert_eq!((code, out.as_slice()), (0, &b"// second"[..]), "{err}");

    // A broken key and a missing PAC file: both logged, both keep what is in force.
    std::fs::write(&pki.key, "not a key").unwrap();
    std::fs::remove_file(pki.files.path("proxy.pac")).unwrap();
    proxy.signal("HUP").await;
    proxy.stderr.wait_for("TLS reload failed", 1).await;
    proxy.stderr.wait_for("PAC file reload failed", 1).await;
    let (code, out, err) = via_tls(text(&new_ca), "/kept").await;
    assert_eq!((code, out.as_slice()), expected, "{err}");
    let (code, out, err) = curl(&[&pac_url]).await;
    assert_eq!((code, out.as_slice()), (0, &b"// second"[..]), "{err}");

    assert_eq!(proxy.stop().await, Some(0));
    let log = proxy.access_log();
    let client_of = |needle: &str| {
        let line = log
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {log:#?}"));
        line.split_whitespace().nth(2).unwrap().to_string()
    };
    assert_eq!(client_of("/tls-pp"), "198.51.100.20");
    assert_eq!(client_of(" SOCKS5 "), "127.0.0.1", "curl's socks5h session");
    let socks_lines: Vec<_> = log.iter().filter(|l| l.contains(" SOCKS5 ")).collect();
    assert!(
        socks_lines
            .iter()
            .any(|l| l.split_whitespace().nth(2) == Some("198.51.100.30")),
        "{socks_lines:#?}"
    );
    assert_eq!(client_of("/haproxy"), "127.0.0.1");
    assert!(!log.iter().any(|l| l.contains("/no-header")), "{log:#?}");
}

#[tokio::test]
async fn check_config_validates_listen_tables() {
    let pki = TestPki::new();
    let good = pki.files.write(
        "good.toml",
        LISTENERS.replace("pac_file = \"proxy.pac\"", ""),
    );
    let out = run_binary(&["--config", text(&good), "--check-config"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = pki.files.write(
        "bad.toml",
        "[[listen]]\naddr = \"127.0.0.1:1\"\nprotocol = \"socks4\"\n\n\
         [[listen]]\naddr = \"127.0.0.1:2\"\nprotocol = \"socks5\"\n\
         tls_cert = \"proxy.pem\"\ntls_key = \"proxy.key\"\n",
    );
    let out = run_binary(&["--config", text(&bad), "--check-config"]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = text(&bad);
    assert!(
        stderr.contains(&format!("{file}:3: `protocol` must be")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:5: 127.0.0.1:2: TLS is only")),
        "{stderr}"
    );

    // The pair is loaded: a key that does not exist stops the check.
    let missing = pki.files.write(
        "missing.toml",
        "[[listen]]\naddr = \"127.0.0.1:0\"\ntls_cert = \"proxy.pem\"\ntls_key = \"nokey.pem\"\n",
    );
    let out = run_binary(&["--config", text(&missing), "--check-config"]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nokey.pem") && stderr.contains("private key"),
        "{stderr}"
    );

    // The main listener's address (flags) is not free for a table.
    let taken = pki.files.write(
        "taken.toml",
        "port = 3999\n[[listen]]\naddr = \"127.0.0.1:3999\"\n",
    );
    let out = run_binary(&["--config", text(&taken), "--check-config"]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:2: 127.0.0.1:3999: two listeners",
            text(&taken)
        )),
        "{stderr}"
    );
}
