//! One index over the destination names of every rule, so a request's host costs what
//! it costs the blacklist however many rules list names: one hash lookup for a name
//! listed exactly, and for any other name that lookup plus one per depth at which
//! wildcards lie. Each key maps to the set of rules that list it, one bit a rule, and
//! an exact name's set already holds the rules whose wildcards cover it — so a listed
//! name is answered without looking at its suffixes, and a rule's name condition is one
//! bit test. Up to 64 rules fit one `u64`; a longer rule list falls back to asking each
//! rule's own tables (still independent of the lists' sizes).

use std::cell::Cell;

use super::Rule;
use crate::acl::domains::NameTable;

/// How many rules the index covers (the bits of its masks).
const MAX_INDEXED_RULES: usize = 64;

#[derive(Debug, Default)]
pub struct NameIndex {
    /// `None`: too many rules; each rule is asked itself.
    maps: Option<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    /// With the bits of the wildcards that cover each name folded in.
    exact: NameTable<u64>,
    /// `*.ads.example` is stored as `ads.example`.
    wildcard: NameTable<u64>,
}

/// The index asked about one host name: once, and only when a rule gets as far as its
/// destination.
pub struct Lookup<'a> {
    maps: &'a Maps,
    name: &'a str,
    rules: Cell<Option<u64>>,
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
            let (exact, wildcard) = dest.names();
            for name in exact {
                *maps.exact.entry(name) |= bit;
            }
            for domain in wildcard {
                *maps.wildcard.entry(domain) |= bit;
            }
        }
        let Maps { exact, wildcard } = &mut maps;
        exact.for_each_mut(|name, rules| *rules |= covering(wildcard, name));
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
            rules: Cell::new(None),
        })
    }
}

impl Lookup<'_> {
    /// Whether rule number `index` (from 0) lists the name, exactly or under a
    /// wildcard.
    pub fn lists(&self, index: usize) -> bool {
        self.rules() & (1u64 << index) != 0
    }

    fn rules(&self) -> u64 {
        if let Some(rules) = self.rules.get() {
            return rules;
        }
        let maps = self.maps;
        let rules = match maps.exact.get(self.name) {
            Some(&rules) => rules,
            None => covering(&maps.wildcard, self.name),
        };
        self.rules.set(Some(rules));
        rules
    }
}

/// The rules with a wildcard over a proper suffix of `name`: `*.ads.com` covers
/// `x.ads.com` and `a.b.ads.com`, not `ads.com`.
fn covering(wildcard: &NameTable<u64>, name: &str) -> u64 {
    wildcard
        .suffixes(name)
        .fold(0, |all, (_, &rules)| all | rules)
}
