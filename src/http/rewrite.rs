//! Header rules at the proxy boundary (RFC 9110 §7.6): hop-by-hop fields are removed in
//! both directions, `Host` is taken from the request URI, `Via` records this hop (unless
//! `--via off`), the operator's [`HeaderEdits`] apply, and the framing fields are
//! rewritten to match how the proxy itself frames the body. A request through an HTTP
//! parent proxy goes in absolute form with the parent's credentials ([`RequestForm`]).
//! Also the canned answers the proxy sends on its own account.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::edits::HeaderEdits;
use super::framing::BodyLength;
use super::head::{RequestHead, ResponseHead, Version};
use super::headers::{HOP_BY_HOP, Header, Headers};

/// Whether the request asks to switch protocols (WebSocket and friends, RFC 9110 §7.8).
pub fn wants_upgrade(head: &RequestHead) -> bool {
    head.headers.contains("upgrade") && head.headers.has_token("connection", "upgrade")
}

/// Whether the client asked to keep its connection open after this exchange.
pub fn client_keep_alive(head: &RequestHead) -> bool {
    keep_alive_requested(head.version, &head.headers)
}

/// RFC 9112 §9.3: an HTTP/1.1 connection persists unless `Connection: close`; an HTTP/1.0
/// one only with `Connection: keep-alive`.
pub fn keep_alive_requested(version: Version, headers: &Headers) -> bool {
    match version {
        Version::Http11 => !headers.has_token("connection", "close"),
        Version::Http10 => headers.has_token("connection", "keep-alive"),
    }
}

/// Whether the origin lets the upstream connection be reused.
pub fn origin_keep_alive(head: &ResponseHead) -> bool {
    match head.version {
        Version::Http11 => !head.headers.has_token("connection", "close"),
        Version::Http10 => head.headers.has_token("connection", "keep-alive"),
    }
}

/// Drops hop-by-hop fields and the fields the Connection header names, and the framing
/// fields, which the caller re-adds to match the framing it writes.
fn strip_hop_by_hop(headers: &Headers, keep_upgrade: bool) -> Headers {
    let named = connection_named(headers, keep_upgrade);
    let mut out = Headers::with_capacity(headers.len() + 2);
    for h in headers {
        if passes(h, keep_upgrade, &named) {
            out.push(h.clone());
        }
    }
    out
}

/// The fields the Connection header names besides the hop-by-hop ones: tokens naming
/// hop-by-hop fields (`keep-alive`, `upgrade`) add nothing to what goes anyway, and
/// leaving them out leaves the list empty, unallocated, for most heads.
fn connection_named(headers: &Headers, keep_upgrade: bool) -> Vec<&[u8]> {
    headers
        .tokens("connection")
        .filter(|t| !(keep_upgrade && t.eq_ignore_ascii_case(b"upgrade")))
        .filter(|t| {
            !HOP_BY_HOP
                .iter()
                .any(|n| t.eq_ignore_ascii_case(n.as_bytes()))
        })
        .collect()
}

/// Whether a received field goes on to the next hop: not hop-by-hop, not framing, not
/// `named` by the Connection header (see [`strip_hop_by_hop`]).
fn passes(h: &Header, keep_upgrade: bool, named: &[&[u8]]) -> bool {
    let hop = HOP_BY_HOP.iter().any(|n| h.is(n)) && !(keep_upgrade && h.is("upgrade"));
    let framing = h.is("content-length") || h.is("transfer-encoding");
    let listed = named.iter().any(|n| h.name.eq_ignore_ascii_case(n));
    !hop && !framing && !listed
}

/// Adds this hop (`1.1 name`, the version the message came in) to the last `Via` field
/// (RFC 9110 §7.6.3). `false` when there is none: the caller then writes a new one with
/// [`write_via`] right after the other fields, where it would have gone, without building
/// a field for it.
fn append_via(headers: &mut Headers, version: Version, name: &str) -> bool {
    let Some(last) = headers.last_mut("via") else {
        return false;
    };
    let version = via_version(version).as_bytes();
    let mut value = Vec::with_capacity(last.value.len() + 3 + version.len() + name.len());
    value.extend_from_slice(&last.value);
    value.extend_from_slice(b", ");
    value.extend_from_slice(version);
    value.push(b' ');
    value.extend_from_slice(name.as_bytes());
    last.value = Bytes::from(value);
    true
}

/// Writes a new `Via` field naming this hop (see [`append_via`]).
fn write_via(out: &mut Vec<u8>, version: Version, name: &str) {
    out.extend_from_slice(b"Via: ");
    out.extend_from_slice(via_version(version).as_bytes());
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Whether our own name already appears in the request's Via: a forwarding loop.
pub fn via_has(headers: &Headers, name: &str) -> bool {
    headers.tokens("via").any(|hop| {
        // Each hop is `protocol received-by [comment]`; compare the received-by part.
        let mut parts = hop
            .split(|b| b.is_ascii_whitespace())
            .filter(|p| !p.is_empty());
        parts
            .nth(1)
            .is_some_and(|by| by.eq_ignore_ascii_case(name.as_bytes()))
    })
}

/// How a request's head is written on an upstream connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestForm {
    /// To the origin (or over a SOCKS tunnel to it): `GET /path`.
    Origin,
    /// To an HTTP parent proxy: `GET http://host/path`, with the parent's own
    /// `Proxy-Authorization` (the client's never passes, RFC 9110 §11.7.1).
    Absolute { authorization: Option<Arc<str>> },
}

/// Everything besides the request itself that shapes the head sent upstream.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub via_name: &'a str,
    pub edits: &'a HeaderEdits,
    /// The client's address, for `X-Forwarded-For`.
    pub client: IpAddr,
    pub form: &'a RequestForm,
}

static DEFAULT_EDITS: HeaderEdits = HeaderEdits::DEFAULT;
static ORIGIN_FORM: RequestForm = RequestForm::Origin;

impl<'a> Outgoing<'a> {
    /// Straight to an origin with the default header settings (benches, fuzzing, tests).
    pub fn plain(via_name: &'a str) -> Outgoing<'a> {
        Outgoing {
            via_name,
            edits: &DEFAULT_EDITS,
            client: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            form: &ORIGIN_FORM,
        }
    }
}

/// The request head as sent upstream, in origin form or, to a parent, absolute form.
pub fn origin_request(head: &RequestHead, length: BodyLength, outgoing: Outgoing<'_>) -> Vec<u8> {
    let upgrade = wants_upgrade(head);
    let mut headers = strip_hop_by_hop(&head.headers, upgrade);
    headers.remove("expect");
    headers.remove("host");
    outgoing.edits.edit_request(&mut headers, outgoing.client);
    let mut host = String::with_capacity(64);
    head.target.push_host_header(&mut host);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&head.method);
    out.push(b' ');
    if let super::RequestTarget::Absolute { path, .. } = &head.target {
        if let RequestForm::Absolute { .. } = outgoing.form {
            out.extend_from_slice(b"http://");
            out.extend_from_slice(host.as_bytes());
        }
        out.extend_from_slice(path);
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let RequestForm::Absolute {
        authorization: Some(authorization),
    } = outgoing.form
    {
        out.extend_from_slice(b"Proxy-Authorization: ");
        out.extend_from_slice(authorization.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let new_via = outgoing.edits.via && !append_via(&mut headers, head.version, outgoing.via_name);
    headers.write_to(&mut out);
    if new_via {
        write_via(&mut out, head.version, outgoing.via_name);
    }
    write_framing(&mut out, length, &[]);
    if upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn via_version(version: Version) -> &'static str {
    match version {
        Version::Http10 => "1.0",
        Version::Http11 => "1.1",
    }
}

/// Writes the framing field for `length`. `codings` are transfer codings other than
/// chunked that the body still carries (a response's `gzip` in `gzip, chunked`): the
/// proxy decodes only the chunking, so they stay named for the client.
fn write_framing(out: &mut Vec<u8>, length: BodyLength, codings: &[&[u8]]) {
    match length {
        BodyLength::Fixed(n) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        BodyLength::Chunked => write_codings(out, codings.iter().copied().chain([&b"chunked"[..]])),
        BodyLength::UntilClose if !codings.is_empty() => {
            write_codings(out, codings.iter().copied())
        }
        BodyLength::Empty | BodyLength::UntilClose => {}
    }
}

fn write_codings<'a>(out: &mut Vec<u8>, codings: impl Iterator<Item = &'a [u8]>) {
    out.extend_from_slice(b"Transfer-Encoding: ");
    for (i, coding) in codings.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(coding);
    }
    out.extend_from_slice(b"\r\n");
}

/// The transfer codings of a message other than a final `chunked`.
pub fn other_codings(headers: &Headers) -> Vec<&[u8]> {
    let mut codings: Vec<&[u8]> = headers.tokens("transfer-encoding").collect();
    if codings
        .last()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
    {
        codings.pop();
    }
    codings
}

/// How the response goes back to the client.
#[derive(Debug, Clone, Copy)]
pub struct ClientFraming {
    /// The body length as the client will see it.
    pub length: BodyLength,
    /// Whether the client connection stays open after this response.
    pub keep_alive: bool,
    pub client_version: Version,
    /// Whether the response's own Content-Length should be kept (HEAD, 304).
    pub keep_content_length: bool,
}

/// The response head as sent to the client.
pub fn client_response(
    head: &ResponseHead,
    framing: ClientFraming,
    via_name: &str,
    edits: &HeaderEdits,
) -> Vec<u8> {
    // The fields are written from where they are, never gathered into a list of their
    // own (each field's copy cost S1 more than the writing; docs/performance.md, "S1
    // overhead"): what passes the hop's rules, then a HEAD's or 304's Content-Length,
    // less the operator's removals, then the operator's additions; this hop joins the
    // last Via among them, or follows them in a Via of its own.
    let switching = head.status == 101;
    let named = connection_named(&head.headers, switching);
    let length = framing
        .keep_content_length
        .then(|| head.headers.get("content-length"))
        .flatten()
        .map(|length| Header::new("Content-Length", length.clone()));
    let removed = |h: &Header| edits.response_remove.iter().any(|name| h.is(name));
    let fields = head
        .headers
        .iter()
        .filter(|h| passes(h, switching, &named))
        .chain(&length)
        .filter(|h| !removed(h))
        .chain(&edits.response_add);
    // Found without walking the fields twice (Content-Length is never a Via).
    let received_via = || {
        let mut received = head.headers.iter().rev();
        received.find(|h| h.is("via") && passes(h, switching, &named) && !removed(h))
    };
    let last_via = match edits.via {
        true => edits
            .response_add
            .iter()
            .rev()
            .find(|h| h.is("via"))
            .or_else(received_via),
        false => None,
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(head.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(&head.reason);
    out.extend_from_slice(b"\r\n");
    for h in fields {
        out.extend_from_slice(&h.name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        if last_via.is_some_and(|via| std::ptr::eq(via, h)) {
            out.extend_from_slice(b", ");
            out.extend_from_slice(via_version(head.version).as_bytes());
            out.push(b' ');
            out.extend_from_slice(via_name.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    if edits.via && last_via.is_none() {
        write_via(&mut out, head.version, via_name);
    }
    write_framing(&mut out, framing.length, &other_codings(&head.headers));
    if switching {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    } else if !framing.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if framing.client_version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_request;
    use bytes::BytesMut;

    fn outgoing<'a>(via_name: &'a str, form: &'a RequestForm) -> Outgoing<'a> {
        Outgoing {
            form,
            ..Outgoing::plain(via_name)
        }
    }

    #[test]
    fn parents_get_absolute_form_with_their_own_credentials() {
        let head = request(
            "GET http://origin:8080/p HTTP/1.1\r\nHost: origin:8080\r\nProxy-Authorization: Basic client\r\n\r\n",
        );
        let form = RequestForm::Absolute {
            authorization: Some("Basic parent".into()),
        };
        let out = String::from_utf8(origin_request(
            &head,
            BodyLength::Empty,
            outgoing("p", &form),
        ))
        .unwrap();
        assert_eq!(
            out,
            "GET http://origin:8080/p HTTP/1.1\r\nHost: origin:8080\r\n\
             Proxy-Authorization: Basic parent\r\nVia: 1.1 p\r\n\r\n"
        );
    }

    fn request(text: &str) -> RequestHead {
        parse_request(&mut BytesMut::from(text.as_bytes()))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn origin_request_strips_and_rewrites() {
        let head = request(
            "GET http://Origin:8080/p?q=%41 HTTP/1.1\r\nHost: evil\r\nConnection: keep-alive, X-Secret\r\n\
             X-Secret: 1\r\nProxy-Authorization: Basic abc\r\nKeep-Alive: 5\r\nTE: trailers\r\n\
             Proxy-Connection: keep-alive\r\nx-Custom: A  b\r\nVia: 1.0 other\r\nUpgrade: h2c\r\n\r\n",
        );
        let out = String::from_utf8(origin_request(
            &head,
            BodyLength::Empty,
            outgoing("proxy-server", &RequestForm::Origin),
        ))
        .unwrap();
        assert_eq!(
            out,
            "GET /p?q=%41 HTTP/1.1\r\nHost: origin:8080\r\nx-Custom: A  b\r\n\
             Via: 1.0 other, 1.1 proxy-server\r\n\r\n"
        );
    }

    #[test]
    fn upgrade_is_kept_for_websocket() {
        let head = request(
            "GET http://o/ws HTTP/1.1\r\nHost: o\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert!(wants_upgrade(&head));
        let out = String::from_utf8(origin_request(
            &head,
            BodyLength::Empty,
            outgoing("p", &RequestForm::Origin),
        ))
        .unwrap();
        assert!(out.contains("Upgrade: websocket\r\n"));
        assert!(out.ends_with("Connection: Upgrade\r\n\r\n"));
    }

    #[test]
    fn framing_is_rewritten() {
        let head = request(
            "POST http://o/ HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        );
        let out = String::from_utf8(origin_request(
            &head,
            BodyLength::Fixed(5),
            outgoing("p", &RequestForm::Origin),
        ))
        .unwrap();
        assert!(out.contains("Content-Length: 5\r\n"));
        assert!(!out.contains("Expect"));
    }

    #[test]
    fn other_transfer_codings_stay_named_for_the_client() {
        let response = |te: &'static str| ResponseHead {
            version: Version::Http11,
            status: 200,
            reason: Bytes::from_static(b"OK"),
            headers: [Header::new("Transfer-Encoding", te)].into_iter().collect(),
        };
        let framing = |length| ClientFraming {
            length,
            keep_alive: false,
            client_version: Version::Http11,
            keep_content_length: false,
        };
        let out = client_response(
            &response("gzip, chunked"),
            framing(BodyLength::Chunked),
            "p",
            &HeaderEdits::default(),
        );
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("Transfer-Encoding: gzip, chunked\r\n")
        );
        let out = client_response(
            &response("gzip"),
            framing(BodyLength::UntilClose),
            "p",
            &HeaderEdits::default(),
        );
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("Transfer-Encoding: gzip\r\n")
        );
        let out = client_response(
            &response("chunked"),
            framing(BodyLength::Chunked),
            "p",
            &HeaderEdits::default(),
        );
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("Transfer-Encoding: chunked\r\n") && !out.contains("gzip"));
    }

    /// The operator's removals, then additions, and this hop's Via joined to the last
    /// Via among them, or written after them when there is none.
    #[test]
    fn client_heads_carry_the_operators_lists_and_our_via() {
        let response = |fields: &[(&'static str, &'static str)]| ResponseHead {
            version: Version::Http11,
            status: 200,
            reason: Bytes::from_static(b"OK"),
            headers: fields.iter().map(|&(n, v)| Header::new(n, v)).collect(),
        };
        let framing = ClientFraming {
            length: BodyLength::Fixed(0),
            keep_alive: true,
            client_version: Version::Http11,
            keep_content_length: false,
        };
        let edits = |add: &[&str]| HeaderEdits {
            response_remove: vec!["server".into()],
            response_add: add
                .iter()
                .map(|f| crate::http::edits::field(f).unwrap())
                .collect(),
            ..HeaderEdits::default()
        };
        let head = |fields, add: &[&str]| {
            let out = client_response(&response(fields), framing, "p", &edits(add));
            String::from_utf8(out).unwrap()
        };
        let fields = [("Server", "x"), ("Via", "1.0 a"), ("Date", "d")];
        assert_eq!(
            head(&fields, &["X-Team: t"]),
            "HTTP/1.1 200 OK\r\nVia: 1.0 a, 1.1 p\r\nDate: d\r\nX-Team: t\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert_eq!(
            head(&fields, &["Via: 1.0 edge"]),
            "HTTP/1.1 200 OK\r\nVia: 1.0 a\r\nDate: d\r\nVia: 1.0 edge, 1.1 p\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert_eq!(
            head(&[("Server", "x")], &[]),
            "HTTP/1.1 200 OK\r\nVia: 1.1 p\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn loops_are_seen_in_via() {
        let head = request(
            "GET http://o/ HTTP/1.1\r\nHost: o\r\nVia: 1.1 a, 1.1 Proxy-Server (x)\r\n\r\n",
        );
        assert!(via_has(&head.headers, "proxy-server"));
        assert!(!via_has(&head.headers, "other"));
    }

    #[test]
    fn keep_alive_rules() {
        assert!(client_keep_alive(&request(
            "GET http://o/ HTTP/1.1\r\nHost: o\r\n\r\n"
        )));
        assert!(!client_keep_alive(&request(
            "GET http://o/ HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n"
        )));
        assert!(!client_keep_alive(&request(
            "GET http://o/ HTTP/1.0\r\n\r\n"
        )));
        assert!(client_keep_alive(&request(
            "GET http://o/ HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
        )));
    }
}
