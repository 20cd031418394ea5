//! A TCP server that sends `--bytes` bytes to each connection and closes it:
//! the far end of the CONNECT-tunnel scenario.

use crate::args::Flags;
use anyhow::Result;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Write size: large enough that syscalls do not dominate the measurement.
const CHUNK: usize = 256 * 1024;
/// The harness kills the source when done; this is the backstop.
const DEFAULT_LIFETIME_SECS: u64 = 1800;

pub async fn run(flags: &Flags) -> Result<()> {
    let bytes: u64 = flags.get("bytes", None)?;
    let lifetime: u64 = flags.get("lifetime", Some(DEFAULT_LIFETIME_SECS))?;
    let listener = TcpListener::bind(flags.opt("listen").unwrap_or("127.0.0.1:0")).await?;
    println!("{{\"port\":{}}}", listener.local_addr()?.port());
    let accept_loop = async {
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                if let Err(error) = send(stream, bytes).await {
                    eprintln!("source: {error}");
                }
            });
        }
    };
    match tokio::time::timeout(Duration::from_secs(lifetime), accept_loop).await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

async fn send(mut stream: TcpStream, bytes: u64) -> Result<()> {
    let chunk = vec![b'x'; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        stream.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    stream.shutdown().await?;
    Ok(())
}
