//! End-to-end tests for observability (issue 5): the real binary carries real traffic to
//! local origins, then the access log, `/stats`, `/metrics`, `/` and the periodic summary are
//! read back and checked against what the clients actually sent and received. Library-level
//! tests of the same parts live in `observe_logging.rs` and `observe_metrics.rs`; these prove
//! the wiring. Every wait is bounded (`within`, or a counted poll loop).

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Polls of a live value before giving up, and the pause between them (5 s in all).
const POLLS: usize = 200;
const POLL_PAUSE: Duration = Duration::from_millis(25);
/// What the proxy answers a CONNECT with (src/connect.rs).
const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// The binary with every stderr line kept, and its metrics address when one was asked for.
struct Running {
    proxy: ProxyProcess,
    stderr: Arc<Mutex<Vec<String>>>,
    drain: Option<tokio::task::JoinHandle<()>>,
    metrics: Option<SocketAddr>,
}

impl Running {
    /// Starts the binary on ephemeral ports with `LOCAL` and `args`, logging to a fresh folder.
    async fn start(args: &[&str]) -> Running {
        let log_dir = temp_dir("observe");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxy-server"))
            .args(["--port", "0", "--log-dir"])
            .arg(&log_dir)
            .args(LOCAL)
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = stderr.clone();
        let (addr, metrics) = within(async {
            let mut metrics = None;
            loop {
                let line = lines.next_line().await.unwrap().expect("exited early");
                kept.lock().unwrap().push(line.clone());
                if let Some(rest) = line.split("metrics on http://").nth(1) {
                    metrics = Some(rest.trim().trim_end_matches('/').parse().unwrap());
                }
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return (rest.trim().parse::<SocketAddr>().unwrap(), metrics);
                }
            }
        })
        .await;
        let drain = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        let proxy = ProxyProcess {
            addr,
            child,
            log_dir,
        };
        Running {
            proxy,
            stderr,
            drain: Some(drain),
            metrics,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.addr
    }

    fn log_file(&self, name: &str) -> PathBuf {
        self.proxy.log_dir.join(name)
    }

    /// SIGTERM, a clean exit, and every stderr line read.
    async fn stop(&mut self) {
        assert_eq!(self.proxy.stop().await, Some(0), "exit code");
        if let Some(drain) = self.drain.take() {
            within(drain).await.unwrap();
        }
    }

    /// `/stats` once every expected exchange is counted and every connection has closed
    /// (the record of an error answer or a tunnel may trail the client's view by a moment).
    async fn settled_stats(&self, requests: u64) -> Value {
        let mut last = Value::Null;
        for _ in 0..POLLS {
            last = get_json(self.metrics.expect("--metrics-addr"), "/stats").await;
            let total: u64 = last["requests"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum();
            if total == requests && last["connections_active"] == 0 && last["tunnels_active"] == 0 {
                return last;
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
        panic!("stats never settled at {requests} requests: {last}");
    }
}

/// One Squid-format access line, split into its twelve fields.
#[derive(Debug, Clone)]
struct Squid {
    elapsed_ms: u64,
    client: String,
    result: String,
    bytes: u64,
    method: String,
    url: String,
    user: String,
    hierarchy: String,
    content_type: String,
    from_client: u64,
    outcome: String,
}

impl Squid {
    fn parse(line: &str) -> Squid {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 12, "twelve fields: {line:?}");
        let (seconds, millis) = f[0].split_once('.').expect("time has milliseconds");
        assert!(seconds.parse::<u64>().unwrap() > 1_600_000_000 && millis.len() == 3);
        let number = |s: &str| s.parse::<u64>().unwrap_or_else(|_| panic!("{s}: {line}"));
        Squid {
            elapsed_ms: number(f[1]),
            client: f[2].into(),
            result: f[3].into(),
            bytes: number(f[4]),
            method: f[5].into(),
            url: f[6].into(),
            user: f[7].into(),
            hierarchy: f[8].into(),
            content_type: f[9].into(),
            from_client: number(f[10]),
            outcome: f[11].into(),
        }
    }
}

impl Squid {
    /// Checks how the exchange ended and the bytes (to the client, from the client) it moved.
    fn assert_is(&self, result: &str, hierarchy: &str, outcome: &str, bytes: (u64, u64)) {
        let got = (
            self.result.as_str(),
            self.hierarchy.as_str(),
            self.outcome.as_str(),
        );
        assert_eq!(got, (result, hierarchy, outcome), "{self:?}");
        assert_eq!(
            (self.bytes, self.from_client),
            bytes,
            "bytes to/from client: {self:?}"
        );
    }
}

/// The one line whose method and URL are these.
fn line_for(lines: &[Squid], method: &str, url: &str) -> Squid {
    let found: Vec<&Squid> = lines
        .iter()
        .filter(|l| l.method == method && l.url == url)
        .collect();
    assert_eq!(found.len(), 1, "{method} {url} in {lines:#?}");
    found[0].clone()
}

fn squid_lines(running: &Running) -> Vec<Squid> {
    running
        .proxy
        .access_log()
        .iter()
        .map(|l| Squid::parse(l))
        .collect()
}

/// Sends a request on a fresh connection; returns (bytes sent, the whole response).
async fn send(addr: SocketAddr, request: &str) -> (u64, Vec<u8>) {
    (
        request.len() as u64,
        exchange(addr, request.as_bytes()).await,
    )
}

/// `GET path` on the metrics listener: (head, body).
async fn get(metrics: SocketAddr, path: &str) -> (String, Vec<u8>) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n");
    let raw = exchange(metrics, request.as_bytes()).await;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    (head, raw[end + 4..].to_vec())
}

async fn get_json(metrics: SocketAddr, path: &str) -> Value {
    let (head, body) = get(metrics, path).await;
    assert!(
        head.to_ascii_lowercase().contains("application/json"),
        "{head}"
    );
    serde_json::from_slice(&body).expect("/stats is JSON")
}

/// A TCP origin that answers every chunk it reads by sending it back twice, so the two
/// directions of a tunnel carry different byte counts; closes when the client does.
async fn doubling_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 16 * 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    for _ in 0..2 {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Opens a tunnel to a `doubling_echo`, sends `size` bytes through it, reads the doubled echo,
/// and closes. Returns (bytes sent, bytes received), heads included.
async fn tunnel(proxy: SocketAddr, target: SocketAddr, extra: &str, size: usize) -> (u64, u64) {
    let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n");
    let mut stream = within(TcpStream::connect(proxy)).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_head(&mut stream).await, ESTABLISHED);
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    stream.write_all(&payload).await.unwrap();
    let mut echoed = vec![0; 2 * size];
    within(stream.read_exact(&mut echoed)).await.unwrap();
    assert_eq!(&echoed[..size], &payload[..]);
    stream.shutdown().await.unwrap();
    assert!(read_to_close(&mut stream).await.is_empty());
    let sent = head.len() + size;
    let received = ESTABLISHED.len() + 2 * size;
    (sent as u64, received as u64)
}

/// A port on 127.0.0.1 that refuses connections.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// An origin that accepts connections and reads requests but never answers.
async fn silent_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0; 1024];
                while let Ok(1..) = stream.read(&mut buf).await {}
            });
        }
    });
    addr
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn basic(credentials: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    format!("Proxy-Authorization: Basic {encoded}\r\n")
}

/// An origin whose answers may be cached for a minute (RFC 9111 §5.2.2.1).
async fn cacheable_origin(body: &'static str) -> Origin {
    Origin::start(move |_| {
        format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await
}

/// Every line of a run without authentication: whole, from 127.0.0.1, no user, no type.
fn anonymous_lines(proxy: &Running, count: usize) -> Vec<Squid> {
    let lines = squid_lines(proxy);
    assert_eq!(lines.len(), count, "{lines:#?}");
    for line in &lines {
        assert_eq!(line.client, "127.0.0.1");
        assert_eq!(line.user, "-", "no authentication, no user");
        assert_eq!(line.content_type, "-");
        assert!(line.elapsed_ms < 10_000);
    }
    lines
}

#[tokio::test]
async fn squid_lines_for_forwarded_cached_and_tunnelled_exchanges() {
    let mut proxy = Running::start(&["--cache"]).await;
    let addr = proxy.addr();

    // Forwarded, by curl: the logged bytes are what curl counted, heads included.
    let origin = Origin::fixed("forwarded body").await;
    let forwarded_url = origin.url("/page?q=1");
    let format = "%{http_code} %{size_header} %{size_download} %{size_request}";
    let proxy_url = format!("http://{addr}");
    let curl_args = ["-x", &proxy_url, "-o", "/dev/null", "-w", format];
    let (code, out, err) = curl(&[&curl_args[..], &[&forwarded_url]].concat()).await;
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8(out).unwrap();
    let numbers: Vec<u64> = out.split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!(numbers[0], 200);
    let (curl_received, curl_sent) = (numbers[1] + numbers[2], numbers[3]);

    // A cacheable answer, asked for twice: a miss, then a hit that never reaches the origin.
    let cached = cacheable_origin("cache me").await;
    let cached_url = cached.url("/cached");
    let request = format!("GET {cached_url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (miss_sent, miss) = send(addr, &request).await;
    let (hit_sent, hit) = send(addr, &request).await;
    assert_eq!(status(&miss), 200);
    assert!(hit.starts_with(b"HTTP/1.1 200") && hit.ends_with(b"cache me"));
    assert_eq!(cached.request_count(), 1, "the second GET was a hit");

    let echo = doubling_echo().await;
    let (tunnel_sent, tunnel_received) = tunnel(addr, echo, "", 3000).await;
    proxy.stop().await;

    let lines = anonymous_lines(&proxy, 4);
    let direct = "HIER_DIRECT/127.0.0.1";
    line_for(&lines, "GET", &forwarded_url).assert_is(
        "TCP_MISS/200",
        direct,
        "allowed",
        (curl_received, curl_sent),
    );
    let cached_lines: Vec<&Squid> = lines.iter().filter(|l| l.url == cached_url).collect();
    assert_eq!(cached_lines.len(), 2);
    let miss_bytes = (miss.len() as u64, miss_sent);
    cached_lines[0].assert_is("TCP_MISS/200", direct, "allowed", miss_bytes);
    let hit_bytes = (hit.len() as u64, hit_sent);
    cached_lines[1].assert_is("TCP_HIT/200", "HIER_NONE/-", "allowed", hit_bytes);
    line_for(&lines, "CONNECT", &echo.to_string()).assert_is(
        "TCP_TUNNEL/200",
        direct,
        "tunnel",
        (tunnel_received, tunnel_sent),
    );
}

#[tokio::test]
async fn squid_lines_for_blocked_failed_and_malformed_requests() {
    let dir = temp_dir("observe-rules");
    let blacklist = write_file(&dir, "blacklist", "blocked.example\n");
    let args = ["--blacklist", &blacklist, "--response-timeout", "1"];
    let mut proxy = Running::start(&args).await;
    let addr = proxy.addr();
    let get = |url: &str| format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n");

    let blocked_url = "http://blocked.example/secret";
    let (blocked_sent, blocked) = send(addr, &get(blocked_url)).await;
    assert_eq!(status(&blocked), 403);
    let failed_url = format!("http://{}/nowhere", closed_port().await);
    let (failed_sent, failed) = send(addr, &get(&failed_url)).await;
    assert_eq!(status(&failed), 502);
    let timed_out_url = format!("http://{}/slow", silent_origin().await);
    let (timed_out_sent, timed_out) = send(addr, &get(&timed_out_url)).await;
    assert_eq!(status(&timed_out), 504);
    let (garbage_sent, garbage) = send(addr, "GARBAGE\r\n\r\n").await;
    assert_eq!(status(&garbage), 400);
    proxy.stop().await;

    let lines = anonymous_lines(&proxy, 4);
    let none = "HIER_NONE/-";
    let blocked_bytes = (blocked.len() as u64, blocked_sent);
    line_for(&lines, "GET", blocked_url).assert_is(
        "TCP_DENIED/403",
        none,
        "blocked",
        blocked_bytes,
    );
    // Refused connection: no origin reached. Silent origin: connected, then no answer.
    let failed_bytes = (failed.len() as u64, failed_sent);
    line_for(&lines, "GET", &failed_url).assert_is(
        "TCP_MISS/502",
        none,
        "upstream_error",
        failed_bytes,
    );
    let line = line_for(&lines, "GET", &timed_out_url);
    let timed_out_bytes = (timed_out.len() as u64, timed_out_sent);
    line.assert_is(
        "TCP_MISS/504",
        "HIER_DIRECT/127.0.0.1",
        "upstream_error",
        timed_out_bytes,
    );
    assert!(
        line.elapsed_ms >= 1000,
        "waited the response timeout: {line:?}"
    );
    let garbage_bytes = (garbage.len() as u64, garbage_sent);
    line_for(&lines, "-", "-").assert_is("NONE_NONE/400", none, "malformed", garbage_bytes);
}

#[tokio::test]
async fn refused_credentials_are_logged_without_any_trace_of_the_password() {
    let dir = temp_dir("observe-auth");
    let users = write_file(&dir, "users", "user:secretpw\n");
    let mut proxy = Running::start(&["--auth-file", &users, "--log-level", "debug"]).await;
    let origin = Origin::fixed("for members").await;
    // Distinct paths: a refusal's record may be written just after the client saw the close.
    let request = |path: &str, credentials: &str| {
        let url = origin.url(path);
        format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{credentials}\r\n")
    };
    let wrong = "user:wrong-Pw-4711";
    let (wrong_sent, refused) = send(proxy.addr(), &request("/wrong", &basic(wrong))).await;
    assert_eq!(status(&refused), 407);
    assert!(String::from_utf8_lossy(&refused).contains("Proxy-Authenticate: Basic"));
    let (_, anonymous) = send(proxy.addr(), &request("/anonymous", "")).await;
    assert_eq!(status(&anonymous), 407);
    let member = request("/member", &basic("user:secretpw"));
    let (_, allowed) = send(proxy.addr(), &member).await;
    assert_eq!(status(&allowed), 200);
    proxy.stop().await;

    let lines = squid_lines(&proxy);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for path in ["/wrong", "/anonymous"] {
        let line = line_for(&lines, "GET", &origin.url(path));
        assert_eq!(line.result, "TCP_DENIED/407");
        assert_eq!(line.outcome, "auth_failed");
        assert_eq!(line.user, "-", "a refused login names no user");
        assert_eq!(line.hierarchy, "HIER_NONE/-");
    }
    let line = line_for(&lines, "GET", &origin.url("/wrong"));
    assert_eq!(
        (line.bytes, line.from_client),
        (refused.len() as u64, wrong_sent)
    );
    let line = line_for(&lines, "GET", &origin.url("/member"));
    assert_eq!(
        (line.result.as_str(), line.user.as_str()),
        ("TCP_MISS/200", "user")
    );
    assert_eq!(line.from_client, member.len() as u64);

    // Neither password, nor the credentials as sent on the wire, anywhere the proxy writes.
    let encode = |c: &str| base64::engine::general_purpose::STANDARD.encode(c);
    let secrets = [
        "secretpw".to_string(),
        "wrong-Pw-4711".to_string(),
        encode(wrong),
        encode("user:secretpw"),
    ];
    let stderr = proxy.stderr.lock().unwrap().join("\n");
    assert!(stderr.contains("listening on"), "stderr was captured");
    let mut places = vec![("stderr".to_string(), stderr)];
    for entry in std::fs::read_dir(&proxy.proxy.log_dir).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        places.push((path.display().to_string(), text));
    }
    assert!(
        places
            .iter()
            .any(|(p, t)| p.ends_with("proxy.log") && !t.is_empty())
    );
    for (place, text) in &places {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{secret:?} found in {place}"
            );
        }
    }
}

#[tokio::test]
async fn json_lines_parse_and_carry_every_documented_field() {
    let dir = temp_dir("observe-json");
    let blacklist = write_file(&dir, "blacklist", "blocked.example\n");
    let mut proxy = Running::start(&["--log-format", "json", "--blacklist", &blacklist]).await;
    let addr = proxy.addr();
    let origin = Origin::fixed("json body").await;
    let url = origin.url("/j?x=\"quoted\"");
    let request = format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (sent, forwarded) = send(addr, &request).await;
    assert_eq!(status(&forwarded), 200);
    let (_, blocked) = send(addr, "GET http://blocked.example/ HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&blocked), 403);
    let closed = closed_port().await;
    let (_, failed) = send(addr, &format!("GET http://{closed}/ HTTP/1.1\r\n\r\n")).await;
    assert_eq!(status(&failed), 502);
    let echo = doubling_echo().await;
    let (tunnel_sent, tunnel_received) = tunnel(addr, echo, "", 100).await;
    let (_, garbage) = send(addr, "GARBAGE\r\n\r\n").await;
    assert_eq!(status(&garbage), 400);
    proxy.stop().await;

    let keys: HashSet<&str> = [
        "time",
        "duration_ms",
        "client",
        "user",
        "method",
        "target",
        "status",
        "bytes_to_client",
        "bytes_from_client",
        "cache",
        "upstream",
        "outcome",
        "squid_code",
    ]
    .into();
    let lines: Vec<Value> = proxy
        .proxy
        .access_log()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 5);
    for line in &lines {
        let object = line.as_object().unwrap();
        assert_eq!(
            object.keys().map(String::as_str).collect::<HashSet<_>>(),
            keys
        );
        let time = line["time"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T');
        assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(line["user"].is_null());
        assert!(line["duration_ms"].is_u64() && line["bytes_from_client"].as_u64() > Some(0));
    }
    let find = |outcome: &str| {
        let found: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == outcome).collect();
        assert_eq!(found.len(), 1, "{outcome}");
        found[0].clone()
    };
    let line = find("allowed");
    assert_eq!(line["target"], url, "quotes survive JSON escaping");
    assert_eq!(
        (line["method"].as_str(), line["status"].as_u64()),
        (Some("GET"), Some(200))
    );
    assert_eq!(line["bytes_to_client"], forwarded.len() as u64);
    assert_eq!(line["bytes_from_client"], sent);
    assert_eq!(line["upstream"], origin.addr.to_string());
    assert_eq!(
        (line["cache"].as_str(), line["squid_code"].as_str()),
        (Some("-"), Some("TCP_MISS"))
    );
    let line = find("blocked");
    assert_eq!(
        (line["status"].as_u64(), line["squid_code"].as_str()),
        (Some(403), Some("TCP_DENIED"))
    );
    assert!(line["upstream"].is_null());
    let line = find("upstream_error");
    assert_eq!(
        (line["status"].as_u64(), line["bytes_to_client"].as_u64()),
        (Some(502), Some(failed.len() as u64))
    );
    let line = find("tunnel");
    assert_eq!(line["target"], echo.to_string());
    assert_eq!(line["upstream"], echo.to_string());
    assert_eq!(line["bytes_to_client"], tunnel_received);
    assert_eq!(line["bytes_from_client"], tunnel_sent);
    let line = find("malformed");
    assert_eq!(
        (line["method"].as_str(), line["squid_code"].as_str()),
        (Some("-"), Some("NONE_NONE"))
    );
}

/// Bytes of path per request in the rotation tests: about 8 KiB lines, so 1 MiB holds ~128.
const LONG_PATH: usize = 8000;

/// Makes `count` requests on one keep-alive connection, each URL carrying its sequence
/// number and a long filler, so the log passes `--log-max-size 1` every ~128 requests.
async fn long_url_requests(proxy: SocketAddr, origin: &Origin, count: usize) {
    let filler = "x".repeat(LONG_PATH);
    let mut stream = within(TcpStream::connect(proxy)).await.unwrap();
    for seq in 0..count {
        let url = origin.url(&format!("/{seq}/{filler}"));
        let request = format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let response = read_response(&mut stream).await;
        assert!(response.ends_with(b"r"), "request {seq}");
    }
}

/// The sequence number a long-URL line carries, after checking the line is whole.
fn sequence_of(line: &str) -> usize {
    let line = Squid::parse(line);
    assert_eq!(
        (line.result.as_str(), line.outcome.as_str()),
        ("TCP_MISS/200", "allowed")
    );
    let path = line.url.split('/').skip(3).collect::<Vec<_>>();
    assert_eq!(path[1].len(), LONG_PATH, "the URL is whole");
    path[0].parse().unwrap()
}

/// Log files in `dir` and their sequence numbers, oldest file first.
fn rotated_logs(dir: &Path, keep: usize) -> Vec<(String, u64, Vec<usize>)> {
    let mut files = Vec::new();
    for n in (1..=keep).rev() {
        let name = format!("access.log.{n}");
        if dir.join(&name).exists() {
            files.push(name);
        }
    }
    files.push("access.log".into());
    files
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            assert!(text.ends_with('\n'), "{name} ends with a whole line");
            let seqs = text.lines().map(sequence_of).collect();
            (name, text.len() as u64, seqs)
        })
        .collect()
}

#[tokio::test]
async fn rotation_keeps_n_files_of_whole_lines_ending_at_the_last_request() {
    const REQUESTS: usize = 600;
    let mut proxy = Running::start(&["--log-max-size", "1", "--log-keep", "3"]).await;
    let origin = Origin::fixed("r").await;
    long_url_requests(proxy.addr(), &origin, REQUESTS).await;
    proxy.stop().await;

    let mut names: Vec<String> = std::fs::read_dir(&proxy.proxy.log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let expected = [
        "access.log",
        "access.log.1",
        "access.log.2",
        "access.log.3",
        "proxy.log",
    ];
    assert_eq!(names, expected, "over 4 MiB written, 3 rotated files kept");

    let files = rotated_logs(&proxy.proxy.log_dir, 3);
    let line_bytes = files[0].1 / files[0].2.len() as u64;
    for (name, size, _) in &files[..3] {
        assert!(*size <= 1 << 20, "{name} is {size} bytes");
        assert!(
            *size > (1 << 20) - line_bytes,
            "{name} was rotated only when full"
        );
    }
    // No line lost or split: the kept lines are exactly the newest requests, in order.
    let seqs: Vec<usize> = files.iter().flat_map(|f| f.2.clone()).collect();
    let first = REQUESTS - seqs.len();
    assert_eq!(seqs, (first..REQUESTS).collect::<Vec<_>>());
}

#[tokio::test]
async fn rotated_files_add_up_to_every_request_made() {
    const REQUESTS: usize = 600;
    let mut proxy = Running::start(&["--log-max-size", "1", "--log-keep", "50"]).await;
    let origin = Origin::fixed("r").await;
    long_url_requests(proxy.addr(), &origin, REQUESTS).await;
    proxy.stop().await;
    let files = rotated_logs(&proxy.proxy.log_dir, 50);
    assert_eq!(files.len(), 5, "4 rotations for ~4.6 MiB");
    assert!(!proxy.log_file("access.log.5").exists());
    let seqs: Vec<usize> = files.iter().flat_map(|f| f.2.clone()).collect();
    assert_eq!(seqs, (0..REQUESTS).collect::<Vec<_>>());
}

#[tokio::test]
async fn statistics_after_a_known_mix_of_traffic_match_exactly() {
    let dir = temp_dir("observe-mix");
    let users = write_file(&dir, "users", "user:secretpw\n");
    let blacklist = write_file(&dir, "blacklist", "blocked.example\n");
    let mut proxy = Running::start(&[
        "--auth-file",
        &users,
        "--blacklist",
        &blacklist,
        "--metrics-addr",
        "127.0.0.1:0",
    ])
    .await;
    let addr = proxy.addr();
    let login = basic("user:secretpw");
    let origin = Origin::fixed("mixed").await;
    let reply_bytes = ok("mixed").len() as u64;
    let (mut sent, mut received) = (0u64, 0u64);
    let mut tally = |(s, r): (u64, Vec<u8>), expected: u16| {
        assert_eq!(status(&r), expected, "{}", String::from_utf8_lossy(&r));
        sent += s;
        received += r.len() as u64;
    };

    // 5 forwarded: three on one kept-alive connection, two on their own.
    let mut stream = within(TcpStream::connect(addr)).await.unwrap();
    for n in 0..3 {
        let close = if n == 2 { "Connection: close\r\n" } else { "" };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\n{login}{close}\r\n",
            origin.url("/k")
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        tally(
            (request.len() as u64, read_response(&mut stream).await),
            200,
        );
    }
    assert!(read_to_close(&mut stream).await.is_empty());
    for _ in 0..2 {
        let request = format!(
            "GET {} HTTP/1.1\r\n{login}Connection: close\r\n\r\n",
            origin.url("/o")
        );
        tally(send(addr, &request).await, 200);
    }
    // 2 blocked, 3 refused logins, 1 malformed, 1 unreachable origin.
    for path in ["/a", "/b"] {
        let request = format!("GET http://blocked.example{path} HTTP/1.1\r\n{login}\r\n");
        tally(send(addr, &request).await, 403);
    }
    for credentials in [
        basic("user:wrong"),
        "Proxy-Authorization: Basic !!\r\n".into(),
    ] {
        let request = format!("GET {} HTTP/1.1\r\n{credentials}\r\n", origin.url("/x"));
        tally(send(addr, &request).await, 407);
    }
    // Refused with its body already read alongside the head: those bytes came from the client.
    let upload = format!(
        "POST {} HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world",
        origin.url("/up")
    );
    tally(send(addr, &upload).await, 407);
    tally(send(addr, "GARBAGE\r\n\r\n").await, 400);
    let closed = closed_port().await;
    tally(
        send(
            addr,
            &format!("GET http://{closed}/ HTTP/1.1\r\n{login}\r\n"),
        )
        .await,
        502,
    );
    // 1 tunnel: 500 bytes up, 1000 down.
    let echo = doubling_echo().await;
    let (tunnel_sent, tunnel_received) = tunnel(addr, echo, &login, 500).await;
    sent += tunnel_sent;
    received += tunnel_received;

    let stats = proxy.settled_stats(13).await;
    let requests = &stats["requests"];
    let counts = OUTCOMES.map(|outcome| requests[outcome].as_u64().unwrap());
    assert_eq!(counts, [5, 2, 3, 1, 1, 1], "{stats}");
    assert_eq!(stats["connections_accepted"], 11, "{stats}");
    assert_eq!(
        (
            stats["tunnels_opened"].as_u64(),
            stats["tunnels_active"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(
        stats["bytes_to_client"], received,
        "what the clients received"
    );
    assert_eq!(stats["bytes_from_client"], sent, "what the clients sent");
    let origin_sent = origin.received().len() as u64;
    assert_eq!(stats["bytes_to_origin"], origin_sent + 500);
    assert_eq!(stats["bytes_from_origin"], 5 * reply_bytes + 1000);
    assert_eq!(
        stats["request_durations"]["count"], 12,
        "tunnels are not timed"
    );
    assert_eq!(stats["log_lines_dropped"], 0);
    assert_eq!(stats["panics_caught"], 0);

    let metrics = proxy.metrics.unwrap();
    assert_metrics_agree(metrics, &stats).await;
    assert_dashboard(metrics).await;

    proxy.stop().await;
    let lines = squid_lines(&proxy);
    assert_eq!(lines.len(), 13);
    assert_eq!(lines.iter().map(|l| l.bytes).sum::<u64>(), received);
    assert_eq!(lines.iter().map(|l| l.from_client).sum::<u64>(), sent);
    let proxy_log = std::fs::read_to_string(proxy.log_file("proxy.log")).unwrap();
    assert!(proxy_log.contains("final: connections 11 (0 active) | requests 13: allowed 5 blocked 2 auth_failed 3 malformed 1 upstream_error 1 tunnel 1"), "{proxy_log}");
}

/// The `/stats` keys under `requests`, in the documented order.
const OUTCOMES: [&str; 6] = [
    "allowed",
    "blocked",
    "auth_failed",
    "malformed",
    "upstream_error",
    "tunnel",
];

/// Each `/stats` number and the Prometheus sample that must carry the same value.
const STATS_AS_METRICS: [(&str, &str); 16] = [
    ("connections_accepted", "proxy_connections_accepted_total"),
    ("connections_active", "proxy_connections_active"),
    ("tunnels_opened", "proxy_tunnels_opened_total"),
    ("tunnels_active", "proxy_tunnels_active"),
    ("bytes_from_client", "proxy_client_received_bytes_total"),
    ("bytes_to_client", "proxy_client_sent_bytes_total"),
    ("bytes_to_origin", "proxy_origin_sent_bytes_total"),
    ("bytes_from_origin", "proxy_origin_received_bytes_total"),
    ("cache_hits", "proxy_cache_hits_total"),
    ("cache_misses", "proxy_cache_misses_total"),
    ("cache_evictions", "proxy_cache_evictions_total"),
    ("cache_bytes_held", "proxy_cache_held_bytes"),
    ("cache_entries", "proxy_cache_entries"),
    ("log_lines_dropped", "proxy_log_lines_dropped_total"),
    ("panics_caught", "proxy_panics_caught_total"),
    ("request_durations", "proxy_request_duration_seconds_count"),
];

/// `/metrics` is valid Prometheus text and says what `/stats` said (no traffic in between).
async fn assert_metrics_agree(metrics: SocketAddr, stats: &Value) {
    let (head, body) = get(metrics, "/metrics").await;
    let content_type = head.to_ascii_lowercase();
    assert!(
        content_type.contains("content-type: text/plain") || content_type.contains("openmetrics"),
        "{head}"
    );
    let samples = check_exposition(&String::from_utf8(body).unwrap());
    let value = |name: &str, outcome: Option<&str>| {
        let found: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == name && s.label("outcome") == outcome)
            .map(|s| s.value)
            .collect();
        assert_eq!(found.len(), 1, "{name} {outcome:?}");
        found[0] as u64
    };
    for outcome in OUTCOMES {
        let counted = stats["requests"][outcome].as_u64().unwrap();
        assert_eq!(
            value("proxy_requests_total", Some(outcome)),
            counted,
            "{outcome}"
        );
    }
    for (key, metric) in STATS_AS_METRICS {
        let counted = match &stats[key] {
            Value::Object(histogram) => histogram["count"].as_u64(),
            number => number.as_u64(),
        };
        assert_eq!(Some(value(metric, None)), counted, "{key} as {metric}");
    }
}

/// The dashboard loads, has no outside assets, reads `/stats` and refreshes itself.
async fn assert_dashboard(metrics: SocketAddr) {
    let (head, page) = get(metrics, "/").await;
    let page = String::from_utf8(page).unwrap();
    assert!(head.to_ascii_lowercase().contains("text/html"), "{head}");
    assert!(page.to_ascii_lowercase().starts_with("<!doctype html>"));
    assert!(page.contains("/stats"), "the page reads /stats");
    assert!(page.contains("setInterval") || page.contains("http-equiv=\"refresh\""));
    let outside = ["src=\"http", "href=\"http", "src=\"//", "href=\"//"];
    assert!(!outside.iter().any(|o| page.contains(o)), "self-contained");
}

/// One sample of a Prometheus text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name{label="value",…} value`, with label values escaped as the format says.
fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(is_name(name), "metric name: {line}");
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        while !rest.starts_with('}') {
            let (key, after) = rest
                .split_once("=\"")
                .unwrap_or_else(|| panic!("label: {line}"));
            assert!(is_name(key) && !key.contains(':'), "label name: {line}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => panic!("escape: {line}"),
                    },
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value: {line}"),
                }
            };
            labels.push((key.to_string(), value));
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        rest = &rest[1..];
    }
    let mut parts = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("space: {line}"))
        .split(' ');
    let value = match parts.next().unwrap() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().unwrap_or_else(|_| panic!("value: {line}")),
    };
    if let Some(timestamp) = parts.next() {
        assert!(timestamp.parse::<i64>().is_ok(), "timestamp: {line}");
    }
    assert!(parts.next().is_none(), "trailing text: {line}");
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

/// Checks a whole exposition: every family has HELP then TYPE before its samples, samples of a
/// family are contiguous, and each histogram's buckets rise to `+Inf`, which equals `_count`.
fn check_exposition(text: &str) -> Vec<Sample> {
    let mut helped = HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    for line in text.lines() {
        if line == "# EOF" || line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(is_name(name) && helped.insert(name.to_string()), "{line}");
            assert!(!types.contains_key(name), "HELP after TYPE: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE without HELP first: {line}");
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "untyped",
                    "unknown",
                    "info"
                ]
                .contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "declared twice: {line}"
            );
            current = Some(name.into());
        } else {
            assert!(!line.starts_with('#'), "unknown comment: {line}");
            let sample = parse_sample(line);
            let family = [
                "", "_total", "_bucket", "_sum", "_count", "_created", "_info",
            ]
            .iter()
            .filter_map(|suffix| sample.name.strip_suffix(suffix))
            .find(|base| types.contains_key(*base))
            .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
            assert_eq!(
                current.as_deref(),
                Some(family),
                "family not contiguous: {line}"
            );
            samples.push(sample);
        }
    }
    let histograms = types.iter().filter(|(_, kind)| *kind == "histogram");
    for (family, _) in histograms {
        let buckets: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
            .collect();
        assert!(buckets.len() > 1, "{family} has buckets");
        let bounds: Vec<f64> = buckets
            .iter()
            .map(|s| s.label("le").unwrap().parse().unwrap())
            .collect();
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "{family} le ascending: {bounds:?}"
        );
        assert!(
            buckets.windows(2).all(|w| w[0].value <= w[1].value),
            "{family} cumulative"
        );
        assert_eq!(buckets.last().unwrap().label("le"), Some("+Inf"));
        let count = samples
            .iter()
            .find(|s| s.name == format!("{family}_count"))
            .unwrap();
        assert_eq!(
            buckets.last().unwrap().value,
            count.value,
            "{family} +Inf equals _count"
        );
        assert!(samples.iter().any(|s| s.name == format!("{family}_sum")));
    }
    assert!(!samples.is_empty());
    samples
}

#[tokio::test]
async fn stats_interval_writes_summaries_and_a_final_one_at_shutdown() {
    let mut proxy = Running::start(&["--stats-interval", "1"]).await;
    let origin = Origin::fixed("summarised").await;
    let request = format!(
        "GET {} HTTP/1.1\r\nConnection: close\r\n\r\n",
        origin.url("/s")
    );
    let (_, response) = send(proxy.addr(), &request).await;
    assert_eq!(status(&response), 200);
    let log = proxy.log_file("proxy.log");
    let mut periodic = None;
    for _ in 0..POLLS {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        periodic = text
            .lines()
            .find(|l| l.contains("proxy_server::stats") && l.contains("requests 1: allowed 1"))
            .map(str::to_string);
        if periodic.is_some() {
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    let periodic = periodic.expect("a summary within 5 s of a 1 s interval");
    assert!(
        !periodic.contains("final:") && periodic.contains("connections 1 (0 active)"),
        "{periodic}"
    );
    proxy.stop().await;
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text
        .lines()
        .rfind(|l| l.contains("proxy_server::stats"))
        .unwrap();
    assert!(
        last.contains("final: connections 1 (0 active) | requests 1: allowed 1"),
        "{last}"
    );
}

#[test]
fn the_exposition_checker_rejects_broken_text() {
    let help = "# HELP h_seconds H.\n# TYPE h_seconds histogram\n";
    let histogram = |buckets: &str, count: u32| {
        format!("{help}{buckets}h_seconds_sum 0.5\nh_seconds_count {count}\n")
    };
    let good_buckets = "h_seconds_bucket{le=\"0.1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n";
    assert_eq!(check_exposition(&histogram(good_buckets, 2)).len(), 4);
    let broken = [
        "c_total 1\n".to_string(),
        "# TYPE c counter\nc_total 1\n".into(),
        "# HELP c C.\n# TYPE c counter\nc_total{outcome=\"x} 1\n".into(),
        "# HELP c C.\n# TYPE c counter\nc_total one\n".into(),
        histogram(good_buckets, 3),
        histogram(
            "h_seconds_bucket{le=\"0.1\"} 3\nh_seconds_bucket{le=\"+Inf\"} 2\n",
            2,
        ),
        histogram("h_seconds_bucket{le=\"0.1\"} 2\n", 2),
    ];
    for text in broken {
        let result = std::panic::catch_unwind(|| check_exposition(&text));
        assert!(result.is_err(), "accepted: {text}");
    }
}
