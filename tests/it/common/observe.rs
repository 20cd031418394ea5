//! Fixtures for the observability tests: the binary started with its metrics address
//! known, Squid access lines parsed into fields, raw exchanges and tunnels that count
//! bytes, rotated-log readers and a Prometheus text-format checker.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Polls of a live value before giving up, [`POLL_PAUSE`] apart (5 s in all).
pub const POLLS: usize = 250;

/// The binary with every stderr line kept, and its metrics address when one was asked for.
pub struct Running {
    pub proxy: ProxyProcess,
    pub metrics: Option<SocketAddr>,
}

impl Running {
    /// Starts the binary on ephemeral ports with `LOCAL` and `args`, logging to a fresh folder.
    pub async fn start(args: &[&str]) -> Running {
        let mut all = LOCAL.to_vec();
        all.extend_from_slice(args);
        let proxy = ProxyProcess::start(&all).await;
        let metrics = proxy.stderr.text().lines().find_map(|line| {
            let rest = line.split("metrics on http://").nth(1)?;
            rest.trim().trim_end_matches('/').parse().ok()
        });
        Running { proxy, metrics }
    }

    /// Starts the binary with metrics on, a users file holding `users` and a blacklist
    /// holding `blacklist`, both written in `files`.
    pub async fn guarded(files: &Scratch, users: &str, blacklist: &str) -> Running {
        let users = files.write("users", users);
        let blacklist = files.write("blacklist", blacklist);
        Running::start(&[
            "--auth-file",
            text(&users),
            "--blacklist",
            text(&blacklist),
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .await
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr
    }

    pub fn log_file(&self, name: &str) -> PathBuf {
        self.proxy.log_dir.join(name)
    }

    /// SIGTERM, a clean exit, and every stderr line read.
    pub async fn stop(&mut self) {
        assert_eq!(self.proxy.stop().await, Some(0), "exit code");
    }

    /// `/stats` once every expected exchange is counted and every connection has closed
    /// (the record of an error answer or a tunnel may trail the client's view by a moment).
    pub async fn settled_stats(&self, requests: u64) -> Value {
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

/// One Squid-format access line, split into its fourteen fields.
#[derive(Debug, Clone)]
pub struct Squid {
    pub elapsed_ms: u64,
    pub client: String,
    pub result: String,
    pub bytes: u64,
    pub method: String,
    pub url: String,
    pub user: String,
    pub hierarchy: String,
    pub content_type: String,
    pub from_client: u64,
    pub outcome: String,
    /// The access-policy rule that decided (percent-encoded), `-` when none did.
    pub rule: String,
    /// A tunnel's TLS server name, `-` when it sent none.
    pub sni: String,
}

impl Squid {
    pub fn parse(line: &str) -> Squid {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 14, "fourteen fields: {line:?}");
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
            rule: f[12].into(),
            sni: f[13].into(),
        }
    }
}

impl Squid {
    /// Checks how the exchange ended and the bytes (to the client, from the client) it moved.
    pub fn assert_is(&self, result: &str, hierarchy: &str, outcome: &str, bytes: (u64, u64)) {
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
pub fn line_for(lines: &[Squid], method: &str, url: &str) -> Squid {
    let found: Vec<&Squid> = lines
        .iter()
        .filter(|l| l.method == method && l.url == url)
        .collect();
    assert_eq!(found.len(), 1, "{method} {url} in {lines:#?}");
    found[0].clone()
}

pub fn squid_lines(running: &Running) -> Vec<Squid> {
    running
        .proxy
        .access_log()
        .iter()
        .map(|l| Squid::parse(l))
        .collect()
}

/// Sends a request on a fresh connection; returns (bytes sent, the whole response).
pub async fn send(addr: SocketAddr, request: &str) -> (u64, Vec<u8>) {
    (
        request.len() as u64,
        exchange(addr, request.as_bytes()).await,
    )
}

/// `GET path` on the metrics listener: (head, body).
pub async fn get(metrics: SocketAddr, path: &str) -> (String, Vec<u8>) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n");
    let raw = exchange(metrics, request.as_bytes()).await;
    let (head, body) = split_head(&raw);
    let head = String::from_utf8_lossy(head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    (head, body.to_vec())
}

pub async fn get_json(metrics: SocketAddr, path: &str) -> Value {
    let (head, body) = get(metrics, path).await;
    assert!(
        head.to_ascii_lowercase().contains("application/json"),
        "{head}"
    );
    serde_json::from_slice(&body).expect("/stats is JSON")
}

/// Opens a tunnel to a `doubling_echo`, sends `size` bytes through it, reads the doubled echo,
/// and closes. Returns (bytes sent, bytes received), heads included.
pub async fn tunnel(proxy: SocketAddr, target: SocketAddr, extra: &str, size: usize) -> (u64, u64) {
    let head = connect_request(&target.to_string(), extra);
    let mut stream = open_tunnel(proxy, &target.to_string(), extra).await;
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

/// Every line of a run without authentication: whole, from 127.0.0.1, no user, no type.
pub fn anonymous_lines(proxy: &Running, count: usize) -> Vec<Squid> {
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

pub const LONG_PATH: usize = 8000;

/// Makes `count` requests on one keep-alive connection, each URL carrying its sequence
/// number and a long filler, so the log passes `--log-max-size 1` every ~128 requests.
pub async fn long_url_requests(proxy: SocketAddr, origin: &Origin, count: usize) {
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
pub fn sequence_of(line: &str) -> usize {
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
pub fn rotated_logs(dir: &Path, keep: usize) -> Vec<(String, u64, Vec<usize>)> {
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

pub const OUTCOMES: [&str; 6] = [
    "allowed",
    "blocked",
    "auth_failed",
    "malformed",
    "upstream_error",
    "tunnel",
];

/// Each `/stats` number and the Prometheus sample that must carry the same value.
pub const STATS_AS_METRICS: [(&str, &str); 16] = [
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
pub async fn assert_metrics_agree(metrics: SocketAddr, stats: &Value) {
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
pub async fn assert_dashboard(metrics: SocketAddr) {
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
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name{label="value",…} value`, with label values escaped as the format says.
pub fn parse_sample(line: &str) -> Sample {
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
pub fn check_exposition(text: &str) -> Vec<Sample> {
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
