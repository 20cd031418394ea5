//! The half of a rule evaluation that waits for DNS: an [`AddressCheck`] is where the
//! walk stopped (a rule whose destination networks a name can meet only through its
//! addresses), the rule book version the request started with, the request's facts, and
//! which of the remaining rules list the destination by name — worked out before DNS
//! from the same lookups, so settling needs neither the name nor another lookup, only
//! the addresses.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::hours::WeekTime;
use super::{Asked, Rule, RuleBook, Verdict};
use crate::acl::host::canonical_ip;

/// The rest of an evaluation, owned, for the dialer to settle.
#[derive(Debug, Clone)]
pub struct AddressCheck {
    book: Arc<RuleBook>,
    from: usize,
    could_authenticate: bool,
    /// The rules from `from` on that list the destination's name.
    listed: RuleSet,
    user: Option<Box<str>>,
    client: IpAddr,
    port: u16,
    method: Cow<'static, str>,
    now: Option<WeekTime>,
}

impl PartialEq for AddressCheck {
    /// The same rest of the same evaluation: one version of the rules, one request.
    fn eq(&self, other: &AddressCheck) -> bool {
        Arc::ptr_eq(&self.book, &other.book)
            && (self.from, self.could_authenticate, &self.listed)
                == (other.from, other.could_authenticate, &other.listed)
            && (&self.user, self.client, self.port, &self.method, self.now)
                == (
                    &other.user,
                    other.client,
                    other.port,
                    &other.method,
                    other.now,
                )
    }
}

/// Rule numbers (from 0) as bits; allocates only past 64 rules.
#[derive(Debug, Clone, Default, PartialEq)]
struct RuleSet {
    first: u64,
    more: Vec<u64>,
}

impl RuleSet {
    fn insert(&mut self, index: usize) {
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

    fn contains(&self, index: usize) -> bool {
        match index.checked_sub(64) {
            None => self.first & (1 << index) != 0,
            Some(past) => self
                .more
                .get(past / 64)
                .is_some_and(|word| word & (1 << (past % 64)) != 0),
        }
    }
}

/// The methods of RFC 9110 §9 and RFC 5789, kept without a copy.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Addresses a check is usually settled with at most this many of; more go to the heap.
const INLINE_ADDRS: usize = 8;

impl AddressCheck {
    /// The walk of `book` stopped at rule `from` for the request `asked`; `listed` says
    /// whether a rule lists its destination by name.
    pub(super) fn new(
        book: Arc<RuleBook>,
        from: usize,
        could_authenticate: bool,
        asked: &Asked<'_>,
        listed: impl Fn(usize, &Rule) -> bool,
    ) -> AddressCheck {
        // Only rules that the addresses could still let match need the answer: the
        // other conditions do not change between now and settling.
        let mut names = RuleSet::default();
        for (index, rule) in book.rules.iter().enumerate().skip(from) {
            if rule.dest.is_some()
                && rule.first_miss_before_dest(asked).is_none()
                && listed(index, rule)
            {
                names.insert(index);
            }
        }
        AddressCheck {
            from,
            could_authenticate,
            listed: names,
            user: asked.user.map(Box::from),
            client: asked.client,
            port: asked.port,
            method: owned_method(asked.method),
            now: asked.now,
            book,
        }
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
        let asked = Asked {
            user: self.user.as_deref(),
            client: self.client,
            port: self.port,
            method: &self.method,
            now: self.now,
        };
        let listed = |index: usize, _: &Rule| self.listed.contains(index);
        match self.book.walk(
            self.from,
            &asked,
            Some(ips),
            &listed,
            self.could_authenticate,
        ) {
            Ok(verdict) => verdict,
            Err(_) => self.book.default_verdict(self.could_authenticate),
        }
    }
}

/// A method to keep past the request: a standard one without allocating.
fn owned_method(method: &str) -> Cow<'static, str> {
    match STANDARD_METHODS.iter().find(|m| **m == method) {
        Some(standard) => Cow::Borrowed(standard),
        None => Cow::Owned(method.to_owned()),
    }
}
