//! Statistics end to end: exact counts after a known mix of traffic, `/metrics` as valid
//! Prometheus text agreeing with `/stats`, the dashboard page, and the periodic and final
//! summaries.

use crate::common::observe::*;
use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn statistics_after_a_known_mix_of_traffic_match_exactly() {
    let files = Scratch::new("observe-mix");
    let mut proxy = Running::guarded(&files, "user:secretpw\n", "blocked.example\n").await;
    let addr = proxy.addr();
    let member = login(("user", "secretpw"));
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
            "GET {} HTTP/1.1\r\nHost: x\r\n{member}{close}\r\n",
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
            "GET {} HTTP/1.1\r\nHost: x\r\n{member}Connection: close\r\n\r\n",
            origin.url("/o")
        );
        tally(send(addr, &request).await, 200);
    }
    // 2 blocked, 3 refused logins, 1 malformed, 1 unreachable origin.
    for path in ["/a", "/b"] {
        let request =
            format!("GET http://blocked.example{path} HTTP/1.1\r\nHost: x\r\n{member}\r\n");
        tally(send(addr, &request).await, 403);
    }
    for credentials in [
        login(("user", "wrong")),
        "Proxy-Authorization: Basic !!\r\n".into(),
    ] {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\n{credentials}\r\n",
            origin.url("/x")
        );
        tally(send(addr, &request).await, 407);
    }
    // Refused with its body already read alongside the head: those bytes came from the client.
    let upload = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
        origin.url("/up")
    );
    tally(send(addr, &upload).await, 407);
    tally(send(addr, "GARBAGE\r\n\r\n").await, 400);
    let closed = closed_port().await;
    tally(
        send(
            addr,
            &format!("GET http://{closed}/ HTTP/1.1\r\nHost: x\r\n{member}\r\n"),
        )
        .await,
        502,
    );
    // 1 tunnel: 500 bytes up, 1000 down.
    let echo = doubling_echo().await;
    let (tunnel_sent, tunnel_received) = tunnel(addr, echo, &member, 500).await;
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

#[tokio::test]
async fn stats_interval_writes_summaries_and_a_final_one_at_shutdown() {
    let mut proxy = Running::start(&["--stats-interval", "1"]).await;
    let origin = Origin::fixed("summarised").await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
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
