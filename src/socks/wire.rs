//! SOCKS5 on the wire (RFC 1928, and RFC 1929 for username/password): the client's
//! greeting, its credentials, its request, and the replies. Pure functions on bytes, so
//! they can be fuzzed and tested split at any point: each parser answers `Ok(None)` when
//! more bytes are needed, or the parsed message and how many bytes it took.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol version byte of every SOCKS5 message but the RFC 1929 exchange.
pub const VERSION: u8 = 5;
/// The version byte of the username/password exchange (RFC 1929 §2).
pub const USER_PASSWORD_VERSION: u8 = 1;
/// Authentication methods (RFC 1928 §3).
pub const METHOD_NO_AUTH: u8 = 0x00;
pub const METHOD_USER_PASSWORD: u8 = 0x02;
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xff;
/// The one command served (RFC 1928 §4); BIND (2) and UDP ASSOCIATE (3) are refused.
pub const COMMAND_CONNECT: u8 = 0x01;

/// What is wrong with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Not SOCKS5, or a broken message: the connection closes without a reply.
    Malformed(&'static str),
    /// An address type this proxy does not know: answered with
    /// [`Reply::AddressTypeNotSupported`], since the rest cannot be read.
    AddressType(u8),
}

/// What a parser makes of the bytes so far: `Ok(None)` to read more, or the message and
/// how many bytes it took.
pub type Parsed<T> = Result<Option<(T, usize)>, WireError>;

/// The methods a client offers in its greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    pub no_auth: bool,
    pub user_password: bool,
}

/// `VER NMETHODS METHODS…` (RFC 1928 §3).
pub fn parse_greeting(buf: &[u8]) -> Parsed<Greeting> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(WireError::Malformed("not SOCKS version 5"));
    }
    let Some(&count) = buf.get(1) else {
        return Ok(None);
    };
    if count == 0 {
        return Err(WireError::Malformed("a greeting with no methods"));
    }
    let end = 2 + usize::from(count);
    let Some(methods) = buf.get(2..end) else {
        return Ok(None);
    };
    let greeting = Greeting {
        no_auth: methods.contains(&METHOD_NO_AUTH),
        user_password: methods.contains(&METHOD_USER_PASSWORD),
    };
    Ok(Some((greeting, end)))
}

/// A user name and password (RFC 1929 §2). Their bytes are as sent; `Debug` hides the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct UserPassword {
    pub user: Vec<u8>,
    pub password: Vec<u8>,
}

impl std::fmt::Debug for UserPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPassword")
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `VER ULEN UNAME PLEN PASSWD` (RFC 1929 §2).
pub fn parse_user_password(buf: &[u8]) -> Parsed<UserPassword> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    if version != USER_PASSWORD_VERSION {
        return Err(WireError::Malformed("not username/password version 1"));
    }
    let Some((user, at)) = length_prefixed(buf, 1) else {
        return Ok(None);
    };
    let Some((password, end)) = length_prefixed(buf, at) else {
        return Ok(None);
    };
    if user.is_empty() {
        return Err(WireError::Malformed("an empty user name"));
    }
    let credentials = UserPassword {
        user: user.to_vec(),
        password: password.to_vec(),
    };
    Ok(Some((credentials, end)))
}

/// The bytes of a one-byte-length-prefixed field at `at`, and where the next begins.
fn length_prefixed(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let length = usize::from(*buf.get(at)?);
    let end = at + 1 + length;
    Some((buf.get(at + 1..end)?, end))
}

/// Where a client asks to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Ip(IpAddr),
    /// A name, for the proxy to resolve (`socks5h`).
    Name(String),
}

/// A request: the command and the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: u8,
    pub destination: Destination,
    pub port: u16,
}

impl Request {
    /// The destination host as the shared `Target` names it.
    pub fn host(&self) -> String {
        match &self.destination {
            Destination::Ip(ip) => ip.to_string(),
            Destination::Name(name) => name.clone(),
        }
    }
}

/// `VER CMD RSV ATYP DST.ADDR DST.PORT` (RFC 1928 §4). RSV is not checked: the RFC
/// gives it no meaning.
pub fn parse_request(buf: &[u8]) -> Parsed<Request> {
    let Some(head) = buf.get(..4) else {
        return match buf.first() {
            Some(&v) if v != VERSION => Err(WireError::Malformed("not SOCKS version 5")),
            _ => Ok(None),
        };
    };
    if head[0] != VERSION {
        return Err(WireError::Malformed("not SOCKS version 5"));
    }
    let (destination, at) = match head[3] {
        0x01 => match buf.get(4..8) {
            Some(b) => (Ipv4Addr::new(b[0], b[1], b[2], b[3]).into(), 8),
            None => return Ok(None),
        },
        0x04 => match buf.get(4..20).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
            Some(b) => (Ipv6Addr::from(b).into(), 20),
            None => return Ok(None),
        },
        0x03 => match length_prefixed(buf, 4) {
            Some((name, at)) => (Destination::Name(domain(name)?), at),
            None => return Ok(None),
        },
        other => return Err(WireError::AddressType(other)),
    };
    let Some(port) = buf.get(at..at + 2) else {
        return Ok(None);
    };
    let request = Request {
        command: head[1],
        destination,
        port: u16::from_be_bytes([port[0], port[1]]),
    };
    Ok(Some((request, at + 2)))
}

impl From<IpAddr> for Destination {
    fn from(ip: IpAddr) -> Destination {
        Destination::Ip(ip)
    }
}

impl From<Ipv4Addr> for Destination {
    fn from(ip: Ipv4Addr) -> Destination {
        Destination::Ip(ip.into())
    }
}

impl From<Ipv6Addr> for Destination {
    fn from(ip: Ipv6Addr) -> Destination {
        Destination::Ip(ip.into())
    }
}

/// A domain name as sent: printable ASCII without spaces, as a host name must be
/// (RFC 1123 §2.1); an address written as text is taken as that address.
fn domain(name: &[u8]) -> Result<String, WireError> {
    if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
        return Err(WireError::Malformed(
            "a domain name that is not a host name",
        ));
    }
    let text = String::from_utf8_lossy(name).into_owned();
    Ok(text)
}

/// The reply codes (RFC 1928 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Succeeded = 0,
    GeneralFailure = 1,
    NotAllowed = 2,
    NetworkUnreachable = 3,
    HostUnreachable = 4,
    ConnectionRefused = 5,
    TtlExpired = 6,
    CommandNotSupported = 7,
    AddressTypeNotSupported = 8,
}

/// `VER REP RSV ATYP BND.ADDR BND.PORT` (RFC 1928 §6); `bound` is the proxy's address
/// for the upstream connection, or unspecified for a failure.
pub fn reply(code: Reply, bound: SocketAddr) -> Vec<u8> {
    let mut out = vec![VERSION, code as u8, 0];
    match bound.ip() {
        IpAddr::V4(ip) => {
            out.push(0x01);
            out.extend(ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(0x04);
            out.extend(ip.octets());
        }
    }
    out.extend(bound.port().to_be_bytes());
    out
}

/// The answer to a greeting: the method chosen.
pub fn method_choice(method: u8) -> [u8; 2] {
    [VERSION, method]
}

/// The answer to username/password: 0 accepted, anything else refused (RFC 1929 §2).
pub fn user_password_status(accepted: bool) -> [u8; 2] {
    [USER_PASSWORD_VERSION, if accepted { 0 } else { 1 }]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every prefix of a message is incomplete, never an error; the whole is parsed.
    fn parses_whole_only<T: std::fmt::Debug + PartialEq>(
        parse: fn(&[u8]) -> Parsed<T>,
        bytes: &[u8],
        expected: T,
    ) {
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Ok(None), "cut at {cut} of {bytes:?}");
        }
        let mut longer = bytes.to_vec();
        longer.extend(b"early data");
        assert_eq!(parse(&longer), Ok(Some((expected, bytes.len()))));
    }

    #[test]
    fn greetings() {
        let both = Greeting {
            no_auth: true,
            user_password: true,
        };
        parses_whole_only(parse_greeting, &[5, 2, 0, 2], both);
        let gssapi_only = Greeting {
            no_auth: false,
            user_password: false,
        };
        parses_whole_only(parse_greeting, &[5, 1, 1], gssapi_only);
        assert!(parse_greeting(&[4, 1, 0]).is_err(), "SOCKS4");
        assert!(parse_greeting(b"GET / HTTP/1.1").is_err());
        assert!(parse_greeting(&[5, 0]).is_err());
    }

    #[test]
    fn user_password() {
        let expected = UserPassword {
            user: b"alice".to_vec(),
            password: b"s3cret".to_vec(),
        };
        parses_whole_only(
            parse_user_password,
            b"\x01\x05alice\x06s3cret",
            expected.clone(),
        );
        assert!(!format!("{expected:?}").contains("s3cret"));
        let empty_password = UserPassword {
            user: b"a".to_vec(),
            password: Vec::new(),
        };
        parses_whole_only(parse_user_password, b"\x01\x01a\x00", empty_password);
        assert!(parse_user_password(b"\x05\x01a\x01b").is_err());
        assert!(parse_user_password(b"\x01\x00\x01b").is_err());
    }

    #[test]
    fn requests_of_each_address_type() {
        let v4 = Request {
            command: COMMAND_CONNECT,
            destination: Destination::Ip("192.0.2.1".parse().unwrap()),
            port: 443,
        };
        parses_whole_only(parse_request, &[5, 1, 0, 1, 192, 0, 2, 1, 1, 187], v4);
        let mut six = vec![5, 1, 0, 4];
        six.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        six.extend([0, 80]);
        let v6 = Request {
            command: COMMAND_CONNECT,
            destination: Destination::Ip("2001:db8::1".parse().unwrap()),
            port: 80,
        };
        assert_eq!(v6.host(), "2001:db8::1");
        parses_whole_only(parse_request, &six, v6);
        let name = Request {
            command: 3,
            destination: Destination::Name("example.com".into()),
            port: 53,
        };
        parses_whole_only(
            parse_request,
            b"\x05\x03\x00\x03\x0bexample.com\x00\x35",
            name,
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 9, 1, 2]),
            Err(WireError::AddressType(9))
        );
        assert!(parse_request(b"\x05\x01\x00\x03\x03a b\x00\x50").is_err());
        assert!(parse_request(b"\x05\x01\x00\x03\x00\x00\x50").is_err());
        assert!(parse_request(&[4]).is_err());
    }

    #[test]
    fn replies() {
        let bound = "192.0.2.9:4000".parse().unwrap();
        assert_eq!(
            reply(Reply::Succeeded, bound),
            [5, 0, 0, 1, 192, 0, 2, 9, 0x0f, 0xa0]
        );
        let refused = reply(Reply::CommandNotSupported, "[::]:0".parse().unwrap());
        assert_eq!(refused.len(), 22);
        assert_eq!(&refused[..4], &[5, 7, 0, 4]);
        assert_eq!(method_choice(METHOD_NONE_ACCEPTABLE), [5, 0xff]);
        assert_eq!(user_password_status(false), [1, 1]);
    }
}
