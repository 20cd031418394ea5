//! Listening sockets passed from one process to the next, so a restart or an upgrade
//! refuses no connection: both processes hold the same kernel socket, so connections
//! waiting in its accept queue are taken by whichever accepts next, and none is reset
//! when the old process lets go. (With `SO_REUSEPORT` each process has its own socket
//! and queue, and connections queued in the old one are reset when it closes: see
//! docs/deployment.md for the measurement.)
//!
//! Receiving follows systemd's socket-activation convention (sd_listen_fds(3)): the
//! sockets are descriptors 3, 4, … `LISTEN_FDS` of them, named by `LISTEN_FDNAMES`
//! (`metrics` is the metrics listener, any other name a proxy listener, in order), for
//! this process when `LISTEN_PID` is unset or names it. Handing over (SIGUSR2) starts
//! the same program with the same arguments and the sockets set up that way, and waits
//! for its `READY=1` on a private abstract socket named by [`HANDOVER_NOTIFY_ENV`].
//! `main` reads the environment; this module takes the values.

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::time::Duration;

/// Where a successor sends its `READY=1` (besides `$NOTIFY_SOCKET`).
pub const HANDOVER_NOTIFY_ENV: &str = "PROXY_SERVER_HANDOVER_NOTIFY";
/// The name of the metrics listener's descriptor in `LISTEN_FDNAMES`.
pub const METRICS_NAME: &str = "metrics";
/// The name given to proxy listeners' descriptors when handing over.
const LISTENER_NAME: &str = "proxy";
/// The first passed descriptor (after stdin, stdout, stderr), by the convention.
const FIRST_FD: RawFd = 3;
/// How long a successor may take to bind nothing, load its files and say it is ready
/// before the handover is called off (and the successor stopped).
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment values the convention uses, as `main` read them.
#[derive(Debug, Default, Clone)]
pub struct ListenEnv {
    pub fds: Option<String>,
    pub pid: Option<String>,
    pub names: Option<String>,
}

/// Sockets received from a service manager or a predecessor.
#[derive(Debug)]
pub struct Inherited {
    /// The proxy listeners, in the configuration's order.
    pub listeners: Vec<TcpListener>,
    pub metrics: Option<TcpListener>,
}

/// The sockets `env` passes to this process, or `None` when it passes none. `wanted` is
/// the number of proxy listeners the configuration has; a different number is an error,
/// as is a descriptor that is not a listening TCP socket.
pub fn inherit(env: &ListenEnv, wanted: usize) -> Result<Option<Inherited>, String> {
    let Some(count) = env.fds.as_deref() else {
        return Ok(None);
    };
    if let Some(pid) = env.pid.as_deref()
        && pid.trim() != std::process::id().to_string()
    {
        return Ok(None);
    }
    let count: RawFd = count
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS: expected a number, got {count:?}"))?;
    let names: Vec<&str> = env
        .names
        .as_deref()
        .map_or(Vec::new(), |n| n.split(':').collect());
    let mut inherited = Inherited {
        listeners: Vec::new(),
        metrics: None,
    };
    for i in 0..count {
        let fd = FIRST_FD + i;
        let listener = take_listener(fd)?;
        let is_metrics = match names.get(usize::try_from(i).unwrap_or(usize::MAX)) {
            Some(name) => *name == METRICS_NAME,
            None => names.is_empty() && inherited.listeners.len() == wanted,
        };
        if is_metrics && inherited.metrics.is_none() {
            inherited.metrics = Some(listener);
        } else {
            inherited.listeners.push(listener);
        }
    }
    if inherited.listeners.len() != wanted {
        return Err(format!(
            "LISTEN_FDS: {} listening sockets passed, the configuration has {wanted} listeners",
            inherited.listeners.len()
        ));
    }
    Ok(Some(inherited))
}

/// Descriptor `fd` as a listener, once checked to be a listening TCP socket; marked
/// close-on-exec so it reaches no other program unless handed over again.
fn take_listener(fd: RawFd) -> Result<TcpListener, String> {
    let option = |name| {
        let mut value: libc::c_int = 0;
        let mut len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
        // SAFETY: getsockopt writes at most `len` bytes into `value`; a bad fd is an error.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&raw mut value).cast(),
                &raw mut len,
            )
        };
        (rc == 0).then_some(value)
    };
    let tcp = matches!(
        option(libc::SO_DOMAIN),
        Some(libc::AF_INET | libc::AF_INET6)
    ) && option(libc::SO_TYPE) == Some(libc::SOCK_STREAM);
    if !tcp || option(libc::SO_ACCEPTCONN) != Some(1) {
        return Err(format!(
            "LISTEN_FDS: descriptor {fd} is not a listening TCP socket"
        ));
    }
    // SAFETY: fd is an open socket (getsockopt succeeded) that the convention gives to
    // this process; nothing else in it owns descriptors 3.. at start.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    // SAFETY: F_SETFD on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    listener
        .set_nonblocking(true)
        .map_err(|error| format!("LISTEN_FDS: descriptor {fd}: {error}"))?;
    Ok(listener)
}

/// What to start when handing over: this program, as it was started.
#[derive(Debug, Clone)]
pub struct Successor {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// The sockets to hand over: duplicates of the proxy listeners (in order) and of the
/// metrics listener, taken at start.
#[derive(Debug, Default)]
pub struct Sockets {
    pub listeners: Vec<OwnedFd>,
    pub metrics: Option<OwnedFd>,
}

impl Sockets {
    /// Copies of the descriptors of `listeners` and `metrics`, kept to hand over.
    pub fn of(
        listeners: &[tokio::net::TcpListener],
        metrics: Option<&tokio::net::TcpListener>,
    ) -> Sockets {
        Sockets {
            listeners: listeners.iter().filter_map(duplicate).collect(),
            metrics: metrics.and_then(duplicate),
        }
    }
}

/// A copy of `socket`'s descriptor, kept to hand over on SIGUSR2.
fn duplicate(socket: &tokio::net::TcpListener) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd as _;
    socket.as_fd().try_clone_to_owned().ok()
}

impl Successor {
    /// Starts the successor with `sockets` as descriptors 3, 4, … (`LISTEN_FDS`,
    /// `LISTEN_FDNAMES`; `LISTEN_PID` removed, as the child's pid is not known before it
    /// starts), told to report `READY=1` to the abstract socket `notify`.
    pub fn spawn(&self, sockets: &Sockets, notify: &str) -> std::io::Result<std::process::Child> {
        let all: Vec<&OwnedFd> = sockets.listeners.iter().chain(&sockets.metrics).collect();
        let count = RawFd::try_from(all.len()).unwrap_or(RawFd::MAX);
        // Copies above every target number, so setting up 3.. in the child never
        // overwrites a source; close-on-exec, so only the targets survive the exec.
        let high = all
            .iter()
            .map(|fd| duplicate_above(fd.as_raw_fd(), FIRST_FD + count))
            .collect::<std::io::Result<Vec<OwnedFd>>>()?;
        let raw: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
        let mut names = vec![LISTENER_NAME; sockets.listeners.len()];
        names.extend(sockets.metrics.as_ref().map(|_| METRICS_NAME));
        let mut command = std::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env("LISTEN_FDS", count.to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID")
            .env(HANDOVER_NOTIFY_ENV, notify);
        // SAFETY: only dup2, which is async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                for (target, source) in (FIRST_FD..).zip(&raw) {
                    if libc::dup2(*source, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn();
        drop(high);
        child
    }
}

/// A close-on-exec duplicate of `fd` numbered `min` or higher.
fn duplicate_above(fd: RawFd, min: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor we hold open returns a new one.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_fds_or_another_pid_inherit_nothing() {
        assert!(inherit(&ListenEnv::default(), 1).unwrap().is_none());
        let other = ListenEnv {
            fds: Some("2".into()),
            pid: Some("1".into()),
            names: None,
        };
        assert!(inherit(&other, 1).unwrap().is_none());
        let bad = ListenEnv {
            fds: Some("two".into()),
            ..ListenEnv::default()
        };
        assert!(inherit(&bad, 1).unwrap_err().contains("LISTEN_FDS"));
    }
}
