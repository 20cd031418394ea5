//! The client side of a connection, whatever a listener hands over: plain TCP or a TLS
//! session over TCP (an HTTPS proxy). A PROXY-protocol header is read before the stream
//! is made, so the address here is the one it named. It carries the client address that
//! admission, logs and statistics use and the listener it arrived on, and says whether it
//! is a bare TCP socket, which is what the tunnel relay asks before choosing splice(2)
//! over copying (a TLS session must be copied: the bytes are decrypted here). Every front
//! end reads and writes through it.
//!
//! The bytes themselves go through the crate's one stream type ([`TcpOrTls`]), which
//! this type derefs to.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::stream::TcpOrTls;
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

type Io = TcpOrTls<TlsStream<TcpStream>>;

impl ClientStream {
    /// A plain TCP connection from `peer`.
    pub fn tcp(stream: TcpStream, peer: SocketAddr) -> ClientStream {
        let _ = stream.set_nodelay(true);
        ClientStream {
            io: TcpOrTls::Tcp(stream),
            peer,
            listener: ListenerId::default(),
        }
    }

    /// A TLS session (handshake done) with `peer`.
    pub fn tls(stream: TlsStream<TcpStream>, peer: SocketAddr) -> ClientStream {
        let _ = stream.get_ref().0.set_nodelay(true);
        ClientStream {
            io: TcpOrTls::Tls(Box::new(stream)),
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

    /// Makes the coming close a reset (RST) instead of a FIN, so a client that reads a
    /// body up to the close cannot take a cut-off body for a whole one (RFC 9112 §8).
    pub fn abort_on_close(&self) {
        // Tokio deprecates SO_LINGER because a non-zero linger blocks the thread on
        // close; a zero linger never blocks, it only turns the close into a reset.
        #[allow(deprecated)]
        let _ = self.io.socket().set_linger(Some(std::time::Duration::ZERO));
    }

    /// The address the client reached us on (a system call: ask only when needed).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }
}

// Reads, writes and splicing are the stream's.
impl Splice for ClientStream {
    fn tcp(&mut self) -> Option<&mut TcpStream> {
        self.io.tcp()
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
