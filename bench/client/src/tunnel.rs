//! One tunnel's throughput: open (optionally via CONNECT or SOCKS5), read `--bytes`
//! bytes, report bytes and seconds. The clock starts after the tunnel is up,
//! so the figure is data-path speed, not setup cost.

use crate::args::Flags;
use crate::proxy;
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const READ_CHUNK: usize = 256 * 1024;
const DEFAULT_MAX_SECS: u64 = 300;

pub async fn run(flags: &Flags) -> Result<()> {
    let bytes: u64 = flags.get("bytes", None)?;
    let target: String = flags.get("target", None)?;
    let max_secs: u64 = flags.get("max-secs", Some(DEFAULT_MAX_SECS))?;
    let route = proxy::Route::from_flags(flags)?;
    let mut stream = proxy::open(&route, &target).await?;
    let start = Instant::now();
    let mut buffer = vec![0u8; READ_CHUNK];
    let mut received: u64 = 0;
    let read_all = async {
        while received < bytes {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                bail!("stream ended after {received} of {bytes} bytes");
            }
            received += n as u64;
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(max_secs), read_all)
        .await
        .context("tunnel transfer timed out")??;
    let secs = start.elapsed().as_secs_f64();
    println!("{{\"bytes\":{received},\"secs\":{secs:.6}}}");
    Ok(())
}
