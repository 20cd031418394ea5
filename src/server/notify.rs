//! systemd's readiness protocol (sd_notify(3)): one datagram per state change
//! (`READY=1`, `STOPPING=1`, `MAINPID=…`) to the unix socket `$NOTIFY_SOCKET` names — a
//! path, or `@name` in the abstract namespace. Best effort: without a socket, or when
//! the send fails, the proxy serves as before (a debug line says why).
//!
//! Why not a crate (`sd-notify`, `libsystemd`): the protocol is one `sendto`, and the
//! same code also carries a successor's `READY=1` to the process handing over to it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// Where state changes go; the address comes from the environment, read by `main`.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    address: Option<OsString>,
}

impl Notifier {
    /// A notifier for `address` (`$NOTIFY_SOCKET`'s value); `None` or empty: silent.
    pub fn new(address: Option<OsString>) -> Notifier {
        Notifier {
            address: address.filter(|a| !a.is_empty()),
        }
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines) if there is a socket.
    pub fn send(&self, state: &str) {
        let Some(address) = &self.address else { return };
        if let Err(error) = send_to(address, state) {
            tracing::debug!(%error, state, "cannot notify the service manager");
        }
    }
}

/// One datagram holding `state` to `address`.
pub fn send_to(address: &OsStr, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    match address.as_bytes().strip_prefix(b"@") {
        Some(name) => send_abstract(&socket, name, state),
        None => socket
            .send_to(state.as_bytes(), Path::new(address))
            .map(drop),
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], state: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt as _;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(state.as_bytes(), &address).map(drop)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets are Linux-only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        Notifier::new(Some(path.clone().into_os_string())).send("READY=1");
        let mut buffer = [0u8; 64];
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");
        // No socket: nothing happens, nothing fails.
        Notifier::new(None).send("READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
