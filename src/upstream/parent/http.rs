//! A tunnel through an HTTP or HTTPS parent: `CONNECT host:port` with the parent's own
//! `Proxy-Authorization`, and its answer read. A 2xx opens the tunnel; a 407 means the
//! parent does not accept this proxy's credentials (an operator's error, logged); any
//! other answer is the parent's word about the target. The answer head is read one byte
//! at a time so that no byte of the tunnel behind it is taken: it is short and comes
//! once per tunnel.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Failure;
use crate::target::Target;
use crate::upstream::stream::UpstreamStream;

/// Longest CONNECT answer head accepted from a parent.
const MAX_ANSWER_HEAD: usize = 16 * 1024;

/// Asks the parent for a tunnel to `target`.
pub async fn connect(
    stream: &mut UpstreamStream,
    target: &Target<'_>,
    authorization: Option<&Arc<str>>,
) -> Result<(), Failure> {
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(authorization) = authorization {
        request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| Failure::Down(format!("CONNECT not sent: {e}")))?;
    let head = read_head(stream).await?;
    match status(&head)? {
        200..=299 => Ok(()),
        407 => Err(Failure::Refused(
            "refused this proxy's credentials (407)".into(),
        )),
        code => Err(Failure::Refused(format!(
            "answered {code} to CONNECT {target}"
        ))),
    }
}

async fn read_head(stream: &mut UpstreamStream) -> Result<Vec<u8>, Failure> {
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_ANSWER_HEAD {
            return Err(Failure::Refused("sent an oversized CONNECT answer".into()));
        }
        match stream.read_u8().await {
            Ok(byte) => head.push(byte),
            Err(e) => return Err(Failure::Down(format!("no CONNECT answer: {e}"))),
        }
    }
    Ok(head)
}

fn status(head: &[u8]) -> Result<u16, Failure> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut fields);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => response
            .code
            .ok_or_else(|| Failure::Refused("sent a CONNECT answer without a status".into())),
        _ => Err(Failure::Refused("sent an invalid CONNECT answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_for_their_status() {
        assert_eq!(
            status(b"HTTP/1.1 200 Connection Established\r\n\r\n").ok(),
            Some(200)
        );
        assert_eq!(
            status(b"HTTP/1.0 407 Auth\r\nProxy-Authenticate: Basic\r\n\r\n").ok(),
            Some(407)
        );
        assert!(status(b"garbage\r\n\r\n").is_err());
    }
}
