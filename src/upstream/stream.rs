//! The upstream side of a connection: a TCP socket to an origin (or to an HTTP or SOCKS5
//! parent), or a TLS session to an HTTPS parent — the crate's one stream type
//! ([`TcpOrTls`]) with rustls's client session. Forwarding, tunnels and the pool all take
//! it.

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::stream::TcpOrTls;

/// A connection toward a target, however it was made.
pub type UpstreamStream = TcpOrTls<TlsStream<TcpStream>>;
