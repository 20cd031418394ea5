//! The client side of a connection, whatever a listener hands over: plain TCP or a TLS
//! session over TCP (an HTTPS proxy). A PROXY-protocol header is read before the stream
//! is made, so the address here is the one it named. It carries the client address that
//! admission, logs and statistics use and the listener it arrived on, and says whether it
//! is a bare TCP socket, which is what the tunnel relay asks before choosing splice(2)
//! over copying (a TLS session must be copied: the bytes are decrypted here). Every front
//! end reads and writes through it.
//!
//! An enum rather than `Box<dyn AsyncRead + AsyncWrite>`: every idle connection holds one,
//! and the plain-TCP case stays as small and as direct as the socket itself. The TLS
//! session (over a kilobyte of rustls state) is boxed so that it does not make every
//! plain connection's future as large as itself.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::tunnel::Splice;

/// Which of the server's listeners a connection arrived on: its index in the list of
/// listeners the server was started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListenerId(pub u16);

/// One accepted client connection and the address it is known by.
#[derive(Debug)]
pub struct ClientStream {
    io: Io,
    peer: SocketAddr,
    listener: ListenerId,
}

#[derive(Debug)]
enum Io {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// A plain TCP connection from `peer`.
    pub fn tcp(stream: TcpStream, peer: SocketAddr) -> ClientStream {
        let _ = stream.set_nodelay(true);
        ClientStream {
            io: Io::Tcp(stream),
            peer,
            listener: ListenerId::default(),
        }
    }

    /// A TLS session (handshake done) with `peer`.
    pub fn tls(stream: TlsStream<TcpStream>, peer: SocketAddr) -> ClientStream {
        let _ = stream.get_ref().0.set_nodelay(true);
        ClientStream {
            io: Io::Tls(Box::new(stream)),
            peer,
            listener: ListenerId::default(),
        }
    }

    /// The same stream, noted as having arrived on `listener`.
    pub fn on(mut self, listener: ListenerId) -> ClientStream {
        self.listener = listener;
        self
    }

    /// The client's address, as policy and logs see it.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The listener the connection arrived on.
    pub fn listener(&self) -> ListenerId {
        self.listener
    }

    /// The address the client reached us on (a system call: ask only when needed).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket().local_addr()
    }

    /// The TCP socket underneath, for socket options.
    fn socket(&self) -> &TcpStream {
        match &self.io {
            Io::Tcp(stream) => stream,
            Io::Tls(stream) => stream.get_ref().0,
        }
    }

    /// Makes the coming close a reset (RST) instead of a FIN, so a client that reads a
    /// body up to the close cannot take a cut-off body for a whole one (RFC 9112 §8).
    pub fn abort_on_close(&self) {
        // Tokio deprecates SO_LINGER because a non-zero linger blocks the thread on
        // close; a zero linger never blocks, it only turns the close into a reset.
        #[allow(deprecated)]
        let _ = self.socket().set_linger(Some(std::time::Duration::ZERO));
    }
}

impl Splice for ClientStream {
    fn tcp(&mut self) -> Option<&mut TcpStream> {
        match &mut self.io {
            Io::Tcp(stream) => Some(stream),
            Io::Tls(_) => None,
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Tcp(stream) => stream.is_write_vectored(),
            Io::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
