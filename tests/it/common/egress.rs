//! Fixtures for the egress tests: a [`Gate`] — a port that refuses connections (bound,
//! not listening) until it is opened, then relays each connection to a real parent
//! instance and counts them — and waiting for an access-log line of the real binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use super::{ProxyProcess, STEP, wait_until};

/// A port of our own that refuses connections until [`Gate::open`].
pub struct Gate {
    pub addr: SocketAddr,
    socket: Option<TcpSocket>,
    /// Connections accepted since it opened.
    pub accepted: Arc<AtomicUsize>,
}

impl Gate {
    /// Bound on 127.0.0.1, not listening: connections to it are refused.
    pub fn closed() -> Gate {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        Gate {
            addr: socket.local_addr().unwrap(),
            socket: Some(socket),
            accepted: Arc::default(),
        }
    }

    /// Starts listening, and relays every connection to `to`.
    pub fn open(&mut self, to: SocketAddr) {
        let listener = self.socket.take().expect("opened once").listen(64).unwrap();
        let accepted = Arc::clone(&self.accepted);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Waits until the access log of `proxy` has a line containing every one of `needles`;
/// returns that line.
pub async fn access_line(proxy: &ProxyProcess, needles: &[&str]) -> String {
    let found = |proxy: &ProxyProcess| {
        proxy
            .access_log()
            .into_iter()
            .find(|line| needles.iter().all(|n| line.contains(n)))
    };
    wait_until(&format!("access log line with {needles:?}"), STEP, || {
        let seen = found(proxy).is_some();
        async move { seen }
    })
    .await;
    found(proxy).unwrap()
}

/// The back-off the failover tests give their parents, in seconds (the smallest).
pub const BACKOFF_SECS: u64 = 1;

/// A little more than the back-off: when a backed-off parent is tried again.
pub const AFTER_BACKOFF: Duration = Duration::from_millis(BACKOFF_SECS * 1000 + 200);
