//! Two-way byte relays: CONNECT tunnels and upgraded (101) connections. Bytes are counted
//! each way as they are written, so the totals are right however the relay ends; a
//! half-close on one side is passed to the other, and a relay silent for the idle timeout
//! is closed.
//!
//! A user with a bandwidth limit brings a [`Pacer`]: each direction then moves at most
//! the pacer's chunk at a time and waits for the user's budget between reading and
//! writing, on the splice path as on the copy path. Splicing is kept for throttled users
//! (the pipe is filled with at most a chunk, and the chunk is paid for before it is
//! drained): falling back to copying would cost them CPU per byte for nothing, since
//! the pacer only needs to know how much moved, not to see the bytes.
//!
//! On Linux each direction is spliced through a kernel pipe (`zero_copy`, over the
//! system calls in `splice`), so tunnel bytes never pass through user space; where that
//! is impossible (no pipe to be had, sockets the kernel cannot splice) and on other
//! systems, a direction is copied through a user-space buffer instead.

pub mod hello;
#[cfg(target_os = "linux")]
mod splice;
#[cfg(target_os = "linux")]
mod zero_copy;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};

use crate::limits::Pacer;

/// Buffer per direction of the copy loop (the path where splicing is impossible). A
/// tunnel is a bulk transfer and fewer, larger writes cost less CPU per byte (see
/// docs/performance.md, "Copy-loop buffer" (S4)). On
/// Linux the buffer exists only once the direction has bytes and splicing was refused.
/// The bytes past [`SMALL_TUNNEL_CHUNK`] come from the buffer budget (`budget`).
pub const TUNNEL_CHUNK: usize = 256 * 1024;

/// The copy loop's buffer when the buffer budget is spent.
pub const SMALL_TUNNEL_CHUNK: usize = 64 * 1024;

/// Bytes relayed each way, and how the relay ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub client_to_upstream: u64,
    pub upstream_to_client: u64,
}

/// Which way bytes moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToUpstream,
    ToClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed their sending direction.
    Closed,
    /// A read or write failed on either side.
    Error,
    /// Nothing moved for the idle timeout.
    Idle,
    /// Cut by the caller's `cut` future (the end of the shutdown grace).
    Shutdown,
}

/// What the relay asks of each side: whether it is a bare TCP socket. Both bare: each
/// direction may move by splice(2). Anything else (TLS, say) is copied. This is the one
/// place that choice is made.
pub trait Splice {
    fn tcp(&mut self) -> Option<&mut TcpStream>;
}

impl Splice for TcpStream {
    fn tcp(&mut self) -> Option<&mut TcpStream> {
        Some(self)
    }
}

/// Why a spliced body stopped short.
#[derive(Debug)]
pub enum BodyFailure {
    /// Reading the source failed or timed out.
    Source(std::io::Error),
    /// Writing the destination failed (its reader went away).
    Destination(std::io::Error),
}

/// Moves the body of one message, whose head has been passed on already, from `from` to
/// `to`: up to `limit` bytes and never more (so `from` can carry the next message), or
/// until `from` ends when `limit` is `None`. Returns the bytes moved — fewer than
/// `limit` means `from` ended early — or `None` when nothing was moved because these
/// sides cannot be spliced (see [`Splice`], the same choice as the relay's: both bare
/// TCP sockets, on Linux), and the caller copies instead. `pacer`, under a bandwidth
/// limit, pays for each pipe-full before it is passed on, as in the relay.
pub async fn splice_body<F, T>(
    from: &mut F,
    to: &mut T,
    limit: Option<u64>,
    read_timeout: Duration,
    pacer: Option<&Pacer>,
) -> Result<Option<u64>, BodyFailure>
where
    F: Splice + ?Sized,
    T: Splice + ?Sized,
{
    #[cfg(target_os = "linux")]
    if let (Some(from), Some(to)) = (from.tcp(), to.tcp()) {
        let (total, last_activity) = (AtomicU64::new(0), AtomicU64::new(0));
        let meter = Meter::new(
            Direction::ToClient,
            &total,
            &last_activity,
            Instant::now(),
            &|_, _| {},
        )
        .paced(pacer);
        return zero_copy::body(from, to, limit, read_timeout, &meter).await;
    }
    let _ = (from, to, limit, read_timeout, pacer);
    Ok(None)
}

/// What ends a relay besides its two sides.
pub struct Stops<F> {
    /// Nothing moved for this long: [`End::Idle`].
    pub idle: Duration,
    /// Completes when the relay is to stop at once ([`End::Shutdown`]). It is polled
    /// beside the two directions on every wake-up, so it must be cheap to poll
    /// (`cut::Waiting`).
    pub cut: F,
}

/// Relays until both directions are done, one fails, or one of `stops` ends it.
/// `client_early` / `upstream_early` are bytes already read from each side; `on_bytes`
/// hears of every write as it happens, for live statistics; `pacer`, when the user's
/// bandwidth is limited, paces both directions from one budget.
pub async fn relay<C, U>(
    client: &mut C,
    client_early: Bytes,
    upstream: &mut U,
    upstream_early: Bytes,
    stops: Stops<impl Future<Output = ()>>,
    on_bytes: &(dyn Fn(Direction, u64) + Sync),
    pacer: Option<&Pacer>,
) -> (Totals, End)
where
    C: AsyncRead + AsyncWrite + Splice + Unpin,
    U: AsyncRead + AsyncWrite + Splice + Unpin,
{
    let start = Instant::now();
    let last_activity = AtomicU64::new(0);
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let meter_up =
        Meter::new(Direction::ToUpstream, &up, &last_activity, start, on_bytes).paced(pacer);
    let meter_down =
        Meter::new(Direction::ToClient, &down, &last_activity, start, on_bytes).paced(pacer);
    let Stops { idle, cut } = stops;
    let watch = (&last_activity, start, idle);
    tokio::pin!(cut);
    let end = if let (Some(client), Some(upstream)) = (client.tcp(), upstream.tcp()) {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        both_ways(
            pump_tcp(
                &mut client_read,
                &mut upstream_write,
                client_early,
                meter_up,
            ),
            pump_tcp(
                &mut upstream_read,
                &mut client_write,
                upstream_early,
                meter_down,
            ),
            watch,
            cut,
        )
        .await
    } else {
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
        both_ways(
            pump_copy(
                &mut client_read,
                &mut upstream_write,
                client_early,
                meter_up,
            ),
            pump_copy(
                &mut upstream_read,
                &mut client_write,
                upstream_early,
                meter_down,
            ),
            watch,
            cut,
        )
        .await
    };
    let totals = Totals {
        client_to_upstream: up.load(Ordering::Relaxed),
        upstream_to_client: down.load(Ordering::Relaxed),
    };
    (totals, end)
}

/// Runs both directions until both are done, one fails, nothing moved for the idle
/// timeout (`watch`: the last-activity clock, its start and the timeout), or `cut`
/// completes.
async fn both_ways(
    to_upstream: impl Future<Output = std::io::Result<()>>,
    to_client: impl Future<Output = std::io::Result<()>>,
    (last_activity, start, idle): (&AtomicU64, Instant, Duration),
    mut cut: Pin<&mut impl Future<Output = ()>>,
) -> End {
    tokio::pin!(to_upstream, to_client);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        tokio::select! {
            result = &mut to_upstream, if !up_done => match result {
                Ok(()) => up_done = true,
                Err(_) => return End::Error,
            },
            result = &mut to_client, if !down_done => match result {
                Ok(()) => down_done = true,
                Err(_) => return End::Error,
            },
            () = idle_expired(last_activity, start, idle) => return End::Idle,
            () = cut.as_mut() => return End::Shutdown,
        }
        if up_done && down_done {
            return End::Closed;
        }
    }
}

/// Counts one direction's bytes and notes the time of the last movement.
struct Meter<'a> {
    direction: Direction,
    total: &'a AtomicU64,
    last_activity: &'a AtomicU64,
    start: Instant,
    on_bytes: &'a (dyn Fn(Direction, u64) + Sync),
    pacer: Option<&'a Pacer>,
}

impl<'a> Meter<'a> {
    fn new(
        direction: Direction,
        total: &'a AtomicU64,
        last_activity: &'a AtomicU64,
        start: Instant,
        on_bytes: &'a (dyn Fn(Direction, u64) + Sync),
    ) -> Meter<'a> {
        Meter {
            direction,
            total,
            last_activity,
            start,
            on_bytes,
            pacer: None,
        }
    }

    fn paced(self, pacer: Option<&'a Pacer>) -> Meter<'a> {
        Meter { pacer, ..self }
    }

    /// The most to read before the next write: `room`, or less under a bandwidth limit.
    fn chunk(&self, room: usize) -> usize {
        match self.pacer {
            Some(pacer) => room.min(pacer.chunk()),
            None => room,
        }
    }

    /// Waits until `bytes` may be written (at once without a bandwidth limit).
    async fn pace(&self, bytes: usize) {
        if let Some(pacer) = self.pacer {
            pacer.acquire(bytes).await;
        }
    }

    fn moved(&self, bytes: usize) {
        self.total.fetch_add(bytes as u64, Ordering::Relaxed);
        (self.on_bytes)(self.direction, bytes as u64);
        let now = self.start.elapsed().as_millis() as u64;
        self.last_activity.store(now, Ordering::Relaxed);
    }
}

/// Relays one direction between two TCP sockets: the early bytes first, with plain
/// writes, then small messages by copying and bulk by splicing (Linux), until `from`
/// ends; the half-close is then passed on to `to`.
async fn pump_tcp(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    early: Bytes,
    meter: Meter<'_>,
) -> std::io::Result<()> {
    write_early(to, early, &meter).await?;
    #[cfg(target_os = "linux")]
    {
        if copy_small(from, to, &meter).await? == Copied::Ended {
            return Ok(());
        }
        if zero_copy::pump(from, to, &meter).await? == zero_copy::Finish::Done {
            return Ok(());
        }
    }
    copy(from, to, &meter).await
}

/// Relays one direction by copying: the early bytes, then everything `from` sends.
async fn pump_copy<R, W>(
    from: &mut R,
    to: &mut W,
    early: Bytes,
    meter: Meter<'_>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    write_early(to, early, &meter).await?;
    copy(from, to, &meter).await
}

async fn write_early<W: AsyncWrite + Unpin>(
    to: &mut W,
    early: Bytes,
    meter: &Meter<'_>,
) -> std::io::Result<()> {
    for piece in early.chunks(meter.chunk(early.len()).max(1)) {
        meter.pace(piece.len()).await;
        to.write_all(piece).await?;
        meter.moved(piece.len());
    }
    Ok(())
}

/// Reads of this size carry a direction while its messages are small (TLS records,
/// requests): for those a splice through a pipe costs more than a copy. A read that fills
/// it marks the direction as bulk, which from then on moves by splice.
#[cfg(target_os = "linux")]
const SMALL_READ: usize = 16 * 1024;

#[cfg(target_os = "linux")]
#[derive(Debug, PartialEq, Eq)]
enum Copied {
    /// The source ended and the half-close was passed on.
    Ended,
    /// A read filled the buffer: the rest is bulk.
    Bulk,
}

/// Copies while reads come back smaller than [`SMALL_READ`].
#[cfg(target_os = "linux")]
async fn copy_small(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    meter: &Meter<'_>,
) -> std::io::Result<Copied> {
    // No buffer until there is something to read: an idle tunnel holds none.
    from.as_ref().readable().await?;
    let mut buf = vec![0u8; meter.chunk(SMALL_READ)];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(Copied::Ended);
        }
        meter.pace(n).await;
        to.write_all(&buf[..n]).await?;
        meter.moved(n);
        if n == buf.len() {
            return Ok(Copied::Bulk);
        }
    }
}

/// The portable relay: read into a user-space buffer, write it out.
async fn copy<R, W>(from: &mut R, to: &mut W, meter: &Meter<'_>) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let lease = crate::budget::global().lease(TUNNEL_CHUNK - SMALL_TUNNEL_CHUNK);
    let size = lease.as_ref().map_or(SMALL_TUNNEL_CHUNK, |_| TUNNEL_CHUNK);
    let mut buf = vec![0u8; meter.chunk(size)];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // Pass the half-close on: the other direction may still be sending.
            return to.shutdown().await;
        }
        meter.pace(n).await;
        to.write_all(&buf[..n]).await?;
        meter.moved(n);
    }
}

/// Completes once no byte has moved for `idle`.
async fn idle_expired(last_activity: &AtomicU64, start: Instant, idle: Duration) {
    loop {
        let last = Duration::from_millis(last_activity.load(Ordering::Relaxed));
        let deadline = start + last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

#[cfg(test)]
mod tests;
