//! Host spellings: turning what a client wrote (`Example.COM.:443`, `[::ffff:127.0.0.1]`)
//! into the one canonical form the rules are matched against, and checking that a rule
//! names a valid host. Everything here is pure string and address work.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

/// Longest host name DNS can carry (RFC 1035 §2.3.4: 255 octets on the wire, 253 as text).
pub const MAX_HOST_NAME_LEN: usize = 253;
/// Longest single label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// A request host in canonical form: an address, or a lower-case name without
/// trailing dots or port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host<'a> {
    Ip(IpAddr),
    Name(Cow<'a, str>),
}

/// Canonical form of a host as a client spelled it: ASCII case folded, `:port`,
/// IPv6 brackets and trailing dots dropped, IPv4-mapped IPv6 turned into IPv4.
/// Allocates only when the name has upper-case letters.
pub fn normalise(host: &str) -> Host<'_> {
    let bare = strip_port(host.trim());
    // A resolver treats `example.com.` and `example.com` alike (RFC 1034 §3.1), so the
    // rules must too; several dots are stripped so no spelling slips between the two.
    let bytes = bare.as_bytes();
    let mut end = bytes.len();
    while end > 0 && bytes[end - 1] == b'.' {
        end -= 1;
    }
    // One pass says whether it could be an address literal and whether it needs folding.
    let (mut address_chars, mut upper) = (true, false);
    for &b in &bytes[..end] {
        address_chars &= b.is_ascii_hexdigit() || b == b'.' || b == b':';
        upper |= b.is_ascii_uppercase();
    }
    if address_chars
        && end == bytes.len()
        && let Ok(ip) = bare.parse::<IpAddr>()
    {
        return Host::Ip(canonical_ip(ip));
    }
    let name = &bare[..end];
    if upper {
        Host::Name(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Host::Name(Cow::Borrowed(name))
    }
}

/// `[v6]:port` → `v6`, `[v6]` → `v6`, `name:port` → `name`; a bare IPv6 address
/// (several colons, no brackets) is left whole.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => &rest[..end],
            None => rest,
        };
    }
    match host.rfind(':') {
        Some(i) if host[..i].find(':').is_none() => &host[..i],
        _ => host,
    }
}

/// The address a connection to `ip` really reaches: an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) is the IPv4 address, so it must meet the
/// IPv4 rules.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The IPv4 address a NAT64 address of the well-known prefix `64:ff9b::/96` embeds
/// (RFC 6052 §2.1, §2.2 for a /96 prefix: the last 32 bits). A connection to it reaches
/// that IPv4 address through the translator, so it must meet the rules for that address
/// too. The local-use prefix `64:ff9b:1::/48` (RFC 8215) is left out: where it embeds
/// the address depends on each network's prefix length.
pub fn nat64_embedded(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    let [a, b, rest @ ..] = v6.segments();
    let [0, 0, 0, 0, high, low] = rest else {
        return None;
    };
    ((a, b) == (0x64, 0xff9b)).then(|| Ipv4Addr::from(u32::from(high) << 16 | u32::from(low)))
}

/// Why `name` cannot be a host name in a rule, or `None` if it can. `name` is
/// already lower-case without trailing dot. Labels are letters, digits, `-` and `_`
/// (underscores occur in real blocklists, e.g. `_dmarc`-style and CDN names).
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty host name".into());
    }
    if name.len() > MAX_HOST_NAME_LEN {
        return Some(format!(
            "host name longer than {MAX_HOST_NAME_LEN} characters"
        ));
    }
    if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        return Some(match c {
            '*' => "'*' is only allowed as a leading '*.' label".into(),
            c if !c.is_ascii() => {
                format!("non-ASCII character {c:?}; write the name in punycode (xn--…)")
            }
            c => format!("invalid character {c:?} in host name"),
        });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("empty label (two dots in a row or a leading dot)".into());
        }
        if label.len() > MAX_LABEL_LEN {
            return Some(format!("label longer than {MAX_LABEL_LEN} characters"));
        }
    }
    None
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Host<'_> {
        Host::Name(Cow::Borrowed(s))
    }

    #[test]
    fn names_fold_case_and_drop_port_and_trailing_dots() {
        assert_eq!(normalise("Example.COM"), name("example.com"));
        assert_eq!(normalise("example.com."), name("example.com"));
        assert_eq!(normalise("example.com..:8080"), name("example.com"));
        assert_eq!(normalise("EXAMPLE.com.:443"), name("example.com"));
        assert_eq!(normalise(" example.com "), name("example.com"));
    }

    #[test]
    fn lower_case_names_are_not_copied() {
        assert!(matches!(
            normalise("a.example"),
            Host::Name(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn addresses_in_every_spelling() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(normalise("127.0.0.1"), Host::Ip(v4));
        assert_eq!(normalise("127.0.0.1:80"), Host::Ip(v4));
        assert_eq!(normalise("[::ffff:127.0.0.1]"), Host::Ip(v4));
        assert_eq!(normalise("[::ffff:127.0.0.1]:443"), Host::Ip(v4));
        assert_eq!(normalise("::ffff:7f00:1"), Host::Ip(v4));
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(normalise("fd00::1"), Host::Ip(v6));
        assert_eq!(normalise("[FD00::1]:8443"), Host::Ip(v6));
    }

    #[test]
    fn nat64_addresses_embed_their_ipv4_address() {
        let embedded = |s: &str| nat64_embedded(s.parse().unwrap());
        assert_eq!(embedded("64:ff9b::7f00:1"), Some([127, 0, 0, 1].into()));
        assert_eq!(
            embedded("64:ff9b::169.254.169.254"),
            Some([169, 254, 169, 254].into())
        );
        assert_eq!(embedded("64:ff9b::"), Some([0, 0, 0, 0].into()));
        for other in [
            "64:ff9b:1::7f00:1",
            "64:ff9b::1:0:7f00:1",
            "::1",
            "127.0.0.1",
        ] {
            assert_eq!(embedded(other), None, "{other}");
        }
    }

    #[test]
    fn rule_name_checks() {
        assert_eq!(name_problem("ads.example.com"), None);
        assert_eq!(name_problem("_x.cdn-1.example"), None);
        assert!(name_problem("").is_some());
        assert!(name_problem("a..b").unwrap().contains("empty label"));
        assert!(name_problem("a b").unwrap().contains("invalid character"));
        assert!(name_problem("a.*.b").unwrap().contains("'*'"));
        assert!(name_problem("bücher.de").unwrap().contains("punycode"));
        assert!(
            name_problem(&"a".repeat(64))
                .unwrap()
                .contains("label longer")
        );
        let long = ["abc"; 64].join(".");
        assert!(name_problem(&long).unwrap().contains("longer than 253"));
    }
}
