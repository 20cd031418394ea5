//! Forwarding one plain-HTTP request: the cache's say first (a hit is served without the
//! origin), then an origin connection from the pool or a fresh one, the rewritten head
//! and the streamed request body out, interim responses through, then the response head
//! and body back (copied into the cache when it may be stored). Upgrades (101) become a
//! relay. An origin connection goes back to the pool only after a complete exchange.

mod cached;
mod spliced;
mod tally;

use std::borrow::Cow;
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;

use crate::cache::{self, Filler, Hit, Timing};
use crate::client::ClientStream;
use crate::conn::{Admitted, Context, Exchange, Next, Stage};
use crate::error::{ProxyError, Side};
use crate::http::body::{self, Relay};
use crate::http::rewrite::{self, ClientFraming, RequestForm};
use crate::http::{
    BodyLength, Headers, Reader, RequestHead, RequestTarget, ResponseHead, Version, framing,
};
use crate::limits::{Paced, Pacer};
use crate::logging::CacheResult;
use crate::target::Target;
use crate::upstream::{Link, Reuse, UpstreamStream};
use cached::Decision;
use tally::Tallied;

/// The upstream side of a forwarded request: the connection's read state, how it was
/// made, and the user's bandwidth that bodies both ways move under (when limited).
struct Origin {
    reader: Reader<UpstreamStream>,
    link: Link,
    pacer: Option<Pacer>,
}

pub async fn forward(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
    head: &RequestHead,
    target: &Target<'_>,
    exchange: &mut Exchange,
    admitted: Admitted,
) -> Result<Next, ProxyError> {
    let length = framing::request_body(head.version, &head.headers)?;
    let plan = match cached::decide(ctx.cache.as_ref(), head, length, &ctx.stats).await {
        Decision::Bypass => None,
        Decision::Hit(hit) => {
            // A stored answer is served only if the rules would let this request reach
            // the origin now: settle what they left to the destination's addresses.
            if let Some(check) = &admitted.pending
                && let Some(settled) = ctx
                    .dialer
                    .settle_only(target, client.get_ref(), check)
                    .await?
            {
                exchange.rule = settled.rule;
            }
            return serve_hit(ctx, client, head, &hit, exchange).await;
        }
        Decision::NotCached => return Err(ProxyError::NotCached),
        Decision::Fetch(plan) => Some(plan),
    };
    let sent: Cow<RequestHead> = match plan.as_ref().and_then(|p| p.revalidation_headers(head)) {
        Some(headers) => Cow::Owned(RequestHead {
            headers,
            ..head.clone()
        }),
        None => Cow::Borrowed(head),
    };
    let request_time = SystemTime::now();
    let (response, origin) = fetch(ctx, client, &sent, target, length, exchange, &admitted).await?;
    let timing = Timing {
        request_time,
        response_time: SystemTime::now(),
    };
    if response.status == 101 {
        return upgrade(ctx, client, head, &response, origin, exchange).await;
    }
    let filler = match plan.map(|p| p.on_response(&response, timing, &ctx.stats)) {
        None => None,
        Some(cached::Outcome::Forward(filler)) => {
            exchange.cache = CacheResult::Miss;
            filler
        }
        Some(cached::Outcome::Refreshed(refreshed)) => {
            release(ctx, origin, &response, BodyLength::Empty);
            if let Some(hit) = refreshed {
                return serve_hit(ctx, client, head, &hit, exchange).await;
            }
            // The 304 describes some other response than the stored one (RFC 9111 §4.3.4):
            // ask again without validators and pass the answer on.
            exchange.cache = CacheResult::Miss;
            let (response, origin) = fetch(
                ctx,
                client,
                head,
                target,
                BodyLength::Empty,
                exchange,
                &admitted,
            )
            .await?;
            return respond(ctx, client, head, &response, origin, exchange, None).await;
        }
    };
    respond(ctx, client, head, &response, origin, exchange, filler).await
}

/// Sends the request on a pooled or fresh connection and reads the final response head.
async fn fetch(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
    head: &RequestHead,
    target: &Target<'_>,
    length: BodyLength,
    exchange: &mut Exchange,
    admitted: &Admitted,
) -> Result<(ResponseHead, Origin), ProxyError> {
    if !matches!(head.target, RequestTarget::Absolute { .. }) {
        return Err(ProxyError::BadRequest("not an absolute-form request"));
    }
    exchange.stage = Stage::Dial;
    let mut origin = acquire(ctx, target, client.get_ref(), Reuse::Pooled, admitted).await?;
    exchange.connected(&origin.link);
    let response = match exchange_head(ctx, client, head, length, &mut origin, exchange).await {
        // A pooled connection the origin closed just before we used it: RFC 9112 §9.3.1
        // lets an idempotent request without a body be retried once on a fresh one.
        Err(ProxyError::UpstreamClosed)
            if origin.link.reused
                && origin.reader.buffered().is_empty()
                && retryable(head, length) =>
        {
            origin = acquire(ctx, target, client.get_ref(), Reuse::Fresh, admitted).await?;
            exchange.connected(&origin.link);
            exchange_head(ctx, client, head, length, &mut origin, exchange).await?
        }
        other => other?,
    };
    parent_refusal(&response, &origin.link)?;
    Ok((response, origin))
}

/// A 407 from a parent proxy is about this proxy's credentials, not the client's: the
/// client gets a 502 naming the parent, the operator a warning.
fn parent_refusal(response: &ResponseHead, link: &Link) -> Result<(), ProxyError> {
    match (response.status, link.route.parent(), &link.form) {
        (407, Some(parent), RequestForm::Absolute { .. }) => {
            let reason = "refused this proxy's credentials (407)".to_string();
            tracing::warn!(%parent, reason, "parent proxy refused");
            Err(ProxyError::Parent {
                parent: parent.clone(),
                reason,
            })
        }
        _ => Ok(()),
    }
}

fn retryable(head: &RequestHead, length: BodyLength) -> bool {
    let idempotent = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];
    length == BodyLength::Empty && idempotent.iter().any(|m| head.is_method(m))
}

async fn acquire(
    ctx: &Context,
    target: &Target<'_>,
    client: &ClientStream,
    reuse: Reuse,
    admitted: &Admitted,
) -> Result<Origin, ProxyError> {
    let pending = admitted.pending.as_ref();
    let upstream = ctx.dialer.dial(target, client, reuse, pending).await?;
    Ok(Origin {
        reader: Reader::new(upstream.stream, Side::Upstream),
        link: upstream.link,
        pacer: admitted.pacer.clone(),
    })
}

/// Sends the request and returns the final response head, passing interim (1xx)
/// responses other than 101 on to the client.
async fn exchange_head(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
    head: &RequestHead,
    length: BodyLength,
    origin: &mut Origin,
    exchange: &mut Exchange,
) -> Result<ResponseHead, ProxyError> {
    let outgoing = rewrite::Outgoing {
        via_name: &ctx.config.via_name,
        edits: &ctx.config.headers,
        client: client.get_ref().peer().ip(),
        form: &origin.link.form,
    };
    let request = rewrite::origin_request(head, length, outgoing);
    if length != BodyLength::Empty
        && head.version == Version::Http11
        && head.headers.has_token("expect", "100-continue")
    {
        // The proxy answers the expectation itself once the origin is reachable (RFC 9110
        // §10.1.1), so the client's body waits until there is somewhere to send it.
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        write_client(client, interim).await?;
        exchange.bytes_to_client += interim.len() as u64;
    }
    let relay = Relay {
        read_timeout: ctx.config.timeouts.idle,
        dst_side: Side::Upstream,
        dechunk: false,
    };
    let mut to_origin = Paced::new(origin.reader.get_mut(), origin.pacer.clone());
    let sent = body::relay_body_with(
        client,
        &mut to_origin,
        length,
        relay,
        request,
        &mut |_: &[u8]| {},
    )
    .await
    .map_err(|e| match e {
        ProxyError::Io(Side::Upstream, _) if exchange.bytes_to_origin == 0 => {
            ProxyError::UpstreamClosed
        }
        other => other,
    })?;
    exchange.bytes_to_origin += sent;
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
            write_client(client, &interim).await?;
            exchange.bytes_to_client += interim.len() as u64;
        }
    }
}

async fn write_client(client: &mut Reader<ClientStream>, bytes: &[u8]) -> Result<(), ProxyError> {
    client
        .get_mut()
        .write_all(bytes)
        .await
        .map_err(|e| ProxyError::Io(Side::Client, e))
}

/// Whether the client connection stays open after this response.
fn client_keep_alive(ctx: &Context, head: &RequestHead, length: BodyLength) -> bool {
    rewrite::client_keep_alive(head) && length != BodyLength::UntilClose && !ctx.shutting_down()
}

async fn respond(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
    head: &RequestHead,
    response: &ResponseHead,
    mut origin: Origin,
    exchange: &mut Exchange,
    mut filler: Option<Box<Filler>>,
) -> Result<Next, ProxyError> {
    let length = framing::response_body(&head.method, response.status, &response.headers)?;
    let dechunk = length == BodyLength::Chunked && head.version == Version::Http10;
    let client_length = if dechunk {
        BodyLength::UntilClose
    } else {
        length
    };
    let keep_alive = client_keep_alive(ctx, head, client_length);
    let framing = ClientFraming {
        length: client_length,
        keep_alive,
        client_version: head.version,
        keep_content_length: head.is_method("HEAD") || response.status == 304,
    };
    let out = match exchange.cache {
        CacheResult::Miss => {
            let mut marked = response.clone();
            marked.headers.push(cache::miss_field());
            rewrite::client_response(&marked, framing, &ctx.config.via_name, &ctx.config.headers)
        }
        _ => rewrite::client_response(response, framing, &ctx.config.via_name, &ctx.config.headers),
    };
    exchange.status = response.status;
    exchange.response_started = true;
    let pacer = origin.pacer.take();
    let caching = filler.is_some();
    // The bytes to the client are counted as they are written, so a response cut off
    // mid-body is recorded with what it carried.
    let relayed = if spliced::worth_splicing(length, origin.reader.buffered().len(), caching) {
        let timeout = ctx.config.timeouts.response;
        let client = client.get_mut();
        spliced::relay(
            client,
            &mut origin.reader,
            length,
            out,
            timeout,
            pacer.as_ref(),
            &mut exchange.bytes_to_client,
        )
        .await
    } else {
        let relay = Relay {
            read_timeout: ctx.config.timeouts.response,
            dst_side: Side::Client,
            dechunk,
        };
        let mut tee = |chunk: &[u8]| {
            if let Some(filler) = filler.as_mut() {
                filler.push(chunk);
            }
        };
        let mut to_client = Tallied {
            inner: Paced::new(client.get_mut(), pacer),
            tally: &mut exchange.bytes_to_client,
        };
        body::relay_body_with(
            &mut origin.reader,
            &mut to_client,
            length,
            relay,
            out,
            &mut tee,
        )
        .await
        .map(|_| ())
    };
    exchange.bytes_from_origin += origin.reader.bytes_read();
    if relayed.is_err() && client_length == BodyLength::UntilClose {
        // This client reads the body up to the close, so a clean close would pass a
        // cut-off body as whole (RFC 9112 §8): make the close a reset instead. Other
        // framings let the client see the truncation itself.
        client.get_ref().abort_on_close();
    }
    relayed?;
    // Only a body that arrived whole is stored (a broken one returned above).
    cached::finish(filler, ctx.cache.as_ref(), &ctx.stats);
    release(ctx, origin, response, length);
    Ok(if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    })
}

/// Pools the origin connection if the exchange left it clean and reusable.
fn release(ctx: &Context, origin: Origin, response: &ResponseHead, length: BodyLength) {
    let reusable = rewrite::origin_keep_alive(response)
        && length != BodyLength::UntilClose
        && origin.reader.buffered().is_empty();
    if reusable {
        let (stream, _) = origin.reader.into_parts();
        ctx.dialer.release(stream, origin.link);
    }
}

/// Answers from the cache.
async fn serve_hit(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
    head: &RequestHead,
    hit: &Hit,
    exchange: &mut Exchange,
) -> Result<Next, ProxyError> {
    let keep_alive = client_keep_alive(ctx, head, BodyLength::Empty);
    let mut extra = Headers::new();
    for field in &ctx.config.headers.response_add {
        extra.push(field.clone());
    }
    if ctx.config.headers.via {
        extra.append("Via", format!("1.1 {}", ctx.config.via_name));
    }
    if !keep_alive {
        extra.append("Connection", "close");
    } else if head.version == Version::Http10 {
        extra.append("Connection", "keep-alive");
    }
    let mut out = ctx
        .config
        .headers
        .render_hit(|extra| hit.render_head(extra), extra);
    out.extend_from_slice(&hit.body());
    exchange.status = hit.status();
    exchange.cache = CacheResult::Hit;
    exchange.response_started = true;
    write_client(client, &out).await?;
    exchange.bytes_to_client += out.len() as u64;
    Ok(if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    })
}

/// A 101 answer to an upgrade request turns the connection into a two-way relay.
async fn upgrade(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
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
    let out =
        rewrite::client_response(response, framing, &ctx.config.via_name, &ctx.config.headers);
    exchange.status = 101;
    exchange.response_started = true;
    write_client(client, &out).await?;
    exchange.bytes_to_client += out.len() as u64;
    exchange.bytes_from_origin += origin.reader.consumed();
    ctx.begin_relay(exchange);
    let early_client = client.take(usize::MAX);
    let (mut stream, early_origin) = origin.reader.into_parts();
    ctx.relay(
        client.get_mut(),
        early_client,
        &mut stream,
        early_origin,
        origin.pacer.as_ref(),
        exchange,
    )
    .await;
    Ok(Next::Close)
}
