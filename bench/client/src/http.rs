//! Reading one HTTP/1.1 response with a Content-Length body from a keep-alive
//! stream, keeping any bytes past it for the next response.

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Our origin's heads are a few hundred bytes; more means something is wrong.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;
const READ_CHUNK: usize = 16 * 1024;

/// Reads one response; returns its status. `buffer` carries leftover bytes.
pub async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Result<u16> {
    let (status, head_len, body_len) = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) = response.parse(buffer)? {
            let status = response.code.context("no status")?;
            let body_len = content_length(response.headers)?;
            break (status, head_len, body_len);
        }
        if buffer.len() > MAX_HEAD {
            bail!("response head too large");
        }
        fill(stream, buffer).await?;
    };
    let total = head_len + body_len;
    while buffer.len() < total {
        fill(stream, buffer).await?;
    }
    buffer.drain(..total);
    Ok(status)
}

fn content_length(headers: &[httparse::Header]) -> Result<usize> {
    let field = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .context("response without Content-Length")?;
    Ok(std::str::from_utf8(field.value)?.trim().parse()?)
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buffer: &mut Vec<u8>) -> Result<()> {
    let start = buffer.len();
    buffer.resize(start + READ_CHUNK, 0);
    let n = stream.read(&mut buffer[start..]).await?;
    buffer.truncate(start + n);
    if n == 0 {
        bail!("connection closed mid-response");
    }
    Ok(())
}
