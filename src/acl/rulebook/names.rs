//! One index over the destination names of every rule, so a request's host is looked up
//! once however many rules list names — and no more than the blacklist looks it up:
//! the exact name first, the wildcard suffixes (one hash lookup per label) only when a
//! rule that lists wildcards is asked about and the exact name did not answer it. Each
//! name maps to a bit set of the rules that list it; a rule's name condition is then
//! one bit test. Only rules with long lists are indexed: a rule with a few names (the
//! sample policy's `*.github.com`) is asked itself, since its own small table stays in
//! the processor's cache where the shared one would not. Up to 64 rules fit one `u64`; a
//! longer rule list falls back to asking each rule's own lookup structure (still
//! independent of the lists' sizes).

use std::cell::Cell;

use super::Rule;
use crate::acl::domains::NameTable;

/// How many rules the index covers (the bits of its masks).
const MAX_INDEXED_RULES: usize = 64;
/// A rule with at most this many names and wildcards keeps them to itself.
const SMALL_LIST: usize = 64;

#[derive(Debug, Default)]
pub struct NameIndex {
    /// `None`: too many rules; each rule is asked itself.
    maps: Option<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    exact: NameTable<u64>,
    /// `*.ads.example` is stored as `ads.example`.
    wildcard: NameTable<u64>,
    /// The rules whose names are in the index; the others are asked themselves.
    indexed: u64,
    /// The indexed rules that list any exact name, and any wildcard: a rule outside
    /// both is answered without a lookup.
    exact_rules: u64,
    wildcard_rules: u64,
}

/// The index asked about one host name, each map at most once, and only when a rule
/// needs it.
pub struct Lookup<'a> {
    maps: &'a Maps,
    name: &'a str,
    exact: Cell<Option<u64>>,
    wildcard: Cell<Option<u64>>,
}

impl NameIndex {
    pub fn build(rules: &[Rule]) -> NameIndex {
        if rules.len() > MAX_INDEXED_RULES {
            return NameIndex { maps: None };
        }
        let mut maps = Maps::default();
        for (index, rule) in rules.iter().enumerate() {
            let Some(dest) = &rule.dest else {
                continue;
            };
            let bit = 1u64 << index;
            let (exact_count, wildcard_count, _) = dest.counts();
            if exact_count + wildcard_count <= SMALL_LIST {
                continue;
            }
            let (exact, wildcard) = dest.names();
            maps.indexed |= bit;
            for name in exact {
                *maps.exact.entry(name) |= bit;
                maps.exact_rules |= bit;
            }
            for domain in wildcard {
                *maps.wildcard.entry(domain) |= bit;
                maps.wildcard_rules |= bit;
            }
        }
        maps.exact.shrink_to_fit();
        maps.wildcard.shrink_to_fit();
        NameIndex { maps: Some(maps) }
    }

    /// The lookup for a canonical host name; `None` when the index does not cover the
    /// rule list.
    pub fn lookup<'a>(&'a self, name: &'a str) -> Option<Lookup<'a>> {
        Some(Lookup {
            maps: self.maps.as_ref()?,
            name,
            exact: Cell::new(None),
            wildcard: Cell::new(None),
        })
    }
}

impl Lookup<'_> {
    /// Whether `rule`, number `index` counted from 0, lists the name, exactly or under
    /// a wildcard.
    pub fn lists(&self, index: usize, rule: &Rule) -> bool {
        let bit = 1u64 << index;
        let maps = self.maps;
        if maps.indexed & bit == 0 {
            return rule.dest.as_ref().is_some_and(|d| d.blocks_name(self.name));
        }
        if maps.exact_rules & bit != 0 && self.exact() & bit != 0 {
            return true;
        }
        maps.wildcard_rules & bit != 0 && self.wildcard() & bit != 0
    }

    fn exact(&self) -> u64 {
        let maps = self.maps;
        let name = self.name;
        once(&self.exact, || maps.exact.get(name).copied().unwrap_or(0))
    }

    /// The rules with a wildcard over a proper suffix of the name: `*.ads.com` covers
    /// `x.ads.com` and `a.b.ads.com`, not `ads.com`.
    fn wildcard(&self) -> u64 {
        let (maps, name) = (self.maps, self.name);
        once(&self.wildcard, || {
            maps.wildcard.suffixes(name).fold(0, |all, &m| all | m)
        })
    }
}

fn once(cell: &Cell<Option<u64>>, find: impl FnOnce() -> u64) -> u64 {
    if let Some(mask) = cell.get() {
        return mask;
    }
    let mask = find();
    cell.set(Some(mask));
    mask
}
