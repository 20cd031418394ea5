//! The catalogue of answers the proxy makes itself, and the one place their status
//! lines are written: every refusal or failure ([`for_error`]: status from
//! [`ProxyError::status`], a one-line body, `Proxy-Status` naming the RFC 9209 error type
//! and why, `Proxy-Authenticate` on 407 (RFC 9110 §11.7.1), `Retry-After` on 429 (RFC
//! 6585 §4) and on 503 for an overloaded listener). The listener's early 400 and 503,
//! the PAC file's 403 and the HTTP front end's errors all come from here. Responses
//! relayed from an origin are not the proxy's answers and carry no `Proxy-Status` of
//! ours.

use std::fmt::Write as _;

use crate::error::ProxyError;

/// The challenge a 407 carries: Basic, in the proxy's realm (RFC 7617).
pub const PROXY_AUTHENTICATE: &str = "Basic realm=\"proxy-server\"";

/// The answer to `error`, the connection closed after it; `None` for an error that owes
/// the client no answer (an I/O failure). `Proxy-Status` names the proxy `proxy` (its
/// Via name).
pub fn for_error(proxy: &str, error: &ProxyError) -> Option<Vec<u8>> {
    let status = error.status()?;
    let proxy_status = proxy_status(proxy, error)?;
    let mut wait = itoa::Buffer::new();
    let mut extra: [(&str, &str); 2] = [("Proxy-Status", &proxy_status), ("", "")];
    let count = match error {
        ProxyError::ProxyAuthRequired(..) => {
            extra[1] = ("Proxy-Authenticate", PROXY_AUTHENTICATE);
            2
        }
        ProxyError::TooManyRequests(over) => {
            extra[1] = ("Retry-After", wait.format(over.retry_after));
            2
        }
        // The connection cap frees up within moments.
        ProxyError::Overloaded => {
            extra[1] = ("Retry-After", "1");
            2
        }
        _ => 1,
    };
    Some(canned(status, &error.body(), &extra[..count], false))
}

/// The `Proxy-Status` field value (RFC 9209 §2) for an answer the proxy makes itself:
/// `proxy; error=<type>; details="<why>"`, the type from
/// [`ProxyError::proxy_error_type`] and the details the body's one line. `None` for an
/// error that owes no answer.
pub fn proxy_status(proxy: &str, error: &ProxyError) -> Option<String> {
    let error_type = error.proxy_error_type()?;
    let mut value = String::with_capacity(64 + proxy.len());
    push_sf_item(&mut value, proxy);
    let _ = write!(value, "; error={error_type}; details=");
    let why = error.to_string();
    push_sf_string(&mut value, why.trim_end_matches('.'));
    Some(value)
}

/// A list member's item (RFC 8941 §3.3): the name as a Token when it is one (it starts
/// with a letter or `*`), else as a String (a Via name may start with a digit:
/// `10.0.0.1:3128`).
fn push_sf_item(out: &mut String, name: &str) {
    let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b);
    let is_token = name
        .as_bytes()
        .first()
        .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'*')
        && name.bytes().all(token_char);
    if is_token {
        out.push_str(name);
    } else {
        push_sf_string(out, name);
    }
}

/// An sf-string (RFC 8941 §3.3.3): printable ASCII only, `"` and `\\` escaped; any
/// other character (a control, non-ASCII text from an error message) becomes `?`.
fn push_sf_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
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
        let text = |error: ProxyError| {
            String::from_utf8(for_error("proxy-server", &error).unwrap()).unwrap()
        };
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
        assert!(for_error("proxy-server", &io).is_none());
    }

    /// RFC 9209 §2.3's proxy error types.
    const RFC_9209_TYPES: [&str; 32] = [
        "dns_timeout",
        "dns_error",
        "destination_not_found",
        "destination_unavailable",
        "destination_ip_prohibited",
        "destination_ip_unroutable",
        "connection_refused",
        "connection_terminated",
        "connection_timeout",
        "connection_read_timeout",
        "connection_write_timeout",
        "connection_limit_reached",
        "tls_protocol_error",
        "tls_certificate_error",
        "tls_alert_received",
        "http_request_error",
        "http_request_denied",
        "http_response_incomplete",
        "http_response_header_section_size",
        "http_response_header_size",
        "http_response_body_size",
        "http_response_trailer_section_size",
        "http_response_trailer_size",
        "http_response_transfer_coding",
        "http_response_content_coding",
        "http_response_timeout",
        "http_upgrade_failed",
        "http_protocol_error",
        "proxy_internal_response",
        "proxy_internal_error",
        "proxy_configuration_error",
        "proxy_loop_detected",
    ];

    fn refusal(brief: &'static str) -> ProxyError {
        ProxyError::Forbidden(crate::error::Refusal {
            brief,
            reason: "x".into(),
            rule: None,
        })
    }

    #[test]
    fn every_answer_names_its_rfc_9209_error_type() {
        use crate::acl::Denial;
        use std::io::{Error, ErrorKind};
        let connect = |kind: ErrorKind| ProxyError::Connect {
            addr: None,
            source: Error::from(kind),
        };
        let resolve = |kind: ErrorKind| ProxyError::Resolve {
            host: "x".into(),
            source: Error::from(kind),
        };
        let table = [
            (ProxyError::BadRequest("x"), "http_request_error"),
            (ProxyError::NotAProxyRequest, "http_request_error"),
            (ProxyError::UriTooLong, "http_request_error"),
            (ProxyError::HeadTooLarge, "http_request_error"),
            (ProxyError::VersionNotSupported, "http_request_error"),
            (ProxyError::NotImplemented("x"), "http_request_error"),
            (ProxyError::HeaderTimeout, "http_request_error"),
            (refusal("blocked-host"), "http_request_denied"),
            (refusal("policy-deny"), "http_request_denied"),
            (
                ProxyError::Forbidden(
                    Denial::BlockedAddress("10.0.0.1".parse().unwrap(), None).into(),
                ),
                "destination_ip_prohibited",
            ),
            (
                ProxyError::Forbidden(Denial::LocalTarget("127.0.0.1".parse().unwrap()).into()),
                "destination_ip_prohibited",
            ),
            (
                ProxyError::Forbidden(Denial::ConnectPort(25).into()),
                "http_request_denied",
            ),
            (
                ProxyError::ProxyAuthRequired(AuthFailure { brief: "x" }, None),
                "http_request_denied",
            ),
            (
                ProxyError::TooManyRequests(OverLimit {
                    brief: "rate_limited",
                    reason: "over",
                    retry_after: 1,
                }),
                "http_request_denied",
            ),
            (ProxyError::Loop, "proxy_loop_detected"),
            (ProxyError::Overloaded, "connection_limit_reached"),
            (resolve(ErrorKind::TimedOut), "dns_timeout"),
            (resolve(ErrorKind::NotFound), "dns_error"),
            (resolve(ErrorKind::ResourceBusy), "dns_error"),
            (connect(ErrorKind::ConnectionRefused), "connection_refused"),
            (connect(ErrorKind::TimedOut), "connection_timeout"),
            (
                connect(ErrorKind::HostUnreachable),
                "destination_ip_unroutable",
            ),
            (
                connect(ErrorKind::NetworkUnreachable),
                "destination_ip_unroutable",
            ),
            (connect(ErrorKind::ConnectionReset), "connection_terminated"),
            (
                connect(ErrorKind::AddrNotAvailable),
                "destination_unavailable",
            ),
            (ProxyError::ConnectTimeout, "connection_timeout"),
            (ProxyError::ResponseTimeout, "http_response_timeout"),
            (ProxyError::NotCached, "proxy_internal_response"),
            (
                ProxyError::BadResponse(crate::error::RESPONSE_HEAD_TOO_LARGE),
                "http_response_header_section_size",
            ),
            (
                ProxyError::BadResponse("malformed response head"),
                "http_protocol_error",
            ),
            (ProxyError::UpstreamClosed, "http_response_incomplete"),
            (
                ProxyError::Parent {
                    parent: "corp".into(),
                    reason: "refused".into(),
                },
                "destination_unavailable",
            ),
            (
                ProxyError::ParentsDown("corp".into()),
                "destination_unavailable",
            ),
        ];
        for (error, want) in table {
            assert_eq!(error.proxy_error_type(), Some(want), "{error:?}");
            assert!(RFC_9209_TYPES.contains(&want), "{want}");
            let answer = String::from_utf8(for_error("proxy-server", &error).unwrap()).unwrap();
            let field = format!("\r\nProxy-Status: proxy-server; error={want}; details=\"");
            assert!(answer.contains(&field), "{error:?}: {answer}");
        }
        let io = ProxyError::Io(crate::error::Side::Upstream, ErrorKind::BrokenPipe.into());
        assert_eq!(io.proxy_error_type(), None);
        assert_eq!(proxy_status("p", &io), None);
    }

    #[test]
    fn proxy_status_details_are_an_escaped_sf_string() {
        let error = ProxyError::Forbidden(crate::error::Refusal {
            brief: "policy-deny",
            reason: "refused by \"no ads\" (rule 1, C:\\p.toml:4) caf\u{e9}\n".into(),
            rule: None,
        });
        assert_eq!(
            proxy_status("gw1.example:8888", &error).unwrap(),
            "gw1.example:8888; error=http_request_denied; details=\"Forbidden: refused by \\\"no ads\\\" (rule 1, C:\\\\p.toml:4) caf??\""
        );
        // A name that is no sf-token (it starts with a digit) goes as a string.
        let name = proxy_status("10.0.0.1:3128", &ProxyError::Loop).unwrap();
        assert!(
            name.starts_with("\"10.0.0.1:3128\"; error=proxy_loop_detected; "),
            "{name}"
        );
        let answer = String::from_utf8(for_error("edge", &ProxyError::Loop).unwrap()).unwrap();
        assert!(answer.contains(
            "\r\nProxy-Status: edge; error=proxy_loop_detected; details=\"Forwarding loop detected\"\r\n"
        ));
    }
}
