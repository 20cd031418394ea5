//! One index over the destination names of every rule, so a request's host is looked up
//! once — one hash lookup per label, as with the blacklist — however many rules list
//! names. Each name maps to a bit set of the rules that list it; a rule's name condition
//! is then one bit test. Up to 64 rules fit one `u64`; a longer rule list falls back to
//! asking each rule's own lookup structure (still independent of the lists' sizes).

use std::collections::HashMap;

use super::Rule;

/// How many rules the index covers (the bits of its masks).
const MAX_INDEXED_RULES: usize = 64;

#[derive(Debug, Default)]
pub struct NameIndex {
    /// `None`: too many rules; each rule is asked itself.
    maps: Option<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    exact: HashMap<Box<str>, u64>,
    /// `*.ads.example` is stored as `ads.example`.
    wildcard: HashMap<Box<str>, u64>,
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
                *maps.exact.entry(name.into()).or_default() |= bit;
            }
            for domain in wildcard {
                *maps.wildcard.entry(domain.into()).or_default() |= bit;
            }
        }
        maps.exact.shrink_to_fit();
        maps.wildcard.shrink_to_fit();
        NameIndex { maps: Some(maps) }
    }

    /// The rules that list a canonical host name, exactly or under a wildcard (bit `i`:
    /// rule `i`, counted from 0); `None` when the index does not cover the rule list.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        let maps = self.maps.as_ref()?;
        let mut listed = maps.exact.get(name).copied().unwrap_or(0);
        if maps.wildcard.is_empty() {
            return Some(listed);
        }
        let mut rest = name;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            listed |= maps.wildcard.get(rest).copied().unwrap_or(0);
        }
        Some(listed)
    }
}
