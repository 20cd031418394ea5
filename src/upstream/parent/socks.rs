//! A connection through a SOCKS5 parent (RFC 1928): the greeting offering "no
//! authentication" and, when the parent has credentials, username/password (RFC 1929);
//! then `CONNECT` to the target by name (`socks5h://`: the parent resolves it) or by the
//! address this proxy resolved and checked (`socks5://`). Tunnels and plain requests
//! alike: a plain request then goes over the tunnel as to the origin.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Failure;
use crate::target::Target;
use crate::upstream::stream::UpstreamStream;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASS: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xff;

/// Opens a SOCKS5 tunnel to `target` (to `address` when given) through `stream`.
pub async fn connect(
    stream: &mut UpstreamStream,
    target: &Target<'_>,
    address: Option<SocketAddr>,
    credentials: Option<(&str, &str)>,
) -> Result<(), Failure> {
    let methods: &[u8] = match credentials {
        Some(_) => &[NO_AUTH, USER_PASS],
        None => &[NO_AUTH],
    };
    let mut greeting = vec![VERSION, methods.len() as u8];
    greeting.extend_from_slice(methods);
    send(stream, &greeting).await?;
    let chosen = read::<2>(stream).await?;
    if chosen[0] != VERSION {
        return Err(Failure::Refused("is not a SOCKS5 server".into()));
    }
    match (chosen[1], credentials) {
        (NO_AUTH, _) => {}
        (USER_PASS, Some((user, pass))) => authenticate(stream, user, pass).await?,
        (NO_ACCEPTABLE, _) | (_, None) => {
            return Err(Failure::Refused(
                "accepts none of this proxy's SOCKS authentication methods".into(),
            ));
        }
        (other, _) => {
            return Err(Failure::Refused(format!(
                "chose an unknown SOCKS method {other}"
            )));
        }
    }
    send(stream, &request(target, address)?).await?;
    let reply = read::<4>(stream).await?;
    if reply[1] != 0 {
        return Err(Failure::Refused(format!(
            "refused SOCKS CONNECT {target}: {}",
            reply_text(reply[1])
        )));
    }
    // The bound address, which nothing here needs, must still be read off the stream.
    let rest = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => usize::from(read::<1>(stream).await?[0]) + 2,
        _ => return Err(Failure::Refused("sent a malformed SOCKS reply".into())),
    };
    let mut bound = vec![0; rest];
    stream
        .read_exact(&mut bound)
        .await
        .map_err(|e| Failure::Down(format!("SOCKS reply cut short: {e}")))?;
    Ok(())
}

/// RFC 1929: version 1, then the user name and password, each with its length.
async fn authenticate(stream: &mut UpstreamStream, user: &str, pass: &str) -> Result<(), Failure> {
    let (user, pass) = (user.as_bytes(), pass.as_bytes());
    if user.len() > 255 || pass.len() > 255 {
        return Err(Failure::Refused(
            "credentials too long for SOCKS5 (255 bytes each)".into(),
        ));
    }
    let mut message = vec![1, user.len() as u8];
    message.extend_from_slice(user);
    message.push(pass.len() as u8);
    message.extend_from_slice(pass);
    send(stream, &message).await?;
    if read::<2>(stream).await?[1] != 0 {
        return Err(Failure::Refused(
            "refused this proxy's credentials (SOCKS5 username/password)".into(),
        ));
    }
    Ok(())
}

/// The CONNECT request: by address when there is one, else by name.
fn request(target: &Target<'_>, address: Option<SocketAddr>) -> Result<Vec<u8>, Failure> {
    let mut out = vec![VERSION, 1, 0];
    let literal = target.host.parse::<IpAddr>().ok();
    match address.map(|a| a.ip()).or(literal) {
        Some(IpAddr::V4(ip)) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        Some(IpAddr::V6(ip)) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        None => {
            let name = target.host.trim_end_matches('.').as_bytes();
            if name.len() > 255 {
                return Err(Failure::Refused("target name too long for SOCKS5".into()));
            }
            out.push(3);
            out.push(name.len() as u8);
            out.extend_from_slice(name);
        }
    }
    out.extend_from_slice(&target.port.to_be_bytes());
    Ok(out)
}

fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply",
    }
}

async fn send(stream: &mut UpstreamStream, bytes: &[u8]) -> Result<(), Failure> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| Failure::Down(format!("SOCKS handshake failed: {e}")))
}

async fn read<const N: usize>(stream: &mut UpstreamStream) -> Result<[u8; N], Failure> {
    let mut buf = [0; N];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| Failure::Down(format!("SOCKS handshake failed: {e}")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Kind;

    #[test]
    fn requests_name_or_address() {
        let target = Target::new("Example.com.", 443, Kind::Connect);
        assert_eq!(
            request(&target, None).ok().unwrap(),
            b"\x05\x01\x00\x03\x0bExample.com\x01\xbb".to_vec()
        );
        let resolved = Some("10.1.2.3:443".parse().unwrap());
        assert_eq!(
            request(&target, resolved).ok().unwrap(),
            b"\x05\x01\x00\x01\x0a\x01\x02\x03\x01\xbb".to_vec()
        );
        let v6 = Target::new("::1", 80, Kind::Http);
        assert_eq!(request(&v6, None).ok().unwrap()[3], 4);
    }
}
