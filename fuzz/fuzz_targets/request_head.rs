//! The request-head parser, its framing decision and the head rewritten toward the origin.
//! Invariants: no panic; an accepted head is re-serialised as one complete HTTP/1.1 head
//! (httparse reads all of it) with the same method and path, exactly one Host, and at
//! most one framing field.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proxy_server::http::{RequestTarget, framing, head, rewrite};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let Ok(Some(request)) = head::parse_request(&mut buf) else {
        return;
    };
    let RequestTarget::Absolute { path, .. } = &request.target else {
        return; // CONNECT is tunnelled, never re-serialised.
    };
    let Ok(length) = framing::request_body(request.version, &request.headers) else {
        return;
    };
    let out = rewrite::origin_request(&request, length, rewrite::Outgoing::plain("fuzz"));
    let mut fields = [httparse::EMPTY_HEADER; 2 * head::MAX_HEADERS];
    let mut reparsed = httparse::Request::new(&mut fields);
    match reparsed.parse(&out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "bytes after the head"),
        other => panic!("origin head does not parse: {other:?}\n{}", String::from_utf8_lossy(&out)),
    }
    assert_eq!(reparsed.method.map(str::as_bytes), Some(&request.method[..]));
    assert_eq!(reparsed.path.map(str::as_bytes), Some(&path[..]));
    let count = |name: &str| reparsed.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
    assert_eq!(count("host"), 1);
    assert!(count("content-length") + count("transfer-encoding") <= 1);
});
