//! Request targets (RFC 9112 §3.2): the absolute form a proxy is sent
//! (`http://host:port/path`) and the authority form of CONNECT (`host:port`), read from
//! the head's own bytes, with the host's brackets and the port's defaults settled here.

use bytes::Bytes;

use crate::error::ProxyError;

/// Where a request goes (RFC 9112 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget {
    /// `http://host:port/path?query`: `path` is forwarded byte-exact (at least `/`).
    Absolute {
        host: String,
        port: u16,
        path: Bytes,
    },
    /// `host:port`, for CONNECT.
    Authority { host: String, port: u16 },
}

impl RequestTarget {
    pub fn host(&self) -> &str {
        match self {
            RequestTarget::Absolute { host, .. } | RequestTarget::Authority { host, .. } => host,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            RequestTarget::Absolute { port, .. } | RequestTarget::Authority { port, .. } => *port,
        }
    }

    /// `host` or `host:port` as it belongs in a Host header (port left out when 80).
    pub fn host_header(&self) -> String {
        let mut out = String::with_capacity(self.host().len() + 8);
        self.push_host_header(&mut out);
        out
    }

    /// Appends [`host_header`](Self::host_header) to `out` (the request path's way: no
    /// string of its own for each request).
    pub fn push_host_header(&self, out: &mut String) {
        let host = self.host();
        if host.contains(':') {
            out.push('[');
            out.push_str(host);
            out.push(']');
        } else {
            out.push_str(host);
        }
        match self.port() {
            80 if matches!(self, RequestTarget::Absolute { .. }) => {}
            port => {
                out.push(':');
                out.push_str(itoa::Buffer::new().format(port));
            }
        }
    }

    /// The target as a log line shows it: the URL, or `host:port` for CONNECT.
    pub fn display(&self) -> String {
        match self {
            RequestTarget::Absolute { host, path, .. } => {
                let mut out = String::with_capacity(7 + host.len() + 8 + path.len());
                out.push_str("http://");
                self.push_host_header(&mut out);
                out.push_str(&String::from_utf8_lossy(path));
                out
            }
            RequestTarget::Authority { host, port } => format!("{}:{port}", bracketed(host)),
        }
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Bytes httparse read as text, as text.
pub(super) fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

/// Reads the request target in the form its method calls for. `received` is the target as
/// it came, in the head's own bytes: an ASCII path is kept as a slice of them, not copied.
pub fn parse_target(method: &str, received: &Bytes) -> Result<RequestTarget, ProxyError> {
    let target = text(received);
    if method == "CONNECT" {
        let (host, port) = split_host_port(target)?;
        let port = port.ok_or(ProxyError::BadRequest("CONNECT target needs a port"))?;
        return Ok(RequestTarget::Authority { host, port });
    }
    if target.starts_with('/') || target == "*" {
        return Err(ProxyError::NotAProxyRequest);
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(ProxyError::BadRequest(
            "request target is not an absolute URI",
        ));
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(ProxyError::NotImplemented(
            "only http:// URLs are forwarded; use CONNECT for https",
        ));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err(ProxyError::BadRequest(
            "user information in the URI is not allowed",
        ));
    }
    let (host, port) = split_host_port(authority)?;
    let path = match path.as_bytes().first() {
        None => Bytes::from_static(b"/"),
        Some(b'?') => Bytes::from(percent_encode_non_ascii(&format!("/{path}"))),
        Some(_) => ascii_path(received, path),
    };
    Ok(RequestTarget::Absolute {
        host,
        port: port.unwrap_or(80),
        path,
    })
}

/// The path as sent on: ASCII byte-exact, and any raw non-ASCII (UTF-8 that httparse
/// lets through) percent-encoded, as RFC 3987 §3.1 maps an IRI to a URI. A request line
/// must be ASCII (RFC 9112 §3.2, RFC 3986 §2), and origins that decode it as Latin-1
/// and split on Unicode whitespace would read bytes such as 0x85 or 0xA0 as separators.
/// `path` is a slice of `received`, which an ASCII path is returned as a slice of.
pub(super) fn ascii_path(received: &Bytes, path: &str) -> Bytes {
    if path.is_ascii() {
        return received.slice_ref(path.as_bytes());
    }
    Bytes::from(percent_encode_non_ascii(path))
}

/// `path` with its non-ASCII bytes percent-encoded (see [`ascii_path`]).
fn percent_encode_non_ascii(path: &str) -> String {
    let mut out = String::with_capacity(path.len() * 3);
    for &byte in path.as_bytes() {
        if byte.is_ascii() {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Splits `host[:port]` or `[v6][:port]`; the host is lower-cased and checked.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), ProxyError> {
    let bad = ProxyError::BadRequest("invalid host in request target");
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(bad)?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(ProxyError::BadRequest(
                "invalid IPv6 address in request target",
            ));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or(ProxyError::BadRequest("invalid port"))?,
            ),
        };
        (v6, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
    if host.is_empty() || !(host.contains(':') || host.chars().all(name_char)) {
        return Err(ProxyError::BadRequest("invalid host in request target"));
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(ProxyError::BadRequest("invalid port")),
            }
        }
        Some(_) => return Err(ProxyError::BadRequest("invalid port")),
    };
    Ok((host.to_ascii_lowercase(), port))
}
