//! The floor: a minimal TCP relay with none of a proxy's work (no parsing, no
//! checks, no logging), to show what any user-space relay pays on this machine
//! for the same traffic. `--routes L1=T1,L2=T2` listens on each L and relays
//! every connection accepted there to its T. By default one event loop on one
//! thread copies both ways through 64 KiB buffers (tokio's
//! `copy_bidirectional`); with `--splice true` one blocking thread per
//! direction splices through a 1 MiB pipe (what proxy-server's tunnels use for
//! bulk). Runs until the harness kills it, or `--lifetime` seconds (the backstop).

use crate::args::Flags;
use anyhow::{Result, bail};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::Duration;

const COPY_CHUNK: usize = 64 * 1024;
const PIPE_SIZE: usize = 1024 * 1024;
const DEFAULT_LIFETIME_SECS: u64 = 1800;

pub fn run(flags: &Flags) -> Result<()> {
    let routes: String = flags.get("routes", None)?;
    let splice: bool = flags.get("splice", Some(false))?;
    let lifetime = Duration::from_secs(flags.get("lifetime", Some(DEFAULT_LIFETIME_SECS))?);
    let mut listeners = Vec::new();
    for route in routes.split(',') {
        let Some((listen, target)) = route.split_once('=') else {
            bail!("--routes: expected LISTEN=TARGET, got {route:?}");
        };
        listeners.push((TcpListener::bind(listen)?, target.to_string()));
    }
    thread::spawn(move || {
        thread::sleep(lifetime);
        std::process::exit(0);
    });
    if !splice {
        return copy_relay(listeners);
    }
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(listener, target)| {
            thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    let target = target.clone();
                    thread::spawn(move || {
                        if let Err(error) = splice_relay(client, &target) {
                            eprintln!("relay: {error}");
                        }
                    });
                }
            })
        })
        .collect();
    for thread in accepting {
        let _ = thread.join();
    }
    Ok(())
}

/// One event loop on one thread, a task per connection copying both ways: the
/// least a relay of small messages can do per message.
fn copy_relay(listeners: Vec<(TcpListener, String)>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        for (listener, target) in listeners {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let target = target.clone();
                    tokio::spawn(async move {
                        let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                            return;
                        };
                        let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                        let _ = tokio::io::copy_bidirectional_with_sizes(
                            &mut client,
                            &mut upstream,
                            COPY_CHUNK,
                            COPY_CHUNK,
                        )
                        .await;
                    });
                }
            });
        }
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// Splices each direction on its own blocking thread, then half-closes the far side.
fn splice_relay(client: TcpStream, target: &str) -> Result<()> {
    let upstream = TcpStream::connect(target)?;
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (client2, upstream2) = (client.try_clone()?, upstream.try_clone()?);
    let up = thread::spawn(move || {
        let _ = splice_all(&client2, &upstream2);
        let _ = upstream2.shutdown(Shutdown::Write);
    });
    let _ = splice_all(&upstream, &client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

fn splice_all(from: &TcpStream, to: &TcpStream) -> std::io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which are closed below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (read_end, write_end) = (fds[0], fds[1]);
    // SAFETY: plain syscalls on descriptors this function owns or borrows.
    let result = unsafe {
        libc::fcntl(write_end, libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int);
        loop {
            let n = libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                write_end,
                std::ptr::null_mut(),
                PIPE_SIZE,
                libc::SPLICE_F_MOVE,
            );
            if n <= 0 {
                break if n == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                };
            }
            let mut left = n as usize;
            let mut failed = None;
            while left > 0 {
                let m = libc::splice(
                    read_end,
                    std::ptr::null_mut(),
                    to.as_raw_fd(),
                    std::ptr::null_mut(),
                    left,
                    libc::SPLICE_F_MOVE,
                );
                if m <= 0 {
                    failed = Some(std::io::Error::last_os_error());
                    break;
                }
                left -= m as usize;
            }
            if let Some(error) = failed {
                break Err(error);
            }
        }
    };
    // SAFETY: closing the pipe's own descriptors once.
    unsafe {
        libc::close(read_end);
        libc::close(write_end);
    }
    result
}
