//! Parent proxies: what one is (its URL read into a [`Parent`]: kind, address, its own
//! credentials, the roots its TLS certificate is checked against) and how a connection is
//! opened through it — TCP to the parent, TLS for an `https://` parent, then, for a
//! tunnel through an HTTP(S) parent, `CONNECT` ([`http`]), and for a SOCKS5 parent the
//! SOCKS handshake ([`socks`]). Plain requests through an HTTP(S) parent need no
//! handshake: the forwarder writes them in absolute form with [`Parent::authorization`].
//!
//! A failure is one of two kinds ([`Failure`]): the parent could not be reached (refused,
//! reset, timed out — the route fails over to its next hop and the parent is backed off)
//! or it answered no (a 407 for our credentials, a refused SOCKS request — an operator's
//! or the target's problem, answered `502` naming the parent, no failover).

mod http;
mod socks;
mod url;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use super::stream::UpstreamStream;
use super::{Connector, Resolver};
use crate::error::ProxyError;
use crate::target::Target;
pub use url::{ParentKind, parse_url};

/// One parent proxy, as the settings name it.
pub struct Parent {
    /// How logs, metrics and error answers name it.
    pub name: Arc<str>,
    pub kind: ParentKind,
    pub host: String,
    pub port: u16,
    /// The parent's own user name and password (never the client's).
    credentials: Option<(String, String)>,
    /// `Basic …` for `Proxy-Authorization` to an HTTP(S) parent.
    authorization: Option<Arc<str>>,
    /// For an `https://` parent: the client configuration (its roots) and the name its
    /// certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl fmt::Debug for Parent {
    /// Never the password: settings are logged and compared by their debug form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parent")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

/// Why a connection through a parent was not made.
#[derive(Debug)]
pub enum Failure {
    /// Refused, reset or timed out: the parent is down for now; try the next hop.
    Down(String),
    /// The parent answered, and said no (its reason, for the client's 502).
    Refused(String),
}

impl Parent {
    /// A parent from its URL (`http://`, `https://`, `socks5://`, `socks5h://`, optional
    /// `user:pass@`, an explicit port). `tls` is the client configuration for an
    /// `https://` parent (its roots: a `ca_file` or the system's).
    pub fn new(
        name: Arc<str>,
        url: &str,
        tls: impl FnOnce() -> Result<Arc<ClientConfig>, String>,
    ) -> Result<Parent, String> {
        let parsed = parse_url(url)?;
        let tls = match parsed.kind {
            ParentKind::Https => {
                let server = ServerName::try_from(parsed.host.clone())
                    .map_err(|_| format!("{:?} is not a valid TLS server name", parsed.host))?;
                Some((TlsConnector::from(tls()?), server))
            }
            _ => None,
        };
        let authorization = parsed.credentials.as_ref().map(|(user, pass)| {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            Arc::from(format!("Basic {token}"))
        });
        Ok(Parent {
            name,
            kind: parsed.kind,
            host: parsed.host,
            port: parsed.port,
            credentials: parsed.credentials,
            authorization,
            tls,
        })
    }

    /// The `Proxy-Authorization` value for requests through this (HTTP or HTTPS) parent.
    pub fn authorization(&self) -> Option<&Arc<str>> {
        self.authorization.as_ref()
    }

    /// Whether plain requests go to this parent in absolute form (HTTP and HTTPS parents);
    /// through a SOCKS5 parent they go as to an origin, over a SOCKS CONNECT.
    pub fn speaks_http(&self) -> bool {
        matches!(self.kind, ParentKind::Http | ParentKind::Https)
    }

    /// Whether the proxy resolves the target's name itself before asking the parent
    /// (`socks5://`): then the resolved addresses are checked like a direct route's.
    pub fn resolves_locally(&self) -> bool {
        self.kind == ParentKind::Socks5
    }

    /// A connection through this parent: to the parent itself for a plain request
    /// through an HTTP(S) parent (`target` `None`), else a tunnel to `target`, reached
    /// at `address` when the proxy resolved it (`socks5://`). The parent's name goes
    /// through `resolver`, its addresses through `connector` (Happy Eyeballs, the
    /// outgoing address); all within the connector's timeout.
    pub async fn open(
        &self,
        target: Option<&Target<'_>>,
        address: Option<SocketAddr>,
        resolver: &Resolver,
        connector: &Connector,
    ) -> Result<(UpstreamStream, SocketAddr), Failure> {
        let limit = connector.timeout();
        let attempt = async {
            let (stream, peer) = self.connect(resolver, connector).await?;
            let mut stream = match &self.tls {
                None => UpstreamStream::Tcp(stream),
                Some((connector, server)) => {
                    let session = connector
                        .connect(server.clone(), stream)
                        .await
                        .map_err(|e| Failure::Down(format!("TLS handshake failed: {e}")))?;
                    UpstreamStream::Tls(Box::new(session))
                }
            };
            match (target, self.kind) {
                (None, _) => {}
                (Some(target), ParentKind::Http | ParentKind::Https) => {
                    http::connect(&mut stream, target, self.authorization()).await?
                }
                (Some(target), ParentKind::Socks5 | ParentKind::Socks5h) => {
                    let credentials = self.credentials.as_ref();
                    let credentials = credentials.map(|(u, p)| (u.as_str(), p.as_str()));
                    socks::connect(&mut stream, target, address, credentials).await?
                }
            }
            Ok((stream, peer))
        };
        tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_| Err(Failure::Down("timed out".into())))
    }

    /// TCP to the parent: its name resolved (operators name their parents; the access
    /// policy's destination rules are for clients' targets), then Happy Eyeballs across
    /// its addresses.
    async fn connect(
        &self,
        resolver: &Resolver,
        connector: &Connector,
    ) -> Result<(TcpStream, SocketAddr), Failure> {
        let addrs = resolver
            .resolve(&self.host, self.port)
            .await
            .map_err(|e| Failure::Down(e.to_string()))?;
        connector
            .connect(&addrs)
            .await
            .map_err(|error| match error {
                ProxyError::Connect { source, .. } => {
                    Failure::Down(format!("cannot connect: {source}"))
                }
                other => Failure::Down(other.to_string()),
            })
    }
}
