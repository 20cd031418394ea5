//! The resolver and the way out (docs/resolver.md), against a DNS server run in the test
//! (`common::dns`) with `--dns-server`: TTLs honoured (no query within one, a new one
//! after), negative answers cached, a server too slow giving a clear 502 while other
//! names resolve, concurrent lookups of one name as one query, a trailing dot, a hosts
//! file, Happy Eyeballs past a black-holed first address, `--outgoing-address`, and the
//! resolver's figures in `/metrics` and `/stats`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::common::dns::DnsServer;
use crate::common::observe::{Running, get, get_json};
use crate::common::*;

/// The binary with loopback targets allowed and `dns` as its only DNS server.
async fn proxy_with(dns: &DnsServer, args: &[&str]) -> ProxyProcess {
    let server = dns.arg();
    let mut all = LOCAL.to_vec();
    all.extend_from_slice(&["--dns-server", &server]);
    all.extend_from_slice(args);
    ProxyProcess::start(&all).await
}

/// An origin that closes after each response, so no pooled connection spares a lookup.
async fn closing_origin() -> Origin {
    Origin::start(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nhere".to_vec()
    })
    .await
}

/// `GET url` through `proxy` on a fresh connection.
async fn fetch(proxy: SocketAddr, url: &str) -> Vec<u8> {
    let request = format!("GET {url} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n");
    exchange(proxy, request.as_bytes()).await
}

#[tokio::test]
async fn answers_are_kept_for_their_ttl_and_asked_again_after() {
    let origin = closing_origin().await;
    let dns = DnsServer::start(60).await;
    dns.add("long.test", &["127.0.0.1"], 300);
    dns.add("short.test", &["127.0.0.1"], 1);
    let proxy = proxy_with(&dns, &[]).await;
    let port = origin.addr.port();
    for _ in 0..3 {
        let response = fetch(proxy.addr, &format!("http://long.test:{port}/")).await;
        assert_eq!(status(&response), 200);
    }
    assert_eq!(
        dns.lookups("long.test"),
        1,
        "within its TTL: no second query"
    );
    let url = format!("http://short.test:{port}/");
    assert_eq!(status(&fetch(proxy.addr, &url).await), 200);
    assert_eq!(dns.lookups("short.test"), 1);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(status(&fetch(proxy.addr, &url).await), 200);
    assert_eq!(dns.lookups("short.test"), 2, "after its TTL: asked again");
    assert_eq!(origin.request_count(), 5);
}

#[tokio::test]
async fn no_such_name_is_cached_briefly() {
    let origin = closing_origin().await;
    let dns = DnsServer::start(2).await;
    let proxy = proxy_with(&dns, &[]).await;
    let url = format!("http://later.test:{}/", origin.addr.port());
    for _ in 0..2 {
        let response = fetch(proxy.addr, &url).await;
        assert_eq!(status(&response), 502);
        assert_eq!(body(&response), "Bad gateway: cannot resolve later.test.\n");
    }
    assert_eq!(
        dns.lookups("later.test"),
        1,
        "the negative answer is cached"
    );
    // The name appears; the proxy learns of it once the negative answer expires.
    dns.add("later.test", &["127.0.0.1"], 60);
    assert_eq!(status(&fetch(proxy.addr, &url).await), 502, "still cached");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status(&fetch(proxy.addr, &url).await), 200);
    assert_eq!(dns.lookups("later.test"), 2);
}

#[tokio::test]
async fn a_server_too_slow_is_a_clear_502_and_other_names_still_resolve() {
    let origin = Origin::fixed("here").await;
    let dns = DnsServer::start(60).await;
    dns.add_slow("slow.test", &["127.0.0.1"], 60, Duration::from_secs(30));
    dns.add("quick.test", &["127.0.0.1"], 60);
    let proxy = proxy_with(&dns, &["--dns-timeout", "2"]).await;
    let port = origin.addr.port();
    let addr = proxy.addr;
    let slow = tokio::spawn(async move { fetch(addr, &format!("http://slow.test:{port}/")).await });
    let quick = fetch(proxy.addr, &format!("http://quick.test:{port}/")).await;
    assert_eq!(status(&quick), 200, "a slow name holds up no other");
    let slow = within(slow).await.unwrap();
    assert_eq!(status(&slow), 502);
    assert_eq!(
        body(&slow),
        "Bad gateway: cannot resolve slow.test: no answer from the DNS server in time.\n"
    );
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn concurrent_lookups_of_one_name_are_one_query() {
    let origin = closing_origin().await;
    let dns = DnsServer::start(60).await;
    // Slow enough that every request arrives while the first query is out.
    dns.add_slow("herd.test", &["127.0.0.1"], 60, Duration::from_millis(1500));
    let running =
        Running::start(&["--dns-server", &dns.arg(), "--metrics-addr", "127.0.0.1:0"]).await;
    let addr = running.proxy.addr;
    let url = format!("http://herd.test:{}/", origin.addr.port());
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { fetch(addr, &url).await })
        })
        .collect();
    for request in requests {
        assert_eq!(status(&within(request).await.unwrap()), 200);
    }
    assert_eq!(dns.lookups("herd.test"), 1, "eight requests, one query");
    let metrics = running.metrics.unwrap();
    let stats = get_json(metrics, "/stats").await;
    let figures = &stats["dns"];
    assert_eq!(figures["lookups"], 8, "{figures}");
    assert_eq!(
        figures["collapsed"].as_u64().unwrap() + figures["cache_hits"].as_u64().unwrap(),
        7,
        "{figures}"
    );
    assert_eq!(figures["query_durations"]["count"], 1, "{figures}");
    let (_, text) = get(metrics, "/metrics").await;
    let text = String::from_utf8(text).unwrap();
    for line in [
        "proxy_dns_lookups_total 8",
        "proxy_dns_failures_total 0",
        "proxy_dns_query_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn a_trailing_dot_is_the_same_name_for_dns_and_rules() {
    let origin = closing_origin().await;
    let dns = DnsServer::start(60).await;
    dns.add("dot.test", &["127.0.0.1"], 60);
    dns.add("blocked.test", &["127.0.0.1"], 60);
    let files = Scratch::new("resolver-dot");
    let blacklist = files.write("blacklist", "blocked.test\n");
    let proxy = proxy_with(&dns, &["--blacklist", blacklist.to_str().unwrap()]).await;
    let port = origin.addr.port();
    for name in ["dot.test.", "dot.test", "DOT.test."] {
        let response = fetch(proxy.addr, &format!("http://{name}:{port}/")).await;
        assert_eq!(status(&response), 200, "{name}");
    }
    assert_eq!(
        dns.lookups("dot.test"),
        1,
        "one cache entry for every spelling"
    );
    let response = fetch(proxy.addr, &format!("http://blocked.test.:{port}/")).await;
    assert_eq!(status(&response), 403);
    assert_eq!(origin.request_count(), 3);
}

#[tokio::test]
async fn localhost_with_a_trailing_dot_resolves_without_dns() {
    let origin = Origin::fixed("here").await;
    let proxy = ProxyProcess::start(&LOCAL).await;
    let port = origin.addr.port();
    for name in ["localhost", "localhost."] {
        let response = fetch(proxy.addr, &format!("http://{name}:{port}/")).await;
        assert_eq!(status(&response), 200, "{name}");
    }
}

#[tokio::test]
async fn a_hosts_file_answers_before_dns() {
    let origin = closing_origin().await;
    let dns = DnsServer::start(60).await;
    dns.add("both.test", &["192.0.2.1"], 60);
    let files = Scratch::new("resolver-hosts");
    let hosts = files.write(
        "hosts",
        "# a comment\n127.0.0.1 from-hosts.test alias.test\n127.0.0.1 both.test\n",
    );
    let proxy = proxy_with(&dns, &["--hosts-file", hosts.to_str().unwrap()]).await;
    let port = origin.addr.port();
    for name in ["from-hosts.test", "alias.test", "both.test"] {
        let response = fetch(proxy.addr, &format!("http://{name}:{port}/")).await;
        assert_eq!(status(&response), 200, "{name}");
    }
    assert_eq!(dns.lookups("from-hosts.test") + dns.lookups("both.test"), 0);
    assert_eq!(origin.request_count(), 3);
}

#[tokio::test]
async fn a_missing_hosts_file_stops_the_start() {
    let output = run_binary(&["--hosts-file", "/nonexistent/hosts", "--check-config"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/hosts"), "{stderr}");
}

/// A listener on `addr` that accepts nothing, its backlog full: further SYNs are dropped,
/// so a connection attempt to it hangs. The connections that fill it are returned (keep
/// them alive).
async fn black_hole(addr: SocketAddr) -> (tokio::net::TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(addr).unwrap();
    let listener = socket.listen(0).unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        let attempt = TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_millis(300), attempt).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(error)) => panic!("black hole refused: {error}"),
            Err(_) => return (listener, held), // this SYN was dropped: the hole is full
        }
    }
    panic!("the backlog never filled");
}

#[tokio::test]
async fn happy_eyeballs_passes_a_black_holed_first_address() {
    let origin = Origin::fixed("reached").await;
    let port = origin.addr.port();
    let hole = SocketAddr::from(([127, 0, 0, 2], port));
    let _hole = black_hole(hole).await;
    let dns = DnsServer::start(60).await;
    dns.add("eyeballs.test", &["127.0.0.2", "127.0.0.1"], 60);
    // Waiting out the connect timeout would take far longer than the step deadline.
    let proxy = proxy_with(&dns, &["--connect-timeout", "120"]).await;
    let response = fetch(proxy.addr, &format!("http://eyeballs.test:{port}/")).await;
    assert_eq!(status(&response), 200);
    assert_eq!(body(&response), "reached");
    // A tunnel takes the same way.
    let mut tunnel = open_tunnel(proxy.addr, &format!("eyeballs.test:{port}"), "").await;
    within(tokio::io::AsyncWriteExt::write_all(
        &mut tunnel,
        b"GET / HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n",
    ))
    .await
    .unwrap();
    assert_eq!(status(&read_response(&mut tunnel).await), 200);
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn the_outgoing_address_is_the_origins_peer() {
    let (origin, seen) = serve_once(|mut stream| async move {
        let peer = stream.peer_addr().unwrap();
        read_head(&mut stream).await;
        let reply = ok("bound");
        tokio::io::AsyncWriteExt::write_all(&mut stream, &reply)
            .await
            .unwrap();
        peer
    })
    .await;
    let files = Scratch::new("resolver-outgoing");
    let config = files.write("proxy.toml", "outgoing_address = \"127.0.0.3\"\n");
    let proxy = ProxyProcess::start(&[
        "--allow-local-targets",
        "--config",
        config.to_str().unwrap(),
    ])
    .await;
    let response = fetch(proxy.addr, &format!("http://{origin}/")).await;
    assert_eq!(status(&response), 200);
    let peer = within(seen).await.unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.3");
    // Only addresses of the outgoing address's family are tried.
    let other = ProxyProcess::start(&["--allow-local-targets", "--outgoing-address", "::1"]).await;
    let response = fetch(other.addr, &format!("http://{origin}/")).await;
    assert_eq!(status(&response), 502);
}

#[tokio::test]
async fn dns_servers_come_from_the_configuration_file() {
    let origin = closing_origin().await;
    let dns = DnsServer::start(60).await;
    dns.add("filed.test", &["127.0.0.1"], 60);
    let files = Scratch::new("resolver-file");
    let text = format!("dns_server = [\"{}\"]\ndns_timeout = 3\n", dns.arg());
    let config = files.write("proxy.toml", text);
    let mut all = LOCAL.to_vec();
    all.extend_from_slice(&["--config", config.to_str().unwrap()]);
    let proxy = ProxyProcess::start(&all).await;
    let url = format!("http://filed.test:{}/", origin.addr.port());
    assert_eq!(status(&fetch(proxy.addr, &url).await), 200);
    assert_eq!(dns.lookups("filed.test"), 1);
}
