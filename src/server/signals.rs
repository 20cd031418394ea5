//! Signals held while the process starts. SIGHUP (reload) and SIGUSR2 (hand over) end a
//! process by default, and their handlers exist only once the runtime is up and the
//! files are loaded; one that arrived in between — a `systemctl reload` racing a
//! successor's start, say — killed it (issue #29). So `main` blocks both first thing, and
//! unblocks them once the handlers are installed: a signal that came meanwhile stays
//! pending and is then handled like any later one (a reload after the load, not lost).
//! A successor inherits the block from the process that starts it (`handover`), which
//! covers the moment between its exec and its first line.
//!
//! SIGTERM and SIGINT are not held: a process asked to stop while it starts may stop.
//!
//! The signal mask is per thread and threads inherit it: blocking before any thread is
//! made holds the signals everywhere; unblocking on the thread that runs `main` (the one
//! driving the runtime) leaves them one thread to be delivered to, which is all that
//! the handlers need.

/// SIGHUP and SIGUSR2.
pub(super) fn startup_set() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset initialise and fill the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGHUP);
        libc::sigaddset(&raw mut set, libc::SIGUSR2);
        set
    }
}

/// Blocks SIGHUP and SIGUSR2 on the calling thread and every thread it makes from now
/// on; call first thing in `main`, before any thread exists.
pub fn hold_startup_signals() {
    mask(libc::SIG_BLOCK);
}

/// Unblocks them on the calling thread, once their handlers are installed; one that
/// arrived meanwhile is delivered now.
pub fn release_startup_signals() {
    mask(libc::SIG_UNBLOCK);
}

fn mask(how: libc::c_int) {
    let set = startup_set();
    // SAFETY: pthread_sigmask reads the set we pass and writes nothing back (null).
    let rc = unsafe { libc::pthread_sigmask(how, &raw const set, std::ptr::null_mut()) };
    if rc != 0 {
        tracing::warn!(
            error = %std::io::Error::from_raw_os_error(rc),
            "cannot change the signal mask"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a thread of its own (the mask is per thread): held, a SIGHUP sent to that
    /// thread stays pending instead of ending the test binary; released with a handler
    /// installed, it is delivered.
    #[test]
    fn a_held_sighup_waits_for_its_handler() {
        std::thread::spawn(|| {
            hold_startup_signals();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                // SAFETY: pthread_kill to this very thread with a held signal.
                unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGHUP) };
                let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
                // SAFETY: sigpending fills the set we own.
                unsafe { libc::sigpending(&raw mut pending) };
                // SAFETY: sigismember reads the set.
                assert_eq!(
                    unsafe { libc::sigismember(&raw const pending, libc::SIGHUP) },
                    1
                );
                let mut hangups =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
                release_startup_signals();
                let delivered =
                    tokio::time::timeout(std::time::Duration::from_secs(5), hangups.recv());
                assert!(delivered.await.is_ok(), "the held SIGHUP was not delivered");
            });
        })
        .join()
        .unwrap();
    }
}
