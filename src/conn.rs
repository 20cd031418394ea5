//! One client connection's life: read a request head under the header timeout, check
//! it (loop, client address, credentials, host, CONNECT port), hand it to CONNECT or
//! forwarding, record the exchange, then keep the connection for the next request or
//! close it. This is the one place where errors become HTTP answers on the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use crate::context::{Context, Exchange, Next};
use crate::error::{ProxyError, Side};
use crate::forward;
use crate::http::rewrite;
use crate::http::{Reader, RequestHead};
use crate::stats::Outcome;

/// Serves requests on one client connection until either side closes it.
pub async fn serve(stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let mut client = Reader::new(stream, Side::Client);
    let mut head_deadline = Instant::now() + ctx.config.timeouts.header;
    loop {
        let consumed = client.consumed();
        let head = next_request(&ctx, &mut client, head_deadline).await;
        // Boxed so that an idle connection's task holds only the small waiting state above,
        // not the space a request needs (the benchmark's idle-memory scenario).
        let next = match head {
            Ok(Some(head)) => {
                Box::pin(exchange(&ctx, &mut client, head, peer, local, consumed)).await
            }
            Ok(None) => Next::Close,
            Err(error) => Box::pin(refuse_head(&ctx, &mut client, error, peer, consumed)).await,
        };
        if next == Next::Close {
            return;
        }
        // The next request's head clock starts at its first byte (see next_request).
        head_deadline = Instant::now() + ctx.config.timeouts.idle + ctx.config.timeouts.header;
    }
}

/// Serves one request whose head has been read, and records it.
async fn exchange(
    ctx: &Context,
    client: &mut Reader<TcpStream>,
    head: RequestHead,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    consumed: u64,
) -> Next {
    let mut exchange = Exchange::start(peer, local, &head, Instant::now());
    exchange.bytes_from_client = client.consumed() - consumed;
    let next = match handle(ctx, client, &head, &mut exchange).await {
        Ok(next) => next,
        Err(error) => {
            answer_error(client, &mut exchange, &error).await;
            Next::Close
        }
    };
    if !exchange.relayed {
        // Head and body as read; a relay counts its own bytes. When the connection
        // ends here, bytes read but never used (the body of a refused request) still
        // came from the client; otherwise they belong to the next request.
        let read = if next == Next::Close {
            client.bytes_read()
        } else {
            client.consumed()
        };
        exchange.bytes_from_client = read - consumed;
    }
    ctx.record(&exchange);
    next
}

/// Answers and records a head that could not be read; the connection then closes, as
/// its framing can no longer be trusted.
async fn refuse_head(
    ctx: &Context,
    client: &mut Reader<TcpStream>,
    error: ProxyError,
    peer: SocketAddr,
    consumed: u64,
) -> Next {
    let mut exchange = Exchange::unparsed(peer, Instant::now());
    // The rejected bytes are still buffered (never consumed), but they were read from
    // the client and the connection ends here: count them all.
    exchange.bytes_from_client = client.bytes_read() - consumed;
    answer_error(client, &mut exchange, &error).await;
    ctx.record(&exchange);
    Next::Close
}

/// Waits for and reads the next request head. `Ok(None)` when the connection should
/// end quietly: closed, idle, shutting down, or silent past the header timeout.
async fn next_request(
    ctx: &Context,
    client: &mut Reader<TcpStream>,
    deadline: Instant,
) -> Result<Option<RequestHead>, ProxyError> {
    let timeouts = ctx.config.timeouts;
    let mut deadline = deadline;
    if client.buffered().is_empty() {
        // Wait for the first byte without holding a read buffer.
        client.release_idle_buffer();
        if ctx.shutting_down() {
            return Ok(None);
        }
        let mut shutdown = ctx.shutdown_signal();
        let wait = deadline.min(Instant::now() + timeouts.idle);
        tokio::select! {
            ready = timeout_at(wait.into(), client.get_ref().readable()) => {
                if !matches!(ready, Ok(Ok(()))) {
                    return Ok(None);
                }
            }
            _ = shutdown.changed() => return Ok(None),
        }
        deadline = deadline.min(Instant::now() + timeouts.header);
    }
    match timeout_at(deadline.into(), client.read_request_head()).await {
        Ok(result) => result,
        Err(_) if client.buffered().is_empty() => Ok(None),
        Err(_) => Err(ProxyError::HeaderTimeout),
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
    admit(ctx, head, exchange).await?;
    if head.is_method("CONNECT") {
        crate::connect::connect(ctx, client, head, exchange).await
    } else {
        forward::forward(ctx, client, head, exchange).await
    }
}

/// The access checks that need no DNS, with one consistent version of the rules:
/// client address, credentials, host name, CONNECT port. The resolved addresses are
/// checked later, right before connecting (`Context::check_destination`).
async fn admit(
    ctx: &Context,
    head: &RequestHead,
    exchange: &mut Exchange,
) -> Result<(), ProxyError> {
    let access = ctx.access.snapshot();
    let policy = &access.policy;
    policy
        .check_client(exchange.client.ip())
        .map_err(ProxyError::Forbidden)?;
    if let Some(authenticator) = &access.authenticator {
        let credentials = head.headers.get("proxy-authorization").map(|v| &v[..]);
        let user = authenticator
            .authenticate(credentials)
            .await
            .map_err(ProxyError::ProxyAuthRequired)?;
        exchange.user = Some(user);
    }
    policy
        .check_host(head.target.host())
        .map_err(ProxyError::Forbidden)?;
    if head.is_method("CONNECT") {
        policy
            .check_connect_port(head.target.port())
            .map_err(ProxyError::Forbidden)?;
    }
    Ok(())
}

/// The statistics bucket an error falls in.
fn outcome_of(error: &ProxyError) -> Outcome {
    match error {
        ProxyError::Forbidden(_) => Outcome::Blocked,
        ProxyError::ProxyAuthRequired(_) => Outcome::AuthFailed,
        // Allowed, but `only-if-cached` found nothing to serve.
        ProxyError::NotCached => Outcome::Allowed,
        other => match other.side() {
            Side::Upstream => Outcome::UpstreamError,
            _ => Outcome::Malformed,
        },
    }
}

/// Sends the error's answer unless a response has already begun; the connection closes.
async fn answer_error(client: &mut Reader<TcpStream>, exchange: &mut Exchange, error: &ProxyError) {
    exchange.failure = Some(error.brief());
    if exchange.response_started {
        // Whatever broke, the response was under way: the client saw it as forwarded.
        if matches!(
            error,
            ProxyError::Io(Side::Upstream, _) | ProxyError::BadResponse(_)
        ) {
            exchange.outcome = Outcome::UpstreamError;
        }
        return;
    }
    exchange.outcome = outcome_of(error);
    let Some(status) = error.status() else {
        return;
    };
    exchange.status = status;
    let extra: &[(&str, &str)] = match error {
        ProxyError::ProxyAuthRequired(_) => {
            &[("Proxy-Authenticate", crate::auth::PROXY_AUTHENTICATE)]
        }
        _ => &[],
    };
    let answer = rewrite::canned(status, &error.body(), extra, false);
    let stream = client.get_mut();
    if stream.write_all(&answer).await.is_ok() {
        let _ = stream.shutdown().await;
        exchange.bytes_to_client += answer.len() as u64;
    }
}
