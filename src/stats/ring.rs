//! A fixed-capacity ring: the newest `capacity` items, oldest first.
//!
//! Owns nothing but the slots. The dashboard keeps its time series (one point per sample)
//! and its per-minute top-list tallies in rings, so memory is set when the ring is made and
//! never grows with uptime: once full, each push overwrites the oldest item.

/// The newest `capacity` items pushed, in push order.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    items: Vec<T>,
    /// Where the next push goes; equal to `items.len()` until the ring is full, then the
    /// slot of the oldest item.
    next: usize,
    capacity: usize,
}

impl<T> Ring<T> {
    /// An empty ring holding at most `capacity` items (at least one).
    pub fn with_capacity(capacity: usize) -> Ring<T> {
        let capacity = capacity.max(1);
        Ring {
            items: Vec::with_capacity(capacity),
            next: 0,
            capacity,
        }
    }

    /// Adds `item` as the newest, dropping the oldest when full.
    pub fn push(&mut self, item: T) {
        if self.items.len() < self.capacity {
            self.items.push(item);
        } else if let Some(slot) = self.items.get_mut(self.next) {
            *slot = item;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    /// The items, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        let (newer, older) = self.items.split_at(self.next);
        older.iter().chain(newer.iter())
    }

    /// The newest item, to update in place.
    pub fn newest_mut(&mut self) -> Option<&mut T> {
        let len = self.items.len();
        if len == 0 {
            return None;
        }
        self.items.get_mut((self.next + len - 1) % len)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(ring: &Ring<u32>) -> Vec<u32> {
        ring.iter().copied().collect()
    }

    #[test]
    fn fills_in_order_then_overwrites_the_oldest() {
        let mut ring = Ring::with_capacity(3);
        assert!(ring.is_empty() && ring.newest_mut().is_none());
        ring.push(1);
        ring.push(2);
        assert_eq!(contents(&ring), [1, 2]);
        ring.push(3);
        assert_eq!(contents(&ring), [1, 2, 3]);
        ring.push(4);
        assert_eq!(contents(&ring), [2, 3, 4]);
        ring.push(5);
        ring.push(6);
        assert_eq!(contents(&ring), [4, 5, 6], "a full turn later");
        ring.push(7);
        assert_eq!(contents(&ring), [5, 6, 7]);
        assert_eq!((ring.len(), ring.capacity()), (3, 3));
    }

    #[test]
    fn newest_is_the_last_pushed_at_every_position() {
        let mut ring = Ring::with_capacity(4);
        for n in 0..11u32 {
            ring.push(n);
            assert_eq!(ring.newest_mut().copied(), Some(n));
            assert_eq!(ring.iter().next_back().copied(), Some(n));
            assert_eq!(ring.len(), (n as usize + 1).min(4));
        }
        if let Some(newest) = ring.newest_mut() {
            *newest = 100;
        }
        assert_eq!(contents(&ring), [7, 8, 9, 100]);
    }

    #[test]
    fn a_zero_capacity_ring_still_holds_one() {
        let mut ring = Ring::with_capacity(0);
        ring.push(1);
        ring.push(2);
        assert_eq!(contents(&ring), [2]);
    }
}
