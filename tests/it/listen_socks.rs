//! The SOCKS5 listener: curl with `socks5://` (addresses) and `socks5h://` (names the
//! proxy resolves), with and without a users file; wrong passwords, names and resolved
//! addresses the rules refuse, the CONNECT-port rule, commands other than CONNECT, IPv6
//! address types and malformed greetings, each followed by a healthy session on a fresh
//! connection.

use std::net::SocketAddr;

use proxy_server::config::{Config, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::access::{CLEAR_USER, users_file};
use crate::common::listeners::{socks_connect_name, socks_greet, socks_request};
use crate::common::*;

/// The proxy with a SOCKS5 listener beside the HTTP one; its address second.
async fn socks_proxy(adjust: impl FnOnce(&mut Config)) -> (Proxy, SocketAddr) {
    let proxy = Proxy::start_with(|c| {
        c.listeners
            .push(Listener::socks5("127.0.0.1:0".parse().unwrap()));
        adjust(c);
    })
    .await;
    let socks = proxy.addrs[1];
    (proxy, socks)
}

/// Waits until the proxy's statistics satisfy `check` (sessions are recorded as their
/// connections close, a moment after the client has its answer).
async fn counted(
    proxy: &Proxy,
    what: &str,
    check: impl Fn(&proxy_server::stats::Snapshot) -> bool,
) {
    wait_until(what, STEP, || {
        let done = check(&proxy.snapshot());
        async move { done }
    })
    .await;
}

/// curl through the SOCKS proxy URL `proxy` to `url`; (exit code, body, stderr).
async fn via_socks(proxy: &str, url: &str) -> (i32, Vec<u8>, String) {
    curl(&["-x", proxy, url]).await
}

/// A session through `socks` to a fresh origin works: the proxy is healthy.
async fn assert_socks_healthy(socks: &str) {
    let origin = Origin::fixed("healthy").await;
    let (code, out, err) = via_socks(socks, &origin.url("/health")).await;
    assert_eq!((code, out.as_slice()), (0, &b"healthy"[..]), "{err}");
}

#[tokio::test]
async fn curl_without_authentication_by_address_and_by_name() {
    let (proxy, socks) = socks_proxy(|_| {}).await;
    let origin = Origin::fixed("through socks").await;
    let by_address = format!("socks5://{socks}");
    let (code, out, err) = via_socks(&by_address, &origin.url("/a")).await;
    assert_eq!((code, out.as_slice()), (0, &b"through socks"[..]), "{err}");
    let by_name = format!("socks5h://{socks}");
    let url = format!("http://localhost:{}/b", origin.addr.port());
    let (code, out, err) = via_socks(&by_name, &url).await;
    assert_eq!((code, out.as_slice()), (0, &b"through socks"[..]), "{err}");
    let targets: Vec<String> = origin.requests().iter().map(|r| r.target()).collect();
    assert_eq!(targets, ["/a", "/b"]);
    assert_eq!(proxy.snapshot().tunnels_opened, 2);
    counted(&proxy, "two tunnels", |s| s.requests.tunnel == 2).await;

    // The SOCKS listener is this proxy too: a tunnel to it from the HTTP side is a loop.
    let loop_request = format!("CONNECT {socks} HTTP/1.1\r\nHost: {socks}\r\n\r\n");
    let response = exchange(proxy.addr, loop_request.as_bytes()).await;
    assert_eq!(
        status(&response),
        508,
        "{}",
        String::from_utf8_lossy(&response)
    );
}

#[tokio::test]
async fn usernames_and_passwords_come_from_the_users_file() {
    let files = Scratch::new("socks-users");
    let users = users_file(&files);
    let (proxy, socks) = socks_proxy(|c| c.access.auth_file = Some(users)).await;
    let origin = Origin::fixed("authenticated").await;
    // `clear:pass#1`, percent-encoded for the URL.
    let good = format!("socks5h://{}:clear%3Apass%231@{socks}", CLEAR_USER.0);
    let (code, out, err) = via_socks(&good, &origin.url("/")).await;
    assert_eq!((code, out.as_slice()), (0, &b"authenticated"[..]), "{err}");

    let wrong = format!("socks5h://{}:guess@{socks}", CLEAR_USER.0);
    let (code, _, _) = via_socks(&wrong, &origin.url("/")).await;
    assert_ne!(code, 0, "a wrong password got through");

    // With a users file, no authentication is not on offer.
    let mut stream = within(TcpStream::connect(socks)).await.unwrap();
    assert_eq!(socks_greet(&mut stream, &[0]).await, 0xff);
    let mut rest = Vec::new();
    let _ = within(stream.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());

    assert_eq!(origin.request_count(), 1);
    counted(&proxy, "two failed logins", |s| s.requests.auth_failed == 2).await;
    assert_socks_healthy(&good).await;
}

#[tokio::test]
async fn names_and_resolved_addresses_are_checked_by_the_same_rules() {
    let files = Scratch::new("socks-rules");
    // `localhost` passes the name rules, but every address it resolves to is refused.
    let rules = files.write("rules.txt", "blocked.example\n127.0.0.1/32\n::1\n");
    let (proxy, socks) = socks_proxy(|c| c.access.blacklist = Some(rules)).await;
    // Linux routes all of 127.0.0.0/8 to loopback: 127.0.0.2 binds without setup.
    let origin = Origin::start_on("127.0.0.2:0", |_| ok("allowed"))
        .await
        .expect("127.0.0.2 is on loopback");
    let mut stream = within(TcpStream::connect(socks)).await.unwrap();
    assert_eq!(socks_greet(&mut stream, &[0]).await, 0);
    assert_eq!(
        socks_connect_name(&mut stream, "blocked.example", 80).await,
        2
    );

    let mut stream = within(TcpStream::connect(socks)).await.unwrap();
    socks_greet(&mut stream, &[0]).await;
    let port = origin.addr.port();
    assert_eq!(socks_connect_name(&mut stream, "localhost", port).await, 2);

    let by_name = format!("socks5h://{socks}");
    let (code, _, _) = via_socks(&by_name, &format!("http://localhost:{port}/")).await;
    assert_ne!(code, 0);
    assert_eq!(origin.request_count(), 0);
    counted(&proxy, "three refusals", |s| s.requests.blocked == 3).await;
    assert_socks_healthy_at(&by_name, &origin).await;
}

/// As [`assert_socks_healthy`], to an origin that the rules allow.
async fn assert_socks_healthy_at(socks: &str, origin: &Origin) {
    let (code, out, err) = via_socks(socks, &origin.url("/health")).await;
    assert_eq!((code, out.as_slice()), (0, &b"allowed"[..]), "{err}");
}

#[tokio::test]
async fn the_connect_port_rule_other_commands_and_malformed_greetings() {
    let origin = Origin::fixed("unreached").await;
    let port = origin.addr.port();
    // Every port but the origin's.
    let ports = format!("1-{},{}-65535", port - 1, port + 1);
    let (proxy, socks) = socks_proxy(|c| c.access.connect_ports = ports.parse().unwrap()).await;
    let mut stream = within(TcpStream::connect(socks)).await.unwrap();
    socks_greet(&mut stream, &[0]).await;
    assert_eq!(
        socks_connect_name(&mut stream, "127.0.0.1", port).await,
        2,
        "port {port}"
    );

    // BIND and UDP ASSOCIATE: "command not supported".
    for command in [2u8, 3] {
        let mut stream = within(TcpStream::connect(socks)).await.unwrap();
        socks_greet(&mut stream, &[0]).await;
        let request = [5, command, 0, 1, 127, 0, 0, 1, 0, 80];
        assert_eq!(socks_request(&mut stream, &request).await, 7);
    }

    // An IPv6 address type is read (whether ::1 answers on port 1 or not).
    let mut stream = within(TcpStream::connect(socks)).await.unwrap();
    socks_greet(&mut stream, &[0]).await;
    let mut request = vec![5, 1, 0, 4];
    request.extend(std::net::Ipv6Addr::LOCALHOST.octets());
    request.extend(443u16.to_be_bytes());
    let code = socks_request(&mut stream, &request).await;
    assert!(matches!(code, 3..=5), "reply {code}");

    // Malformed: an HTTP request, SOCKS4, a greeting with no methods; each closed.
    for bytes in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[4, 1, 0, 80, 127, 0, 0, 1, 0],
        &[5, 0],
    ] {
        let (out, _) = {
            let mut stream = within(TcpStream::connect(socks)).await.unwrap();
            within(stream.write_all(bytes)).await.unwrap();
            read_until_end(&mut stream).await
        };
        assert!(out.is_empty(), "{bytes:?} got {out:?}");
    }
    assert_eq!(origin.request_count(), 0);
    counted(&proxy, "one refusal, five malformed", |s| {
        s.requests.blocked == 1 && s.requests.malformed == 3 + 2
    })
    .await;
    assert_socks_healthy(&format!("socks5://{socks}")).await;
}
