//! The policy file end to end: ordered rules, groups, 407 versus 403, destination
//! networks settled against resolved addresses, time windows on an injected clock, the
//! rule in the 403 body — through the proxy in-process with curl and reqwest as clients.
//! The binary's side (`explain`, `--check-config`, flags over the file, the access log
//! and `/metrics`, SIGHUP) is in the child modules.

mod binary;
mod inspection;
mod reload;

use std::path::PathBuf;
use std::sync::Arc;

use proxy_server::acl::{FixedClock, WeekTime};
use proxy_server::config::{Invocation, invocation};

use crate::common::access::{assert_challenged, assert_forbidden};
use crate::common::*;

/// Lines every test policy starts with: loopback origins on any port are allowed by the
/// safe defaults, so the rules alone decide.
pub const LOCAL_KEYS: &str = "allow_local_targets = true\nconnect_ports = \"1-65535\"\n";

/// Writes `policy` (after [`LOCAL_KEYS`]) and a users file with alice and bob into a
/// fresh folder; returns the folder and the policy's path.
pub fn policy_files(name: &str, policy: &str) -> (Scratch, PathBuf) {
    let files = Scratch::new(name);
    files.write("users.txt", "alice:alice-pw\nbob:bob-pw\n");
    let path = files.write("proxy.toml", format!("{LOCAL_KEYS}{policy}"));
    (files, path)
}

/// The proxy in-process with the settings the file gives, `adjust`ed.
pub async fn proxy_from(
    path: &std::path::Path,
    adjust: impl FnOnce(&mut proxy_server::config::Config),
) -> Proxy {
    let args = ["proxy-server", "--config", text(path)];
    let Ok(Invocation::Serve { settings, .. }) = invocation(args.iter().map(Into::into).collect())
    else {
        panic!("{} does not load", path.display());
    };
    Proxy::start_with(|config| {
        config.access = settings.config.access.clone();
        adjust(config);
    })
    .await
}

/// A health check for a proxy whose policy allows anonymous GETs to `origin` only: a
/// fresh connection is still served.
async fn assert_healthy_through(proxy: &Proxy, origin: &Origin) {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/health")
    );
    assert_eq!(status(&exchange(proxy.addr, request.as_bytes()).await), 200);
}

fn staff_policy(first: u16, second: u16) -> String {
    format!(
        "auth_file = \"users.txt\"\ndefault = \"deny\"\n[groups]\nstaff = [\"alice\"]\n\
         [[rules]]\nname = \"not the second origin\"\naction = \"deny\"\nports = [\"{second}\"]\n\
         [[rules]]\nname = \"staff\"\naction = \"allow\"\nusers = [\"@staff\"]\n\
         [[rules]]\naction = \"allow\"\nports = [\"{first}\"]\nmethods = [\"GET\"]\n"
    )
}

#[tokio::test]
async fn first_match_with_users_groups_ports_and_methods_through_curl() {
    let first = Origin::fixed("first").await;
    let second = Origin::fixed("second").await;
    let (_files, path) = policy_files(
        "staff",
        &staff_policy(first.addr.port(), second.addr.port()),
    );
    let proxy = proxy_from(&path, |_| {}).await;
    let via = ["--proxy", &proxy.url()];
    let as_alice = ["--proxy-user", "alice:alice-pw"];
    let as_bob = ["--proxy-user", "bob:bob-pw"];
    let status_of = |out: &(i32, Vec<u8>, String)| String::from_utf8_lossy(&out.1).to_string();
    let write = ["--write-out", "%{http_code}", "--output", "/dev/null"];
    let url = first.url("/a");
    let anonymous_get = curl(&[&via[..], &write, &[&url]].concat()).await;
    assert_eq!(
        status_of(&anonymous_get),
        "200",
        "rule 3 allows anyone's GET"
    );
    let anonymous_post = curl(&[&via[..], &write, &["-X", "POST", &url]].concat()).await;
    assert_eq!(
        status_of(&anonymous_post),
        "407",
        "the staff rule could allow it"
    );
    let alice_post = curl(&[&via[..], &as_alice, &write, &["-X", "POST", &url]].concat()).await;
    assert_eq!(status_of(&alice_post), "200");
    let bob_post = curl(&[&via[..], &as_bob, &write, &["-X", "POST", &url]].concat()).await;
    assert_eq!(status_of(&bob_post), "403", "logged in, no rule allows bob");
    let second_url = second.url("/b");
    let (_, refused, _) = curl(&[&via[..], &as_alice, &["--include", &second_url]].concat()).await;
    assert_forbidden(
        &refused,
        "\"not the second origin\" (rule 1, ",
        "first match wins",
    );
    assert!(String::from_utf8_lossy(&refused).contains(&format!("{}:7)", text(&path))));
    assert_eq!(
        second.request_count(),
        0,
        "a refused request never reaches the origin"
    );
    assert_eq!(
        first.request_count(),
        2,
        "the anonymous GET and alice's POST"
    );
    assert_healthy_through(&proxy, &first).await;
}

#[tokio::test]
async fn reqwest_logs_in_and_anonymous_raw_requests_are_challenged() {
    let first = Origin::fixed("first").await;
    let second = Origin::fixed("second").await;
    let (_files, path) = policy_files(
        "reqwest",
        &staff_policy(first.addr.port(), second.addr.port()),
    );
    let proxy = proxy_from(&path, |_| {}).await;
    let client = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::http(proxy.url())
                .unwrap()
                .basic_auth("alice", "alice-pw"),
        )
        .build()
        .unwrap();
    let response = within(client.put(first.url("/put")).body("x").send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(within(response.text()).await.unwrap(), "first");
    let raw = format!(
        "DELETE {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        first.url("/d")
    );
    assert_challenged(
        &exchange(proxy.addr, raw.as_bytes()).await,
        "anonymous DELETE",
    );
    assert_healthy_through(&proxy, &first).await;
}

#[tokio::test]
async fn destination_networks_meet_names_through_their_resolved_addresses() {
    let origin = Origin::fixed("origin").await;
    let echo = echo_origin().await;
    let policy = "[[rules]]\nname = \"no loopback writes\"\naction = \"deny\"\n\
                  dest = [\"127.0.0.0/8\", \"::1\"]\nmethods = [\"POST\", \"CONNECT\"]\n";
    let (_files, path) = policy_files("networks", policy);
    let proxy = proxy_from(&path, |_| {}).await;
    let url = format!("http://localhost:{}/n", origin.addr.port());
    let get = format!("GET {url} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(status(&exchange(proxy.addr, get.as_bytes()).await), 200);
    let post = format!(
        "POST {url} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
    );
    let refused = exchange(proxy.addr, post.as_bytes()).await;
    assert_forbidden(
        &refused,
        "\"no loopback writes\"",
        "a name resolving into the network",
    );
    let literal = format!(
        "POST http://127.0.0.1:{}/n HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        origin.addr.port()
    );
    assert_forbidden(
        &exchange(proxy.addr, literal.as_bytes()).await,
        "no loopback writes",
        "a literal",
    );
    assert_eq!(origin.request_count(), 1, "only the GET arrived");
    let tunnel = refused_connect_to(proxy.addr, &format!("localhost:{}", echo.port())).await;
    assert_forbidden(
        &tunnel,
        "no loopback writes",
        "CONNECT settled in the dialer",
    );
    proxy.assert_healthy().await;
}

async fn refused_connect_to(proxy: std::net::SocketAddr, authority: &str) -> Vec<u8> {
    crate::common::access::refused_connect(
        proxy,
        authority,
        "",
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
}

#[tokio::test]
async fn time_windows_follow_the_injected_clock() {
    let origin = Origin::fixed("open").await;
    let policy = "default = \"deny\"\n[[rules]]\nname = \"office hours\"\naction = \"allow\"\n\
                  hours = [\"Mon-Fri 08:00-18:00\"]\n";
    let (_files, path) = policy_files("hours", policy);
    for (day, time, expected) in [
        ("Wed", "12:00", 200),
        ("Wed", "18:00", 403),
        ("Sun", "12:00", 403),
    ] {
        let now = WeekTime::parse(day, time).unwrap();
        let proxy = proxy_from(&path, |config| {
            config.access.clock = Some(Arc::new(FixedClock(now)));
        })
        .await;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            origin.url("/t")
        );
        let response = exchange(proxy.addr, request.as_bytes()).await;
        assert_eq!(status(&response), expected, "{day} {time}");
        if expected == 403 {
            assert!(
                body(&response).contains("default deny"),
                "{}",
                body(&response)
            );
        }
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn a_cached_answer_is_served_only_where_the_rules_would_reach_the_origin() {
    let origin = Origin::start(|_| {
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 6\r\n\r\nstored".to_vec()
    })
    .await;
    let policy = "auth_file = \"users.txt\"\n\
                  [[rules]]\nname = \"bob stays off loopback\"\naction = \"deny\"\n\
                  users = [\"bob\"]\ndest = [\"127.0.0.0/8\", \"::1\"]\n";
    let (_files, path) = policy_files("cache", policy);
    let proxy = proxy_from(&path, |config| {
        crate::common::cache::cache_on(config, 1, 64);
    })
    .await;
    let url = format!("http://localhost:{}/c", origin.addr.port());
    let as_user = |who| {
        format!(
            "GET {url} HTTP/1.1\r\nHost: localhost\r\n{}Connection: close\r\n\r\n",
            login(who)
        )
    };
    let first = exchange(proxy.addr, as_user(("alice", "alice-pw")).as_bytes()).await;
    assert_eq!(body(&first), "stored");
    let again = exchange(proxy.addr, as_user(("alice", "alice-pw")).as_bytes()).await;
    assert_eq!(body(&again), "stored");
    assert_eq!(
        origin.request_count(),
        1,
        "the second answer came from the cache"
    );
    // bob's request waits for localhost's addresses; a stored answer must not skip that.
    let refused = exchange(proxy.addr, as_user(("bob", "bob-pw")).as_bytes()).await;
    assert_forbidden(
        &refused,
        "\"bob stays off loopback\"",
        "a cache hit is settled too",
    );
    assert_eq!(origin.request_count(), 1);
    let healthy = exchange(proxy.addr, as_user(("alice", "alice-pw")).as_bytes()).await;
    assert_eq!(status(&healthy), 200, "a fresh connection is still served");
}
