//! The end of the shutdown grace: what still runs then — tunnels, upgraded connections —
//! is cut, and ends through its normal path, so its exchange is recorded with the bytes
//! it carried and [`LABEL`] as its failure. (Before, the process exited with those tasks
//! still running and the runtime dropped them: no access-log line at all, issue #29.)
//!
//! A relay polls [`Cut::wait`] beside its two directions on every wake-up, so the
//! future is made cheap to poll: one atomic load, and a waker comparison. Tokio's
//! `Notified` alone would take the `Notify`'s lock on every poll while it waits — one
//! lock shared by every tunnel, taken per chunk relayed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// The failure label of an exchange cut at the end of the grace (logs, top lists).
pub const LABEL: &str = "shutdown";

/// The signal: a flag, and a wake-up for those waiting on it.
#[derive(Debug, Default)]
pub struct Cut {
    started: AtomicBool,
    wake: Notify,
}

impl Cut {
    /// Cuts: every [`Cut::wait`], made before or after, completes.
    pub fn start(&self) {
        self.started.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// Completes once [`Cut::start`] has been called.
    pub fn wait(&self) -> Waiting<'_> {
        Waiting {
            started: &self.started,
            notified: self.wake.notified(),
            registered: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// [`Cut::wait`]'s future. It registers with the `Notify` on its first poll (and
    /// again only if polled from another task); later polls look at the flag alone.
    pub struct Waiting<'a> {
        started: &'a AtomicBool,
        #[pin]
        notified: Notified<'a>,
        registered: Option<Waker>,
    }
}

impl Future for Waiting<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        // Set before `notify_waiters` wakes us, so a wake-up from it finds it set.
        if this.started.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        // `notified` counts a `notify_waiters` made since it was created, so a cut
        // between the flag's load and this registration is not missed.
        if this.notified.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        *this.registered = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_made_before_and_after_the_cut_complete() {
        let cut = std::sync::Arc::new(Cut::default());
        let early = {
            let cut = std::sync::Arc::clone(&cut);
            tokio::spawn(async move { cut.wait().await })
        };
        tokio::task::yield_now().await;
        let pending = tokio::time::timeout(Duration::from_millis(20), cut.wait()).await;
        assert!(pending.is_err(), "completed before the cut");
        cut.start();
        tokio::time::timeout(Duration::from_secs(5), early)
            .await
            .expect("a waiter from before the cut woke")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), cut.wait())
            .await
            .expect("a waiter made after the cut completes at once");
    }
}
