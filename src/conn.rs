//! One client connection's life: read a request head under the header timeout, check
//! it, hand it to CONNECT or forwarding, record the exchange, then keep the connection
//! for the next request or close it. This is the one place where errors become HTTP
//! answers on the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use crate::context::{Context, Exchange};
use crate::error::{ProxyError, Side};
use crate::forward::{self, Next};
use crate::http::rewrite;
use crate::http::{Reader, RequestHead};

/// Serves requests on one client connection until either side closes it.
pub async fn serve(stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>) {
    let _ = stream.set_nodelay(true);
    let mut client = Reader::new(stream, Side::Client);
    let mut head_deadline = Instant::now() + ctx.config.timeouts.header;
    loop {
        let Some(head) = next_request(&ctx, &mut client, head_deadline).await else {
            return;
        };
        let mut exchange = Exchange::start(peer, &head, Instant::now());
        let next = match handle(&ctx, &mut client, &head, &mut exchange).await {
            Ok(next) => next,
            Err(error) => {
                answer_error(&mut client, &mut exchange, &error).await;
                Next::Close
            }
        };
        record(&exchange);
        if next == Next::Close {
            return;
        }
        // The next request's head clock starts at its first byte (see next_request).
        head_deadline = Instant::now() + ctx.config.timeouts.idle + ctx.config.timeouts.header;
    }
}

/// Waits for and reads the next request head; `None` when the connection should end
/// (closed, idle, shutting down, or a malformed head that was answered).
async fn next_request(
    ctx: &Context,
    client: &mut Reader<TcpStream>,
    deadline: Instant,
) -> Option<RequestHead> {
    let timeouts = ctx.config.timeouts;
    let mut deadline = deadline;
    if client.buffered().is_empty() {
        // Wait for the first byte without holding a read buffer.
        client.release_idle_buffer();
        if ctx.shutting_down() {
            return None;
        }
        let mut shutdown = ctx.shutdown_signal();
        let wait = deadline.min(Instant::now() + timeouts.idle);
        tokio::select! {
            ready = timeout_at(wait.into(), client.get_ref().readable()) => {
                if !matches!(ready, Ok(Ok(()))) {
                    return None;
                }
            }
            _ = shutdown.changed() => return None,
        }
        deadline = deadline.min(Instant::now() + timeouts.header);
    }
    match timeout_at(deadline.into(), client.read_request_head()).await {
        Ok(Ok(head)) => head,
        Ok(Err(error)) => {
            tracing::debug!(error = error.brief(), "malformed request head");
            write_error(client, &error).await;
            None
        }
        Err(_) => {
            if !client.buffered().is_empty() {
                write_error(client, &ProxyError::HeaderTimeout).await;
            }
            None
        }
    }
}

/// Checks a request and hands it to the handler for its method.
async fn handle(
    ctx: &Context,
    client: &mut Reader<TcpStream>,
    head: &RequestHead,
    exchange: &mut Exchange,
) -> Result<Next, ProxyError> {
    if rewrite::via_has(&head.headers, &ctx.config.via_name) {
        return Err(ProxyError::Loop);
    }
    if head.is_method("CONNECT") {
        crate::connect::connect(ctx, client, head, exchange).await
    } else {
        forward::forward(ctx, client, head, exchange).await
    }
}

/// Sends the error's answer unless a response has already begun; the connection closes.
async fn answer_error(client: &mut Reader<TcpStream>, exchange: &mut Exchange, error: &ProxyError) {
    exchange.failure = Some(error.brief());
    if exchange.response_started {
        // The response is under way and cannot be replaced by an error. A reset rather
        // than a clean close is the one signal left that it is incomplete, and the only
        // one a body delimited by the close has (RFC 9112 §6.3 item 8, §8).
        abort_on_close(client.get_ref());
        return;
    }
    if let Some(status) = error.status() {
        exchange.status = status;
        exchange.bytes_to_client += write_error(client, error).await;
    }
}

/// Makes the coming close of `stream` a reset (RST) instead of a FIN.
fn abort_on_close(stream: &TcpStream) {
    // Tokio deprecates SO_LINGER because a non-zero linger blocks the thread on close;
    // a zero linger never blocks, it only turns the close into a reset.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// Writes the canned answer for `error` and returns the bytes written.
async fn write_error(client: &mut Reader<TcpStream>, error: &ProxyError) -> u64 {
    let Some(status) = error.status() else {
        return 0;
    };
    let extra: &[(&str, &str)] = match error {
        ProxyError::ProxyAuthRequired => &[("Proxy-Authenticate", "Basic realm=\"proxy-server\"")],
        _ => &[],
    };
    let answer = rewrite::canned(status, &error.body(), extra, false);
    let stream = client.get_mut();
    match stream.write_all(&answer).await {
        Ok(()) => {
            let _ = stream.shutdown().await;
            answer.len() as u64
        }
        Err(_) => 0,
    }
}

fn record(exchange: &Exchange) {
    tracing::info!(
        target: "access",
        client = %exchange.client,
        method = %exchange.method,
        target = %exchange.target,
        status = exchange.status,
        to_client = exchange.bytes_to_client,
        from_client = exchange.bytes_from_client,
        upstream = ?exchange.upstream,
        failure = exchange.failure.unwrap_or("-"),
        ms = exchange.started.elapsed().as_millis() as u64,
    );
}
