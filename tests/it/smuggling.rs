//! Request smuggling: a table of malformed and ambiguous requests (framing, head syntax,
//! chunked bodies, request-line tricks). For each, the proxy either refuses it with the
//! expected status and closes, or forwards a normalised form. Either way every byte the
//! raw origin received must parse as canonical HTTP/1.1 (`common::canonical`), which
//! only one reading exists for. After each case a fresh connection proves the proxy is
//! still healthy.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::canonical::{Message, parse_canonical};
use crate::common::raw::{RawOrigin, split_responses};
use crate::common::{
    ESTABLISHED, Origin, Proxy, curl, read_head, read_response, send_and_half_close, within,
};

/// What the proxy must do with one hostile request.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Refused with this status before any origin is contacted.
    Refused(u16),
    /// Refused with this status while relaying the body: the origin may have seen a
    /// canonical prefix of the request, then its connection was closed.
    RefusedInBody(u16),
    /// The client stopped short (half-close inside the body): no answer, the origin's
    /// connection is closed after a canonical prefix.
    Cut,
    /// Forwarded in canonical form: `messages` requests reached the origin, the first
    /// with `body`, and each listed field with that single value (`None`: absent).
    Forwarded {
        messages: usize,
        body: &'static str,
        fields: &'static [(&'static str, Option<&'static str>)],
    },
}

use Expect::*;

const SIMPLE: Expect = Forwarded {
    messages: 1,
    body: "hello",
    fields: &[],
};
const CHUNKED_HELLO: Expect = Forwarded {
    messages: 1,
    body: "hello",
    fields: &[
        ("transfer-encoding", Some("chunked")),
        ("content-length", None),
    ],
};

/// A POST to the origin (`{o}`) with extra `fields` (each ending in CRLF) and `body`.
fn post(fields: &str, body: &str) -> String {
    format!("POST http://{{o}}/s HTTP/1.1\r\nHost: {{o}}\r\n{fields}\r\n{body}")
}

fn chunked(body: &str) -> String {
    post("Transfer-Encoding: chunked\r\n", body)
}

/// The table: a name, the raw request (`{o}` stands for the origin's address), and
/// what must happen.
fn cases() -> Vec<(&'static str, String, Expect)> {
    let hello = "5\r\nhello\r\n0\r\n\r\n";
    vec![
        // Content-Length and Transfer-Encoding together (RFC 9112 §6.1, §6.3).
        ("CL then TE", post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nX"), Refused(400)),
        ("TE then CL", post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", hello), Refused(400)),
        ("CL and TE identity", post("Content-Length: 5\r\nTransfer-Encoding: identity\r\n", "hello"), Refused(400)),
        ("CL and empty TE", post("Content-Length: 5\r\nTransfer-Encoding:\r\n", "hello"), Refused(400)),
        ("CL+TE with 100-continue", post("Expect: 100-continue\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n", hello), Refused(400)),
        // Content-Length values (RFC 9110 §8.6).
        ("differing duplicate CL", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), Refused(400)),
        ("differing CL list", post("Content-Length: 5, 6\r\n", "hello!"), Refused(400)),
        ("identical duplicate CL", post("Content-Length: 5\r\ncontent-length: 5\r\n", "hello"), Forwarded { messages: 1, body: "hello", fields: &[("content-length", Some("5"))] }),
        ("identical CL list", post("Content-Length: 5,5\r\n", "hello"), Forwarded { messages: 1, body: "hello", fields: &[("content-length", Some("5"))] }),
        ("signed CL", post("Content-Length: +5\r\n", "hello"), Refused(400)),
        ("negative CL", post("Content-Length: -5\r\n", "hello"), Refused(400)),
        ("hex CL", post("Content-Length: 0x5\r\n", "hello"), Refused(400)),
        ("CL with trailing junk", post("Content-Length: 5a\r\n", "hello"), Refused(400)),
        ("CL with inner space", post("Content-Length: 1 2\r\n", "hello"), Refused(400)),
        ("empty CL", post("Content-Length:\r\n", "hello"), Refused(400)),
        ("overflowing CL", post("Content-Length: 99999999999999999999\r\n", "hello"), Refused(400)),
        ("CL with leading zeros", post("Content-Length: 005\r\n", "hello"), Forwarded { messages: 1, body: "hello", fields: &[("content-length", Some("5"))] }),
        ("CL folded onto next line", post("Content-Length:\r\n 5\r\n", "hello"), Refused(400)),
        ("CL underscore look-alike", post("Content_Length: 5\r\n", "hello"), Refused(400)),
        ("CL named in Connection", post("Content-Length: 5\r\nConnection: Content-Length\r\n", "hello"), Forwarded { messages: 1, body: "hello", fields: &[("content-length", Some("5")), ("connection", None)] }),
        // Transfer-Encoding spellings (RFC 9112 §6.1, §7).
        ("TE odd casing", post("Transfer-Encoding: ChUnKeD\r\n", hello), CHUNKED_HELLO),
        ("TE tab whitespace", post("Transfer-Encoding:\tchunked\t\r\n", hello), CHUNKED_HELLO),
        ("TE folded", post("Transfer-Encoding:\r\n chunked\r\n", hello), Refused(400)),
        ("TE chunked twice", post("Transfer-Encoding: chunked, chunked\r\n", hello), Refused(501)),
        ("TE xchunked", post("Transfer-Encoding: xchunked\r\n", hello), Refused(400)),
        ("TE chunked with parameter", post("Transfer-Encoding: chunked;x=1\r\n", hello), Refused(400)),
        ("TE quoted", post("Transfer-Encoding: \"chunked\"\r\n", hello), Refused(400)),
        ("TE identity", post("Transfer-Encoding: identity\r\n", "hello"), Refused(400)),
        ("TE gzip then chunked", post("Transfer-Encoding: gzip, chunked\r\n", hello), Refused(501)),
        ("TE chunked then identity fields", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", hello), Refused(400)),
        ("TE space before colon", post("Transfer-Encoding : chunked\r\n", hello), Refused(400)),
        ("TE underscore look-alike", post("Transfer_Encoding: chunked\r\n", hello), Refused(400)),
        ("TE in HTTP/1.0", format!("POST http://{{o}}/s HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n{hello}"), Refused(400)),
        ("TE named in Connection", post("Transfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n", hello), CHUNKED_HELLO),
        // Chunked bodies (RFC 9112 §7.1).
        ("chunk extensions", chunked("5;name=value\r\nhello\r\n0;last\r\n\r\n"), CHUNKED_HELLO),
        ("chunk sizes with leading zeros", chunked("0005\r\nhello\r\n000\r\n\r\n"), CHUNKED_HELLO),
        ("upper-case chunk size", chunked("A\r\nhellohello\r\n0\r\n\r\n"), Forwarded { messages: 1, body: "hellohello", fields: &[] }),
        ("trailer fields", chunked("5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"), CHUNKED_HELLO),
        ("CR inside chunk extension", chunked("5;a=\"b\rc\"\r\nhello\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("bare LF in chunk extension", chunked("5;a\nb\r\nhello\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("bare LF ends chunk size", chunked("5\nhello\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("bare LF ends chunk data", chunked("5\r\nhello\n0\r\n\r\n"), RefusedInBody(400)),
        ("chunk longer than its size", chunked("5\r\nhello!\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("second chunk malformed", chunked("5\r\nhello\r\nzz\r\nhello\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("overflowing chunk size", chunked("fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("chunk size wrapping to 5", chunked("10000000000000005\r\nhello\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("negative chunk size", chunked("-5\r\nhello\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("0x chunk size", chunked("0x5\r\nhello\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("space before chunk size", chunked(" 5\r\nhello\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("space after chunk size", chunked("5 \r\nhello\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("empty chunk size line", chunked("\r\nhello\r\n0\r\n\r\n"), RefusedInBody(400)),
        ("trailer without colon", chunked("5\r\nhello\r\n0\r\nnot a field\r\n\r\n"), RefusedInBody(400)),
        ("oversized chunk extension", chunked(&format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(5000))), RefusedInBody(400)),
        ("truncated chunked body", chunked("5\r\nhel"), Cut),
        ("largest chunk size, then the client stops", chunked("fffffffffffffff\r\nhello"), Cut),
        ("truncated Content-Length body", post("Content-Length: 10\r\n", "hello"), Cut),
        // Head syntax (RFC 9112 §2.2, §5).
        // Bare LF ends no line of a request head: RFC 9112 §2.2 lets a recipient accept
        // it, but gunicorn, waitress, aiohttp and twisted refuse it, so the proxy does.
        ("bare LF line endings", "POST http://{o}/s HTTP/1.1\nHost: {o}\nContent-Length: 5\n\nhello".to_string(), Refused(400)),
        ("bare LF ends the request line", "POST http://{o}/s HTTP/1.1\nHost: {o}\r\nContent-Length: 5\r\n\r\nhello".to_string(), Refused(400)),
        ("bare LF ends one field line", post("X-A: 1\nContent-Length: 5\r\n", "hello"), Refused(400)),
        ("bare LF ends the head", "POST http://{o}/s HTTP/1.1\r\nHost: {o}\r\nContent-Length: 5\r\n\nhello".to_string(), Refused(400)),
        ("leading bare LF", format!("\n{}", post("Content-Length: 5\r\n", "hello")), Refused(400)),
        ("leading empty line", format!("\r\n{}", post("Content-Length: 5\r\n", "hello")), SIMPLE),
        ("bare CR in value", post("X-A: a\rb\r\nContent-Length: 5\r\n", "hello"), Refused(400)),
        ("NUL in value", post("X-A: a\0b\r\nContent-Length: 5\r\n", "hello"), Refused(400)),
        ("DEL in value", post("X-A: a\x7fb\r\nContent-Length: 5\r\n", "hello"), Refused(400)),
        ("vertical tab in value", post("X-A: a\x0bb\r\nContent-Length: 5\r\n", "hello"), Refused(400)),
        ("folded field", post("X-A: a\r\n b\r\nContent-Length: 5\r\n", "hello"), Refused(400)),
        ("space before colon", post("X-A : b\r\n", ""), Refused(400)),
        ("tab before colon", post("X-A\t: b\r\n", ""), Refused(400)),
        ("field without colon", post("X-A b\r\n", ""), Refused(400)),
        ("empty field name", post(": b\r\n", ""), Refused(400)),
        ("field line starting with whitespace", post(" X-A: b\r\n", ""), Refused(400)),
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400, CONNECT too;
        // HTTP/1.0 may leave it out.
        ("HTTP/1.1 without Host", "GET http://{o}/s HTTP/1.1\r\n\r\n".to_string(), Refused(400)),
        ("POST without Host", "POST http://{o}/s HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_string(), Refused(400)),
        ("CONNECT without Host", "CONNECT {o} HTTP/1.1\r\n\r\n".to_string(), Refused(400)),
        ("Host only as a look-alike", "GET http://{o}/s HTTP/1.1\r\nX-Host: {o}\r\nHost_: {o}\r\n\r\n".to_string(), Refused(400)),
        ("HTTP/1.0 without Host", "GET http://{o}/s HTTP/1.0\r\n\r\n".to_string(), Forwarded { messages: 1, body: "", fields: &[] }),
        ("mismatched and duplicate Host", "GET http://{o}/s HTTP/1.1\r\nHost: evil.example\r\nHost: other.example\r\n\r\n".to_string(), Refused(400)),
        // Request-line tricks (RFC 9112 §3).
        ("two spaces after method", "GET  http://{o}/ HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("two spaces before version", "GET http://{o}/  HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("tab as separator", "GET\thttp://{o}/ HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("space before method", " GET http://{o}/ HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("space after version", "GET http://{o}/ HTTP/1.1 \r\n\r\n".to_string(), Refused(400)),
        ("userinfo in target", "GET http://user:pw@{o}/ HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("GET http://a@b/", "GET http://evil.example@{o}/ HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("missing version", "GET http://{o}/\r\n\r\n".to_string(), Refused(400)),
        ("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(), Refused(505)),
        ("HTTP/3.0", "GET http://{o}/ HTTP/3.0\r\nHost: {o}\r\n\r\n".to_string(), Refused(505)),
        // RFC 9112 §2.3: a later minor version is served as HTTP/1.1.
        ("HTTP/1.2", "GET http://{o}/ HTTP/1.2\r\nHost: {o}\r\n\r\n".to_string(), Forwarded { messages: 1, body: "", fields: &[] }),
        ("HTTP/1.10", "GET http://{o}/ HTTP/1.10\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("lower-case version", "GET http://{o}/ http/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("origin-form target", "GET /s HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("asterisk target", "OPTIONS * HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("non-ASCII in target", "GET http://{o}/\u{e9}\u{a0}x HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Forwarded { messages: 1, body: "", fields: &[] }),
        ("backslashes for slashes", "GET http:\\\\{o}/ HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("percent-encoded host", "GET http://127.0.0.1%2f@{o}/ HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("port out of range", "GET http://127.0.0.1:65536/ HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        ("https scheme in absolute-form", "GET https://{o}/ HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(501)),
        ("bad method token", "G(T http://{o}/ HTTP/1.1\r\nHost: {o}\r\n\r\n".to_string(), Refused(400)),
        // Several messages in one stream: each framed on its own.
        ("pipelined after Content-Length", format!("{}GET http://{{o}}/2 HTTP/1.1\r\nHost: {{o}}\r\n\r\n", post("Content-Length: 5\r\n", "hello")), Forwarded { messages: 2, body: "hello", fields: &[] }),
        ("pipelined after chunked", format!("{}GET http://{{o}}/2 HTTP/1.1\r\nHost: {{o}}\r\n\r\n", chunked(hello)), Forwarded { messages: 2, body: "hello", fields: &[] }),
        ("request hidden in a GET body", "GET http://{o}/s HTTP/1.1\r\nHost: {o}\r\nContent-Length: 39\r\n\r\nGET http://a.example/admin HTTP/1.1\r\n\r\n".to_string(), Forwarded { messages: 1, body: "GET http://a.example/admin HTTP/1.1\r\n\r\n", fields: &[("content-length", Some("39"))] }),
        ("garbage after a good request", format!("{}\x16\x03\x01junk\r\n\r\n", post("Content-Length: 5\r\n", "hello")), Forwarded { messages: 1, body: "hello", fields: &[] }),
    ]
}

/// Runs one case against `proxy`; `Err` says what went wrong.
async fn run_case(proxy: &Proxy, request: &str, expect: Expect) -> Result<(), String> {
    let origin = RawOrigin::start().await;
    let host = origin.addr.to_string();
    let request = request.replace("{o}", &host);
    let answer = send_and_half_close(proxy.addr, request.as_bytes()).await;
    let responses = split_responses(&answer)?;
    let statuses: Vec<u16> = responses.iter().map(|r| r.0).collect();
    // A refused body must end with the origin connection closed; forwarded requests
    // may leave theirs in the proxy's pool.
    let closed = match expect {
        RefusedInBody(_) | Cut => origin.wait_all_closed(Duration::from_secs(5)).await,
        _ => true,
    };
    let connections = origin.connections();
    let mut forwarded: Vec<Message> = Vec::new();
    for connection in &connections {
        let (messages, used) = parse_canonical(&connection.bytes).map_err(|e| {
            format!(
                "origin received non-canonical bytes: {e}\n{:?}",
                String::from_utf8_lossy(&connection.bytes)
            )
        })?;
        if used < connection.bytes.len() && !matches!(expect, RefusedInBody(_) | Cut) {
            return Err(format!(
                "origin left with a partial request: {:?}",
                String::from_utf8_lossy(&connection.bytes[used..])
            ));
        }
        forwarded.extend(messages);
    }
    for message in &forwarded {
        if message.one("host") != Some(host.as_str()) {
            return Err(format!("Host at the origin is {:?}", message.all("host")));
        }
    }
    match expect {
        Refused(status) => {
            if statuses != [status] {
                return Err(format!("answers {statuses:?}, want [{status}]"));
            }
            if !connections.is_empty() {
                return Err("the origin was contacted for a refused request".into());
            }
            if !responses[0].1.contains("\r\nConnection: close\r\n") {
                return Err("a refusal did not close the connection".into());
            }
        }
        RefusedInBody(_) | Cut => {
            let want: Vec<u16> = match expect {
                RefusedInBody(status) => vec![status],
                _ => Vec::new(),
            };
            if statuses != want {
                return Err(format!("answers {statuses:?}, want {want:?}"));
            }
            if !forwarded.is_empty() {
                return Err("a broken body reached the origin as a complete request".into());
            }
            if !closed {
                return Err("the origin connection was left open after a broken body".into());
            }
        }
        Forwarded {
            messages,
            body,
            fields,
        } => {
            // The origin's answers, then at most a 400 for bytes after the last request.
            let (answered, rest) = statuses.split_at(statuses.len().min(messages));
            let via = responses
                .iter()
                .take(messages)
                .all(|r| r.1.contains("\r\nVia: 1.1 proxy-server\r\n"));
            if answered != vec![200; messages] || !via || !(rest.is_empty() || rest == [400]) {
                return Err(format!(
                    "answers {statuses:?}, want {messages} × 200 from the origin"
                ));
            }
            if forwarded.len() != messages {
                return Err(format!(
                    "origin got {} requests, want {messages}",
                    forwarded.len()
                ));
            }
            let first = &forwarded[0];
            if first.body != body.replace("{o}", &host).as_bytes() {
                return Err(format!(
                    "body at the origin {:?}",
                    String::from_utf8_lossy(&first.body)
                ));
            }
            for &(name, value) in fields {
                if first.one(name) != value && !(value.is_none() && first.all(name).is_empty()) {
                    return Err(format!(
                        "{name} at the origin is {:?}, want {value:?}",
                        first.all(name)
                    ));
                }
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn hostile_requests_are_refused_or_normalised() {
    // A short response timeout: a request the raw origin cannot read canonically gets
    // no answer from it, and shows up as a 504 here rather than a stalled test.
    let proxy = Proxy::start_with(|c| c.timeouts.response = Duration::from_secs(2)).await;
    let cases = cases();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (name, request, expect) in &cases {
        if let Err(why) = run_case(&proxy, request, *expect).await {
            failures.push(format!("{name}: {why}"));
        }
        proxy.assert_healthy().await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Raw UTF-8 in a target reaches the origin percent-encoded; ASCII stays byte-exact.
#[tokio::test]
async fn non_ascii_target_reaches_the_origin_percent_encoded() {
    let proxy = Proxy::start().await;
    let origin = RawOrigin::start().await;
    let request = format!(
        "GET http://{}/caf\u{e9}\u{85}?q=%41\u{a0} HTTP/1.1\r\nHost: o\r\n\r\n",
        origin.addr
    );
    let answer = send_and_half_close(proxy.addr, request.as_bytes()).await;
    assert_eq!(split_responses(&answer).unwrap()[0].0, 200);
    let bytes = &origin.connections()[0].bytes;
    let (messages, _) = parse_canonical(bytes).unwrap();
    assert_eq!(messages[0].target, "/caf%C3%A9%C2%85?q=%41%C2%A0");
    proxy.assert_healthy().await;
}

/// The stricter head rules (CRLF only, Host in HTTP/1.1) still let real clients through:
/// curl, plain and tunnelled (git speaks through libcurl the same way), and the exact
/// CONNECT of Python's `http.client` (pip's transport), which is HTTP/1.0 without Host.
#[tokio::test]
async fn what_real_clients_send_still_passes() {
    let proxy = Proxy::start().await;
    let origin = Origin::fixed("served").await;
    let url = origin.url("/r");
    for args in [
        vec!["-x", &proxy.url(), &url],
        vec!["-p", "-x", &proxy.url(), &url],
    ] {
        let (code, out, err) = curl(&args).await;
        assert_eq!(
            (code, &out[..]),
            (0, &b"served"[..]),
            "curl {args:?}: {err}"
        );
    }
    // Python 3.11's HTTPConnection._tunnel, byte for byte, then its request in the tunnel.
    let authority = url.trim_start_matches("http://").trim_end_matches("/r");
    let mut tunnel = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let connect = format!("CONNECT {authority} HTTP/1.0\r\n\r\n");
    within(tunnel.write_all(connect.as_bytes())).await.unwrap();
    assert_eq!(read_head(&mut tunnel).await, ESTABLISHED);
    let request = format!(
        "GET /r HTTP/1.1\r\nHost: {authority}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    );
    within(tunnel.write_all(request.as_bytes())).await.unwrap();
    let response = read_response(&mut tunnel).await;
    assert!(
        response.ends_with(b"served"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    proxy.assert_healthy().await;
}
