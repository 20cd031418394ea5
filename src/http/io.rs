//! A read side with its own buffer: the bytes read past a head or a body stay here for the
//! next message, and reads only append, so a read cancelled by a timeout loses nothing.
//! Heads are read through a stack buffer and appended, so the buffer holds only bytes
//! that arrived: an idle connection has none, and one that sent part of a head holds just
//! that part ([`Reader::poll_read_some`]). Bodies are read straight into spare capacity.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::head::{self, HeadLimits, RequestHead, ResponseHead};
use super::origin::{self, OriginRequestHead};
use crate::error::{ProxyError, Side};

/// Bytes asked of the socket by a body's first read: smaller reads cost more CPU per byte
/// relayed, larger ones gained nothing (see docs/performance.md, "Read chunk size" (S3)).
pub const READ_CHUNK: usize = 64 * 1024;

/// The most a body read asks for. Once a body has moved [`GROW_AFTER`], a read that
/// fills all the space it was given doubles the next one, up to this, so a long body over
/// one connection no longer waits for the origin to refill a small read each time (see
/// docs/performance.md, "Growing reads" (S3)). Each doubling is paid for from the
/// process's buffer budget (`budget`); refused, the reads stay the size they are.
pub const MAX_READ_CHUNK: usize = 1024 * 1024;

/// Bytes a body moves at [`READ_CHUNK`] before its reads may grow: more than the kernel
/// takes into its socket buffers for a client that reads nothing (about 4 MiB on
/// loopback), so a stalled client's body is stuck holding one small read, not a grown
/// one (see docs/performance.md, "Memory budget" (S8)).
pub const GROW_AFTER: usize = 8 * 1024 * 1024;

/// Bytes asked of the socket per read while reading a head (most heads fit in one), into
/// a buffer on the stack.
const HEAD_CHUNK: usize = 2 * 1024;

pub struct Reader<R> {
    io: R,
    buf: BytesMut,
    side: Side,
    grown: Growth,
    /// Bytes read from `io` so far.
    read: u64,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(io: R, side: Side) -> Reader<R> {
        Reader {
            io,
            buf: BytesMut::new(),
            side,
            grown: Growth::default(),
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

    /// Gives back the buffer's memory if nothing is pending (between requests); the next
    /// body starts again at [`READ_CHUNK`].
    pub fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            self.grown.reset();
        }
    }

    /// Splits off the whole buffer and returns the stream and what was buffered.
    pub fn into_parts(self) -> (R, Bytes) {
        (self.io, self.buf.freeze())
    }

    /// Reads more bytes into the buffer, for a body; `Ok(0)` at end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.read_more().await
    }

    /// Reads into at least half a chunk of free space, growing the buffer by a chunk when
    /// less is free; a read that fills the space may double the chunk (see
    /// [`MAX_READ_CHUNK`]).
    async fn read_more(&mut self) -> io::Result<usize> {
        let chunk = self.grown.chunk();
        if self.buf.capacity() - self.buf.len() < chunk / 2 {
            self.buf.reserve(chunk);
        }
        let space = self.buf.capacity() - self.buf.len();
        let n = self.io.read_buf(&mut self.buf).await?;
        self.read += n as u64;
        self.grown.after_read(n, n == space);
        Ok(n)
    }

    /// Waits until the stream has bytes, then appends what is there (up to
    /// [`HEAD_CHUNK`]) to the buffer; `Ok(0)` at end of stream. Nothing is allocated while
    /// waiting, and the buffer grows only by what arrived.
    pub fn poll_read_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut chunk = [MaybeUninit::<u8>::uninit(); HEAD_CHUNK];
        let mut read = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.buf.extend_from_slice(read.filled());
        self.read += n as u64;
        Poll::Ready(Ok(n))
    }

    async fn read_some(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_some(cx)).await
    }

    /// Counts `n` bytes taken from the stream without passing through this reader (a
    /// spliced body), so [`bytes_read`](Self::bytes_read) still tells all.
    pub fn count_elsewhere(&mut self, n: u64) {
        self.read += n;
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
        self.read_client_head(head::parse_request).await
    }

    /// Reads one request head as an origin server receives it, within `limits`; otherwise
    /// as [`read_request_head`](Self::read_request_head).
    pub async fn read_origin_request_head(
        &mut self,
        limits: HeadLimits,
    ) -> Result<Option<OriginRequestHead>, ProxyError> {
        self.read_client_head(|buf| origin::parse_origin_request(buf, limits))
            .await
    }

    async fn read_client_head<T>(
        &mut self,
        mut parse: impl FnMut(&mut BytesMut) -> Result<Option<T>, ProxyError>,
    ) -> Result<Option<T>, ProxyError> {
        loop {
            if !self.buf.is_empty()
                && let Some(head) = parse(&mut self.buf)?
            {
                return Ok(Some(head));
            }
            match self.read_some().await {
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
            match self.read_some().await {
                Ok(0) => return Err(ProxyError::UpstreamClosed),
                Ok(_) => {}
                Err(_) => return Err(ProxyError::UpstreamClosed),
            }
        }
    }
}

/// How far a reader's body reads have grown, and what that holds of the buffer budget:
/// two bytes, so an idle connection's state is no larger. Dropped or reset, it gives its
/// share of the budget back.
#[derive(Debug, Default)]
struct Growth {
    /// Doublings of [`READ_CHUNK`] the next body read asks for.
    doublings: u8,
    /// [`READ_CHUNK`]s read since the last reset, up to [`GROW_AFTER`]'s worth.
    warm: u8,
}

/// [`GROW_AFTER`] in [`READ_CHUNK`]s (fits the `warm` byte).
const WARM_CHUNKS: u8 = (GROW_AFTER / READ_CHUNK) as u8;

impl Growth {
    fn chunk(&self) -> usize {
        READ_CHUNK << self.doublings
    }

    /// Budget held: the chunk's bytes beyond [`READ_CHUNK`].
    fn held(&self) -> usize {
        self.chunk() - READ_CHUNK
    }

    fn after_read(&mut self, n: usize, filled: bool) {
        let chunks = u8::try_from(n / READ_CHUNK).unwrap_or(u8::MAX);
        self.warm = self.warm.saturating_add(chunks).min(WARM_CHUNKS);
        let chunk = self.chunk();
        if filled
            && self.warm >= WARM_CHUNKS
            && chunk < MAX_READ_CHUNK
            && crate::budget::global().try_take(chunk)
        {
            self.doublings += 1;
        }
    }

    fn reset(&mut self) {
        crate::budget::global().give_back(self.held());
        // Field by field: assigning a whole `Growth` would drop the old one, which resets.
        self.doublings = 0;
        self.warm = 0;
    }
}

impl Drop for Growth {
    fn drop(&mut self) {
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// tokio reports a freshly accepted socket readable before any byte has come: the
    /// wait must neither take that for data nor allocate a buffer while nothing is there.
    #[tokio::test]
    async fn waiting_holds_no_buffer_and_a_partial_head_only_its_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let mut reader = Reader::new(accepted, Side::Client);

        let first = poll_fn(|cx| Poll::Ready(reader.poll_read_some(cx))).await;
        assert!(first.is_pending(), "nothing was sent yet");
        assert_eq!(reader.buf.capacity(), 0);

        client.write_all(b"GET ").await.unwrap();
        let read = poll_fn(|cx| reader.poll_read_some(cx)).await.unwrap();
        assert_eq!((read, reader.buffered()), (4, &b"GET "[..]));
        assert!(
            reader.buf.capacity() < HEAD_CHUNK,
            "part of a head is kept in a buffer of its size"
        );
        assert_eq!(reader.bytes_read(), 4);

        drop(client);
        reader.consume(4);
        let closed = poll_fn(|cx| reader.poll_read_some(cx)).await.unwrap();
        assert_eq!(closed, 0);
    }

    /// Reads stay at the first size for [`GROW_AFTER`]; then reads that fill their space
    /// double the next one up to the cap; a short read does not; the next request's body
    /// starts small again.
    #[tokio::test]
    async fn body_reads_grow_while_they_fill_and_start_small_again() {
        let mut bulk = Reader::new(tokio::io::repeat(b'x'), Side::Upstream);
        let mut sizes = Vec::new();
        let mut moved = 0;
        while moved < GROW_AFTER {
            let n = bulk.fill().await.unwrap();
            assert!(n < 2 * READ_CHUNK, "grew after {moved} bytes");
            moved += n;
            bulk.consume(n);
        }
        for _ in 0..8 {
            sizes.push(bulk.fill().await.unwrap());
            bulk.consume(bulk.buffered().len());
        }
        assert!(sizes.windows(2).all(|w| w[1] >= w[0]), "{sizes:?}");
        assert_eq!(bulk.grown.chunk(), MAX_READ_CHUNK, "{sizes:?}");
        assert!(*sizes.last().unwrap() <= 2 * MAX_READ_CHUNK, "{sizes:?}");
        bulk.release_idle_buffer();
        assert_eq!(bulk.grown.doublings, 0);

        let mut short = Reader::new(&b"a short body"[..], Side::Upstream);
        assert_eq!(short.fill().await.unwrap(), 12);
        assert_eq!(
            short.grown.doublings, 0,
            "a read that did not fill its space"
        );
    }
}
