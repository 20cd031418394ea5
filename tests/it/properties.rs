//! Property tests (proptest) for the two transformations at the heart of request
//! smuggling defence:
//! - a request head the parser accepts is re-serialised toward the origin with the same
//!   meaning: method and path byte-exact, Host from the URI, the end-to-end fields in
//!   order and spelling, framing that matches the body, all in canonical form;
//! - a chunked body, however it is chunked, extended, trailed and split across reads,
//!   decodes to the same bytes and is re-encoded canonically.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;
use proxy_server::error::Side;
use proxy_server::http::body::{Relay, relay_body};
use proxy_server::http::{BodyLength, Reader, RequestTarget, framing, head, rewrite};
use tokio::io::{AsyncRead, ReadBuf};

/// Fields that describe one hop (RFC 9110 §7.6.1) or carry the proxy's own credentials,
/// plus those the proxy rewrites itself (Host, framing, Expect, Via).
const NOT_END_TO_END: [&str; 13] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
    "transfer-encoding",
    "expect",
    "via",
];

const INTERESTING_NAMES: [&str; 18] = [
    "Host",
    "Connection",
    "Proxy-Connection",
    "Keep-Alive",
    "TE",
    "Trailer",
    "Upgrade",
    "Proxy-Authorization",
    "Via",
    "Expect",
    "Content-Length",
    "Transfer-Encoding",
    "Accept",
    "Cookie",
    "X-Forwarded-For",
    "X-A",
    "x-a",
    "Content_Length",
];

const FRAMING: [(&str, &str); 5] = [
    ("Content-Length", "12"),
    ("content-length", "007"),
    ("Transfer-Encoding", "chunked"),
    ("transfer-encoding", "CHUNKED"),
    ("Transfer-Encoding", "chunked, "),
];

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(&INTERESTING_NAMES[..]).prop_map(str::to_string),
        proptest::sample::select(&INTERESTING_NAMES[..]).prop_map(|n| n.to_ascii_uppercase()),
        "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,12}",
    ]
}

fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,24}",
        proptest::sample::select(
            &[
                "close",
                "keep-alive, X-A",
                "chunked",
                "5",
                "upgrade",
                "1.1 other",
                "100-continue",
                "Chunked, chunked",
                "x-a, cookie"
            ][..]
        )
        .prop_map(str::to_string),
        "[0-9]{1,3}",
    ]
}

/// A request head as a client might send it, with line endings and whitespace varied.
#[derive(Debug, Clone)]
struct Sent {
    method: String,
    host: String,
    port: Option<u16>,
    path: String,
    version: &'static str,
    fields: Vec<(String, String)>,
    /// Lines end in a bare LF: the head must be refused.
    lf_only: bool,
    spaces: Vec<&'static str>,
}

fn sent() -> impl Strategy<Value = Sent> {
    (
        proptest::sample::select(
            &[
                "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "X-Custom",
            ][..],
        ),
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5})?",
        proptest::option::of(1u16..),
        "/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,30}(\\?[A-Za-z0-9=&%+/?]{0,20})?",
        proptest::sample::select(&["HTTP/1.1", "HTTP/1.0"][..]),
        proptest::collection::vec((field_name(), field_value()), 0..12),
        proptest::bool::weighted(0.2),
        proptest::collection::vec(
            proptest::sample::select(&["", " ", "  ", "\t", " \t"][..]),
            12,
        ),
        // A framing field somewhere, so bodies of each kind are common, not accidental.
        proptest::option::of((
            proptest::sample::select(&FRAMING[..]),
            any::<proptest::sample::Index>(),
        )),
        // A Host field, as every HTTP/1.1 client sends one, somewhere in most heads;
        // an HTTP/1.1 head without one must be refused.
        proptest::option::weighted(0.9, any::<proptest::sample::Index>()),
    )
        .prop_map(
            |(method, host, port, path, version, mut fields, lf_only, spaces, framing, host_at)| {
                if let Some(((name, value), at)) = framing {
                    let at = at.index(fields.len() + 1);
                    fields.insert(at, (name.to_string(), value.to_string()));
                }
                if let Some(at) = host_at {
                    let at = at.index(fields.len() + 1);
                    fields.insert(at, ("Host".to_string(), host.clone()));
                }
                Sent {
                    method: method.to_string(),
                    host,
                    port,
                    path,
                    version,
                    fields,
                    lf_only,
                    spaces,
                }
            },
        )
}

impl Sent {
    fn bytes(&self) -> Vec<u8> {
        let eol = if self.lf_only { "\n" } else { "\r\n" };
        let authority = match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        };
        let mut out = format!(
            "{} http://{authority}{} {}{eol}",
            self.method, self.path, self.version
        );
        for (i, (name, value)) in self.fields.iter().enumerate() {
            let space = self.spaces[i % self.spaces.len()];
            out.push_str(&format!("{name}:{space}{value}{space}{eol}"));
        }
        out.push_str(eol);
        out.into_bytes()
    }
}

fn lower(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_ascii_lowercase()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn accepted_requests_keep_their_meaning_toward_the_origin(sent in sent()) {
        let bytes = sent.bytes();
        let parsed = head::parse_request(&mut BytesMut::from(&bytes[..]));
        let has_host = sent.fields.iter().any(|(name, _)| name.eq_ignore_ascii_case("host"));
        if sent.lf_only || (sent.version == "HTTP/1.1" && !has_host) {
            prop_assert!(parsed.is_err(), "accepted: {:?}", String::from_utf8_lossy(&bytes));
            return Ok(());
        }
        let Ok(Some(request)) = parsed else {
            return Ok(());
        };
        let Ok(length) = framing::request_body(request.version, &request.headers) else {
            return Ok(());
        };
        let out = rewrite::origin_request(&request, length, rewrite::Outgoing::plain("proxy-server"));

        // Canonical, with the body the framing announces appended.
        let mut message = out.clone();
        match length {
            BodyLength::Fixed(n) => message.extend(std::iter::repeat_n(b'b', n as usize)),
            BodyLength::Chunked => message.extend_from_slice(b"0\r\n\r\n"),
            _ => {}
        }
        let (messages, used) = crate::common::canonical::parse_canonical(&message)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&out))))?;
        prop_assert_eq!((messages.len(), used), (1, message.len()));
        let seen = &messages[0];

        // Method and path byte-exact, Host from the URI.
        prop_assert_eq!(&seen.method, &sent.method);
        prop_assert_eq!(&seen.target, &sent.path);
        let RequestTarget::Absolute { .. } = &request.target else { unreachable!() };
        let host = request.target.host_header();
        prop_assert_eq!(seen.one("host"), Some(host.as_str()));

        // Framing matches the body.
        match length {
            BodyLength::Fixed(n) => {
                let n = n.to_string();
                prop_assert_eq!(seen.one("content-length"), Some(n.as_str()));
            }
            BodyLength::Chunked => prop_assert!(seen.chunked),
            _ => prop_assert!(seen.all("content-length").is_empty() && !seen.chunked),
        }

        // End-to-end fields: in order and spelling, minus those Connection names.
        let named: Vec<String> = request.headers.tokens("connection").map(lower).collect();
        let upgrade = request.headers.contains("upgrade") && named.iter().any(|t| t == "upgrade");
        let kept = |name: &str| {
            let name = name.to_ascii_lowercase();
            let kept_upgrade = upgrade && name == "upgrade";
            kept_upgrade || (!NOT_END_TO_END.contains(&name.as_str()) && !named.contains(&name))
        };
        let want: Vec<(String, String)> = request
            .headers
            .iter()
            .filter(|h| kept(h.name_str()))
            .map(|h| (h.name_str().to_string(), String::from_utf8_lossy(&h.value).into_owned()))
            .collect();
        let got: Vec<(String, String)> = seen
            .headers
            .iter()
            .filter(|(name, _)| kept(name))
            .cloned()
            .collect();
        prop_assert_eq!(got, want);

        // Via: the hops before, then this one.
        let via = seen.all("via").last().copied().unwrap_or_default().to_string();
        let hop = if sent.version == "HTTP/1.0" { "1.0 proxy-server" } else { "1.1 proxy-server" };
        prop_assert!(via.ends_with(hop), "Via {via}");
    }
}

/// Hands out `data` in pieces cut at `cuts`, as a socket would.
struct Pieces {
    data: Vec<u8>,
    cuts: Vec<usize>,
    at: usize,
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let at = self.at;
        let next_cut = self
            .cuts
            .iter()
            .copied()
            .find(|&c| c > at)
            .unwrap_or(self.data.len());
        let n = (next_cut - at).min(buf.remaining());
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

/// Relays `encoded` as a chunked body read in pieces; the output and the decoded bytes.
fn decode(encoded: &[u8], cuts: Vec<usize>) -> Result<(Vec<u8>, Vec<u8>), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pieces = Pieces {
            data: encoded.to_vec(),
            cuts,
            at: 0,
        };
        let mut src = Reader::new(pieces, Side::Client);
        let mut out = Vec::new();
        let mut decoded = Vec::new();
        let relay = Relay {
            read_timeout: Duration::from_secs(5),
            dst_side: Side::Upstream,
            dechunk: false,
        };
        relay_body(
            &mut src,
            &mut out,
            BodyLength::Chunked,
            relay,
            &mut |b: &[u8]| decoded.extend_from_slice(b),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok((out, decoded))
    })
}

/// One way a sender may write a chunked body: chunk sizes, size spelling, extensions
/// and trailers vary; the bytes do not.
#[derive(Debug, Clone)]
struct Chunking {
    body: Vec<u8>,
    sizes: Vec<usize>,
    upper_hex: bool,
    leading_zeros: usize,
    extension: Option<String>,
    trailers: Vec<String>,
}

fn chunking() -> impl Strategy<Value = Chunking> {
    (
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::collection::vec(1usize..300, 1..20),
        any::<bool>(),
        0usize..4,
        proptest::option::of("[a-z]{1,5}(=[a-z0-9]{1,5}|=\"[ a-z;]{0,8}\")?"),
        proptest::collection::vec("X-[A-Za-z]{1,6}: [ -~]{0,10}", 0..3),
    )
        .prop_map(
            |(body, sizes, upper_hex, leading_zeros, extension, trailers)| Chunking {
                body,
                sizes,
                upper_hex,
                leading_zeros,
                extension,
                trailers,
            },
        )
}

impl Chunking {
    /// The body cut into chunks of the given sizes (cycled), and its encoding.
    fn encode(&self) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut chunks = Vec::new();
        let mut rest = &self.body[..];
        let mut sizes = self.sizes.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).min(rest.len());
            chunks.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        let mut out = Vec::new();
        let size_line = |n: usize| {
            let hex = if self.upper_hex {
                format!("{n:X}")
            } else {
                format!("{n:x}")
            };
            let ext = self
                .extension
                .as_ref()
                .map(|e| format!(";{e}"))
                .unwrap_or_default();
            format!("{}{hex}{ext}\r\n", "0".repeat(self.leading_zeros))
        };
        for chunk in &chunks {
            out.extend_from_slice(size_line(chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(size_line(0).as_bytes());
        for trailer in &self.trailers {
            out.extend_from_slice(format!("{trailer}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        (chunks, out)
    }
}

fn canonical(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn chunked_bodies_decode_the_same_however_they_arrive(
        chunking in chunking(),
        cuts in proptest::collection::vec(0usize..4000, 0..40),
    ) {
        let (chunks, encoded) = chunking.encode();
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < encoded.len()).collect();
        cuts.sort_unstable();
        let (out, decoded) = decode(&encoded, cuts).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&decoded, &chunking.body);
        prop_assert_eq!(out, canonical(&chunks));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every single split point of a small body, in one read and the rest in another.
    #[test]
    fn chunked_bodies_split_at_every_point(chunking in chunking().prop_filter("small", |c| c.body.len() < 120)) {
        let (chunks, encoded) = chunking.encode();
        let want = canonical(&chunks);
        for split in 1..encoded.len() {
            let (out, decoded) = decode(&encoded, vec![split]).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&decoded, &chunking.body, "split at {}", split);
            prop_assert_eq!(&out, &want, "split at {}", split);
        }
    }
}
