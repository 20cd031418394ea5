//! A read side with its own buffer: the bytes read past a head or a body stay here for the
//! next message, and reads only append, so a read cancelled by a timeout loses nothing.
//! The buffer is allocated on the first read and given back while the connection is idle,
//! so an idle connection costs no buffer memory: a client's first bytes are waited for
//! without one ([`Reader::poll_first_read`]).

use std::io;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use super::head::{self, RequestHead, ResponseHead};
use crate::error::{ProxyError, Side};

/// Bytes asked of the socket per read of a body; also the largest piece a body is relayed
/// in. Measured relaying 1 MiB responses on 8 connections (release build, 2 cores shared
/// with the origin and the load generator): 16 KiB cost 0.72 CPU-s/GB, 64 KiB 0.53–0.66,
/// 256 KiB 0.66 with no more throughput, so 64 KiB per side of an active transfer.
pub const READ_CHUNK: usize = 64 * 1024;

/// Bytes asked of the socket per read while reading a head: most heads fit in one, and
/// a connection that sends only part of a head holds no more than this.
const HEAD_CHUNK: usize = 2 * 1024;

pub struct Reader<R> {
    io: R,
    buf: BytesMut,
    side: Side,
    /// Bytes read from `io` so far.
    read: u64,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(io: R, side: Side) -> Reader<R> {
        Reader {
            io,
            buf: BytesMut::new(),
            side,
            read: 0,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// The bytes read but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Gives back the buffer's memory if nothing is pending (between requests).
    pub fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Splits off the whole buffer and returns the stream and what was buffered.
    pub fn into_parts(self) -> (R, Bytes) {
        (self.io, self.buf.freeze())
    }

    /// Reads more bytes into the buffer, for a body; `Ok(0)` at end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.read_more(READ_CHUNK).await
    }

    /// Reads into at least `chunk / 2` bytes of free space, growing the buffer by `chunk`
    /// when less is free.
    async fn read_more(&mut self, chunk: usize) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < chunk / 2 {
            self.buf.reserve(chunk);
        }
        let n = self.io.read_buf(&mut self.buf).await?;
        self.read += n as u64;
        Ok(n)
    }

    /// Bytes read from the stream so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Bytes read and already handed on (read minus still buffered).
    pub fn consumed(&self) -> u64 {
        self.read - self.buf.len() as u64
    }

    /// [`fill`](Self::fill) with a deadline, mapping failures to this side's error.
    pub async fn fill_within(&mut self, limit: Duration) -> Result<usize, ProxyError> {
        match tokio::time::timeout(limit, self.fill()).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(ProxyError::Io(self.side, e)),
            Err(_) => Err(ProxyError::Io(self.side, io::ErrorKind::TimedOut.into())),
        }
    }

    /// Takes up to `max` buffered bytes.
    pub fn take(&mut self, max: usize) -> Bytes {
        let n = max.min(self.buf.len());
        self.buf.split_to(n).freeze()
    }

    /// Drops `n` buffered bytes.
    pub fn consume(&mut self, n: usize) {
        let _ = self.buf.split_to(n);
    }

    /// Reads one request head. `Ok(None)` when the client closed cleanly before sending
    /// a byte. Callers bound the whole call with the header timeout.
    pub async fn read_request_head(&mut self) -> Result<Option<RequestHead>, ProxyError> {
        loop {
            if !self.buf.is_empty()
                && let Some(head) = head::parse_request(&mut self.buf)?
            {
                return Ok(Some(head));
            }
            match self.read_more(HEAD_CHUNK).await {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => {
                    return Err(ProxyError::BadRequest(
                        "connection closed inside the request head",
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(ProxyError::Io(Side::Client, e)),
            }
        }
    }

    /// Reads one response head. Callers bound the call with the response timeout.
    pub async fn read_response_head(&mut self) -> Result<ResponseHead, ProxyError> {
        loop {
            if !self.buf.is_empty()
                && let Some(head) = head::parse_response(&mut self.buf)?
            {
                return Ok(head);
            }
            match self.read_more(HEAD_CHUNK).await {
                Ok(0) => return Err(ProxyError::UpstreamClosed),
                Ok(_) => {}
                Err(_) => return Err(ProxyError::UpstreamClosed),
            }
        }
    }
}

impl Reader<TcpStream> {
    /// Waits until the socket has bytes, holding no buffer meanwhile (an idle connection
    /// costs none), then reads what is there into a buffer of that size; `Ok(0)` at end
    /// of stream. Readiness alone is not enough: tokio reports a freshly accepted socket
    /// readable before any byte has come, so the read goes through a stack buffer.
    pub fn poll_first_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            let mut first = [0u8; HEAD_CHUNK];
            match self.io.try_read(&mut first) {
                Ok(n) => {
                    self.buf.extend_from_slice(&first[..n]);
                    self.read += n as u64;
                    return Poll::Ready(Ok(n));
                }
                // try_read cleared the readiness: the next poll waits for the reactor.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// tokio reports a freshly accepted socket readable before any byte has come: the
    /// wait must neither take that for data nor allocate a buffer while nothing is there.
    #[tokio::test]
    async fn waiting_for_the_first_bytes_holds_no_buffer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let mut reader = Reader::new(accepted, Side::Client);

        let first = poll_fn(|cx| Poll::Ready(reader.poll_first_read(cx))).await;
        assert!(first.is_pending(), "nothing was sent yet");
        assert_eq!(reader.buf.capacity(), 0);

        client.write_all(b"GET ").await.unwrap();
        let read = poll_fn(|cx| reader.poll_first_read(cx)).await.unwrap();
        assert_eq!((read, reader.buffered()), (4, &b"GET "[..]));
        assert_eq!(reader.bytes_read(), 4);

        drop(client);
        reader.consume(4);
        let closed = poll_fn(|cx| reader.poll_first_read(cx)).await.unwrap();
        assert_eq!(closed, 0);
    }
}
