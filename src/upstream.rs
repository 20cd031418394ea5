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

/// Idle keep-alive connections by origin `host:port`. The lock guards only map updates
/// and is never held across an await.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<(String, u16), Vec<Idle>>>,
}

impl Pool {
    /// An idle connection to `host:port` that still looks alive, most recent first.
    pub fn take(&self, host: &str, port: u16) -> Option<(TcpStream, SocketAddr)> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&(host.to_string(), port))?;
        while let Some(conn) = list.pop() {
            if conn.since.elapsed() < POOL_IDLE_TIMEOUT && looks_alive(&conn.stream) {
                return Some((conn.stream, conn.peer));
            }
        }
        None
    }

    /// Keeps a connection whose last response was read completely.
    pub fn put(&self, host: &str, port: u16, stream: TcpStream, peer: SocketAddr) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = idle.values().map(Vec::len).sum();
        if total >= POOL_MAX_TOTAL {
            idle.retain(|_, list| {
                list.retain(|c| c.since.elapsed() < POOL_IDLE_TIMEOUT);
                !list.is_empty()
            });
            if idle.values().map(Vec::len).sum::<usize>() >= POOL_MAX_TOTAL {
                return;
            }
        }
        let list = idle.entry((host.to_string(), port)).or_default();
        list.retain(|c| c.since.elapsed() < POOL_IDLE_TIMEOUT);
        if list.len() < POOL_MAX_PER_ORIGIN {
            list.push(Idle {
                stream,
                peer,
                since: Instant::now(),
            });
        }
    }

    /// Drops every idle connection (after the access rules change).
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn len(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
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
