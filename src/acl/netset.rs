//! A frozen set of IPv4 and IPv6 networks answering "is this address inside any of
//! them, and which?" with one binary search. Networks are flattened into sorted,
//! non-overlapping address ranges, each labelled with the most specific network that
//! covers it (CIDR networks nest or are disjoint, so one label per range suffices), so
//! 10,000 CIDR rules cost about 15 comparisons per lookup and overlapping rules
//! (`10.0.0.0/8` and `10.1.0.0/16`) cost nothing extra. Each network carries the `u32`
//! its owner names it by (a blacklist's line), kept beside it, not in the ranges.

use std::net::IpAddr;

use ipnet::IpNet;

use super::host::canonical_ip;

/// Inclusive address ranges, sorted by start, none overlapping, and beside each the
/// index of the network that covers it; ranges that touch are merged when the same
/// network covers both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RangeTable<T> {
    ranges: Vec<(T, T)>,
    labels: Vec<u32>,
}

impl<T: Copy + Ord + Successor> RangeTable<T> {
    /// `nets` as `(first, last, label)`; nested or disjoint, as CIDR networks are.
    fn build(mut nets: Vec<(T, T, u32)>) -> Self {
        // Outer networks before the ones they hold; of two equal ones, the first listed.
        nets.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        let mut table = RangeTable {
            ranges: Vec::with_capacity(nets.len()),
            labels: Vec::with_capacity(nets.len()),
        };
        // The networks that hold the current address, innermost last, and the first
        // address not yet given to a range (`None`: past the top of the space).
        let mut open: Vec<(T, T, u32)> = Vec::new();
        let mut next = None::<T>;
        for (start, end, label) in nets {
            while let Some(&(_, open_end, open_label)) = open.last() {
                if open_end >= start {
                    break;
                }
                table.cover(&mut next, open_end, open_label);
                open.pop();
            }
            if let Some(&(open_start, open_end, open_label)) = open.last() {
                if (open_start, open_end) == (start, end) {
                    continue; // listed twice: the first one names it
                }
                if let Some(from) = next.filter(|&from| from < start) {
                    // The outer network's part before this one (`start` is above
                    // `from`, so it has a predecessor).
                    table.push(from, start.predecessor(), open_label);
                }
            }
            next = Some(start);
            open.push((start, end, label));
        }
        while let Some((_, open_end, open_label)) = open.pop() {
            table.cover(&mut next, open_end, open_label);
        }
        table.ranges.shrink_to_fit();
        table.labels.shrink_to_fit();
        table
    }

    /// Gives `[next, end]` to `label` (nothing when `next` is past it) and moves `next`
    /// past `end`.
    fn cover(&mut self, next: &mut Option<T>, end: T, label: u32) {
        if let Some(from) = *next
            && from <= end
        {
            self.push(from, end, label);
        }
        *next = end.successor();
    }

    fn push(&mut self, start: T, end: T, label: u32) {
        if let (Some(last), Some(&last_label)) = (self.ranges.last_mut(), self.labels.last())
            && last_label == label
            && last.1.successor() == Some(start)
        {
            last.1 = end;
            return;
        }
        self.ranges.push((start, end));
        self.labels.push(label);
    }

    /// Whether a range holds `addr`: the hot path, a miss for most requests, which
    /// never reads the labels.
    fn contains(&self, addr: T) -> bool {
        let after = self.ranges.partition_point(|&(start, _)| start <= addr);
        after > 0 && self.ranges[after - 1].1 >= addr
    }

    /// The label of the range holding `addr`.
    fn find(&self, addr: T) -> Option<u32> {
        let after = self.ranges.partition_point(|&(start, _)| start <= addr);
        (after > 0 && self.ranges[after - 1].1 >= addr).then(|| self.labels[after - 1])
    }
}

/// `n + 1`, or `None` at the top of the address space; and `n - 1`, for `n` above the
/// bottom.
trait Successor: Sized {
    fn successor(self) -> Option<Self>;
    fn predecessor(self) -> Self;
}

impl Successor for u32 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn predecessor(self) -> Self {
        self.saturating_sub(1)
    }
}

impl Successor for u128 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn predecessor(self) -> Self {
        self.saturating_sub(1)
    }
}

/// The frozen network set. Build it once with [`NetSet::build`]; lookups never allocate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSet {
    v4: RangeTable<u32>,
    v6: RangeTable<u128>,
    /// Every network as given, with its owner's name for it; the ranges' labels index it.
    nets: Box<[(IpNet, u32)]>,
}

impl NetSet {
    /// The networks, each named 0.
    pub fn build(nets: &[IpNet]) -> NetSet {
        NetSet::build_named(nets.iter().map(|&net| (net, 0)).collect())
    }

    /// The networks, each with the `u32` [`NetSet::find`] hands back for it.
    pub fn build_named(nets: Vec<(IpNet, u32)>) -> NetSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (index, (net, _)) in nets.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()), index)),
                IpNet::V6(n) => {
                    v6.push((u128::from(n.network()), u128::from(n.broadcast()), index));
                }
            }
        }
        NetSet {
            v4: RangeTable::build(v4),
            v6: RangeTable::build(v6),
            nets: nets.into_boxed_slice(),
        }
    }

    /// Whether `ip` (IPv4-mapped IPv6 counted as IPv4) lies in any network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical_ip(ip) {
            IpAddr::V4(v4) => self.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.contains(u128::from(v6)),
        }
    }

    /// The most specific network holding `ip` (IPv4-mapped IPv6 counted as IPv4), with
    /// its name.
    pub fn find(&self, ip: IpAddr) -> Option<(IpNet, u32)> {
        let label = match canonical_ip(ip) {
            IpAddr::V4(v4) => self.v4.find(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.find(u128::from(v6)),
        }?;
        self.nets.get(label as usize).copied()
    }

    /// How many rules went in (before merging).
    pub fn rule_count(&self) -> usize {
        self.nets.len()
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
        assert!(has(&s, "11.200.0.1"));
        assert!(!has(&s, "12.0.0.0"));
        assert!(!has(&s, "9.255.255.255"));
        let all = set(&["0.0.0.0/0", "255.255.255.255/32", "::/0"]);
        assert!(has(&all, "255.255.255.255"));
        assert!(has(&all, "0.0.0.0"));
        assert!(has(&all, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(all.rule_count(), 3);
    }

    fn named(nets: &[(&str, u32)]) -> NetSet {
        NetSet::build_named(
            nets.iter()
                .map(|&(n, id)| (n.parse().unwrap(), id))
                .collect(),
        )
    }

    fn found(set: &NetSet, ip: &str) -> Option<(String, u32)> {
        set.find(ip.parse().unwrap())
            .map(|(net, id)| (net.to_string(), id))
    }

    #[test]
    fn the_most_specific_network_names_the_address() {
        let s = named(&[
            ("10.0.0.0/8", 1),
            ("10.1.0.0/16", 2),
            ("10.1.2.0/24", 3),
            ("10.200.0.0/16", 4),
            ("11.0.0.0/8", 5),
            ("10.0.0.0/8", 6),
        ]);
        let at = |ip| found(&s, ip).map(|(_, id)| id);
        assert_eq!(at("10.0.0.0"), Some(1), "the first of two equal entries");
        assert_eq!(at("10.0.255.255"), Some(1));
        assert_eq!(at("10.1.0.0"), Some(2));
        assert_eq!(at("10.1.1.255"), Some(2));
        assert_eq!(at("10.1.2.7"), Some(3));
        assert_eq!(at("10.1.3.0"), Some(2), "back in the /16 after the /24");
        assert_eq!(at("10.2.0.0"), Some(1), "back in the /8 after the /16");
        assert_eq!(at("10.200.9.9"), Some(4));
        assert_eq!(at("10.255.255.255"), Some(1));
        assert_eq!(at("11.0.0.0"), Some(5), "touching, another entry");
        assert_eq!(at("12.0.0.0"), None);
        assert_eq!(found(&s, "10.1.2.7").unwrap().0, "10.1.2.0/24");
        assert_eq!(s.v4.ranges.len(), 8);
        let top = named(&[
            ("0.0.0.0/0", 1),
            ("255.255.255.0/24", 2),
            ("::/0", 3),
            ("::1/128", 4),
        ]);
        assert_eq!(found(&top, "255.255.255.255").map(|f| f.1), Some(2));
        assert_eq!(found(&top, "255.255.254.255").map(|f| f.1), Some(1));
        assert_eq!(found(&top, "::1").map(|f| f.1), Some(4));
        assert_eq!(found(&top, "::2").map(|f| f.1), Some(3));
        assert_eq!(found(&top, "::").map(|f| f.1), Some(3));
        assert_eq!(
            found(&top, "::ffff:1.2.3.4").map(|f| f.1),
            Some(1),
            "mapped is IPv4"
        );
    }

    /// Random networks against a plain scan: the same answer for every address tried.
    #[test]
    fn lookups_agree_with_a_scan() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let nets: Vec<(IpNet, u32)> = (0..300)
            .map(|i| {
                let addr = std::net::Ipv4Addr::from((next() as u32) & 0x0f0f_ffff);
                let len = 4 + (next() % 25) as u8;
                (IpNet::new(addr.into(), len).unwrap().trunc(), i)
            })
            .collect();
        let set = NetSet::build_named(nets.clone());
        for _ in 0..20_000 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from((next() as u32) & 0x0f0f_ffff));
            let scan = nets
                .iter()
                .filter(|(net, _)| net.contains(&ip))
                .max_by_key(|(net, id)| (net.prefix_len(), std::cmp::Reverse(*id)))
                .copied();
            assert_eq!(set.find(ip), scan, "{ip}");
        }
    }

    #[test]
    fn empty_set_matches_nothing() {
        let s = NetSet::default();
        assert!(!has(&s, "0.0.0.0"));
        assert!(!has(&s, "::"));
    }
}
