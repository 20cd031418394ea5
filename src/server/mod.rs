//! The listeners and their accept loops (`accept`): one task per connection, a cap on
//! connections served at once across all listeners (a connection over the cap gets a
//! canned 503, on a plain HTTP listener, and is closed at once), and a graceful
//! shutdown that stops accepting, lets requests in flight finish within a grace period,
//! and closes idle keep-alive connections; tunnels still open when the grace ends are
//! cut (`cut`) and recorded before the process exits. Each connection task is isolated:
//! a panic in one is caught, logged and counted, and touches no other connection. A
//! process's life around the server (`process`), when accepting stops (`lifecycle`:
//! SIGTERM after the drain delay, or a handover on SIGUSR2), how sockets pass between
//! processes (`handover`), what systemd is told (`notify`) and the signals held while the
//! process starts (`signals`) live beside.

mod accept;
mod handover;
mod lifecycle;
mod notify;
mod process;
mod signals;
mod summary;

pub use handover::{
    HANDOVER_NOTIFY_ENV, Inherited, ListenEnv, Sockets as HandoverSockets, Successor, inherit,
};
pub use lifecycle::{Lifecycle, Stop};
pub use notify::Notifier;
pub use process::{EXIT_CONFIG, Environment, launch};
pub use signals::hold_startup_signals;

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::net::TcpListener;

use crate::client::ListenerId;
use crate::config::Config;
use crate::conn::{Context, Services};
use crate::stats::ConnectionSlot;

/// Pending connections the kernel queues before `accept`. The default of 128 drops
/// SYNs in a burst of new connections (each dropped one waits a second to retry): the
/// benchmark's S5 took seconds to open its connections instead of a fraction (see
/// docs/performance.md, "Listen backlog" (S5)).
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

/// Binds every listener of `config`, in order; the first address that cannot be bound
/// is the error.
pub fn bind_all(config: &Config) -> Result<Vec<TcpListener>, (SocketAddr, std::io::Error)> {
    config
        .listeners
        .iter()
        .map(|listener| bind(listener.addr).map_err(|error| (listener.addr, error)))
        .collect()
}

/// The proxy listeners (in the configuration's order) and the metrics listener, taken
/// over from `inherited` or bound now.
pub async fn open_listeners(
    config: &Config,
    metrics_addr: Option<SocketAddr>,
    inherited: Option<Inherited>,
) -> Result<(Vec<TcpListener>, Option<TcpListener>), String> {
    if let Some(inherited) = inherited {
        let listeners = inherited
            .listeners
            .into_iter()
            .map(TcpListener::from_std)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("cannot use an inherited listener: {error}"))?;
        // Metrics passed along, or bound here when the predecessor had none.
        let metrics = match inherited.metrics {
            Some(socket) => Some(TcpListener::from_std(socket).map_err(|e| e.to_string())?),
            None => bind_metrics(metrics_addr).await?,
        };
        tracing::info!("took over {} listening sockets", listeners.len());
        return Ok((listeners, metrics));
    }
    let listeners =
        bind_all(config).map_err(|(addr, error)| format!("cannot listen on {addr}: {error}"))?;
    Ok((listeners, bind_metrics(metrics_addr).await?))
}

async fn bind_metrics(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|error| format!("cannot listen on {addr} for metrics: {error}"))
}

/// Serves connections on `sockets` — one per listener of `config`, in its order (as
/// [`bind_all`] returns them) — until `shutdown` completes, then drains. Every listener
/// has its own accept loop; they share the connection cap, the context and the drain.
pub async fn run(
    sockets: Vec<TcpListener>,
    mut config: Config,
    mut services: Services,
    shutdown: impl Future<Output = ()>,
) {
    if sockets.len() != config.listeners.len() {
        tracing::error!(
            sockets = sockets.len(),
            listeners = config.listeners.len(),
            "one bound socket per listener is needed; serving the ones that match"
        );
    }
    // The bound addresses, not the requested ones (port 0), are what loop detection and
    // the generated PAC file need.
    for (listener, socket) in config.listeners.iter_mut().zip(&sockets) {
        if let Ok(bound) = socket.local_addr() {
            listener.addr = bound;
        }
    }
    crate::budget::global().set_limit(config.max_buffer_memory);
    let grace = config.timeouts.shutdown_grace;
    let mut certificates = std::mem::take(&mut services.tls);
    certificates.resize(sockets.len(), None);
    let ctx = Arc::new(Context::new(config, services));
    let loops = sockets
        .into_iter()
        .zip(certificates)
        .enumerate()
        .map(|(i, (socket, tls))| {
            let id = ListenerId(u16::try_from(i).unwrap_or(u16::MAX));
            accept::accept_loop(socket, id, tls, ctx.clone())
        });
    let accepting = futures_util::future::join_all(loops);
    tokio::select! {
        _ = accepting => {}
        () = shutdown => {}
    }
    ctx.begin_shutdown();
    tracing::info!("shutting down: waiting up to {grace:?} for requests in flight");
    if tokio::time::timeout(grace, all_closed(&ctx)).await.is_ok() {
        return;
    }
    // Cut what still relays, and let those tasks end through their usual path, so each
    // exchange is recorded (as cut, with its bytes) rather than dropped with the runtime.
    let open = ctx.stats.connections_active();
    tracing::warn!(
        open,
        "grace period over with connections still open; cutting them"
    );
    ctx.cut_relays();
    if tokio::time::timeout(CUT_WAIT, all_closed(&ctx))
        .await
        .is_err()
    {
        let open = ctx.stats.connections_active();
        tracing::warn!(open, "connections still open after the cut; closing them");
    }
}

/// Completes once no connection is open.
async fn all_closed(ctx: &Context) {
    while ctx.stats.connections_active() > 0 {
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// How often the drain looks whether the last connection has closed.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// How long relays cut at the end of the grace get to end and write their records; a
/// cut relay returns at its next poll, so this is ample and bounds the exit.
const CUT_WAIT: Duration = Duration::from_secs(1);

/// Runs one connection's task so that a panic in it stops there: it is caught, logged
/// with the client's address and counted in the statistics (`panics_caught`). The task's
/// sockets are dropped while unwinding, so its client sees a closed connection and
/// nothing else; other connections and the accept loop carry on. The connection's `slot`
/// is given back when the task ends either way. Relies on `panic = "unwind"` (the
/// default, kept in Cargo.toml).
///
/// Built from combinators rather than as an `async fn`, which would keep the task's
/// future twice over (as an argument and inside the await): every idle connection pays
/// for the size of this future.
pub fn isolate(
    task: impl Future<Output = ()>,
    peer: SocketAddr,
    slot: ConnectionSlot,
) -> impl Future<Output = ()> {
    // Unwind safety: the task owns its connection state outright; shared state it
    // touches (the origin pool, statistics, cache) sits behind poison-tolerant locks
    // and atomics.
    AssertUnwindSafe(task).catch_unwind().map(move |outcome| {
        if let Err(payload) = outcome {
            slot.stats().panic_caught();
            tracing::error!(
                client = %peer,
                panic = panic_message(payload.as_ref()),
                "connection task panicked; connection closed"
            );
        }
    })
}

/// The text a panic was raised with, when it is a string (as `panic!` makes it).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "non-string panic payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn panic_messages() {
        let text: Box<dyn Any + Send> = Box::new("static");
        assert_eq!(panic_message(text.as_ref()), "static");
        let owned: Box<dyn Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(owned.as_ref()), "owned");
        let other: Box<dyn Any + Send> = Box::new(7u8);
        assert_eq!(panic_message(other.as_ref()), "non-string panic payload");
    }

    /// One task panics while holding a socket, another runs beside it on the same
    /// runtime: the panic is counted, its socket is closed, the other one finishes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_task_is_contained() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let mut doomed_client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (doomed, _) = listener.accept().await.unwrap();
        let mut healthy_client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut healthy, _) = listener.accept().await.unwrap();

        let slot = stats.connection_opened(2).unwrap();
        let crashing = tokio::spawn(async move {
            let task = async move {
                let _socket = doomed;
                tokio::task::yield_now().await;
                let items: Vec<u8> = Vec::new();
                let index = items.len() + 3;
                let _ = items[index];
            };
            isolate(task, addr, slot).await;
        });
        let slot = stats.connection_opened(2).unwrap();
        let surviving = tokio::spawn(async move {
            let task = async move {
                let mut byte = [0u8; 1];
                healthy.read_exact(&mut byte).await.unwrap();
                healthy.write_all(&byte).await.unwrap();
            };
            isolate(task, addr, slot).await;
        });

        // The caller's task completes normally (no JoinError): the panic stopped inside.
        crashing.await.unwrap();
        assert_eq!(stats.snapshot().panics_caught, 1);
        assert_eq!(
            stats.connections_active(),
            1,
            "the panicked task's slot is back"
        );
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), doomed_client.read_to_end(&mut rest));
        assert!(
            matches!(closed.await, Ok(Ok(0))),
            "the panicked task's socket was not closed"
        );

        healthy_client.write_all(b"x").await.unwrap();
        let mut echo = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), healthy_client.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&echo, b"x");
        surviving.await.unwrap();
        assert_eq!(stats.snapshot().panics_caught, 1);
    }
}
