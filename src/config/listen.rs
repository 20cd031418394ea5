//! The listeners one process serves: an address, the protocol spoken there (HTTP proxy or
//! SOCKS5), whether it speaks TLS, and which sources must open with a PROXY-protocol
//! header. The command line fills a list of them (the main listener from `--host`,
//! `--port`, `--tls-cert`/`--tls-key`, `--proxy-protocol-from`; `--socks` adds one), the
//! configuration file's `[[listen]]` tables (`file::listen`) add theirs after those, and
//! [`Listener::check`] states the rules both sources share.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::tls::TlsFiles;

/// The protocol a listener speaks to its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// An HTTP/1.1 forward proxy (absolute-form requests and CONNECT), plus the PAC file.
    Http,
    /// SOCKS5 (RFC 1928) with CONNECT only.
    Socks5,
}

impl Protocol {
    /// How logs name it.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Socks5 => "socks5",
        }
    }
}

/// One listening socket and how to serve what arrives on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The address to bind; once bound, the address actually bound (port 0 resolved).
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// `Some`: clients speak TLS to the proxy (an HTTPS proxy).
    pub tls: Option<TlsFiles>,
    /// Sources that must open with a PROXY-protocol header (v1 or v2) whose address then
    /// stands for the client's; empty: no source may send one.
    pub proxy_protocol_from: Vec<IpNet>,
}

impl Listener {
    /// A plain HTTP proxy listener on `addr`.
    pub fn http(addr: SocketAddr) -> Listener {
        Listener {
            addr,
            protocol: Protocol::Http,
            tls: None,
            proxy_protocol_from: Vec::new(),
        }
    }

    /// A SOCKS5 listener on `addr`.
    pub fn socks5(addr: SocketAddr) -> Listener {
        Listener {
            protocol: Protocol::Socks5,
            ..Listener::http(addr)
        }
    }

    /// Whether a connection from `source` must open with a PROXY-protocol header.
    pub fn expects_proxy_header(&self, source: IpAddr) -> bool {
        let source = crate::acl::canonical_ip(source);
        self.proxy_protocol_from
            .iter()
            .any(|net| net.contains(&source))
    }

    /// The rules every source of listeners shares; the reason when one is broken.
    pub fn check(&self) -> Result<(), String> {
        if self.tls.is_some() && self.protocol == Protocol::Socks5 {
            // Clients of SOCKS over TLS are rare and would need their own client
            // settings; nothing asks for it yet.
            return Err(format!("{}: TLS is only for HTTP listeners", self.addr));
        }
        Ok(())
    }
}

/// Checks a list of listeners together: each one's rules, and no address bound twice
/// (port 0 aside, which the system picks anew each time).
pub fn check_listeners(listeners: &[Listener]) -> Result<(), String> {
    if listeners.is_empty() {
        return Err("no listener".into());
    }
    for (i, listener) in listeners.iter().enumerate() {
        listener.check()?;
        let repeated = listeners[..i]
            .iter()
            .any(|other| other.addr == listener.addr && listener.addr.port() != 0);
        if repeated {
            return Err(format!("{}: two listeners on one address", listener.addr));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_sources_match_by_network_including_mapped_addresses() {
        let mut listener = Listener::http("127.0.0.1:0".parse().unwrap());
        assert!(!listener.expects_proxy_header("127.0.0.1".parse().unwrap()));
        listener.proxy_protocol_from = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(listener.expects_proxy_header("10.1.2.3".parse().unwrap()));
        assert!(listener.expects_proxy_header("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!listener.expects_proxy_header("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn a_list_is_checked_as_a_whole() {
        let http = Listener::http("127.0.0.1:3128".parse().unwrap());
        let socks = Listener::socks5("127.0.0.1:1080".parse().unwrap());
        assert!(check_listeners(&[http.clone(), socks.clone()]).is_ok());
        assert!(check_listeners(&[]).is_err());
        assert!(check_listeners(&[http.clone(), http.clone()]).is_err());
        let tls_socks = Listener {
            tls: Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into(),
            }),
            ..socks
        };
        assert!(check_listeners(&[http, tls_socks]).is_err());
    }
}
