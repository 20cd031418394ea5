//! `--connect-ports`: which destination ports CONNECT may reach. A tunnelling proxy
//! that allows any port relays SMTP, database and admin protocols (RFC 9110 §9.3.6
//! warns of exactly this), so the default is HTTPS only.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Ports CONNECT may reach when `--connect-ports` is not given.
pub const DEFAULT_CONNECT_PORTS: &str = "443";

/// A set of TCP ports, written `443,8443,1024-65535`: sorted, merged inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSet {
    ranges: Vec<RangeInclusive<u16>>,
}

impl PortSet {
    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(&port))
    }
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet {
            ranges: vec![443..=443],
        }
    }
}

impl FromStr for PortSet {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for element in list.split(',').map(str::trim) {
            if element.is_empty() {
                return Err(format!("empty element in port list {list:?}"));
            }
            let (low, high) = match element.split_once('-') {
                Some((low, high)) => (port(low.trim())?, port(high.trim())?),
                None => (port(element)?, port(element)?),
            };
            if low > high {
                return Err(format!("port range {element:?} runs backwards"));
            }
            ranges.push(low..=high);
        }
        ranges.sort_by_key(|r| *r.start());
        let mut merged: Vec<RangeInclusive<u16>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if u32::from(*last.end()) + 1 >= u32::from(*r.start()) => {
                    *last = *last.start()..=(*last.end()).max(*r.end());
                }
                _ => merged.push(r),
            }
        }
        Ok(PortSet { ranges: merged })
    }
}

fn port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 is not a destination port".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("{text:?} is not a port number (1-65535)")),
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(s: &str) -> PortSet {
        s.parse().unwrap()
    }

    #[test]
    fn default_is_https_only() {
        let d = PortSet::default();
        assert_eq!(d, ports(DEFAULT_CONNECT_PORTS));
        assert!(d.contains(443));
        assert!(!d.contains(25));
        assert!(!d.contains(8443));
    }

    #[test]
    fn lists_and_ranges() {
        let p = ports("443, 8443,1024-65535");
        for yes in [443, 8443, 1024, 5432, 65535] {
            assert!(p.contains(yes), "{yes}");
        }
        for no in [1, 22, 25, 80, 442, 444, 1023] {
            assert!(!p.contains(no), "{no}");
        }
        assert_eq!(p.to_string(), "443,1024-65535");
        assert_eq!(ports("80,81,82-90,443").to_string(), "80-90,443");
    }

    #[test]
    fn clear_errors() {
        let err = |s: &str| s.parse::<PortSet>().unwrap_err();
        assert!(err("").contains("empty element"));
        assert!(err("443,").contains("empty element"));
        assert!(err("https").contains("not a port number"));
        assert!(err("70000").contains("not a port number"));
        assert!(err("0").contains("port 0"));
        assert!(err("900-80").contains("backwards"));
        assert!(err("1-2-3").contains("not a port number"));
    }
}
