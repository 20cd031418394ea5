//! The name tables behind the destination lists: a hash map from a host name or a
//! wildcard's domain to a value (nothing for one list, a mask of rules in the rule
//! book's index). Two things keep a lookup cheap with large lists:
//! - foldhash, seeded at random per table, instead of SipHash: the keys are the
//!   operator's and fixed, clients only query, and a query costs a third of SipHash's;
//! - the table remembers at which depths (label counts) its keys lie, so the suffixes of
//!   `a.b.c.ads.net` are tried only at those depths: one lookup, not four, against a list
//!   whose wildcards are all two labels deep.

use std::collections::HashMap;

use foldhash::fast::RandomState;

/// Depths past this share the last bit (always tried).
const DEEPEST: usize = 63;

#[derive(Debug, Clone, Default)]
pub struct NameTable<V> {
    map: HashMap<Box<str>, V, RandomState>,
    /// Bit `n`: some key has `n` labels.
    depths: u64,
}

impl<V: Default> NameTable<V> {
    /// The value for `key`, made (as `V::default()`) when missing.
    pub fn entry(&mut self, key: &str) -> &mut V {
        self.depths |= depth_bit(labels(key));
        self.map.entry(key.into()).or_default()
    }
}

impl<V> NameTable<V> {
    pub fn get(&self, name: &str) -> Option<&V> {
        self.map.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(AsRef::as_ref)
    }

    /// Every key with its value, to change the values in place.
    pub fn for_each_mut(&mut self, mut change: impl FnMut(&str, &mut V)) {
        for (key, value) in &mut self.map {
            change(key, value);
        }
    }

    pub fn shrink_to_fit(&mut self) {
        self.map.shrink_to_fit();
    }

    /// The name's proper suffixes that are keys, with their values, shortest first: for
    /// `a.b.ads.com`, `com`, `ads.com`, `b.ads.com` — each tried only when some key has
    /// that many labels, and none past the deepest key. The name is read from its end,
    /// once.
    pub fn suffixes<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, &'a V)> + 'a {
        let mut end = name.len();
        let mut depth = 0;
        std::iter::from_fn(move || {
            while self.depths & deeper_than(depth) != 0 {
                let dot = name.as_bytes()[..end].iter().rposition(|&b| b == b'.')?;
                end = dot;
                depth += 1;
                let suffix = &name[dot + 1..];
                if self.depths & depth_bit(depth) != 0
                    && let Some(value) = self.map.get(suffix)
                {
                    return Some((suffix, value));
                }
            }
            None
        })
    }
}

fn labels(name: &str) -> usize {
    name.bytes().filter(|&b| b == b'.').count() + 1
}

fn depth_bit(labels: usize) -> u64 {
    1 << labels.min(DEEPEST)
}

/// The depth bits of keys with more than `labels` labels.
fn deeper_than(labels: usize) -> u64 {
    if labels >= DEEPEST {
        depth_bit(DEEPEST)
    } else {
        !0 << (labels + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(keys: &[&str]) -> NameTable<u32> {
        let mut table = NameTable::default();
        for (i, key) in keys.iter().enumerate() {
            *table.entry(key) = i as u32;
        }
        table
    }

    #[test]
    fn suffixes_are_found_at_every_listed_depth_shortest_first() {
        let table = table(&["ads.com", "b.ads.com", "net", "x.y.z.w.v"]);
        let found: Vec<(&str, u32)> = table
            .suffixes("a.b.ads.com")
            .map(|(key, &value)| (key, value))
            .collect();
        assert_eq!(found, vec![("ads.com", 0), ("b.ads.com", 1)]);
        assert_eq!(
            table.suffixes("ads.com").count(),
            0,
            "the name itself is no suffix"
        );
        assert_eq!(table.suffixes("notads.com").count(), 0);
        assert_eq!(
            table
                .suffixes("deep.a.b.c.d.net")
                .map(|(_, &value)| value)
                .collect::<Vec<_>>(),
            [2]
        );
        assert_eq!(
            table
                .suffixes("q.x.y.z.w.v")
                .map(|(_, &value)| value)
                .collect::<Vec<_>>(),
            [3]
        );
        assert_eq!(table.suffixes("localhost").count(), 0);
    }

    #[test]
    fn very_deep_keys_share_the_last_depth_and_are_still_found() {
        let deep = (0..70)
            .map(|i| format!("l{i}"))
            .collect::<Vec<_>>()
            .join(".");
        let table = table(&[&deep]);
        let name = format!("host.{deep}");
        assert_eq!(table.suffixes(&name).count(), 1);
        assert!(table.contains(&deep));
    }
}
