//! One listener's accept loop and what happens to a connection before its front end
//! takes it: the connection cap, then — for the listeners that need them — the
//! PROXY-protocol header (only from the sources the listener lists, and required from
//! them) and the TLS handshake, both within the header timeout. A plain HTTP connection
//! skips all of that and costs what it did with one listener: its task is the front end
//! itself.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument as _;

use super::isolate;
use crate::client::{ClientStream, ListenerId};
use crate::config::Protocol;
use crate::conn::Context;
use crate::error::ProxyError;
use crate::http::answer;
use crate::logging::{Throttle, WARNING_INTERVAL};
use crate::proxy_protocol::{self, HeaderError};
use crate::stats::ConnectionSlot;
use crate::tls::{self, Certificates};
use crate::{http_proxy, socks};

/// Pause after an accept error (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Failures that come in runs — accept errors while descriptors are exhausted, scanners
/// probing a TLS port, a balancer misconfigured for PROXY headers — write one line per
/// interval, with the count of those not written (`suppressed`); the statistics count
/// every one.
static ACCEPT_FAILURES: Throttle = Throttle::new(WARNING_INTERVAL);
static HANDSHAKE_FAILURES: Throttle = Throttle::new(WARNING_INTERVAL);
static PROXY_HEADER_FAILURES: Throttle = Throttle::new(WARNING_INTERVAL);

/// Accepts connections on `socket` (the listener `id` of the context's list) for ever;
/// the server drops this future to stop.
pub(super) async fn accept_loop(
    socket: TcpListener,
    id: ListenerId,
    tls: Option<Certificates>,
    ctx: Arc<Context>,
) {
    let max = ctx.config.max_connections;
    let Some(listener) = ctx.config.listeners.get(usize::from(id.0)) else {
        return;
    };
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                if let Some(suppressed) = ACCEPT_FAILURES.due() {
                    tracing::warn!(%error, suppressed, "accept failed");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(slot) = ctx.stats.connection_opened(max) else {
            // A 503 is an answer only to a client that reads plain HTTP first.
            if listener.protocol == Protocol::Http && tls.is_none() {
                refuse_overloaded(stream, &ctx.config.via_name);
            }
            continue;
        };
        let expects_header = listener.expects_proxy_header(peer.ip());
        if listener.protocol == Protocol::Http && tls.is_none() && !expects_header {
            let client = ClientStream::tcp(stream, peer).on(id);
            spawn_connection(http_proxy::serve(client, ctx.clone()), peer, id, slot);
            continue;
        }
        let opening = Opening {
            stream,
            peer,
            id,
            expects_header,
            acceptor: tls.as_ref().map(Certificates::acceptor),
        };
        spawn_connection(serve_opened(opening, ctx.clone()), peer, id, slot);
    }
}

/// Numbers connections in the order they were accepted, across listeners.
static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

/// Runs a connection's task on its own ([`isolate`]d: a panic stops there) inside a span
/// naming the connection, its client address (as accepted; a PROXY header's address is
/// in the access log) and its listener, so every line it logs can be found together.
fn spawn_connection(
    task: impl Future<Output = ()> + Send + 'static,
    peer: SocketAddr,
    listener: ListenerId,
    slot: ConnectionSlot,
) {
    let id = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("conn", id, client = %peer, listener = listener.0);
    tokio::spawn(isolate(task, peer, slot).instrument(span));
}

/// A connection whose PROXY header or TLS handshake is still to come.
struct Opening {
    stream: TcpStream,
    peer: SocketAddr,
    id: ListenerId,
    expects_header: bool,
    acceptor: Option<TlsAcceptor>,
}

/// Reads the PROXY header and runs the TLS handshake where the listener wants them, then
/// hands the connection to the listener's front end.
async fn serve_opened(opening: Opening, ctx: Arc<Context>) {
    let protocol = ctx
        .config
        .listeners
        .get(usize::from(opening.id.0))
        .map_or(Protocol::Http, |l| l.protocol);
    let deadline = Instant::now() + ctx.config.timeouts.header;
    let Some(client) = open(opening, &ctx, deadline).await else {
        return;
    };
    match protocol {
        Protocol::Http => http_proxy::serve(client, ctx).await,
        Protocol::Socks5 => socks::serve(client, ctx).await,
    }
}

/// The connection as its front end takes it, or `None` when it was closed here.
async fn open(opening: Opening, ctx: &Context, deadline: Instant) -> Option<ClientStream> {
    let Opening {
        mut stream,
        peer,
        id,
        expects_header,
        acceptor,
    } = opening;
    let mut client = peer;
    if expects_header {
        let read = timeout_at(deadline, proxy_protocol::read_header(&mut stream, peer)).await;
        client = match read {
            Ok(Ok(carried)) => carried,
            Ok(Err(error)) => return proxy_header_failed(ctx, peer, &error),
            Err(_) => return proxy_header_failed(ctx, peer, &HeaderError::Closed),
        };
    }
    let Some(acceptor) = acceptor else {
        return Some(ClientStream::tcp(stream, client).on(id));
    };
    match timeout_at(deadline, start_tls(&acceptor, stream, &ctx.config.via_name)).await {
        Ok(Ok(session)) => Some(ClientStream::tls(session, client).on(id)),
        Ok(Err(reason)) => handshake_failed(ctx, client, &reason),
        Err(_) => handshake_failed(ctx, client, "timed out"),
    }
}

/// The handshake, after a look at the first byte: a plain HTTP request on a TLS port is
/// answered in plain HTTP with what went wrong, instead of a TLS alert the client cannot
/// read.
async fn start_tls(
    acceptor: &TlsAcceptor,
    mut stream: TcpStream,
    via_name: &str,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if !tls::looks_like_tls(first[0]) => {
            let error = ProxyError::BadRequest("this port speaks TLS: use an https:// proxy URL");
            if let Some(answer) = answer::for_error(via_name, &error) {
                let _ = stream.write_all(&answer).await;
            }
            let _ = stream.shutdown().await;
            return Err("plain HTTP on a TLS port".into());
        }
        Ok(1) => {}
        Ok(_) => return Err("closed before the handshake".into()),
        Err(error) => return Err(error.to_string()),
    }
    tls::handshake(acceptor, stream)
        .await
        .map_err(|error| error.to_string())
}

fn handshake_failed(ctx: &Context, client: SocketAddr, reason: &str) -> Option<ClientStream> {
    ctx.stats.tls_handshake_failed();
    if let Some(suppressed) = HANDSHAKE_FAILURES.due() {
        tracing::warn!(%client, reason, suppressed, "TLS handshake failed");
    }
    None
}

fn proxy_header_failed(
    ctx: &Context,
    peer: SocketAddr,
    error: &HeaderError,
) -> Option<ClientStream> {
    ctx.stats.proxy_header_rejected();
    if let Some(suppressed) = PROXY_HEADER_FAILURES.due() {
        let reason = match error {
            HeaderError::Closed => "closed or timed out before a complete header",
            HeaderError::Malformed(why) => why,
        };
        tracing::warn!(source = %peer, reason, suppressed, "PROXY header refused; connection closed");
    }
    None
}

/// Answers 503 without spawning anything: a fresh socket's send buffer takes the few
/// bytes at once (a plain non-blocking write, not waiting for the reactor to report the
/// socket writable), and the socket closes when dropped.
fn refuse_overloaded(stream: TcpStream, via_name: &str) {
    use std::io::Write;
    let Some(answer) = answer::for_error(via_name, &ProxyError::Overloaded) else {
        return;
    };
    if let Ok(mut socket) = stream.into_std() {
        let _ = socket.write_all(&answer);
        let _ = socket.shutdown(std::net::Shutdown::Write);
    }
}
