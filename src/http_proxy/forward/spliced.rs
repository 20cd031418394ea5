//! Long response bodies moved by splice(2), origin socket → pipe → client socket, the
//! way a tunnel moves its bytes: after the rewritten head (and whatever part of the body
//! arrived with it), the rest never enters user space. Taken only when nothing needs to
//! see the bytes — no cache copy is being filled — and the body's end is known without
//! reading it: `Content-Length` (exactly that many bytes are moved, never one more, so
//! the origin connection stays reusable) or the origin's close. Chunked bodies are
//! decoded and re-encoded, so they are copied (`http::body`), as is anything over TLS:
//! whether the sockets can be spliced is `tunnel::splice_body`'s call, the same one the
//! tunnel relay makes. A bandwidth limit paces the pipe-fulls as it does in a tunnel.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::tally::Tallied;
use crate::client::ClientStream;
use crate::error::{ProxyError, Side};
use crate::http::body::{self, Relay};
use crate::http::{BodyLength, Reader};
use crate::limits::{Paced, Pacer};
use crate::tunnel::{self, BodyFailure};
use crate::upstream::UpstreamStream;

/// The least body still to come, after what arrived with the head, for which a
/// Content-Length body is spliced: a pipe costs two system calls to make and one to
/// close, more than copying a small body (see docs/performance.md, "Spliced bodies" (S3)).
pub const SPLICE_MIN_BODY: u64 = 256 * 1024;

/// Whether a response body framed by `length`, with `buffered` bytes of it already read,
/// goes by splice (when the sockets allow it); `caching`: a cache copy is being filled.
pub fn worth_splicing(length: BodyLength, buffered: usize, caching: bool) -> bool {
    match length {
        _ if caching => false,
        BodyLength::Fixed(n) => n.saturating_sub(buffered as u64) >= SPLICE_MIN_BODY,
        BodyLength::UntilClose => true,
        BodyLength::Empty | BodyLength::Chunked => false,
    }
}

/// Writes `head` and the part of the body already read, then splices the rest; returns
/// the bytes written to the client to `written` as they go (a spliced stretch when it
/// ends). An origin that ends before the Content-Length is an
/// error (the caller closes both sides: a short body is never passed off as whole).
pub async fn relay(
    client: &mut ClientStream,
    origin: &mut Reader<UpstreamStream>,
    length: BodyLength,
    mut head: Vec<u8>,
    read_timeout: Duration,
    pacer: Option<&Pacer>,
    written: &mut u64,
) -> Result<(), ProxyError> {
    let limit = match length {
        BodyLength::Fixed(n) => Some(n),
        _ => None,
    };
    let early = origin.take(limit.map_or(usize::MAX, |n| n.try_into().unwrap_or(usize::MAX)));
    head.extend_from_slice(&early);
    let mut to_client = Paced::new(&mut *client, pacer.cloned());
    to_client
        .write_all(&head)
        .await
        .map_err(|e| ProxyError::Io(Side::Client, e))?;
    *written += head.len() as u64;
    let left = limit.map(|n| n - early.len() as u64);
    if left == Some(0) {
        return Ok(());
    }
    match tunnel::splice_body(origin.get_mut(), client, left, read_timeout, pacer).await {
        Ok(Some(moved)) => {
            origin.count_elsewhere(moved);
            *written += moved;
            if left.is_some_and(|left| moved < left) {
                return Err(ProxyError::Io(
                    Side::Upstream,
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(())
        }
        Ok(None) => {
            let rest = left.map_or(BodyLength::UntilClose, BodyLength::Fixed);
            let relay = Relay {
                read_timeout,
                dst_side: Side::Client,
                dechunk: false,
            };
            let mut to_client = Tallied {
                inner: Paced::new(client, pacer.cloned()),
                tally: written,
            };
            body::relay_body(origin, &mut to_client, rest, relay, &mut |_: &[u8]| {}).await?;
            Ok(())
        }
        Err(BodyFailure::Source(error)) => Err(ProxyError::Io(Side::Upstream, error)),
        Err(BodyFailure::Destination(error)) => Err(ProxyError::Io(Side::Client, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_plain_bodies_are_spliced_and_the_rest_copied() {
        let long = BodyLength::Fixed(SPLICE_MIN_BODY + 100);
        assert!(worth_splicing(long, 100, false));
        assert!(!worth_splicing(long, 101, false), "too little left");
        assert!(!worth_splicing(long, 0, true), "the cache needs the bytes");
        assert!(worth_splicing(BodyLength::UntilClose, 0, false));
        assert!(!worth_splicing(BodyLength::UntilClose, 0, true));
        assert!(!worth_splicing(BodyLength::Chunked, 0, false));
        assert!(!worth_splicing(BodyLength::Empty, 0, false));
    }
}
