//! The resolver's and the outgoing connections' flags (`upstream::ResolverSettings`, the
//! outgoing address): kept apart from the other flags so egress settings grow here.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueHint;

use crate::upstream::{DEFAULT_DNS_TIMEOUT_SECS, ResolverSettings};

/// Port 53 unless the address says otherwise.
const DNS_PORT: u16 = 53;

/// Name resolution and the local end of outgoing connections.
#[derive(clap::Args, Debug, Clone)]
pub struct ResolverFlags {
    /// Ask this DNS server (`IP` or `IP:PORT`, port 53 by default) instead of those in
    /// /etc/resolv.conf, whose search list is then not used either; repeat the flag, or
    /// separate with commas, for several, asked in order [default: /etc/resolv.conf]
    #[arg(long = "dns-server", value_name = "IP[:PORT]", value_delimiter = ',',
          value_parser = dns_server)]
    pub dns_server: Vec<SocketAddr>,

    /// Seconds one name lookup may take, across servers and retries (then `502`)
    #[arg(long = "dns-timeout", value_name = "SECS", default_value_t = DEFAULT_DNS_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    pub dns_timeout: u64,

    /// Read names and addresses from this hosts file instead of /etc/hosts; read at start
    /// [default: /etc/hosts]
    #[arg(long = "hosts-file", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub hosts_file: Option<PathBuf>,

    /// Open connections to origins from this local address; only destination addresses
    /// of its family (IPv4 or IPv6) are then tried [default: none]
    #[arg(long = "outgoing-address", value_name = "IP")]
    pub outgoing_address: Option<IpAddr>,
}

impl ResolverFlags {
    pub fn settings(&self) -> ResolverSettings {
        ResolverSettings {
            servers: self.dns_server.clone(),
            hosts_file: self.hosts_file.clone(),
            timeout: Duration::from_secs(self.dns_timeout),
        }
    }
}

fn dns_server(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, DNS_PORT)))
        .map_err(|_| "expected an IP address, with an optional port: 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_server_port_defaults_to_53() {
        assert_eq!(dns_server("192.0.2.1"), Ok("192.0.2.1:53".parse().unwrap()));
        assert_eq!(dns_server("::1"), Ok("[::1]:53".parse().unwrap()));
        assert_eq!(dns_server("[::1]:5353"), Ok("[::1]:5353".parse().unwrap()));
        assert!(dns_server("dns.example").is_err());
    }
}
