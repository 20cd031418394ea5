//! The logging pipeline end to end: `logging::init` with real files, size rotation through
//! the non-blocking access log, both line formats, and flushing at shutdown.
//!
//! `init` installs a process-wide subscriber, so exactly one test in this binary calls it;
//! its filter lets through only this module (`it::observe_logging`, its path in the
//! binary), since every other test's in-process proxy logs through the same subscriber.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proxy_server::logging::{
    self, AccessLog, AccessRecord, CacheResult, LogFormat, LogSettings, RotatingFile,
    RotationPolicy,
};
use proxy_server::stats::{Outcome, Stats};

use crate::common::Scratch;

fn record(n: u64, outcome: Outcome, status: u16) -> AccessRecord {
    AccessRecord {
        start: SystemTime::now(),
        duration: Duration::from_millis(n % 500),
        client: "127.0.0.1:40000".parse().expect("addr"),
        user: n.is_multiple_of(3).then(|| format!("user{n}")),
        method: "GET".to_owned(),
        target: format!("http://origin.test/item/{n}"),
        status,
        bytes_to_client: n * 10,
        bytes_from_client: n,
        cache: if n.is_multiple_of(2) {
            CacheResult::Hit
        } else {
            CacheResult::Miss
        },
        upstream: (n % 2 == 1).then(|| "127.0.0.1:8080".parse().expect("addr")),
        hierarchy: "HIER_DIRECT",
        parent: None,
        cut: false,
        outcome,
        rule: None,
        sni: None,
        alpn: None,
    }
}

/// Every file of one log, oldest first: `NAME.keep` … `NAME.1`, `NAME`.
fn log_files(path: &Path, keep: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=keep)
        .rev()
        .map(|i| RotatingFile::rotated_path(path, i))
        .filter(|p| p.exists())
        .collect();
    files.push(path.to_owned());
    files
}

#[test]
fn init_writes_rotated_access_log_and_diagnostics_and_flushes_on_shutdown() {
    let files = Scratch::new("logging-init");
    let dir = files.path("logs");
    // Only this module's events pass: the in-process proxies of tests running alongside
    // log through the same global subscriber, and their lines would otherwise land in
    // this test's files and, after its shutdown, in its count of dropped lines.
    let settings = LogSettings {
        dir: dir.clone(),
        format: LogFormat::Squid,
        rotation: RotationPolicy {
            max_bytes: 1 << 20,
            keep: 5,
        },
        level: "off,it::observe_logging=debug".to_string(),
    };
    let stats = Arc::new(Stats::default());
    let logging = logging::init(&settings, Arc::clone(&stats)).expect("init");
    let access = logging.access_log();

    // Lines of ~120 bytes, ~4.5 MiB through a 1 MiB limit: four rotations, all within keep = 5.
    let total: u64 = 40_000;
    for n in 0..total {
        access.write(&record(n, Outcome::Allowed, 200));
        if n.is_multiple_of(1_000) {
            // Pace the producer a little so the bounded queue is not the thing under test.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    tracing::info!(marker = "diagnostic-one", "hello from the test");
    tracing::debug!("debug enabled for this target");
    tracing::trace!("trace is filtered out");
    logging.shutdown();

    let access_path = dir.join("access.log");
    let files = log_files(&access_path, settings.rotation.keep);
    assert!(files.len() >= 4, "rotated at least three times: {files:?}");
    let mut seen = BTreeSet::new();
    for file in &files {
        let size = fs::metadata(file).expect("metadata").len();
        assert!(size <= 1024 * 1024, "{} holds {size} bytes", file.display());
        let text = fs::read_to_string(file).expect("read");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends mid-line",
            file.display()
        );
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).collect();
            assert_eq!(fields.len(), 14, "whole Squid line: {line}");
            let n: u64 = fields[6]
                .rsplit('/')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("item");
            assert_eq!(fields[10], n.to_string(), "bytes from client");
            assert!(seen.insert(n), "line {n} twice");
        }
    }
    let dropped = logging.dropped_lines();
    assert_eq!(
        seen.len() as u64 + dropped,
        total,
        "every line written or counted"
    );
    assert_eq!(stats.snapshot().log_lines_dropped, dropped);
    assert_eq!(dropped, 0, "a paced producer should not overflow the queue");

    let diagnostics = fs::read_to_string(dir.join("proxy.log")).expect("proxy.log");
    assert!(diagnostics.contains("hello from the test") && diagnostics.contains("diagnostic-one"));
    assert!(diagnostics.contains("debug enabled for this target"));
    assert!(!diagnostics.contains("trace is filtered out"));
    assert!(
        !diagnostics.contains('\u{1b}'),
        "no colour codes in the file"
    );

    // After shutdown nothing is written, and what is attempted is counted.
    access.write(&record(total, Outcome::Allowed, 200));
    assert_eq!(logging.dropped_lines(), dropped + 1);
    drop(logging);
}

#[test]
fn json_access_log_lines_parse_and_every_request_is_kept() {
    let files = Scratch::new("logging-json");
    let path = files.path("access.log");
    let policy = RotationPolicy {
        max_bytes: 16 * 1024,
        keep: 20,
    };
    let stats = Arc::new(Stats::default());
    let access =
        AccessLog::spawn(&path, LogFormat::Json, policy, Arc::clone(&stats)).expect("spawn");
    let cases = [
        (Outcome::Allowed, 200),
        (Outcome::Blocked, 403),
        (Outcome::AuthFailed, 407),
        (Outcome::UpstreamError, 502),
        (Outcome::Tunnel, 200),
    ];
    let total = 500u64;
    for n in 0..total {
        let (outcome, status) = cases[(n % cases.len() as u64) as usize];
        access.write(&record(n, outcome, status));
    }
    access.shutdown();

    let files = log_files(&path, policy.keep);
    assert!(files.len() > 3, "rotated: {files:?}");
    let mut seen = BTreeSet::new();
    for file in &files {
        for line in fs::read_to_string(file).expect("read").lines() {
            let value: serde_json::Value =
                serde_json::from_str(line).expect("one JSON object per line");
            let n = value["bytes_from_client"].as_u64().expect("number");
            let (outcome, status) = cases[(n % cases.len() as u64) as usize];
            assert_eq!(value["outcome"], outcome.label());
            assert_eq!(value["status"], status);
            assert_eq!(value["bytes_to_client"], n * 10);
            assert!(seen.insert(n), "line {n} twice");
        }
    }
    assert_eq!(seen.len() as u64 + access.dropped(), total);
}

/// Every diagnostic line a connection writes carries the connection's span — its number,
/// its client address and its listener — so one connection's lines can be found
/// together, and two connections' lines told apart.
#[tokio::test]
async fn each_connection_s_lines_carry_its_span() {
    use crate::common::{LOCAL, Origin, ProxyProcess, read_to_close};
    use tokio::io::AsyncWriteExt as _;

    let origin = Origin::fixed("spanned").await;
    let mut args = LOCAL.to_vec();
    args.extend(["--log-level", "debug"]);
    let proxy = ProxyProcess::start(&args).await;
    let mut ports = Vec::new();
    for _ in 0..2 {
        let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        ports.push(client.local_addr().unwrap().port());
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n",
            origin.url("/")
        );
        client.write_all(request.as_bytes()).await.unwrap();
        assert!(read_to_close(&mut client).await.ends_with(b"spanned"));
    }
    proxy.stderr.wait_for("exchange done", 2).await;
    let text = proxy.stderr.text();
    let mut ids = BTreeSet::new();
    for port in ports {
        let tag = format!(" client=127.0.0.1:{port} listener=0}}");
        let line = text
            .lines()
            .find(|line| line.contains("exchange done") && line.contains(&tag))
            .unwrap_or_else(|| panic!("no span {tag:?} on the exchange line:\n{text}"));
        let id = line
            .split("conn{id=")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("no connection number in {line:?}"));
        ids.insert(id.to_string());
        assert!(line.contains("stage=\"transfer\""), "{line}");
    }
    assert_eq!(ids.len(), 2, "two connections, two numbers:\n{text}");
    // A failure says how far the exchange got: here, the connection toward the target.
    let closed = crate::common::closed_port().await;
    let refused = crate::common::exchange(
        proxy.addr,
        format!("CONNECT {closed} HTTP/1.1\r\nHost: {closed}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(refused.starts_with(b"HTTP/1.1 502 "));
    proxy
        .stderr
        .wait_for("failure=\"upstream_connect\"", 1)
        .await;
    let text = proxy.stderr.text();
    let line = text
        .lines()
        .find(|line| line.contains("failure=\"upstream_connect\""))
        .unwrap_or_default();
    assert!(line.contains("stage=\"dial\""), "{line}");
}
