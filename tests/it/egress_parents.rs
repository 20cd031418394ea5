//! Parent proxies end to end, with the real binary on both sides: two instances chained
//! through an HTTP parent with credentials (the client's own never reach the parent), an
//! HTTPS parent (the parent instance's TLS listener, a test CA), a SOCKS5 parent (the
//! parent instance's `--socks` listener, `socks5h://` and `socks5://`), a parent's 407
//! becoming a 502 that names it, and a forwarding loop through two instances seen in
//! `Via`. Routes, failover and pooling are in `egress_routes`.

use crate::common::access::{CLEAR_USER, users_file};
use crate::common::egress::access_line;
use crate::common::listeners::{TestPki, announced};
use crate::common::*;

const CLIENT: (&str, &str) = ("alice", "wonderland");

/// The parent's own credentials (`CLEAR_USER`, whose password has `:` and `#`) in a URL.
fn parent_url(scheme: &str, addr: impl std::fmt::Display) -> String {
    assert_eq!(CLEAR_USER.1, "clear:pass#1");
    format!("{scheme}://{}:clear%3Apass%231@{addr}", CLEAR_USER.0)
}

fn get(url: &str, extra: &str) -> Vec<u8> {
    format!("GET {url} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

async fn start(args: &[&str]) -> ProxyProcess {
    let mut all = LOCAL.to_vec();
    all.extend_from_slice(args);
    ProxyProcess::start(&all).await
}

#[tokio::test]
async fn two_instances_chained_through_an_http_parent_with_credentials() {
    let files = Scratch::new("egress-http");
    let parent_users = users_file(&files);
    let client_users = files.write("clients.txt", format!("{}:{}\n", CLIENT.0, CLIENT.1));
    let parent = start(&["--auth-file", text(&parent_users), "--via-name", "parent"]).await;
    let url = parent_url("http", parent.addr);
    let child = start(&[
        "--auth-file",
        text(&client_users),
        "--via-name",
        "child",
        "--parent",
        &url,
    ])
    .await;
    let origin = Origin::fixed("through the parent").await;

    let response = exchange(child.addr, &get(&origin.url("/p"), &login(CLIENT))).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(body(&response), "through the parent");
    let seen = &origin.requests()[0];
    assert_eq!(seen.request_line(), "GET /p HTTP/1.1");
    assert_eq!(seen.header("via").as_deref(), Some("1.1 child, 1.1 parent"));
    let at_origin = String::from_utf8_lossy(&origin.received()).to_ascii_lowercase();
    assert!(!at_origin.contains("proxy-authorization"), "{at_origin}");

    // The parent's view: it authenticated the child's account, never the client's.
    let line = access_line(&parent, &["GET", "/p"]).await;
    assert!(line.contains(&format!(" {} ", CLEAR_USER.0)), "{line}");
    assert!(!line.contains(CLIENT.0), "{line}");
    let hop = format!("FIRSTUP_PARENT/{}", parent.addr);
    let line = access_line(&child, &["/p", &hop]).await;
    assert!(line.contains(&format!(" {} ", CLIENT.0)), "{line}");

    // CONNECT goes as CONNECT to the parent, then the tunnel carries the bytes.
    let echo = echo_origin().await;
    let mut tunnel = open_tunnel(child.addr, &echo.to_string(), &login(CLIENT)).await;
    assert_echoes(&mut tunnel, b"ping through two proxies").await;
    drop(tunnel);
    let line = access_line(&parent, &["CONNECT", &echo.to_string()]).await;
    assert!(line.contains(&format!(" {} ", CLEAR_USER.0)), "{line}");
    assert!(!parent.stderr.text().contains(CLIENT.1));
}

#[tokio::test]
async fn a_parents_407_is_a_502_naming_it() {
    let files = Scratch::new("egress-407");
    let users = users_file(&files);
    let parent = start(&["--auth-file", text(&users)]).await;
    let url = format!("http://{}:not-the-password@{}", CLEAR_USER.0, parent.addr);
    let child = start(&["--parent", &url, "--via-name", "child"]).await;
    let origin = Origin::fixed("never").await;
    let named = format!(
        "parent proxy {} refused this proxy's credentials (407)",
        parent.addr
    );

    let response = exchange(child.addr, &get(&origin.url("/x"), "")).await;
    assert_eq!(
        status(&response),
        502,
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(body(&response).contains(&named), "{}", body(&response));
    let request = connect_request(&origin.addr.to_string(), "");
    let response = exchange(child.addr, request.as_bytes()).await;
    assert_eq!(status(&response), 502);
    assert!(body(&response).contains(&named), "{}", body(&response));
    assert_eq!(origin.request_count(), 0);
    child.stderr.wait_for("parent proxy refused", 2).await;
    assert!(!child.stderr.text().contains("not-the-password"));
}

#[tokio::test]
async fn an_https_parent_is_reached_over_tls_checked_against_its_ca() {
    let pki = TestPki::new();
    let mut args = pki.flags().to_vec();
    args.extend(["--via-name".into(), "tls-parent".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let parent = start(&args).await;
    let config = |ca: &std::path::Path| {
        format!(
            "[[parents]]\nname = \"secure\"\nurl = \"https://localhost:{}\"\nca_file = \"{}\"\n\
             [[routes]]\ndest = [\"*\"]\nvia = \"secure\"\n",
            parent.addr.port(),
            ca.display()
        )
    };
    let trusted = pki.files.write("trusted.toml", config(&pki.ca));
    let child = start(&["--config", text(&trusted)]).await;
    let origin = Origin::fixed("over tls to the parent").await;

    let response = exchange(child.addr, &get(&origin.url("/tls"), "")).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(body(&response), "over tls to the parent");
    assert_eq!(
        origin.requests()[0].header("via").as_deref(),
        Some("1.1 proxy-server, 1.1 tls-parent")
    );
    let echo = echo_origin().await;
    let mut tunnel = open_tunnel(child.addr, &echo.to_string(), "").await;
    assert_echoes(&mut tunnel, b"tunnel inside tls").await;
    drop(tunnel);
    access_line(&child, &["CONNECT", "FIRSTUP_PARENT/secure"]).await;

    // A parent whose certificate another CA signed is not trusted: unreachable, 502.
    let stranger = TestPki::new();
    let untrusted = pki.files.write("untrusted.toml", config(&stranger.ca));
    let wary = start(&["--config", text(&untrusted)]).await;
    let response = exchange(wary.addr, &get(&origin.url("/tls"), "")).await;
    assert_eq!(status(&response), 502);
    assert!(body(&response).contains("no parent proxy reachable (secure)"));
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn a_socks5_parent_carries_requests_and_tunnels_resolving_as_told() {
    let files = Scratch::new("egress-socks");
    let users = users_file(&files);
    let parent = start(&["--socks", "127.0.0.1:0", "--auth-file", text(&users)]).await;
    let socks = announced(&parent.stderr, "socks5").await;
    let origin = Origin::fixed("over socks").await;

    // socks5h: the parent resolves the name, for plain requests and tunnels alike.
    let remote = start(&["--parent", &parent_url("socks5h", socks)]).await;
    let by_name = format!("http://localhost:{}/h", origin.addr.port());
    let response = exchange(remote.addr, &get(&by_name, "")).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(origin.requests()[0].request_line(), "GET /h HTTP/1.1");
    assert_eq!(
        origin.requests()[0].header("via").as_deref(),
        Some("1.1 proxy-server")
    );
    access_line(&remote, &["/h", &format!("FIRSTUP_PARENT/{socks}")]).await;
    let echo = echo_origin().await;
    let by_name = format!("localhost:{}", echo.port());
    let mut tunnel = open_tunnel(remote.addr, &by_name, "").await;
    assert_echoes(&mut tunnel, b"resolved there").await;
    drop(tunnel);
    let line = access_line(&parent, &[&by_name]).await;
    assert!(line.contains(&format!(" {} ", CLEAR_USER.0)), "{line}");

    // socks5: this proxy resolves (localhost is 127.0.0.1 in the test machines' hosts
    // file), the parent is asked for the address.
    let local = start(&["--parent", &parent_url("socks5", socks)]).await;
    let echo = echo_origin().await;
    let mut tunnel = open_tunnel(local.addr, &format!("localhost:{}", echo.port()), "").await;
    assert_echoes(&mut tunnel, b"resolved here").await;
    drop(tunnel);
    access_line(&parent, &[&echo.to_string()]).await;
    access_line(&local, &["CONNECT", &format!("FIRSTUP_PARENT/{socks}")]).await;
}

#[tokio::test]
async fn a_forwarding_loop_through_chained_instances_is_seen_in_via() {
    // Both keep the default name: the parent sees itself in the child's Via.
    let parent = start(&[]).await;
    let child = start(&["--parent", &format!("http://{}", parent.addr)]).await;
    let origin = Origin::fixed("never").await;
    let response = exchange(child.addr, &get(&origin.url("/loop"), "")).await;
    assert_eq!(
        status(&response),
        508,
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test]
async fn network_rules_meet_names_this_proxy_resolves_and_not_those_a_parent_resolves() {
    let files = Scratch::new("egress-cidr");
    let parent = start(&["--socks", "127.0.0.1:0"]).await;
    let socks = announced(&parent.stderr, "socks5").await;
    let rules = files.write("rules.txt", "127.0.0.0/8\n");
    let origin = Origin::fixed("reached").await;
    let by_name = format!("http://localhost:{}/n", origin.addr.port());

    // socks5://: this proxy resolves localhost, and the network rule refuses it.
    let local = format!("socks5://{socks}");
    let resolving = start(&["--blacklist", text(&rules), "--parent", &local]).await;
    let response = exchange(resolving.addr, &get(&by_name, "")).await;
    assert_eq!(
        status(&response),
        403,
        "{}",
        String::from_utf8_lossy(&response)
    );
    // An address literal meets the rule whoever resolves.
    let remote = format!("socks5h://{socks}");
    let trusting = start(&["--blacklist", text(&rules), "--parent", &remote]).await;
    let response = exchange(trusting.addr, &get(&origin.url("/literal"), "")).await;
    assert_eq!(
        status(&response),
        403,
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(origin.request_count(), 0);

    // socks5h://: the parent resolves the name; this proxy never sees its address.
    let response = exchange(trusting.addr, &get(&by_name, "")).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(origin.requests()[0].target(), "/n");
}
