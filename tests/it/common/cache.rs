//! Fixtures for the cache tests: a proxy with the cache on, requests with chosen fields
//! and their replies (status, X-Cache, Age, body), and origins with fixed caching fields.

use std::net::SocketAddr;
use std::time::Duration;

use proxy_server::config::Config;

use super::*;

/// How long the slow origin holds each answer back, so concurrent misses overlap.
pub const SLOW_ORIGIN_DELAY: Duration = Duration::from_millis(300);

/// Clients asking for one uncached URI at once.
pub const CONCURRENT_MISSES: usize = 50;

/// Turns the cache on with `size_mib` of room and objects up to `max_object_kib`.
pub fn cache_on(config: &mut Config, size_mib: u64, max_object_kib: u64) {
    config.cache = Some(proxy_server::cache::CacheSettings {
        capacity: (size_mib << 20) as usize,
        max_object: (max_object_kib << 10) as usize,
    });
}

/// A proxy with the default cache limits.
pub async fn cached_proxy() -> Proxy {
    cached_proxy_of(64).await
}

/// A proxy with a cache of `size_mib` and the default object limit.
pub async fn cached_proxy_of(size_mib: u64) -> Proxy {
    Proxy::start_with(|c| cache_on(c, size_mib, 8192)).await
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
        let (head, body) = split_head(raw);
        Reply {
            status: status(raw),
            head: String::from_utf8_lossy(head).into_owned(),
            body: body.to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        header_value(&self.head, name)
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
