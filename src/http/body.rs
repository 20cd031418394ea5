//! Streaming a message body from a [`Reader`] to a writer through the reader's bounded
//! buffer, whatever its size. Chunked bodies are decoded strictly (RFC 9112 §7.1) and
//! re-encoded in a canonical form, so what the next hop sees cannot be read two ways;
//! chunk extensions and trailer fields are dropped.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::framing::BodyLength;
use super::head::MAX_HEAD_BYTES;
use super::io::Reader;
use crate::error::{ProxyError, Side};

/// Data up to this size is gathered with the pending head or chunk framing into one
/// write; larger pieces are written as they are, not copied.
const COALESCE_LIMIT: usize = 8 * 1024;

/// Longest chunk-size line accepted, extensions included.
const MAX_CHUNK_LINE: usize = 4096;

/// How one body is relayed.
#[derive(Debug, Clone, Copy)]
pub struct Relay {
    /// Deadline for each read from the source.
    pub read_timeout: Duration,
    /// Which side the writer is, to blame write failures on.
    pub dst_side: Side,
    /// Write a chunked body's decoded bytes without chunk framing (for HTTP/1.0 clients,
    /// where the connection end then delimits the body).
    pub dechunk: bool,
}

/// Relays one body; returns the bytes written to `dst`. `tee` sees the decoded body bytes.
/// An error means the body is incomplete: the caller must close, never reuse, both sides.
pub async fn relay_body<R, W>(
    src: &mut Reader<R>,
    dst: &mut W,
    length: BodyLength,
    relay: Relay,
    tee: &mut (impl FnMut(&[u8]) + Send),
) -> Result<u64, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    relay_body_with(src, dst, length, relay, Vec::new(), tee).await
}

/// [`relay_body`] with `head` written first, in the same write as the start of the body,
/// so a small message costs one write. The count returned includes the head.
pub async fn relay_body_with<R, W>(
    src: &mut Reader<R>,
    dst: &mut W,
    length: BodyLength,
    relay: Relay,
    head: Vec<u8>,
    tee: &mut (impl FnMut(&[u8]) + Send),
) -> Result<u64, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = Output {
        dst,
        side: relay.dst_side,
        pending: head,
        written: 0,
    };
    match length {
        BodyLength::Empty => {}
        BodyLength::Fixed(n) => copy_exact(src, &mut out, n, relay, tee).await?,
        BodyLength::UntilClose => copy_to_end(src, &mut out, relay, tee).await?,
        BodyLength::Chunked => copy_chunked(src, &mut out, relay, tee).await?,
    }
    out.flush().await?;
    Ok(out.written)
}

/// Writes with small pieces (chunk framing) gathered into one buffer, so a small
/// chunked body costs one write, not three per chunk.
struct Output<'a, W> {
    dst: &'a mut W,
    side: Side,
    pending: Vec<u8>,
    written: u64,
}

impl<W: AsyncWrite + Unpin> Output<'_, W> {
    fn queue(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    async fn write(&mut self, data: Bytes) -> Result<(), ProxyError> {
        if self.pending.len() + data.len() <= COALESCE_LIMIT {
            self.queue(&data);
            return Ok(());
        }
        self.flush().await?;
        self.written += data.len() as u64;
        self.dst
            .write_all(&data)
            .await
            .map_err(|e| ProxyError::Io(self.side, e))
    }

    async fn flush(&mut self) -> Result<(), ProxyError> {
        if !self.pending.is_empty() {
            self.written += self.pending.len() as u64;
            let result = self.dst.write_all(&self.pending).await;
            self.pending.clear();
            result.map_err(|e| ProxyError::Io(self.side, e))?;
        }
        Ok(())
    }
}

/// Reads more when the buffer is empty, sending what is pending first so the reader's
/// wait never holds back bytes already received.
async fn refill<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    src: &mut Reader<R>,
    out: &mut Output<'_, W>,
    relay: Relay,
) -> Result<usize, ProxyError> {
    out.flush().await?;
    src.fill_within(relay.read_timeout).await
}

fn truncated(side: Side) -> ProxyError {
    ProxyError::Io(side, io::ErrorKind::UnexpectedEof.into())
}

async fn copy_exact<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    src: &mut Reader<R>,
    out: &mut Output<'_, W>,
    mut left: u64,
    relay: Relay,
    tee: &mut (impl FnMut(&[u8]) + Send),
) -> Result<(), ProxyError> {
    while left > 0 {
        if src.buffered().is_empty() && refill(src, out, relay).await? == 0 {
            return Err(truncated(src_side(relay)));
        }
        let data = src.take(usize::try_from(left).unwrap_or(usize::MAX));
        left -= data.len() as u64;
        tee(&data);
        out.write(data).await?;
    }
    Ok(())
}

async fn copy_to_end<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    src: &mut Reader<R>,
    out: &mut Output<'_, W>,
    relay: Relay,
    tee: &mut (impl FnMut(&[u8]) + Send),
) -> Result<(), ProxyError> {
    loop {
        if src.buffered().is_empty() && refill(src, out, relay).await? == 0 {
            return Ok(());
        }
        let data = src.take(usize::MAX);
        tee(&data);
        out.write(data).await?;
    }
}

async fn copy_chunked<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    src: &mut Reader<R>,
    out: &mut Output<'_, W>,
    relay: Relay,
    tee: &mut (impl FnMut(&[u8]) + Send),
) -> Result<(), ProxyError> {
    let side = src_side(relay);
    loop {
        let line = read_line(src, out, relay, MAX_CHUNK_LINE).await?;
        let size = parse_chunk_size(&line).ok_or_else(|| bad_chunk(side))?;
        if size == 0 {
            skip_trailers(src, out, relay).await?;
            if !relay.dechunk {
                out.queue(b"0\r\n\r\n");
            }
            return Ok(());
        }
        if !relay.dechunk {
            out.queue(format!("{size:x}\r\n").as_bytes());
        }
        copy_exact(src, out, size, relay, tee).await?;
        if !read_line(src, out, relay, 0).await?.is_empty() {
            return Err(bad_chunk(side));
        }
        if !relay.dechunk {
            out.queue(b"\r\n");
        }
    }
}

/// The source side is whichever side the writer is not.
fn src_side(relay: Relay) -> Side {
    match relay.dst_side {
        Side::Client => Side::Upstream,
        _ => Side::Client,
    }
}

fn bad_chunk(side: Side) -> ProxyError {
    match side {
        Side::Client => ProxyError::BadRequest("malformed chunked body"),
        _ => ProxyError::BadResponse("malformed chunked body"),
    }
}

/// Reads a line ending in CRLF (a bare LF is malformed) of at most `max` bytes.
async fn read_line<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    src: &mut Reader<R>,
    out: &mut Output<'_, W>,
    relay: Relay,
    max: usize,
) -> Result<Bytes, ProxyError> {
    let side = src_side(relay);
    loop {
        if let Some(lf) = src.buffered().iter().position(|&b| b == b'\n') {
            if lf == 0 || src.buffered()[lf - 1] != b'\r' || lf - 1 > max {
                return Err(bad_chunk(side));
            }
            let line = src.take(lf - 1);
            src.consume(2);
            return Ok(line);
        }
        if src.buffered().len() > max + 1 {
            return Err(bad_chunk(side));
        }
        if refill(src, out, relay).await? == 0 {
            return Err(truncated(side));
        }
    }
}

/// `1*HEXDIG [ BWS ";" ext ]`: at most 15 significant hex digits, so the size fits in a
/// u64 with room to spare; extensions must hold no control characters.
pub fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let significant = line[..digits].iter().skip_while(|&&b| b == b'0').count();
    if digits == 0 || significant > 15 {
        return None;
    }
    let rest = &line[digits..];
    let ext = rest.trim_ascii_start();
    if !rest.is_empty()
        && (!ext.starts_with(b";") || ext.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f))
    {
        return None;
    }
    let text = std::str::from_utf8(&line[..digits]).ok()?;
    u64::from_str_radix(text, 16).ok()
}

async fn skip_trailers<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    src: &mut Reader<R>,
    out: &mut Output<'_, W>,
    relay: Relay,
) -> Result<(), ProxyError> {
    let mut total = 0;
    loop {
        let line = read_line(src, out, relay, MAX_HEAD_BYTES).await?;
        if line.is_empty() {
            return Ok(());
        }
        total += line.len();
        if total > MAX_HEAD_BYTES || !line.contains(&b':') {
            return Err(bad_chunk(src_side(relay)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn relay_bytes(
        input: &[u8],
        length: BodyLength,
        dechunk: bool,
    ) -> Result<(Vec<u8>, Vec<u8>), ProxyError> {
        let mut src = Reader::new(input, Side::Upstream);
        let mut dst = Vec::new();
        let mut seen = Vec::new();
        let relay = Relay {
            read_timeout: Duration::from_secs(1),
            dst_side: Side::Client,
            dechunk,
        };
        relay_body(&mut src, &mut dst, length, relay, &mut |b: &[u8]| {
            seen.extend_from_slice(b)
        })
        .await?;
        Ok((dst, seen))
    }

    #[tokio::test]
    async fn chunked_is_canonicalised() {
        let input = b"5;ext=1\r\nhello\r\n0006\r\n world\r\n0\r\nX-Trailer: a\r\n\r\n";
        let (out, seen) = relay_bytes(input, BodyLength::Chunked, false)
            .await
            .unwrap();
        assert_eq!(out, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        assert_eq!(seen, b"hello world");
        let (out, _) = relay_bytes(input, BodyLength::Chunked, true).await.unwrap();
        assert_eq!(out, b"hello world");
    }

    #[tokio::test]
    async fn chunked_split_at_every_point() {
        let input: &[u8] = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        for split in 1..input.len() {
            let (a, b) = input.split_at(split);
            let mut src = Reader::new(tokio::io::AsyncReadExt::chain(a, b), Side::Client);
            let mut dst = Vec::new();
            let relay = Relay {
                read_timeout: Duration::from_secs(1),
                dst_side: Side::Upstream,
                dechunk: false,
            };
            relay_body(
                &mut src,
                &mut dst,
                BodyLength::Chunked,
                relay,
                &mut |_: &[u8]| {},
            )
            .await
            .unwrap();
            assert_eq!(dst, input, "split at {split}");
        }
    }

    #[tokio::test]
    async fn malformed_chunks_are_refused() {
        for input in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
            b"5 junk\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"5\r\nhel",
            b"0\r\nbad trailer\r\n\r\n",
        ] {
            assert!(
                relay_bytes(input, BodyLength::Chunked, false)
                    .await
                    .is_err(),
                "{input:?}"
            );
        }
    }

    #[tokio::test]
    async fn fixed_and_until_close() {
        let (out, _) = relay_bytes(b"abcdef", BodyLength::Fixed(4), false)
            .await
            .unwrap();
        assert_eq!(out, b"abcd");
        assert!(
            relay_bytes(b"abc", BodyLength::Fixed(4), false)
                .await
                .is_err()
        );
        let (out, _) = relay_bytes(b"abcdef", BodyLength::UntilClose, false)
            .await
            .unwrap();
        assert_eq!(out, b"abcdef");
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1A"), Some(26));
        assert_eq!(parse_chunk_size(b"1a ; name=\"v\""), Some(26));
        assert_eq!(
            parse_chunk_size(b"fffffffffffffff"),
            Some(0xfff_ffff_ffff_ffff)
        );
        assert_eq!(parse_chunk_size(b"0000000000000000000005"), Some(5));
        assert_eq!(parse_chunk_size(b"1000000000000000"), None);
        assert_eq!(parse_chunk_size(b"1a\x00"), None);
        assert_eq!(parse_chunk_size(b""), None);
    }
}
