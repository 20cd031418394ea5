//! The request-path error vocabulary: what went wrong, on which side, and the HTTP answer
//! it becomes. A leaf: the access decisions (`acl`, `auth`) turn their reasons into a
//! [`Refusal`] or an [`AuthFailure`] here, so the wire code in `http` depends on nothing
//! above it. Each front end has one place that turns a `ProxyError` into its protocol's
//! answer (`http_proxy` writes the HTTP one); the log shows [`ProxyError::brief`], and
//! [`std::error::Error::source`] keeps the I/O cause for debugging.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// Which party a failure belongs to, for logs and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Proxy,
}

/// Why the access policy refused a request: a stable label for logs and statistics, the
/// one-line reason for the client (lower-case, no final period), and the rule that
/// decided, when the policy names its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub brief: &'static str,
    pub reason: String,
    pub rule: Option<Arc<str>>,
}

/// Why credentials were not accepted; only the label leaves the `auth` module, so no
/// user name or password can reach an answer through this type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailure {
    pub brief: &'static str,
}

/// A per-user limit that refused a request (RFC 6585 §4): a stable label for logs, the
/// one-line reason for the client, and the whole seconds after which to try again
/// (`Retry-After`, RFC 9110 §10.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub brief: &'static str,
    pub reason: &'static str,
    pub retry_after: u64,
}

/// [`Refusal::brief`] of a destination address on the blacklist.
pub const REFUSED_ADDRESS: &str = "blocked-address";
/// [`Refusal::brief`] of a loopback, link-local or unspecified destination.
pub const REFUSED_LOCAL_TARGET: &str = "local-target";
/// [`ProxyError::BadResponse`]'s reason for an origin's head over the limit.
pub const RESPONSE_HEAD_TOO_LARGE: &str = "response head too large";

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
    Forbidden(Refusal),
    /// Credentials missing, malformed or wrong: 407; with the policy rule that asked for
    /// them, when one did.
    ProxyAuthRequired(AuthFailure, Option<Arc<str>>),
    /// The request would come back to this proxy: 508.
    Loop,
    /// Over the connection limit: 503.
    Overloaded,
    /// Over a per-user limit (requests, connections, authentication failures): 429 with
    /// `Retry-After`.
    TooManyRequests(OverLimit),
    /// The origin's name does not resolve (or resolves to nothing): 502.
    Resolve { host: String, source: io::Error },
    /// Every address of the origin refused or failed the connection: 502. `addr` is the
    /// last one tried.
    Connect {
        addr: Option<SocketAddr>,
        source: io::Error,
    },
    /// The origin did not accept the connection in time: 504.
    ConnectTimeout,
    /// The origin did not answer in time: 504.
    ResponseTimeout,
    /// `Cache-Control: only-if-cached` and nothing suitable is stored: 504.
    NotCached,
    /// The origin sent something that is not a valid HTTP response: 502.
    BadResponse(&'static str),
    /// A parent proxy answered no (a 407 for this proxy's credentials, a refused
    /// CONNECT or SOCKS request): 502 naming it.
    Parent { parent: Arc<str>, reason: String },
    /// No parent proxy of the route could be reached (the names, comma-separated): 502.
    ParentsDown(String),
    /// The origin closed or failed before its response head was complete: 502.
    UpstreamClosed,
    /// I/O failed after the response started: nothing can be sent, only closed.
    Io(Side, io::Error),
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
            ProxyAuthRequired(..) => 407,
            Loop => 508,
            Overloaded => 503,
            TooManyRequests(_) => 429,
            Resolve { .. } | Connect { .. } | BadResponse(_) | UpstreamClosed => 502,
            Parent { .. } | ParentsDown(_) => 502,
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
            | NotImplemented(_) | Loop | HeaderTimeout | TooManyRequests(_) => Side::Client,
            Forbidden(_) | ProxyAuthRequired(..) | Overloaded => Side::Proxy,
            Resolve { .. }
            | Connect { .. }
            | ConnectTimeout
            | ResponseTimeout
            | BadResponse(_)
            | UpstreamClosed
            | Parent { .. }
            | ParentsDown(_) => Side::Upstream,
            NotCached => Side::Proxy,
            Io(side, _) => *side,
        }
    }

    /// The policy rule behind a 403 or a 407, when a rule decided it.
    pub fn rule(&self) -> Option<&Arc<str>> {
        match self {
            ProxyError::Forbidden(refusal) => refusal.rule.as_ref(),
            ProxyError::ProxyAuthRequired(_, rule) => rule.as_ref(),
            _ => None,
        }
    }

    /// The proxy error type (RFC 9209 §2.3) a `Proxy-Status` field names for this
    /// answer, or `None` when no answer is sent. The one mapping; docs/forwarding.md
    /// has it as a table.
    pub fn proxy_error_type(&self) -> Option<&'static str> {
        use ProxyError::*;
        Some(match self {
            // Refused before anything was forwarded, for what the request is (RFC 9209
            // §2.3.15: a 4xx on the origin's behalf).
            BadRequest(_) | NotAProxyRequest | UriTooLong | HeadTooLarge | VersionNotSupported
            | NotImplemented(_) | HeaderTimeout => "http_request_error",
            // An address rule (the blacklist's networks, the safe default against local
            // targets) is about the destination's IP (§2.3.5); every other refusal, the
            // per-user limits and a login asked for are the policy's (§2.3.16).
            Forbidden(refusal)
                if matches!(refusal.brief, REFUSED_ADDRESS | REFUSED_LOCAL_TARGET) =>
            {
                "destination_ip_prohibited"
            }
            Forbidden(_) | ProxyAuthRequired(..) | TooManyRequests(_) => "http_request_denied",
            Loop => "proxy_loop_detected",
            // The listener's connection cap: the nearest type, though RFC 9209 §2.3.12
            // speaks of connections to the next hop.
            Overloaded => "connection_limit_reached",
            Resolve { source, .. } if source.kind() == io::ErrorKind::TimedOut => "dns_timeout",
            Resolve { .. } => "dns_error",
            Connect { source, .. } => match source.kind() {
                io::ErrorKind::ConnectionRefused => "connection_refused",
                io::ErrorKind::TimedOut => "connection_timeout",
                io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                    "destination_ip_unroutable"
                }
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                    "connection_terminated"
                }
                _ => "destination_unavailable",
            },
            ConnectTimeout => "connection_timeout",
            ResponseTimeout => "http_response_timeout",
            // Answered from the proxy itself: only-if-cached with nothing stored.
            NotCached => "proxy_internal_response",
            BadResponse(RESPONSE_HEAD_TOO_LARGE) => "http_response_header_section_size",
            BadResponse(_) => "http_protocol_error",
            UpstreamClosed => "http_response_incomplete",
            Parent { .. } | ParentsDown(_) => "destination_unavailable",
            Io(..) => return None,
        })
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
            Forbidden(refusal) => refusal.brief,
            ProxyAuthRequired(failure, _) => failure.brief,
            Loop => "loop",
            Overloaded => "overloaded",
            TooManyRequests(over) => over.brief,
            Resolve { .. } => "upstream_resolve",
            Connect { .. } => "upstream_connect",
            ConnectTimeout => "connect_timeout",
            ResponseTimeout => "response_timeout",
            NotCached => "not_cached",
            BadResponse(_) => "bad_response",
            UpstreamClosed => "upstream_closed",
            Parent { .. } => "parent_refused",
            ParentsDown(_) => "parents_down",
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
            Forbidden(refusal) => format!("Forbidden: {}.\n", refusal.reason),
            // The reason stays in the logs: it may name a user, and says nothing useful
            // to a client that has to send credentials anyway.
            ProxyAuthRequired(..) => "Proxy authentication required.\n".to_string(),
            Loop => "Forwarding loop detected.\n".to_string(),
            Overloaded => "Too many connections; try again later.\n".to_string(),
            TooManyRequests(over) => format!(
                "Too many requests: {}; retry after {} s.\n",
                over.reason, over.retry_after
            ),
            // A timeout and a resolver too busy to ask say so; the servers' own failures
            // stay in the logs.
            Resolve { host, source }
                if matches!(
                    source.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::ResourceBusy
                ) =>
            {
                format!("Bad gateway: cannot resolve {host}: {source}.\n")
            }
            Resolve { host, .. } => format!("Bad gateway: cannot resolve {host}.\n"),
            Connect { source, .. } => format!("Bad gateway: cannot connect: {source}.\n"),
            ConnectTimeout => {
                "Gateway timeout: the origin did not accept the connection.\n".to_string()
            }
            ResponseTimeout => "Gateway timeout: the origin did not answer in time.\n".to_string(),
            NotCached => "Gateway timeout: not in the cache (only-if-cached).\n".to_string(),
            BadResponse(why) => format!("Bad gateway: invalid response from origin: {why}.\n"),
            UpstreamClosed => "Bad gateway: the origin closed the connection.\n".to_string(),
            Parent { parent, reason } => {
                format!("Bad gateway: parent proxy {parent} {reason}.\n")
            }
            ParentsDown(parents) => {
                format!("Bad gateway: no parent proxy reachable ({parents}).\n")
            }
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

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyError::Resolve { source, .. }
            | ProxyError::Connect { source, .. }
            | ProxyError::Io(_, source) => Some(source),
            _ => None,
        }
    }
}

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
            (
                Forbidden(Refusal {
                    brief: "blocked-host",
                    reason: "x".into(),
                    rule: None,
                }),
                Some(403),
            ),
            (
                ProxyAuthRequired(AuthFailure { brief: "x" }, None),
                Some(407),
            ),
            (Loop, Some(508)),
            (Overloaded, Some(503)),
            (
                TooManyRequests(OverLimit {
                    brief: "rate_limited",
                    reason: "over the request rate",
                    retry_after: 1,
                }),
                Some(429),
            ),
            (
                Resolve {
                    host: "x".into(),
                    source: io::ErrorKind::NotFound.into(),
                },
                Some(502),
            ),
            (
                Connect {
                    addr: None,
                    source: io::ErrorKind::ConnectionRefused.into(),
                },
                Some(502),
            ),
            (BadResponse("x"), Some(502)),
            (UpstreamClosed, Some(502)),
            (
                Parent {
                    parent: "corp".into(),
                    reason: "refused this proxy's credentials (407)".into(),
                },
                Some(502),
            ),
            (ParentsDown("corp, backup".into()), Some(502)),
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
            if let Some(status) = status {
                let phrase = crate::http::answer::reason(status);
                assert_ne!(phrase, "Error", "no reason phrase for {status}");
            }
        }
    }
}
