//! Fixtures for the cache tests: a proxy with the cache on, requests with chosen fields
//! and their replies (status, X-Cache, Age, body), origins with fixed caching fields, and
//! per-path request counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proxy_server::config::Config;
use proxy_server::stats::Stats;
use tokio::net::TcpListener;

use super::*;

/// How long the slow origin holds each answer back, so concurrent misses overlap.
pub const SLOW_ORIGIN_DELAY: Duration = Duration::from_millis(300);

/// Clients asking for one uncached URI at once.
pub const CONCURRENT_MISSES: usize = 50;

/// Turns the cache on with `size_mib` of room and objects up to `max_object_kib`.
pub fn cache_on(config: &mut Config, size_mib: u64, max_object_kib: u64) {
    config.cache.cache = true;
    config.cache.cache_size = size_mib;
    config.cache.cache_max_object = max_object_kib;
}

/// A proxy with the default cache limits.
pub async fn cached_proxy() -> Proxy {
    Proxy::start_with(|c| cache_on(c, 64, 8192)).await
}

/// A cached proxy whose statistics the test can read.
pub async fn cached_proxy_with_stats(size_mib: u64) -> (SocketAddr, Arc<Stats>) {
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
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn parse(raw: &[u8]) -> Reply {
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

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn x_cache(&self) -> String {
        self.header("x-cache").unwrap_or_default()
    }

    pub fn age(&self) -> Option<u64> {
        self.header("age")?.parse().ok()
    }
}

/// Sends `method url` with `fields` (and a body, if any) on a fresh connection.
pub async fn send(addr: SocketAddr, method: &str, url: &str, fields: &[&str], body: &str) -> Reply {
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

pub async fn get(addr: SocketAddr, url: &str, fields: &[&str]) -> Reply {
    send(addr, "GET", url, fields, "").await
}

/// A `200` with `fields` and a Content-Length body.
pub fn reply(fields: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\n{fields}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An origin answering every request with `200`, `fields` and `body`.
pub async fn origin_with(fields: &'static str, body: &'static str) -> Origin {
    Origin::start(move |_| reply(fields, body)).await
}

/// How many requests the origin saw for `path`.
pub fn count_for(origin: &Origin, path: &str) -> usize {
    origin
        .requests()
        .iter()
        .filter(|s| s.target() == path)
        .count()
}
