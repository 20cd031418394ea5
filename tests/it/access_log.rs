//! The access log end to end with the real binary: Squid-format fields for forwarded,
//! cached, tunnelled, blocked, refused, failed and malformed exchanges (no password ever
//! logged), JSON lines, and rotation by size keeping whole lines and every request.

use std::collections::HashSet;

use crate::common::cache::origin_with;
use crate::common::observe::*;
use crate::common::*;
use serde_json::Value;

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
    let cached = origin_with("Cache-Control: max-age=60\r\n", "cache me").await;
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
    let files = Scratch::new("observe-rules");
    let blacklist = files.write("blacklist", "blocked.example\n");
    let args = ["--blacklist", text(&blacklist), "--response-timeout", "1"];
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
    let line = line_for(&lines, "GET", blocked_url);
    line.assert_is("TCP_DENIED/403", none, "blocked", blocked_bytes);
    assert_eq!(
        line.rule, "blacklist%20(--blacklist)",
        "the deny rule placed first"
    );
    // Refused connection: no origin reached. Silent origin: connected, then no answer.
    let failed_bytes = (failed.len() as u64, failed_sent);
    assert_eq!(
        line_for(&lines, "GET", &failed_url).rule,
        "-",
        "no policy rule"
    );
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
    let files = Scratch::new("observe-auth");
    let users = files.write("users", "user:secretpw\n");
    let mut proxy = Running::start(&["--auth-file", text(&users), "--log-level", "debug"]).await;
    let origin = Origin::fixed("for members").await;
    // Distinct paths: a refusal's record may be written just after the client saw the close.
    let request = |path: &str, credentials: &str| {
        let url = origin.url(path);
        format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{credentials}\r\n")
    };
    let wrong = ("user", "wrong-Pw-4711");
    let (wrong_sent, refused) = send(proxy.addr(), &request("/wrong", &login(wrong))).await;
    assert_eq!(status(&refused), 407);
    assert!(String::from_utf8_lossy(&refused).contains("Proxy-Authenticate: Basic"));
    let (_, anonymous) = send(proxy.addr(), &request("/anonymous", "")).await;
    assert_eq!(status(&anonymous), 407);
    let member = request("/member", &login(("user", "secretpw")));
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
    let secrets = [
        "secretpw".to_string(),
        "wrong-Pw-4711".to_string(),
        base64("user:wrong-Pw-4711"),
        base64("user:secretpw"),
    ];
    let stderr = proxy.proxy.stderr.text();
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
    let files = Scratch::new("observe-json");
    let blacklist = files.write("blacklist", "blocked.example\n");
    let args = ["--log-format", "json", "--blacklist", text(&blacklist)];
    let mut proxy = Running::start(&args).await;
    let addr = proxy.addr();
    let origin = Origin::fixed("json body").await;
    let url = origin.url("/j?x=\"quoted\"");
    let request = format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (sent, forwarded) = send(addr, &request).await;
    assert_eq!(status(&forwarded), 200);
    let (_, blocked) = send(
        addr,
        "GET http://blocked.example/ HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(status(&blocked), 403);
    let closed = closed_port().await;
    let (_, failed) = send(
        addr,
        &format!("GET http://{closed}/ HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
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
        "hierarchy",
        "parent",
        "outcome",
        "squid_code",
        "rule",
        "sni",
        "alpn",
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
    assert_eq!(line["hierarchy"], "HIER_DIRECT");
    assert!(line["parent"].is_null());
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
    assert_eq!(line["hierarchy"], "HIER_NONE");
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
