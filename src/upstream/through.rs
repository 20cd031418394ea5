//! The dialer's way through parent proxies: the hops of the target's route in order,
//! skipping parents that are backed off, failing over to the next hop when a parent
//! cannot be reached, and `502` naming them all when none could. A direct hop hands back
//! to the dialer's direct path. Keep-alive connections to an HTTP(S) parent are pooled
//! under the parent alone (any target can follow on them: requests go in absolute form);
//! those through a SOCKS5 parent under the parent and the target.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::parent::Failure;
use super::pool::OriginRef;
use super::route::Hop;
use super::{Arrival, Dialer, Link, Reuse, Route, Upstream, settle};
use crate::acl::AddressCheck;
use crate::error::ProxyError;
use crate::http::rewrite::RequestForm;
use crate::target::Target;

/// Why one parent hop did not give a connection.
enum HopError {
    /// The parent is unreachable: next hop.
    Down(String),
    /// An answer for the client (the parent refused, the target is forbidden…).
    Answer(ProxyError),
}

impl From<ProxyError> for HopError {
    fn from(error: ProxyError) -> HopError {
        HopError::Answer(error)
    }
}

impl Dialer {
    /// A connection by the target's route, or `None` when the route says direct (then
    /// the caller dials directly).
    pub(super) async fn through_parents(
        &self,
        target: &Target<'_>,
        client: &dyn Arrival,
        reuse: Reuse,
        addresses: Option<&AddressCheck>,
    ) -> Result<Option<Upstream>, ProxyError> {
        if self.routes.all_direct() {
            return Ok(None);
        }
        let now = Instant::now();
        let mut unreachable = Vec::new();
        for hop in self.routes.hops(target.host) {
            let index = match *hop {
                Hop::Direct => return Ok(None),
                Hop::Parent(index) => index,
            };
            let name = &self.routes.parent(index).name;
            if self.routes.is_down(index, now) {
                unreachable.push(name.to_string());
                continue;
            }
            match self
                .via_parent(index, target, client, reuse, addresses)
                .await
            {
                Ok(upstream) => {
                    self.routes.succeeded(index);
                    return Ok(Some(upstream));
                }
                Err(HopError::Down(reason)) => {
                    self.routes.failed(index, &reason);
                    unreachable.push(name.to_string());
                }
                Err(HopError::Answer(error)) => return Err(error),
            }
        }
        Err(ProxyError::ParentsDown(unreachable.join(", ")))
    }

    /// A connection through parent `index`. The target's addresses are checked (and an
    /// admission's [`AddressCheck`] settled) when this proxy knows them: an address
    /// literal, or a name it resolves itself for a `socks5://` parent. A name the parent
    /// resolves is settled with no addresses: network rules cannot match it.
    async fn via_parent(
        &self,
        index: usize,
        target: &Target<'_>,
        client: &dyn Arrival,
        reuse: Reuse,
        addresses: Option<&AddressCheck>,
    ) -> Result<Upstream, HopError> {
        let parent = self.routes.parent(index);
        let route = Route::Parent(parent.name.clone());
        let literal = target.host.parse::<IpAddr>().is_ok();
        let addrs: Vec<SocketAddr> = if literal || parent.resolves_locally() {
            self.resolve_checked(target, client).await?
        } else {
            Vec::new()
        };
        let settled = settle(addresses, &addrs)?;
        let absolute = parent.speaks_http() && !target.is_tunnel();
        let form = match absolute {
            true => RequestForm::Absolute {
                authorization: parent.authorization().cloned(),
            },
            false => RequestForm::Origin,
        };
        let origin = (!target.is_tunnel()).then_some(OriginRef {
            route: &route,
            host: if absolute { "" } else { target.host },
            port: if absolute { 0 } else { target.port },
        });
        let link = |peer, reused, key| Link {
            peer,
            route: route.clone(),
            reused,
            settled: settled.clone(),
            key,
            form: form.clone(),
        };
        if let (Some(origin), Reuse::Pooled) = (&origin, reuse)
            && let Some((stream, peer, key)) = self.pool.take(origin)
        {
            let link = link(peer, true, Some(key));
            return Ok(Upstream { stream, link });
        }
        let key = origin.map(OriginRef::to_key);
        let tunnel_to = (!absolute).then_some(target);
        let address = parent
            .resolves_locally()
            .then(|| addrs.first().copied())
            .flatten();
        match parent
            .open(tunnel_to, address, &self.resolver, &self.connector)
            .await
        {
            Ok((stream, peer)) => Ok(Upstream {
                stream,
                link: link(peer, false, key),
            }),
            Err(Failure::Down(reason)) => Err(HopError::Down(reason)),
            Err(Failure::Refused(reason)) => {
                tracing::warn!(parent = %parent.name, %target, reason, "parent proxy refused");
                Err(HopError::Answer(ProxyError::Parent {
                    parent: parent.name.clone(),
                    reason,
                }))
            }
        }
    }
}
