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

/// Per-connect bound: a server that stops accepting shows up as failures.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Stop opening once this many connects have failed: the server is saturated.
const MAX_FAILURES: u64 = 100;

pub async fn run(flags: &Flags) -> Result<()> {
    let conns: usize = flags.get("conns", Some(10_000))?;
    let server: String = flags.get("server", None)?;
    let hold: f64 = flags.get("hold", Some(4.0))?;
    let partial = flags.opt("partial").map(|text| text.replace("\\r\\n", "\r\n"));
    let closed = Arc::new(AtomicU64::new(0));
    let mut failed = 0u64;
    let mut open = 0u64;
    let start = Instant::now();
    for _ in 0..conns {
        let Some(stream) = connect(&server, partial.as_deref()).await else {
            failed += 1;
            if failed >= MAX_FAILURES {
                break;
            }
            continue;
        };
        open += 1;
        let closed = Arc::clone(&closed);
        tokio::spawn(watch(stream, closed));
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
