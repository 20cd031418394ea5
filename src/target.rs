//! What a client asked to reach, in the terms every front end shares: a host (a name or
//! an address literal, as the client wrote it), a port, and the kind of exchange. Each
//! front end builds one from its own protocol (an HTTP request line, later a SOCKS5
//! request); admission decides on it, the dialer connects to it, and the exchange record
//! starts from it. Borrowed from the front end's request, so building one allocates
//! nothing. A leaf: it knows no protocol.

use std::fmt;

/// The kind of exchange, as admission and the record see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plain HTTP request the proxy forwards and can read (and cache).
    Http,
    /// A tunnel: bytes relayed blindly once the connection is open (HTTP CONNECT).
    Connect,
    /// An HTTP request asking to switch protocols (WebSocket and the like): forwarded
    /// like [`Kind::Http`], and a relay if the origin agrees.
    Upgrade,
}

/// A destination: `host` and `port`, and what the client means to do there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub kind: Kind,
}

impl<'a> Target<'a> {
    pub fn new(host: &'a str, port: u16, kind: Kind) -> Target<'a> {
        Target { host, port, kind }
    }

    /// Whether the exchange is a blind relay from the start.
    pub fn is_tunnel(&self) -> bool {
        self.kind == Kind::Connect
    }

    /// `host:port`, the [`Display`](fmt::Display) form, built by hand: every exchange's
    /// record makes one, and `format!` machinery cost S1 more than the copying.
    pub fn authority(&self) -> String {
        let mut out = String::with_capacity(self.host.len() + 8);
        let literal = self.host.contains(':');
        if literal {
            out.push('[');
        }
        out.push_str(self.host);
        if literal {
            out.push(']');
        }
        out.push(':');
        out.push_str(itoa::Buffer::new().format(self.port));
        out
    }
}

/// `host:port`, with an IPv6 literal in brackets: how logs show a tunnel's target.
impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_as_authority() {
        assert_eq!(
            Target::new("example.com", 443, Kind::Connect).to_string(),
            "example.com:443"
        );
        assert_eq!(Target::new("::1", 80, Kind::Http).to_string(), "[::1]:80");
        assert!(Target::new("a", 1, Kind::Connect).is_tunnel());
        assert!(!Target::new("a", 1, Kind::Upgrade).is_tunnel());
    }
}
