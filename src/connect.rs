//! CONNECT: open a TCP connection to `host:port`, confirm with `200 Connection
//! Established`, then relay bytes blindly (TLS is never decrypted). Bytes the client sent
//! right behind its CONNECT head are relayed, not lost.

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::context::{Context, Exchange, Next};
use crate::error::{ProxyError, Side};
use crate::http::{Reader, RequestHead, Target};
use crate::stats::Outcome;
use crate::{tunnel, upstream};

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

pub async fn connect(
    ctx: &Context,
    client: &mut Reader<TcpStream>,
    head: &RequestHead,
    exchange: &mut Exchange,
) -> Result<Next, ProxyError> {
    let Target::Authority { host, port } = &head.target else {
        return Err(ProxyError::BadRequest("CONNECT needs a host:port target"));
    };
    let addrs = upstream::resolve(host, *port).await?;
    ctx.check_destination(&addrs, client.get_ref())?;
    let (mut origin, peer) = upstream::connect(&addrs, ctx.config.timeouts.connect).await?;
    exchange.upstream = Some(peer);
    exchange.status = 200;
    exchange.response_started = true;
    exchange.outcome = Outcome::Tunnel;
    exchange.relayed = true;
    client
        .get_mut()
        .write_all(ESTABLISHED)
        .await
        .map_err(|e| ProxyError::Io(Side::Client, e))?;
    exchange.bytes_to_client += ESTABLISHED.len() as u64;
    ctx.stats.add_bytes_to_client(ESTABLISHED.len() as u64);
    ctx.stats.add_bytes_from_client(exchange.bytes_from_client);
    let _open = ctx.stats.tunnel_opened();
    let early = client.take(usize::MAX);
    let end = relay(ctx, client, early, &mut origin, Bytes::new(), exchange).await;
    tracing::debug!(?end, "tunnel to {host}:{port} ended");
    Ok(Next::Close)
}

/// Relays a tunnel or an upgraded connection with live statistics, and adds the bytes
/// each way to the exchange's record.
pub(crate) async fn relay(
    ctx: &Context,
    client: &mut Reader<TcpStream>,
    client_early: Bytes,
    upstream: &mut TcpStream,
    upstream_early: Bytes,
    exchange: &mut Exchange,
) -> tunnel::End {
    let count = |direction, bytes| ctx.count_relayed(direction, bytes);
    let idle = ctx.config.timeouts.idle;
    let stream = client.get_mut();
    let (totals, end) =
        tunnel::relay(stream, client_early, upstream, upstream_early, idle, &count).await;
    exchange.bytes_from_client += totals.client_to_upstream;
    exchange.bytes_to_origin += totals.client_to_upstream;
    exchange.bytes_from_origin += totals.upstream_to_client;
    exchange.bytes_to_client += totals.upstream_to_client;
    end
}
