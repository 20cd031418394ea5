//! The crate's only `unsafe`: a kernel pipe and the two splice(2) calls that move bytes
//! socket → pipe → socket without copying them through user space (Linux only). This
//! module makes single non-blocking system calls and reports what they did; waiting for
//! readiness, counting and falling back belong to the caller (`tunnel::zero_copy`).
//!
//! Every call here takes descriptors the caller owns and keeps open for the call's
//! duration (`AsRawFd` of a borrowed socket, the pipe's own `OwnedFd`s), and passes no
//! user-space buffer, so the kernel never writes into Rust memory.
//!
//! Unlike `send`, splice(2) has no `MSG_NOSIGNAL`: splicing into a socket whose peer has
//! gone raises SIGPIPE as well as returning EPIPE. Rust programs ignore SIGPIPE from
//! `main` on (the standard runtime sets it to `SIG_IGN`), so the binary and the tests
//! see only the error; an embedder that restores the default disposition must not.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The pipe size asked for: a bulk tunnel moves up to this much per pair of splice calls.
/// 1 MiB is the default `/proc/sys/fs/pipe-max-size`, the most an unprivileged process
/// may ask for; pipe pages are allocated only while they hold data. Smaller pipes cost
/// more CPU per byte, and a larger one (root only) was no better (see
/// docs/performance.md, "Pipe size" (S4)).
pub const PIPE_SIZE: usize = 1024 * 1024;

/// Below this capacity splicing costs more system calls per byte than the copy loop's
/// 64 KiB reads. A pipe comes out this small when the user's pipe-page allowance
/// (`/proc/sys/fs/pipe-user-pages-soft`) is used up by many open tunnels.
pub const MIN_PIPE_SIZE: usize = 64 * 1024;

/// `SPLICE_F_MOVE`: move pages rather than copy where the kernel can (a hint).
/// `SPLICE_F_NONBLOCK`: never sleep on the pipe; readiness is tokio's job.
const SPLICE_FLAGS: libc::c_uint = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;

/// A non-blocking kernel pipe used as the in-kernel buffer of one relay direction. Both
/// ends are closed when it drops.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// Opens a pipe and tries to raise its capacity to `PIPE_SIZE`; where the kernel
    /// refuses, the pipe keeps the capacity it was given (see `capacity`).
    pub fn new() -> io::Result<Pipe> {
        let mut fds: [RawFd; 2] = [-1; 2];
        // SAFETY: `fds` is a valid, writable array of two `c_int`s, exactly what pipe2(2)
        // fills in; no other memory is touched.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else;
        // each is wrapped exactly once and closed when its `OwnedFd` drops.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut pipe = Pipe {
            read,
            write,
            capacity: 0,
        };
        pipe.capacity = pipe.resize(PIPE_SIZE)?;
        Ok(pipe)
    }

    /// How many bytes the pipe holds when full.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Asks for `size` bytes of capacity and returns the capacity the pipe ends up with:
    /// the kernel rounds up to whole pages, and refuses (EPERM) above the system maximum
    /// or once the user's allowance is spent, in which case the old capacity stays.
    fn resize(&self, size: usize) -> io::Result<usize> {
        let wanted = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl(F_SETPIPE_SZ) takes an open pipe descriptor (owned by `self`)
        // and an integer; it touches no user memory.
        let rc = unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_SETPIPE_SZ, wanted) };
        if let Ok(granted) = usize::try_from(rc) {
            return Ok(granted);
        }
        // SAFETY: as above; F_GETPIPE_SZ only reads the pipe's current capacity.
        let rc = unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        usize::try_from(rc).map_err(|_| io::Error::last_os_error())
    }

    /// Moves up to `len` bytes from `socket` into the pipe. `Ok(0)` means the socket's
    /// peer closed its sending side; `WouldBlock` that the socket has nothing to read.
    pub fn fill_from(&self, socket: &impl AsRawFd, len: usize) -> io::Result<usize> {
        splice(socket.as_raw_fd(), self.write.as_raw_fd(), len)
    }

    /// Moves up to `len` bytes from the pipe into `socket`; `WouldBlock` means the
    /// socket's send buffer is full.
    pub fn drain_into(&self, socket: &impl AsRawFd, len: usize) -> io::Result<usize> {
        splice(self.read.as_raw_fd(), socket.as_raw_fd(), len)
    }
}

/// One splice(2) call between two descriptors, neither of which is seekable (so both
/// offset pointers are null).
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: `from` and `to` are open descriptors borrowed from the caller for the
    // duration of the call; null offsets are what splice(2) requires for pipes and
    // sockets; no user-space buffer is passed.
    let rc = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            SPLICE_FLAGS,
        )
    };
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// Whether `error` says this kernel or these descriptors cannot splice at all, so the
/// relay should copy instead (rather than fail).
pub fn unsupported(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn pipe_is_raised_to_a_useful_size() {
        let pipe = Pipe::new().unwrap();
        assert!(pipe.capacity() >= 64 * 1024, "{}", pipe.capacity());
    }

    #[test]
    fn bytes_pass_socket_to_pipe_to_socket_and_eof_reads_as_zero() {
        let (mut a_out, a_in) = socket_pair();
        let (b_out, mut b_in) = socket_pair();
        a_in.set_nonblocking(true).unwrap();
        b_out.set_nonblocking(true).unwrap();
        let pipe = Pipe::new().unwrap();
        let empty = pipe.fill_from(&a_in, 4096).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        a_out.write_all(b"spliced").unwrap();
        a_out.shutdown(std::net::Shutdown::Write).unwrap();
        let mut filled = 0;
        for _ in 0..1000 {
            match pipe.fill_from(&a_in, 4096) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(filled, 7);
        assert_eq!(pipe.drain_into(&b_out, filled).unwrap(), 7);
        let mut got = [0u8; 7];
        b_in.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"spliced");
    }

    #[test]
    fn only_unspliceable_descriptors_count_as_unsupported() {
        let (out, peer) = socket_pair();
        out.set_nonblocking(true).unwrap();
        let pipe = Pipe::new().unwrap();
        // An empty non-blocking pipe is "try again", not "unsupported".
        let would_block = pipe.drain_into(&out, 1).unwrap_err();
        assert_eq!(would_block.kind(), io::ErrorKind::WouldBlock);
        assert!(!unsupported(&would_block));
        // splice(2) needs a pipe on one side: socket to socket is EINVAL.
        let wrong = splice(out.as_raw_fd(), peer.as_raw_fd(), 1).unwrap_err();
        assert!(unsupported(&wrong), "{wrong}");
    }
}
