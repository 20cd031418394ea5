//! Fixtures for the adversarial tests (smuggling, abuse): an origin that records every
//! byte it receives on every connection and answers only requests in canonical form (the
//! form `canonical` defines), a splitter for a client's stream of responses, the
//! open-files limit, and a deterministic generator of hostile input.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::POLL_PAUSE;
use super::canonical::parse_canonical;

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
            tokio::time::sleep(POLL_PAUSE).await;
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

/// A deterministic byte stream that does not repeat within a test's length, so a
/// dropped, duplicated, reordered or cross-wired chunk shows at its offset. Fills may be
/// of any size: the stream continues where the last fill stopped.
pub struct Pattern {
    rng: Rng,
    word: [u8; 8],
    used: usize,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern {
            rng: Rng::new(seed),
            word: [0; 8],
            used: 8,
        }
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            if self.used == 8 {
                self.word = self.rng.next().to_le_bytes();
                self.used = 0;
            }
            *byte = self.word[self.used];
            self.used += 1;
        }
    }
}
