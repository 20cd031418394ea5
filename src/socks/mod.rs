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

use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::timeout_at;

use crate::access::{Admission, ClientCredentials, NotAuthenticated};
use crate::client::ClientStream;
use crate::conn::{Context, Exchange, FrontEnd};
use crate::error::{ProxyError, Side};
use crate::limits::Seat;
use crate::target::{Kind, Target};
use crate::upstream::Arrival;
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
    let mut exchange = ctx.recorded(Exchange::unparsed(client.peer(), started));
    exchange.method = LOG_METHOD.to_string();
    let mut socks = Socks {
        client,
        buf: BytesMut::with_capacity(512),
        read: 0,
        written: 0,
    };
    let deadline = (started + ctx.config.timeouts.header).into();
    let negotiated = match timeout_at(deadline, socks.negotiate(&ctx)).await {
        Ok(negotiated) => negotiated,
        Err(_) => Err(Failure::quiet(ProxyError::HeaderTimeout)),
    };
    match negotiated {
        Ok(request) => socks.connect(&ctx, request, &mut exchange).await,
        Err(failure) => socks.fail(failure, &mut exchange).await,
    }
    exchange.bytes_to_client += socks.written;
    // A connection that said nothing is not a session, as over HTTP.
    if socks.read > 0 {
        exchange.finish();
    } else {
        exchange.discard();
    }
}

/// One SOCKS5 client connection: the front end's side of the pipeline.
struct Socks {
    client: ClientStream,
    /// Bytes read and not yet parsed.
    buf: BytesMut,
    /// Bytes read from the client during the negotiation.
    read: u64,
    /// Negotiation bytes written to the client.
    written: u64,
}

/// A request that passed negotiation, with the credentials it came with.
struct Negotiated {
    request: wire::Request,
    credentials: Option<wire::UserPassword>,
}

/// Why a negotiation ends early: the error for the log and statistics, and the reply
/// owed to the client, if any.
struct Failure {
    error: ProxyError,
    reply: Option<Reply>,
}

impl Failure {
    fn quiet(error: ProxyError) -> Failure {
        Failure { error, reply: None }
    }
}

impl Socks {
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
            return Err(Failure::quiet(error));
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
                let error = match refused {
                    NotAuthenticated::Failed(failure) => {
                        ProxyError::ProxyAuthRequired(failure, None)
                    }
                    NotAuthenticated::Limited(over) => ProxyError::TooManyRequests(over),
                };
                return Err(Failure::quiet(error));
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
                    return Err(Failure {
                        error,
                        reply: Some(Reply::AddressTypeNotSupported),
                    });
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
                self.written += bytes.len() as u64;
                Ok(())
            }
            Err(e) => Err(Failure::quiet(ProxyError::Io(Side::Client, e))),
        }
    }

    /// Admission and the tunnel, through the pipeline every front end shares; a
    /// refusal is answered with a SOCKS reply ([`FrontEnd::refuse`]).
    async fn connect(&mut self, ctx: &Context, negotiated: Negotiated, exchange: &mut Exchange) {
        let request = &negotiated.request;
        let host = request.host();
        let target = Target::new(&host, request.port, Kind::Connect);
        exchange.target = target.authority();
        // What the client sent before its tunnel opened; the relay counts the rest.
        exchange.bytes_from_client = self.read - self.buf.len() as u64;
        let tunneled = if request.command == wire::COMMAND_CONNECT {
            let credentials = match &negotiated.credentials {
                Some(given) => ClientCredentials::UserPassword {
                    user: &given.user,
                    password: &given.password,
                },
                None => ClientCredentials::None,
            };
            self.tunnel(ctx, credentials, &target, exchange).await
        } else {
            Err(ProxyError::NotImplemented(
                "only the SOCKS5 CONNECT command is served",
            ))
        };
        if let Err(error) = tunneled {
            exchange.bytes_from_client = self.read;
            ctx.fail(self, exchange, &error).await;
            let _ = self.client.shutdown().await;
        }
    }

    async fn tunnel(
        &mut self,
        ctx: &Context,
        credentials: ClientCredentials<'_>,
        target: &Target<'_>,
        exchange: &mut Exchange,
    ) -> Result<(), ProxyError> {
        let admission = Admission {
            listener: ctx.listener_addr(self.client.listener()),
            client: self.client.peer().ip(),
            credentials,
            target: *target,
            method: ADMISSION_METHOD,
            path: None,
        };
        // One session, one connection: its seat is its own.
        let admitted = ctx
            .admit(&admission, &mut Seat::default(), exchange)
            .await?;
        ctx.tunnel(self, &admission, admitted, exchange).await
    }

    /// Notes a failed negotiation, sends the reply it owes (if any), and closes.
    async fn fail(&mut self, failure: Failure, exchange: &mut Exchange) {
        exchange.bytes_from_client = self.read;
        exchange.failed(&failure.error);
        if let Some(code) = failure.reply
            && let Ok(written) = self.reply(code, unspecified()).await
        {
            self.written += written;
        }
        let _ = self.client.shutdown().await;
    }

    async fn reply(&mut self, code: Reply, bound: SocketAddr) -> std::io::Result<u64> {
        let reply = wire::reply(code, bound);
        self.client.write_all(&reply).await?;
        Ok(reply.len() as u64)
    }
}

impl FrontEnd for Socks {
    type Io = ClientStream;

    fn arrival(&self) -> &dyn Arrival {
        &self.client
    }

    fn io(&mut self) -> &mut ClientStream {
        &mut self.client
    }

    async fn open(&mut self, bound: SocketAddr) -> std::io::Result<u64> {
        self.reply(Reply::Succeeded, bound).await
    }

    async fn refuse(&mut self, error: &ProxyError) -> u64 {
        self.reply(reply_for(error), unspecified())
            .await
            .unwrap_or(0)
    }

    fn early(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

/// The address a reply names when there is none to give.
fn unspecified() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
}

/// The reply code for a refused or failed request (RFC 1928 §6).
fn reply_for(error: &ProxyError) -> Reply {
    match error {
        ProxyError::NotImplemented(_) => Reply::CommandNotSupported,
        ProxyError::Resolve { .. } | ProxyError::ConnectTimeout => Reply::HostUnreachable,
        ProxyError::Connect { source, .. } => match source.kind() {
            std::io::ErrorKind::ConnectionRefused => Reply::ConnectionRefused,
            std::io::ErrorKind::NetworkUnreachable => Reply::NetworkUnreachable,
            _ => Reply::HostUnreachable,
        },
        ProxyError::Forbidden(_)
        | ProxyError::Loop
        | ProxyError::ProxyAuthRequired(..)
        | ProxyError::TooManyRequests(_) => Reply::NotAllowed,
        _ => Reply::GeneralFailure,
    }
}
