//! The half of a rule evaluation that waits for DNS. Before DNS the walk goes through
//! every rule it can decide without the addresses, noting the rules whose match waits
//! for them (destination networks a name can meet only through what it resolves to)
//! and what decides if none of those match. An [`AddressCheck`] is that note and the
//! rule book version the request started with: settling needs neither the name nor the
//! request's other facts, nor another lookup — only the addresses, tested against the
//! waiting rules' networks in order.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::{RuleBook, Verdict};
use crate::acl::host::canonical_ip;

/// The rest of an evaluation, owned, for the dialer to settle.
#[derive(Debug, Clone)]
pub struct AddressCheck {
    book: Arc<RuleBook>,
    walk: Walk,
}

impl PartialEq for AddressCheck {
    /// The same rest of the same evaluation: one version of the rules, one request.
    fn eq(&self, other: &AddressCheck) -> bool {
        Arc::ptr_eq(&self.book, &other.book) && self.walk == other.walk
    }
}

/// How a walk through the rules ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Walk {
    /// The rules, before `decided`, whose match depends on the addresses.
    pub waiting: RuleSet,
    /// The first rule that matched without the addresses; `None`: the default decides.
    pub decided: Option<usize>,
    /// Rules from this index on answer an anonymous request with a login request
    /// rather than a refusal (`usize::MAX`: none do).
    pub authenticates_from: usize,
}

/// Rule numbers (from 0) as bits; allocates only past 64 rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct RuleSet {
    first: u64,
    more: Vec<u64>,
}

impl RuleSet {
    pub fn insert(&mut self, index: usize) {
        match index.checked_sub(64) {
            None => self.first |= 1 << index,
            Some(past) => {
                let word = past / 64;
                if self.more.len() <= word {
                    self.more.resize(word + 1, 0);
                }
                self.more[word] |= 1 << (past % 64);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.first == 0 && self.more.iter().all(|&word| word == 0)
    }

    /// The rule numbers, lowest first.
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.first)
            .chain(self.more.iter().copied())
            .enumerate()
            .flat_map(|(word, bits)| {
                let mut bits = bits;
                std::iter::from_fn(move || {
                    if bits == 0 {
                        return None;
                    }
                    let bit = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    Some(word * 64 + bit)
                })
            })
    }
}

/// Addresses a check is usually settled with at most this many of; more go to the heap.
const INLINE_ADDRS: usize = 8;

impl AddressCheck {
    pub(super) fn new(book: Arc<RuleBook>, walk: Walk) -> AddressCheck {
        AddressCheck { book, walk }
    }

    /// Finishes the evaluation with the addresses the destination resolved to (or the
    /// one address a pooled connection is bound to).
    pub fn settle(&self, addrs: &[SocketAddr]) -> Verdict {
        let mut inline = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); INLINE_ADDRS];
        let heap: Vec<IpAddr>;
        let ips = if addrs.len() <= INLINE_ADDRS {
            for (slot, addr) in inline.iter_mut().zip(addrs) {
                *slot = canonical_ip(addr.ip());
            }
            &inline[..addrs.len()]
        } else {
            heap = addrs.iter().map(|a| canonical_ip(a.ip())).collect();
            &heap[..]
        };
        let book = &self.book;
        match self
            .walk
            .waiting
            .iter()
            .find(|&index| book.rules[index].networks_match(ips))
        {
            Some(index) => book.verdict_of(index, &self.walk),
            None => book.conclude(&self.walk),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RuleSet;

    #[test]
    fn rule_sets_list_their_numbers_in_order_past_64() {
        let mut set = RuleSet::default();
        assert!(set.is_empty());
        for index in [130, 0, 63, 64, 5] {
            set.insert(index);
        }
        assert!(!set.is_empty());
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 5, 63, 64, 130]);
    }
}
