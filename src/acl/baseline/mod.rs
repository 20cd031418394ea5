//! The access decisions the connection path asks for, in the order it asks them:
//! may this client use the proxy, may it name this host, may CONNECT reach this port,
//! and — after DNS — may the proxy connect to these addresses. Each answer is
//! `Ok(())` or a [`Denial`] that becomes a `403` (RFC 9110 §15.5.4).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use super::dest_list::{DestList, Listed};
use super::host::{Host, canonical_ip, nat64_embedded, normalise};
use super::ports::PortSet;
use crate::error::{REFUSED_ADDRESS, REFUSED_LOCAL_TARGET, Refusal};

/// How logs, metrics and `explain` name the blacklist, the deny rule placed first.
pub const BLACKLIST_RULE: &str = "blacklist (--blacklist)";

/// Everything the access checks need, frozen together so one request sees one version.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    pub rules: DestList,
    /// When false (the default), destinations on loopback, link-local or unspecified
    /// addresses are refused: they reach the proxy host itself or a cloud metadata
    /// service (169.254.169.254), the classic SSRF targets.
    pub allow_local_targets: bool,
    pub connect_ports: PortSet,
    /// Clients allowed to use the proxy; `None` means any.
    pub allow_clients: Option<Vec<IpNet>>,
}

/// Why a request was refused. `Display` is the one-line reason for the `403` body,
/// lower-case and without a final period so it fits `Forbidden: {reason}.`;
/// [`Denial::brief`] is the label for logs and statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The client address is outside `--allow-clients`.
    ClientNotAllowed(IpAddr),
    /// The host name matches a name rule: the entry, when it came from a file.
    BlockedHost(Option<Listed>),
    /// The destination (literal or resolved) lies in a CIDR rule: the entry, when it
    /// came from a file.
    BlockedAddress(IpAddr, Option<Listed>),
    /// The destination is loopback, link-local or unspecified.
    LocalTarget(IpAddr),
    /// CONNECT to a port outside `--connect-ports`.
    ConnectPort(u16),
}

impl Denial {
    pub fn brief(&self) -> &'static str {
        match self {
            Denial::ClientNotAllowed(_) => "client-not-allowed",
            Denial::BlockedHost(_) => "blocked-host",
            Denial::BlockedAddress(..) => REFUSED_ADDRESS,
            Denial::LocalTarget(_) => REFUSED_LOCAL_TARGET,
            Denial::ConnectPort(_) => "connect-port",
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::ClientNotAllowed(_) => {
                f.write_str("your address is not allowed to use this proxy")
            }
            // The entry is the operator's own words, as a rule's name is: it tells the
            // client what to ask about, and the operator which line to look at.
            Denial::BlockedHost(Some(listed)) | Denial::BlockedAddress(_, Some(listed)) => {
                write!(f, "this destination is blocked by {listed}")
            }
            Denial::BlockedHost(None) | Denial::BlockedAddress(_, None) => {
                f.write_str("this destination is blocked by the proxy's access list")
            }
            Denial::LocalTarget(_) => f.write_str(
                "this destination is a loopback, link-local or unspecified address; \
                 the proxy refuses those unless started with --allow-local-targets",
            ),
            Denial::ConnectPort(port) => write!(
                f,
                "CONNECT to port {port} is not allowed; the allowed ports are set with --connect-ports"
            ),
        }
    }
}

impl std::error::Error for Denial {}

impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Refusal {
        // The blacklist is a deny rule placed before the policy's rules; the other
        // denials are the safe defaults, which are no rule.
        // The entry goes in the reason, not in the rule's name: statistics and metrics
        // count per rule, and one series per list entry would grow with the list.
        let rule = matches!(denial, Denial::BlockedHost(_) | Denial::BlockedAddress(..))
            .then(|| Arc::from(BLACKLIST_RULE));
        Refusal {
            brief: denial.brief(),
            reason: denial.to_string(),
            rule,
        }
    }
}

impl Baseline {
    /// A policy with the given rules and every other setting at its safe default.
    pub fn with_rules(rules: DestList) -> Baseline {
        Baseline {
            rules,
            ..Baseline::default()
        }
    }

    pub fn check_client(&self, client: IpAddr) -> Result<(), Denial> {
        let Some(allowed) = &self.allow_clients else {
            return Ok(());
        };
        // A dual-stack listener reports IPv4 clients as `::ffff:a.b.c.d`.
        let client = canonical_ip(client);
        if allowed.iter().any(|net| net.contains(&client)) {
            Ok(())
        } else {
            Err(Denial::ClientNotAllowed(client))
        }
    }

    /// The request target's host as the client wrote it (any case, trailing dot,
    /// `:port`, `[v6]`). Names meet the name rules; address literals meet the
    /// address checks right away. Names that resolve to blocked addresses are caught
    /// later by [`Baseline::check_addrs`].
    pub fn check_host(&self, host: &str) -> Result<(), Denial> {
        self.check_normalised(&normalise(host))
    }

    /// [`Baseline::check_host`] for a host already through [`normalise`].
    pub fn check_normalised(&self, host: &Host<'_>) -> Result<(), Denial> {
        match host {
            Host::Ip(ip) => self.check_addr(*ip),
            Host::Name(name) if self.rules.blocks_name(name) => Err(self.blocked_host(name)),
            Host::Name(_) => Ok(()),
        }
    }

    pub fn check_connect_port(&self, port: u16) -> Result<(), Denial> {
        if self.connect_ports.contains(port) {
            Ok(())
        } else {
            Err(Denial::ConnectPort(port))
        }
    }

    /// Every address the destination resolved to. One bad address refuses the lot:
    /// the proxy must connect only to addresses it checked, and a name with one
    /// internal address among public ones is exactly what a rebinding attack looks like.
    pub fn check_addrs(&self, addrs: &[SocketAddr]) -> Result<(), Denial> {
        addrs.iter().try_for_each(|a| self.check_addr(a.ip()))
    }

    /// One destination address against the CIDR rules and the local-target rule. A
    /// NAT64 address meets the rules for the IPv4 address it embeds as well.
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), Denial> {
        let ip = canonical_ip(ip);
        let embedded = nat64_embedded(ip).map(IpAddr::V4);
        if self.rules.blocks_addr(ip) {
            return Err(self.blocked_address(ip, ip));
        }
        if let Some(v4) = embedded.filter(|&v4| self.rules.blocks_addr(v4)) {
            return Err(self.blocked_address(ip, v4));
        }
        if !self.allow_local_targets && is_local(ip) {
            return Err(Denial::LocalTarget(ip));
        }
        Ok(())
    }
}

impl Baseline {
    /// The refusal of a listed name, naming its entry. Out of line: the entry is looked
    /// up again only for a refusal, and the checks' hot path (a miss) stays small.
    #[cold]
    #[inline(never)]
    fn blocked_host(&self, name: &str) -> Denial {
        Denial::BlockedHost(self.rules.listed_name(name))
    }

    /// The refusal of `ip`, whose address `listed` (itself, or the IPv4 address a NAT64
    /// address embeds) lies in a listed network.
    #[cold]
    #[inline(never)]
    fn blocked_address(&self, ip: IpAddr, listed: IpAddr) -> Denial {
        Denial::BlockedAddress(ip, self.rules.listed_addr(listed))
    }
}

/// Loopback (`127.0.0.0/8`, `::1`), link-local (`169.254.0.0/16`, `fe80::/10`) and
/// unspecified addresses. All of `0.0.0.0/8` counts: RFC 1122 §3.2.1.3 reserves it
/// for "this host on this network", and Linux connects `0.0.0.0` to the local host.
/// IPv4-mapped addresses and NAT64 ones (`64:ff9b::/96`) count as the IPv4 address
/// they carry: `64:ff9b::7f00:1` is 127.0.0.1 on the other side of the translator.
pub fn is_local(ip: IpAddr) -> bool {
    let ip = canonical_ip(ip);
    let ip = nat64_embedded(ip).map_or(ip, IpAddr::V4);
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.octets()[0] == 0,
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// One `--allow-clients` element: a CIDR network or a bare address (one host).
pub fn parse_client_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(canonical_ip(ip)));
    }
    text.parse::<IpNet>()
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is neither an address nor a CIDR network"))
}

#[cfg(test)]
mod tests;
