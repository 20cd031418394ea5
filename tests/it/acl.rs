//! The ACL end to end: every rule kind and every bypass spelling refused with `403` for
//! plain HTTP and CONNECT before the origin is contacted, the safe default for local
//! targets, CONNECT ports and client allow lists.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::access::*;
use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// `host` is refused as a blocked destination for plain HTTP and for CONNECT.
async fn assert_blocked_both_ways(proxy: SocketAddr, host: &str) {
    assert_forbidden(&get(proxy, host, "").await, BLOCKED, host);
    assert_forbidden(&refused_connect(proxy, host, "", "").await, BLOCKED, host);
}

#[tokio::test]
async fn name_rules_refuse_before_any_lookup() {
    let files = Scratch::new("names");
    let rules = files.write(
        "rules.txt",
        "exact.test\n*.ads.test   # every subdomain, not the apex\n\
         0.0.0.0 tracker.test\n127.0.0.1 beacon.test pixel.test\n\
         127.0.0.1 localhost   # a hosts file's own name: skipped\n",
    );
    let proxy = Proxy::start_with(|c| c.access.blacklist = Some(rules)).await;
    let blocked = [
        "exact.test",
        "EXACT.Test.",
        "exact.test:8080",
        "x.ads.test",
        "a.b.c.ads.test",
        "X.ADS.TEST.:81",
        "tracker.test",
        "beacon.test",
        "pixel.test",
    ];
    for host in blocked {
        assert_forbidden(&get(proxy.addr, host, "").await, BLOCKED, host);
        let authority = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:443")
        };
        assert_forbidden(
            &refused_connect(proxy.addr, &authority, "", "").await,
            BLOCKED,
            host,
        );
    }
    // Not listed: these pass the name check and fail only at DNS.
    for host in [
        "ads.test",
        "notads.test",
        "xads.test",
        "sub.exact.test",
        "notexact.test",
        "tracker.test.example",
    ] {
        assert_unresolved(&get(proxy.addr, host, "").await, host);
        assert_unresolved(
            &refused_connect(proxy.addr, &format!("{host}:443"), "", "").await,
            host,
        );
    }
    // The hosts-file line naming localhost was skipped.
    let origin = Origin::fixed("local").await;
    let response = get(proxy.addr, &format!("localhost:{}", origin.addr.port()), "").await;
    assert!(
        response.ends_with(b"local"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn exact_name_rule_keeps_a_reachable_origin_uncontacted() {
    let files = Scratch::new("localhost-rule");
    let rules = files.write("rules.txt", "localhost\n");
    let proxy = Proxy::start_with(|c| c.access.blacklist = Some(rules)).await;
    let origin = Origin::fixed("reached").await;
    let port = origin.addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST.:{port}"),
        format!("LocalHost..:{port}"),
    ] {
        assert_blocked_both_ways(proxy.addr, &host).await;
    }
    assert_eq!(origin.connection_count(), 0);
    // The rule is about the name: the same origin by address is served.
    let response = get(proxy.addr, &origin.addr.to_string(), "").await;
    assert!(response.ends_with(b"reached"));
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn network_rules_v4_and_v6() {
    let files = Scratch::new("networks");
    let rules = files.write(
        "rules.txt",
        "127.0.0.2/31\n198.51.100.0/24\nfd00::/8\n::1/128 # IPv6 loopback\n",
    );
    let proxy = Proxy::start_with(|c| c.access.blacklist = Some(rules)).await;
    let origin = Origin::start_on("127.0.0.2:0", |_| ok("reached"))
        .await
        .expect("127.0.0.2 is on loopback");
    let port = origin.addr.port();
    for host in [
        format!("127.0.0.2:{port}"),
        format!("[::ffff:127.0.0.2]:{port}"),
        format!("127.0.0.3:{port}"),
    ] {
        assert_blocked_both_ways(proxy.addr, &host).await;
    }
    assert_eq!(origin.connection_count(), 0);
    // Addresses that would need a connection attempt to fail are refused at once.
    let started = Instant::now();
    for host in [
        "198.51.100.7",
        "198.51.100.255:8080",
        "[fd00::1]",
        "[FD12:3456::1]:8443",
    ] {
        assert_forbidden(&get(proxy.addr, host, "").await, BLOCKED, host);
        let authority = if host.ends_with(']') || !host.contains(':') {
            format!("{host}:443")
        } else {
            host.to_string()
        };
        assert_forbidden(
            &refused_connect(proxy.addr, &authority, "", "").await,
            BLOCKED,
            host,
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refusals waited on a connection"
    );
    if let Some(v6) =
        Origin::start_on_v6("IPv6 loopback refused by the rules", |_| ok("reached")).await
    {
        let host = v6.addr.to_string();
        assert_blocked_both_ways(proxy.addr, &host).await;
        assert_eq!(v6.connection_count(), 0);
    }
    // Outside the rules, 127.0.0.1 is served.
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn bypass_spellings_of_loopback_are_all_refused() {
    let files = Scratch::new("bypass");
    let rules = files.write("rules.txt", "127.0.0.0/8\n");
    // Local targets are allowed: only the rule stands between the client and loopback.
    let proxy = Proxy::start_with(|c| c.access.blacklist = Some(rules)).await;
    let origin = Origin::fixed("reached").await;
    let port = origin.addr.port();
    for spelling in [
        "localhost",
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "127.000.000.001",
        "[::ffff:127.0.0.1]",
        "[::FFFF:7f00:1]",
        "127.0.1",
        "0x7f.1",
        "0x7f000001",
        "017700000001",
        "LOCALHOST.",
        "127.0.0.1.",
    ] {
        let host = format!("{spelling}:{port}");
        // Absolute names (a trailing dot) are the same names (docs/resolver.md), and the
        // legacy IPv4 spellings are literals, as they were under getaddrinfo.
        for response in [
            get(proxy.addr, &host, "").await,
            refused_connect(proxy.addr, &host, "", "").await,
        ] {
            assert_forbidden(&response, BLOCKED, &host);
        }
    }
    assert_eq!(origin.connection_count(), 0);
    assert_healthy_over_v6(proxy.addr).await;
}

#[tokio::test]
async fn local_targets_are_refused_by_default() {
    let proxy = Proxy::start_with(|c| c.access.allow_local_targets = false).await;
    let origin = Origin::fixed("reached").await;
    let port = origin.addr.port();
    let started = Instant::now();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("0.0.0.0:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        "169.254.169.254:80".to_string(),
        "[fe80::1]:80".to_string(),
    ] {
        assert_forbidden(
            &get(proxy.addr, &host, "").await,
            "--allow-local-targets",
            &host,
        );
        assert_forbidden(
            &refused_connect(proxy.addr, &host, "", "").await,
            "--allow-local-targets",
            &host,
        );
    }
    // No connection was even attempted (the metadata address would hang or fail slowly).
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(origin.connection_count(), 0);
    // Every origin here is local, so a healthy proxy refuses a fresh one the same way.
    assert_forbidden(
        &get(proxy.addr, &origin.addr.to_string(), "").await,
        "--allow-local-targets",
        "again",
    );
}

#[tokio::test]
async fn connect_ports_default_to_443() {
    let echo = echo_origin().await;
    let origin = Origin::fixed("must not be reached").await;
    let proxy = Proxy::start_with(|c| {
        c.access.connect_ports = proxy_server::acl::DEFAULT_CONNECT_PORTS.parse().unwrap()
    })
    .await;
    let smuggled = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        origin.url("/smuggled")
    );
    let response = refused_connect(proxy.addr, &echo.to_string(), "", &smuggled).await;
    assert_forbidden(
        &response,
        &format!("CONNECT to port {} is not allowed", echo.port()),
        "echo",
    );
    assert!(body(&response).contains("--connect-ports"));
    for port in [25, 3306, 8443] {
        let response = refused_connect(proxy.addr, &format!("127.0.0.1:{port}"), "", "").await;
        assert_forbidden(&response, "--connect-ports", &port.to_string());
    }
    assert_eq!(origin.request_count(), 0);
    // 443 passes the port check (nothing listens there, hence 502, not 403).
    let closed = refused_connect(proxy.addr, "127.0.0.1:443", "", "").await;
    assert_eq!(status(&closed), 502, "{}", String::from_utf8_lossy(&closed));
    proxy.assert_healthy().await;

    let ranged =
        Proxy::start_with(|c| c.access.connect_ports = "443,1024-65535".parse().unwrap()).await;
    let mut tunnel = open_tunnel(ranged.addr, &echo.to_string(), "").await;
    assert_echoes(&mut tunnel, b"through a range").await;
    ranged.assert_healthy().await;
}

/// A connection to `proxy` from the loopback source address `source`.
async fn connect_from(source: &str, proxy: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    within(socket.connect(proxy)).await.unwrap()
}

#[tokio::test]
async fn allow_clients_limits_who_may_use_the_proxy() {
    let origin = Origin::fixed("served").await;
    let nets = |list: &str| {
        Some(
            list.split(',')
                .map(|n| proxy_server::acl::parse_client_net(n).unwrap())
                .collect(),
        )
    };
    let open = Proxy::start_with(|c| c.access.allow_clients = nets("10.0.0.0/8,127.0.0.1")).await;
    assert!(
        get(open.addr, &origin.addr.to_string(), "")
            .await
            .ends_with(b"served")
    );
    open.assert_healthy().await;

    let closed = Proxy::start_with(|c| c.access.allow_clients = nets("10.0.0.0/8,127.0.0.2")).await;
    let refused = "your address is not allowed to use this proxy";
    assert_forbidden(
        &get(closed.addr, &origin.addr.to_string(), "").await,
        refused,
        "GET",
    );
    let smuggled = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        origin.url("/smuggled")
    );
    let response = refused_connect(closed.addr, &origin.addr.to_string(), "", &smuggled).await;
    assert_forbidden(&response, refused, "CONNECT");
    assert_eq!(origin.request_count(), 1);
    // Health: a fresh connection from the allowed address is served.
    let mut allowed = connect_from("127.0.0.2", closed.addr).await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/")
    );
    allowed.write_all(request.as_bytes()).await.unwrap();
    assert!(read_to_close(&mut allowed).await.ends_with(b"served"));
}
