//! One byte stream type for both sides of the proxy: a bare TCP socket, or a TLS session
//! over one (rustls's server side for an HTTPS proxy's clients, its client side toward an
//! HTTPS parent). Reads and writes go to whichever it is; the tunnel relay asks
//! [`Splice::tcp`] and splices only the bare socket (a TLS session's bytes are decrypted
//! here and must be copied).
//!
//! An enum rather than `Box<dyn AsyncRead + AsyncWrite>`: every idle connection holds
//! one, and the plain-TCP case stays as small and as direct as the socket itself. The TLS
//! session (over a kilobyte of rustls state) is boxed so that it does not make every
//! plain connection's future as large as itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tunnel::Splice;

/// A TCP socket, or a TLS session `S` over one.
#[derive(Debug)]
pub enum TcpOrTls<S> {
    Tcp(TcpStream),
    Tls(Box<S>),
}

/// A TLS session over TCP: which socket it runs on.
pub trait OverTcp: AsyncRead + AsyncWrite + Unpin {
    fn socket(&self) -> &TcpStream;
}

impl OverTcp for tokio_rustls::server::TlsStream<TcpStream> {
    fn socket(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl OverTcp for tokio_rustls::client::TlsStream<TcpStream> {
    fn socket(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl<S: OverTcp> TcpOrTls<S> {
    /// The TCP socket underneath, for socket options and addresses.
    pub fn socket(&self) -> &TcpStream {
        match self {
            TcpOrTls::Tcp(stream) => stream,
            TcpOrTls::Tls(session) => session.socket(),
        }
    }

    /// This end's address (a system call: ask only when needed).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.socket().local_addr()
    }

    /// An idle connection has nothing to read: end of stream or stray bytes mean the
    /// peer closed it or broke the protocol, and it must not carry another request. For
    /// a TLS session any pending record (a close_notify, a late ticket) counts as "not
    /// idle": discarding such a connection costs one handshake, keeping a closing one a
    /// request.
    pub fn looks_alive(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.socket().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl<S> Splice for TcpOrTls<S> {
    fn tcp(&mut self) -> Option<&mut TcpStream> {
        match self {
            TcpOrTls::Tcp(stream) => Some(stream),
            TcpOrTls::Tls(_) => None,
        }
    }
}

impl<S: OverTcp> AsyncRead for TcpOrTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TcpOrTls::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            TcpOrTls::Tls(session) => Pin::new(session.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: OverTcp> AsyncWrite for TcpOrTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TcpOrTls::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            TcpOrTls::Tls(session) => Pin::new(session.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TcpOrTls::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            TcpOrTls::Tls(session) => Pin::new(session.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            TcpOrTls::Tcp(stream) => stream.is_write_vectored(),
            TcpOrTls::Tls(session) => session.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TcpOrTls::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            TcpOrTls::Tls(session) => Pin::new(session.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TcpOrTls::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            TcpOrTls::Tls(session) => Pin::new(session.as_mut()).poll_shutdown(cx),
        }
    }
}
