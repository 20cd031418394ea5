//! When the server stops accepting, and what it tells the outside first.
//!
//! `SIGTERM`/`SIGINT`: turn not-ready (`/readyz` 503, `STOPPING=1` to systemd), keep
//! accepting for the drain delay so a load balancer's health check takes the instance
//! out, then stop; the server drains. `SIGUSR2`: start a successor on the same listening
//! sockets (`handover`), wait for its `READY=1` on a socket pair only it holds the other
//! end of, tell systemd it is the main process now, and stop accepting; a successor
//! that fails or is too slow is stopped and this process carries on serving.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::handover::{HANDOVER_TIMEOUT, Sockets, Successor};
use super::notify::Notifier;
use crate::health::Health;

/// Why accepting stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM or SIGINT, after the drain delay.
    Terminated,
    /// A successor took the listening sockets over.
    HandedOver,
}

/// What the life of a serving process needs besides the server itself.
#[derive(Debug)]
pub struct Lifecycle {
    pub health: Health,
    pub notifier: Notifier,
    /// How long to keep accepting after turning not-ready on SIGTERM.
    pub drain_delay: Duration,
    /// What SIGUSR2 starts and hands the sockets to; `None`: SIGUSR2 is logged and ignored.
    pub handover: Option<(Successor, Sockets)>,
    /// Installed by [`Lifecycle::new`], before anything is announced: a signal that came
    /// earlier would take its default action (end the process) instead.
    signals: Option<Signals>,
}

/// SIGINT, SIGTERM and SIGUSR2, in that order.
#[derive(Debug)]
struct Signals(Signal, Signal, Signal);

impl Lifecycle {
    /// Installs the signal handlers at once; call inside the runtime, before the
    /// listeners are announced.
    pub fn new(
        health: Health,
        notifier: Notifier,
        drain_delay: Duration,
        handover: Option<(Successor, Sockets)>,
    ) -> Lifecycle {
        let signals = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::user_defined2()),
        ) {
            (Ok(interrupt), Ok(terminate), Ok(usr2)) => Some(Signals(interrupt, terminate, usr2)),
            _ => None,
        };
        Lifecycle {
            health,
            notifier,
            drain_delay,
            handover,
            signals,
        }
    }

    /// Listeners bound and the policy loaded: ready, and say so.
    pub fn ready(&self, handover_notify: Option<&std::ffi::OsStr>) {
        self.health.set_ready();
        self.notifier.send("READY=1");
        if let Some(address) = handover_notify
            && let Err(error) = super::handover::tell_predecessor(address)
        {
            tracing::warn!(%error, "cannot tell the previous process we are ready");
        }
    }

    /// Completes when the server should stop accepting, and says why.
    pub async fn until_stop(mut self) -> Stop {
        let Some(Signals(mut interrupt, mut terminate, mut usr2)) = self.signals.take() else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
                _ = usr2.recv() => {
                    if self.hand_over().await {
                        return Stop::HandedOver;
                    }
                }
            }
        }
        self.health.set_draining();
        self.notifier.send("STOPPING=1");
        if !self.drain_delay.is_zero() {
            tracing::info!(
                "not ready; still accepting for {:?} (drain delay)",
                self.drain_delay
            );
            // A second signal cuts the delay short.
            tokio::select! {
                () = tokio::time::sleep(self.drain_delay) => {}
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        Stop::Terminated
    }

    /// Starts the successor and waits for its `READY=1`; `true` once it has taken over.
    async fn hand_over(&self) -> bool {
        let Some((successor, sockets)) = &self.handover else {
            tracing::warn!("SIGUSR2: handing over is not available here");
            return false;
        };
        match start_successor(successor, sockets).await {
            Ok(pid) => {
                tracing::info!(pid, "handed the listeners over; draining");
                self.health.set_draining();
                self.notifier.send(&format!("MAINPID={pid}"));
                true
            }
            Err(reason) => {
                tracing::error!("SIGUSR2: handover failed, still serving: {reason}");
                false
            }
        }
    }
}

/// Spawns the successor and waits for its `READY=1` on the socket pair it inherits the
/// other end of (no other process can write to it); its pid when it came.
async fn start_successor(successor: &Successor, sockets: &Sockets) -> Result<u32, String> {
    let (ours, theirs) =
        std::os::unix::net::UnixDatagram::pair().map_err(|e| format!("notify socket: {e}"))?;
    let ready = ours
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixDatagram::from_std(ours))
        .map_err(|error| format!("notify socket: {error}"))?;
    let spawned = successor.spawn(sockets, std::os::fd::AsFd::as_fd(&theirs));
    // The successor holds its end now; ours would only keep the pair alive.
    drop(theirs);
    let mut child = spawned
        .map_err(|error| format!("cannot start {}: {error}", successor.program.display()))?;
    let pid = child.id();
    tracing::info!(
        pid,
        "SIGUSR2: started a successor; waiting for it to be ready"
    );
    let outcome = tokio::time::timeout(HANDOVER_TIMEOUT, async {
        let mut buffer = [0u8; 256];
        loop {
            tokio::select! {
                received = ready.recv(&mut buffer) => {
                    let Ok(n) = received else { continue };
                    if buffer[..n].split(|b| *b == b'\n').any(|line| line == b"READY=1") {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep(EXIT_POLL) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(format!("the successor exited first ({status})"));
                    }
                }
            }
        }
    })
    .await;
    match outcome {
        Ok(Ok(())) => Ok(pid),
        Ok(Err(reason)) => Err(reason),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "no READY=1 within {HANDOVER_TIMEOUT:?}; successor stopped"
            ))
        }
    }
}

/// How often to look whether the successor died while waiting for it.
const EXIT_POLL: Duration = Duration::from_millis(100);
