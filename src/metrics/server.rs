//! The metrics listener: a deliberately small HTTP/1.1 server for three read-only pages.
//!
//! Owns request-head reading (bounded size, read timeout, connection cap), routing of
//! `GET`/`HEAD` for `/metrics`, `/stats` and `/`, and response framing. It never reads a
//! request body: a request announcing one is answered and the connection closed
//! (RFC 9112 §9.6 lets a server close after any response). It shares nothing with the proxy's
//! data path except the read-only [`Stats`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::prometheus;
use crate::stats::Stats;

/// Largest request head accepted; a browser's or Prometheus's GET is a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Header fields parsed per request.
const MAX_HEADERS: usize = 32;
/// How long a connection may take to send a request head (and idle between requests).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing one response may take before the client is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent metrics connections; scrapers and a dashboard need a handful, and the cap keeps
/// the endpoint from becoming a way to exhaust the proxy's file descriptors.
pub const MAX_CONNECTIONS: usize = 32;
/// Requests served on one keep-alive connection before it is closed.
const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
/// Pause after a failed `accept` (e.g. out of descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

const PAGE: &str = include_str!("page.html");

/// Serves `/metrics`, `/stats` and `/` on `listener` until `shutdown` holds `true` (or its
/// sender is dropped); then stops accepting and closes open metrics connections.
pub async fn serve(listener: TcpListener, stats: Arc<Stats>, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit,
            () = stopped(&mut shutdown) => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut shutdown) => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let stats = Arc::clone(&stats);
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    serve_connection(stream, stats, shutdown).await;
                });
            }
            Err(error) => {
                tracing::debug!(%error, "metrics accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: nobody can ask us to keep running, so stop.
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// What the router needs from a request head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    path: String,
    keep_alive: bool,
    has_body: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// Head larger than [`MAX_HEAD_BYTES`] or with too many fields: 431 (RFC 6585 §5).
    TooLarge,
    /// Not an HTTP/1.x request head: 400.
    Malformed,
}

async fn serve_connection(
    mut stream: TcpStream,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buffer = Vec::with_capacity(1024);
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let read = tokio::select! {
            read = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream, &mut buffer)) => read,
            () = stopped(&mut shutdown) => return,
        };
        let (response, keep_alive) = match read {
            Err(_elapsed) => return,
            Ok(Err(_)) | Ok(Ok(None)) => return,
            Ok(Ok(Some(Err(HeadError::TooLarge)))) => (
                Response::error(431, "Request Header Fields Too Large").encode(false, true),
                false,
            ),
            Ok(Ok(Some(Err(HeadError::Malformed)))) => (
                Response::error(400, "Bad Request").encode(false, true),
                false,
            ),
            Ok(Ok(Some(Ok(head)))) => {
                let keep_alive = head.keep_alive && !head.has_body;
                (respond(&head, &stats, keep_alive), keep_alive)
            }
        };
        let written = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&response)).await;
        if !matches!(written, Ok(Ok(()))) || !keep_alive {
            let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await;
            return;
        }
    }
}

/// Reads until `buffer` holds a complete head, which is then removed from it. `Ok(None)`:
/// the peer closed before sending a byte (a normal keep-alive end).
async fn read_head(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<Result<Head, HeadError>>> {
    loop {
        match parse_head(buffer) {
            Ok(Some(head)) => return Ok(Some(Ok(head))),
            Ok(None) if buffer.len() >= MAX_HEAD_BYTES => {
                return Ok(Some(Err(HeadError::TooLarge)));
            }
            Ok(None) => {}
            Err(error) => return Ok(Some(Err(error))),
        }
        let room = MAX_HEAD_BYTES + 1 - buffer.len();
        let read = (&mut *stream).take(room as u64).read_buf(buffer).await?;
        if read == 0 {
            return Ok(if buffer.is_empty() {
                None
            } else {
                Some(Err(HeadError::Malformed))
            });
        }
    }
}

/// Parses a complete head at the front of `buffer` and drains it; `Ok(None)` if incomplete.
fn parse_head(buffer: &mut Vec<u8>) -> Result<Option<Head>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let length = match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    let method = request.method.unwrap_or_default().to_owned();
    let path = request.path.unwrap_or_default().to_owned();
    let version = request.version.unwrap_or(1);
    let mut close = false;
    let mut keep_alive_token = false;
    let mut has_body = false;
    for field in request.headers.iter() {
        let value = String::from_utf8_lossy(field.value);
        if field.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        } else if field.name.eq_ignore_ascii_case("content-length") {
            has_body |= value.trim() != "0";
        }
    }
    buffer.drain(..length);
    // RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
    let keep_alive = !close && (version == 1 || keep_alive_token);
    Ok(Some(Head {
        method,
        path,
        keep_alive,
        has_body,
    }))
}

/// One answer of this server; every body is small and built in memory.
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    fn ok(content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status: 200,
            reason: "OK",
            content_type,
            body,
        }
    }

    /// A plain-text error whose body repeats the reason phrase.
    fn error(status: u16, reason: &'static str) -> Self {
        let body = format!("{}\n", reason.to_ascii_lowercase()).into_bytes();
        Self {
            status,
            reason,
            content_type: TEXT,
            body,
        }
    }

    /// The bytes on the wire. `Content-Length` is sent for HEAD too, describing the GET body
    /// (RFC 9110 §9.3.2); `Cache-Control: no-store` because every answer is live; a 405 lists
    /// the methods we serve in `Allow` (RFC 9110 §15.5.6).
    fn encode(&self, keep_alive: bool, send_body: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if send_body {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

fn respond(head: &Head, stats: &Arc<Stats>, keep_alive: bool) -> Vec<u8> {
    let send_body = match head.method.as_str() {
        "GET" => true,
        "HEAD" => false,
        _ => return Response::error(405, "Method Not Allowed").encode(keep_alive, true),
    };
    let path = head.path.split('?').next().unwrap_or_default();
    let response = match path {
        "/metrics" => match prometheus::render(stats) {
            Ok(text) => Response::ok(prometheus::CONTENT_TYPE, text.into_bytes()),
            Err(_) => Response::error(500, "Internal Server Error"),
        },
        "/stats" => match serde_json::to_vec(&stats.snapshot()) {
            Ok(json) => Response::ok("application/json", json),
            Err(_) => Response::error(500, "Internal Server Error"),
        },
        "/" => Response::ok("text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        _ => Response::error(404, "Not Found"),
    };
    response.encode(keep_alive, send_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(raw: &[u8]) -> Result<Option<Head>, HeadError> {
        parse_head(&mut raw.to_vec())
    }

    #[test]
    fn head_split_at_every_byte_is_partial_until_complete() {
        let raw = b"GET /stats?x=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n";
        for split in 0..raw.len() {
            assert_eq!(parse_all(&raw[..split]), Ok(None), "split at {split}");
        }
        let mut buffer = raw.to_vec();
        buffer.extend_from_slice(b"GET /");
        let head = parse_head(&mut buffer).expect("valid").expect("complete");
        assert_eq!(head.path, "/stats?x=1");
        assert!(!head.keep_alive, "close wins");
        assert_eq!(buffer, b"GET /", "only the head is consumed");
    }

    #[test]
    fn persistence_follows_the_version_defaults() {
        let head = |raw: &[u8]| parse_all(raw).expect("valid").expect("complete");
        assert!(head(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(head(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n").has_body);
        assert!(!head(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").has_body);
    }

    #[test]
    fn garbage_and_field_floods_are_refused() {
        assert_eq!(
            parse_all(b"\x16\x03\x01 hello\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        let mut flood = b"GET / HTTP/1.1\r\n".to_vec();
        for n in 0..=MAX_HEADERS {
            flood.extend_from_slice(format!("X-{n}: v\r\n").as_bytes());
        }
        flood.extend_from_slice(b"\r\n");
        assert_eq!(parse_all(&flood), Err(HeadError::TooLarge));
    }
}
