//! Shared fixtures for the integration tests, each written once:
//! - `proxy`: the proxy in this test's runtime (`Proxy`, the one place that builds a
//!   config, loads services and runs the server);
//! - `process`: the real binary on an ephemeral port (`ProxyProcess`), its stderr, and
//!   runs of the binary that are expected to exit (`run_binary`), memory probes;
//! - `origin`: local origins (recording, echoing, scripted, silent, slow, closed);
//! - `files`: scratch folders and files;
//! - this file: raw-socket clients (send, read a head, a response, until close) and
//!   the small parsers of what comes back (status, header fields, body);
//! - `raw`, `canonical`, `access`, `cache`, `observe`, `tls`, `listeners`: fixtures of one
//!   area each.
//!
//! Everything listens on 127.0.0.1 (or ::1) and every wait has a deadline.

pub mod access;
pub mod cache;
pub mod canonical;
pub mod dns;
pub mod egress;
pub mod files;
pub mod fleet;
pub mod listeners;
pub mod observe;
pub mod origin;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod tls;

pub use files::*;
pub use origin::*;
pub use process::*;
pub use proxy::*;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(10);

/// The pause between two looks at something a test waits for.
pub const POLL_PAUSE: Duration = Duration::from_millis(20);

/// What the proxy answers a CONNECT with (RFC 9110 §9.3.6).
pub const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// Runs `fut` with the step deadline, failing the test if it passes.
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("step timed out")
}

/// Polls `ready` every [`POLL_PAUSE`] until it says yes; fails the test naming `what`
/// if it has not within `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !ready().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

/// A `200 OK` with a Content-Length body.
pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// How a read-to-the-end ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A clean FIN.
    Closed,
    /// A reset or other error: the peer aborted.
    Aborted,
}

/// Sends `request` on a fresh connection and reads until the proxy closes it.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    exchange_ending(addr, request).await.0
}

/// As [`exchange`], also saying whether the proxy closed cleanly or aborted.
pub async fn exchange_ending(addr: SocketAddr, request: &[u8]) -> (Vec<u8>, Ending) {
    let mut stream = within(TcpStream::connect(addr)).await.unwrap();
    within(stream.write_all(request)).await.unwrap();
    read_until_end(&mut stream).await
}

/// Writes `request`, half-closes (so the proxy sees the end of the client's bytes and
/// ends the connection after answering), and reads until the proxy closes. A write the
/// proxy cut short by answering and closing is not an error here.
pub async fn send_and_half_close(proxy: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = within(TcpStream::connect(proxy)).await.unwrap();
    let _ = within(stream.write_all(request)).await;
    let _ = stream.shutdown().await;
    read_to_close(&mut stream).await
}

/// Reads until the peer closes (or resets) the connection.
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    read_until_end(stream).await.0
}

/// Reads until the peer closes or aborts; fails the test if neither happens in time.
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
    let ending = tokio::time::timeout(STEP, read)
        .await
        .expect("the connection was never closed");
    (out, ending)
}

/// Reads a message head (through the blank line) byte by byte, so nothing after it is
/// consumed. Stops early, with what it has, at a close or a read error.
pub async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    within(head_bytes(stream)).await
}

/// For origins: the next request head whole, or `None` at a close, an error, or when
/// none came within the step deadline (an origin task must not fail the test itself).
pub async fn next_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let head = tokio::time::timeout(STEP, head_bytes(stream)).await.ok()?;
    head.ends_with(b"\r\n\r\n").then_some(head)
}

async fn head_bytes(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1..) => out.push(byte[0]),
            Ok(0) | Err(_) => break,
        }
    }
    out
}

/// Reads one message with a Content-Length body (or none) off a kept-alive connection.
pub async fn read_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = read_head(stream).await;
    let length = header_value(&String::from_utf8_lossy(&out), "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    within(stream.read_exact(&mut body)).await.unwrap();
    out.extend_from_slice(&body);
    out
}

/// The status code of a raw response.
pub fn status(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The value of the first field called `name` in a head (its first line skipped).
pub fn header_value(head: &str, name: &str) -> Option<String> {
    let head = head.split("\r\n\r\n").next().unwrap_or(head);
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// A raw message split after its head: (head with its blank line, the rest). Without a
/// complete head, all of it is head.
pub fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    raw.split_at(end)
}

/// The body of a complete response, as text.
pub fn body(response: &[u8]) -> String {
    String::from_utf8_lossy(split_head(response).1).into_owned()
}

/// Standard base64, as Basic credentials are encoded (RFC 7617 §2).
pub fn base64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A `Proxy-Authorization` field line with `scheme` and `credentials` in base64.
pub fn proxy_authorization(scheme: &str, credentials: &[u8]) -> String {
    format!("Proxy-Authorization: {scheme} {}\r\n", base64(credentials))
}

/// The Basic `Proxy-Authorization` field line for `user` and `password`.
pub fn login((user, password): (&str, &str)) -> String {
    proxy_authorization("Basic", format!("{user}:{password}").as_bytes())
}

/// A CONNECT head for `authority`, with `extra` field lines.
pub fn connect_request(authority: &str, extra: &str) -> String {
    format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n")
}

/// Opens a tunnel to `authority`: the proxy answers exactly [`ESTABLISHED`] and relays
/// from then on.
pub async fn open_tunnel(proxy: SocketAddr, authority: &str, extra: &str) -> TcpStream {
    let mut stream = within(TcpStream::connect(proxy)).await.unwrap();
    let request = connect_request(authority, extra);
    within(stream.write_all(request.as_bytes())).await.unwrap();
    let head = read_head(&mut stream).await;
    assert_eq!(
        head,
        ESTABLISHED,
        "CONNECT {authority}: {}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Writes `bytes` into a tunnel to an echo origin and checks they come back.
pub async fn assert_echoes(stream: &mut TcpStream, bytes: &[u8]) {
    within(stream.write_all(bytes)).await.unwrap();
    let mut back = vec![0; bytes.len()];
    within(stream.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, bytes);
}

/// Runs curl with `args` and returns (exit status, stdout, stderr).
pub async fn curl(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = within(
        tokio::process::Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--max-time",
                "10",
                "--noproxy",
                "",
            ])
            .args(args)
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl is installed (run.sh test installs it)");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
