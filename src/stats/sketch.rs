//! A heavy-hitters sketch (space-saving, Metwally, Agrawal and El Abbadi, 2005): the keys
//! with the largest weights in a stream, in memory fixed by a capacity.
//!
//! Owns at most `capacity` counters. A key already counted adds its weight; a new key takes
//! a free counter or, when all are taken, the counter of the smallest key, starting from
//! that key's count (and remembering it as its possible overcount). So every estimate is an
//! upper bound, at most the smallest count above the truth, and any key holding more than
//! `1/capacity` of the total weight is always present. That is what a "top destinations"
//! list needs, where a map of every host ever seen would grow without bound.
//!
//! Two sketches merge by adding the other's counters as weights (with their errors), which
//! keeps both properties; shards and time slices combine that way. Why not a count-min
//! sketch: it answers "how much for this key" but cannot list the top keys by itself, and a
//! dashboard asks for the list.
//!
//! The index hashes with foldhash, seeded at random per sketch, not SipHash: the record of
//! every exchange looks keys up here (a fifth of S1's hashing cost went to SipHash; see
//! docs/performance.md, "S1 overhead"). The keys are client-chosen (destinations, user
//! names), but a sketch never holds more than its capacity (tens to hundreds of keys), so
//! even keys that all collide cost a lookup at most a scan of that many; and without the
//! seed, which nothing outside the process sees (lists are served sorted by count and
//! key, never in table order), collisions cannot be crafted in the first place.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use foldhash::fast::RandomState;

/// What else a counter says about its key, beyond the count: the last one seen wins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Detail {
    #[default]
    None,
    /// A stable label, such as a refusal's `brief`.
    Label(&'static str),
    /// The name of the rule that decided.
    Rule(Arc<str>),
    /// An HTTP status code.
    Status(u16),
}

impl Detail {
    /// As text for the JSON and the page; `None` for [`Detail::None`].
    pub fn text(&self) -> Option<String> {
        match self {
            Detail::None => None,
            Detail::Label(label) => Some((*label).to_owned()),
            Detail::Rule(rule) => Some(rule.to_string()),
            Detail::Status(status) => Some(status.to_string()),
        }
    }
}

/// One counter: the estimate is `count`; the true weight lies in `count - error ..= count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted<K> {
    pub key: K,
    pub count: u64,
    pub error: u64,
    pub detail: Detail,
}

/// The space-saving sketch over keys `K`.
#[derive(Debug, Clone)]
pub struct SpaceSaving<K> {
    capacity: usize,
    /// Key to its place in `counters`.
    index: HashMap<K, usize, RandomState>,
    counters: Vec<Counted<K>>,
}

impl<K: Hash + Eq + Clone> SpaceSaving<K> {
    /// An empty sketch of at most `capacity` counters (at least one). Nothing is allocated
    /// until the first key arrives.
    pub fn new(capacity: usize) -> SpaceSaving<K> {
        SpaceSaving {
            capacity: capacity.max(1),
            index: HashMap::default(),
            counters: Vec::new(),
        }
    }

    /// Adds `weight` to `key`, allocating an owned key only when it is not counted yet.
    /// `detail`, unless [`Detail::None`], replaces the key's detail.
    pub fn add<Q>(&mut self, key: &Q, weight: u64, detail: Detail)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.add_counted(key, weight, 0, detail);
    }

    fn add_counted<Q>(&mut self, key: &Q, weight: u64, error: u64, detail: Detail)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(counter) = self
            .index
            .get(key)
            .and_then(|&slot| self.counters.get_mut(slot))
        {
            counter.count = counter.count.saturating_add(weight);
            counter.error = counter.error.saturating_add(error);
            if detail != Detail::None {
                counter.detail = detail;
            }
            return;
        }
        let owned = key.to_owned();
        if self.counters.len() < self.capacity {
            self.index.insert(owned.clone(), self.counters.len());
            self.counters.push(Counted {
                key: owned,
                count: weight,
                error,
                detail,
            });
            return;
        }
        // Full: the smallest counter changes hands, and its count becomes the newcomer's
        // possible overcount. A linear scan: capacities are small (tens to hundreds), and
        // this runs only for keys not already counted.
        let Some((slot, smallest)) = self
            .counters
            .iter()
            .enumerate()
            .min_by_key(|(_, counter)| counter.count)
            .map(|(slot, counter)| (slot, counter.count))
        else {
            return;
        };
        let Some(counter) = self.counters.get_mut(slot) else {
            return;
        };
        let evicted = std::mem::replace(
            counter,
            Counted {
                key: owned.clone(),
                count: smallest.saturating_add(weight),
                error: smallest.saturating_add(error),
                detail,
            },
        );
        self.index.remove::<K>(&evicted.key);
        self.index.insert(owned, slot);
    }

    /// Adds every counter of `other` into this sketch.
    pub fn merge(&mut self, other: &SpaceSaving<K>) {
        for counted in &other.counters {
            self.add_counted(
                &counted.key,
                counted.count,
                counted.error,
                counted.detail.clone(),
            );
        }
    }

    /// The `n` largest counters, largest first; ties in key order, so lists are stable.
    pub fn top(&self, n: usize) -> Vec<&Counted<K>>
    where
        K: Ord,
    {
        let mut sorted: Vec<&Counted<K>> = self.counters.iter().collect();
        sorted.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        sorted.truncate(n);
        sorted
    }

    /// The estimate for `key`, if it holds a counter.
    #[cfg(test)]
    pub fn get<Q>(&self, key: &Q) -> Option<&Counted<K>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.index
            .get(key)
            .and_then(|&slot| self.counters.get(slot))
    }

    /// Counters in use.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.counters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic Zipf-like stream: key `k` (1-based) appears about `N / k` times,
    /// interleaved so heavy keys do not arrive in one block.
    fn skewed_stream(keys: usize, rounds: usize) -> Vec<String> {
        let mut stream = Vec::new();
        for round in 1..=rounds {
            for key in 1..=keys {
                if round % key == 0 {
                    stream.push(format!("host{key}.example"));
                }
            }
        }
        stream
    }

    #[test]
    fn finds_the_heavy_hitters_of_a_skewed_stream_within_the_error_bound() {
        let stream = skewed_stream(2000, 600);
        let mut truth: HashMap<&str, u64> = HashMap::new();
        let mut sketch = SpaceSaving::<String>::new(64);
        for key in &stream {
            *truth.entry(key).or_default() += 1;
            sketch.add(key.as_str(), 1, Detail::None);
        }
        assert!(truth.len() > 500, "many more keys than counters");
        assert_eq!(sketch.len(), 64, "bounded size");
        let total = stream.len() as u64;
        let bound = total / 64;
        // Every estimate is an upper bound within the stated error, and the error is at
        // most total / capacity.
        for counted in sketch.top(64) {
            let actual = truth[counted.key.as_str()];
            assert!(counted.count >= actual, "{counted:?} under {actual}");
            assert!(counted.count - counted.error <= actual, "{counted:?}");
            assert!(counted.error <= bound, "{counted:?} over {bound}");
        }
        // Any key above total / capacity is present, and the top five come out in order.
        let mut heavy: Vec<(&str, u64)> = truth.iter().map(|(k, v)| (*k, *v)).collect();
        heavy.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (key, count) in heavy.iter().filter(|(_, count)| *count > bound) {
            assert!(sketch.get(*key).is_some(), "{key} ({count}) missing");
        }
        let top: Vec<&str> = sketch.top(5).iter().map(|c| c.key.as_str()).collect();
        let expected: Vec<&str> = heavy.iter().take(5).map(|(k, _)| *k).collect();
        assert_eq!(top, expected);
    }

    #[test]
    fn weights_details_and_eviction() {
        let mut sketch = SpaceSaving::<String>::new(2);
        sketch.add("a", 10, Detail::Label("first"));
        sketch.add("b", 3, Detail::None);
        sketch.add("a", 5, Detail::None);
        assert_eq!(sketch.get("a").map(|c| (c.count, c.error)), Some((15, 0)));
        assert_eq!(
            sketch.get("a").map(|c| &c.detail),
            Some(&Detail::Label("first"))
        );
        // "c" takes "b"'s counter: 3 + 4, of which 3 may not be c's.
        sketch.add("c", 4, Detail::Status(502));
        assert!(sketch.get("b").is_none());
        let c = sketch.get("c").cloned();
        assert_eq!(
            c.map(|c| (c.count, c.error, c.detail)),
            Some((7, 3, Detail::Status(502)))
        );
        assert_eq!(sketch.len(), 2);
    }

    #[test]
    fn merging_adds_counts_and_keeps_the_bound() {
        let mut left = SpaceSaving::<String>::new(3);
        let mut right = SpaceSaving::<String>::new(3);
        for (key, weight) in [("a", 5), ("b", 2)] {
            left.add(key, weight, Detail::None);
        }
        for (key, weight) in [("a", 1), ("c", 7), ("d", 1)] {
            right.add(key, weight, Detail::Rule(Arc::from("no-d")));
        }
        left.merge(&right);
        let counts: Vec<(&str, u64)> = left
            .top(3)
            .iter()
            .map(|c| (c.key.as_str(), c.count))
            .collect();
        // "d" arrived with all three counters taken: it took "b"'s (2), so up to 2 of
        // its 3 may be b's; its detail came with it.
        assert_eq!(counts, [("c", 7), ("a", 6), ("d", 3)]);
        let d = left.get("d").cloned();
        assert_eq!(
            d.map(|c| (c.count, c.error, c.detail)),
            Some((3, 2, Detail::Rule(Arc::from("no-d"))))
        );
        assert!(left.get("b").is_none());
    }

    #[test]
    fn address_keys_need_no_allocation_to_look_up() {
        use std::net::{IpAddr, Ipv4Addr};
        let mut sketch = SpaceSaving::<IpAddr>::new(4);
        let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
        sketch.add(&client, 1, Detail::None);
        sketch.add(&client, 1, Detail::None);
        assert_eq!(sketch.get(&client).map(|c| c.count), Some(2));
    }
}
