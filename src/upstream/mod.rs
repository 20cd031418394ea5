//! Reaching what a client asked for: the one dialer every front end uses, for tunnels and
//! for forwarded requests alike. It picks the route, takes a pooled connection when the
//! caller may reuse one, or resolves the target, checks every address (the access
//! policy's address rules, the rest of a rule evaluation that admission left to the
//! addresses — an [`AddressCheck`] —, and this proxy's own listening sockets, the
//! metrics listener's included, however the address is spelled: a forwarding loop,
//! `loops`),
//! connects with a deadline to the checked addresses only (Happy Eyeballs across them,
//! from the outgoing address: `connect`) — no second lookup can swap
//! them (RFC 9110 §17.1 aside) — and returns the stream with the [`Link`] it took. A
//! connection goes back to the pool ([`Dialer::release`]) keyed by its route.
//!
//! A [`Route`] is how a connection reaches its target: directly, or through a parent
//! proxy (`parent/` opens connections through one, `route` picks the hops and keeps the
//! parents' failover state, `through` walks the hops; docs/egress.md).

mod connect;
mod literal;
mod loops;
mod parent;
mod pool;
mod resolve;
mod route;
mod stream;
mod through;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::access::{AUTH_MISSING, AccessControl};
use crate::acl::{AddressCheck, Verdict, refusal};
use crate::client::ClientStream;
use crate::error::ProxyError;
use crate::http::rewrite::RequestForm;
use crate::target::Target;
pub use connect::Connector;
use loops::OwnSockets;
pub use parent::{Parent, parse_url as parse_parent_url};
use pool::{OriginRef, Pool, PoolKey};
pub use resolve::{DEFAULT_DNS_TIMEOUT_SECS, Resolver, ResolverSettings};
pub use route::{DEFAULT_PARENT_BACKOFF_SECS, EgressSettings, Hop, RouteRule, Routes};
pub use stream::UpstreamStream;

/// How a connection reaches its target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Straight to the origin's address.
    Direct,
    /// Through the parent proxy of this name.
    Parent(Arc<str>),
}

impl Route {
    /// How the access log names the route (Squid's hierarchy codes).
    pub fn squid_code(&self) -> &'static str {
        match self {
            Route::Direct => "HIER_DIRECT",
            Route::Parent(_) => "FIRSTUP_PARENT",
        }
    }

    /// The parent's name, for a route through one.
    pub fn parent(&self) -> Option<&Arc<str>> {
        match self {
            Route::Direct => None,
            Route::Parent(name) => Some(name),
        }
    }
}

/// Whether [`Dialer::dial`] may hand out a pooled connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// A pooled connection if one is idle, else a fresh one.
    Pooled,
    /// Always a fresh connection (a retry after a pooled one failed, a tunnel).
    Fresh,
}

/// A connection to a target: the stream and how it got there.
#[derive(Debug)]
pub struct Upstream {
    pub stream: UpstreamStream,
    pub link: Link,
}

/// How an upstream connection was made: the address connected to, the route, whether it
/// came from the pool, and the pool key it goes back under (none for tunnels).
#[derive(Debug)]
pub struct Link {
    pub peer: SocketAddr,
    pub route: Route,
    pub reused: bool,
    /// The policy rule that allowed the connection, when the dialer settled an
    /// [`AddressCheck`].
    pub settled: Option<Settled>,
    key: Option<PoolKey>,
    /// How a forwarded request's head is written on this connection: in origin form,
    /// or in absolute form with the parent's credentials.
    pub form: RequestForm,
}

/// An allowing verdict the dialer reached with the destination's addresses.
#[derive(Debug, Clone)]
pub struct Settled {
    pub rule: Option<Arc<str>>,
}

/// Opens connections to targets. One per server, shared by every connection task.
pub struct Dialer {
    pool: Pool,
    access: AccessControl,
    /// This proxy's listening sockets: a destination that is one of them is a loop.
    listening: OwnSockets,
    resolver: Resolver,
    connector: Connector,
    routes: Routes,
}

impl Dialer {
    /// `listening`: every socket this process listens on, as bound (the proxy's
    /// listeners and the metrics listener).
    pub fn new(
        access: AccessControl,
        listening: Vec<SocketAddr>,
        resolver: Resolver,
        connector: Connector,
    ) -> Dialer {
        Dialer {
            pool: Pool::default(),
            access,
            listening: OwnSockets::new(listening),
            resolver,
            connector,
            routes: Routes::new(EgressSettings::default(), &crate::stats::Stats::default()),
        }
    }

    /// The same dialer, leaving by `routes` (parent proxies) where they say.
    pub fn with_routes(mut self, routes: Routes) -> Dialer {
        self.routes = routes;
        self
    }

    /// A connection to `target` for `client`'s request. Tunnels are never pooled.
    /// `addresses`: the rest of the admission decision, settled here with the addresses
    /// this dial checks and connects to (a refusal is a 403 or 407 like admission's).
    pub async fn dial(
        &self,
        target: &Target<'_>,
        client: &ClientStream,
        reuse: Reuse,
        addresses: Option<&AddressCheck>,
    ) -> Result<Upstream, ProxyError> {
        if let Some(upstream) = self
            .through_parents(target, client, reuse, addresses)
            .await?
        {
            return Ok(upstream);
        }
        let route = Route::Direct;
        let origin = (!target.is_tunnel()).then_some(OriginRef {
            route: &route,
            host: target.host,
            port: target.port,
        });
        if let (Some(origin), Reuse::Pooled) = (&origin, reuse)
            && let Some(pooled) = self.take_checked(origin, client)
        {
            let mut pooled = pooled;
            pooled.link.settled = settle(addresses, &[pooled.link.peer])?;
            return Ok(pooled);
        }
        let key = origin.map(OriginRef::to_key);
        let addrs = self.resolve_checked(target, client).await?;
        let settled = settle(addresses, &addrs)?;
        let (stream, peer) = self.connector.connect(&addrs).await?;
        Ok(Upstream {
            stream: UpstreamStream::Tcp(stream),
            link: Link {
                peer,
                route,
                reused: false,
                settled,
                key,
                form: RequestForm::Origin,
            },
        })
    }

    /// Settles an admission's [`AddressCheck`] without connecting (a cache hit for a
    /// request whose rules depend on the destination's addresses).
    pub async fn settle_only(
        &self,
        target: &Target<'_>,
        client: &ClientStream,
        addresses: &AddressCheck,
    ) -> Result<Option<Settled>, ProxyError> {
        let addrs = self.resolve_checked(target, client).await?;
        settle(Some(addresses), &addrs)
    }

    async fn resolve_checked(
        &self,
        target: &Target<'_>,
        client: &ClientStream,
    ) -> Result<Vec<SocketAddr>, ProxyError> {
        let addrs = self.resolver.resolve(target.host, target.port).await?;
        self.check(&addrs, client)?;
        Ok(addrs)
    }

    /// A pooled connection for `origin` whose address the current rules still allow: it
    /// was checked when it was opened, but the rules may have changed since (SIGHUP).
    fn take_checked(&self, origin: &OriginRef<'_>, client: &ClientStream) -> Option<Upstream> {
        let (stream, peer, key) = self.pool.take(origin)?;
        self.check(&[peer], client).ok()?;
        Some(Upstream {
            stream,
            link: Link {
                peer,
                route: key.route.clone(),
                reused: true,
                settled: None,
                key: Some(key),
                form: RequestForm::Origin,
            },
        })
    }

    /// Keeps a connection whose last exchange ended cleanly, for the next request to the
    /// same target by the same route.
    pub fn release(&self, stream: UpstreamStream, link: Link) {
        if let Some(key) = link.key {
            self.pool.put(key, stream, link.peer);
        }
    }

    /// Refuses destinations that are this proxy itself (a forwarding loop, 508: see
    /// `loops`), then those the policy's address rules refuse (403).
    fn check(&self, addrs: &[SocketAddr], client: &ClientStream) -> Result<(), ProxyError> {
        let arrived_on = || client.local_addr().ok().map(|local| local.ip());
        if addrs
            .iter()
            .any(|&addr| self.listening.contains(addr, arrived_on))
        {
            return Err(ProxyError::Loop);
        }
        self.access
            .baseline()
            .check_addrs(addrs)
            .map_err(|denial| ProxyError::Forbidden(denial.into()))
    }
}

/// The verdict of `check` (if any) on the addresses about to be connected to.
fn settle(
    check: Option<&AddressCheck>,
    addrs: &[SocketAddr],
) -> Result<Option<Settled>, ProxyError> {
    let Some(check) = check else {
        return Ok(None);
    };
    match check.settle(addrs) {
        Verdict::Allow { rule, .. } => Ok(Some(Settled { rule })),
        Verdict::Deny { rule } => Err(ProxyError::Forbidden(refusal(rule))),
        Verdict::AuthRequired { rule } => Err(ProxyError::ProxyAuthRequired(AUTH_MISSING, rule)),
    }
}
