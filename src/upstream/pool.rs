//! The pool of idle keep-alive upstream connections, reused across client connections and
//! keyed by route: a connection made directly to an origin and one made through a parent
//! proxy are never mixed up, even for the same host and port. Only keeps and hands out
//! sockets; whether one may be used again is the dialer's to check.
//!
//! The map hashes with foldhash, seeded at random per pool, not SipHash: every request
//! looks its origin up here and every reusable response puts it back (SipHash was a third
//! of S1's hashing cost; see docs/performance.md, "S1 overhead"). Host names are the
//! client's choice, so the map is bounded instead: at most [`POOL_MAX_TOTAL`] connections,
//! and origins left with none are dropped once they reach twice that, so a lookup that
//! met only colliding keys would scan at most that many; and without the seed, which
//! nothing outside the process sees, collisions cannot be crafted in the first place.
//!
//! A request looks its origin up by borrowed parts ([`OriginRef`]) and gets back the
//! pool's own key, whose host is shared (`Arc<str>`): a reused connection costs no
//! allocation for its key, going out or coming back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use hashbrown::{Equivalent, HashMap};

use super::Route;
use super::stream::UpstreamStream;

/// Idle connections kept for one origin.
pub const POOL_MAX_PER_ORIGIN: usize = 64;
/// Idle connections kept in all.
pub const POOL_MAX_TOTAL: usize = 1024;
/// How long an idle origin connection is kept. Below the common origin keep-alive
/// timeouts (nginx 75 s, Apache 5 s is the outlier), so a reused connection is rarely
/// one the origin is closing at that moment; the retry covers the rest.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

struct Idle {
    stream: UpstreamStream,
    peer: SocketAddr,
    since: Instant,
}

/// Where a pooled connection leads: the route it took and the origin it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub route: Route,
    pub host: Arc<str>,
    pub port: u16,
}

/// A [`PoolKey`] by borrowed parts, to look one up without building it. Its fields are
/// hashed in the same order and as the same types (`&T` hashes as `T`, `Arc<str>` as
/// `str`), so both hash alike.
#[derive(Debug, Clone, Copy, Hash)]
pub struct OriginRef<'a> {
    pub route: &'a Route,
    pub host: &'a str,
    pub port: u16,
}

impl OriginRef<'_> {
    pub fn to_key(self) -> PoolKey {
        PoolKey {
            route: self.route.clone(),
            host: Arc::from(self.host),
            port: self.port,
        }
    }
}

impl Equivalent<PoolKey> for OriginRef<'_> {
    fn equivalent(&self, key: &PoolKey) -> bool {
        *self.route == key.route && self.host == &*key.host && self.port == key.port
    }
}

/// Idle keep-alive connections by [`PoolKey`]. The lock guards only map updates,
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
    /// Lists may be left empty by takes; they are dropped with the expired connections
    /// once the connections or the lists reach their caps.
    by_origin: HashMap<PoolKey, Vec<Idle>, RandomState>,
    /// Connections in all the lists.
    total: usize,
}

impl Lists {
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
    /// An idle connection for `origin` that still looks alive, most recent first, with
    /// the pool's key for it (to put it back under).
    pub fn take(&self, origin: &OriginRef<'_>) -> Option<(UpstreamStream, SocketAddr, PoolKey)> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let idle = &mut *idle;
        let (key, list) = idle.by_origin.get_key_value_mut(origin)?;
        while let Some(conn) = list.pop() {
            idle.total -= 1;
            if now.duration_since(conn.since) < POOL_IDLE_TIMEOUT && conn.stream.looks_alive() {
                return Some((conn.stream, conn.peer, key.clone()));
            }
        }
        None
    }

    /// Keeps a connection whose last response was read completely.
    pub fn put(&self, origin: PoolKey, stream: UpstreamStream, peer: SocketAddr) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.total >= POOL_MAX_TOTAL || idle.by_origin.len() >= 2 * POOL_MAX_TOTAL {
            idle.expire_all(now);
            if idle.total >= POOL_MAX_TOTAL {
                return;
            }
        }
        let idle = &mut *idle;
        let list = idle.by_origin.entry(origin).or_default();
        // The oldest first, as they were put.
        let stale = list
            .iter()
            .take_while(|c| now.duration_since(c.since) >= POOL_IDLE_TIMEOUT)
            .count();
        list.drain(..stale);
        idle.total -= stale;
        if list.len() < POOL_MAX_PER_ORIGIN {
            list.push(Idle {
                stream,
                peer,
                since: now,
            });
            idle.total += 1;
        }
    }

    /// Connections held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    fn key(host: &str, port: u16) -> PoolKey {
        OriginRef {
            route: &Route::Direct,
            host,
            port,
        }
        .to_key()
    }

    fn origin(key: &PoolKey) -> OriginRef<'_> {
        OriginRef {
            route: &key.route,
            host: &key.host,
            port: key.port,
        }
    }

    /// A borrowed key finds what its owned form was put under: both hash alike.
    #[test]
    fn borrowed_and_owned_keys_hash_alike() {
        use std::hash::BuildHasher;
        let state = RandomState::default();
        let parent = Route::Parent(Arc::from("up"));
        for route in [&Route::Direct, &parent] {
            let borrowed = OriginRef {
                route,
                host: "example.org",
                port: 8080,
            };
            let owned = borrowed.to_key();
            assert_eq!(state.hash_one(borrowed), state.hash_one(&owned));
            assert!(borrowed.equivalent(&owned));
        }
    }

    fn take(pool: &Pool, key: &PoolKey) -> Option<(UpstreamStream, SocketAddr, PoolKey)> {
        pool.take(&origin(key))
    }

    async fn pair(listener: &TcpListener) -> (UpstreamStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (
            UpstreamStream::Tcp(client),
            listener.accept().await.unwrap().0,
        )
    }

    #[tokio::test]
    async fn pool_reuses_live_and_drops_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::default();
        let (client, server) = pair(&listener).await;
        pool.put(key("o", addr.port()), client, addr);
        assert!(take(&pool, &key("o", addr.port())).is_some());
        assert!(take(&pool, &key("o", addr.port())).is_none());

        let (client, server2) = pair(&listener).await;
        pool.put(key("o", addr.port()), client, addr);
        drop(server2);
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            take(&pool, &key("o", addr.port())).is_none(),
            "closed connection reused"
        );
    }

    /// Origins whose connections were all taken do not pile up: the map stays bounded
    /// whatever names clients use.
    #[tokio::test]
    async fn origins_left_empty_are_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::default();
        let (mut client, _server) = pair(&listener).await;
        for n in 0..2 * POOL_MAX_TOTAL + 10 {
            let origin = format!("o{n}");
            pool.put(key(&origin, 80), client, addr);
            client = take(&pool, &key(&origin, 80)).unwrap().0;
        }
        let origins = pool.idle.lock().unwrap().by_origin.len();
        assert!(origins <= 2 * POOL_MAX_TOTAL, "{origins} origins kept");
    }

    /// The running total follows puts, takes and the per-origin cap.
    #[tokio::test]
    async fn pool_counts_what_it_holds() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::default();
        let mut servers = Vec::new();
        for origin in ["a", "a", "a", "b", "b"] {
            let (client, server) = pair(&listener).await;
            servers.push(server);
            pool.put(key(origin, 80), client, addr);
        }
        assert_eq!(pool.len(), 5);
        assert!(take(&pool, &key("a", 80)).is_some());
        assert!(
            take(&pool, &key("b", 81)).is_none(),
            "ports are part of the origin"
        );
        assert_eq!(pool.len(), 4);
        for _ in 0..POOL_MAX_PER_ORIGIN {
            let (client, server) = pair(&listener).await;
            servers.push(server);
            pool.put(key("b", 80), client, addr);
        }
        assert_eq!(
            pool.len(),
            2 + POOL_MAX_PER_ORIGIN,
            "b holds at most its cap"
        );
    }
}
