//! Opening a TCP stream to a target, directly or through a proxy's CONNECT
//! tunnel (RFC 9110 §9.3.6: any 2xx answer turns the connection into a tunnel).

use anyhow::{Context, Result, bail};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Bound on connecting plus the CONNECT exchange: loopback answers in
/// microseconds, so seconds mean the proxy is stuck.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A CONNECT response head larger than this is not one we sent for.
const MAX_CONNECT_RESPONSE: usize = 8192;

/// Connects to `target` ("host:port"), through `proxy` when given.
pub async fn open(proxy: Option<&str>, target: &str) -> Result<TcpStream> {
    timeout(SETUP_TIMEOUT, open_unbounded(proxy, target))
        .await
        .with_context(|| format!("timed out opening {target}"))?
}

async fn open_unbounded(proxy: Option<&str>, target: &str) -> Result<TcpStream> {
    let Some(proxy) = proxy else {
        let stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        return Ok(stream);
    };
    let mut stream = TcpStream::connect(proxy).await?;
    stream.set_nodelay(true)?;
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    // Read byte-wise up to the blank line so no tunnelled byte is consumed.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_RESPONSE {
            bail!("CONNECT response head too large");
        }
        if stream.read(&mut byte).await? == 0 {
            bail!("proxy closed during CONNECT");
        }
        head.push(byte[0]);
    }
    let status_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let status = String::from_utf8_lossy(status_line);
    if status
        .split_whitespace()
        .nth(1)
        .is_none_or(|code| !code.starts_with('2'))
    {
        bail!("CONNECT refused: {status}");
    }
    Ok(stream)
}
