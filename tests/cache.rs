//! The response cache end to end (issue 4): a real proxy with `--cache` in front of local
//! origins that count what reaches them. Each test proves a caching rule by what the
//! origin saw (how many requests, which validators) and what the client got (status,
//! body, `X-Cache`, `Age`), with curl and raw sockets.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use common::*;
use proxy_server::config::Config;
use proxy_server::stats::Stats;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How long the slow origin holds each answer back, so concurrent misses overlap.
const SLOW_ORIGIN_DELAY: Duration = Duration::from_millis(300);

/// Clients asking for one uncached URI at once.
const CONCURRENT_MISSES: usize = 50;

/// Turns the cache on with `size_mib` of room and objects up to `max_object_kib`.
fn cache_on(config: &mut Config, size_mib: u64, max_object_kib: u64) {
    config.cache.cache = true;
    config.cache.cache_size = size_mib;
    config.cache.cache_max_object = max_object_kib;
}

/// A proxy with the default cache limits.
async fn cached_proxy() -> Proxy {
    Proxy::start_with(|c| cache_on(c, 64, 8192)).await
}

/// A cached proxy whose statistics the test can read.
async fn cached_proxy_with_stats(size_mib: u64) -> (SocketAddr, Arc<Stats>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = local_config(addr, |c| cache_on(c, size_mib, 8192));
    let mut services = proxy_server::context::Services::load(&config).unwrap();
    let stats = Arc::new(Stats::default());
    services.stats = Arc::clone(&stats);
    // The server lives as long as the test's runtime.
    tokio::spawn(proxy_server::server::run(
        listener,
        config,
        services,
        std::future::pending::<()>(),
    ));
    (addr, stats)
}

/// A response as the client received it.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(raw.len(), |i| i + 4);
        Reply {
            status: status(raw),
            head: String::from_utf8_lossy(&raw[..split]).into_owned(),
            body: raw[split..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn x_cache(&self) -> String {
        self.header("x-cache").unwrap_or_default()
    }

    fn age(&self) -> Option<u64> {
        self.header("age")?.parse().ok()
    }
}

/// Sends `method url` with `fields` (and a body, if any) on a fresh connection.
async fn send(addr: SocketAddr, method: &str, url: &str, fields: &[&str], body: &str) -> Reply {
    let mut request = format!("{method} {url} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n");
    for field in fields {
        request.push_str(field);
        request.push_str("\r\n");
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    Reply::parse(&exchange(addr, request.as_bytes()).await)
}

async fn get(addr: SocketAddr, url: &str, fields: &[&str]) -> Reply {
    send(addr, "GET", url, fields, "").await
}

/// A `200` with `fields` and a Content-Length body.
fn reply(fields: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\n{fields}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An origin answering every request with `200`, `fields` and `body`.
async fn origin_with(fields: &'static str, body: &'static str) -> Origin {
    Origin::start(move |_| reply(fields, body)).await
}

/// How many requests the origin saw for `path`.
fn count_for(origin: &Origin, path: &str) -> usize {
    origin
        .requests()
        .iter()
        .filter(|s| s.request_line().split(' ').nth(1) == Some(path))
        .count()
}

#[tokio::test]
async fn hit_after_miss_with_one_origin_request() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "cached body").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/page");
    let mut replies = Vec::new();
    for _ in 0..2 {
        let (code, out, err) = curl(&["-i", "-x", &proxy.url(), &url]).await;
        assert_eq!(code, 0, "{err}");
        replies.push(Reply::parse(&out));
    }
    assert_eq!(origin.request_count(), 1);
    let (miss, hit) = (&replies[0], &replies[1]);
    assert_eq!((miss.status, hit.status), (200, 200));
    assert_eq!(miss.x_cache(), "MISS", "{}", miss.head);
    assert_eq!(hit.x_cache(), "HIT", "{}", hit.head);
    assert!(hit.age().is_some(), "no Age on a hit:\n{}", hit.head);
    assert_eq!(hit.body, b"cached body");
    assert_eq!(hit.body, miss.body);
    assert_eq!(hit.header("cache-control"), Some("max-age=600".into()));
}

#[tokio::test]
async fn no_x_cache_without_the_cache() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "plain").await;
    let proxy = Proxy::start().await;
    for _ in 0..2 {
        let reply = get(proxy.addr, &origin.url("/"), &[]).await;
        assert_eq!(reply.body, b"plain");
        assert_eq!(reply.header("x-cache"), None, "{}", reply.head);
    }
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn age_counts_the_origins_age() {
    let origin = origin_with("Cache-Control: max-age=600\r\nAge: 100\r\n", "aged").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/aged");
    get(proxy.addr, &url, &[]).await;
    let hit = get(proxy.addr, &url, &[]).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert!(hit.age().is_some_and(|age| age >= 100), "{}", hit.head);
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn chunked_response_is_stored_and_served_with_a_length() {
    let origin = Origin::start(|_| {
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            .to_vec()
    })
    .await;
    let proxy = cached_proxy().await;
    let url = origin.url("/chunks");
    let miss = Reply::parse(
        &exchange(
            proxy.addr,
            format!("GET {url} HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await,
    );
    assert_eq!(miss.header("transfer-encoding"), Some("chunked".into()));
    let hit = get(proxy.addr, &url, &[]).await;
    assert_eq!(hit.x_cache(), "HIT", "{}", hit.head);
    assert_eq!(hit.header("transfer-encoding"), None, "{}", hit.head);
    assert_eq!(hit.header("content-length"), Some("11".into()));
    assert_eq!(hit.body, b"hello world");
    assert_eq!(origin.request_count(), 1);
}

/// Each case: the response fields, the request fields, and a label for failures.
const NOT_STORABLE: &[(&str, &str, &[&str])] = &[
    (
        "request no-store",
        "Cache-Control: max-age=600\r\n",
        &["Cache-Control: no-store"],
    ),
    (
        "response no-store",
        "Cache-Control: max-age=600, no-store\r\n",
        &[],
    ),
    ("private", "Cache-Control: private, max-age=600\r\n", &[]),
    (
        "authorization",
        "Cache-Control: max-age=600\r\n",
        &["Authorization: Basic dTpw"],
    ),
    (
        "vary star",
        "Cache-Control: max-age=600\r\nVary: *\r\n",
        &[],
    ),
];

#[tokio::test]
async fn not_storable_responses_always_reach_the_origin() {
    let proxy = cached_proxy().await;
    for (label, fields, request) in NOT_STORABLE {
        let origin = origin_with(fields, "not for sharing").await;
        let url = origin.url("/x");
        for _ in 0..3 {
            let reply = get(proxy.addr, &url, request).await;
            assert_eq!(reply.status, 200, "{label}");
            assert_eq!(reply.body, b"not for sharing", "{label}");
            assert_eq!(reply.x_cache(), "MISS", "{label}:\n{}", reply.head);
        }
        assert_eq!(origin.request_count(), 3, "{label}");
    }
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn non_get_responses_are_not_stored() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "answer").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/form");
    for _ in 0..2 {
        let reply = send(proxy.addr, "POST", &url, &[], "a=1").await;
        assert_eq!(reply.body, b"answer");
    }
    for _ in 0..2 {
        let reply = send(proxy.addr, "HEAD", &url, &[], "").await;
        assert_eq!(reply.status, 200);
    }
    let lines: Vec<String> = origin.requests().iter().map(|s| s.request_line()).collect();
    assert_eq!(
        lines,
        [
            "POST /form HTTP/1.1",
            "POST /form HTTP/1.1",
            "HEAD /form HTTP/1.1",
            "HEAD /form HTTP/1.1"
        ]
    );
    // Only a GET fills the cache: the next GET still goes to the origin.
    get(proxy.addr, &url, &[]).await;
    assert_eq!(origin.request_count(), 5);
}

#[tokio::test]
async fn authorization_is_shared_when_the_response_allows_it() {
    for fields in [
        "Cache-Control: public, max-age=600\r\n",
        "Cache-Control: s-maxage=600\r\n",
        "Cache-Control: max-age=600, must-revalidate\r\n",
    ] {
        let origin = origin_with(fields, "shared").await;
        let proxy = cached_proxy().await;
        let url = origin.url("/shared");
        let miss = get(proxy.addr, &url, &["Authorization: Basic dTpw"]).await;
        let hit = get(proxy.addr, &url, &["Authorization: Basic dTpw"]).await;
        assert_eq!(miss.x_cache(), "MISS", "{fields}");
        assert_eq!(hit.x_cache(), "HIT", "{fields}");
        assert_eq!(hit.body, b"shared");
        assert_eq!(origin.request_count(), 1, "{fields}");
    }
}

#[tokio::test]
async fn vary_keeps_one_variant_per_language() {
    let origin = Origin::start(|seen| {
        let language = seen.header("accept-language").unwrap_or_default();
        reply(
            "Cache-Control: max-age=600\r\nVary: Accept-Language\r\n",
            &format!("page in {language}"),
        )
    })
    .await;
    let proxy = cached_proxy().await;
    let url = origin.url("/page");
    for round in 0..3 {
        for language in ["en", "fr"] {
            let field = format!("Accept-Language: {language}");
            let reply = get(proxy.addr, &url, &[&field]).await;
            assert_eq!(reply.body, format!("page in {language}").as_bytes());
            let expected = if round == 0 { "MISS" } else { "HIT" };
            assert_eq!(reply.x_cache(), expected, "round {round} {language}");
        }
    }
    assert_eq!(origin.request_count(), 2);
    // A third language is a variant of its own.
    let reply = get(proxy.addr, &url, &["Accept-Language: de"]).await;
    assert_eq!(reply.body, b"page in de");
    assert_eq!(origin.request_count(), 3);
}

/// An origin whose representation has the validators `"v1"` and a fixed
/// Last-Modified: it answers matching conditionals with 304 and all else with `full`.
async fn validating_origin(fields: &'static str) -> Origin {
    const LAST_MODIFIED: &str = "Tue, 01 Jan 2019 00:00:00 GMT";
    Origin::start(move |seen| {
        let etag_matches = seen.header("if-none-match").as_deref() == Some("\"v1\"");
        let date_matches = seen.header("if-modified-since").as_deref() == Some(LAST_MODIFIED);
        if etag_matches || date_matches {
            format!("HTTP/1.1 304 Not Modified\r\n{fields}\r\n").into_bytes()
        } else {
            reply(fields, "version one")
        }
    })
    .await
}

#[tokio::test]
async fn expired_response_is_revalidated_with_if_none_match() {
    let origin = validating_origin("Cache-Control: max-age=1\r\nETag: \"v1\"\r\n").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/expiring");
    assert_eq!(get(proxy.addr, &url, &[]).await.x_cache(), "MISS");
    assert_eq!(get(proxy.addr, &url, &[]).await.x_cache(), "HIT");
    assert_eq!(origin.request_count(), 1);
    // Past max-age=1 (Age is counted in whole seconds, so 2 s is surely past it).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let revalidated = get(proxy.addr, &url, &[]).await;
    assert_eq!(origin.request_count(), 2);
    let seen = &origin.requests()[1];
    assert_eq!(seen.header("if-none-match"), Some("\"v1\"".into()));
    assert_eq!(revalidated.status, 200, "{}", revalidated.head);
    assert_eq!(revalidated.body, b"version one");
    // The 304 made it fresh again.
    let hit = get(proxy.addr, &url, &[]).await;
    assert_eq!(
        (hit.x_cache(), hit.body),
        ("HIT".into(), b"version one".to_vec())
    );
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn revalidation_answered_with_a_new_representation_replaces_the_entry() {
    let origin = Origin::start(|seen| match seen.header("if-none-match") {
        // The stored "v1" is out of date: the origin sends "v2" in full.
        Some(_) => reply(
            "Cache-Control: max-age=600\r\nETag: \"v2\"\r\n",
            "version two",
        ),
        None => reply(
            "Cache-Control: max-age=0\r\nETag: \"v1\"\r\n",
            "version one",
        ),
    })
    .await;
    let proxy = cached_proxy().await;
    let url = origin.url("/changing");
    assert_eq!(get(proxy.addr, &url, &[]).await.body, b"version one");
    let changed = get(proxy.addr, &url, &[]).await;
    assert_eq!(
        (changed.status, changed.body),
        (200, b"version two".to_vec())
    );
    assert_eq!(
        origin.requests()[1].header("if-none-match"),
        Some("\"v1\"".into())
    );
    let hit = get(proxy.addr, &url, &[]).await;
    assert_eq!(
        (hit.x_cache(), hit.body),
        ("HIT".into(), b"version two".to_vec())
    );
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn response_stale_on_arrival_is_revalidated_with_if_modified_since() {
    let origin = validating_origin(
        "Expires: Thu, 01 Jan 1970 00:00:00 GMT\r\nLast-Modified: Tue, 01 Jan 2019 00:00:00 GMT\r\n",
    )
    .await;
    let proxy = cached_proxy().await;
    let url = origin.url("/old");
    for _ in 0..3 {
        let reply = get(proxy.addr, &url, &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.head);
        assert_eq!(reply.body, b"version one");
    }
    let seen = origin.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].header("if-modified-since"), None);
    for later in &seen[1..] {
        assert_eq!(
            later.header("if-modified-since"),
            Some("Tue, 01 Jan 2019 00:00:00 GMT".into()),
            "{}",
            later.head_str()
        );
    }
}

#[tokio::test]
async fn request_no_cache_and_max_age_zero_revalidate() {
    let origin = validating_origin("Cache-Control: max-age=600\r\nETag: \"v1\"\r\n").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/fresh");
    get(proxy.addr, &url, &[]).await;
    assert_eq!(get(proxy.addr, &url, &[]).await.x_cache(), "HIT");
    assert_eq!(origin.request_count(), 1);
    let asks = [
        "Cache-Control: no-cache",
        "Cache-Control: max-age=0",
        "Pragma: no-cache",
    ];
    for (n, field) in asks.iter().enumerate() {
        let reply = get(proxy.addr, &url, &[field]).await;
        assert_eq!(reply.status, 200, "{field}");
        assert_eq!(reply.body, b"version one", "{field}");
        assert_eq!(origin.request_count(), n + 2, "{field}");
        let seen = &origin.requests()[n + 1];
        assert_eq!(
            seen.header("if-none-match"),
            Some("\"v1\"".into()),
            "{field}"
        );
    }
    // Without the directive, the (refreshed) entry answers again.
    assert_eq!(get(proxy.addr, &url, &[]).await.x_cache(), "HIT");
    assert_eq!(origin.request_count(), 4);
}

#[tokio::test]
async fn clients_own_validator_gets_304_from_the_cache() {
    let origin = validating_origin("Cache-Control: max-age=600\r\nETag: \"v1\"\r\n").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/etagged");
    get(proxy.addr, &url, &[]).await;
    let reply = get(proxy.addr, &url, &["If-None-Match: \"v1\""]).await;
    assert_eq!(reply.status, 304, "{}", reply.head);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("etag"), Some("\"v1\"".into()));
    let other = get(proxy.addr, &url, &["If-None-Match: \"v0\""]).await;
    assert_eq!((other.status, other.body), (200, b"version one".to_vec()));
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "twelve bytes").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/doc");
    get(proxy.addr, &url, &[]).await;
    let head = send(proxy.addr, "HEAD", &url, &[], "").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.x_cache(), "HIT");
    assert_eq!(head.header("content-length"), Some("12".into()));
    assert!(head.body.is_empty(), "{:?}", head.body);
    let lines: Vec<String> = origin.requests().iter().map(|s| s.request_line()).collect();
    assert_eq!(lines, ["GET /doc HTTP/1.1"]);
}

#[tokio::test]
async fn unsafe_methods_drop_the_stored_entry() {
    let origin = Origin::start(|seen| {
        let method = seen
            .request_line()
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string();
        reply(
            "Cache-Control: max-age=600\r\n",
            &format!("{method} answered"),
        )
    })
    .await;
    let proxy = cached_proxy().await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let path = format!("/{method}");
        let url = origin.url(&path);
        get(proxy.addr, &url, &[]).await;
        assert_eq!(
            get(proxy.addr, &url, &[]).await.x_cache(),
            "HIT",
            "{method}"
        );
        assert_eq!(count_for(&origin, &path), 1, "{method}");
        let unsafe_reply = send(proxy.addr, method, &url, &[], "change").await;
        assert_eq!(unsafe_reply.body, format!("{method} answered").as_bytes());
        let after = get(proxy.addr, &url, &[]).await;
        assert_eq!(after.x_cache(), "MISS", "{method} left the entry");
        assert_eq!(after.body, b"GET answered");
        assert_eq!(count_for(&origin, &path), 3, "{method}");
    }
}

#[tokio::test]
async fn eviction_drops_the_least_recently_used_at_the_byte_limit() {
    const OBJECT: usize = 400 * 1024;
    let origin = Origin::start(|seen| {
        let path = seen
            .request_line()
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string();
        let fill = path.bytes().last().unwrap_or(b'?') as char;
        reply(
            "Cache-Control: max-age=600\r\n",
            &fill.to_string().repeat(OBJECT),
        )
    })
    .await;
    let (proxy, stats) = cached_proxy_with_stats(1).await;
    let fetch = |path: &'static str| {
        let url = origin.url(path);
        async move {
            let reply = get(proxy, &url, &[]).await;
            assert_eq!(reply.body.len(), OBJECT, "{path}");
            assert!(reply.body.ends_with(&path.as_bytes()[path.len() - 1..]));
            reply.x_cache()
        }
    };
    assert_eq!(fetch("/a").await, "MISS");
    assert_eq!(fetch("/b").await, "MISS");
    // /a becomes the most recently used, so storing /c must evict /b.
    assert_eq!(fetch("/a").await, "HIT");
    assert_eq!(fetch("/c").await, "MISS");
    assert_eq!(fetch("/a").await, "HIT");
    assert_eq!(fetch("/c").await, "HIT");
    assert_eq!(fetch("/b").await, "MISS");
    assert_eq!(
        [
            count_for(&origin, "/a"),
            count_for(&origin, "/b"),
            count_for(&origin, "/c")
        ],
        [1, 2, 1]
    );
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.cache_evictions, 2, "{snapshot:?}");
    assert_eq!(snapshot.cache_entries, 2, "{snapshot:?}");
    assert!(snapshot.cache_bytes_held <= 1 << 20, "{snapshot:?}");
    assert!(
        snapshot.cache_bytes_held >= 2 * OBJECT as u64,
        "{snapshot:?}"
    );
}

#[tokio::test]
async fn object_over_the_limit_streams_whole_but_is_not_stored() {
    const SIZE: usize = 200 * 1024;
    let body: String = (0..SIZE).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let chunked_body = body.clone();
    let origin = Origin::start(move |seen| {
        if seen.request_line().contains("/chunked") {
            // No Content-Length: the limit is found while the body streams.
            let mut out = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n\
                            Transfer-Encoding: chunked\r\n\r\n"
                .to_vec();
            for piece in chunked_body.as_bytes().chunks(16 * 1024) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        } else {
            reply("Cache-Control: max-age=600\r\n", &chunked_body)
        }
    })
    .await;
    let proxy = Proxy::start_with(|c| cache_on(c, 64, 64)).await;
    for path in ["/sized", "/chunked"] {
        let url = origin.url(path);
        for _ in 0..2 {
            let (code, out, err) = curl(&["-x", &proxy.url(), &url]).await;
            assert_eq!(code, 0, "{err}");
            assert!(out == body.as_bytes(), "{path}: body changed in transit");
        }
        assert_eq!(count_for(&origin, path), 2, "{path} was stored");
    }
    // A small object on the same proxy is still stored.
    let small = origin_with("Cache-Control: max-age=600\r\n", "small").await;
    get(proxy.addr, &small.url("/"), &[]).await;
    assert_eq!(get(proxy.addr, &small.url("/"), &[]).await.x_cache(), "HIT");
}

#[tokio::test]
async fn response_broken_off_mid_body_is_not_stored() {
    // The first answer for each path breaks off; later ones are whole.
    let broken_once = std::sync::Mutex::new(std::collections::HashSet::new());
    let origin = Origin::start(move |seen| {
        let first = broken_once.lock().unwrap().insert(seen.request_line());
        match (first, seen.request_line().contains("/chunked")) {
            // Promises 100 bytes, sends 40, closes.
            (true, false) => format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 100\r\n\
                 Connection: close\r\n\r\n{}",
                "x".repeat(40)
            )
            .into_bytes(),
            // One chunk, then the connection closes without the last chunk.
            (true, true) => b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n\
                              Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                              5\r\nhello\r\n"
                .to_vec(),
            (false, _) => reply("Cache-Control: max-age=600\r\n", "complete"),
        }
    })
    .await;
    let proxy = cached_proxy().await;
    for path in ["/sized", "/chunked"] {
        let url = origin.url(path);
        let broken = get(proxy.addr, &url, &[]).await;
        assert_ne!(broken.body, b"complete", "{path}");
        let next = get(proxy.addr, &url, &[]).await;
        assert_eq!(
            (next.x_cache(), next.body),
            ("MISS".into(), b"complete".to_vec())
        );
        assert_eq!(
            count_for(&origin, path),
            2,
            "{path}: the broken body was stored"
        );
        let hit = get(proxy.addr, &url, &[]).await;
        assert_eq!(
            (hit.x_cache(), hit.body),
            ("HIT".into(), b"complete".to_vec())
        );
    }
    proxy.assert_healthy().await;
}

/// An origin that answers every request with `reply` after `SLOW_ORIGIN_DELAY`;
/// returns its address and the number of requests it received.
async fn slow_origin(reply: Vec<u8>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, reply) = (Arc::clone(&seen), Arc::clone(&reply));
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    // Requests here are GETs without bodies: the head is all there is.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    seen.fetch_add(1, SeqCst);
                    tokio::time::sleep(SLOW_ORIGIN_DELAY).await;
                    if reader.get_mut().write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_origin_request() {
    let (origin, count) = slow_origin(reply("Cache-Control: max-age=600\r\n", "popular")).await;
    let proxy = cached_proxy().await;
    let url = format!("http://{origin}/popular");
    let clients: Vec<_> = (0..CONCURRENT_MISSES)
        .map(|_| {
            let url = url.clone();
            let addr = proxy.addr;
            tokio::spawn(async move { get(addr, &url, &[]).await })
        })
        .collect();
    let mut marks = Vec::new();
    for client in clients {
        let reply = within(client).await.unwrap();
        assert_eq!((reply.status, &reply.body[..]), (200, &b"popular"[..]));
        marks.push(reply.x_cache());
    }
    assert_eq!(
        count.load(SeqCst),
        1,
        "the origin saw more than one request"
    );
    let misses = marks.iter().filter(|m| *m == "MISS").count();
    let hits = marks.iter().filter(|m| *m == "HIT").count();
    assert_eq!((misses, hits), (1, CONCURRENT_MISSES - 1), "{marks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_misses_fetch_themselves_when_the_first_is_not_storable() {
    const CLIENTS: usize = 10;
    let (origin, count) = slow_origin(reply("Cache-Control: no-store\r\n", "personal")).await;
    let proxy = cached_proxy().await;
    let url = format!("http://{origin}/personal");
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = url.clone();
            let addr = proxy.addr;
            tokio::spawn(async move { get(addr, &url, &[]).await })
        })
        .collect();
    for client in clients {
        let reply = within(client).await.unwrap();
        assert_eq!((reply.status, reply.x_cache()), (200, "MISS".into()));
    }
    assert_eq!(count.load(SeqCst), CLIENTS);
    // Released as soon as the first answer proved unstorable, not after the full wait.
    assert!(
        started.elapsed() < proxy_server::cache::DEFAULT_FLIGHT_WAIT,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn only_if_cached_with_nothing_stored_is_504() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "stored later").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/maybe");
    let reply = get(proxy.addr, &url, &["Cache-Control: only-if-cached"]).await;
    assert_eq!(reply.status, 504, "{}", reply.head);
    assert_eq!(origin.request_count(), 0);
    get(proxy.addr, &url, &[]).await;
    let reply = get(proxy.addr, &url, &["Cache-Control: only-if-cached"]).await;
    assert_eq!((reply.status, reply.x_cache()), (200, "HIT".into()));
    assert_eq!(origin.request_count(), 1);
    // Stored but stale is not good enough either (RFC 9111 §5.2.1.7).
    let stale = origin_with("Cache-Control: max-age=0\r\nETag: \"s\"\r\n", "stale").await;
    get(proxy.addr, &stale.url("/"), &[]).await;
    let reply = get(
        proxy.addr,
        &stale.url("/"),
        &["Cache-Control: only-if-cached"],
    )
    .await;
    assert_eq!(reply.status, 504, "{}", reply.head);
    assert_eq!(stale.request_count(), 1);
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn hits_keep_the_client_connection_alive_and_are_counted() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "again and again").await;
    let (proxy, stats) = cached_proxy_with_stats(64).await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: origin\r\n\r\n",
        origin.url("/kept")
    );
    let mut stream = within(TcpStream::connect(proxy)).await.unwrap();
    const HITS: usize = 5;
    for n in 0..=HITS {
        stream.write_all(request.as_bytes()).await.unwrap();
        let reply = Reply::parse(&read_response(&mut stream).await);
        assert_eq!(reply.status, 200, "request {n}");
        assert_eq!(reply.body, b"again and again", "request {n}");
        assert_eq!(
            reply.header("connection"),
            None,
            "request {n}:\n{}",
            reply.head
        );
        let expected = if n == 0 { "MISS" } else { "HIT" };
        assert_eq!(reply.x_cache(), expected, "request {n}");
        assert_eq!(reply.age().is_some(), n > 0, "request {n}:\n{}", reply.head);
    }
    assert_eq!(origin.request_count(), 1);
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.cache_hits, HITS as u64, "{snapshot:?}");
    assert_eq!(snapshot.cache_misses, 1, "{snapshot:?}");
    assert_eq!(snapshot.cache_entries, 1, "{snapshot:?}");
    assert!(snapshot.cache_bytes_held > 15, "{snapshot:?}");
    assert_eq!(snapshot.requests.allowed, HITS as u64 + 1, "{snapshot:?}");
    // Closing is the client's choice: a last hit with `Connection: close` ends it.
    let closing = request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    stream.write_all(closing.as_bytes()).await.unwrap();
    let last = Reply::parse(&read_to_close(&mut stream).await);
    assert_eq!(last.header("connection"), Some("close".into()));
    assert_eq!(
        (last.x_cache(), last.body),
        ("HIT".into(), b"again and again".to_vec())
    );
}

#[tokio::test]
async fn mismatched_304_is_not_used_and_the_client_still_gets_the_page() {
    let origin = Origin::start(|seen| match seen.header("if-none-match") {
        // Claims "not modified" but names another representation (RFC 9111 §4.3.4):
        // it must not update the stored "v1".
        Some(_) => b"HTTP/1.1 304 Not Modified\r\nETag: \"other\"\r\n\r\n".to_vec(),
        None => reply("Cache-Control: max-age=0\r\nETag: \"v1\"\r\n", "full page"),
    })
    .await;
    let proxy = cached_proxy().await;
    let url = origin.url("/odd");
    get(proxy.addr, &url, &[]).await;
    let reply = get(proxy.addr, &url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.body, b"full page");
    let seen = origin.requests();
    assert_eq!(seen.len(), 3, "no unconditional retry");
    assert_eq!(seen[2].header("if-none-match"), None);
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn key_ignores_host_case() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "same resource").await;
    let proxy = cached_proxy().await;
    let port = origin.addr.port();
    let miss = get(proxy.addr, &format!("http://localhost:{port}/k"), &[]).await;
    assert_eq!(
        (miss.status, miss.x_cache()),
        (200, "MISS".into()),
        "{}",
        miss.head
    );
    let hit = get(proxy.addr, &format!("http://LocalHost:{port}/k"), &[]).await;
    assert_eq!(
        (hit.x_cache(), hit.body),
        ("HIT".into(), b"same resource".to_vec())
    );
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn http10_client_gets_a_hit_and_a_close() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "old client").await;
    let proxy = cached_proxy().await;
    let request = format!("GET {} HTTP/1.0\r\n\r\n", origin.url("/ten"));
    exchange(proxy.addr, request.as_bytes()).await;
    let hit = Reply::parse(&exchange(proxy.addr, request.as_bytes()).await);
    assert_eq!(
        (hit.status, hit.x_cache()),
        (200, "HIT".into()),
        "{}",
        hit.head
    );
    assert_eq!(hit.body, b"old client");
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn head_on_a_stale_entry_is_revalidated_without_a_body() {
    let origin = validating_origin("Cache-Control: max-age=0\r\nETag: \"v1\"\r\n").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/stale-head");
    get(proxy.addr, &url, &[]).await;
    let head = send(proxy.addr, "HEAD", &url, &[], "").await;
    assert_eq!(head.status, 200, "{}", head.head);
    assert_eq!(head.header("content-length"), Some("11".into()));
    assert!(head.body.is_empty());
    let seen = origin.requests();
    assert_eq!(seen[1].request_line(), "HEAD /stale-head HTTP/1.1");
    assert_eq!(seen[1].header("if-none-match"), Some("\"v1\"".into()));
}

#[tokio::test]
async fn unsafe_method_drops_the_uri_in_location() {
    let origin = Origin::start(|seen| {
        if seen.request_line().starts_with("POST") {
            b"HTTP/1.1 201 Created\r\nLocation: /items/7\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else {
            reply("Cache-Control: max-age=600\r\n", "item seven")
        }
    })
    .await;
    let proxy = cached_proxy().await;
    let item = origin.url("/items/7");
    get(proxy.addr, &item, &[]).await;
    assert_eq!(get(proxy.addr, &item, &[]).await.x_cache(), "HIT");
    let created = send(proxy.addr, "POST", &origin.url("/items"), &[], "n=7").await;
    assert_eq!(created.status, 201);
    assert_eq!(get(proxy.addr, &item, &[]).await.x_cache(), "MISS");
    assert_eq!(count_for(&origin, "/items/7"), 2);
}

#[tokio::test]
async fn pipelined_requests_get_hits_in_order() {
    let origin = Origin::start(|seen| {
        let path = seen
            .request_line()
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string();
        reply("Cache-Control: max-age=600\r\n", &format!("body of {path}"))
    })
    .await;
    let proxy = cached_proxy().await;
    for path in ["/p1", "/p2"] {
        get(proxy.addr, &origin.url(path), &[]).await;
    }
    let mut batch = String::new();
    for path in ["/p1", "/p2", "/p1"] {
        batch.push_str(&format!(
            "GET {} HTTP/1.1\r\nHost: o\r\n\r\n",
            origin.url(path)
        ));
    }
    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    stream.write_all(batch.as_bytes()).await.unwrap();
    for path in ["/p1", "/p2", "/p1"] {
        let reply = Reply::parse(&read_response(&mut stream).await);
        assert_eq!(reply.x_cache(), "HIT", "{path}");
        assert_eq!(reply.body, format!("body of {path}").as_bytes());
    }
    assert_eq!(origin.request_count(), 2);
}
