//! Access control end to end: every rule kind and every bypass spelling refused with
//! `403` for plain HTTP and CONNECT before the origin is contacted, the safe default
//! for local targets, CONNECT ports, client allow lists, Basic proxy authentication
//! (each malformed form, clear and bcrypt users, the credentials kept from origins and
//! logs), bad files failing the start, and SIGHUP reloads while a tunnel stays up.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The 403 body for a destination on the access list.
const BLOCKED: &str = "Forbidden: this destination is blocked by the proxy's access list.\n";
/// Longest body a refusal may carry: a short line, not a page.
const SHORT_BODY: usize = 200;

/// A scratch directory for one test's files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("proxy-access-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A plain-HTTP request for `authority` on a fresh connection, read until the proxy closes.
async fn get(proxy: SocketAddr, authority: &str, extra: &str) -> Vec<u8> {
    let request = format!(
        "GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n{extra}Connection: close\r\n\r\n"
    );
    exchange(proxy, request.as_bytes()).await
}

/// A CONNECT that the proxy is expected to refuse: it answers and closes. Bytes sent
/// behind the head must never be read as a request.
async fn refused_connect(proxy: SocketAddr, authority: &str, extra: &str, behind: &str) -> Vec<u8> {
    let request =
        format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n{behind}");
    exchange(proxy, request.as_bytes()).await
}

/// Opens a tunnel to `authority`: the proxy answers 200 and relays from then on.
async fn open_tunnel(proxy: SocketAddr, authority: &str, extra: &str) -> TcpStream {
    let mut stream = within(TcpStream::connect(proxy)).await.unwrap();
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert_eq!(head, b"HTTP/1.1 200 Connection Established\r\n\r\n");
    stream
}

async fn assert_echoes(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
    let mut back = vec![0; bytes.len()];
    within(stream.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, bytes);
}

/// An echo server on 127.0.0.1: what it reads, it writes back, until EOF.
async fn echo_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// The body of a complete response.
fn body(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response);
    text.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string())
}

/// One `403` with a short body containing `reason`, closing the connection: exactly
/// one response on the wire.
fn assert_forbidden(response: &[u8], reason: &str, what: &str) {
    let text = String::from_utf8_lossy(response);
    assert!(
        text.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{what}: {text}"
    );
    assert!(text.contains("\r\nConnection: close\r\n"), "{what}: {text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{what}: {text}");
    let body = body(response);
    assert!(body.contains(reason), "{what}: {body}");
    assert!(body.len() < SHORT_BODY, "{what}: {body}");
}

/// The name check passed and the proxy went on to DNS, which knows no such name.
fn assert_unresolved(response: &[u8], what: &str) {
    let text = String::from_utf8_lossy(response);
    assert!(text.starts_with("HTTP/1.1 502 "), "{what}: {text}");
    assert!(body(response).contains("cannot resolve"), "{what}: {text}");
}

/// A health check for proxies whose rules refuse every 127.0.0.1 origin: a fresh
/// connection is still served, through an origin on `::1` where this machine has one.
async fn assert_healthy_over_v6(proxy: SocketAddr) {
    let Some(origin) = Origin::start_on("[::1]:0", |_| ok("healthy")).await else {
        eprintln!("no IPv6 loopback here; health checked by a fresh refusal only");
        assert_eq!(status(&get(proxy, "127.0.0.1:9", "").await), 403);
        return;
    };
    let response = get(proxy, &origin.addr.to_string(), "").await;
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(response.ends_with(b"healthy"));
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
        assert_forbidden(&get(proxy.addr, &host, "").await, BLOCKED, &host);
        assert_forbidden(
            &refused_connect(proxy.addr, &host, "", "").await,
            BLOCKED,
            &host,
        );
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
        assert_forbidden(&get(proxy.addr, &host, "").await, BLOCKED, &host);
        assert_forbidden(
            &refused_connect(proxy.addr, &host, "", "").await,
            BLOCKED,
            &host,
        );
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
    if let Some(v6) = Origin::start_on("[::1]:0", |_| ok("reached")).await {
        let host = v6.addr.to_string();
        assert_forbidden(&get(proxy.addr, &host, "").await, BLOCKED, &host);
        assert_forbidden(
            &refused_connect(proxy.addr, &host, "", "").await,
            BLOCKED,
            &host,
        );
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
        // Absolute names (a trailing dot) resolve or not depending on this machine's
        // resolver. If one resolves, it must be refused; if not, nothing is reached.
        let resolves = tokio::net::lookup_host(host.as_str())
            .await
            .is_ok_and(|mut a| a.next().is_some());
        for response in [
            get(proxy.addr, &host, "").await,
            refused_connect(proxy.addr, &host, "", "").await,
        ] {
            if spelling.ends_with('.') && !resolves {
                assert_unresolved(&response, &host);
            } else {
                assert_forbidden(&response, BLOCKED, &host);
            }
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
    let smuggled = format!("GET {} HTTP/1.1\r\n\r\n", origin.url("/smuggled"));
    let response = refused_connect(closed.addr, &origin.addr.to_string(), "", &smuggled).await;
    assert_forbidden(&response, refused, "CONNECT");
    assert_eq!(origin.request_count(), 1);
    // Health: a fresh connection from the allowed address is served.
    let mut allowed = connect_from("127.0.0.2", closed.addr).await;
    let request = format!(
        "GET {} HTTP/1.1\r\nConnection: close\r\n\r\n",
        origin.url("/")
    );
    allowed.write_all(request.as_bytes()).await.unwrap();
    assert!(read_to_close(&mut allowed).await.ends_with(b"served"));
}

const CLEAR_USER: (&str, &str) = ("plain", "clear:pass#1");
const BCRYPT_USER: (&str, &str) = ("hashed", "bcrypt pass 2");

/// A users file with one clear-text and one bcrypt user (cost 4, `$2y$` as htpasswd writes).
fn users_file(files: &Scratch) -> PathBuf {
    let hash = bcrypt::hash_with_result(BCRYPT_USER.1, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    files.write(
        "users.txt",
        format!(
            "# users\n{}:{}\n\n{}:{hash}\n",
            CLEAR_USER.0, CLEAR_USER.1, BCRYPT_USER.0
        ),
    )
}

fn basic(scheme: &str, credentials: &[u8]) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(credentials);
    format!("Proxy-Authorization: {scheme} {token}\r\n")
}

fn login((user, password): (&str, &str)) -> String {
    basic("Basic", format!("{user}:{password}").as_bytes())
}

/// One `407` with the Basic challenge, exactly once, closing the connection.
fn assert_challenged(response: &[u8], what: &str) {
    let text = String::from_utf8_lossy(response);
    assert!(
        text.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
        "{what}: {text}"
    );
    let challenges: Vec<&str> = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with("proxy-authenticate:"))
        .collect();
    assert_eq!(
        challenges,
        ["Proxy-Authenticate: Basic realm=\"proxy-server\""],
        "{what}"
    );
    assert!(text.contains("\r\nConnection: close\r\n"), "{what}: {text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{what}: {text}");
    assert!(body(response).len() < SHORT_BODY);
}

#[tokio::test]
async fn bad_credentials_get_407_with_the_challenge() {
    let files = Scratch::new("auth-407");
    let users = users_file(&files);
    let proxy = Proxy::start_with(|c| c.access.auth_file = Some(users)).await;
    let origin = Origin::fixed("must not be reached").await;
    let authority = origin.addr.to_string();
    let cases = [
        ("missing", String::new()),
        ("empty", "Proxy-Authorization: \r\n".to_string()),
        (
            "wrong scheme",
            "Proxy-Authorization: Bearer cGxhaW46eA==\r\n".to_string(),
        ),
        ("scheme only", "Proxy-Authorization: Basic\r\n".to_string()),
        (
            "bad base64",
            "Proxy-Authorization: Basic !!not*base64!!\r\n".to_string(),
        ),
        ("no colon", basic("Basic", b"plainclear:pass#1")),
        ("no colon at all", basic("Basic", b"plain")),
        ("non-UTF-8", basic("Basic", b"plain:\xff\xfe")),
        ("wrong password", login((CLEAR_USER.0, "clear:pass#2"))),
        ("password prefix", login((CLEAR_USER.0, "clear:pass"))),
        ("wrong case user", login(("PLAIN", CLEAR_USER.1))),
        ("unknown user", login(("nobody", CLEAR_USER.1))),
        (
            "wrong bcrypt password",
            login((BCRYPT_USER.0, "bcrypt pass 3")),
        ),
        (
            "other user's password",
            login((BCRYPT_USER.0, CLEAR_USER.1)),
        ),
    ];
    for (what, header) in &cases {
        assert_challenged(&get(proxy.addr, &authority, header).await, what);
    }
    // A refused CONNECT closes: what follows the head is never read as a request.
    let smuggled = format!(
        "GET {} HTTP/1.1\r\n{}\r\n",
        origin.url("/smuggled"),
        login(CLEAR_USER)
    );
    for (what, header) in &cases {
        assert_challenged(
            &refused_connect(proxy.addr, &authority, header, &smuggled).await,
            what,
        );
    }
    assert_eq!(origin.connection_count(), 0);
    // Healthy: a fresh connection with good credentials is served.
    let healthy = Origin::fixed("healthy").await;
    let response = get(proxy.addr, &healthy.addr.to_string(), &login(CLEAR_USER)).await;
    assert!(
        response.ends_with(b"healthy"),
        "{}",
        String::from_utf8_lossy(&response)
    );
}

#[tokio::test]
async fn good_credentials_pass_and_never_reach_the_origin() {
    let files = Scratch::new("auth-ok");
    let users = users_file(&files);
    let proxy = Proxy::start_with(|c| c.access.auth_file = Some(users)).await;
    let origin = Origin::fixed("welcome").await;
    let authority = origin.addr.to_string();
    let mut tokens = Vec::new();
    for user in [CLEAR_USER, BCRYPT_USER] {
        let credentials = format!("{}:{}", user.0, user.1);
        tokens.push(base64::engine::general_purpose::STANDARD.encode(&credentials));
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            let response = get(
                proxy.addr,
                &authority,
                &basic(scheme, credentials.as_bytes()),
            )
            .await;
            assert!(
                response.ends_with(b"welcome"),
                "{scheme} {}: {}",
                user.0,
                String::from_utf8_lossy(&response)
            );
        }
        let mut tunnel = open_tunnel(proxy.addr, &authority, &login(user)).await;
        let request = format!("GET / HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        tunnel.write_all(request.as_bytes()).await.unwrap();
        assert!(read_response(&mut tunnel).await.ends_with(b"welcome"));
        let url = origin.url("/curl");
        let (code, out, err) = curl(&["-x", &proxy.url(), "-U", &credentials, &url]).await;
        assert_eq!((code, out.as_slice()), (0, &b"welcome"[..]), "{err}");
        let (code, out, err) = curl(&["-p", "-x", &proxy.url(), "-U", &credentials, &url]).await;
        assert_eq!((code, out.as_slice()), (0, &b"welcome"[..]), "{err}");
    }
    let (code, out, _) = curl(&[
        "-x",
        &proxy.url(),
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &origin.url("/"),
    ])
    .await;
    assert_eq!((code, out.as_slice()), (0, &b"407"[..]));
    // Seven requests per user, by hand and by curl; none carried the credentials on.
    assert_eq!(origin.request_count(), 14);
    let received = String::from_utf8_lossy(&origin.received()).to_ascii_lowercase();
    assert!(!received.contains("proxy-authorization"), "{received}");
    for secret in [CLEAR_USER.1, BCRYPT_USER.1, &tokens[0], &tokens[1]] {
        assert!(
            !received.contains(&secret.to_ascii_lowercase()),
            "{secret} reached the origin"
        );
    }
}

#[tokio::test]
async fn every_request_on_a_kept_alive_connection_is_checked() {
    let files = Scratch::new("keep-alive");
    let users = users_file(&files);
    let rules = files.write("rules.txt", "blocked.test\n");
    let proxy = Proxy::start_with(|c| {
        c.access.auth_file = Some(users);
        c.access.blacklist = Some(rules);
    })
    .await;
    let origin = Origin::fixed("welcome").await;
    let request = |extra: &str| format!("GET {} HTTP/1.1\r\n{extra}\r\n", origin.url("/"));
    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    stream
        .write_all(request(&login(CLEAR_USER)).as_bytes())
        .await
        .unwrap();
    assert!(read_response(&mut stream).await.ends_with(b"welcome"));
    // Credentials are not remembered per connection: each request carries its own.
    stream.write_all(request("").as_bytes()).await.unwrap();
    assert_challenged(&read_to_close(&mut stream).await, "second request");

    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    stream
        .write_all(request(&login(BCRYPT_USER)).as_bytes())
        .await
        .unwrap();
    assert!(read_response(&mut stream).await.ends_with(b"welcome"));
    let blocked = format!(
        "GET http://blocked.test/ HTTP/1.1\r\n{}\r\n",
        login(BCRYPT_USER)
    );
    stream.write_all(blocked.as_bytes()).await.unwrap();
    assert_forbidden(&read_to_close(&mut stream).await, BLOCKED, "second request");
    // Credentials are checked first: a stranger learns nothing about the list.
    assert_challenged(&get(proxy.addr, "blocked.test", "").await, "stranger");
    assert_eq!(origin.request_count(), 2);
    let response = get(proxy.addr, &origin.addr.to_string(), &login(CLEAR_USER)).await;
    assert!(response.ends_with(b"welcome"));
}

#[tokio::test]
async fn passwords_never_reach_the_log() {
    let files = Scratch::new("auth-log");
    let users = users_file(&files);
    let mut args = vec!["--log-level", "debug", "--auth-file", text(&users)];
    args.extend(LOCAL);
    let (mut proxy, log) = ProxyProcess::start_logged(&args).await;
    let origin = Origin::fixed("welcome").await;
    let echo = echo_origin().await;
    let authority = origin.addr.to_string();
    assert!(
        get(proxy.addr, &authority, &login(CLEAR_USER))
            .await
            .ends_with(b"welcome")
    );
    assert!(
        get(proxy.addr, &authority, &login(BCRYPT_USER))
            .await
            .ends_with(b"welcome")
    );
    drop(open_tunnel(proxy.addr, &echo.to_string(), &login(CLEAR_USER)).await);
    let wrong = ("plain", "wrong-secret-4711");
    assert_challenged(&get(proxy.addr, &authority, &login(wrong)).await, "wrong");
    assert_challenged(
        &get(
            proxy.addr,
            &authority,
            &basic("Basic", b"nocolon-secret-0815"),
        )
        .await,
        "no colon",
    );
    assert_challenged(
        &refused_connect(proxy.addr, &authority, &login(wrong), "").await,
        "CONNECT",
    );
    // Stopping flushes the access log: six records, one per exchange.
    assert_eq!(proxy.stop().await, Some(0));
    let access = proxy.access_log();
    assert_eq!(access.len(), 6, "{access:#?}");
    let proxy_log = std::fs::read_to_string(proxy.log_dir.join("proxy.log")).unwrap_or_default();
    let text = format!("{}\n{}\n{}", access.join("\n"), proxy_log, log.text());
    assert!(
        text.contains("plain") && text.contains("hashed"),
        "user names belong in the log:\n{text}"
    );
    for user in [
        CLEAR_USER,
        BCRYPT_USER,
        wrong,
        ("nocolon", "nocolon-secret-0815"),
    ] {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", user.0, user.1));
        assert!(
            !text.contains(user.1),
            "password {:?} logged:\n{text}",
            user.1
        );
        assert!(!text.contains(&token), "credentials token logged:\n{text}");
    }
}

#[tokio::test]
async fn bad_files_fail_the_start_with_every_line() {
    let files = Scratch::new("bad-files");
    let rules = files.write(
        "rules.txt",
        "# rules\ngood.test\n10.0.0.1/8\n*bad.test\nok.test   # fine\na..b.test\n.squid.test\n",
    );
    let users = files.write(
        "users.txt",
        "alice:pw\nnocolon\nalice:again\nbob:$apr1$x$y\ncarol:\n",
    );
    let run = |args: Vec<String>| async move {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxy-server"))
            .args(["--port", "0"])
            .args(args)
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output();
        let out = within(child).await.unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let args = ["--blacklist", text(&rules), "--auth-file", text(&users)]
        .map(String::from)
        .to_vec();
    let (code, stderr) = run(args).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    let expected = [
        (&rules, [3, 4, 6, 7].as_slice()),
        (&users, [2, 3, 4, 5].as_slice()),
    ];
    for (path, lines) in expected {
        for line in 1..=7 {
            let prefix = format!("{}:{line}: ", text(path));
            let found = stderr.lines().find(|l| l.starts_with(&prefix));
            assert_eq!(found.is_some(), lines.contains(&line), "{prefix}\n{stderr}");
            if let Some(found) = found {
                assert!(found.len() > prefix.len() + 5, "a reason follows: {found}");
            }
        }
    }
    assert!(stderr.contains("did you mean 10.0.0.0/8?"), "{stderr}");
    let missing = files.0.join("missing.txt");
    let (code, stderr) = run(["--blacklist", text(&missing)].map(String::from).to_vec()).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:0: cannot read rules file", text(&missing))),
        "{stderr}"
    );
}

/// Signals the proxy to re-read its access files.
async fn hangup(proxy: &ProxyProcess) {
    let status = within(
        tokio::process::Command::new("kill")
            .args(["-HUP", &proxy.pid().to_string()])
            .status(),
    )
    .await
    .unwrap();
    assert!(status.success());
}

/// Polls (bounded) until a plain request to `authority` gets `expected`.
async fn wait_for_status(proxy: SocketAddr, authority: &str, expected: u16) {
    for _ in 0..100 {
        if status(&get(proxy, authority, "").await) == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{authority} never answered {expected}");
}

#[tokio::test]
async fn sighup_reload_swaps_rules_while_a_tunnel_stays_up() {
    let files = Scratch::new("reload");
    let rules = files.write("rules.txt", "# nothing blocked yet\n");
    let mut args = vec!["--blacklist", text(&rules)];
    args.extend(LOCAL);
    let (mut proxy, log) = ProxyProcess::start_logged(&args).await;
    let echo = echo_origin().await;
    let first = Origin::fixed("first").await;
    let second = Origin::start_on("127.0.0.2:0", |_| ok("second"))
        .await
        .expect("127.0.0.2 is on loopback");
    let (first, second) = (first.addr.to_string(), second.addr.to_string());
    let mut tunnel = open_tunnel(proxy.addr, &echo.to_string(), "").await;
    assert_echoes(&mut tunnel, b"before").await;
    assert!(get(proxy.addr, &second, "").await.ends_with(b"second"));
    assert_unresolved(&get(proxy.addr, "x.reload.test", "").await, "before");

    files.write("rules.txt", "127.0.0.2/32\n*.reload.test\n");
    hangup(&proxy).await;
    wait_for_status(proxy.addr, &second, 403).await;
    assert_forbidden(
        &get(proxy.addr, "x.reload.test", "").await,
        BLOCKED,
        "added",
    );
    assert!(get(proxy.addr, &first, "").await.ends_with(b"first"));
    assert_echoes(&mut tunnel, b"after adding").await;

    // A broken file leaves the rules in force, although the new text drops them.
    files.write("rules.txt", "# lost the rules\n10.0.0.1/8\n");
    hangup(&proxy).await;
    log.wait_for(&format!("{}:2: ", text(&rules)), 1).await;
    assert_forbidden(&get(proxy.addr, &second, "").await, BLOCKED, "kept");

    files.write("rules.txt", "# open again\n");
    hangup(&proxy).await;
    wait_for_status(proxy.addr, &second, 200).await;
    assert_unresolved(&get(proxy.addr, "x.reload.test", "").await, "removed");
    assert_echoes(&mut tunnel, b"after removing").await;

    files.write("rules.txt", "127.0.0.2/32\n*.reload.test\nnot a rule\n");
    hangup(&proxy).await;
    log.wait_for(&format!("{}:3: ", text(&rules)), 1).await;
    assert!(get(proxy.addr, &second, "").await.ends_with(b"second"));
    assert_echoes(&mut tunnel, b"after a broken reload").await;
    assert!(proxy.child.try_wait().unwrap().is_none(), "the proxy died");
    assert_eq!(log.count("access files reloaded"), 2);
    assert!(get(proxy.addr, &first, "").await.ends_with(b"first"));
}

#[tokio::test]
async fn sighup_right_after_start_is_a_reload() {
    let files = Scratch::new("early-hangup");
    let rules = files.write("rules.txt", "blocked.test\n");
    for _ in 0..3 {
        let (mut proxy, log) = ProxyProcess::start_logged(&["--blacklist", text(&rules)]).await;
        // As a supervisor might: reload as soon as the proxy says it is listening.
        hangup(&proxy).await;
        log.wait_for("access files reloaded", 1).await;
        assert!(
            proxy.child.try_wait().unwrap().is_none(),
            "SIGHUP stopped the proxy"
        );
        assert_forbidden(&get(proxy.addr, "blocked.test", "").await, BLOCKED, "after");
    }
}
