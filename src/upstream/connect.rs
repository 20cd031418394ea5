//! Opening one TCP connection to a host from the addresses the dialer checked, for
//! origins and (the same way) parent proxies: Happy Eyeballs (RFC 8305) across them, the
//! socket bound to the `--outgoing-address` when one is set, all within the connect
//! timeout.
//!
//! Happy Eyeballs, as RFC 8305 §4–5 has it: the addresses are put in order with the
//! family of the resolver's first answer first and the families alternating after that;
//! the first attempt starts at once, and each next one when the previous has had
//! [`ATTEMPT_DELAY`] without an answer, or at once when an attempt fails. The first
//! connection made wins and the attempts still under way are dropped (closed). So a host
//! whose first address is black-holed is reached through the next one after a quarter
//! second, not after the connect timeout.
//!
//! With an outgoing address, only addresses of its family are tried (a socket bound to an
//! IPv4 address cannot reach an IPv6 one).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::net::{TcpSocket, TcpStream};

use crate::error::ProxyError;

/// RFC 8305 §5's recommended Connection Attempt Delay.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// How connections are opened: the deadline for one, and the local address to bind.
#[derive(Debug, Clone)]
pub struct Connector {
    timeout: Duration,
    outgoing: Option<IpAddr>,
}

impl Connector {
    pub fn new(timeout: Duration, outgoing: Option<IpAddr>) -> Connector {
        Connector { timeout, outgoing }
    }

    /// The deadline for one connection.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A connection to one of `addrs` (checked by the caller), and the address it went to.
    pub async fn connect(
        &self,
        addrs: &[SocketAddr],
    ) -> Result<(TcpStream, SocketAddr), ProxyError> {
        let order = self.order(addrs);
        tokio::time::timeout(self.timeout, self.race(&order))
            .await
            .unwrap_or(Err(ProxyError::ConnectTimeout))
    }

    /// The addresses in the order they are tried: those an outgoing address can reach,
    /// the first one's family first, then alternating families.
    fn order(&self, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
        let usable: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|addr| {
                self.outgoing
                    .is_none_or(|local| local.is_ipv4() == addr.is_ipv4())
            })
            .collect();
        let Some(first) = usable.first() else {
            return usable;
        };
        let (preferred, other): (Vec<SocketAddr>, Vec<SocketAddr>) = usable
            .iter()
            .partition(|addr| addr.is_ipv4() == first.is_ipv4());
        let (mut preferred, mut other) = (preferred.into_iter(), other.into_iter());
        let mut order = Vec::with_capacity(usable.len());
        loop {
            match (preferred.next(), other.next()) {
                (None, None) => return order,
                (one, two) => order.extend(one.into_iter().chain(two)),
            }
        }
    }

    /// Staggered attempts until one connects; the last failure when all fail.
    async fn race(&self, order: &[SocketAddr]) -> Result<(TcpStream, SocketAddr), ProxyError> {
        let mut queue = order.iter().copied();
        let Some(first) = queue.next() else {
            let source = io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "no address of the outgoing address's family",
            );
            return Err(ProxyError::Connect { addr: None, source });
        };
        if order.len() == 1 {
            return self.attempt(first).await.map(|stream| (stream, first));
        }
        let mut attempts = FuturesUnordered::new();
        let start = |addr| async move { (addr, self.attempt(addr).await) };
        attempts.push(start(first));
        let mut last = None;
        loop {
            let pending = queue.len() > 0;
            tokio::select! {
                Some((addr, result)) = attempts.next() => match result {
                    Ok(stream) => return Ok((stream, addr)),
                    Err(error) => {
                        last = Some(error);
                        // A failure starts the next attempt at once (RFC 8305 §5).
                        if let Some(next) = queue.next() {
                            attempts.push(start(next));
                        }
                    }
                },
                () = tokio::time::sleep(ATTEMPT_DELAY), if pending => {
                    if let Some(next) = queue.next() {
                        attempts.push(start(next));
                    }
                }
                else => break,
            }
        }
        Err(last.unwrap_or(ProxyError::Connect {
            addr: None,
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        }))
    }

    /// One connection attempt, from the outgoing address if there is one.
    async fn attempt(&self, addr: SocketAddr) -> Result<TcpStream, ProxyError> {
        let failed = |source| ProxyError::Connect {
            addr: Some(addr),
            source,
        };
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(failed)?;
        if let Some(local) = self.outgoing {
            socket.bind(SocketAddr::new(local, 0)).map_err(failed)?;
        }
        let stream = socket.connect(addr).await.map_err(failed)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;
    use tokio::net::TcpListener;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn families_alternate_from_the_first_answers_family() {
        let connector = Connector::new(Duration::from_secs(1), None);
        let given = addrs(&[
            "[::1]:80",
            "[::2]:80",
            "[::3]:80",
            "10.0.0.1:80",
            "10.0.0.2:80",
        ]);
        let want = addrs(&[
            "[::1]:80",
            "10.0.0.1:80",
            "[::2]:80",
            "10.0.0.2:80",
            "[::3]:80",
        ]);
        assert_eq!(connector.order(&given), want);
        let v4 = Connector::new(Duration::from_secs(1), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(v4.order(&given), addrs(&["10.0.0.1:80", "10.0.0.2:80"]));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_502_with_its_cause() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let connector = Connector::new(Duration::from_secs(5), None);
        let error = connector.connect(&[addr]).await.unwrap_err();
        assert_eq!(error.status(), Some(502));
        assert_eq!(error.brief(), "upstream_connect");
        assert!(matches!(&error, ProxyError::Connect { addr: Some(a), .. } if *a == addr));
        let cause = error.source().unwrap().downcast_ref::<io::Error>().unwrap();
        assert_eq!(cause.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn a_refused_address_passes_to_the_next_and_the_bound_address_is_used() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = closed.local_addr().unwrap();
        drop(closed);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let connector = Connector::new(Duration::from_secs(5), Some(local));
        let (stream, peer) = connector.connect(&[refused, open]).await.unwrap();
        assert_eq!(peer, open);
        assert_eq!(stream.local_addr().unwrap().ip(), local);
        let none = connector.connect(&addrs(&["[::1]:80"])).await.unwrap_err();
        assert!(matches!(none, ProxyError::Connect { addr: None, .. }));
    }
}
