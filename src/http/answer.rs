//! The catalogue of answers the proxy makes itself, and the one place their status
//! lines are written: every refusal or failure ([`for_error`]: status from
//! [`ProxyError::status`], a one-line body, `Proxy-Authenticate` on 407 (RFC 9110
//! §11.7.1), `Retry-After` on 429 (RFC 6585 §4) and on 503 for an overloaded listener).
//! The listener's early 400 and 503, the PAC file's 403 and the HTTP front end's errors
//! all come from here.

use crate::error::ProxyError;

/// The challenge a 407 carries: Basic, in the proxy's realm (RFC 7617).
pub const PROXY_AUTHENTICATE: &str = "Basic realm=\"proxy-server\"";

/// The answer to `error`, the connection closed after it; `None` for an error that owes
/// the client no answer (an I/O failure).
pub fn for_error(error: &ProxyError) -> Option<Vec<u8>> {
    let status = error.status()?;
    let mut wait = itoa::Buffer::new();
    let extra: &[(&str, &str)] = match error {
        ProxyError::ProxyAuthRequired(..) => &[("Proxy-Authenticate", PROXY_AUTHENTICATE)],
        ProxyError::TooManyRequests(over) => &[("Retry-After", wait.format(over.retry_after))],
        // The connection cap frees up within moments.
        ProxyError::Overloaded => &[("Retry-After", "1")],
        _ => &[],
    };
    Some(canned(status, &error.body(), extra, false))
}

/// Standard reason phrases for the statuses the proxy itself sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        508 => "Loop Detected",
        _ => "Error",
    }
}

/// A complete answer from the proxy itself: a short text body, and the connection closed
/// unless `keep_alive`.
pub fn canned(status: u16, body: &str, extra: &[(&str, &str)], keep_alive: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(if keep_alive {
        "\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    out.push_str(body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{AuthFailure, OverLimit};

    #[test]
    fn canned_answers_close() {
        let out = String::from_utf8(canned(
            407,
            "no\n",
            &[("Proxy-Authenticate", "Basic realm=\"x\"")],
            false,
        ))
        .unwrap();
        assert!(out.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"));
        assert!(out.contains("Content-Length: 3\r\nProxy-Authenticate: Basic realm=\"x\"\r\nConnection: close\r\n\r\nno\n"));
    }

    #[test]
    fn errors_carry_their_fields() {
        let text = |error: ProxyError| String::from_utf8(for_error(&error).unwrap()).unwrap();
        let login = text(ProxyError::ProxyAuthRequired(
            AuthFailure { brief: "x" },
            None,
        ));
        assert!(login.starts_with("HTTP/1.1 407 "));
        assert!(login.contains("\r\nProxy-Authenticate: Basic realm=\"proxy-server\"\r\n"));
        let limited = text(ProxyError::TooManyRequests(OverLimit {
            brief: "rate_limited",
            reason: "over",
            retry_after: 7,
        }));
        assert!(limited.starts_with("HTTP/1.1 429 ") && limited.contains("\r\nRetry-After: 7\r\n"));
        let busy = text(ProxyError::Overloaded);
        assert!(busy.starts_with("HTTP/1.1 503 ") && busy.contains("\r\nRetry-After: 1\r\n"));
        let io = ProxyError::Io(
            crate::error::Side::Client,
            std::io::ErrorKind::BrokenPipe.into(),
        );
        assert!(for_error(&io).is_none());
    }
}
