//! Reaching origins: name resolution, connecting with a deadline to addresses the caller
//! has already checked (so no second lookup can swap them, RFC 9110 §17.1 aside), and the
//! pool of idle keep-alive connections reused across client connections.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::error::ProxyError;

/// Idle connections kept for one origin.
pub const POOL_MAX_PER_ORIGIN: usize = 64;
/// Idle connections kept in all.
pub const POOL_MAX_TOTAL: usize = 1024;
/// How long an idle origin connection is kept. Below the common origin keep-alive
/// timeouts (nginx 75 s, Apache 5 s is the outlier), so a reused connection is rarely
/// one the origin is closing at that moment; the retry covers the rest.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Resolves `host` to the addresses a connection may go to. IP literals skip the resolver.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ProxyError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| ProxyError::UpstreamConnect(format!("cannot resolve {host}")))?;
    let addrs: Vec<SocketAddr> = found.collect();
    if addrs.is_empty() {
        return Err(ProxyError::UpstreamConnect(format!(
            "cannot resolve {host}"
        )));
    }
    Ok(addrs)
}

/// Connects to the first of `addrs` that accepts, all within `limit`.
pub async fn connect(
    addrs: &[SocketAddr],
    limit: Duration,
) -> Result<(TcpStream, SocketAddr), ProxyError> {
    let attempt = async {
        let mut last: Option<io::Error> = None;
        for &addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr));
                }
                Err(e) => last = Some(e),
            }
        }
        let why = last.map_or_else(|| "no address".to_string(), |e| e.to_string());
        Err(ProxyError::UpstreamConnect(format!(
            "cannot connect: {why}"
        )))
    };
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or(Err(ProxyError::ConnectTimeout))
}

struct Idle {
    stream: TcpStream,
    peer: SocketAddr,
    since: Instant,
}

/// Idle keep-alive connections by origin `host:port`. The lock guards only map updates,
/// is never held across an await, and is held for O(1) work on the request path (the
/// clock is read and keys are built before taking it): a put that checked every idle
/// connection's age under the lock cost S1 noticeably more CPU per request (see
/// docs/performance.md, "Origin pool lock" (S1)).
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Lists>,
}

#[derive(Default)]
struct Lists {
    by_origin: HashMap<(String, u16), Vec<Idle>>,
    /// Connections in all the lists.
    total: usize,
}

impl Lists {
    /// Drops from `origin`'s list the connections idle too long at `now` (oldest first,
    /// as they were put).
    fn expire(&mut self, origin: &(String, u16), now: Instant) {
        if let Some(list) = self.by_origin.get_mut(origin) {
            let stale = list
                .iter()
                .take_while(|c| now.duration_since(c.since) >= POOL_IDLE_TIMEOUT)
                .count();
            list.drain(..stale);
            self.total -= stale;
        }
    }

    /// Drops every connection idle too long at `now`, and the lists left empty.
    fn expire_all(&mut self, now: Instant) {
        self.by_origin.retain(|_, list| {
            list.retain(|c| now.duration_since(c.since) < POOL_IDLE_TIMEOUT);
            !list.is_empty()
        });
        self.total = self.by_origin.values().map(Vec::len).sum();
    }
}

impl Pool {
    /// An idle connection to `host:port` that still looks alive, most recent first.
    pub fn take(&self, host: &str, port: u16) -> Option<(TcpStream, SocketAddr)> {
        let origin = (host.to_string(), port);
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let idle = &mut *idle;
        let list = idle.by_origin.get_mut(&origin)?;
        while let Some(conn) = list.pop() {
            idle.total -= 1;
            if now.duration_since(conn.since) < POOL_IDLE_TIMEOUT && looks_alive(&conn.stream) {
                return Some((conn.stream, conn.peer));
            }
        }
        None
    }

    /// Keeps a connection whose last response was read completely.
    pub fn put(&self, host: &str, port: u16, stream: TcpStream, peer: SocketAddr) {
        let origin = (host.to_string(), port);
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.expire(&origin, now);
        if idle.total >= POOL_MAX_TOTAL {
            idle.expire_all(now);
            if idle.total >= POOL_MAX_TOTAL {
                return;
            }
        }
        let list = idle.by_origin.entry(origin).or_default();
        if list.len() < POOL_MAX_PER_ORIGIN {
            list.push(Idle {
                stream,
                peer,
                since: now,
            });
            idle.total += 1;
        }
    }

    /// Drops every idle connection (after the access rules change).
    pub fn clear(&self) {
        *self.idle.lock().unwrap_or_else(|e| e.into_inner()) = Lists::default();
    }

    pub fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An idle connection has nothing to read: end of stream or stray bytes mean the origin
/// closed it or broke the protocol, and it must not carry another request.
fn looks_alive(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn pool_reuses_live_and_drops_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::default();
        let (client, _) = connect(&[addr], Duration::from_secs(5)).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        pool.put("o", addr.port(), client, addr);
        assert!(pool.take("o", addr.port()).is_some());
        assert!(pool.take("o", addr.port()).is_none());

        let (client, _) = connect(&[addr], Duration::from_secs(5)).await.unwrap();
        let (server2, _) = listener.accept().await.unwrap();
        pool.put("o", addr.port(), client, addr);
        drop(server2);
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            pool.take("o", addr.port()).is_none(),
            "closed connection reused"
        );
    }

    /// The running total follows puts, takes and the per-origin cap.
    #[tokio::test]
    async fn pool_counts_what_it_holds() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::default();
        let mut servers = Vec::new();
        for origin in ["a", "a", "a", "b", "b"] {
            let (client, _) = connect(&[addr], Duration::from_secs(5)).await.unwrap();
            servers.push(listener.accept().await.unwrap().0);
            pool.put(origin, 80, client, addr);
        }
        assert_eq!(pool.len(), 5);
        assert!(pool.take("a", 80).is_some());
        assert!(pool.take("b", 81).is_none(), "ports are part of the origin");
        assert_eq!(pool.len(), 4);
        for _ in 0..POOL_MAX_PER_ORIGIN {
            let (client, _) = connect(&[addr], Duration::from_secs(5)).await.unwrap();
            servers.push(listener.accept().await.unwrap().0);
            pool.put("b", 80, client, addr);
        }
        assert_eq!(
            pool.len(),
            2 + POOL_MAX_PER_ORIGIN,
            "b holds at most its cap"
        );
        pool.clear();
        assert!(pool.is_empty());
    }

    #[tokio::test]
    async fn resolve_and_refuse() {
        assert_eq!(
            resolve("127.0.0.1", 80).await.unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert!(resolve("no-such-host.invalid", 80).await.is_err());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = connect(&[addr], Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.status(), Some(502));
    }
}
