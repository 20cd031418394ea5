//! Local origins: one that parses and records each request and answers through a
//! handler (`Origin`), and small raw ones for exact control: echoing, scripted per
//! connection, serving one connection, silent, slow, and a port that refuses.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{header_value, next_head, ok};

/// One request as an origin saw it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The request line and header fields, exactly as received.
    pub head: Vec<u8>,
    /// The body as decoded (chunked framing removed).
    pub body: Vec<u8>,
    /// Every byte of the request as received, framing included.
    pub raw: Vec<u8>,
}

impl Seen {
    pub fn head_str(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    pub fn request_line(&self) -> String {
        self.head_str().lines().next().unwrap_or("").to_string()
    }

    /// The request target as sent (the second word of the request line).
    pub fn target(&self) -> String {
        self.request_line()
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string()
    }

    /// The value of the first header field called `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        header_value(&self.head_str(), name)
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Vec<u8> + Send + Sync>;

/// A plain-TCP HTTP/1.1 origin: parses each request just enough to find its end, records
/// it, and answers with the bytes the handler returns. Keeps connections alive.
#[derive(Clone)]
pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    raw: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Origin {
    pub async fn start(handler: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static) -> Origin {
        Origin::start_on("127.0.0.1:0", handler)
            .await
            .expect("bind 127.0.0.1")
    }

    /// An origin answering every request with `200` and `body`.
    pub async fn fixed(body: &'static str) -> Origin {
        Origin::start(move |_| ok(body)).await
    }

    /// As [`Origin::start`], listening on `bind` instead of `127.0.0.1:0` (for example
    /// `127.0.0.2:0` or `[::1]:0`); `None` when this machine cannot listen there.
    pub async fn start_on(
        bind: &str,
        handler: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static,
    ) -> Option<Origin> {
        let listener = TcpListener::bind(bind).await.ok()?;
        let origin = Origin {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            raw: Arc::default(),
            connections: Arc::default(),
        };
        let handler: Handler = Arc::new(handler);
        let state = origin.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *state.connections.lock().unwrap() += 1;
                tokio::spawn(state.clone().serve(stream, handler.clone()));
            }
        });
        Some(origin)
    }

    /// As [`Origin::start_on`] on `[::1]:0`; where this machine has no IPv6 loopback it
    /// says so on stderr, naming the check that `what` is, and the caller skips that
    /// part (never silently).
    pub async fn start_on_v6(
        what: &str,
        handler: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static,
    ) -> Option<Origin> {
        let origin = Origin::start_on("[::1]:0", handler).await;
        if origin.is_none() {
            eprintln!("SKIPPED: {what}: this machine cannot listen on ::1 (no IPv6 loopback)");
        }
        origin
    }

    async fn serve(self, stream: TcpStream, handler: Handler) {
        let mut reader = BufReader::new(stream);
        while let Some(seen) = read_request(&mut reader).await {
            self.raw.lock().unwrap().extend_from_slice(&seen.raw);
            let reply = handler(&seen);
            self.seen.lock().unwrap().push(seen);
            if reader.get_mut().write_all(&reply).await.is_err() {
                return;
            }
            let text = String::from_utf8_lossy(&reply).to_ascii_lowercase();
            if text.contains("\r\nconnection: close\r\n") {
                return;
            }
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// How many requests the origin saw for `path`.
    pub fn count_for(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target() == path)
            .count()
    }

    /// Every byte received, on every connection.
    pub fn received(&self) -> Vec<u8> {
        self.raw.lock().unwrap().clone()
    }

    pub fn connection_count(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Reads one request (head and body) as an origin would; `None` at a clean close.
async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut seen = Seen::default();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        seen.head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    seen.raw = seen.head.clone();
    let head = seen.head_str().to_ascii_lowercase();
    if head.contains("\r\ntransfer-encoding: chunked\r\n") {
        loop {
            let mut size_line = Vec::new();
            reader.read_until(b'\n', &mut size_line).await.ok()?;
            seen.raw.extend_from_slice(&size_line);
            let text = String::from_utf8_lossy(&size_line);
            let size = usize::from_str_radix(text.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.ok()?;
            seen.raw.extend_from_slice(&chunk);
            seen.body.extend_from_slice(&chunk[..size]);
            if size == 0 {
                return Some(seen);
            }
        }
    }
    let length = header_value(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    seen.raw.extend_from_slice(&body);
    seen.body = body;
    Some(seen)
}

/// An origin that runs `script` on each connection it accepts: for faults that need
/// exact control of what the origin sends and when.
pub async fn scripted_origin<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
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

/// An origin that accepts one connection and runs `script` on it; the handle yields what
/// the script returns (await it within a deadline).
pub async fn serve_once<F, Fut, T>(script: F) -> (SocketAddr, JoinHandle<T>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(stream).await
    });
    (addr, task)
}

/// A raw TCP origin that writes back whatever it reads, until EOF.
pub async fn echo_origin() -> SocketAddr {
    scripted_origin(|mut stream| async move {
        let (mut r, mut w) = stream.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// A TCP origin that answers every chunk it reads by sending it back twice, so the two
/// directions of a tunnel carry different byte counts; closes when the client does.
pub async fn doubling_echo() -> SocketAddr {
    scripted_origin(|mut stream| async move {
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            for _ in 0..2 {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

/// An origin that accepts connections and reads requests but never answers.
pub async fn silent_origin() -> SocketAddr {
    scripted_origin(|mut stream| async move {
        let mut buf = [0; 1024];
        while let Ok(1..) = stream.read(&mut buf).await {}
    })
    .await
}

/// An origin that answers each request head with `reply` after `delay`, keeping the
/// connection; returns its address and the number of requests it received. Requests
/// here are GETs without bodies: the head is all there is.
pub async fn slow_origin(delay: Duration, reply: Vec<u8>) -> (SocketAddr, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let reply = Arc::new(reply);
    let addr = scripted_origin(move |mut stream| {
        let (seen, reply) = (Arc::clone(&seen), Arc::clone(&reply));
        async move {
            loop {
                if next_head(&mut stream).await.is_none() {
                    return;
                }
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                if stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, count)
}

/// A port on 127.0.0.1 that refuses connections.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Closes `stream` with a reset rather than a FIN, as a crashing peer would.
pub fn reset(stream: TcpStream) {
    // Zero linger only turns close into RST; it never blocks.
    let _ = stream.set_zero_linger();
    drop(stream);
}
