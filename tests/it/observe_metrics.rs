//! The metrics endpoint over real TCP on 127.0.0.1: Prometheus text grammar and values,
//! `/stats` JSON, the HTML page, error answers, keep-alive and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proxy_server::metrics;
use proxy_server::stats::{Outcome, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn start(stats: Arc<Stats>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(metrics::serve(listener, stats, shutdown));
    Server { addr, stop, task }
}

/// A known mix: 7 allowed, 3 blocked, 2 auth failures, 1 malformed, 2 upstream errors and
/// one tunnel, plus traffic and cache numbers.
fn known_stats() -> Arc<Stats> {
    let stats = Arc::new(Stats::default());
    let mix = [
        (Outcome::Allowed, 7, 4),
        (Outcome::Blocked, 3, 1),
        (Outcome::AuthFailed, 2, 1),
        (Outcome::Malformed, 1, 1),
        (Outcome::UpstreamError, 2, 3000),
        (Outcome::Tunnel, 1, 90_000),
    ];
    for (outcome, times, millis) in mix {
        for _ in 0..times {
            stats.request_finished(outcome, Duration::from_millis(millis));
        }
    }
    stats.add_bytes_from_client(1111);
    stats.add_bytes_to_client(2222);
    stats.add_bytes_to_origin(3333);
    stats.add_bytes_from_origin(4444);
    stats.set_cache(proxy_server::stats::CacheTotals {
        hits: 1,
        misses: 2,
        evictions: 0,
        bytes_held: 65_536,
        entries: 4,
    });
    stats
}

/// Sends `request` and reads until the server closes; returns (head, body).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, Vec<u8>) {
    let mut stream = timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    timeout(DEADLINE, stream.write_all(request))
        .await
        .expect("write in time")
        .expect("write");
    let mut raw = Vec::new();
    timeout(DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("server closes")
        .expect("read");
    split_response(&raw)
}

fn split_response(raw: &[u8]) -> (String, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete head");
    (
        String::from_utf8_lossy(&raw[..end]).into_owned(),
        raw[end + 4..].to_vec(),
    )
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").into_bytes()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Checks one sample line against the text exposition grammar and returns (name, labels, value).
fn parse_sample(line: &str) -> (String, Vec<(String, String)>, f64) {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value: {line}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed labels: {line}"));
            let labels = inner
                .split(',')
                .map(|pair| {
                    let (key, quoted) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label: {line}"));
                    assert!(
                        is_metric_name(key) && !key.contains(':'),
                        "bad label name: {line}"
                    );
                    let value = quoted
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label value: {line}"));
                    (key.to_owned(), value.to_owned())
                })
                .collect();
            (name, labels)
        }
    };
    assert!(is_metric_name(name), "bad metric name: {line}");
    (name.to_owned(), labels, value)
}

#[tokio::test]
async fn metrics_is_prometheus_text_with_the_counted_values() {
    let server = start(known_stats()).await;
    let (head, body) = exchange(server.addr, &get("/metrics")).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(body).expect("utf-8");
    assert!(text.ends_with('\n'));

    let mut typed = std::collections::HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {line}"
            );
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(
                rest.split_once(' ').is_some_and(|(n, _)| is_metric_name(n)),
                "{line}"
            );
        } else {
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "stray line: {line:?}"
            );
            let sample = parse_sample(line);
            let family = typed
                .keys()
                .any(|t| sample.0 == *t || sample.0.starts_with(&format!("{t}_")));
            assert!(family, "sample before its TYPE: {line}");
            samples.push(sample);
        }
    }
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("{name} {labels:?} missing"))
    };
    assert_eq!(
        value("proxy_requests_total", &[("outcome", "allowed")]),
        7.0
    );
    assert_eq!(
        value("proxy_requests_total", &[("outcome", "blocked")]),
        3.0
    );
    assert_eq!(
        value("proxy_requests_total", &[("outcome", "auth_failed")]),
        2.0
    );
    assert_eq!(
        value("proxy_requests_total", &[("outcome", "malformed")]),
        1.0
    );
    assert_eq!(
        value("proxy_requests_total", &[("outcome", "upstream_error")]),
        2.0
    );
    assert_eq!(value("proxy_requests_total", &[("outcome", "tunnel")]), 1.0);
    assert_eq!(value("proxy_client_received_bytes_total", &[]), 1111.0);
    assert_eq!(value("proxy_client_sent_bytes_total", &[]), 2222.0);
    assert_eq!(value("proxy_origin_sent_bytes_total", &[]), 3333.0);
    assert_eq!(value("proxy_origin_received_bytes_total", &[]), 4444.0);
    assert_eq!(value("proxy_cache_misses_total", &[]), 2.0);
    assert_eq!(value("proxy_cache_held_bytes", &[]), 65_536.0);
    assert_eq!(
        typed
            .get("proxy_request_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );

    // Histogram: 15 requests (the tunnel excluded), cumulative buckets, +Inf equals _count.
    assert_eq!(value("proxy_request_duration_seconds_count", &[]), 15.0);
    let expected_sum = (7.0 * 4.0 + 3.0 + 2.0 + 1.0 + 2.0 * 3000.0) / 1000.0;
    assert!((value("proxy_request_duration_seconds_sum", &[]) - expected_sum).abs() < 1e-9);
    assert_eq!(
        value("proxy_request_duration_seconds_bucket", &[("le", "0.001")]),
        6.0
    );
    assert_eq!(
        value("proxy_request_duration_seconds_bucket", &[("le", "0.005")]),
        13.0
    );
    assert_eq!(
        value("proxy_request_duration_seconds_bucket", &[("le", "2.5")]),
        13.0
    );
    assert_eq!(
        value("proxy_request_duration_seconds_bucket", &[("le", "5")]),
        15.0
    );
    assert_eq!(
        value("proxy_request_duration_seconds_bucket", &[("le", "+Inf")]),
        15.0
    );
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|(n, _, _)| n == "proxy_request_duration_seconds_bucket")
        .map(|(_, _, v)| *v)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    server.stop.send(true).expect("server listening");
}

#[tokio::test]
async fn stats_is_json_with_the_same_numbers() {
    let server = start(known_stats()).await;
    let (head, body) = exchange(server.addr, &get("/stats")).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    assert_eq!(
        header(&head, "content-length"),
        Some(body.len().to_string().as_str())
    );
    let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(json["requests"]["allowed"], 7);
    assert_eq!(json["requests"]["blocked"], 3);
    assert_eq!(json["requests"]["tunnel"], 1);
    assert_eq!(json["bytes_from_client"], 1111);
    assert_eq!(json["cache_entries"], 4);
    assert_eq!(json["request_durations"]["count"], 15);
    let buckets = json["request_durations"]["buckets"]
        .as_array()
        .expect("buckets");
    assert_eq!(
        buckets.last().map(|b| b["le_seconds"].is_null()),
        Some(true)
    );
    assert_eq!(
        buckets.last().map(|b| b["count"].clone()),
        Some(serde_json::json!(15))
    );
    server.stop.send(true).expect("server listening");
}

#[tokio::test]
async fn page_is_self_contained_html_that_polls_stats() {
    let server = start(Arc::new(Stats::default())).await;
    let (head, body) = exchange(server.addr, &get("/")).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = String::from_utf8(body).expect("utf-8");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("fetch(\"/stats\""));
    assert!(html.contains("setInterval(refresh"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
    server.stop.send(true).expect("server listening");
}

#[tokio::test]
async fn unknown_paths_methods_and_oversized_heads_get_error_answers() {
    let server = start(Arc::new(Stats::default())).await;
    let (head, _) = exchange(server.addr, &get("/nope")).await;
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let (head, _) = exchange(
        server.addr,
        b"DELETE /stats HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
    assert_eq!(header(&head, "allow"), Some("GET, HEAD"));
    let huge = format!(
        "GET / HTTP/1.1\r\nX-Fill: {}\r\n\r\n",
        "a".repeat(metrics::MAX_HEAD_BYTES)
    );
    let (head, _) = exchange(server.addr, huge.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    let (head, _) = exchange(server.addr, b"\x16\x03\x01\x00\x05hello\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    // Still healthy afterwards, on a fresh connection.
    let (head, _) = exchange(server.addr, &get("/stats")).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    server.stop.send(true).expect("server listening");
}

#[tokio::test]
async fn keep_alive_serves_several_requests_and_head_has_no_body() {
    let server = start(known_stats()).await;
    let mut stream = timeout(DEADLINE, TcpStream::connect(server.addr))
        .await
        .expect("in time")
        .expect("connect");
    // Pipelined: a keep-alive GET, a HEAD, then a GET asking to close.
    let request = b"GET /stats HTTP/1.1\r\nHost: m\r\n\r\nHEAD /stats HTTP/1.1\r\nHost: m\r\n\r\n\
                    GET /nope HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n";
    timeout(DEADLINE, stream.write_all(request))
        .await
        .expect("in time")
        .expect("write");
    let mut raw = Vec::new();
    timeout(DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("closes")
        .expect("read");
    let text = String::from_utf8_lossy(&raw);
    let (first_head, rest) = split_response(&raw);
    let length: usize = header(&first_head, "content-length")
        .expect("length")
        .parse()
        .expect("number");
    assert!(header(&first_head, "connection").is_none(), "{first_head}");
    let (second_head, rest) = split_response(&rest[length..]);
    assert!(second_head.starts_with("HTTP/1.1 200 "), "{second_head}");
    assert_eq!(
        header(&second_head, "content-length"),
        Some(length.to_string().as_str())
    );
    let (third_head, body) = split_response(&rest);
    assert!(third_head.starts_with("HTTP/1.1 404 "), "{text}");
    assert_eq!(header(&third_head, "connection"), Some("close"));
    assert_eq!(body, b"not found\n");
    server.stop.send(true).expect("server listening");
}

#[tokio::test]
async fn http_1_0_closes_and_shutdown_stops_the_server() {
    let server = start(Arc::new(Stats::default())).await;
    let (head, _) = exchange(server.addr, b"GET /stats HTTP/1.0\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(header(&head, "connection"), Some("close"));

    // An idle keep-alive connection must not hold shutdown up.
    let idle = timeout(DEADLINE, TcpStream::connect(server.addr))
        .await
        .expect("in time")
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.stop.send(true).expect("server listening");
    timeout(DEADLINE, server.task)
        .await
        .expect("serve returns")
        .expect("no panic");
    drop(idle);
    let refused = timeout(DEADLINE, TcpStream::connect(server.addr))
        .await
        .expect("in time");
    assert!(refused.is_err(), "listener closed after shutdown");
}
