//! The steps every front end's exchanges share, in order: [`Context::admit`] (blocked
//! address, access decision, the user's limits), then for a tunnel [`Context::tunnel`]
//! (dial, the front end's yes, the client's first bytes read and their ClientHello
//! checked — `hello` —, the relay), and [`Context::fail`] when anything refuses or
//! breaks. A front end plugs in through [`FrontEnd`]: it parses its protocol and writes
//! its protocol's answers; it decides nothing.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

use super::{Context, Exchange, Stage};
use crate::access::{Admission, Decision};
use crate::acl::AddressCheck;
use crate::cut;
use crate::error::{ProxyError, Refusal, Side};
use crate::limits::{Pacer, Seat};
use crate::stats::Outcome;
use crate::tunnel::{self, Direction, Splice};
use crate::upstream::{Arrival, Reuse, UpstreamStream};

/// A front end's side of the pipeline: what only its protocol knows. HTTP/1.1 says yes
/// to a tunnel with `200 Connection Established` and refuses with a status line; SOCKS5
/// with a reply code; an HTTP/2 stream would answer with HEADERS frames and relay DATA.
/// (Not a public trait: its futures' `Send` is seen through the concrete front ends.)
#[allow(async_fn_in_trait)]
pub trait FrontEnd {
    /// The client side of a relay: the connection itself (HTTP/1.1, SOCKS5), or one
    /// stream of it.
    type Io: AsyncRead + AsyncWrite + Splice + Unpin + Send;

    /// Where the client's connection arrived, for the dialer's loop check.
    fn arrival(&self) -> &dyn Arrival;

    /// What a tunnel relays with the client.
    fn io(&mut self) -> &mut Self::Io;

    /// Tells the client its tunnel is open, `bound` being the proxy's end toward the
    /// target; returns the bytes written.
    async fn open(&mut self, bound: SocketAddr) -> io::Result<u64>;

    /// Answers a refusal or failure that owes the client an answer (see
    /// [`Exchange::failed`]) in the protocol's terms; returns the bytes written.
    async fn refuse(&mut self, error: &ProxyError) -> u64;

    /// Bytes the client sent behind its request, to be relayed first.
    fn early(&mut self) -> Bytes;
}

/// What admission let through: the user's bandwidth (when limited), and what the rules
/// left to the destination's addresses, which only the dialer can settle.
pub struct Admitted {
    pub pacer: Option<Pacer>,
    pub pending: Option<AddressCheck>,
}

impl Context {
    /// The one admission on the request path, for every front end: the access decision,
    /// whose credentials go through the one authentication path (an address blocked for
    /// failing authentication is refused with 429 before they are read; a wrong one
    /// counts towards its block), with the user and the deciding rule noted in the
    /// exchange; then the user's limits — the allowing rule's own, else everyone's —
    /// with `seat` the connection's place in its user's connection count.
    pub async fn admit(
        &self,
        request: &Admission<'_>,
        seat: &mut Seat,
        exchange: &mut Exchange,
    ) -> Result<Admitted, ProxyError> {
        exchange.stage = Stage::Admission;
        let access = self.access.snapshot();
        let (limits, pending) = match access.decide(request, &self.limits).await {
            Decision::Allow {
                user,
                rule,
                limits,
                addresses,
                inspect: _,
            } => {
                exchange.user = user;
                exchange.rule = rule;
                (limits, addresses)
            }
            // The refusing rule is noted when the failure is (a refusal may also come
            // from the dialer).
            Decision::Deny(refusal) => return Err(ProxyError::Forbidden(refusal)),
            Decision::AuthRequired(failure, rule) => {
                return Err(ProxyError::ProxyAuthRequired(failure, rule));
            }
            Decision::Limited(over) => return Err(ProxyError::TooManyRequests(over)),
        };
        let limits = limits.as_ref().unwrap_or(&access.limits);
        let grant = self
            .limits
            .grant(seat, exchange.user.as_deref(), request.client, limits)
            .map_err(ProxyError::TooManyRequests)?;
        Ok(Admitted {
            pacer: grant.pacer,
            pending,
        })
    }

    /// An admitted tunnel: a fresh connection from the dialer (which settles what the
    /// rules left to the addresses), the front end's yes, then the relay until either
    /// side is done. An error before the yes is the caller's to [`fail`](Self::fail).
    pub async fn tunnel(
        &self,
        front: &mut impl FrontEnd,
        request: &Admission<'_>,
        admitted: Admitted,
        exchange: &mut Exchange,
    ) -> Result<(), ProxyError> {
        let target = &request.target;
        exchange.stage = Stage::Dial;
        let mut upstream = self
            .dialer
            .dial(
                target,
                front.arrival(),
                Reuse::Fresh,
                admitted.pending.as_ref(),
            )
            .await?;
        exchange.connected(&upstream.link);
        let bound = upstream
            .stream
            .local_addr()
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        exchange.status = 200;
        exchange.response_started = true;
        exchange.outcome = Outcome::Tunnel;
        let written = front
            .open(bound)
            .await
            .map_err(|e| ProxyError::Io(Side::Client, e))?;
        exchange.bytes_to_client += written;
        let early = front.early();
        let early = match self
            .first_bytes(
                front.io(),
                early,
                &upstream.stream,
                request,
                &upstream.link,
                exchange,
            )
            .await
        {
            Ok(early) => early,
            Err(refusal) => {
                refused_after_yes(exchange, refusal);
                let _ = front.io().shutdown().await;
                return Ok(());
            }
        };
        self.begin_relay(exchange);
        let _open = self.stats.tunnel_opened();
        let end = self
            .relay(
                front.io(),
                early,
                &mut upstream.stream,
                Bytes::new(),
                admitted.pacer.as_ref(),
                exchange,
            )
            .await;
        tracing::debug!(?end, "tunnel to {target} ended");
        Ok(())
    }

    /// Notes a failure in the exchange and has the front end answer it, when an answer
    /// is still owed.
    pub async fn fail(
        &self,
        front: &mut impl FrontEnd,
        exchange: &mut Exchange,
        error: &ProxyError,
    ) {
        if exchange.failed(error) {
            exchange.bytes_to_client += front.refuse(error).await;
        }
    }

    /// Marks the exchange as relayed from here on (a tunnel or an upgrade): the bytes so
    /// far are counted now, [`Context::relay`] counts the rest as they move.
    pub fn begin_relay(&self, exchange: &mut Exchange) {
        self.stats.add_bytes_from_client(exchange.bytes_from_client);
        self.stats.add_bytes_to_client(exchange.bytes_to_client);
        self.stats.add_bytes_from_origin(exchange.bytes_from_origin);
        self.stats.add_bytes_to_origin(exchange.bytes_to_origin);
        exchange.relayed = true;
    }

    /// Relays a tunnel or an upgraded connection with live statistics, paced by the
    /// user's bandwidth when `pacer` is given, and adds the bytes each way to the
    /// exchange's record.
    pub async fn relay(
        &self,
        client: &mut (impl AsyncRead + AsyncWrite + Splice + Unpin),
        client_early: Bytes,
        upstream: &mut UpstreamStream,
        upstream_early: Bytes,
        pacer: Option<&Pacer>,
        exchange: &mut Exchange,
    ) -> tunnel::End {
        let count = |direction, bytes| self.count_relayed(direction, bytes);
        let stops = tunnel::Stops {
            idle: self.config.timeouts.idle,
            cut: self.shutdown.cut.wait(),
        };
        let (totals, end) = tunnel::relay(
            client,
            client_early,
            upstream,
            upstream_early,
            stops,
            &count,
            pacer,
        )
        .await;
        if end == tunnel::End::Shutdown {
            exchange.failure = Some(cut::LABEL);
        }
        exchange.bytes_from_client += totals.client_to_upstream;
        exchange.bytes_to_origin += totals.client_to_upstream;
        exchange.bytes_from_origin += totals.upstream_to_client;
        exchange.bytes_to_client += totals.upstream_to_client;
        end
    }

    /// Live statistics for a relay: bytes each way, as they move.
    fn count_relayed(&self, direction: Direction, bytes: u64) {
        match direction {
            Direction::ToUpstream => {
                self.stats.add_bytes_from_client(bytes);
                self.stats.add_bytes_to_origin(bytes);
            }
            Direction::ToClient => {
                self.stats.add_bytes_from_origin(bytes);
                self.stats.add_bytes_to_client(bytes);
            }
        }
    }
}

/// Notes a tunnel refused after its yes went out (its ClientHello asked for another
/// name): the log shows the refusal (`TCP_DENIED/403`, the reason's label, both names),
/// though the client, already told yes, sees only the close.
fn refused_after_yes(exchange: &mut Exchange, refusal: Refusal) {
    exchange.status = 403;
    exchange.outcome = Outcome::Blocked;
    exchange.failure = Some(refusal.brief);
    if refusal.rule.is_some() {
        exchange.rule = refusal.rule;
    }
    tracing::debug!(
        reason = refusal.reason,
        "tunnel refused after its ClientHello"
    );
}

/// The statistics bucket an error falls in, for every front end.
pub fn outcome_of(error: &ProxyError) -> Outcome {
    match error {
        ProxyError::Forbidden(_) | ProxyError::TooManyRequests(_) => Outcome::Blocked,
        ProxyError::ProxyAuthRequired(..) => Outcome::AuthFailed,
        // Allowed, but `only-if-cached` found nothing to serve.
        ProxyError::NotCached => Outcome::Allowed,
        other => match other.side() {
            Side::Upstream => Outcome::UpstreamError,
            _ => Outcome::Malformed,
        },
    }
}
