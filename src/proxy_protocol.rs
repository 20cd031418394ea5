//! The PROXY protocol (HAProxy's, versions 1 and 2), by which a load balancer in front
//! passes on the address of the client it accepted. The header is read from the socket
//! before anything else and exactly to its end, so the bytes behind it (a TLS handshake,
//! an HTTP request, a SOCKS greeting) stay in the socket for the front end. Parsing is
//! the `ppp` crate's; this module decides what is read and which address counts. The
//! server asks for a header only from the sources a listener lists, and requires one
//! from them; the caller bounds the read in time.

use std::net::SocketAddr;

use ppp::v1::Addresses as V1Addresses;
use ppp::v2::{Addresses as V2Addresses, Command, Protocol};
use ppp::{HeaderResult, PartialResult as _};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature (12 bytes) that opens a binary header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v2 header's fixed part: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// The longest v2 header accepted: the addresses of any family (216 bytes for UNIX) and
/// room for the TLVs balancers send (SSL details, a connection ID). The protocol allows
/// 64 KiB; nothing a balancer sends needs that much of every connection's memory.
pub const MAX_V2_HEADER: usize = 2048;
/// The longest v1 line, CRLF included (the specification's own bound).
const MAX_V1_HEADER: usize = 107;
/// The shortest v1 line: `PROXY UNKNOWN\r\n`. Reading this many bytes first never reads
/// past a header of either version.
const MIN_HEADER: usize = 15;

/// Why a connection that owed a header is closed.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The connection closed or failed before the header was complete.
    Closed,
    /// Not a PROXY-protocol header, or a broken one.
    Malformed(&'static str),
}

/// Reads a PROXY header from `stream`; the client address it carries, or `peer` when it
/// carries none (v1 `UNKNOWN`, v2 `LOCAL` — a balancer's health check — or a family
/// without an IP address).
pub async fn read_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Result<SocketAddr, HeaderError> {
    let mut header = vec![0u8; MIN_HEADER];
    read_exact(stream, &mut header).await?;
    if header.starts_with(V2_SIGNATURE) {
        header.resize(V2_FIXED, 0);
        read_exact(stream, &mut header[MIN_HEADER..]).await?;
        let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
        if V2_FIXED + length > MAX_V2_HEADER {
            return Err(HeaderError::Malformed("PROXY v2 header too long"));
        }
        header.resize(V2_FIXED + length, 0);
        read_exact(stream, &mut header[V2_FIXED..]).await?;
    } else if header.starts_with(b"PROXY ") {
        read_v1_rest(stream, &mut header).await?;
    } else {
        return Err(HeaderError::Malformed("no PROXY header"));
    }
    parse(&header, peer)
}

/// The client address a complete header names (see [`read_header`]).
pub fn parse(header: &[u8], peer: SocketAddr) -> Result<SocketAddr, HeaderError> {
    let parsed = HeaderResult::parse(header);
    if parsed.is_incomplete() {
        return Err(HeaderError::Malformed("PROXY header incomplete"));
    }
    match parsed {
        HeaderResult::V1(Ok(v1)) if v1.header.len() == header.len() => Ok(match v1.addresses {
            V1Addresses::Tcp4(a) => SocketAddr::from((a.source_address, a.source_port)),
            V1Addresses::Tcp6(a) => SocketAddr::from((a.source_address, a.source_port)),
            V1Addresses::Unknown => peer,
        }),
        HeaderResult::V2(Ok(v2)) if v2.len() == header.len() => {
            if v2.command == Command::Local {
                return Ok(peer);
            }
            // The connection is a TCP stream: a header for a datagram (UDP) describes
            // another connection, and an address family without a transport is a
            // combination receivers must reject (the specification, §2.2).
            match (v2.protocol, v2.addresses) {
                (Protocol::Stream, V2Addresses::IPv4(a)) => {
                    Ok(SocketAddr::from((a.source_address, a.source_port)))
                }
                (Protocol::Stream, V2Addresses::IPv6(a)) => {
                    Ok(SocketAddr::from((a.source_address, a.source_port)))
                }
                (Protocol::Stream, V2Addresses::Unix(_)) | (_, V2Addresses::Unspecified) => {
                    Ok(peer)
                }
                (Protocol::Datagram, _) => Err(HeaderError::Malformed(
                    "PROXY v2 header for a datagram (UDP) connection",
                )),
                (Protocol::Unspecified, _) => Err(HeaderError::Malformed(
                    "PROXY v2 header with an address family but no transport",
                )),
            }
        }
        HeaderResult::V1(_) => Err(HeaderError::Malformed("bad PROXY v1 header")),
        HeaderResult::V2(_) => Err(HeaderError::Malformed("bad PROXY v2 header")),
    }
}

/// Reads the rest of a v1 line, up to and including its CRLF. A balancer sends the line
/// in one segment, so one look at the socket usually finds the end and one read takes
/// exactly that much; a line split across segments is read a byte at a time.
async fn read_v1_rest(stream: &mut TcpStream, header: &mut Vec<u8>) -> Result<(), HeaderError> {
    if header.ends_with(b"\r\n") {
        return Ok(());
    }
    let mut peeked = [0u8; MAX_V1_HEADER - MIN_HEADER];
    let seen = stream
        .peek(&mut peeked)
        .await
        .map_err(|_| HeaderError::Closed)?;
    let line_end = (header.len()..header.len() + seen).find(|&end| {
        let at = |i: usize| {
            if i < header.len() {
                header[i]
            } else {
                peeked[i - header.len()]
            }
        };
        end >= 1 && at(end - 1) == b'\r' && at(end) == b'\n'
    });
    if let Some(end) = line_end {
        let start = header.len();
        header.resize(end + 1, 0);
        return read_exact(stream, &mut header[start..]).await;
    }
    while !header.ends_with(b"\r\n") {
        if header.len() >= MAX_V1_HEADER {
            return Err(HeaderError::Malformed("PROXY v1 line too long"));
        }
        let mut byte = [0u8; 1];
        read_exact(stream, &mut byte).await?;
        header.push(byte[0]);
    }
    Ok(())
}

async fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), HeaderError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(_) => Err(HeaderError::Closed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const PEER: &str = "127.0.0.1:5000";

    fn peer() -> SocketAddr {
        PEER.parse().unwrap()
    }

    /// A v2 PROXY header for a TCP over IPv4 connection from `source`.
    fn v2(source: SocketAddr, command: u8) -> Vec<u8> {
        let SocketAddr::V4(source) = source else {
            panic!("IPv4 only here");
        };
        let mut header = V2_SIGNATURE.to_vec();
        header.extend([0x20 | command, 0x11, 0, 12]);
        header.extend(source.ip().octets());
        header.extend([192, 0, 2, 1]);
        header.extend(source.port().to_be_bytes());
        header.extend(443u16.to_be_bytes());
        header
    }

    #[test]
    fn complete_headers_name_the_client() {
        let v1 = b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\n";
        assert_eq!(parse(v1, peer()), Ok("198.51.100.7:40000".parse().unwrap()));
        let v1_six = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n";
        assert_eq!(
            parse(v1_six, peer()),
            Ok("[2001:db8::7]:40000".parse().unwrap())
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n", peer()), Ok(peer()));
        let source = "203.0.113.9:1234".parse().unwrap();
        assert_eq!(parse(&v2(source, 1), peer()), Ok(source));
        assert_eq!(
            parse(&v2(source, 0), peer()),
            Ok(peer()),
            "LOCAL: the balancer itself"
        );
        let mut datagram = v2(source, 1);
        datagram[13] = 0x12;
        assert_eq!(
            parse(&datagram, peer()),
            Err(HeaderError::Malformed(
                "PROXY v2 header for a datagram (UDP) connection"
            ))
        );
        datagram[13] = 0x10;
        assert!(
            parse(&datagram, peer()).is_err(),
            "a family without a transport"
        );
        assert!(parse(b"PROXY TCP4 nonsense\r\n", peer()).is_err());
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n", peer()).is_err());
    }

    /// The header is read to its last byte and no further, however it is split.
    #[tokio::test]
    async fn reads_stop_at_the_end_of_the_header() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let source: SocketAddr = "203.0.113.9:1234".parse().unwrap();
        let cases: Vec<(Vec<u8>, usize, SocketAddr)> = vec![
            (
                b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\n".to_vec(),
                20,
                "198.51.100.7:40000".parse().unwrap(),
            ),
            (
                b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\n".to_vec(),
                45,
                "198.51.100.7:40000".parse().unwrap(),
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), 15, peer()),
            (v2(source, 1), 13, source),
        ];
        for (header, split, expected) in cases {
            let writer = tokio::spawn(async move {
                let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
                client.write_all(&header[..split]).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                client.write_all(&header[split..]).await.unwrap();
                client.write_all(b"NEXT").await.unwrap();
                client
            });
            let (mut server, _) = listener.accept().await.unwrap();
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                read_header(&mut server, peer()),
            );
            assert_eq!(read.await.unwrap(), Ok(expected));
            let mut next = [0u8; 4];
            server.read_exact(&mut next).await.unwrap();
            assert_eq!(&next, b"NEXT");
            drop(writer.await.unwrap());
        }
    }

    #[tokio::test]
    async fn no_header_and_overlong_lines_are_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for bytes in [
            b"GET http://a/ HTTP/1.1\r\n\r\n".to_vec(),
            [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat(),
        ] {
            let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
            client.write_all(&bytes).await.unwrap();
            let (mut server, _) = listener.accept().await.unwrap();
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                read_header(&mut server, peer()),
            );
            assert!(matches!(
                read.await.unwrap(),
                Err(HeaderError::Malformed(_))
            ));
        }
    }
}
