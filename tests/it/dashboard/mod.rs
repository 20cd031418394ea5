//! The dashboard end to end: known traffic through the real binary — three destinations
//! in known proportions, one denied by policy, one without a login (407), one failing
//! origin, one malformed request, two users — then `/stats/top` and `/stats/series`
//! checked against it and against each other in the four results' words (this file), and
//! the page checked in headless Chromium (`browser`).

mod browser;

use std::net::SocketAddr;

use serde_json::Value;

use crate::common::observe::*;
use crate::common::*;

/// Requests to each of the three destinations: heavy, middle, light.
const SHARES: [usize; 3] = [6, 3, 2];
/// Exchanges in all: the three destinations, then the denied, the login-required, the
/// failing and the malformed one.
const EXCHANGES: u64 = 6 + 3 + 2 + 1 + 1 + 1 + 1;
/// The known traffic by result: allowed, denied by policy, login required, errors (the
/// failing origin's 502 and the malformed request's 400).
pub const RESULTS: [(&str, u64); 4] = [
    ("allowed", 11),
    ("denied", 1),
    ("login_required", 1),
    ("errors", 2),
];

/// The proxy after the known traffic, and the names the lists must show.
pub struct Traffic {
    pub proxy: Running,
    pub metrics: SocketAddr,
    /// `host:port` of the heavy, middle and light destinations.
    pub destinations: [String; 3],
    pub blocked: String,
    pub failing: String,
    _files: Scratch,
    _origins: Vec<Origin>,
}

/// Starts the binary with users, a blacklist and metrics, and drives the known traffic:
/// alice asks the heavy (small answers) and light destinations, bob the middle one (large
/// answers, so it leads by bytes), the blocked one and the failing one.
pub async fn known_traffic() -> Traffic {
    let files = Scratch::new("dashboard");
    let users = "alice:alicepw\nbob:bobpw\n";
    let proxy = Running::guarded(&files, users, "blocked.example\n").await;
    let metrics = proxy.metrics.expect("metrics address in the log");
    let large = "x".repeat(4000);
    let origins = vec![
        Origin::fixed("small").await,
        Origin::start(move |_| ok(&large)).await,
        Origin::fixed("small").await,
    ];
    let (alice, bob) = (login(("alice", "alicepw")), login(("bob", "bobpw")));
    let askers = [&alice, &bob, &alice];
    for ((origin, times), user) in origins.iter().zip(SHARES).zip(askers) {
        for n in 0..times {
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: x\r\n{user}Connection: close\r\n\r\n",
                origin.url(&format!("/{n}"))
            );
            let (_, response) = send(proxy.addr(), &request).await;
            assert_eq!(status(&response), 200);
        }
    }
    let request = format!("GET http://blocked.example/ HTTP/1.1\r\nHost: x\r\n{bob}\r\n");
    assert_eq!(status(&send(proxy.addr(), &request).await.1), 403);
    let request = "GET http://login.example/ HTTP/1.1\r\nHost: login.example\r\n\r\n";
    assert_eq!(status(&send(proxy.addr(), request).await.1), 407);
    let failing = closed_port().await;
    let request = format!("GET http://{failing}/ HTTP/1.1\r\nHost: x\r\n{bob}\r\n");
    assert_eq!(status(&send(proxy.addr(), &request).await.1), 502);
    let malformed = "GET http://a.example/ HTTP/1.1\r\nBad Header\r\n\r\n";
    assert_eq!(status(&send(proxy.addr(), malformed).await.1), 400);
    proxy.settled_stats(EXCHANGES).await;
    Traffic {
        metrics,
        destinations: [0, 1, 2].map(|i| origins[i].addr.to_string()),
        blocked: "blocked.example:80".into(),
        failing: failing.to_string(),
        proxy,
        _files: files,
        _origins: origins,
    }
}

/// `(name, value)` of each entry of a list.
fn entries(list: &Value) -> Vec<(String, u64)> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|entry| {
            assert_eq!(entry["overcount"], 0, "exact with few keys: {entry}");
            assert!(entry.get("error").is_none(), "renamed `overcount`: {entry}");
            let name = entry["name"].as_str().expect("name").to_string();
            (name, entry["value"].as_u64().expect("value"))
        })
        .collect()
}

/// `/stats/series` once its points account for every exchange (the sampler adds one every
/// few seconds), with the per-result counts the rates add up to, in [`RESULTS`]' order.
pub async fn series_with_all_traffic(metrics: SocketAddr) -> (Value, [u64; 4]) {
    let limit = std::time::Duration::from_secs(20);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let series = get_json(metrics, "/stats/series").await;
        let interval = series["interval_seconds"].as_f64().expect("interval");
        let points = series["points"].as_array().expect("points").clone();
        let counted = RESULTS.map(|(result, _)| {
            let sum: f64 = points
                .iter()
                .map(|p| p["results"][result].as_f64().unwrap_or(0.0))
                .sum();
            (sum * interval).round() as u64
        });
        if counted.iter().sum::<u64>() >= EXCHANGES {
            return (series, counted);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the series never showed all traffic: {series}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn top_lists_rank_the_known_traffic() {
    let mut traffic = known_traffic().await;
    let top = get_json(traffic.metrics, "/stats/top").await;
    assert_eq!(top["recent_minutes"], 15);
    let [heavy, middle, light] = traffic.destinations.clone();
    for span in ["since_start", "recent"] {
        let lists = &top[span];
        assert_eq!(lists["requests"], EXCHANGES, "{span}");
        let by_requests = entries(&lists["destinations_by_requests"]);
        assert_eq!(
            by_requests[..3],
            [(heavy.clone(), 6), (middle.clone(), 3), (light.clone(), 2)],
            "{span}: {by_requests:?}"
        );
        assert_eq!(
            by_requests.len(),
            6,
            "the denied, login-required and failing ones too"
        );
        let by_bytes = entries(&lists["destinations_by_bytes"]);
        assert_eq!(by_bytes[0].0, middle, "large answers lead by bytes");
        assert!(by_bytes[0].1 > 3 * 4000, "{by_bytes:?}");
        let users = entries(&lists["users_by_requests"]);
        // A refused request has no user: only an admitted one is attributed.
        assert_eq!(users, [("alice".into(), 8), ("bob".into(), 4)]);
        assert_eq!(
            entries(&lists["clients_by_requests"]),
            [("127.0.0.1".into(), EXCHANGES)]
        );
        let denied = &lists["denied"];
        assert_eq!(entries(denied), [(traffic.blocked.clone(), 1)]);
        // The blacklist is the policy's first rule, and the list names the rule.
        assert_eq!(denied[0]["detail"], "blacklist (--blacklist)", "{denied}");
        assert_eq!(lists["blocked"], *denied, "the old name still works");
        for (result, count) in RESULTS {
            assert_eq!(lists["results"][result], count, "{span} {result}");
        }
        let failing = &lists["failing"];
        assert_eq!(entries(failing), [(traffic.failing.clone(), 1)]);
        assert_eq!(failing[0]["detail"], "502");
    }
    traffic.proxy.stop().await;
}

#[tokio::test]
async fn the_series_accounts_for_the_known_traffic() {
    let mut traffic = known_traffic().await;
    let (series, counted) = series_with_all_traffic(traffic.metrics).await;
    // The four results: rates times the interval.
    assert_eq!(counted, RESULTS.map(|(_, n)| n), "{series}");
    assert_eq!(series["span_seconds"], 900);
    let points = series["points"].as_array().expect("points");
    let times: Vec<u64> = points
        .iter()
        .filter_map(|p| p["unix_ms"].as_u64())
        .collect();
    assert_eq!(times.len(), points.len());
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let now = series["now_unix_ms"].as_u64().expect("now");
    assert!(times.iter().all(|&t| t <= now && now - t <= 900_000));
    let busy = points
        .iter()
        .find(|p| p["results"]["allowed"].as_f64() > Some(0.0))
        .expect("a point with traffic");
    let p50 = busy["p50_ms"]
        .as_f64()
        .expect("a median where requests finished");
    let p99 = busy["p99_ms"]
        .as_f64()
        .expect("a p99 where requests finished");
    assert!(p50 > 0.0 && p50 <= p99 && p99 < 10_000.0, "{busy}");
    assert!(busy["bytes_to_clients"].as_f64() > Some(0.0), "{busy}");
    assert!(
        points
            .iter()
            .all(|p| p["connections"].is_u64() && p["tunnels"] == 0)
    );
    traffic.proxy.stop().await;
}
