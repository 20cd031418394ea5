//! The first bytes of a tunnel, read as a TLS ClientHello (RFC 8446 §4.1.2; the same
//! layout in TLS 1.2, RFC 5246 §7.4.1.2): the name the client asks for (server_name,
//! RFC 6066 §3) and the protocols it offers (ALPN, RFC 7301 §3.1). Sans-I/O: given the
//! bytes read so far, it says whether it needs more, whether they are not TLS at all, or
//! what the hello says. The hello may arrive in several TCP segments and, rarely, in
//! several TLS records; both are reassembled here, up to [`MAX_HELLO`].
//!
//! Also the setting that says what is done with the name (`SniCheck`).

use std::fmt;
use std::str::FromStr;

/// The most handshake bytes a ClientHello may take. Real ones are under 2 KiB (a
/// post-quantum key share included); the cap bounds what a tunnel holds before its
/// check, and a hello past it is refused as unreadable rather than let through unchecked
/// (padding a hello past a smaller cap would otherwise be a way around the check).
pub const MAX_HELLO: usize = 64 * 1024;

/// TLS record content type of a handshake (RFC 8446 §5.1).
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello (RFC 8446 §4).
const CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const EXTENSION_ALPN: u16 = 16;
/// server_name's only name type (RFC 6066 §3).
const HOST_NAME: u8 = 0;

/// What the first bytes of a tunnel say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// Too few bytes to tell; read more.
    NeedMore,
    /// Not a TLS handshake: the tunnel carries something else.
    NotTls,
    /// A TLS handshake that cannot be read as a ClientHello (malformed, or over
    /// [`MAX_HELLO`]).
    Unreadable(&'static str),
    Hello(ClientHello),
}

/// What a ClientHello names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The server name, lower-cased, without a trailing dot.
    pub sni: Option<String>,
    /// The protocols offered, in the client's order.
    pub alpn: Vec<String>,
}

/// Reads `bytes` (everything the client sent so far) as the start of a TLS handshake.
pub fn peek(bytes: &[u8]) -> Peek {
    match bytes.first() {
        None => return Peek::NeedMore,
        Some(&HANDSHAKE) => {}
        Some(_) => return Peek::NotTls,
    }
    // Major version 3 for every TLS (and SSL 3.0); anything else is not TLS.
    if bytes.len() >= 2 && bytes[1] != 3 {
        return Peek::NotTls;
    }
    let mut handshake = Vec::new();
    let mut rest = bytes;
    loop {
        if rest.len() < 5 {
            return Peek::NeedMore;
        }
        if rest[0] != HANDSHAKE {
            return Peek::Unreadable("the hello is interrupted by another record");
        }
        let length = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if length == 0 {
            return Peek::Unreadable("an empty handshake record");
        }
        let Some(fragment) = rest.get(5..5 + length) else {
            return Peek::NeedMore;
        };
        handshake.extend_from_slice(fragment);
        rest = &rest[5 + length..];
        if handshake.len() < 4 {
            continue;
        }
        if handshake[0] != CLIENT_HELLO {
            return Peek::Unreadable("the first handshake message is not a ClientHello");
        }
        let body = u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]) as usize;
        if body > MAX_HELLO {
            return Peek::Unreadable("the ClientHello is too large");
        }
        if handshake.len() >= 4 + body {
            return match client_hello(&handshake[4..4 + body]) {
                Some(hello) => Peek::Hello(hello),
                None => Peek::Unreadable("a malformed ClientHello"),
            };
        }
    }
}

/// A reader over a ClientHello's fields; every read checks its bounds.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let bytes = self.take(2)?;
        Some(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    /// A field with a one-byte length in front.
    fn short(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    /// A field with a two-byte length in front.
    fn long(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut fields = Fields(body);
    fields.take(2)?; // legacy_version
    fields.take(32)?; // random
    fields.short()?; // legacy_session_id
    fields.long()?; // cipher_suites
    fields.short()?; // legacy_compression_methods
    let mut hello = ClientHello::default();
    if fields.0.is_empty() {
        // A hello without extensions (TLS 1.2 allows it) names nothing.
        return Some(hello);
    }
    let mut extensions = Fields(fields.long()?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.long()?;
        match kind {
            EXTENSION_SERVER_NAME => hello.sni = server_name(data)?,
            EXTENSION_ALPN => hello.alpn = protocols(data)?,
            _ => {}
        }
    }
    Some(hello)
}

/// The host name of a server_name extension; an empty one (a server's echo) names none.
fn server_name(data: &[u8]) -> Option<Option<String>> {
    if data.is_empty() {
        return Some(None);
    }
    let mut list = Fields(Fields(data).long()?);
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.long()?;
        if kind == HOST_NAME {
            // RFC 6066 §3: ASCII, no trailing dot; a letter case carries no meaning.
            let text = std::str::from_utf8(name).ok()?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
                return None;
            }
            return Some(Some(same_name(text)));
        }
    }
    Some(None)
}

fn protocols(data: &[u8]) -> Option<Vec<String>> {
    let mut list = Fields(Fields(data).long()?);
    let mut names = Vec::new();
    while !list.0.is_empty() {
        let name = list.short()?;
        names.push(String::from_utf8_lossy(name).into_owned());
    }
    Some(names)
}

/// A host name in the form names are compared in: lower case, no trailing dot.
pub fn same_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// What a tunnel does with the name its ClientHello asks for (`--sni-check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SniCheck {
    /// A name other than the CONNECT host is refused; with an address as the CONNECT
    /// target, the name meets the rules as the destination.
    #[default]
    Match,
    /// The name is recorded, nothing more.
    Off,
}

impl FromStr for SniCheck {
    type Err = String;

    fn from_str(text: &str) -> Result<SniCheck, String> {
        match text {
            "match" => Ok(SniCheck::Match),
            "off" => Ok(SniCheck::Off),
            other => Err(format!("{other:?} is not match or off")),
        }
    }
}

impl fmt::Display for SniCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SniCheck::Match => "match",
            SniCheck::Off => "off",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello with `extensions` (type, data), wrapped in one record.
    fn hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.push(0);
        body.extend([0, 2, 0x13, 0x01]);
        body.extend([1, 0]);
        let mut list = Vec::new();
        for (kind, data) in extensions {
            list.extend(kind.to_be_bytes());
            list.extend((data.len() as u16).to_be_bytes());
            list.extend(data);
        }
        body.extend((list.len() as u16).to_be_bytes());
        body.extend(list);
        let mut handshake = vec![CLIENT_HELLO];
        handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend(body);
        record(&handshake)
    }

    fn record(fragment: &[u8]) -> Vec<u8> {
        let mut out = vec![HANDSHAKE, 3, 1];
        out.extend((fragment.len() as u16).to_be_bytes());
        out.extend(fragment);
        out
    }

    fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![HOST_NAME];
        entry.extend((name.len() as u16).to_be_bytes());
        entry.extend(name.as_bytes());
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend(entry);
        (EXTENSION_SERVER_NAME, data)
    }

    fn alpn(names: &[&str]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for name in names {
            list.push(name.len() as u8);
            list.extend(name.as_bytes());
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend(list);
        (EXTENSION_ALPN, data)
    }

    #[test]
    fn the_name_and_protocols_are_read_at_any_split() {
        let bytes = hello(&[
            (43, vec![2, 3, 4]),
            sni("Example.COM."),
            alpn(&["h2", "http/1.1"]),
        ]);
        let expected = Peek::Hello(ClientHello {
            sni: Some("example.com".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
        });
        for split in 0..bytes.len() {
            assert_eq!(peek(&bytes[..split]), Peek::NeedMore, "split at {split}");
        }
        assert_eq!(peek(&bytes), expected);
        let mut more = bytes.clone();
        more.extend(b"application data behind it");
        assert_eq!(peek(&more), expected);
    }

    #[test]
    fn a_hello_over_two_records_is_reassembled() {
        let one = hello(&[sni("two.example")]);
        let handshake = &one[5..];
        let mut bytes = record(&handshake[..10]);
        bytes.extend(record(&handshake[10..]));
        assert_eq!(peek(&bytes[..bytes.len() - 1]), Peek::NeedMore);
        assert!(matches!(peek(&bytes), Peek::Hello(h) if h.sni.as_deref() == Some("two.example")));
    }

    #[test]
    fn other_protocols_are_not_tls() {
        for start in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"SSH-2.0-OpenSSH",
            b"\x16\x01\x00",
            b"\x00",
        ] {
            assert_eq!(peek(start), Peek::NotTls, "{start:?}");
        }
        assert_eq!(peek(b"\x16"), Peek::NeedMore);
    }

    #[test]
    fn no_name_is_none_and_broken_hellos_are_unreadable() {
        assert!(matches!(peek(&hello(&[])), Peek::Hello(h) if h.sni.is_none()));
        let mut truncated_extension = hello(&[sni("x.example")]);
        // Shorten the SNI list length so the entry overruns it.
        let at = truncated_extension.len() - "x.example".len() - 5;
        truncated_extension[at] = 0;
        truncated_extension[at + 1] = 2;
        assert!(matches!(peek(&truncated_extension), Peek::Unreadable(_)));
        let server_hello = record(&[2, 0, 0, 1, 0]);
        assert!(matches!(peek(&server_hello), Peek::Unreadable(_)));
        let huge = [HANDSHAKE, 3, 1, 0, 4, CLIENT_HELLO, 0xff, 0xff, 0xff];
        assert_eq!(
            peek(&huge),
            Peek::Unreadable("the ClientHello is too large")
        );
        let bad_name = hello(&[sni("bad name")]);
        assert!(matches!(peek(&bad_name), Peek::Unreadable(_)));
    }

    #[test]
    fn names_compare_without_case_or_trailing_dot() {
        assert_eq!(same_name("WWW.Example.org."), "www.example.org");
        assert_eq!("match".parse(), Ok(SniCheck::Match));
        assert_eq!("off".parse(), Ok(SniCheck::Off));
        assert!("maybe".parse::<SniCheck>().is_err());
    }
}
