//! The HTTP proxy front end: one client connection's life. Read a request head under
//! the header timeout, refuse loops, state the [`Target`] and ask admission
//! (`access`), hand the request to CONNECT (`connect`) or forwarding (`forward`), record
//! the exchange, then keep the connection for the next request or close it. This is the
//! one place where errors become HTTP answers on the wire. Other front ends (SOCKS5, …)
//! sit beside this folder and share admission, the dialer, the relay and the record.

mod forward;
mod front;
mod pac;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::futures::Notified;
use tokio::time::{Sleep, timeout_at};

use crate::access::{Admission, ClientCredentials};
use crate::client::ClientStream;
use crate::conn::{Context, Exchange, Next};
use crate::error::{ProxyError, Side};
use crate::http::rewrite;
use crate::http::{self, Reader, RequestHead};
use crate::limits::Seat;
use crate::target::{Kind, Target};
use front::Http1;

/// Serves requests on one client connection until either side closes it.
///
/// The returned future is what a connection costs while it waits for a request, so it
/// holds only the client stream, its read state and a [`FirstBytes`]; everything a
/// request needs lives in a box for that request. (A plain `async fn` would also keep a
/// second copy of each argument.)
pub fn serve(stream: ClientStream, ctx: Arc<Context>) -> impl Future<Output = ()> + Send {
    let mut client = Reader::new(stream, Side::Client);
    async move {
        // The connection's place in its user's connection count, from its first request.
        let mut seat = Seat::default();
        let mut head_deadline = Instant::now() + ctx.config.timeouts.header;
        loop {
            let consumed = client.consumed();
            if client.buffered().is_empty() {
                client.release_idle_buffer();
                let mut until = head_deadline.min(Instant::now() + ctx.config.timeouts.idle);
                let draining = ctx.shutting_down();
                if draining {
                    if consumed > 0 {
                        return;
                    }
                    until = drain_deadline(until.into()).map_or(until, |soon| soon.into_std());
                }
                let first = FirstBytes::new(&ctx, &mut client, until);
                // A drain that began between the check and the waker's making (the waker
                // sees only later ones).
                if !draining && consumed > 0 && ctx.shutting_down() {
                    return;
                }
                match first.await {
                    Some(Ok(read)) if read > 0 => {}
                    // Closed, failed, idle too long or shutting down, before any byte
                    // of a request: nothing to answer.
                    _ => return,
                }
                // The head clock of a request on a kept-alive connection starts here.
                head_deadline = head_deadline.min(Instant::now() + ctx.config.timeouts.header);
            }
            // Scoped so that the head, once moved into the box, takes no room here.
            let request = {
                let head = match timeout_at(head_deadline.into(), client.read_request_head()).await
                {
                    Ok(head) => head,
                    Err(_) => Err(ProxyError::HeaderTimeout),
                };
                Box::pin(respond(&ctx, &mut client, &mut seat, head, consumed))
            };
            if request.await == Next::Close {
                return;
            }
            head_deadline = Instant::now() + ctx.config.timeouts.idle + ctx.config.timeouts.header;
        }
    }
}

pin_project_lite::pin_project! {
    /// Waits until a deadline for a client's next bytes and reads them (`Ok(0)`: closed);
    /// `None` when the wait ends first or the server starts shutting down. A drain ends
    /// the wait of a kept-alive connection between requests at once; a new connection was
    /// accepted to be served, and its first request may already be on the way (closing it
    /// unread would reset it), so it gets [`FIRST_REQUEST_IN_DRAIN`]. This is where
    /// an idle connection spends its time, so it is kept small: a timer, a shutdown
    /// waiter and the reader, whose socket holds the waker in its own readiness slot.
    struct FirstBytes<'a> {
        client: &'a mut Reader<ClientStream>,
        #[pin]
        shutdown: Notified<'a>,
        #[pin]
        idle: Sleep,
    }
}

/// How long a connection accepted before a drain, still silent, may take to send its
/// first request once the drain begins: time for one already sent to arrive, not for a
/// browser's idle preconnection to hold the drain for the whole header timeout.
const FIRST_REQUEST_IN_DRAIN: Duration = Duration::from_secs(1);

/// [`FIRST_REQUEST_IN_DRAIN`] from now, when that is sooner than `deadline`.
fn drain_deadline(deadline: tokio::time::Instant) -> Option<tokio::time::Instant> {
    let soon = tokio::time::Instant::now() + FIRST_REQUEST_IN_DRAIN;
    (deadline > soon).then_some(soon)
}

impl<'a> FirstBytes<'a> {
    fn new(ctx: &'a Context, client: &'a mut Reader<ClientStream>, until: Instant) -> Self {
        FirstBytes {
            client,
            shutdown: ctx.shutdown_wake(),
            idle: tokio::time::sleep_until(until.into()),
        }
    }
}

impl Future for FirstBytes<'_> {
    type Output = Option<std::io::Result<usize>>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(read) = this.client.poll_read_some(cx) {
            return Poll::Ready(Some(read));
        }
        if this.shutdown.as_mut().poll(cx).is_ready() {
            if this.client.consumed() > 0 {
                return Poll::Ready(None);
            }
            if let Some(soon) = drain_deadline(this.idle.deadline()) {
                this.idle.as_mut().reset(soon);
            }
        }
        if this.idle.poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// Answers what [`serve`] read: a request, a head that could not be read, or nothing
/// (the connection ends quietly).
async fn respond(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
    seat: &mut Seat,
    head: Result<Option<RequestHead>, ProxyError>,
    consumed: u64,
) -> Next {
    match head {
        Ok(Some(head)) => exchange(ctx, client, seat, head, consumed).await,
        Ok(None) => Next::Close,
        // An origin-form request: the PAC file is the one thing served that way.
        Err(ProxyError::NotAProxyRequest) => match pac::request(client.buffered()) {
            Some(request) => pac::answer(ctx, client, request, consumed).await,
            None => refuse_head(ctx, client, ProxyError::NotAProxyRequest, consumed).await,
        },
        Err(error) => refuse_head(ctx, client, error, consumed).await,
    }
}

/// Serves one request whose head has been read, and records it.
async fn exchange(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
    seat: &mut Seat,
    head: RequestHead,
    consumed: u64,
) -> Next {
    let target = target_of(&head);
    let url = match &head.target {
        http::RequestTarget::Absolute { .. } => Some(head.target.display()),
        http::RequestTarget::Authority { .. } => None,
    };
    let peer = client.get_ref().peer();
    let start = Exchange::start(peer, head.method_str(), &target, url, Instant::now());
    let mut exchange = ctx.recorded(start);
    exchange.bytes_from_client = client.consumed() - consumed;
    let next = match handle(ctx, client, seat, &head, &target, &mut exchange).await {
        Ok(next) => next,
        Err(error) => {
            ctx.fail(
                &mut Http1(client, &ctx.config.via_name),
                &mut exchange,
                &error,
            )
            .await;
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
    exchange.finish();
    next
}

/// Answers and records a head that could not be read; the connection then closes, as
/// its framing can no longer be trusted.
async fn refuse_head(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
    error: ProxyError,
    consumed: u64,
) -> Next {
    let mut exchange = ctx.recorded(Exchange::unparsed(client.get_ref().peer(), Instant::now()));
    // The rejected bytes are still buffered (never consumed), but they were read from
    // the client and the connection ends here: count them all.
    exchange.bytes_from_client = client.bytes_read() - consumed;
    ctx.fail(
        &mut Http1(client, &ctx.config.via_name),
        &mut exchange,
        &error,
    )
    .await;
    exchange.finish();
    Next::Close
}

/// The request's target in the terms every front end shares.
fn target_of(head: &RequestHead) -> Target<'_> {
    let kind = if head.is_method("CONNECT") {
        Kind::Connect
    } else if rewrite::wants_upgrade(head) {
        Kind::Upgrade
    } else {
        Kind::Http
    };
    Target::new(head.target.host(), head.target.port(), kind)
}

/// Admits a request (with the credentials it carries) and hands it to the pipeline's
/// tunnel or to forwarding.
async fn handle(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
    seat: &mut Seat,
    head: &RequestHead,
    target: &Target<'_>,
    exchange: &mut Exchange,
) -> Result<Next, ProxyError> {
    if rewrite::via_has(&head.headers, &ctx.config.via_name) {
        return Err(ProxyError::Loop);
    }
    let request = Admission {
        listener: ctx.listener_addr(client.get_ref().listener()),
        client: exchange.client.ip(),
        credentials: credentials(ctx, head)?,
        target: *target,
        method: head.method_str(),
        path: match &head.target {
            http::RequestTarget::Absolute { path, .. } => std::str::from_utf8(path).ok(),
            http::RequestTarget::Authority { .. } => None,
        },
    };
    let admitted = ctx.admit(&request, seat, exchange).await?;
    if !target.is_tunnel() {
        return forward::forward(ctx, client, head, target, exchange, admitted).await;
    }
    if !matches!(head.target, http::RequestTarget::Authority { .. }) {
        return Err(ProxyError::BadRequest("CONNECT needs a host:port target"));
    }
    ctx.tunnel(
        &mut Http1(client, &ctx.config.via_name),
        &request,
        admitted,
        exchange,
    )
    .await?;
    Ok(Next::Close)
}

/// The credentials a request carries: its one `Proxy-Authorization` field, if any.
fn credentials<'a>(
    ctx: &Context,
    head: &'a RequestHead,
) -> Result<ClientCredentials<'a>, ProxyError> {
    let mut fields = head.headers.get_all("proxy-authorization");
    let Some(field) = fields.next() else {
        return Ok(ClientCredentials::None);
    };
    if fields.next().is_some() && ctx.access.auth_required() {
        // Which one counts would be a guess, and another hop may guess otherwise.
        return Err(ProxyError::BadRequest("repeated Proxy-Authorization field"));
    }
    Ok(ClientCredentials::ProxyAuthorization(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::conn::Services;
    use tokio::net::{TcpListener, TcpStream};

    /// What an idle connection costs is mostly this future: tokio adds 120 bytes of task
    /// header and rounds the task up to a multiple of 128, and `server::isolate` adds the
    /// client's address and the connection slot. Within 360 bytes the task stays at 512.
    #[tokio::test]
    async fn a_waiting_connection_is_small() {
        let config = Config::with_listen("127.0.0.1:0".parse().unwrap());
        let services = Services::load(&config).unwrap();
        let ctx = Arc::new(Context::new(config, services));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let task = serve(ClientStream::tcp(stream, peer), ctx);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 360, "the connection future grew to {size} bytes");
    }
}
