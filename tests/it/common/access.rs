//! Fixtures for the access-control tests: raw requests and refused tunnels with chosen
//! credentials, the expected 403 and 407 answers, and a users file with a clear and a
//! bcrypt user.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::*;

/// The start of the 403 body for a destination on the access list; the list entry that
/// matched (`file:line (entry)`) follows.
pub const BLOCKED: &str = "Forbidden: this destination is blocked by ";
/// Longest body a refusal may carry: a short line, not a page.
pub const SHORT_BODY: usize = 200;

/// A plain-HTTP request for `authority` on a fresh connection, read until the proxy closes.
pub async fn get(proxy: SocketAddr, authority: &str, extra: &str) -> Vec<u8> {
    let request = format!(
        "GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n{extra}Connection: close\r\n\r\n"
    );
    exchange(proxy, request.as_bytes()).await
}

/// A CONNECT that the proxy is expected to refuse: it answers and closes. Bytes sent
/// behind the head must never be read as a request.
pub async fn refused_connect(
    proxy: SocketAddr,
    authority: &str,
    extra: &str,
    behind: &str,
) -> Vec<u8> {
    let request = format!("{}{behind}", connect_request(authority, extra));
    exchange(proxy, request.as_bytes()).await
}

/// One `403` with a short body containing `reason`, closing the connection: exactly
/// one response on the wire.
pub fn assert_forbidden(response: &[u8], reason: &str, what: &str) {
    let text = String::from_utf8_lossy(response);
    assert!(
        text.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{what}: {text}"
    );
    assert!(text.contains("\r\nConnection: close\r\n"), "{what}: {text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{what}: {text}");
    let body = body(response);
    assert!(body.contains(reason), "{what}: {body}");
    assert!(body.len() < SHORT_BODY, "{what}: {body}");
}

/// The name check passed and the proxy went on to DNS, which knows no such name.
pub fn assert_unresolved(response: &[u8], what: &str) {
    let text = String::from_utf8_lossy(response);
    assert!(text.starts_with("HTTP/1.1 502 "), "{what}: {text}");
    assert!(body(response).contains("cannot resolve"), "{what}: {text}");
}

/// A health check for proxies whose rules refuse every 127.0.0.1 origin: a fresh
/// connection is still served, through an origin on `::1` where this machine has one.
pub async fn assert_healthy_over_v6(proxy: SocketAddr) {
    let Some(origin) = Origin::start_on_v6("health over IPv6", |_| ok("healthy")).await else {
        // The health check falls back to a fresh refusal.
        assert_eq!(status(&get(proxy, "127.0.0.1:9", "").await), 403);
        return;
    };
    let response = get(proxy, &origin.addr.to_string(), "").await;
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(response.ends_with(b"healthy"));
}

pub const CLEAR_USER: (&str, &str) = ("plain", "clear:pass#1");
pub const BCRYPT_USER: (&str, &str) = ("hashed", "bcrypt pass 2");

/// A users file with one clear-text and one bcrypt user (cost 4, `$2y$` as htpasswd writes).
pub fn users_file(files: &Scratch) -> PathBuf {
    let hash = bcrypt::hash_with_result(BCRYPT_USER.1, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    files.write(
        "users.txt",
        format!(
            "# users\n{}:{}\n\n{}:{hash}\n",
            CLEAR_USER.0, CLEAR_USER.1, BCRYPT_USER.0
        ),
    )
}

/// One `407` with the Basic challenge, exactly once, closing the connection.
pub fn assert_challenged(response: &[u8], what: &str) {
    let text = String::from_utf8_lossy(response);
    assert!(
        text.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
        "{what}: {text}"
    );
    let challenges: Vec<&str> = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with("proxy-authenticate:"))
        .collect();
    assert_eq!(
        challenges,
        ["Proxy-Authenticate: Basic realm=\"proxy-server\""],
        "{what}"
    );
    assert!(text.contains("\r\nConnection: close\r\n"), "{what}: {text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{what}: {text}");
    assert!(body(response).len() < SHORT_BODY);
}

/// Polls (bounded) until a plain request to `authority` gets `expected`.
pub async fn wait_for_status(proxy: SocketAddr, authority: &str, expected: u16) {
    let what = format!("{authority} answers {expected}");
    wait_until(&what, STEP, || async {
        status(&get(proxy, authority, "").await) == expected
    })
    .await;
}
