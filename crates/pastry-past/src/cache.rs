//! [`LruCache`]: a size-aware least-recently-used cache of objects seen on lookups.
//!
//! Bounded both in bytes and in entries; inserting evicts the least recently used entries
//! until the new one fits, and an object larger than the whole capacity is not cached.
//! Entries remember when they were cached so the owner can refuse stale ones (owned objects
//! may have been replaced since). Deterministic: ordered maps and a logical clock.

use std::collections::BTreeMap;

use pastry_core::{Instant, NodeId};

use crate::object::PastObject;

#[derive(Debug, Clone)]
struct Entry {
    object: PastObject,
    size: u64,
    tick: u64,
    cached_at: Instant,
}

/// A byte- and entry-bounded LRU cache of [`PastObject`]s.
#[derive(Debug, Clone)]
pub struct LruCache {
    capacity_bytes: u64,
    max_entries: usize,
    entries: BTreeMap<NodeId, Entry>,
    by_age: BTreeMap<u64, NodeId>,
    bytes: u64,
    tick: u64,
}

impl LruCache {
    /// An empty cache holding at most `capacity_bytes` of objects and `max_entries` objects.
    pub fn new(capacity_bytes: u64, max_entries: usize) -> Self {
        LruCache {
            capacity_bytes,
            max_entries,
            entries: BTreeMap::new(),
            by_age: BTreeMap::new(),
            bytes: 0,
            tick: 0,
        }
    }

    /// Caches `object` under `key` at time `now`, evicting least recently used entries as
    /// needed; false (and nothing cached) when it can never fit.
    pub fn insert(&mut self, key: NodeId, object: PastObject, now: Instant) -> bool {
        let size = object.encoded_len() as u64;
        self.remove(key);
        if size > self.capacity_bytes || self.max_entries == 0 {
            return false;
        }
        while self.bytes + size > self.capacity_bytes || self.entries.len() >= self.max_entries {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.size;
            }
        }
        self.tick += 1;
        self.by_age.insert(self.tick, key);
        self.entries.insert(
            key,
            Entry {
                object,
                size,
                tick: self.tick,
                cached_at: now,
            },
        );
        self.bytes += size;
        true
    }

    /// The object under `key` and when it was cached, marking it most recently used.
    pub fn get(&mut self, key: NodeId) -> Option<(PastObject, Instant)> {
        let e = self.entries.get_mut(&key)?;
        self.by_age.remove(&e.tick);
        self.tick += 1;
        e.tick = self.tick;
        self.by_age.insert(self.tick, key);
        Some((e.object.clone(), e.cached_at))
    }

    /// True when `key` is cached (does not touch its recency).
    pub fn contains(&self, key: NodeId) -> bool {
        self.entries.contains_key(&key)
    }

    /// Removes `key`; true if it was cached.
    pub fn remove(&mut self, key: NodeId) -> bool {
        match self.entries.remove(&key) {
            Some(e) => {
                self.by_age.remove(&e.tick);
                self.bytes -= e.size;
                true
            }
            None => false,
        }
    }

    /// Objects cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes cached.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(n: usize, tag: u8) -> PastObject {
        PastObject::immutable(vec![tag; n])
    }

    #[test]
    fn evicts_least_recently_used_to_stay_within_bytes() {
        // Each object of 95 content bytes takes 100 encoded bytes.
        let mut c = LruCache::new(300, 100);
        let t = Instant::ZERO;
        let ks: Vec<_> = (0..4u8).map(|i| (obj(95, i).key(), obj(95, i))).collect();
        for (k, o) in ks.iter().take(3) {
            assert!(c.insert(*k, o.clone(), t));
        }
        assert_eq!((c.len(), c.bytes()), (3, 300));
        // Touch the oldest, so the second is evicted next.
        assert!(c.get(ks[0].0).is_some());
        assert!(c.insert(ks[3].0, ks[3].1.clone(), t));
        assert_eq!((c.len(), c.bytes()), (3, 300));
        assert!(c.contains(ks[0].0) && !c.contains(ks[1].0));
        assert!(c.contains(ks[2].0) && c.contains(ks[3].0));
    }

    #[test]
    fn bounds_entries_and_refuses_oversized_objects() {
        let mut c = LruCache::new(10_000, 2);
        let t = Instant::ZERO;
        for i in 0..5u8 {
            let o = obj(10, i);
            assert!(c.insert(o.key(), o, t));
            assert!(c.len() <= 2);
        }
        let big = obj(20_000, 9);
        assert!(!c.insert(big.key(), big.clone(), t));
        assert!(!c.contains(big.key()));
        assert_eq!(c.len(), 2);
        // Re-inserting a key replaces it without double counting.
        let o = obj(10, 4);
        let before = c.bytes();
        assert!(c.insert(o.key(), o.clone(), t));
        assert_eq!(c.bytes(), before);
        assert!(c.remove(o.key()));
        assert!(!c.remove(o.key()));
        assert_eq!(c.bytes(), before - o.encoded_len() as u64);
    }

    #[test]
    fn a_big_object_evicts_several_small_ones() {
        let mut c = LruCache::new(250, 10);
        let t = Instant::ZERO;
        for i in 0..5u8 {
            let o = obj(45, i);
            c.insert(o.key(), o, t);
        }
        assert_eq!(c.len(), 5);
        let big = obj(195, 7);
        assert!(c.insert(big.key(), big.clone(), t));
        assert!(c.bytes() <= 250);
        assert!(c.contains(big.key()));
        // 4 x 50 bytes had to go for 200; the most recent small one stays.
        assert_eq!(c.len(), 2);
    }
}
