//! The metrics endpoint over real TCP on 127.0.0.1: Prometheus text grammar and values,
//! `/stats` JSON, the HTML page, error answers, keep-alive and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proxy_server::metrics;
use proxy_server::stats::{Outcome, Stats};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::common::observe::check_exposition;
use crate::common::{exchange, header_value as header, read_to_close, split_head, within};

struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn start(stats: Arc<Stats>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, shutdown) = watch::channel(false);
    let health = proxy_server::health::Health::default();
    let task = tokio::spawn(metrics::serve(listener, stats, health, shutdown));
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

/// Sends `request` on a fresh connection and reads until the server closes: (head, body).
async fn ask(addr: SocketAddr, request: &[u8]) -> (String, Vec<u8>) {
    let raw = exchange(addr, request).await;
    let (head, body) = head_and_rest(&raw);
    (head, body.to_vec())
}

/// A complete head (as text) and what follows it.
fn head_and_rest(raw: &[u8]) -> (String, &[u8]) {
    let (head, rest) = split_head(raw);
    assert!(head.ends_with(b"\r\n\r\n"), "complete head: {raw:?}");
    (String::from_utf8_lossy(head).into_owned(), rest)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn metrics_is_prometheus_text_with_the_counted_values() {
    let server = start(known_stats()).await;
    let (head, body) = ask(server.addr, &get("/metrics")).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(
        header(&head, "content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(body).expect("utf-8");
    assert!(text.ends_with('\n'));
    assert!(!text.lines().any(str::is_empty), "no empty lines");
    // The grammar: HELP then TYPE before each family's samples, families contiguous.
    let samples = check_exposition(&text);
    let typed: std::collections::HashMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '))
        .collect();
    for (name, kind) in &typed {
        assert!(
            ["counter", "gauge", "histogram"].contains(kind),
            "{name} {kind}"
        );
    }
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.label(k) == Some(v))
            })
            .map(|s| s.value)
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
        typed.get("proxy_request_duration_seconds"),
        Some(&"histogram")
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
        .filter(|s| s.name == "proxy_request_duration_seconds_bucket")
        .map(|s| s.value)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    server.stop.send(true).expect("server listening");
}

#[tokio::test]
async fn stats_is_json_with_the_same_numbers() {
    let server = start(known_stats()).await;
    let (head, body) = ask(server.addr, &get("/stats")).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(
        header(&head, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(&head, "content-length").as_deref(),
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
    let (head, body) = ask(server.addr, &get("/")).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(
        header(&head, "content-type").as_deref(),
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
    let (head, _) = ask(server.addr, &get("/nope")).await;
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let (head, _) = ask(
        server.addr,
        b"DELETE /stats HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
    assert_eq!(header(&head, "allow").as_deref(), Some("GET, HEAD"));
    let huge = format!(
        "GET / HTTP/1.1\r\nX-Fill: {}\r\n\r\n",
        "a".repeat(metrics::MAX_HEAD_BYTES)
    );
    let (head, _) = ask(server.addr, huge.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    let (head, _) = ask(server.addr, b"\x16\x03\x01\x00\x05hello\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    // Still healthy afterwards, on a fresh connection.
    let (head, _) = ask(server.addr, &get("/stats")).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    server.stop.send(true).expect("server listening");
}

#[tokio::test]
async fn keep_alive_serves_several_requests_and_head_has_no_body() {
    let server = start(known_stats()).await;
    let mut stream = within(TcpStream::connect(server.addr))
        .await
        .expect("connect");
    // Pipelined: a keep-alive GET, a HEAD, then a GET asking to close.
    let request = b"GET /stats HTTP/1.1\r\nHost: m\r\n\r\nHEAD /stats HTTP/1.1\r\nHost: m\r\n\r\n\
                    GET /nope HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n";
    within(stream.write_all(request)).await.expect("write");
    let raw = read_to_close(&mut stream).await;
    let text = String::from_utf8_lossy(&raw);
    let (first_head, rest) = head_and_rest(&raw);
    let length: usize = header(&first_head, "content-length")
        .expect("length")
        .parse()
        .expect("number");
    assert!(header(&first_head, "connection").is_none(), "{first_head}");
    let (second_head, rest) = head_and_rest(&rest[length..]);
    assert!(second_head.starts_with("HTTP/1.1 200 "), "{second_head}");
    assert_eq!(
        header(&second_head, "content-length").as_deref(),
        Some(length.to_string().as_str())
    );
    let (third_head, body) = head_and_rest(rest);
    assert!(third_head.starts_with("HTTP/1.1 404 "), "{text}");
    assert_eq!(header(&third_head, "connection").as_deref(), Some("close"));
    assert_eq!(body, b"not found\n");
    server.stop.send(true).expect("server listening");
}

#[tokio::test]
async fn http_1_0_closes_and_shutdown_stops_the_server() {
    let server = start(Arc::new(Stats::default())).await;
    let (head, _) = ask(server.addr, b"GET /stats HTTP/1.0\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(header(&head, "connection").as_deref(), Some("close"));

    // An idle keep-alive connection must not hold shutdown up.
    let idle = within(TcpStream::connect(server.addr))
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.stop.send(true).expect("server listening");
    within(server.task).await.expect("no panic");
    drop(idle);
    let refused = within(TcpStream::connect(server.addr)).await;
    assert!(refused.is_err(), "listener closed after shutdown");
}
