//! The metrics listener: a deliberately small HTTP/1.1 server for a few read-only pages.
//!
//! Owns the limits on request heads (size, read timeout, connection cap), routing of
//! `GET`/`HEAD` for `/metrics`, `/stats`, `/stats/series`, `/stats/top`, `/healthz`,
//! `/readyz` (503 unless [`Health`] says ready) and `/`, response
//! framing, and the life of the dashboard's sampler (it runs while the server does). It never reads a
//! request body: a request announcing one is answered and the connection closed
//! (RFC 9112 §9.6 lets a server close after any response). Heads are parsed by
//! `crate::http` (origin-form, the proxy's own RFC 9112 rules, tighter limits); otherwise it
//! shares nothing with the proxy's data path except the read-only [`Stats`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{dashboard, prometheus};
use crate::error::{ProxyError, Side};
use crate::health::{Health, Readiness};
use crate::http::head::HeadLimits;
use crate::http::origin::OriginRequestHead;
use crate::http::{BodyLength, Reader};
use crate::stats::Stats;
use crate::stats::series::SAMPLE_INTERVAL;

/// Largest request head accepted; a browser's or Prometheus's GET is a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Header fields parsed per request.
const MAX_HEADERS: usize = 32;
/// Request heads are read by `crate::http`'s parser within these limits.
const HEAD_LIMITS: HeadLimits = HeadLimits {
    max_bytes: MAX_HEAD_BYTES,
    max_fields: MAX_HEADERS,
};
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

/// The dashboard: markup and style, then its script (charts, then the page's own logic),
/// kept in three files so each reads in one sitting.
const PAGE: &str = concat!(
    include_str!("page.html"),
    include_str!("charts.js"),
    include_str!("page.js"),
    "</script>\n</body>\n</html>\n"
);

/// Serves `/metrics`, `/stats`, `/stats/series`, `/stats/top`, `/healthz`, `/readyz` and
/// `/` on `listener`, and samples the dashboard's series, until `shutdown` holds `true`
/// (or its sender is dropped); then stops accepting and closes open metrics connections.
pub async fn serve(
    listener: TcpListener,
    stats: Arc<Stats>,
    health: Health,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropping the set at the end stops the sampler.
    let mut sampler = JoinSet::new();
    sampler.spawn(dashboard::sample(Arc::clone(&stats), SAMPLE_INTERVAL));
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
                let pages = Pages {
                    stats: Arc::clone(&stats),
                    health: health.clone(),
                };
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    serve_connection(stream, pages, shutdown).await;
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
    sampler.shutdown().await;
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: nobody can ask us to keep running, so stop.
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// What the pages are made from.
struct Pages {
    stats: Arc<Stats>,
    health: Health,
}

async fn serve_connection(stream: TcpStream, pages: Pages, mut shutdown: watch::Receiver<bool>) {
    let mut client = Reader::new(stream, Side::Client);
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let read = tokio::select! {
            read = tokio::time::timeout(READ_TIMEOUT, client.read_origin_request_head(HEAD_LIMITS)) => read,
            () = stopped(&mut shutdown) => return,
        };
        let (response, keep_alive) = match read {
            // Timed out, or closed cleanly between requests.
            Err(_) | Ok(Ok(None)) => return,
            Ok(Ok(Some(head))) => answer(&head, &pages),
            Ok(Err(error)) => match refusal(&error) {
                Some(response) => (response, false),
                None => return,
            },
        };
        let stream = client.get_mut();
        let written = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&response)).await;
        if !matches!(written, Ok(Ok(()))) || !keep_alive {
            let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await;
            return;
        }
    }
}

/// The response to `head` and whether the connection stays open: only if the client
/// asked for it and sent no body, since this server never reads one.
fn answer(head: &OriginRequestHead, pages: &Pages) -> (Vec<u8>, bool) {
    match head.body() {
        Ok(body) => {
            let keep_alive = head.keep_alive() && body == BodyLength::Empty;
            (respond(head, pages, keep_alive), keep_alive)
        }
        Err(error) => (refusal(&error).unwrap_or_default(), false),
    }
}

/// The answer to a request head that could not be read, with the status `crate::http`
/// gives it (400, 414, 431, 501, 505), the connection then closed; `None` when the
/// client is gone and nothing can be sent.
fn refusal(error: &ProxyError) -> Option<Vec<u8>> {
    let status = error.status()?;
    Some(Response::error(status).encode(false, true))
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
    fn error(status: u16) -> Self {
        let reason = crate::http::answer::reason(status);
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

fn json(body: serde_json::Result<Vec<u8>>) -> Response {
    match body {
        Ok(json) => Response::ok("application/json", json),
        Err(_) => Response::error(500),
    }
}

/// `/readyz`: 200 while ready for traffic, 503 while starting or draining (a balancer's
/// check then takes the instance out before its listeners close).
fn readiness(health: &Health) -> Response {
    let state = health.readiness();
    let body = format!("{}\n", state.label()).into_bytes();
    match state {
        Readiness::Ready => Response::ok(TEXT, body),
        Readiness::Starting | Readiness::Draining => Response {
            body,
            ..Response::error(503)
        },
    }
}

fn respond(head: &OriginRequestHead, pages: &Pages, keep_alive: bool) -> Vec<u8> {
    let stats = &pages.stats;
    let send_body = match &head.method[..] {
        b"GET" => true,
        b"HEAD" => false,
        _ => return Response::error(405).encode(keep_alive, true),
    };
    let response = match head.path() {
        b"/metrics" => match prometheus::render(stats) {
            Ok(text) => Response::ok(prometheus::CONTENT_TYPE, text.into_bytes()),
            Err(_) => Response::error(500),
        },
        b"/stats" => json(serde_json::to_vec(&stats.snapshot())),
        b"/stats/series" => json(dashboard::series_json(stats)),
        b"/stats/top" => json(dashboard::top_json(stats)),
        b"/healthz" => Response::ok(TEXT, b"ok\n".to_vec()),
        b"/readyz" => readiness(&pages.health),
        b"/" => Response::ok("text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        _ => Response::error(404),
    };
    response.encode(keep_alive, send_body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn parse_all(raw: &[u8]) -> Result<Option<OriginRequestHead>, ProxyError> {
        crate::http::origin::parse_origin_request(&mut BytesMut::from(raw), HEAD_LIMITS)
    }

    /// (keep-alive, body announced) as [`answer`] decides them.
    fn persistence(raw: &[u8]) -> (bool, bool) {
        let head = parse_all(raw).expect("valid").expect("complete");
        let has_body = head.body().expect("unambiguous framing") != BodyLength::Empty;
        (head.keep_alive() && !has_body, has_body)
    }

    #[test]
    fn persistence_follows_the_version_defaults() {
        assert_eq!(persistence(b"GET / HTTP/1.1\r\n\r\n"), (true, false));
        assert_eq!(persistence(b"GET / HTTP/1.0\r\n\r\n"), (false, false));
        assert_eq!(
            persistence(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
            (true, false)
        );
        assert_eq!(
            persistence(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"),
            (false, true)
        );
        assert_eq!(
            persistence(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            (true, false)
        );
    }

    fn status_of(raw: &[u8]) -> String {
        let response = match parse_all(raw) {
            Ok(Some(head)) => {
                let pages = Pages {
                    stats: Arc::new(Stats::default()),
                    health: Health::default(),
                };
                answer(&head, &pages).0
            }
            Ok(None) => panic!("incomplete"),
            Err(error) => refusal(&error).expect("answerable"),
        };
        String::from_utf8_lossy(&response[..12]).into_owned()
    }

    #[test]
    fn garbage_floods_and_bad_framing_are_refused() {
        assert_eq!(status_of(b"\x16\x03\x01 hello\r\n\r\n"), "HTTP/1.1 400");
        let mut flood = b"GET / HTTP/1.1\r\n".to_vec();
        for n in 0..=MAX_HEADERS {
            flood.extend_from_slice(format!("X-{n}: v\r\n").as_bytes());
        }
        flood.extend_from_slice(b"\r\n");
        assert_eq!(status_of(&flood), "HTTP/1.1 431");
        assert_eq!(
            status_of(
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            "HTTP/1.1 400"
        );
        assert_eq!(
            status_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            "HTTP/1.1 505"
        );
        assert_eq!(status_of(b"DELETE /stats HTTP/1.1\r\n\r\n"), "HTTP/1.1 405");
        assert_eq!(status_of(b"CONNECT a:443 HTTP/1.1\r\n\r\n"), "HTTP/1.1 405");
        assert_eq!(status_of(b"GET /healthz HTTP/1.1\r\n\r\n"), "HTTP/1.1 200");
        // A fresh Health is still starting: not ready.
        assert_eq!(status_of(b"GET /readyz HTTP/1.1\r\n\r\n"), "HTTP/1.1 503");
        assert_eq!(
            status_of(b"GET http://m/stats HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 200"
        );
    }
}
