//! Bandwidth: one byte bucket per user shared by all their connections, tunnels and
//! bodies, both directions. A transfer reads at most [`Pacer::chunk`] bytes, waits until
//! the bucket has them ([`Pacer::acquire`]), then writes them: over the limit the
//! transfer slows down and TCP flow control slows the sender, nothing fails.
//! [`Paced`] does the same for anything written through an `AsyncWrite` (forwarded
//! bodies); the tunnel relay asks the pacer itself, on its copy and splice paths alike.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;
use tokio::time::Instant;

use super::bucket::Bucket;
use super::keyed::Settle;
use crate::stats::{ActiveGuard, Limit, Stats, Throttled};

/// A full bucket holds this fraction of a second's bytes: small enough that a
/// measurement over a few seconds sees the rate, not the burst; large enough that a
/// paced transfer wakes at most about eight times a second.
const BURST_PER_SECOND: u64 = 8;

/// The smallest burst: below it each wake-up would move too little to be worth it.
const MIN_BURST: u64 = 16 * 1024;

/// One user's bandwidth: the bucket, and how many of their transfers wait on it now
/// (with the "throttled users" gauge held up while any does).
pub(super) struct Throttle {
    bucket: Bucket,
    burst: usize,
    stats: Arc<Stats>,
    waiting: Mutex<(u32, Option<ActiveGuard<Throttled>>)>,
}

impl Throttle {
    pub(super) fn new(rate: u64, stats: Arc<Stats>) -> Throttle {
        let burst = (rate / BURST_PER_SECOND).max(MIN_BURST);
        Throttle {
            bucket: Bucket::new(rate, burst),
            burst: usize::try_from(burst).unwrap_or(usize::MAX),
            stats,
            waiting: Mutex::new((0, None)),
        }
    }

    fn start_waiting(&self) {
        self.stats.limited(Limit::Bandwidth);
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.0 += 1;
        if waiting.0 == 1 {
            waiting.1 = Some(self.stats.user_throttled());
        }
    }

    fn stop_waiting(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.0 = waiting.0.saturating_sub(1);
        if waiting.0 == 0 {
            waiting.1 = None;
        }
    }
}

impl Settle for Throttle {
    fn settled(&self, since: Instant, now: Instant) -> bool {
        self.bucket.settled(since, now)
    }
}

/// One transfer's waiting, counted while it lasts (an RAII guard: a transfer dropped
/// mid-wait stops counting).
struct Waiting<'a>(&'a Throttle);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.stop_waiting();
    }
}

/// A handle on one user's bandwidth, for a transfer; cheap to clone.
#[derive(Clone)]
pub struct Pacer {
    throttle: Arc<Throttle>,
}

impl Pacer {
    pub(super) fn new(throttle: Arc<Throttle>) -> Pacer {
        Pacer { throttle }
    }

    /// The most a transfer should move between two calls to [`acquire`](Self::acquire).
    pub fn chunk(&self) -> usize {
        self.throttle.burst
    }

    /// Waits until the user's bucket holds `bytes` (at most [`chunk`](Self::chunk)
    /// count), and takes them.
    pub async fn acquire(&self, bytes: usize) {
        let throttle = &*self.throttle;
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let mut waiting = None;
        while let Err(at) = throttle.bucket.take(bytes) {
            if waiting.is_none() {
                throttle.start_waiting();
                waiting = Some(Waiting(throttle));
            }
            tokio::time::sleep_until(at).await;
        }
    }
}

type Acquiring = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A writer that passes at most what the user's bucket allows, or everything when there
/// is no pacer. Bytes are paid for before they are written; a write the inner writer
/// takes only in part uses the rest of what was paid next time.
pub struct Paced<'a, W> {
    inner: &'a mut W,
    pacer: Option<Pacer>,
    /// Bytes paid for and not yet written.
    credit: usize,
    acquiring: Option<(Acquiring, usize)>,
}

impl<'a, W> Paced<'a, W> {
    pub fn new(inner: &'a mut W, pacer: Option<Pacer>) -> Paced<'a, W> {
        Paced {
            inner,
            pacer,
            credit: 0,
            acquiring: None,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Paced<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(pacer) = &this.pacer else {
            return Pin::new(&mut *this.inner).poll_write(cx, buf);
        };
        if this.credit == 0 && !buf.is_empty() {
            let (acquiring, bytes) = this.acquiring.get_or_insert_with(|| {
                let bytes = buf.len().min(pacer.chunk());
                let pacer = pacer.clone();
                (Box::pin(async move { pacer.acquire(bytes).await }), bytes)
            });
            ready!(acquiring.as_mut().poll(cx));
            this.credit = *bytes;
            this.acquiring = None;
        }
        let allowed = buf.len().min(this.credit);
        let written = ready!(Pin::new(&mut *this.inner).poll_write(cx, &buf[..allowed]))?;
        this.credit -= written;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}
