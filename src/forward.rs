//! Forwarding one plain-HTTP request: an origin connection from the pool or a fresh
//! one, the rewritten head and the streamed request body out, interim responses
//! through, then the response head and body back. Upgrades (101) become a relay. An
//! origin connection goes back to the pool only after a complete exchange.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::context::{Context, Exchange};
use crate::error::{ProxyError, Side};
use crate::http::body::{self, Relay};
use crate::http::rewrite::{self, ClientFraming};
use crate::http::{BodyLength, Reader, RequestHead, ResponseHead, Target, Version, framing};
use crate::{tunnel, upstream};

/// What the client connection does after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

struct Origin {
    reader: Reader<TcpStream>,
    peer: SocketAddr,
    reused: bool,
}

pub async fn forward(
    ctx: &Context,
    client: &mut Reader<TcpStream>,
    head: &RequestHead,
    exchange: &mut Exchange,
) -> Result<Next, ProxyError> {
    let length = framing::request_body(head.version, &head.headers)?;
    let Target::Absolute { host, port, .. } = &head.target else {
        return Err(ProxyError::BadRequest("not an absolute-form request"));
    };
    let local = client.get_ref().local_addr().ok();
    let mut origin = acquire(ctx, host, *port, local, true).await?;
    exchange.upstream = Some(origin.peer);
    let response = match exchange_head(ctx, client, head, length, &mut origin, exchange).await {
        // A pooled connection the origin closed just before we used it: RFC 9112 §9.3.1
        // lets an idempotent request without a body be retried once on a fresh one.
        Err(ProxyError::UpstreamClosed)
            if origin.reused && origin.reader.buffered().is_empty() && retryable(head, length) =>
        {
            origin = acquire(ctx, host, *port, local, false).await?;
            exchange.upstream = Some(origin.peer);
            exchange_head(ctx, client, head, length, &mut origin, exchange).await?
        }
        other => other?,
    };
    if response.status == 101 {
        return upgrade(ctx, client, head, &response, origin, exchange).await;
    }
    respond(ctx, client, head, &response, origin, exchange).await
}

fn retryable(head: &RequestHead, length: BodyLength) -> bool {
    let idempotent = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];
    length == BodyLength::Empty && idempotent.iter().any(|m| head.is_method(m))
}

async fn acquire(
    ctx: &Context,
    host: &str,
    port: u16,
    local: Option<SocketAddr>,
    pooled: bool,
) -> Result<Origin, ProxyError> {
    if let Some((stream, peer)) = pooled.then(|| ctx.pool.take(host, port)).flatten() {
        return Ok(Origin {
            reader: Reader::new(stream, Side::Upstream),
            peer,
            reused: true,
        });
    }
    let addrs = upstream::resolve(host, port).await?;
    ctx.check_destination(&addrs, local)?;
    let (stream, peer) = upstream::connect(&addrs, ctx.config.timeouts.connect).await?;
    Ok(Origin {
        reader: Reader::new(stream, Side::Upstream),
        peer,
        reused: false,
    })
}

/// Sends the request and returns the final response head, passing interim (1xx)
/// responses other than 101 on to the client.
async fn exchange_head(
    ctx: &Context,
    client: &mut Reader<TcpStream>,
    head: &RequestHead,
    length: BodyLength,
    origin: &mut Origin,
    exchange: &mut Exchange,
) -> Result<ResponseHead, ProxyError> {
    let request = rewrite::origin_request(head, length, &ctx.config.via_name);
    let prefix = request.len() as u64;
    if length != BodyLength::Empty
        && head.version == Version::Http11
        && head.headers.has_token("expect", "100-continue")
    {
        // The proxy answers the expectation itself once the origin is reachable (RFC 9110
        // §10.1.1), so the client's body waits until there is somewhere to send it.
        client
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|e| ProxyError::Io(Side::Client, e))?;
    }
    let relay = Relay {
        read_timeout: ctx.config.timeouts.idle,
        dst_side: Side::Upstream,
        dechunk: false,
    };
    let sent = body::relay_body_with(
        client,
        origin.reader.get_mut(),
        length,
        relay,
        request,
        &mut |_: &[u8]| {},
    )
    .await
    .map_err(|e| match e {
        ProxyError::Io(Side::Upstream, _) if exchange.bytes_from_client == 0 => {
            ProxyError::UpstreamClosed
        }
        other => other,
    })?;
    exchange.bytes_from_client += sent.saturating_sub(prefix);
    loop {
        let response = tokio::time::timeout(
            ctx.config.timeouts.response,
            origin.reader.read_response_head(),
        )
        .await
        .map_err(|_| ProxyError::ResponseTimeout)??;
        if response.status >= 200 || response.status == 101 {
            return Ok(response);
        }
        if head.version == Version::Http11 {
            let mut interim = Vec::new();
            response.write_to(&mut interim);
            client
                .get_mut()
                .write_all(&interim)
                .await
                .map_err(|e| ProxyError::Io(Side::Client, e))?;
        }
    }
}

async fn respond(
    ctx: &Context,
    client: &mut Reader<TcpStream>,
    head: &RequestHead,
    response: &ResponseHead,
    mut origin: Origin,
    exchange: &mut Exchange,
) -> Result<Next, ProxyError> {
    let length = framing::response_body(&head.method, response.status, &response.headers)?;
    let dechunk = length == BodyLength::Chunked && head.version == Version::Http10;
    let client_length = if dechunk {
        BodyLength::UntilClose
    } else {
        length
    };
    let keep_alive = rewrite::client_keep_alive(head)
        && client_length != BodyLength::UntilClose
        && !ctx.shutting_down();
    let framing = ClientFraming {
        length: client_length,
        keep_alive,
        client_version: head.version,
        keep_content_length: head.is_method("HEAD") || response.status == 304,
    };
    let out = rewrite::client_response(response, framing, &ctx.config.via_name);
    exchange.status = response.status;
    exchange.response_started = true;
    let relay = Relay {
        read_timeout: ctx.config.timeouts.response,
        dst_side: Side::Client,
        dechunk,
    };
    let written = body::relay_body_with(
        &mut origin.reader,
        client.get_mut(),
        length,
        relay,
        out,
        &mut |_: &[u8]| {},
    )
    .await;
    exchange.bytes_to_client += written?;
    let reusable = rewrite::origin_keep_alive(response)
        && length != BodyLength::UntilClose
        && origin.reader.buffered().is_empty();
    if reusable {
        let (stream, _) = origin.reader.into_parts();
        if let Target::Absolute { host, port, .. } = &head.target {
            ctx.pool.put(host, *port, stream, origin.peer);
        }
    }
    Ok(if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    })
}

/// A 101 answer to an upgrade request turns the connection into a two-way relay.
async fn upgrade(
    ctx: &Context,
    client: &mut Reader<TcpStream>,
    head: &RequestHead,
    response: &ResponseHead,
    origin: Origin,
    exchange: &mut Exchange,
) -> Result<Next, ProxyError> {
    if !rewrite::wants_upgrade(head) {
        return Err(ProxyError::BadResponse("101 without an upgrade request"));
    }
    let framing = ClientFraming {
        length: BodyLength::Empty,
        keep_alive: false,
        client_version: head.version,
        keep_content_length: false,
    };
    let out = rewrite::client_response(response, framing, &ctx.config.via_name);
    exchange.status = 101;
    exchange.response_started = true;
    client
        .get_mut()
        .write_all(&out)
        .await
        .map_err(|e| ProxyError::Io(Side::Client, e))?;
    exchange.bytes_to_client += out.len() as u64;
    let early_client = client.take(usize::MAX);
    let (mut stream, early_origin) = origin.reader.into_parts();
    let (totals, _) = tunnel::relay(
        client.get_mut(),
        early_client,
        &mut stream,
        early_origin,
        ctx.config.timeouts.idle,
    )
    .await;
    exchange.bytes_from_client += totals.client_to_upstream;
    exchange.bytes_to_client += totals.upstream_to_client;
    Ok(Next::Close)
}
