//! The accept loop: one task per connection, a cap on connections served at once (a
//! connection over the cap gets a canned 503 and is closed at once), and a graceful
//! shutdown that stops accepting, lets requests in flight finish within a grace period,
//! and closes idle keep-alive connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::context::{Context, Services};
use crate::error::ProxyError;
use crate::http::rewrite;

/// Pending connections the kernel queues before `accept`. The default of 128 drops
/// SYNs in a burst of new connections (each dropped one waits a second to retry): the
/// benchmark's 10,000-connection scenario took seconds to open instead of a fraction.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds the listening socket with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, so a restart
/// does not wait for old connections in TIME_WAIT).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Pause after an accept error (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves connections from `listener` until `shutdown` completes, then drains.
pub async fn run(
    listener: TcpListener,
    mut config: Config,
    services: Services,
    shutdown: impl Future<Output = ()>,
) {
    // The bound address, not the requested one (port 0), is what loop detection needs.
    if let Ok(bound) = listener.local_addr() {
        config.listen = bound;
    }
    let (stop, stopped) = watch::channel(false);
    let max = config.max_connections;
    let grace = config.timeouts.shutdown_grace;
    let ctx = Arc::new(Context::new(config, services, stopped));
    let permits = Arc::new(Semaphore::new(max));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse_overloaded(stream);
            continue;
        };
        let ctx = ctx.clone();
        let open = ctx.stats.connection_opened();
        tokio::spawn(async move {
            crate::conn::serve(stream, peer, ctx).await;
            drop(open);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    tracing::info!("shutting down: waiting up to {grace:?} for requests in flight");
    let drained = tokio::time::timeout(grace, permits.acquire_many(max as u32)).await;
    if drained.is_err() {
        tracing::warn!("grace period over with connections still open");
    }
}

/// Answers 503 without spawning anything: a fresh socket's send buffer takes the few
/// bytes at once (a plain non-blocking write, not waiting for the reactor to report the
/// socket writable), and the socket closes when dropped.
fn refuse_overloaded(stream: tokio::net::TcpStream) {
    use std::io::Write;
    let error = ProxyError::Overloaded;
    let answer = rewrite::canned(503, &error.body(), &[("Retry-After", "1")], false);
    if let Ok(mut socket) = stream.into_std() {
        let _ = socket.write_all(&answer);
        let _ = socket.shutdown(std::net::Shutdown::Write);
    }
}

/// Completes at the first SIGINT or SIGTERM.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}
