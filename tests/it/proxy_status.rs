//! `Proxy-Status` (RFC 9209) on the answers the proxy makes itself: a refused or failed
//! CONNECT, whose body curl does not show, says why in a header `curl -v` prints; a
//! blacklist refusal names the list entry (`file:line (entry)`); and responses relayed
//! from an origin are left as the origin sent them. Each test ends with a normal request
//! on a fresh connection.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::access::{CLEAR_USER, users_file};
use crate::common::dns::DnsServer;
use crate::common::*;

/// The `Proxy-Status` value curl printed for the proxy's answer to its CONNECT (`curl -v`
/// shows the proxy's response head, never its body), with curl's exit status.
async fn curl_connect(proxy: &Proxy, url: &str) -> (i32, Option<String>) {
    let (code, _, stderr) = curl(&["-v", "-x", &proxy.url(), url]).await;
    let field = stderr
        .lines()
        .find_map(|line| line.strip_prefix("< Proxy-Status: "))
        .map(|value| value.trim_end().to_string());
    (code, field)
}

/// The one `Proxy-Status` field of a raw answer.
fn proxy_status(response: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(response);
    assert!(
        text.matches("\r\nProxy-Status:").count() <= 1,
        "one field: {text}"
    );
    header_value(&text, "proxy-status")
}

#[tokio::test]
async fn a_refused_connect_says_which_blacklist_entry_matched() {
    let files = Scratch::new("proxy-status-blacklist");
    let list = files.write(
        "blocked.txt",
        "# ads and trackers\nads.test\n*.tracker.test\n\n127.0.0.2/32 # a lab host\n",
    );
    let path = text(&list).to_string();
    let proxy = Proxy::start_with(|c| c.access.blacklist = Some(list)).await;

    let (code, field) = curl_connect(&proxy, "https://a.b.tracker.test/").await;
    assert_ne!(code, 0, "curl must fail the refused tunnel");
    assert_eq!(
        field.as_deref(),
        Some(
            format!(
                "proxy-server; error=http_request_denied; \
                 details=\"Forbidden: this destination is blocked by {path}:3 (*.tracker.test)\""
            )
            .as_str()
        )
    );
    let (_, field) = curl_connect(&proxy, "https://127.0.0.2:8443/").await;
    assert_eq!(
        field.as_deref(),
        Some(
            format!(
                "proxy-server; error=destination_ip_prohibited; \
                 details=\"Forbidden: this destination is blocked by {path}:5 (127.0.0.2/32)\""
            )
            .as_str()
        )
    );
    // A plain request: the same words in the body and in the field.
    let response = exchange(
        proxy.addr,
        b"GET http://ADS.test./x HTTP/1.1\r\nHost: ads.test\r\n\r\n",
    )
    .await;
    assert_eq!(status(&response), 403);
    let want = format!("this destination is blocked by {path}:2 (ads.test)");
    assert_eq!(body(&response), format!("Forbidden: {want}.\n"));
    assert_eq!(
        proxy_status(&response).as_deref(),
        Some(
            format!("proxy-server; error=http_request_denied; details=\"Forbidden: {want}\"")
                .as_str()
        )
    );
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn refused_unresolvable_and_slow_destinations_say_which() {
    let dns = DnsServer::start(60).await;
    dns.add_slow("slow.test", &["127.0.0.1"], 60, Duration::from_secs(4));
    let proxy = Proxy::start_with(|c| {
        c.resolver.servers = vec![dns.arg().parse().unwrap()];
        c.resolver.timeout = Duration::from_millis(500);
    })
    .await;
    let closed = closed_port().await;

    let (_, field) = curl_connect(&proxy, &format!("https://{closed}/")).await;
    let field = field.expect("a Proxy-Status field");
    assert!(
        field.starts_with(
            "proxy-server; error=connection_refused; details=\"Bad gateway: cannot connect: "
        ),
        "{field}"
    );
    let (_, field) = curl_connect(&proxy, "https://missing.test/").await;
    assert_eq!(
        field.as_deref(),
        Some("proxy-server; error=dns_error; details=\"Bad gateway: cannot resolve missing.test\"")
    );
    let (_, field) = curl_connect(&proxy, "https://slow.test/").await;
    let field = field.expect("a Proxy-Status field");
    assert!(
        field.starts_with(
            "proxy-server; error=dns_timeout; details=\"Bad gateway: cannot resolve slow.test: "
        ),
        "{field}"
    );
    // Forwarding fails the same way, with the same field.
    let response = exchange(
        proxy.addr,
        format!("GET http://{closed}/ HTTP/1.1\r\nHost: {closed}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&response), 502);
    assert!(
        proxy_status(&response)
            .is_some_and(|f| f.starts_with("proxy-server; error=connection_refused; ")),
        "{}",
        String::from_utf8_lossy(&response)
    );
    proxy.assert_healthy().await;
}

/// The origin fails after the connection: closed before its head, or an invalid head.
#[tokio::test]
async fn failures_of_a_connected_origin_name_their_kind() {
    let proxy = Proxy::start().await;
    let closing = scripted_origin(|mut stream| async move {
        let _ = read_head(&mut stream).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-").await;
    })
    .await;
    let garbage = scripted_origin(|mut stream| async move {
        let _ = read_head(&mut stream).await;
        let _ = stream.write_all(b"SMTP ready\r\n\r\n").await;
    })
    .await;
    for (origin, want) in [
        (closing, "http_response_incomplete"),
        (garbage, "http_protocol_error"),
    ] {
        let request = format!("GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\n\r\n");
        let response = exchange(proxy.addr, request.as_bytes()).await;
        assert_eq!(status(&response), 502, "{want}");
        let field = proxy_status(&response).unwrap_or_default();
        assert!(
            field.starts_with(&format!(
                "proxy-server; error={want}; details=\"Bad gateway: "
            )),
            "{want}: {field}"
        );
    }
    proxy.assert_healthy().await;
}

/// What an origin answers is relayed as it is: its own errors carry no field of ours,
/// and a `Proxy-Status` it sends (from a gateway of its own) passes unchanged.
#[tokio::test]
async fn relayed_origin_answers_carry_no_field_of_ours() {
    let proxy = Proxy::start().await;
    let origin = Origin::start(|seen| {
        let extra = if seen.target().ends_with("/gw") {
            "Proxy-Status: origin-gw; error=connection_refused\r\n"
        } else {
            ""
        };
        format!("HTTP/1.1 502 Bad Gateway\r\n{extra}Content-Length: 4\r\n\r\nnope").into_bytes()
    })
    .await;
    let plain = exchange(
        proxy.addr,
        format!(
            "GET {} HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n",
            origin.url("/")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status(&plain), 502);
    assert_eq!(body(&plain), "nope");
    assert_eq!(proxy_status(&plain), None);
    let gateway = exchange(
        proxy.addr,
        format!(
            "GET {} HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n",
            origin.url("/gw")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        proxy_status(&gateway).as_deref(),
        Some("origin-gw; error=connection_refused")
    );
    proxy.assert_healthy().await;
}

/// 407 and the local-target default: the policy's refusals, and no credential in the
/// field.
#[tokio::test]
async fn logins_and_local_targets_are_named_without_secrets() {
    let files = Scratch::new("proxy-status-login");
    let users = users_file(&files);
    let proxy = Proxy::start_with(|c| {
        c.access.auth_file = Some(users);
        c.access.allow_local_targets = false;
    })
    .await;
    let wrong = login((CLEAR_USER.0, "not-the-password-42"));
    let response = exchange(
        proxy.addr,
        format!("CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n{wrong}\r\n")
            .as_bytes(),
    )
    .await;
    let text = String::from_utf8_lossy(&response);
    assert_eq!(status(&response), 407, "{text}");
    assert_eq!(
        proxy_status(&response).as_deref(),
        Some("proxy-server; error=http_request_denied; details=\"Proxy authentication required\"")
    );
    let secret = base64(format!("{}:not-the-password-42", CLEAR_USER.0));
    assert!(
        !text.contains("not-the-password-42") && !text.contains(&secret),
        "{text}"
    );

    let good = login(CLEAR_USER);
    let origin = Origin::fixed("local").await;
    let authority = origin
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let response = exchange(
        proxy.addr,
        format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{good}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&response), 403);
    let field = proxy_status(&response).unwrap_or_default();
    assert!(
        field.starts_with("proxy-server; error=destination_ip_prohibited; details=\"Forbidden: ")
            && field.contains("--allow-local-targets"),
        "{field}"
    );
    // Still serving: the PAC file, on a fresh connection (every origin here is local).
    let pac = exchange(proxy.addr, b"GET /proxy.pac HTTP/1.1\r\nHost: p\r\n\r\n").await;
    assert_eq!(status(&pac), 200, "{}", String::from_utf8_lossy(&pac));
}

/// The field names the proxy by its Via name, the PAC file's 403 included; the
/// listener's 503, written before any request is read, by the default name.
#[tokio::test]
async fn the_proxy_is_named_by_its_via_name() {
    let files = Scratch::new("proxy-status-via");
    let list = files.write("blocked.txt", "ads.test\n");
    let proxy = Proxy::start_with(|c| {
        c.via_name = "gw1.example:8888".into();
        c.access.blacklist = Some(list);
    })
    .await;
    let response = exchange(
        proxy.addr,
        b"GET http://ads.test/ HTTP/1.1\r\nHost: ads.test\r\n\r\n",
    )
    .await;
    assert!(
        proxy_status(&response)
            .is_some_and(|f| f.starts_with("gw1.example:8888; error=http_request_denied; ")),
        "{}",
        String::from_utf8_lossy(&response)
    );
    // A name that is no structured-field token goes as a string.
    let numeric = Proxy::start_with(|c| {
        c.via_name = "10.0.0.1:3128".into();
        c.access.allow_clients = Some(vec!["192.0.2.0/24".parse().unwrap()]);
    })
    .await;
    let pac = exchange(numeric.addr, b"GET /proxy.pac HTTP/1.1\r\nHost: p\r\n\r\n").await;
    assert_eq!(status(&pac), 403);
    assert!(
        proxy_status(&pac)
            .is_some_and(|f| f.starts_with("\"10.0.0.1:3128\"; error=http_request_denied; ")),
        "{}",
        String::from_utf8_lossy(&pac)
    );
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn an_overloaded_listener_says_so() {
    let proxy = Proxy::start_with(|c| {
        c.max_connections = 1;
        c.via_name = "edge-1".into();
    })
    .await;
    let holder = within(TcpStream::connect(proxy.addr)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = exchange(
        proxy.addr,
        b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .await;
    assert_eq!(status(&response), 503);
    assert_eq!(
        proxy_status(&response).as_deref(),
        Some(
            "edge-1; error=connection_limit_reached; \
             details=\"Too many connections; try again later\""
        )
    );
    drop(holder);
    wait_until("the held slot is free", STEP, || async {
        let origin = Origin::fixed("healthy").await;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n",
            origin.url("/")
        );
        status(&exchange(proxy.addr, request.as_bytes()).await) == 200
    })
    .await;
    proxy.assert_healthy().await;
}
