//! Request heads as an origin server reads them: origin-form (`GET /metrics HTTP/1.1`),
//! absolute-form reduced to its path, `*` for OPTIONS. For the proxy's own small servers
//! (the metrics listener); the same single parse as the proxy's heads
//! ([`head::parse_request_parts`]) with the caller's limits, so the framing, field and
//! version rules cannot drift apart.

use bytes::{Bytes, BytesMut};

use super::framing::{self, BodyLength};
use super::head::{HeadLimits, Version, parse_request_parts};
use super::headers::Headers;
use super::rewrite;
use super::target::{RequestTarget, ascii_path, parse_target, text};
use crate::error::ProxyError;

/// A request head as an origin server sees it (from [`parse_origin_request`]).
#[derive(Debug, Clone)]
pub struct OriginRequestHead {
    pub method: Bytes,
    /// What to route on: the path and query of origin-form (RFC 9112 §3.2.1), of
    /// absolute-form reduced to them (§3.2.2: a server must accept it), `*` for OPTIONS
    /// (§3.2.4), or for CONNECT the `host:port` as sent, for the server to refuse.
    pub target: Bytes,
    pub version: Version,
    pub headers: Headers,
}

impl OriginRequestHead {
    pub fn is_method(&self, name: &str) -> bool {
        &self.method[..] == name.as_bytes()
    }

    /// The path without its query.
    pub fn path(&self) -> &[u8] {
        let end = self
            .target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(self.target.len());
        &self.target[..end]
    }

    /// Whether the client asked to keep the connection open (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        rewrite::keep_alive_requested(self.version, &self.headers)
    }

    /// The request body's length under the proxy's own framing rules (RFC 9112 §6.1–6.3);
    /// 400 for ambiguous framing.
    pub fn body(&self) -> Result<BodyLength, ProxyError> {
        framing::request_body(self.version, &self.headers)
    }
}

/// Parses the request head an origin server receives (`GET /metrics HTTP/1.1`) at the
/// start of `buf`, within `limits`, under the same rules as [`parse_request`].
/// `Ok(None)`: incomplete, read more. On success the head's bytes are split off `buf`.
pub fn parse_origin_request(
    buf: &mut BytesMut,
    limits: HeadLimits,
) -> Result<Option<OriginRequestHead>, ProxyError> {
    let Some(parts) = parse_request_parts(buf, limits)? else {
        return Ok(None);
    };
    Ok(Some(OriginRequestHead {
        target: origin_target(text(&parts.method), &parts.target)?,
        method: parts.method,
        version: parts.version,
        headers: parts.headers,
    }))
}

/// Reads the request target as an origin server routes on it (see
/// [`OriginRequestHead::target`]).
fn origin_target(method: &str, received: &Bytes) -> Result<Bytes, ProxyError> {
    let target = text(received);
    if target.starts_with('/') {
        return Ok(ascii_path(received, target));
    }
    if target == "*" {
        return match method {
            "OPTIONS" => Ok(Bytes::from_static(b"*")),
            _ => Err(ProxyError::BadRequest("asterisk-form is only for OPTIONS")),
        };
    }
    match parse_target(method, received)? {
        RequestTarget::Absolute { path, .. } => Ok(path),
        RequestTarget::Authority { .. } => Ok(received.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_request;

    /// The metrics listener's limits: tighter than the proxy's, same parser.
    const SMALL: HeadLimits = HeadLimits {
        max_bytes: 8 * 1024,
        max_fields: 32,
    };

    fn parse_origin(text: &[u8]) -> Result<Option<OriginRequestHead>, ProxyError> {
        parse_origin_request(&mut BytesMut::from(text), SMALL)
    }

    #[test]
    fn origin_form_split_at_every_byte() {
        let full = b"GET /stats?x=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n";
        for split in 0..full.len() {
            assert!(
                parse_origin(&full[..split]).unwrap().is_none(),
                "split {split}"
            );
        }
        // Arriving one byte at a time into one buffer, with the next request behind it.
        let mut stream = full.to_vec();
        stream.extend_from_slice(b"GET /");
        let mut buf = BytesMut::new();
        let mut parsed = None;
        for (at, &byte) in stream.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            if let Some(head) = parse_origin_request(&mut buf, SMALL).unwrap() {
                assert_eq!(at + 1, full.len(), "complete exactly at the blank line");
                parsed = Some(head);
            }
        }
        let head = parsed.expect("complete");
        assert!(head.is_method("GET"));
        assert_eq!(
            (&head.target[..], head.path()),
            (&b"/stats?x=1"[..], &b"/stats"[..])
        );
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.headers.get_str("host"), Some("a"));
        assert!(!head.keep_alive(), "close wins");
        assert_eq!(&buf[..], b"GET /", "only the head is consumed");
    }

    #[test]
    fn origin_form_split_line_endings_and_bare_line_feeds() {
        let full = b"HEAD /metrics HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        for split in 0..full.len() {
            let mut buf = BytesMut::from(&full[..split]);
            assert!(parse_origin_request(&mut buf, SMALL).unwrap().is_none());
            buf.extend_from_slice(&full[split..]);
            let head = parse_origin_request(&mut buf, SMALL).unwrap().unwrap();
            assert_eq!(
                (head.path(), head.version),
                (&b"/metrics"[..], Version::Http10)
            );
            assert!(head.keep_alive(), "split {split}");
            assert!(buf.is_empty());
        }
        // The same head with bare LF endings is refused, as by the proxy's parser.
        let bare = b"HEAD /metrics HTTP/1.0\nConnection: Keep-Alive\n\n";
        for split in 0..bare.len() {
            let mut buf = BytesMut::from(&bare[..split]);
            assert!(parse_origin_request(&mut buf, SMALL).unwrap().is_none());
            buf.extend_from_slice(&bare[split..]);
            assert!(
                matches!(
                    parse_origin_request(&mut buf, SMALL),
                    Err(ProxyError::BadRequest(_))
                ),
                "split {split}"
            );
        }
    }

    #[test]
    fn origin_targets() {
        let target = |line: &str| {
            parse_origin(format!("{line}\r\n\r\n").as_bytes())
                .map(|head| head.map(|head| head.target))
        };
        let ok = [
            ("GET /metrics HTTP/1.1", "/metrics"),
            ("GET http://Metrics:9898/stats?q HTTP/1.1", "/stats?q"),
            ("GET http://metrics HTTP/1.1", "/"),
            ("OPTIONS * HTTP/1.1", "*"),
            ("CONNECT metrics:443 HTTP/1.1", "metrics:443"),
            ("GET /caf\u{e9} HTTP/1.1", "/caf%C3%A9"),
        ];
        for (line, want) in ok {
            assert_eq!(target(line).unwrap().unwrap(), want.as_bytes(), "{line}");
        }
        for line in [
            "GET * HTTP/1.1",
            "GET metrics HTTP/1.1",
            "GET ftp://a/ HTTP/1.1",
        ] {
            assert!(target(line).is_err(), "{line}");
        }
    }

    #[test]
    fn origin_form_versions_and_framing() {
        let head = parse_origin(b"GET / HTTP/1.3\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.version, Version::Http11);
        assert!(matches!(
            parse_origin(b"PRI * HTTP/2.0\r\n\r\n"),
            Err(ProxyError::VersionNotSupported)
        ));
        assert!(matches!(
            parse_origin(b"\x16\x03\x01 hello\r\n\r\n"),
            Err(ProxyError::BadRequest(_))
        ));
        let body = |fields: &str| {
            parse_origin(format!("POST / HTTP/1.1\r\n{fields}\r\n").as_bytes())
                .unwrap()
                .unwrap()
                .body()
        };
        assert_eq!(body("").unwrap(), BodyLength::Empty);
        assert_eq!(body("Content-Length: 0\r\n").unwrap(), BodyLength::Empty);
        assert_eq!(body("Content-Length: 3\r\n").unwrap(), BodyLength::Fixed(3));
        assert_eq!(
            body("Transfer-Encoding: chunked\r\n").unwrap(),
            BodyLength::Chunked
        );
        assert!(body("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n").is_err());
        assert!(body("Content-Length: 3, 4\r\n").is_err());
        // Field syntax is httparse's, as for the proxy.
        assert!(parse_origin(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n").is_err());
    }

    #[test]
    fn origin_form_limits_are_a_parameter() {
        let fields = |n: usize| -> String { (0..n).map(|i| format!("X{i}: 1\r\n")).collect() };
        let head = format!("GET / HTTP/1.1\r\n{}\r\n", fields(SMALL.max_fields));
        assert!(parse_origin(head.as_bytes()).unwrap().is_some());
        let head = format!("GET / HTTP/1.1\r\n{}\r\n", fields(SMALL.max_fields + 1));
        assert!(matches!(
            parse_origin(head.as_bytes()),
            Err(ProxyError::HeadTooLarge)
        ));
        assert!(
            parse_request(&mut BytesMut::from(
                format!(
                    "GET http://a/ HTTP/1.1\r\nHost: a\r\n{}\r\n",
                    fields(SMALL.max_fields + 1)
                )
                .as_bytes()
            ))
            .unwrap()
            .is_some()
        );

        // Exactly at the byte limit is in; one byte more is out, complete or not.
        let start = "GET / HTTP/1.1\r\nX: ";
        let fill = SMALL.max_bytes - start.len() - 4;
        let at_limit = format!("{start}{}\r\n\r\n", "a".repeat(fill));
        assert_eq!(at_limit.len(), SMALL.max_bytes);
        assert!(parse_origin(at_limit.as_bytes()).unwrap().is_some());
        let over = format!("{start}{}\r\n\r\n", "a".repeat(fill + 1));
        assert!(matches!(
            parse_origin(over.as_bytes()),
            Err(ProxyError::HeadTooLarge)
        ));
        assert!(matches!(
            parse_origin(&over.as_bytes()[..SMALL.max_bytes]),
            Err(ProxyError::HeadTooLarge)
        ));
        let long_uri = format!("GET /{} HTTP/1.1\r\n", "a".repeat(SMALL.max_bytes));
        assert!(matches!(
            parse_origin(long_uri.as_bytes()),
            Err(ProxyError::UriTooLong)
        ));
    }
}
