//! Opening a TCP stream to a target: directly, through a proxy's CONNECT tunnel
//! (RFC 9110 §9.3.6: any 2xx answer turns the connection into a tunnel) over plain
//! TCP or over TLS to the proxy (an HTTPS proxy), or through a SOCKS5 proxy's CONNECT
//! (RFC 1928, no authentication). Flags: `--proxy ADDR` (CONNECT), with
//! `--proxy-ca FILE` to speak TLS to it (server name `localhost`); `--socks ADDR`.

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::args::Flags;

/// Bound on connecting plus the CONNECT exchange: loopback answers in
/// microseconds, so seconds mean the proxy is stuck.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A CONNECT response head larger than this is not one we sent for.
const MAX_CONNECT_RESPONSE: usize = 8192;

/// A byte stream of any kind (TCP, or TLS over it).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Stream = Box<dyn Io>;

/// How to reach targets.
pub enum Route {
    Direct,
    Connect {
        proxy: String,
        tls: Option<TlsConnector>,
    },
    Socks5 {
        proxy: String,
    },
}

impl Route {
    pub fn from_flags(flags: &Flags) -> Result<Route> {
        if let Some(proxy) = flags.opt("socks") {
            return Ok(Route::Socks5 {
                proxy: proxy.to_string(),
            });
        }
        let Some(proxy) = flags.opt("proxy") else {
            return Ok(Route::Direct);
        };
        let tls = match flags.opt("proxy-ca") {
            Some(ca) => Some(connector(ca)?),
            None => None,
        };
        Ok(Route::Connect {
            proxy: proxy.to_string(),
            tls,
        })
    }
}

/// Connects to `target` ("host:port") by `route`.
pub async fn open(route: &Route, target: &str) -> Result<Stream> {
    timeout(SETUP_TIMEOUT, open_unbounded(route, target))
        .await
        .with_context(|| format!("timed out opening {target}"))?
}

async fn tcp(addr: &str) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn open_unbounded(route: &Route, target: &str) -> Result<Stream> {
    match route {
        Route::Direct => Ok(Box::new(tcp(target).await?)),
        Route::Connect { proxy, tls: None } => {
            let mut stream = tcp(proxy).await?;
            connect(&mut stream, target).await?;
            Ok(Box::new(stream))
        }
        Route::Connect {
            proxy,
            tls: Some(connector),
        } => {
            let name = ServerName::try_from("localhost")?;
            let mut stream = connector.connect(name, tcp(proxy).await?).await?;
            connect(&mut stream, target).await?;
            Ok(Box::new(stream))
        }
        Route::Socks5 { proxy } => {
            let mut stream = tcp(proxy).await?;
            socks5(&mut stream, target).await?;
            Ok(Box::new(stream))
        }
    }
}

/// An HTTP CONNECT exchange on `stream`.
async fn connect(stream: &mut (impl Io + ?Sized), target: &str) -> Result<()> {
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
    Ok(())
}

/// A SOCKS5 greeting (no authentication) and CONNECT to an IPv4 `target`.
async fn socks5(stream: &mut TcpStream, target: &str) -> Result<()> {
    let SocketAddr::V4(target) = target.parse::<SocketAddr>()? else {
        bail!("SOCKS5 targets here are IPv4 addresses");
    };
    stream.write_all(&[5, 1, 0]).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice != [5, 0] {
        bail!("SOCKS5 greeting refused: {choice:?}");
    }
    let mut request = vec![5, 1, 0, 1];
    request.extend(target.ip().octets());
    request.extend(target.port().to_be_bytes());
    stream.write_all(&request).await?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await?;
    if reply[1] != 0 {
        bail!("SOCKS5 CONNECT refused: reply {}", reply[1]);
    }
    let bound = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        other => bail!("SOCKS5 reply with address type {other}"),
    };
    let mut rest = [0u8; 18];
    stream.read_exact(&mut rest[..bound]).await?;
    Ok(())
}

/// A TLS client trusting the one certificate in `ca` (PEM).
pub fn connector(ca: &str) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).with_context(|| format!("reading {ca}"))?)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
