//! Holds `--conns` client connections open to a server, optionally after
//! sending each a partial request head, so the harness can read the server's
//! resident memory. Prints a READY line once all are open, then after
//! `--hold` seconds a DONE line saying how many the server closed meanwhile.

use crate::args::Flags;
use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

/// Per-connect bound: a server that stops accepting shows up as failures.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connects in flight at once: one at a time takes seconds on a busy
/// machine, long enough for a server's head timeout to start closing the
/// first ones; far more would overflow the listen backlog.
const CONNECTS_IN_FLIGHT: usize = 128;
/// Bound on opening them all.
const OPEN_ALL_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run(flags: &Flags) -> Result<()> {
    let conns: usize = flags.get("conns", Some(10_000))?;
    let server: Arc<str> = flags.get::<String>("server", None)?.into();
    let hold: f64 = flags.get("hold", Some(4.0))?;
    let partial: Option<Arc<str>> = flags
        .opt("partial")
        .map(|text| text.replace("\\r\\n", "\r\n").into());
    let closed = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<bool>();
    let start = Instant::now();
    for _ in 0..conns {
        let (server, partial, gate) = (Arc::clone(&server), partial.clone(), Arc::clone(&gate));
        let (closed, opened_tx) = (Arc::clone(&closed), opened_tx.clone());
        tokio::spawn(async move {
            let stream = {
                let Ok(_permit) = gate.acquire().await else {
                    return;
                };
                connect(&server, partial.as_deref()).await
            };
            let _ = opened_tx.send(stream.is_some());
            if let Some(stream) = stream {
                watch(stream, closed).await;
            }
        });
    }
    let (mut open, mut failed) = (0u64, 0u64);
    let deadline = tokio::time::Instant::now() + OPEN_ALL_TIMEOUT;
    while (open + failed) < conns as u64 {
        match tokio::time::timeout_at(deadline, opened_rx.recv()).await {
            Ok(Some(true)) => open += 1,
            Ok(Some(false)) => failed += 1,
            _ => break,
        }
    }
    let open_secs = start.elapsed().as_secs_f64();
    println!("READY {{\"open\":{open},\"failed\":{failed},\"open_secs\":{open_secs:.3}}}");
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let closed = closed.load(Ordering::Relaxed);
    println!("DONE {{\"open\":{open},\"failed\":{failed},\"closed\":{closed}}}");
    Ok(())
}

async fn connect(server: &str, partial: Option<&str>) -> Option<TcpStream> {
    let attempt = async {
        let mut stream = TcpStream::connect(server).await?;
        if let Some(head) = partial {
            stream.write_all(head.as_bytes()).await?;
        }
        Ok::<_, std::io::Error>(stream)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(stream)) => Some(stream),
        _ => None,
    }
}

/// Any byte, end of stream or error from the server means it gave up on the
/// connection (e.g. a 408); the process exit closes the rest.
async fn watch(mut stream: TcpStream, closed: Arc<AtomicU64>) {
    let mut byte = [0u8; 1];
    let _ = stream.read(&mut byte).await;
    closed.fetch_add(1, Ordering::Relaxed);
}
