//! What a connection task shares with the rest of the process (settings, the origin
//! pool, the shutdown signal), and the record of one exchange that the connection fills
//! in as it goes and logs when it ends.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use tokio::sync::watch;

use crate::config::Config;
use crate::error::ProxyError;
use crate::http::RequestHead;
use crate::upstream::Pool;

pub struct Context {
    pub config: Config,
    pub pool: Pool,
    /// Connection tasks that panicked (caught by `server::isolate`); a relaxed counter
    /// for the statistics, which only ever read it.
    pub panics: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Context {
    pub fn new(config: Config, shutdown: watch::Receiver<bool>) -> Context {
        Context {
            config,
            pool: Pool::default(),
            panics: AtomicU64::new(0),
            shutdown,
        }
    }

    /// Whether the server is draining: responses then close their connections.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Refuses destinations that are this proxy itself: the listening address, or the
    /// address this client reached us on (a forwarding loop, 508).
    pub fn check_destination(
        &self,
        addrs: &[SocketAddr],
        local: Option<SocketAddr>,
    ) -> Result<(), ProxyError> {
        let listen = self.config.listen;
        let is_self = |a: &SocketAddr| {
            Some(*a) == local
                || (a.port() == listen.port()
                    && (a.ip() == listen.ip()
                        || (listen.ip().is_unspecified() && a.ip().is_loopback())))
        };
        if addrs.iter().any(is_self) {
            return Err(ProxyError::Loop);
        }
        Ok(())
    }
}

/// One request or tunnel as the access log will show it.
#[derive(Debug)]
pub struct Exchange {
    pub started: Instant,
    pub client: SocketAddr,
    pub method: String,
    pub target: String,
    pub status: u16,
    pub response_started: bool,
    pub bytes_to_client: u64,
    pub bytes_from_client: u64,
    pub upstream: Option<SocketAddr>,
    pub failure: Option<&'static str>,
}

impl Exchange {
    pub fn start(client: SocketAddr, head: &RequestHead, started: Instant) -> Exchange {
        Exchange {
            started,
            client,
            method: head.method_str().to_string(),
            target: head.target.display(),
            status: 0,
            response_started: false,
            bytes_to_client: 0,
            bytes_from_client: 0,
            upstream: None,
            failure: None,
        }
    }
}
