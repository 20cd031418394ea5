//! Whether a destination is this proxy itself: one of its own listening sockets (every
//! proxy listener and the metrics listener), however the destination's address is
//! spelled. A connection there is a forwarding loop (508): each pass through holds
//! another connection slot, so one client nesting CONNECTs to us fills
//! `--max-connections`; and the metrics listener would hand out `/stats/top`, every
//! user's destinations, to anyone who may use the proxy.
//!
//! A destination address is first turned into the address a connection to it reaches
//! ([`reached`]): an IPv4-mapped IPv6 address is its IPv4 address; a NAT64 address
//! (`64:ff9b::/96`) is the IPv4 address it embeds; `0.0.0.0` is `127.0.0.1` and `::` is
//! `::1`, as Linux connects them. Then it is ours when it has the port of one of our
//! sockets and that socket's address, or — for a socket bound to a wildcard — any
//! address of this host: loopback, the address the client reached us on, or any
//! address the kernel lets us bind (so every interface's, found without listing them).
//! Only destinations with one of our ports get that far, so the common request costs no
//! system call.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::acl::{canonical_ip, nat64_embedded};

/// This proxy's own listening sockets.
#[derive(Debug, Clone, Default)]
pub struct OwnSockets {
    /// Each socket's bound address, its IP in canonical form.
    sockets: Vec<SocketAddr>,
}

impl OwnSockets {
    /// The sockets bound at `addrs` (as bound: no port 0).
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> OwnSockets {
        let sockets = addrs
            .into_iter()
            .map(|addr| SocketAddr::new(canonical_ip(addr.ip()), addr.port()))
            .collect();
        OwnSockets { sockets }
    }

    /// Whether a connection to `destination` would reach one of our sockets.
    /// `arrived_on`: the local address the client's connection reached us on, when known
    /// (an address of this host for certain, so it spares a bind); asked only when a
    /// wildcard socket has the destination's port.
    pub fn contains(
        &self,
        destination: SocketAddr,
        arrived_on: impl Fn() -> Option<IpAddr>,
    ) -> bool {
        self.contains_with(destination, |ip| {
            ip.is_loopback() || Some(ip) == arrived_on().map(canonical_ip) || bindable(ip)
        })
    }

    /// [`OwnSockets::contains`] with `is_host_address` saying which addresses are this
    /// host's.
    fn contains_with(
        &self,
        destination: SocketAddr,
        is_host_address: impl Fn(IpAddr) -> bool,
    ) -> bool {
        let mut same_port = self
            .sockets
            .iter()
            .filter(|socket| socket.port() == destination.port())
            .peekable();
        if same_port.peek().is_none() {
            return false;
        }
        let reached = reached(destination.ip());
        same_port.any(|socket| match socket.ip() {
            // A wildcard IPv4 socket takes IPv4 connections to any address of the host; a
            // wildcard IPv6 one takes both families (dual-stack, as the listeners bind).
            IpAddr::V4(Ipv4Addr::UNSPECIFIED) => reached.is_ipv4() && is_host_address(reached),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED) => is_host_address(reached),
            bound => bound == reached,
        })
    }
}

/// The address a connection to `ip` reaches, in canonical form.
fn reached(ip: IpAddr) -> IpAddr {
    let ip = canonical_ip(ip);
    match nat64_embedded(ip).map_or(ip, IpAddr::V4) {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// Whether `ip` is an address of this host: the kernel binds only those (EADDRNOTAVAIL
/// otherwise). A host with `ip_nonlocal_bind` set binds any address, which errs on the
/// safe side: a destination with one of our ports is then always refused.
fn bindable(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// Loopback and 192.0.2.7 are this host's addresses here.
    fn ours(sockets: &OwnSockets, destination: &str) -> bool {
        sockets.contains_with(addr(destination), |ip| {
            ip.is_loopback() || ip == IpAddr::from([192, 0, 2, 7])
        })
    }

    #[test]
    fn every_spelling_of_a_loopback_listener_is_ours() {
        let sockets = OwnSockets::new([addr("127.0.0.1:8888"), addr("127.0.0.1:9090")]);
        for destination in [
            "127.0.0.1:8888",
            "0.0.0.0:8888",
            "[::ffff:127.0.0.1]:8888",
            "[::ffff:0.0.0.0]:8888",
            "[64:ff9b::7f00:1]:8888",
            "[64:ff9b::]:8888",
            "127.0.0.1:9090",
            "0.0.0.0:9090",
        ] {
            assert!(ours(&sockets, destination), "{destination}");
        }
        for destination in [
            "127.0.0.1:8889",
            "127.0.0.2:8888",
            "[::1]:8888",
            "[::]:8888",
            "192.0.2.7:8888",
            "[64:ff9b::7f00:2]:8888",
        ] {
            assert!(!ours(&sockets, destination), "{destination}");
        }
    }

    #[test]
    fn a_wildcard_listener_is_every_address_of_this_host() {
        let v4 = OwnSockets::new([addr("0.0.0.0:8888")]);
        for destination in ["127.0.0.5:8888", "192.0.2.7:8888", "0.0.0.0:8888"] {
            assert!(ours(&v4, destination), "{destination}");
        }
        for destination in ["192.0.2.8:8888", "[::1]:8888", "[::]:8888", "192.0.2.7:80"] {
            assert!(!ours(&v4, destination), "{destination}");
        }
        let dual = OwnSockets::new([addr("[::]:8888")]);
        for destination in [
            "[::1]:8888",
            "[::]:8888",
            "127.0.0.1:8888",
            "192.0.2.7:8888",
        ] {
            assert!(ours(&dual, destination), "{destination}");
        }
        assert!(!ours(&dual, "[2001:db8::1]:8888"));
    }

    #[test]
    fn the_kernel_says_which_addresses_are_this_hosts() {
        let sockets = OwnSockets::new([addr("0.0.0.0:8888")]);
        assert!(sockets.contains(addr("127.0.0.1:8888"), || None));
        // TEST-NET-1 is nobody's address.
        assert!(!sockets.contains(addr("192.0.2.1:8888"), || None));
        let arrived_on = || Some([192, 0, 2, 1].into());
        assert!(sockets.contains(addr("192.0.2.1:8888"), arrived_on));
    }
}
