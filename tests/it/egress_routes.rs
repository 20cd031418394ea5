//! Routes and failover with the real binary: `[[routes]]` sending one destination direct
//! and another through a parent (the access log naming each route), failover to the next
//! parent when the first refuses connections and its recovery once it answers again
//! (state in `/metrics` and `/stats`), `502` naming every parent when none answers, and
//! keep-alive connections to an HTTP parent reused across clients.

use std::time::Duration;

use crate::common::egress::{AFTER_BACKOFF, BACKOFF_SECS, Gate, access_line};
use crate::common::observe::{get, get_json};
use crate::common::*;

fn get_request(url: &str) -> Vec<u8> {
    format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

async fn start(args: &[&str]) -> ProxyProcess {
    let mut all = LOCAL.to_vec();
    all.extend_from_slice(args);
    ProxyProcess::start(&all).await
}

/// A parent instance named `name` in `Via`.
async fn parent(name: &str) -> ProxyProcess {
    start(&["--via-name", name]).await
}

fn parents_toml(parents: &[(&str, std::net::SocketAddr)]) -> String {
    parents
        .iter()
        .map(|(name, addr)| format!("[[parents]]\nname = \"{name}\"\nurl = \"http://{addr}\"\n"))
        .collect()
}

#[tokio::test]
async fn routes_send_some_destinations_direct_and_others_through_a_parent() {
    let corp = parent("corp").await;
    let files = Scratch::new("egress-routes");
    let config = files.write(
        "proxy.toml",
        format!(
            "{}[[routes]]\ndest = [\"localhost\", \"*.internal.test\"]\nvia = \"direct\"\n\
             [[routes]]\ndest = [\"*\"]\nvia = [\"corp\"]\n",
            parents_toml(&[("corp", corp.addr)])
        ),
    );
    let child = start(&["--config", text(&config), "--log-format", "json"]).await;
    let origin = Origin::fixed("routed").await;

    let direct = format!("http://localhost:{}/direct", origin.addr.port());
    let response = exchange(child.addr, &get_request(&direct)).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );
    let response = exchange(child.addr, &get_request(&origin.url("/parent"))).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );

    let via = |path: &str| {
        let seen = origin.requests();
        let seen = seen.iter().find(|s| s.target() == path).unwrap();
        seen.header("via")
    };
    assert_eq!(via("/direct").as_deref(), Some("1.1 proxy-server"));
    assert_eq!(
        via("/parent").as_deref(),
        Some("1.1 proxy-server, 1.1 corp")
    );
    let line = access_line(&child, &["/direct"]).await;
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["hierarchy"], "HIER_DIRECT");
    assert_eq!(record["parent"], serde_json::Value::Null);
    let line = access_line(&child, &["/parent"]).await;
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["hierarchy"], "FIRSTUP_PARENT");
    assert_eq!(record["parent"], "corp");
}

#[tokio::test]
async fn a_refusing_parent_fails_over_to_the_next_and_comes_back_after_its_backoff() {
    let second = parent("second").await;
    let first_instance = parent("first").await;
    let mut first = Gate::closed();
    let files = Scratch::new("egress-failover");
    let config = files.write(
        "proxy.toml",
        format!(
            "parent_backoff = {BACKOFF_SECS}\n{}[[routes]]\nvia = [\"first\", \"second\"]\n",
            parents_toml(&[("first", first.addr), ("second", second.addr)])
        ),
    );
    let child = start(&["--config", text(&config), "--metrics-addr", "127.0.0.1:0"]).await;
    let metrics = metrics_addr(&child);
    let origin = Origin::fixed("failover").await;

    let response = exchange(child.addr, &get_request(&origin.url("/1"))).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(
        origin.requests()[0].header("via").as_deref(),
        Some("1.1 proxy-server, 1.1 second")
    );
    access_line(&child, &["/1", "FIRSTUP_PARENT/second"]).await;
    child.stderr.wait_for("parent proxy down", 1).await;
    let (_, body) = get(metrics, "/metrics").await;
    let body = String::from_utf8(body).unwrap();
    for line in [
        "proxy_parent_up{parent=\"first\"} 0",
        "proxy_parent_up{parent=\"second\"} 1",
        "proxy_parent_failures_total{parent=\"first\"} 1",
        "proxy_parent_requests_total{parent=\"second\"} 1",
    ] {
        assert!(body.contains(line), "{line} not in:\n{body}");
    }
    let stats = get_json(metrics, "/stats").await;
    assert_eq!(stats["parents"][0]["name"], "first");
    assert_eq!(stats["parents"][0]["up"], false);

    // While backed off, the first is not even tried.
    let response = exchange(child.addr, &get_request(&origin.url("/2"))).await;
    assert_eq!(status(&response), 200);
    let stats = get_json(metrics, "/stats").await;
    assert_eq!(
        stats["parents"][0]["failures"], 1,
        "not tried while backed off"
    );
    assert_eq!(stats["parents"][1]["requests"], 2);

    // It answers again; after the back-off the next request goes through it.
    first.open(first_instance.addr);
    tokio::time::sleep(AFTER_BACKOFF).await;
    let response = exchange(child.addr, &get_request(&origin.url("/3"))).await;
    assert_eq!(status(&response), 200);
    let seen = origin.requests();
    assert_eq!(
        seen[2].header("via").as_deref(),
        Some("1.1 proxy-server, 1.1 first")
    );
    child.stderr.wait_for("parent proxy back up", 1).await;
    let stats = get_json(metrics, "/stats").await;
    assert_eq!(stats["parents"][0]["up"], true);
    assert_eq!(stats["parents"][0]["requests"], 1);
}

#[tokio::test]
async fn when_every_parent_is_down_the_client_gets_a_502_naming_them() {
    let (a, b) = (Gate::closed(), Gate::closed());
    let parents = format!("http://{},http://{}", a.addr, b.addr);
    let child = start(&["--parent", &parents, "--parent-backoff", "60"]).await;
    let origin = Origin::fixed("never").await;
    let names = format!("no parent proxy reachable ({}, {})", a.addr, b.addr);
    for _ in 0..2 {
        // The second time both are backed off and not tried at all.
        let response = exchange(child.addr, &get_request(&origin.url("/x"))).await;
        assert_eq!(status(&response), 502);
        assert!(body(&response).contains(&names), "{}", body(&response));
    }
    child.stderr.wait_for("parent proxy down", 2).await;
    let request = connect_request(&origin.addr.to_string(), "");
    let response = exchange(child.addr, request.as_bytes()).await;
    assert_eq!(status(&response), 502);
    assert!(body(&response).contains(&names), "{}", body(&response));
    assert_eq!(origin.request_count(), 0);
    assert_eq!(
        child.stderr.count("parent proxy down"),
        2,
        "backed off: not tried"
    );
}

#[tokio::test]
async fn keep_alive_connections_to_an_http_parent_are_reused_across_clients() {
    let instance = parent("pooled").await;
    let mut gate = Gate::closed();
    gate.open(instance.addr);
    let child = start(&["--parent", &format!("http://{}", gate.addr)]).await;
    let (one, two) = (Origin::fixed("one").await, Origin::fixed("two").await);
    for (origin, path) in [(&one, "/a"), (&two, "/b"), (&one, "/c")] {
        // A new client connection each time, and two different origins.
        let response = exchange(child.addr, &get_request(&origin.url(path))).await;
        assert_eq!(
            status(&response),
            200,
            "{}",
            String::from_utf8_lossy(&response)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        gate.accepted(),
        1,
        "one connection to the parent carried all three"
    );
    assert_eq!(one.request_count() + two.request_count(), 3);
}

/// The metrics address the binary announced.
fn metrics_addr(proxy: &ProxyProcess) -> std::net::SocketAddr {
    proxy
        .stderr
        .text()
        .lines()
        .find_map(|line| {
            let rest = line.split("metrics on http://").nth(1)?;
            rest.trim().trim_end_matches('/').parse().ok()
        })
        .expect("metrics announced")
}
