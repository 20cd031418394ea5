//! A frozen set of IPv4 and IPv6 networks answering "is this address inside any of
//! them?" with one binary search. Networks are flattened into sorted, merged,
//! non-overlapping address ranges, so 10,000 CIDR rules cost about 14 comparisons
//! per lookup and overlapping rules (`10.0.0.0/8` and `10.1.0.0/16`) cost nothing extra.

use std::net::IpAddr;

use ipnet::IpNet;

use super::host::canonical_ip;

/// Inclusive address ranges, sorted by start, merged so no two touch or overlap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RangeTable<T> {
    ranges: Vec<(T, T)>,
}

impl<T: Copy + Ord + Successor> RangeTable<T> {
    fn build(mut ranges: Vec<(T, T)>) -> Self {
        ranges.sort_unstable();
        let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                // Touching ranges merge too: `last.1 + 1 == start` means no gap.
                Some(last) if last.1.successor().is_none_or(|next| next >= start) => {
                    last.1 = last.1.max(end);
                }
                _ => merged.push((start, end)),
            }
        }
        merged.shrink_to_fit();
        RangeTable { ranges: merged }
    }

    fn contains(&self, addr: T) -> bool {
        let after = self.ranges.partition_point(|&(start, _)| start <= addr);
        after > 0 && self.ranges[after - 1].1 >= addr
    }
}

/// `n + 1`, or `None` at the top of the address space.
trait Successor: Sized {
    fn successor(self) -> Option<Self>;
}

impl Successor for u32 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl Successor for u128 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// The frozen network set. Build it once with [`NetSet::build`]; lookups never allocate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSet {
    v4: RangeTable<u32>,
    v6: RangeTable<u128>,
    rules: usize,
}

impl NetSet {
    pub fn build(nets: &[IpNet]) -> NetSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        NetSet {
            v4: RangeTable::build(v4),
            v6: RangeTable::build(v6),
            rules: nets.len(),
        }
    }

    /// Whether `ip` (IPv4-mapped IPv6 counted as IPv4) lies in any network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical_ip(ip) {
            IpAddr::V4(v4) => self.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.contains(u128::from(v6)),
        }
    }

    /// How many rules went in (before merging).
    pub fn rule_count(&self) -> usize {
        self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> NetSet {
        let nets: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        NetSet::build(&nets)
    }

    fn has(set: &NetSet, ip: &str) -> bool {
        set.contains(ip.parse().unwrap())
    }

    #[test]
    fn ipv4_edges() {
        let s = set(&["10.0.0.0/8", "192.168.1.7/32"]);
        assert!(has(&s, "10.0.0.0"));
        assert!(has(&s, "10.255.255.255"));
        assert!(!has(&s, "9.255.255.255"));
        assert!(!has(&s, "11.0.0.0"));
        assert!(has(&s, "192.168.1.7"));
        assert!(!has(&s, "192.168.1.6"));
        assert!(!has(&s, "192.168.1.8"));
        assert!(!has(&s, "fd00::1"));
    }

    #[test]
    fn ipv6_and_mapped() {
        let s = set(&["fd00::/8", "127.0.0.0/8", "2001:db8::1/128"]);
        assert!(has(&s, "fd12:3456::1"));
        assert!(!has(&s, "fe00::1"));
        assert!(has(&s, "2001:db8::1"));
        assert!(!has(&s, "2001:db8::2"));
        assert!(has(&s, "::ffff:127.0.0.1"));
        assert!(!has(&s, "::ffff:128.0.0.1"));
    }

    #[test]
    fn overlapping_touching_and_whole_space() {
        let s = set(&["10.1.0.0/16", "10.0.0.0/8", "11.0.0.0/8", "10.2.3.0/24"]);
        assert_eq!(s.v4.ranges.len(), 1, "merged into 10.0.0.0-11.255.255.255");
        assert!(has(&s, "11.200.0.1"));
        assert!(!has(&s, "12.0.0.0"));
        let all = set(&["0.0.0.0/0", "255.255.255.255/32", "::/0"]);
        assert!(has(&all, "255.255.255.255"));
        assert!(has(&all, "0.0.0.0"));
        assert!(has(&all, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(all.rule_count(), 3);
    }

    #[test]
    fn empty_set_matches_nothing() {
        let s = NetSet::default();
        assert!(!has(&s, "0.0.0.0"));
        assert!(!has(&s, "::"));
    }
}
