//! A writer that adds what it writes to a count as it goes: a response's bytes reach the
//! exchange's notes while they move, so a response cut off mid-body (its task dropped at
//! the end of the shutdown grace) is recorded with what it had carried.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

pub(super) struct Tallied<'a, W> {
    pub inner: W,
    pub tally: &'a mut u64,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Tallied<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        *this.tally += written as u64;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
