//! Issue #29's address hardening, end to end against the real binary: every spelling of
//! "this host" with one of the proxy's ports is a loop (508) — the unspecified addresses,
//! IPv4-mapped and NAT64 (`64:ff9b::/96`) forms, names resolving to them, and the metrics
//! listener's port —; NAT64 addresses embedding a local IPv4 address are local targets
//! (403); a PROXY v2 header for a datagram (UDP) connection is refused; a reload that
//! empties the blacklist warns; and a DNS server that never answers holds a bounded
//! number of descriptors. Each test ends with a normal request on a fresh connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use crate::common::access::*;
use crate::common::dns::DnsServer;
use crate::common::listeners::{connect_from, proxy_v2};
use crate::common::observe::Running;
use crate::common::*;

/// The status of a CONNECT to `authority`, read from the answer's head alone (a tunnel
/// the proxy wrongly opened would otherwise keep the connection open).
async fn connect_status(proxy: SocketAddr, authority: &str) -> u16 {
    let mut stream = within(TcpStream::connect(proxy)).await.unwrap();
    let request = connect_request(authority, "");
    within(stream.write_all(request.as_bytes())).await.unwrap();
    status(&read_head(&mut stream).await)
}

/// A plain GET for `authority` (path `path`) on a fresh connection; the head only.
async fn get_status(proxy: SocketAddr, authority: &str, path: &str) -> (u16, Vec<u8>) {
    let mut stream = within(TcpStream::connect(proxy)).await.unwrap();
    let request = format!(
        "GET http://{authority}{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    );
    within(stream.write_all(request.as_bytes())).await.unwrap();
    let response = read_to_close(&mut stream).await;
    (status(&response), response)
}

/// A GET through `proxy` to a fresh loopback origin answers 200 with the origin's body.
async fn assert_serves(proxy: SocketAddr) {
    let origin = Origin::fixed("healthy").await;
    let response = get(proxy, &origin.addr.to_string(), "").await;
    assert!(
        response.starts_with(b"HTTP/1.1 200") && response.ends_with(b"healthy"),
        "{}",
        String::from_utf8_lossy(&response)
    );
}

/// Descriptors process `pid` holds open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

#[tokio::test]
async fn every_spelling_of_this_host_on_our_port_is_a_loop() {
    let dns = DnsServer::start(60).await;
    dns.add("zero.test", &["0.0.0.0"], 300);
    dns.add("mapped.test", &["::ffff:127.0.0.1"], 300);
    dns.add("nat64.test", &["64:ff9b::7f00:1"], 300);
    let running = Running::start(&["--dns-server", &dns.arg(), "--max-connections", "20"]).await;
    let proxy = running.addr();
    let port = proxy.port();
    for host in [
        "127.0.0.1",
        "127.1",
        "localhost",
        "0.0.0.0",
        "0",
        "[::ffff:127.0.0.1]",
        "[::ffff:0.0.0.0]",
        "[64:ff9b::7f00:1]",
        "[64:ff9b::]",
        "zero.test",
        "mapped.test",
        "nat64.test.",
    ] {
        let authority = format!("{host}:{port}");
        assert_eq!(
            connect_status(proxy, &authority).await,
            508,
            "CONNECT {authority}"
        );
        let (code, response) = get_status(proxy, &authority, "/").await;
        assert_eq!(
            code,
            508,
            "GET {authority}: {}",
            String::from_utf8_lossy(&response)
        );
    }
    // The attack: one connection nesting CONNECTs to ourselves, each holding a connection
    // slot, until `--max-connections` is full. The first one is refused already.
    let mut nested = within(TcpStream::connect(proxy)).await.unwrap();
    let mut depth = 0;
    while depth < 25 {
        let request = connect_request(&format!("0.0.0.0:{port}"), "");
        within(nested.write_all(request.as_bytes())).await.unwrap();
        if status(&read_head(&mut nested).await) != 200 {
            break;
        }
        depth += 1;
    }
    assert_eq!(depth, 0, "CONNECTs nested through the proxy into itself");
    assert_serves(proxy).await;
}

#[tokio::test]
async fn the_metrics_listener_is_not_reachable_through_the_proxy() {
    let running = Running::start(&["--metrics-addr", "127.0.0.1:0"]).await;
    let proxy = running.addr();
    let metrics = running.metrics.expect("metrics address announced");
    let port = metrics.port();
    for host in ["127.0.0.1", "localhost", "0.0.0.0", "[::ffff:127.0.0.1]"] {
        let authority = format!("{host}:{port}");
        assert_eq!(
            connect_status(proxy, &authority).await,
            508,
            "CONNECT {authority}"
        );
        for path in ["/metrics", "/stats/top", "/stats"] {
            let (code, response) = get_status(proxy, &authority, path).await;
            assert_eq!(
                code,
                508,
                "GET {authority}{path}: {}",
                String::from_utf8_lossy(&response)
            );
        }
    }
    // The metrics listener itself still answers, directly.
    let (code, _) = get_status(metrics, &metrics.to_string(), "/metrics").await;
    assert_eq!(code, 200);
    assert_serves(proxy).await;
}

#[tokio::test]
async fn nat64_addresses_embedding_local_ones_are_local_targets() {
    let dns = DnsServer::start(60).await;
    dns.add("translated.test", &["64:ff9b::7f00:1"], 300);
    // Local targets refused (the default); every CONNECT port allowed so only the
    // address decides; a short connect timeout so a wrong dial fails the test quickly.
    let proxy = ProxyProcess::start(&[
        "--connect-ports",
        "1-65535",
        "--connect-timeout",
        "2",
        "--dns-server",
        &dns.arg(),
    ])
    .await;
    for authority in [
        "[64:ff9b::7f00:1]:8080",
        "[64:ff9b::127.0.0.1]:8080",
        "[64:ff9b::a9fe:a9fe]:80",
        "[64:ff9b::]:80",
        "translated.test:8080",
    ] {
        assert_forbidden(
            &get(proxy.addr, authority, "").await,
            "--allow-local-targets",
            authority,
        );
        assert_forbidden(
            &refused_connect(proxy.addr, authority, "", "").await,
            "--allow-local-targets",
            authority,
        );
    }
    // Every origin here is on loopback and so refused: the proxy's own PAC answer is the
    // normal request on a fresh connection.
    let pac = exchange(
        proxy.addr,
        b"GET /proxy.pac HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&pac), 200, "{}", String::from_utf8_lossy(&pac));
}

#[tokio::test]
async fn proxy_v2_headers_for_datagrams_are_refused() {
    let proxy = ProxyProcess::start(&[
        "--proxy-protocol-from",
        "127.0.0.1/32",
        "--allow-local-targets",
    ])
    .await;
    let origin = Origin::fixed("reached").await;
    let client: SocketAddr = "198.51.100.7:4000".parse().unwrap();
    // Byte 13 is family and transport: 0x12 is UDP over IPv4; 0x10, IPv4 without a
    // transport, is a combination the specification says receivers must reject.
    for family in [0x12u8, 0x10] {
        let mut header = proxy_v2(client, proxy.addr);
        header[13] = family;
        let mut stream = connect_from("127.0.0.1".parse().unwrap(), proxy.addr).await;
        let mut bytes = header;
        bytes.extend(
            format!(
                "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                origin.url("/datagram")
            )
            .as_bytes(),
        );
        let _ = within(stream.write_all(&bytes)).await;
        let response = read_to_close(&mut stream).await;
        assert!(
            response.is_empty(),
            "family {family:#x}: {}",
            String::from_utf8_lossy(&response)
        );
    }
    assert_eq!(origin.request_count(), 0);
    // A stream (TCP) header on a fresh connection is served.
    let mut stream = connect_from("127.0.0.1".parse().unwrap(), proxy.addr).await;
    let mut bytes = proxy_v2(client, proxy.addr);
    bytes.extend(
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            origin.url("/stream")
        )
        .as_bytes(),
    );
    within(stream.write_all(&bytes)).await.unwrap();
    let response = read_to_close(&mut stream).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );
}

#[tokio::test]
async fn a_reload_that_empties_the_blacklist_warns() {
    const EMPTIED: &str = "this reload emptied the blacklist";
    let files = Scratch::new("reload-blacklist");
    let rules = files.write("rules.txt", "blocked.test\n127.0.0.3/32\n");
    let proxy = ProxyProcess::start(&["--allow-local-targets", "--blacklist", text(&rules)]).await;
    let log = &proxy.stderr;
    assert_forbidden(
        &get(proxy.addr, "blocked.test", "").await,
        BLOCKED,
        "before",
    );

    // An in-place rewrite (`>`) caught between truncation and the new text.
    std::fs::write(&rules, "").unwrap();
    proxy.signal("HUP").await;
    log.wait_for("access files reloaded", 1).await;
    log.wait_for(EMPTIED, 1).await;
    let logged = log.text();
    let line = logged.lines().find(|l| l.contains(EMPTIED)).unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(text(&rules)), "names the file: {line}");

    // Replaced atomically: the rules are back and nothing more is said.
    let staged = files.write("rules.txt.new", "blocked.test\n127.0.0.3/32\n");
    std::fs::rename(&staged, &rules).unwrap();
    proxy.signal("HUP").await;
    log.wait_for("access files reloaded", 2).await;
    assert_forbidden(&get(proxy.addr, "blocked.test", "").await, BLOCKED, "after");
    assert_eq!(log.count(EMPTIED), 1, "{}", log.text());
    assert_serves(proxy.addr).await;
}

#[tokio::test]
async fn a_dns_server_that_never_answers_holds_bounded_descriptors() {
    // Bound, never read: every query to it goes unanswered.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = silent.local_addr().unwrap().to_string();
    let proxy = ProxyProcess::start(&[
        "--allow-local-targets",
        "--dns-server",
        &server,
        "--dns-timeout",
        "4",
    ])
    .await;
    let pid = proxy.pid();
    let baseline = open_fds(pid);
    let rss_before = proxy.rss_kib();
    let rss = PeakRss::start(pid);
    const LOOKUPS: usize = 600;
    let started = Instant::now();
    let requests: Vec<_> = (0..LOOKUPS)
        .map(|i| {
            let proxy = proxy.addr;
            tokio::spawn(async move {
                let host = format!("n{i}.silent.test");
                let response = get(proxy, &host, "").await;
                (response, started.elapsed())
            })
        })
        .collect();
    // The peak while the lookups are pending; meanwhile an address literal is served.
    let mut peak = 0;
    let mut served_meanwhile = false;
    let deadline = Instant::now() + STEP;
    while requests.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
        peak = peak.max(open_fds(pid));
        if !served_meanwhile && started.elapsed() > Duration::from_millis(1500) {
            assert_serves(proxy.addr).await;
            served_meanwhile = true;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    let rss_peak = rss.stop();
    let mut busy = 0;
    for request in requests {
        let (response, _took) = within(request).await.unwrap();
        assert_unresolved(&response, "silent server");
        busy += usize::from(body(&response).contains("too many lookups"));
    }
    // Each client connection is one descriptor in the proxy; the lookups may add a few
    // sockets each, for at most MAX_LOOKUPS_IN_FLIGHT (64) of them at a time.
    let extra = peak.saturating_sub(baseline + LOOKUPS);
    println!(
        "{LOOKUPS} pending lookups: {peak} descriptors at the peak ({baseline} before), \
         {extra} beyond the client connections; resident memory {rss_before} KiB before, \
         {rss_peak} KiB at the peak; {busy} refused as busy"
    );
    assert!(
        served_meanwhile,
        "the lookups ended before the literal was tried"
    );
    assert!(
        extra < 64 * 8,
        "{extra} descriptors beyond the client connections"
    );
    assert!(busy > 0, "no lookup was refused for want of a slot");
    assert_serves(proxy.addr).await;
}
