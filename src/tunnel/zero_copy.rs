//! One relay direction moved by splice(2) through a pipe, socket → pipe → socket, so the
//! bytes never enter user space (Linux only). Owns the order of the steps: wait until the
//! source is readable, fill the pipe, drain it completely into the destination (waiting
//! for writability as needed), and only then wait for more input; at end of input, pass
//! the half-close on. Readiness comes from tokio (`readable`/`writable` + `try_io`), so
//! a `WouldBlock` from either splice clears the right readiness and the task sleeps
//! until the kernel says otherwise. It says `Copy` when splicing is impossible here, and
//! the caller then relays with the copy loop instead.

use std::io;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};

use super::Meter;
use super::splice::{MIN_PIPE_SIZE, Pipe, unsupported};

/// How a spliced direction finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finish {
    /// The source ended, every byte reached the destination, and the destination's
    /// sending side was shut down.
    Done,
    /// Nothing was moved: no usable pipe, or these sockets cannot be spliced. The caller
    /// should relay this direction with the copy loop.
    Copy,
}

/// Relays `from` → `to` until `from` ends, counting each spliced chunk with `meter` once
/// it has reached `to`'s socket.
pub(super) async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    meter: &Meter<'_>,
) -> io::Result<Finish> {
    // The pipe is made only once there is something to move, so an idle or one-way
    // tunnel holds no pipe (and no pipe pages of the user's allowance) for that way.
    from.as_ref().readable().await?;
    let pipe = match Pipe::new() {
        Ok(pipe) if pipe.capacity() >= MIN_PIPE_SIZE => pipe,
        Ok(pipe) => {
            tracing::debug!(capacity = pipe.capacity(), "pipe too small; copying");
            return Ok(Finish::Copy);
        }
        Err(error) => {
            tracing::debug!(%error, "no pipe for splicing; copying");
            return Ok(Finish::Copy);
        }
    };
    let (source, sink) = (from.as_ref(), to.as_ref());
    let mut moved_any = false;
    // Under a bandwidth limit the pipe takes at most a chunk, paid for before it drains.
    let most = meter.chunk(pipe.capacity());
    loop {
        let filled = match fill(source, &pipe, most).await {
            Ok(0) => break,
            Ok(filled) => filled,
            Err(error) if !moved_any && unsupported(&error) => {
                tracing::debug!(%error, "socket cannot be spliced; copying");
                return Ok(Finish::Copy);
            }
            Err(error) => return Err(error),
        };
        moved_any = true;
        meter.pace(filled).await;
        drain(sink, &pipe, filled, meter).await?;
    }
    // Pass the half-close on: the other direction may still be sending.
    to.shutdown().await?;
    Ok(Finish::Done)
}

/// Waits until `source` has bytes (or EOF) and moves up to `most` of them into the
/// empty pipe. `Ok(0)` is end of input.
async fn fill(source: &TcpStream, pipe: &Pipe, most: usize) -> io::Result<usize> {
    loop {
        source.readable().await?;
        match source.try_io(Interest::READABLE, || pipe.fill_from(source, most)) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

/// Moves all `pending` bytes from the pipe into `sink`, waiting while its send buffer is
/// full. Bytes are counted as they land in the socket.
async fn drain(
    sink: &TcpStream,
    pipe: &Pipe,
    mut pending: usize,
    meter: &Meter<'_>,
) -> io::Result<()> {
    while pending > 0 {
        sink.writable().await?;
        match sink.try_io(Interest::WRITABLE, || pipe.drain_into(sink, pending)) {
            // The pipe still holds `pending` bytes and we hold its write end, so a
            // zero-byte splice would mean the kernel made no progress: do not spin on it.
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(moved) => {
                pending -= moved;
                meter.moved(moved);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Moves one message body `from` → `to` through a pipe: up to `limit` bytes (never more,
/// so `from` stays at the next message's first byte), or everything until `from` ends
/// when there is no limit. `None`: nothing was moved and splicing is impossible here (no
/// usable pipe, or sockets the kernel cannot splice); the caller copies instead. Each
/// wait for `from` is bounded by `read_timeout`; `to` is left open.
pub(super) async fn body(
    from: &TcpStream,
    to: &TcpStream,
    limit: Option<u64>,
    read_timeout: std::time::Duration,
    meter: &Meter<'_>,
) -> Result<Option<u64>, super::BodyFailure> {
    use super::BodyFailure::{Destination, Source};
    let pipe = match Pipe::new() {
        Ok(pipe) if pipe.capacity() >= MIN_PIPE_SIZE => pipe,
        _ => return Ok(None),
    };
    let most = meter.chunk(pipe.capacity());
    let mut moved: u64 = 0;
    loop {
        let want = match limit {
            Some(limit) if moved >= limit => break,
            Some(limit) => usize::try_from(limit - moved).map_or(most, |left| left.min(most)),
            None => most,
        };
        let filled = match tokio::time::timeout(read_timeout, fill(from, &pipe, want)).await {
            Err(_) => return Err(Source(io::ErrorKind::TimedOut.into())),
            Ok(Ok(0)) => break,
            Ok(Ok(filled)) => filled,
            Ok(Err(error)) if moved == 0 && unsupported(&error) => return Ok(None),
            Ok(Err(error)) => return Err(Source(error)),
        };
        meter.pace(filled).await;
        drain(to, &pipe, filled, meter).await.map_err(Destination)?;
        moved += filled as u64;
    }
    Ok(Some(moved))
}
