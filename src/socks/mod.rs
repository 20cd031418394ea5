//! The SOCKS5 front end (RFC 1928 CONNECT; RFC 1929 username/password): one client
//! connection's life. Negotiate a method — username/password when a users file is set
//! (no-auth is then not offered), no authentication otherwise —, read the request under
//! the header timeout, state the [`Target`] (kind `Connect`: the CONNECT-port rule
//! applies) and ask the same admission as HTTP, dial through the same dialer (names are
//! resolved by the proxy and every address checked), answer with a SOCKS reply, relay,
//! and record the session like a CONNECT tunnel, with the method `SOCKS5`. BIND and UDP
//! ASSOCIATE are answered "command not supported". A malformed greeting or request
//! closes the connection and is counted as malformed. The parsers are in `wire`.

pub mod wire;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::timeout_at;

use crate::access::{Admission, ClientCredentials, NotAuthenticated};
use crate::client::ClientStream;
use crate::context::{Context, Exchange};
use crate::error::{ProxyError, Side};
use crate::limits::{LimitSettings, Seat};
use crate::stats::Outcome;
use crate::target::{Kind, Target};
use crate::upstream::Reuse;
use wire::{Reply, WireError};

/// How the access log names a SOCKS5 session's method.
pub const LOG_METHOD: &str = "SOCKS5";

/// The most negotiation bytes held at once: a greeting (257), credentials (513) and a
/// request (262) fit, with room for early data sent behind them.
const MAX_NEGOTIATION: usize = 4096;

/// The method the CONNECT rules see: a SOCKS5 tunnel is a CONNECT by another name.
const ADMISSION_METHOD: &str = "CONNECT";

/// Serves one SOCKS5 connection.
pub(crate) async fn serve(client: ClientStream, ctx: Arc<Context>) {
    let started = Instant::now();
    let mut session = Session {
        exchange: Exchange::unparsed(client.peer(), started),
        client,
        buf: BytesMut::with_capacity(512),
        read: 0,
    };
    session.exchange.method = LOG_METHOD.to_string();
    let deadline = (started + ctx.config.timeouts.header).into();
    let negotiated = match timeout_at(deadline, session.negotiate(&ctx)).await {
        Ok(negotiated) => negotiated,
        Err(_) => Err(Failure::quiet(ProxyError::HeaderTimeout)),
    };
    match negotiated {
        Ok(request) => session.connect(&ctx, request).await,
        Err(failure) => session.fail(failure).await,
    }
    // A connection that said nothing is not a session, as over HTTP.
    if session.read > 0 {
        ctx.record(session.exchange);
    }
}

/// One connection's state while it negotiates.
struct Session {
    client: ClientStream,
    /// Bytes read and not yet parsed.
    buf: BytesMut,
    /// Bytes read from the client during the negotiation.
    read: u64,
    exchange: Exchange,
}

/// A request that passed negotiation, with the credentials it came with.
struct Negotiated {
    request: wire::Request,
    credentials: Option<wire::UserPassword>,
}

/// Why a session ends before its tunnel: the error for the log and statistics, and the
/// reply owed to the client, if any.
struct Failure {
    error: ProxyError,
    reply: Option<Vec<u8>>,
    outcome: Outcome,
}

impl Failure {
    fn quiet(error: ProxyError) -> Failure {
        Failure {
            error,
            reply: None,
            outcome: Outcome::Malformed,
        }
    }

    fn replying(error: ProxyError, code: Reply, outcome: Outcome) -> Failure {
        let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        Failure {
            error,
            reply: Some(wire::reply(code, unspecified)),
            outcome,
        }
    }
}

impl Session {
    /// Greeting, method, credentials and request, in that order.
    async fn negotiate(&mut self, ctx: &Context) -> Result<Negotiated, Failure> {
        let greeting = self.next(wire::parse_greeting).await?;
        let access = ctx.access.snapshot();
        let method = if access.authenticator.is_some() {
            greeting.user_password.then_some(wire::METHOD_USER_PASSWORD)
        } else if greeting.no_auth {
            Some(wire::METHOD_NO_AUTH)
        } else {
            // Authentication is off: credentials offered are taken and not checked.
            greeting.user_password.then_some(wire::METHOD_USER_PASSWORD)
        };
        let Some(method) = method else {
            self.write(&wire::method_choice(wire::METHOD_NONE_ACCEPTABLE))
                .await?;
            let failure = crate::error::AuthFailure {
                brief: "auth-method",
            };
            let error = ProxyError::ProxyAuthRequired(failure, None);
            return Err(Failure {
                outcome: Outcome::AuthFailed,
                ..Failure::quiet(error)
            });
        };
        self.write(&wire::method_choice(method)).await?;
        let mut credentials = None;
        if method == wire::METHOD_USER_PASSWORD {
            let given = self.next(wire::parse_user_password).await?;
            // HTTP's path: a blocked address gets a failure status with its password
            // unchecked, and a wrong one counts towards its block.
            let offered = ClientCredentials::UserPassword {
                user: &given.user,
                password: &given.password,
            };
            let client = self.client.peer().ip();
            let checked = access.authenticate(offered, client, &ctx.limits).await;
            self.write(&wire::user_password_status(checked.is_ok()))
                .await?;
            if let Err(refused) = checked {
                let (error, outcome) = match refused {
                    NotAuthenticated::Failed(failure) => (
                        ProxyError::ProxyAuthRequired(failure, None),
                        Outcome::AuthFailed,
                    ),
                    NotAuthenticated::Limited(over) => {
                        (ProxyError::TooManyRequests(over), Outcome::Blocked)
                    }
                };
                return Err(Failure {
                    outcome,
                    ..Failure::quiet(error)
                });
            }
            credentials = Some(given);
        }
        let request = self.next(wire::parse_request).await?;
        Ok(Negotiated {
            request,
            credentials,
        })
    }

    /// The next message, read until `parse` has it; malformed input and a close end the
    /// session (an unknown address type with its reply).
    async fn next<T>(&mut self, parse: fn(&[u8]) -> wire::Parsed<T>) -> Result<T, Failure> {
        loop {
            match parse(&self.buf) {
                Ok(Some((message, length))) => {
                    self.buf.advance(length);
                    return Ok(message);
                }
                Ok(None) if self.buf.len() < MAX_NEGOTIATION => {}
                Ok(None) => return Err(Failure::quiet(ProxyError::HeadTooLarge)),
                Err(WireError::Malformed(why)) => {
                    return Err(Failure::quiet(ProxyError::BadRequest(why)));
                }
                Err(WireError::AddressType(_)) => {
                    let error = ProxyError::BadRequest("unknown SOCKS address type");
                    return Err(Failure::replying(
                        error,
                        Reply::AddressTypeNotSupported,
                        Outcome::Malformed,
                    ));
                }
            }
            match self.client.read_buf(&mut self.buf).await {
                Ok(0) => {
                    return Err(Failure::quiet(ProxyError::BadRequest(
                        "closed while negotiating",
                    )));
                }
                Ok(n) => self.read += n as u64,
                Err(e) => return Err(Failure::quiet(ProxyError::Io(Side::Client, e))),
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        match self.client.write_all(bytes).await {
            Ok(()) => {
                self.exchange.bytes_to_client += bytes.len() as u64;
                Ok(())
            }
            Err(e) => Err(Failure::quiet(ProxyError::Io(Side::Client, e))),
        }
    }

    /// Admission, the connection upstream, the reply, the relay.
    async fn connect(&mut self, ctx: &Context, negotiated: Negotiated) {
        let request = &negotiated.request;
        let host = request.host();
        let target = Target::new(&host, request.port, Kind::Connect);
        self.exchange.target = target.authority();
        if request.command != wire::COMMAND_CONNECT {
            let error = ProxyError::NotImplemented("only the SOCKS5 CONNECT command is served");
            let failure = Failure::replying(error, Reply::CommandNotSupported, Outcome::Malformed);
            return self.fail(failure).await;
        }
        let credentials = match &negotiated.credentials {
            Some(given) => ClientCredentials::UserPassword {
                user: &given.user,
                password: &given.password,
            },
            None => ClientCredentials::None,
        };
        let limits = match self.admit(ctx, credentials, &target).await {
            Ok(limits) => limits,
            Err(failure) => return self.fail(failure).await,
        };
        let mut seat = Seat::default();
        let user = self.exchange.user.as_deref();
        let grant = match ctx
            .limits
            .admit(&mut seat, user, self.client.peer().ip(), &limits)
        {
            Ok(grant) => grant,
            Err(over) => {
                let error = ProxyError::TooManyRequests(over);
                let failure = Failure::replying(error, Reply::NotAllowed, Outcome::Blocked);
                return self.fail(failure).await;
            }
        };
        let addresses = self.exchange.addresses.take();
        let dialed = ctx
            .dialer
            .dial(&target, &self.client, Reuse::Fresh, addresses.as_ref())
            .await;
        let mut upstream = match dialed {
            Ok(upstream) => upstream,
            Err(error) => return self.fail(dial_failure(error)).await,
        };
        self.exchange.connected(&upstream.link);
        let bound = upstream
            .stream
            .local_addr()
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        self.exchange.status = 200;
        self.exchange.outcome = Outcome::Tunnel;
        if let Err(failure) = self.write(&wire::reply(Reply::Succeeded, bound)).await {
            self.exchange.failure = Some(failure.error.brief());
            return;
        }
        self.exchange.bytes_from_client = self.read - self.buf.len() as u64;
        ctx.begin_relay(&mut self.exchange);
        let _open = ctx.stats.tunnel_opened();
        let early = self.buf.split().freeze();
        let end = ctx
            .relay(
                &mut self.client,
                early,
                &mut upstream.stream,
                bytes::Bytes::new(),
                grant.pacer.as_ref(),
                &mut self.exchange,
            )
            .await;
        tracing::debug!(?end, "SOCKS5 tunnel to {} ended", self.exchange.target);
    }

    /// The same admission as HTTP ([`Context::admit`]), with the credentials the client
    /// authenticated with; the limits that apply come back. A refusal is answered with
    /// the SOCKS reply "not allowed by ruleset".
    async fn admit(
        &mut self,
        ctx: &Context,
        credentials: ClientCredentials<'_>,
        target: &Target<'_>,
    ) -> Result<Arc<LimitSettings>, Failure> {
        let admission = Admission {
            listener: ctx.listener_addr(self.client.listener()),
            client: self.client.peer().ip(),
            credentials,
            target: *target,
            method: ADMISSION_METHOD,
        };
        let access = ctx.access.snapshot();
        ctx.admit(&access, &admission, &mut self.exchange)
            .await
            .map_err(|error| {
                let outcome = match error {
                    ProxyError::ProxyAuthRequired(..) => Outcome::AuthFailed,
                    _ => Outcome::Blocked,
                };
                Failure::replying(error, Reply::NotAllowed, outcome)
            })
    }

    /// Sends the reply a failure owes, if any, notes it in the record, and closes.
    async fn fail(&mut self, failure: Failure) {
        let exchange = &mut self.exchange;
        exchange.bytes_from_client = self.read;
        exchange.failure = Some(failure.error.brief());
        if let Some(rule) = failure.error.rule() {
            // The rule that refused, wherever it was asked (admission or the dialer).
            exchange.rule = Some(rule.clone());
        }
        exchange.outcome = failure.outcome;
        // The log's status column reads as it would for the same CONNECT over HTTP.
        exchange.status = failure.error.status().unwrap_or(0);
        if let Some(reply) = failure.reply
            && self.client.write_all(&reply).await.is_ok()
        {
            self.exchange.bytes_to_client += reply.len() as u64;
        }
        let _ = self.client.shutdown().await;
    }
}

/// The reply for a connection the dialer could not make (RFC 1928 §6).
fn dial_failure(error: ProxyError) -> Failure {
    let (code, outcome) = match &error {
        ProxyError::Forbidden(_) | ProxyError::Loop => (Reply::NotAllowed, Outcome::Blocked),
        ProxyError::Resolve { .. } => (Reply::HostUnreachable, Outcome::UpstreamError),
        ProxyError::Connect { source, .. } => (
            match source.kind() {
                std::io::ErrorKind::ConnectionRefused => Reply::ConnectionRefused,
                std::io::ErrorKind::NetworkUnreachable => Reply::NetworkUnreachable,
                _ => Reply::HostUnreachable,
            },
            Outcome::UpstreamError,
        ),
        ProxyError::ConnectTimeout => (Reply::HostUnreachable, Outcome::UpstreamError),
        _ => (Reply::GeneralFailure, Outcome::UpstreamError),
    };
    Failure::replying(error, code, outcome)
}
