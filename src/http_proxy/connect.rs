//! CONNECT in the HTTP front end: a connection to `host:port` from the dialer, the HTTP
//! answer `200 Connection Established`, then a blind relay (TLS is never decrypted).
//! Bytes the client sent right behind its CONNECT head are relayed, not lost.

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::client::ClientStream;
use crate::context::{Context, Exchange, Next};
use crate::error::{ProxyError, Side};
use crate::http::{self, Reader, RequestHead};
use crate::limits::Pacer;
use crate::stats::Outcome;
use crate::target::Target;
use crate::upstream::Reuse;

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

pub async fn connect(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
    head: &RequestHead,
    target: &Target<'_>,
    exchange: &mut Exchange,
    pacer: Option<&Pacer>,
) -> Result<Next, ProxyError> {
    if !matches!(head.target, http::RequestTarget::Authority { .. }) {
        return Err(ProxyError::BadRequest("CONNECT needs a host:port target"));
    }
    let mut upstream = ctx
        .dialer
        .dial(
            target,
            client.get_ref(),
            Reuse::Fresh,
            exchange.addresses.as_ref(),
        )
        .await?;
    exchange.connected(&upstream.link);
    exchange.status = 200;
    exchange.response_started = true;
    exchange.outcome = Outcome::Tunnel;
    client
        .get_mut()
        .write_all(ESTABLISHED)
        .await
        .map_err(|e| ProxyError::Io(Side::Client, e))?;
    exchange.bytes_to_client += ESTABLISHED.len() as u64;
    ctx.begin_relay(exchange);
    let _open = ctx.stats.tunnel_opened();
    let early = client.take(usize::MAX);
    let end = ctx
        .relay(
            client.get_mut(),
            early,
            &mut upstream.stream,
            Bytes::new(),
            pacer,
            exchange,
        )
        .await;
    tracing::debug!(?end, "tunnel to {target} ended");
    Ok(Next::Close)
}
