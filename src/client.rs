//! The client side of a connection, whatever a listener hands over: plain TCP today; TLS
//! and PROXY-protocol connections are further variants of [`ClientStream`] (a PROXY
//! header is read before the stream is made, so the address here is the one it named).
//! It carries the client address that admission, logs and statistics use, and says
//! whether it is a bare TCP socket, which is what the tunnel relay asks before choosing
//! splice(2) over copying. Every front end reads and writes through it.
//!
//! An enum rather than `Box<dyn AsyncRead + AsyncWrite>`: every idle connection holds one,
//! and the plain-TCP case stays as small and as direct as the socket itself.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tunnel::Splice;

/// One accepted client connection and the address it is known by.
#[derive(Debug)]
pub struct ClientStream {
    io: Io,
    peer: SocketAddr,
}

#[derive(Debug)]
enum Io {
    Tcp(TcpStream),
}

impl ClientStream {
    /// A plain TCP connection from `peer`.
    pub fn tcp(stream: TcpStream, peer: SocketAddr) -> ClientStream {
        let _ = stream.set_nodelay(true);
        ClientStream {
            io: Io::Tcp(stream),
            peer,
        }
    }

    /// The client's address, as policy and logs see it.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The address the client reached us on (a system call: ask only when needed).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.io {
            Io::Tcp(stream) => stream.local_addr(),
        }
    }

    /// Makes the coming close a reset (RST) instead of a FIN, so a client that reads a
    /// body up to the close cannot take a cut-off body for a whole one (RFC 9112 §8).
    pub fn abort_on_close(&self) {
        match &self.io {
            // Tokio deprecates SO_LINGER because a non-zero linger blocks the thread on
            // close; a zero linger never blocks, it only turns the close into a reset.
            #[allow(deprecated)]
            Io::Tcp(stream) => {
                let _ = stream.set_linger(Some(std::time::Duration::ZERO));
            }
        }
    }
}

impl Splice for ClientStream {
    fn tcp(&mut self) -> Option<&mut TcpStream> {
        match &mut self.io {
            Io::Tcp(stream) => Some(stream),
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
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Tcp(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
