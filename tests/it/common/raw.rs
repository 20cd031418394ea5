//! Fixtures for the adversarial tests (smuggling, faults, abuse): an origin that records
//! every byte it receives on every connection and answers only requests in canonical
//! form, the strict parser that defines that form, and a few raw-socket helpers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[allow(unused_imports)]
pub use super::canonical::{Message, parse_canonical};

/// What the raw origin answers each canonical request with.
pub const ORIGIN_REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Bytes one origin connection received, and whether the proxy has closed it.
#[derive(Debug, Clone, Default)]
pub struct RawConnection {
    pub bytes: Vec<u8>,
    pub closed: bool,
}

/// An origin that records raw bytes per connection. It answers each request only once
/// the strict canonical parser has read it whole, so anything a lenient origin might
/// read differently gets no answer (and the test sees it).
#[derive(Clone)]
pub struct RawOrigin {
    pub addr: SocketAddr,
    connections: Arc<Mutex<Vec<Arc<Mutex<RawConnection>>>>>,
}

impl RawOrigin {
    pub async fn start() -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = RawOrigin {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
        };
        let connections = origin.connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = Arc::new(Mutex::new(RawConnection::default()));
                connections.lock().unwrap().push(record.clone());
                tokio::spawn(record_and_answer(stream, record));
            }
        });
        origin
    }

    pub fn connections(&self) -> Vec<RawConnection> {
        let list = self.connections.lock().unwrap();
        list.iter().map(|c| c.lock().unwrap().clone()).collect()
    }

    /// Waits (bounded) until every connection the proxy opened has been closed.
    pub async fn wait_all_closed(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.connections().iter().all(|c| c.closed) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn record_and_answer(mut stream: TcpStream, record: Arc<Mutex<RawConnection>>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut answered = 0;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let complete = {
            let mut record = record.lock().unwrap();
            record.bytes.extend_from_slice(&buf[..n]);
            parse_canonical(&record.bytes).map_or(0, |(messages, _)| messages.len())
        };
        while answered < complete {
            if stream.write_all(ORIGIN_REPLY).await.is_err() {
                break;
            }
            answered += 1;
        }
    }
    record.lock().unwrap().closed = true;
}

/// An origin that runs `script` on each connection it accepts: for faults that need
/// exact control of what the origin sends and when.
pub async fn scripted_origin<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(script(stream));
        }
    });
    addr
}

/// Reads up to the end of a head (`\r\n\r\n`); what was read, head and anything after.
pub async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    head
}

/// Closes `stream` with a reset rather than a FIN, as a crashing peer would.
pub fn reset(stream: TcpStream) {
    // Zero linger only turns close into RST; it never blocks (the deprecation is about
    // non-zero linger).
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// How a read-to-the-end ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A clean FIN.
    Closed,
    /// A reset or other error: the peer aborted.
    Aborted,
}

/// Reads until the peer closes or aborts (bounded by 10 s, else panics).
pub async fn read_until_end(stream: &mut TcpStream) -> (Vec<u8>, Ending) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ending::Closed,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => return Ending::Aborted,
            }
        }
    };
    let ending = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the connection was never closed");
    (out, ending)
}

/// Writes `request`, half-closes (so the proxy sees the end of the client's bytes and
/// ends the connection after answering), and reads until the proxy closes.
pub async fn send_and_half_close(proxy: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request).await.unwrap();
    let _ = stream.shutdown().await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the proxy never closed the connection");
    out
}

/// Splits a client's byte stream into responses `(status, head, body)`; every response
/// the proxy sends in these tests has a Content-Length. Stray bytes are an error.
pub fn split_responses(mut bytes: &[u8]) -> Result<Vec<(u16, String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("incomplete head: {:?}", String::from_utf8_lossy(bytes)))?;
        let head = String::from_utf8_lossy(&bytes[..end + 4]).into_owned();
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("not a status line: {head:?}"))?;
        let length = head
            .split("\r\n")
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let rest = &bytes[end + 4..];
        if rest.len() < length {
            return Err(format!("body cut short after {head:?}"));
        }
        out.push((status, head, rest[..length].to_vec()));
        bytes = &rest[length..];
    }
    Ok(out)
}

/// The soft limit on open files for this process, from /proc (no libc needed).
pub fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(1024)
}

/// A small deterministic generator (xorshift64*), so abuse inputs repeat run to run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
