//! The request-path error vocabulary: what went wrong, on which side, and the HTTP answer
//! it becomes. `conn` is the one place that turns a `ProxyError` into bytes on the wire.

use std::fmt;

use crate::acl::Denial;
use crate::auth::AuthError;

/// Which party a failure belongs to, for logs and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Proxy,
}

/// A failure while serving one request.
#[derive(Debug)]
pub enum ProxyError {
    /// The request is malformed or its framing is ambiguous (RFC 9112 §6.3): 400.
    BadRequest(&'static str),
    /// An origin-form request reached a forward proxy: 400 with an explanation.
    NotAProxyRequest,
    /// Request line longer than the head limit: 414.
    UriTooLong,
    /// Head over the byte limit or too many fields: 431.
    HeadTooLarge,
    /// A request in a major HTTP version other than 1 (an HTTP/2 preface, say): 505.
    VersionNotSupported,
    /// A scheme or transfer coding the proxy does not implement: 501.
    NotImplemented(&'static str),
    /// Access denied by policy: 403 with a short reason.
    Forbidden(Denial),
    /// Credentials missing, malformed or wrong: 407.
    ProxyAuthRequired(AuthError),
    /// The request would come back to this proxy: 508.
    Loop,
    /// Over the connection limit: 503.
    Overloaded,
    /// The origin's name does not resolve or it refused the connection: 502.
    UpstreamConnect(String),
    /// The origin did not accept the connection in time: 504.
    ConnectTimeout,
    /// The origin did not answer in time: 504.
    ResponseTimeout,
    /// `Cache-Control: only-if-cached` and nothing suitable is stored: 504.
    NotCached,
    /// The origin sent something that is not a valid HTTP response: 502.
    BadResponse(&'static str),
    /// The origin closed or failed before its response head was complete: 502.
    UpstreamClosed,
    /// I/O failed after the response started: nothing can be sent, only closed.
    Io(Side, std::io::Error),
    /// The client was too slow to send its request head.
    HeaderTimeout,
}

impl ProxyError {
    /// The status code this error is answered with, or `None` when the only safe
    /// reaction is to close the connection (the response has started, or the client is gone).
    pub fn status(&self) -> Option<u16> {
        use ProxyError::*;
        Some(match self {
            BadRequest(_) | NotAProxyRequest => 400,
            UriTooLong => 414,
            HeadTooLarge => 431,
            VersionNotSupported => 505,
            NotImplemented(_) => 501,
            Forbidden(_) => 403,
            ProxyAuthRequired(_) => 407,
            Loop => 508,
            Overloaded => 503,
            UpstreamConnect(_) | BadResponse(_) | UpstreamClosed => 502,
            ConnectTimeout | ResponseTimeout | NotCached => 504,
            HeaderTimeout => 408,
            Io(..) => return None,
        })
    }

    /// Who is to blame, for logs and statistics.
    pub fn side(&self) -> Side {
        use ProxyError::*;
        match self {
            BadRequest(_) | NotAProxyRequest | UriTooLong | HeadTooLarge | VersionNotSupported
            | NotImplemented(_) | Loop | HeaderTimeout => Side::Client,
            Forbidden(_) | ProxyAuthRequired(_) | Overloaded => Side::Proxy,
            UpstreamConnect(_) | ConnectTimeout | ResponseTimeout | BadResponse(_)
            | UpstreamClosed => Side::Upstream,
            NotCached => Side::Proxy,
            Io(side, _) => *side,
        }
    }

    /// A short stable label for logs.
    pub fn brief(&self) -> &'static str {
        use ProxyError::*;
        match self {
            BadRequest(_) => "bad_request",
            NotAProxyRequest => "origin_form",
            UriTooLong => "uri_too_long",
            HeadTooLarge => "head_too_large",
            VersionNotSupported => "version_not_supported",
            NotImplemented(_) => "not_implemented",
            Forbidden(denial) => denial.brief(),
            ProxyAuthRequired(why) => why.brief(),
            Loop => "loop",
            Overloaded => "overloaded",
            UpstreamConnect(_) => "upstream_connect",
            ConnectTimeout => "connect_timeout",
            ResponseTimeout => "response_timeout",
            NotCached => "not_cached",
            BadResponse(_) => "bad_response",
            UpstreamClosed => "upstream_closed",
            Io(Side::Client, _) => "client_io",
            Io(_, _) => "upstream_io",
            HeaderTimeout => "header_timeout",
        }
    }

    /// The one-line text body sent with the error status.
    pub fn body(&self) -> String {
        use ProxyError::*;
        match self {
            BadRequest(why) => format!("Bad request: {why}.\n"),
            NotAProxyRequest => "This is a forward proxy: send absolute-form requests \
                                 (GET http://host/path) or CONNECT host:port.\n"
                .to_string(),
            UriTooLong => "Request URI too long.\n".to_string(),
            HeadTooLarge => "Request header fields too large.\n".to_string(),
            VersionNotSupported => {
                "HTTP version not supported: this proxy speaks HTTP/1.1.\n".to_string()
            }
            NotImplemented(what) => format!("Not implemented: {what}.\n"),
            Forbidden(why) => format!("Forbidden: {why}.\n"),
            // The reason stays in the logs: it may name a user, and says nothing useful
            // to a client that has to send credentials anyway.
            ProxyAuthRequired(_) => "Proxy authentication required.\n".to_string(),
            Loop => "Forwarding loop detected.\n".to_string(),
            Overloaded => "Too many connections; try again later.\n".to_string(),
            UpstreamConnect(why) => format!("Bad gateway: {why}.\n"),
            ConnectTimeout => {
                "Gateway timeout: the origin did not accept the connection.\n".to_string()
            }
            ResponseTimeout => "Gateway timeout: the origin did not answer in time.\n".to_string(),
            NotCached => "Gateway timeout: not in the cache (only-if-cached).\n".to_string(),
            BadResponse(why) => format!("Bad gateway: invalid response from origin: {why}.\n"),
            UpstreamClosed => "Bad gateway: the origin closed the connection.\n".to_string(),
            HeaderTimeout => "Request head not received in time.\n".to_string(),
            Io(..) => String::new(),
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Io(side, e) => write!(f, "{side:?} i/o: {e}"),
            other => f.write_str(other.body().trim_end()),
        }
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        use ProxyError::*;
        let table = [
            (BadRequest("x"), Some(400)),
            (NotAProxyRequest, Some(400)),
            (UriTooLong, Some(414)),
            (HeadTooLarge, Some(431)),
            (VersionNotSupported, Some(505)),
            (NotImplemented("x"), Some(501)),
            (Forbidden(Denial::BlockedHost), Some(403)),
            (ProxyAuthRequired(AuthError::Missing), Some(407)),
            (Loop, Some(508)),
            (Overloaded, Some(503)),
            (UpstreamConnect("x".into()), Some(502)),
            (BadResponse("x"), Some(502)),
            (UpstreamClosed, Some(502)),
            (ConnectTimeout, Some(504)),
            (ResponseTimeout, Some(504)),
            (NotCached, Some(504)),
            (HeaderTimeout, Some(408)),
            (
                Io(Side::Client, std::io::ErrorKind::BrokenPipe.into()),
                None,
            ),
        ];
        for (error, status) in table {
            assert_eq!(error.status(), status, "{error:?}");
            assert!(error.body().len() < 200);
        }
    }
}
