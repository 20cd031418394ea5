//! The upstream side of a connection: a TCP socket to an origin (or to an HTTP or SOCKS5
//! parent), or a TLS session to an HTTPS parent. Forwarding, tunnels and the pool all
//! take this one type; the tunnel relay asks [`Splice::tcp`] and copies a TLS session
//! instead of splicing it. An enum for the same reason as `client::ClientStream`: the
//! common case stays the bare socket, and the TLS state is boxed.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::tunnel::Splice;

/// A connection toward a target, however it was made.
#[derive(Debug)]
pub enum UpstreamStream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl UpstreamStream {
    fn socket(&self) -> &TcpStream {
        match self {
            UpstreamStream::Tcp(stream) => stream,
            UpstreamStream::Tls(stream) => stream.get_ref().0,
        }
    }

    /// This end's address (the SOCKS5 front end reports it as the bound address).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket().local_addr()
    }

    /// An idle connection has nothing to read: end of stream or stray bytes mean the peer
    /// closed it or broke the protocol, and it must not carry another request. For a TLS
    /// session any pending record (a close_notify, a late ticket) counts as "not idle":
    /// discarding such a connection costs one handshake, keeping a closing one a request.
    pub fn looks_alive(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.socket().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl Splice for UpstreamStream {
    fn tcp(&mut self) -> Option<&mut TcpStream> {
        match self {
            UpstreamStream::Tcp(stream) => Some(stream),
            UpstreamStream::Tls(_) => None,
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            UpstreamStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            UpstreamStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Tcp(stream) => stream.is_write_vectored(),
            UpstreamStream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            UpstreamStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            UpstreamStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
