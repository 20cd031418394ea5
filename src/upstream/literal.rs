//! Address literals in host names: the standard IPv4 and IPv6 forms, and the legacy IPv4
//! spellings getaddrinfo (inet_aton) accepted before the resolver replaced it, so that
//! none of them becomes a name sent to DNS and the access rules see the address.

use std::net::IpAddr;

/// An address literal, in the spellings getaddrinfo (inet_aton) accepted before this
/// resolver replaced it, so that none of them becomes a name sent to DNS: besides the
/// standard forms, IPv4 with one to four parts, each decimal, `0x` hexadecimal or
/// `0`-prefixed octal, the last filling the remaining bytes (`127.1`, `0x7f000001`,
/// `2130706433`, `0177.0.0.1`).
pub fn literal(name: &str) -> Option<IpAddr> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<u32> = name.split('.').map(number).collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|&part| part > 0xff) {
        return None;
    }
    let room = 8 * (4 - leading.len() as u32);
    if room < 32 && *last >> room != 0 {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, &part)| acc | part << (24 - 8 * i as u32));
    Some(IpAddr::V4((high | last).into()))
}

/// One part of a legacy IPv4 literal: decimal, `0x` hex or `0`-prefixed octal.
fn number(part: &str) -> Option<u32> {
    let (digits, radix) = match part.as_bytes() {
        [b'0', b'x' | b'X', ..] => (&part[2..], 16),
        [b'0', _, ..] => (&part[1..], 8),
        _ => (part, 10),
    };
    if digits.is_empty() && radix == 16 {
        return Some(0);
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_ipv4_spellings_are_literals() {
        for spelling in [
            "127.1",
            "2130706433",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "127.000.000.001",
            "127.0.1",
            "0x7f.1",
            "0x7f000001",
            "017700000001",
        ] {
            assert_eq!(literal(spelling), Some([127, 0, 0, 1].into()), "{spelling}");
        }
        for name in [
            "example.com",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "08.1",
            "1..2",
        ] {
            assert_eq!(literal(name), None, "{name}");
        }
        assert_eq!(literal("::1"), Some("::1".parse().unwrap()));
    }
}
