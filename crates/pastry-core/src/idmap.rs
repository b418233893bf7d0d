//! A small map keyed by node id with a one-word membership filter in front. Most lookups
//! in a node's per-peer maps (outstanding probes: "is the sender of this message under
//! probe?") are for ids that are not there; the filter answers those without touching the
//! map's heap nodes, which in a simulator holding a million nodes is a cache miss each.

use std::collections::BTreeMap;

use crate::NodeId;

/// A `BTreeMap<NodeId, V>` that answers most misses from a 64-bit filter.
#[derive(Debug, Clone)]
pub(crate) struct IdMap<V> {
    map: BTreeMap<NodeId, V>,
    /// Bit `id mod 64` is set for every key, and only for keys' bits. Ids are random, so
    /// with a few keys most absent ids find their bit clear. (Ids chosen to collide only
    /// make the filter useless, never wrong.)
    filter: u64,
}

fn bit(id: NodeId) -> u64 {
    1 << (id.as_u128() as u32 & 63)
}

impl<V> IdMap<V> {
    pub(crate) fn new() -> Self {
        IdMap {
            map: BTreeMap::new(),
            filter: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn contains_key(&self, id: &NodeId) -> bool {
        self.get(id).is_some()
    }

    pub(crate) fn get(&self, id: &NodeId) -> Option<&V> {
        if self.filter & bit(*id) == 0 {
            return None;
        }
        self.map.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &NodeId) -> Option<&mut V> {
        if self.filter & bit(*id) == 0 {
            return None;
        }
        self.map.get_mut(id)
    }

    pub(crate) fn insert(&mut self, id: NodeId, v: V) -> Option<V> {
        self.filter |= bit(id);
        self.map.insert(id, v)
    }

    pub(crate) fn remove(&mut self, id: &NodeId) -> Option<V> {
        let b = bit(*id);
        if self.filter & b == 0 {
            return None;
        }
        let v = self.map.remove(id)?;
        if !self.map.keys().any(|k| bit(*k) == b) {
            self.filter &= !b;
        }
        Some(v)
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.filter = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Against a plain BTreeMap under random inserts and removes, with ids drawn from a
    /// small pool so that filter bits are shared: same answers every time, and the filter
    /// holds exactly the bits of the keys present.
    #[test]
    fn answers_as_a_plain_map() {
        let mut rng = Rng::new(3);
        let pool: Vec<NodeId> = (0..200)
            .map(|_| {
                NodeId::from_u128(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()))
            })
            .collect();
        let mut m = IdMap::new();
        let mut model = BTreeMap::new();
        for step in 0..20_000u32 {
            let id = pool[rng.below(pool.len() as u64) as usize];
            match rng.below(4) {
                0 | 1 => assert_eq!(m.insert(id, step), model.insert(id, step)),
                2 => assert_eq!(m.remove(&id), model.remove(&id)),
                _ => {
                    if let Some(v) = m.get_mut(&id) {
                        *v += 1;
                    }
                    if let Some(v) = model.get_mut(&id) {
                        *v += 1;
                    }
                }
            }
            if step % 5_000 == 4_999 {
                m.clear();
                model.clear();
            }
            assert_eq!(m.len(), model.len());
            for p in &pool[..20] {
                assert_eq!(m.get(p), model.get(p));
                assert_eq!(m.contains_key(p), model.contains_key(p));
            }
            let bits = model.keys().fold(0u64, |f, k| f | bit(*k));
            assert_eq!(m.filter, bits);
        }
    }
}
