//! Request and response heads: bounded parsing with httparse into owned, zero-copy
//! structures, the request target forms (RFC 9112 §3.2), and serialisation.
//!
//! One request parser serves two readers: the proxy ([`parse_request`], absolute-form and
//! CONNECT) and small origin servers such as the metrics listener ([`parse_origin_request`],
//! origin-form). Both share the httparse call, the size limits and the version handling;
//! only the reading of the request target differs.

use bytes::{Bytes, BytesMut};
use std::mem::MaybeUninit;

use super::headers::{Header, Headers};
use super::target::{RequestTarget, parse_target, text};
use crate::error::{ProxyError, RESPONSE_HEAD_TOO_LARGE};

/// Most bytes a request line plus header fields may take (431 or 414 past it).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in one head (431 past it).
pub const MAX_HEADERS: usize = 100;

/// How large a request head may grow. The proxy reads with [`HeadLimits::PROXY`]; an
/// origin server that expects only small requests passes tighter limits to the same parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Most bytes a request line plus header fields may take (414 or 431 past it).
    pub max_bytes: usize,
    /// Most header fields (431 past it); at most [`MAX_HEADERS`], the parser's field array.
    pub max_fields: usize,
}

impl HeadLimits {
    /// The proxy's own limits.
    pub const PROXY: HeadLimits = HeadLimits {
        max_bytes: MAX_HEAD_BYTES,
        max_fields: MAX_HEADERS,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Bytes,
    pub target: RequestTarget,
    pub version: Version,
    pub headers: Headers,
}

impl RequestHead {
    pub fn method_str(&self) -> &str {
        std::str::from_utf8(&self.method).unwrap_or("")
    }

    pub fn is_method(&self, name: &str) -> bool {
        &self.method[..] == name.as_bytes()
    }
}

#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub reason: Bytes,
    pub headers: Headers,
}

impl ResponseHead {
    /// `HTTP/1.1 <status> <reason>\r\n` + fields + `\r\n`. We always speak HTTP/1.1.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.reason);
        out.extend_from_slice(b"\r\n");
        self.headers.write_to(out);
        out.extend_from_slice(b"\r\n");
    }
}

/// Field name and value positions within the head buffer, so one httparse pass suffices.
/// `u32`: heads are refused long before 4 GiB (at most [`MAX_HEAD_BYTES`] here), and the
/// array, made anew for every head, is half the size to clear.
type Spans = [(u32, u32, u32, u32); MAX_HEADERS];

/// httparse's field array, left uninitialised: httparse writes the fields it finds and
/// hands back only those, so nothing clears 3 KiB of stack for every head.
type Fields<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

fn no_fields<'b>() -> Fields<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

fn spans_to_headers(head: &Bytes, spans: &Spans, count: usize) -> Headers {
    let at = |n: u32| n as usize;
    spans[..count]
        .iter()
        .map(|&(n0, n1, v0, v1)| {
            Header::new(head.slice(at(n0)..at(n1)), head.slice(at(v0)..at(v1)))
        })
        .collect()
}

/// Where `part`, a slice of `base`, lies in it (empty when it is not in `base`).
fn span_of(base: &[u8], part: &str) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= base.len() => start..end,
        _ => 0..0,
    }
}

fn record_spans(base: &[u8], parsed: &[httparse::Header<'_>], spans: &mut Spans) -> usize {
    let start = base.as_ptr() as usize;
    let offset = |p: *const u8| (p as usize - start) as u32;
    for (span, h) in spans.iter_mut().zip(parsed) {
        let n0 = offset(h.name.as_ptr());
        let v0 = offset(h.value.as_ptr());
        *span = (n0, n0 + h.name.len() as u32, v0, v0 + h.value.len() as u32);
    }
    parsed.len()
}

/// RFC 9112 §2.3: a request in HTTP/1.x with x above 1 is handled as HTTP/1.1, the
/// highest minor version this proxy speaks (httparse knows only 1.0 and 1.1). The digit is
/// rewritten in place once the request line is complete; the head is re-serialised as
/// HTTP/1.1 for the origin anyway.
fn serve_later_minor_as_http11(buf: &mut BytesMut) {
    let line_len = request_line(buf).len();
    let Some(version_at) = line_len.checked_sub(9) else {
        return;
    };
    let version = &buf[version_at..line_len];
    if version.starts_with(b" HTTP/1.") && matches!(version[8], b'2'..=b'9') {
        buf[line_len - 1] = b'1';
    }
}

/// The first line of `buf` without its line ending (empty until a line ending arrives).
fn request_line(buf: &[u8]) -> &[u8] {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return &[];
    };
    buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end])
}

/// What a request line with a version httparse refuses gets: 505 for a well-formed
/// version in another major (an HTTP/2 preface, `HTTP/3.0`), 400 for anything else.
fn version_error(line: &[u8]) -> ProxyError {
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && *major != b'1' && minor.is_ascii_digit() =>
        {
            ProxyError::VersionNotSupported
        }
        _ => ProxyError::BadRequest("malformed HTTP version"),
    }
}

/// Parses a proxy request head (absolute-form, or authority-form for CONNECT) at the
/// start of `buf`, within [`HeadLimits::PROXY`]. `Ok(None)`: incomplete, read more.
/// On success the head's bytes are split off `buf`.
///
/// An origin-form request (`GET /proxy.pac`) is refused with
/// [`ProxyError::NotAProxyRequest`] once complete, and its bytes are left in `buf`: the
/// front end answers the proxy's own pages (the PAC file) from them.
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, ProxyError> {
    if is_origin_form(buf) {
        // Rare (a proxy client never sends one), so a copy is cheap enough.
        let mut copy = buf.clone();
        return match parse_request_parts(&mut copy, HeadLimits::PROXY)? {
            Some(_) => Err(ProxyError::NotAProxyRequest),
            None => Ok(None),
        };
    }
    let Some(parts) = parse_request_parts(buf, HeadLimits::PROXY)? else {
        return Ok(None);
    };
    let head = RequestHead {
        target: parse_target(text(&parts.method), &parts.target)?,
        method: parts.method,
        version: parts.version,
        headers: parts.headers,
    };
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host,
    // CONNECT included (every client we know sends it: curl, git, Python's http.client,
    // which sends its CONNECT as HTTP/1.0), and to any request with more than one Host
    // field line (which one an origin reads would be a guess). HTTP/1.0 requests may
    // leave it out.
    let hosts = {
        let mut fields = head.headers.get_all("host");
        (fields.next().is_some(), fields.next().is_some())
    };
    match hosts {
        (false, _) if head.version == Version::Http11 => {
            Err(ProxyError::BadRequest("HTTP/1.1 request without Host"))
        }
        (true, true) => Err(ProxyError::BadRequest("more than one Host field")),
        _ => Ok(Some(head)),
    }
}

/// Whether a line of `head` ends in a bare LF. RFC 9112 §2.2 lets a recipient accept
/// one, but gunicorn, waitress, aiohttp and twisted refuse such a message, so a proxy
/// that forwarded it (re-serialised with CRLF) would let through what the origin
/// behind it was written to refuse — and two parsers that split a head differently are
/// what request smuggling is made of.
fn has_bare_lf(head: &[u8]) -> bool {
    let mut from = 0;
    while let Some(at) = head[from..].iter().position(|&b| b == b'\n') {
        let at = from + at;
        if at == 0 || head[at - 1] != b'\r' {
            return true;
        }
        from = at + 1;
    }
    false
}

/// Whether the request line in `buf` has an origin-form or asterisk-form target (RFC
/// 9112 §3.2.1, §3.2.4) on a method other than CONNECT: what [`parse_target`] refuses
/// as not a proxy request.
fn is_origin_form(buf: &[u8]) -> bool {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    match (words.next(), words.next()) {
        (Some(method), Some(target)) => {
            method != b"CONNECT" && (target.starts_with(b"/") || target == b"*")
        }
        _ => false,
    }
}

/// A complete request head before its target is read in one form or another.
pub(super) struct RequestParts {
    /// Slices of the head's bytes (valid UTF-8: httparse read them as text).
    pub(super) method: Bytes,
    pub(super) target: Bytes,
    pub(super) version: Version,
    pub(super) headers: Headers,
}

/// The one httparse pass over a request head: limits, field syntax and version. The
/// head's bytes are split off `buf` once it is complete.
pub(super) fn parse_request_parts(
    buf: &mut BytesMut,
    limits: HeadLimits,
) -> Result<Option<RequestParts>, ProxyError> {
    serve_later_minor_as_http11(buf);
    let mut fields = no_fields();
    let max_fields = limits.max_fields.min(MAX_HEADERS);
    let mut request = httparse::Request::new(&mut []);
    let mut spans: Spans = [(0, 0, 0, 0); MAX_HEADERS];
    let (len, method, target, minor, count) = match request
        .parse_with_uninit_headers(buf, &mut fields[..max_fields])
    {
        // A head that completed only past the limit is over it all the same.
        Ok(httparse::Status::Complete(len)) if len > limits.max_bytes => {
            return over_limit(buf, limits.max_bytes).map(|()| None);
        }
        Ok(httparse::Status::Complete(len)) if has_bare_lf(&buf[..len]) => {
            return Err(ProxyError::BadRequest(
                "line ending without CR in the request head",
            ));
        }
        Ok(httparse::Status::Complete(len)) => {
            let count = record_spans(buf, request.headers, &mut spans);
            let method = span_of(buf, request.method.unwrap_or(""));
            let target = span_of(buf, request.path.unwrap_or(""));
            (len, method, target, request.version.unwrap_or(1), count)
        }
        Ok(httparse::Status::Partial) => return over_limit(buf, limits.max_bytes).map(|()| None),
        Err(httparse::Error::TooManyHeaders) => return Err(ProxyError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(request_line(buf))),
        Err(_) => return Err(ProxyError::BadRequest("malformed request head")),
    };
    let head = buf.split_to(len).freeze();
    Ok(Some(RequestParts {
        method: head.slice(method),
        target: head.slice(target),
        version: Version::from_minor(minor),
        headers: spans_to_headers(&head, &spans, count),
    }))
}

/// A partial head may keep growing only up to `max_bytes`: 414 if even the request line
/// does not fit, else 431.
fn over_limit(buf: &[u8], max_bytes: usize) -> Result<(), ProxyError> {
    if buf.len() < max_bytes {
        Ok(())
    } else if !buf[..max_bytes].contains(&b'\n') {
        Err(ProxyError::UriTooLong)
    } else {
        Err(ProxyError::HeadTooLarge)
    }
}

/// Parses a response head at the start of `buf`; `Ok(None)`: incomplete.
pub fn parse_response(buf: &mut BytesMut) -> Result<Option<ResponseHead>, ProxyError> {
    let mut fields = no_fields();
    let mut response = httparse::Response::new(&mut []);
    let mut spans: Spans = [(0, 0, 0, 0); MAX_HEADERS];
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut fields,
    );
    let (len, status, reason, minor, count) = match parsed {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            return Err(ProxyError::BadResponse(RESPONSE_HEAD_TOO_LARGE));
        }
        Ok(httparse::Status::Complete(len)) => {
            let count = record_spans(buf, response.headers, &mut spans);
            let reason = span_of(buf, response.reason.unwrap_or(""));
            (
                len,
                response.code.unwrap_or(0),
                reason,
                response.version.unwrap_or(1),
                count,
            )
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => return Ok(None),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::BadResponse(RESPONSE_HEAD_TOO_LARGE));
        }
        Err(_) => return Err(ProxyError::BadResponse("malformed response head")),
    };
    if !(100..=599).contains(&status) {
        return Err(ProxyError::BadResponse("status code out of range"));
    }
    let head = buf.split_to(len).freeze();
    Ok(Some(ResponseHead {
        version: Version::from_minor(minor),
        status,
        reason: head.slice(reason),
        headers: spans_to_headers(&head, &spans, count),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &[u8]) -> Result<Option<RequestHead>, ProxyError> {
        parse_request(&mut BytesMut::from(text))
    }

    #[test]
    fn origin_form_is_refused_with_its_bytes_left_in_place() {
        let text = b"GET /proxy.pac HTTP/1.1\r\nHost: p\r\n\r\n";
        let mut buf = BytesMut::from(&text[..20]);
        assert!(matches!(parse_request(&mut buf), Ok(None)));
        let mut buf = BytesMut::from(&text[..]);
        assert!(matches!(
            parse_request(&mut buf),
            Err(ProxyError::NotAProxyRequest)
        ));
        assert_eq!(&buf[..], &text[..]);
        // CONNECT with a path is a bad CONNECT, not origin-form.
        let mut connect = BytesMut::from(&b"CONNECT /x HTTP/1.1\r\nHost: p\r\n\r\n"[..]);
        assert!(matches!(
            parse_request(&mut connect),
            Err(ProxyError::BadRequest(_))
        ));
    }

    #[test]
    fn absolute_form() {
        let head =
            parse_all(b"GET http://Example.COM:8080/a%20b?q=1&r HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            head.target,
            RequestTarget::Absolute {
                host: "example.com".into(),
                port: 8080,
                path: Bytes::from_static(b"/a%20b?q=1&r")
            }
        );
        assert_eq!(head.target.host_header(), "example.com:8080");
        assert_eq!(head.headers.get_str("host"), Some("x"));
    }

    #[test]
    fn empty_path_and_query_only() {
        let t = parse_target("GET", &Bytes::from_static("http://a".as_bytes())).unwrap();
        assert_eq!(t.display(), "http://a/");
        let t = parse_target("GET", &Bytes::from_static("http://a?x".as_bytes())).unwrap();
        assert_eq!(t.display(), "http://a/?x");
    }

    #[test]
    fn non_ascii_paths_are_percent_encoded() {
        let t = parse_target(
            "GET",
            &Bytes::from_static("http://a/caf\u{e9}?q=\u{a0}&r=%41".as_bytes()),
        )
        .unwrap();
        assert_eq!(t.display(), "http://a/caf%C3%A9?q=%C2%A0&r=%41");
        let head = parse_all("GET http://a/\u{85} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes())
            .unwrap()
            .unwrap();
        assert!(
            matches!(head.target, RequestTarget::Absolute { ref path, .. } if path == "/%C2%85")
        );
        // Bytes that are not UTF-8 never get this far.
        assert!(parse_all(b"GET http://a/\x80 HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn ipv6_targets() {
        let t = parse_target("GET", &Bytes::from_static("http://[::1]:9000/x".as_bytes())).unwrap();
        assert_eq!((t.host(), t.port()), ("::1", 9000));
        assert_eq!(t.host_header(), "[::1]:9000");
        let t = parse_target("CONNECT", &Bytes::from_static("[::1]:443".as_bytes())).unwrap();
        assert_eq!(t.display(), "[::1]:443");
    }

    #[test]
    fn rejected_targets() {
        for (method, target) in [
            ("GET", "/path"),
            ("OPTIONS", "*"),
            ("GET", "http://user:pw@host/"),
            ("GET", "http://host:99999/"),
            ("GET", "http://host:/"),
            ("GET", "http://ho st/"),
            ("GET", "http:///x"),
            ("GET", "ftp://host/"),
            ("CONNECT", "host"),
            ("CONNECT", "host:0"),
            ("CONNECT", "[::1"),
        ] {
            assert!(
                parse_target(method, &Bytes::from_static(target.as_bytes())).is_err(),
                "{method} {target}"
            );
        }
    }

    #[test]
    fn incremental_and_limits() {
        let full = b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\nrest";
        for split in 0..full.len() - 4 {
            assert!(
                parse_all(&full[..split]).unwrap().is_none(),
                "split {split}"
            );
        }
        let mut buf = BytesMut::from(&full[..]);
        parse_request(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..], b"rest");

        let long_uri = format!("GET http://a/{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(
            parse_all(long_uri.as_bytes()),
            Err(ProxyError::UriTooLong)
        ));
        let big = format!(
            "GET http://a/ HTTP/1.1\r\nX: {}\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert!(matches!(
            parse_all(big.as_bytes()),
            Err(ProxyError::HeadTooLarge)
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: 1\r\n")).collect();
        let many = format!("GET http://a/ HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            parse_all(many.as_bytes()),
            Err(ProxyError::HeadTooLarge)
        ));
    }

    #[test]
    fn bare_line_feeds_are_refused_wherever_they_are() {
        for head in [
            "GET http://a/ HTTP/1.1\nHost: a\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\n",
            "GET http://a/ HTTP/1.1\nHost: a\n\n",
            "\nGET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://a/ HTTP/1.0\n\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\n\r\n",
        ] {
            assert!(
                matches!(parse_all(head.as_bytes()), Err(ProxyError::BadRequest(_))),
                "{head:?}"
            );
        }
        // Split anywhere, the CRLF head is read whole, and the body's bytes are no
        // part of the head.
        let full = b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n\n\n";
        let mut buf = BytesMut::from(&full[..]);
        assert!(parse_request(&mut buf).unwrap().is_some());
        assert_eq!(&buf[..], b"\n\n");
        assert!(!has_bare_lf(b"a\r\nb\r\n\r\n") && has_bare_lf(b"\n") && has_bare_lf(b"a\r\n\n"));
    }

    #[test]
    fn http11_requests_need_host_and_http10_ones_do_not() {
        for head in [
            "GET http://a/ HTTP/1.1\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nX-Host: a\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\n\r\n",
            "GET http://a/ HTTP/1.2\r\n\r\n",
        ] {
            assert!(
                matches!(parse_all(head.as_bytes()), Err(ProxyError::BadRequest(why)) if why.contains("Host")),
                "{head:?}"
            );
        }
        for head in [
            "GET http://a/ HTTP/1.0\r\n\r\n",
            "CONNECT a:443 HTTP/1.0\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nhOsT: a\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        ] {
            assert!(parse_all(head.as_bytes()).unwrap().is_some(), "{head:?}");
        }
        for head in [
            "GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET http://a/ HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
        ] {
            assert!(
                matches!(parse_all(head.as_bytes()), Err(ProxyError::BadRequest(why)) if why.contains("more than one Host")),
                "{head:?}"
            );
        }
        // Other faults of the head keep their own answers.
        assert!(matches!(
            parse_all(b"GET https://a/ HTTP/1.1\r\n\r\n"),
            Err(ProxyError::NotImplemented(_))
        ));
    }

    #[test]
    fn response_heads() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"[..]);
        let head = parse_response(&mut buf).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(&buf[..], b"hi");
        let mut out = Vec::new();
        head.write_to(&mut out);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        let mut bad = BytesMut::from(&b"HTTP/1.1 abc OK\r\n\r\n"[..]);
        assert!(parse_response(&mut bad).is_err());
    }
}
