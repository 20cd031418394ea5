//! A tunnel's first bytes, before any of them reaches the target. They are read until
//! they show whether they are a TLS ClientHello — no round trip of their own: a TLS
//! client sends its hello right behind the tunnel's yes, and a protocol whose server
//! speaks first shows itself by the target speaking first — and the hello's server name
//! and protocols go into the exchange's notes. With `--sni-check match`, the name is
//! then checked: another name than the CONNECT host is refused (domain fronting: the
//! rules saw one name, the TLS session asks for another), and when the CONNECT named an
//! address, the name meets the rules as the destination. A refused tunnel is closed with
//! nothing sent to the target; since its yes already went out, the client sees the close.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::time::{Instant, sleep_until};

use super::{Context, Exchange};
use crate::access::{Admission, Decision, decision};
use crate::acl::{Host, normalise};
use crate::error::Refusal;
use crate::target::{Kind, Target};
use crate::tunnel::hello::{self, MAX_HELLO, Peek, SniCheck};
use crate::upstream::{Link, UpstreamStream};

/// Room for the first read: a whole hello (real ones are under 2 KiB) and, for another
/// protocol, as much as the relay's own first read would have taken.
const FIRST_READ: usize = 16 * 1024;

/// The most bytes held while a hello is read: a hello at [`MAX_HELLO`] cut into the
/// smallest records (five bytes of header for each byte of it) stays below this.
const MAX_FIRST_BYTES: usize = 6 * MAX_HELLO;

impl Context {
    /// Reads the client's first bytes (after `early`, what its front end already holds),
    /// notes what its ClientHello names, and checks it; returns the bytes to relay first,
    /// or the refusal.
    pub(super) async fn first_bytes(
        &self,
        client: &mut (impl AsyncRead + Unpin),
        early: Bytes,
        upstream: &UpstreamStream,
        request: &Admission<'_>,
        link: &Link,
        exchange: &mut Exchange,
    ) -> Result<Bytes, Refusal> {
        let (first, peeked) = self.read_hello(client, early, upstream).await;
        let checked = match peeked {
            Peek::Hello(hello) => {
                exchange.alpn = (!hello.alpn.is_empty()).then(|| hello.alpn.join(",").into());
                let name = hello.sni.map(String::into_boxed_str);
                exchange.sni.clone_from(&name);
                match (name, self.config.sni_check) {
                    (Some(name), SniCheck::Match) => self.check_name(&name, request, link).await,
                    _ => Ok(()),
                }
            }
            Peek::Unreadable(why) if self.config.sni_check == SniCheck::Match => Err(Refusal {
                brief: "tls_hello_unreadable",
                reason: format!("the tunnel's TLS ClientHello cannot be read: {why}"),
                rule: None,
            }),
            _ => Ok(()),
        };
        match checked {
            Ok(()) => Ok(first),
            Err(refusal) => {
                exchange.bytes_from_client += first.len() as u64;
                self.stats.sni_refused();
                Err(refusal)
            }
        }
    }

    /// Reads until the bytes are a whole ClientHello or plainly something else, the
    /// target speaks first, the client stops sending, or the header timeout passes.
    async fn read_hello(
        &self,
        client: &mut (impl AsyncRead + Unpin),
        early: Bytes,
        upstream: &UpstreamStream,
    ) -> (Bytes, Peek) {
        let timeouts = &self.config.timeouts;
        let deadline = Instant::now() + timeouts.header.min(timeouts.idle);
        let mut first = BytesMut::with_capacity(FIRST_READ.max(early.len()));
        first.extend_from_slice(&early);
        loop {
            match hello::peek(&first) {
                Peek::NeedMore if first.len() < MAX_FIRST_BYTES => {}
                Peek::NeedMore => return (first.freeze(), Peek::Unreadable("too many records")),
                peeked => return (first.freeze(), peeked),
            }
            tokio::select! {
                read = client.read_buf(&mut first) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return cut_short(first);
                    }
                }
                _ = upstream.socket().readable() => return cut_short(first),
                () = sleep_until(deadline) => return cut_short(first),
            }
        }
    }

    /// With a CONNECT to a name, the hello must name the same host; with a CONNECT to an
    /// address, the name it asks for must be one the rules let this client reach, at the
    /// address the tunnel is connected to.
    async fn check_name(
        &self,
        name: &str,
        request: &Admission<'_>,
        link: &Link,
    ) -> Result<(), Refusal> {
        let connect = normalise(request.target.host);
        let asked = normalise(name);
        if let Host::Name(host) = &connect {
            return if asked == connect {
                Ok(())
            } else {
                Err(Refusal {
                    brief: "sni_mismatch",
                    reason: format!("the TLS server name {name} is not the CONNECT host {host}"),
                    rule: None,
                })
            };
        }
        let as_destination = Admission {
            target: Target::new(name, request.target.port, Kind::Connect),
            ..*request
        };
        let access = self.access.snapshot();
        let decided = match access.decide(&as_destination, &self.limits).await {
            Decision::Allow {
                user,
                addresses: Some(check),
                ..
            } => decision(user, check.settle(&[link.peer])),
            other => other,
        };
        match decided {
            Decision::Allow { .. } | Decision::Limited(_) => Ok(()),
            Decision::Deny(refusal) => Err(Refusal {
                reason: format!("the TLS server name {name}: {}", refusal.reason),
                ..refusal
            }),
            Decision::AuthRequired(_, rule) => Err(Refusal {
                brief: "sni_refused",
                reason: format!("the TLS server name {name} needs another login"),
                rule,
            }),
        }
    }
}

/// The bytes read when reading stopped before they were a whole hello: nothing at all
/// (the target speaks first, or the client is silent) is no hello; part of one is
/// unreadable — letting it through would let a client slip a slow or stalled hello past
/// the check.
fn cut_short(first: BytesMut) -> (Bytes, Peek) {
    let peeked = if first.is_empty() {
        Peek::NeedMore
    } else {
        Peek::Unreadable("the ClientHello did not arrive whole")
    };
    (first.freeze(), peeked)
}
