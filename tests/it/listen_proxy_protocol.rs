//! The PROXY protocol on a listener: from a listed source, v1 (curl's
//! `--haproxy-protocol`, and by hand) and v2 (written here) headers name the client that
//! the access log and `--allow-clients` then see; a listed source without a header, or
//! too slow to send one, is closed and counted; a header from a source not listed is a
//! malformed request. Sources are told apart by loopback address: 127.0.0.1 is listed,
//! 127.0.0.2 is not.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::common::listeners::{connect_from, proxy_v2};
use crate::common::*;

const LISTED: &str = "127.0.0.1";
const UNLISTED: &str = "127.0.0.2";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A GET through the proxy for `url`, sent from `from` after `header`; the response.
async fn get_after(from: &str, proxy: SocketAddr, header: &[u8], url: &str) -> Vec<u8> {
    let mut stream = connect_from(ip(from), proxy).await;
    let mut bytes = header.to_vec();
    bytes.extend(format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    let _ = within(stream.write_all(&bytes)).await;
    read_to_close(&mut stream).await
}

#[tokio::test]
async fn carried_addresses_reach_the_log_and_the_client_rules() {
    let proxy = ProxyProcess::start(&[
        "--proxy-protocol-from",
        "127.0.0.1/32",
        "--allow-clients",
        "127.0.0.0/8,198.51.100.0/24",
        "--allow-local-targets",
    ])
    .await;
    let origin = Origin::fixed("seen").await;

    // curl's own v1 header (it names curl's real address).
    let (code, out, err) = curl(&[
        "--haproxy-protocol",
        "-x",
        &format!("http://{}", proxy.addr),
        &origin.url("/curl"),
    ])
    .await;
    assert_eq!((code, out.as_slice()), (0, &b"seen"[..]), "{err}");

    // v1 by hand, naming an allowed client.
    let v1 = format!(
        "PROXY TCP4 198.51.100.7 127.0.0.1 40000 {}\r\n",
        proxy.addr.port()
    );
    let response = get_after(LISTED, proxy.addr, v1.as_bytes(), &origin.url("/v1")).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );

    // v2 naming a client outside --allow-clients: refused as that client.
    let refused_client: SocketAddr = "203.0.113.9:5555".parse().unwrap();
    let v2 = proxy_v2(refused_client, proxy.addr);
    let response = get_after(LISTED, proxy.addr, &v2, &origin.url("/v2")).await;
    assert_eq!(
        status(&response),
        403,
        "{}",
        String::from_utf8_lossy(&response)
    );

    // v2 naming an allowed client.
    let v2 = proxy_v2("198.51.100.8:6000".parse().unwrap(), proxy.addr);
    let response = get_after(LISTED, proxy.addr, &v2, &origin.url("/v2-ok")).await;
    assert_eq!(status(&response), 200);

    // A listed source without a header: closed, nothing answered, nothing forwarded.
    let response = get_after(LISTED, proxy.addr, b"", &origin.url("/bare")).await;
    assert!(
        response.is_empty(),
        "{}",
        String::from_utf8_lossy(&response)
    );

    // A source not listed: a header is not trusted, it is a malformed request.
    let response = get_after(UNLISTED, proxy.addr, v1.as_bytes(), &origin.url("/forged")).await;
    assert_eq!(
        status(&response),
        400,
        "{}",
        String::from_utf8_lossy(&response)
    );
    // …and without one it is served as itself: the health check on a fresh connection.
    let response = get_after(UNLISTED, proxy.addr, b"", &origin.url("/unlisted")).await;
    assert_eq!(status(&response), 200);

    let targets: Vec<String> = origin.requests().iter().map(|r| r.target()).collect();
    assert_eq!(targets, ["/curl", "/v1", "/v2-ok", "/unlisted"]);
    let mut proxy = proxy;
    assert_eq!(proxy.stop().await, Some(0));
    let log = proxy.access_log();
    let client_of = |path: &str| {
        // The URL field, matched whole: "/v2" must not find the "/v2-ok" line.
        let line = log
            .iter()
            .find(|l| {
                l.split_whitespace()
                    .nth(6)
                    .is_some_and(|url| url.ends_with(path))
            })
            .unwrap_or_else(|| panic!("{path} not in {log:#?}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields[2].to_string(), fields[3].to_string())
    };
    assert_eq!(client_of("/curl").0, "127.0.0.1");
    assert_eq!(
        client_of("/v1"),
        ("198.51.100.7".into(), "TCP_MISS/200".into())
    );
    assert_eq!(client_of("/v2-ok").0, "198.51.100.8");
    let (client, code) = client_of("/v2");
    assert_eq!(client, "203.0.113.9");
    assert!(code.ends_with("/403"), "{code}");
    assert_eq!(client_of("/unlisted").0, UNLISTED);
}

#[tokio::test]
async fn listed_sources_without_a_header_are_closed_and_counted() {
    let proxy = Proxy::start_with(|c| {
        c.listeners[0].proxy_protocol_from = vec!["127.0.0.1/32".parse().unwrap()];
        c.timeouts.header = Duration::from_secs(1);
    })
    .await;
    let origin = Origin::fixed("never").await;
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/"));
    let response = exchange(proxy.addr, request.as_bytes()).await;
    assert!(response.is_empty());

    // Half a header, then silence: closed at the header timeout.
    let mut slow = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    within(slow.write_all(b"PROXY TCP4 198.51.")).await.unwrap();
    let started = std::time::Instant::now();
    let (rest, _) = read_until_end(&mut slow).await;
    assert!(rest.is_empty() && started.elapsed() < Duration::from_secs(5));

    assert_eq!(origin.request_count(), 0);
    wait_until("two refused headers", STEP, || {
        let done = proxy.snapshot().proxy_headers_rejected == 2;
        async move { done }
    })
    .await;
    let v1 = format!(
        "PROXY TCP4 198.51.100.7 127.0.0.1 40000 {}\r\n",
        proxy.addr.port()
    );
    let response = get_after(LISTED, proxy.addr, v1.as_bytes(), &origin.url("/ok")).await;
    assert_eq!(
        status(&response),
        200,
        "healthy with a header on a fresh connection"
    );
}
