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
//! for its `READY=1` on one end of a socket pair whose other end the successor inherits,
//! as the descriptor after the listeners ([`HANDOVER_NOTIFY_ENV`] names its number).
//! Nothing else can write to an unnamed pair: an abstract socket, as used before, is
//! listed in /proc/net/unix for every local user to find and send a forged `READY=1`
//! to, which made the old process drain while the real successor failed (issue #29).
//! The successor also starts with SIGHUP and SIGUSR2 held (blocked), so that one
//! arriving while it loads its files waits for its handlers instead of ending it
//! (`signals`). `main` reads the environment; this module takes the values.

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::time::Duration;

/// Where a successor sends its `READY=1` (besides `$NOTIFY_SOCKET`): the number of the
/// inherited descriptor, or (from a predecessor older than the socket pair) `@name`, an
/// abstract socket.
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
    let option = |name| socket_option(fd, name);
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
    /// starts) and `notify`, its end of the readiness pair, as the descriptor after them
    /// ([`HANDOVER_NOTIFY_ENV`]); SIGHUP and SIGUSR2 are held until it has handlers.
    pub fn spawn(
        &self,
        sockets: &Sockets,
        notify: BorrowedFd<'_>,
    ) -> std::io::Result<std::process::Child> {
        let all: Vec<&OwnedFd> = sockets.listeners.iter().chain(&sockets.metrics).collect();
        let count = RawFd::try_from(all.len()).unwrap_or(RawFd::MAX);
        let notify_target = FIRST_FD + count;
        // Copies above every target number, so setting up 3.. in the child never
        // overwrites a source; close-on-exec, so only the targets survive the exec.
        let high = all
            .iter()
            .map(|fd| fd.as_raw_fd())
            .chain([notify.as_raw_fd()])
            .map(|fd| duplicate_above(fd, notify_target + 1))
            .collect::<std::io::Result<Vec<OwnedFd>>>()?;
        let raw: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
        let held = super::signals::startup_set();
        let mut names = vec![LISTENER_NAME; sockets.listeners.len()];
        names.extend(sockets.metrics.as_ref().map(|_| METRICS_NAME));
        let mut command = std::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env("LISTEN_FDS", count.to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID")
            .env(HANDOVER_NOTIFY_ENV, notify_target.to_string());
        // SAFETY: only dup2 and sigprocmask, both async-signal-safe, run between fork and
        // exec.
        unsafe {
            command.pre_exec(move || {
                for (target, source) in (FIRST_FD..).zip(&raw) {
                    if libc::dup2(*source, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::sigprocmask(libc::SIG_BLOCK, &raw const held, std::ptr::null_mut()) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn();
        drop(high);
        child
    }
}

/// Tells the process that started this one that it is ready: `READY=1` on the inherited
/// descriptor `notify` names (which is then closed), or to the abstract socket of a
/// predecessor from before the socket pair (`@name`). A number that is not an inherited
/// unix datagram socket is refused, not written to.
pub fn tell_predecessor(notify: &std::ffi::OsStr) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let text = notify.to_str().unwrap_or_default();
    if text.starts_with('@') {
        return super::notify::send_to(notify, "READY=1");
    }
    let fd: RawFd = text
        .parse()
        .ok()
        .filter(|fd| *fd >= FIRST_FD)
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("{notify:?}")))?;
    if socket_option(fd, libc::SO_DOMAIN) != Some(libc::AF_UNIX)
        || socket_option(fd, libc::SO_TYPE) != Some(libc::SOCK_DGRAM)
    {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("descriptor {fd} is not the handover's socket"),
        ));
    }
    // SAFETY: fd is an open unix datagram socket (checked above) that the predecessor
    // passed to this process and nothing else here owns; it is closed once used.
    let socket = unsafe { std::os::unix::net::UnixDatagram::from_raw_fd(fd) };
    socket.send(b"READY=1").map(drop)
}

/// The integer socket option `name` of descriptor `fd`; `None` when it is no socket.
fn socket_option(fd: RawFd, name: libc::c_int) -> Option<libc::c_int> {
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
