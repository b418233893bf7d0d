//! The neighbourhood set: the |M| nodes nearest to this one by measured RTT.
//!
//! Not used for routing decisions in the common case; it seeds proximity-aware tables
//! (a joining node learns nearby nodes from it) and offers alternatives in the rare case.

use crate::idfilter::IdFilter;
use crate::routing_table::Entry;
use crate::{NodeHandle, NodeId};

/// The |M| nearest known nodes, nearest first. Only nodes with a measured RTT enter.
#[derive(Debug, Clone)]
pub struct NeighborhoodSet<A> {
    cap: usize,
    entries: Vec<Entry<A>>,
    /// Over `id mod 128`: most ids asked about are not members, and the filter says so
    /// without a scan of the entries (a million-node simulation spent a third of its
    /// per-message bookkeeping in that scan).
    filter: IdFilter<2>,
    /// The farthest member's RTT (0 when empty): an offer the full set would refuse is
    /// refused without reading the entries (most offers are).
    worst: u32,
}

impl<A: Copy + PartialEq> NeighborhoodSet<A> {
    /// An empty set holding at most `cap` nodes.
    pub fn new(cap: usize) -> Self {
        NeighborhoodSet {
            cap,
            entries: Vec::new(),
            filter: IdFilter::new(),
            worst: 0,
        }
    }

    fn position(&self, id: NodeId) -> Option<usize> {
        if !self.filter.may_hold(id) {
            return None;
        }
        self.entries.iter().position(|e| e.handle.id == id)
    }

    /// Updates `worst` after a change of membership or order. Reads only the last entry:
    /// a full scan after every change touched a dozen cache lines per offer taken.
    fn refresh_worst(&mut self) {
        self.worst = self.entries.last().map_or(0, |e| e.rtt.srtt_us);
    }

    /// A member left: its filter bit may now be stale.
    fn forgot(&mut self) {
        if self.filter.forgot() {
            self.filter
                .rebuild(self.entries.iter().map(|e| e.handle.id));
        }
    }

    /// The member with this id.
    pub fn get(&self, id: NodeId) -> Option<&Entry<A>> {
        self.position(id).map(|i| &self.entries[i])
    }

    /// An RTT (microseconds) below which [`NeighborhoodSet::insert`] would take `id` in:
    /// `u32::MAX` while there is room, 0 when it is a member already.
    pub fn room_for(&self, id: NodeId) -> u32 {
        if self.cap == 0 || self.position(id).is_some() {
            0
        } else if self.entries.len() < self.cap {
            u32::MAX
        } else {
            self.worst
        }
    }

    /// Offers a node with a measured RTT in microseconds. Returns true if it is now a member.
    pub fn insert(&mut self, handle: NodeHandle<A>, rtt_us: u32) -> bool {
        if self.cap == 0 {
            return false;
        }
        if let Some(i) = self.position(handle.id) {
            let mut e = self.entries.remove(i);
            e.handle = handle;
            e.rtt.update(rtt_us);
            let pos = self
                .entries
                .partition_point(|x| x.rtt.srtt_us <= e.rtt.srtt_us);
            self.entries.insert(pos, e);
            self.refresh_worst();
            return true;
        }
        let rtt = crate::rtt::Rtt::from_sample(rtt_us);
        if self.entries.len() >= self.cap && rtt.srtt_us >= self.worst {
            return false;
        }
        let pos = self
            .entries
            .partition_point(|x| x.rtt.srtt_us <= rtt.srtt_us);
        if pos >= self.cap {
            return false;
        }
        // Make room first, so the vector never holds more than `cap` (nor allocates more).
        if self.entries.len() >= self.cap {
            self.entries.truncate(self.cap - 1);
            self.forgot();
        } else if self.entries.len() == self.entries.capacity() {
            let want = (2 * self.entries.len()).max(4).min(self.cap);
            self.entries.reserve_exact(want - self.entries.len());
        }
        self.entries.insert(pos, Entry { handle, rtt });
        self.filter.insert(handle.id);
        self.refresh_worst();
        true
    }

    /// Changes the address of member `id`; true if it is a member.
    pub fn set_addr(&mut self, id: NodeId, addr: A) -> bool {
        match self.position(id) {
            Some(i) => {
                self.entries[i].handle.addr = addr;
                true
            }
            None => false,
        }
    }

    /// Removes `id`; true if it was a member.
    pub fn remove(&mut self, id: NodeId) -> bool {
        let Some(i) = self.position(id) else {
            return false;
        };
        self.entries.remove(i);
        self.forgot();
        self.refresh_worst();
        true
    }

    /// Members, nearest first.
    pub fn entries(&self) -> &[Entry<A>] {
        &self.entries
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(v: u128) -> NodeHandle<u32> {
        NodeHandle::new(NodeId::from_u128(v), v as u32)
    }

    #[test]
    fn keeps_nearest() {
        let mut m = NeighborhoodSet::new(2);
        assert!(m.insert(h(1), 30));
        assert!(m.insert(h(2), 10));
        assert!(!m.insert(h(3), 40));
        assert!(m.insert(h(4), 20));
        let ids: Vec<u128> = m.entries().iter().map(|e| e.handle.id.as_u128()).collect();
        assert_eq!(ids, vec![2, 4]);
        assert!(m.remove(NodeId::from_u128(2)));
        assert_eq!(m.len(), 1);
    }

    proptest! {
        /// With distinct ids offered once each, the set is the `cap` lowest RTTs (stable on ties).
        #[test]
        fn matches_model(cap in 0usize..10, offers in proptest::collection::btree_map(any::<u128>(), 1u32..500, 0..40)) {
            let mut m = NeighborhoodSet::new(cap);
            let mut order: Vec<(u128, u32)> = Vec::new();
            for (&id, &rtt) in &offers {
                m.insert(h(id), rtt);
                order.push((id, rtt));
            }
            let mut model: Vec<(u32, usize, u128)> = order.iter().enumerate().map(|(i, &(id, r))| (r, i, id)).collect();
            model.sort();
            let want: Vec<u128> = model.into_iter().take(cap).map(|x| x.2).collect();
            let got: Vec<u128> = m.entries().iter().map(|e| e.handle.id.as_u128()).collect();
            prop_assert_eq!(&got, &want);
            // Lookups (answered through the id filter) agree with the entries, also after
            // removing every other offered id.
            for (i, &id) in offers.keys().enumerate() {
                let id = NodeId::from_u128(id);
                prop_assert_eq!(m.get(id).is_some(), got.contains(&id.as_u128()));
                if i % 2 == 0 {
                    prop_assert_eq!(m.remove(id), got.contains(&id.as_u128()));
                    prop_assert!(m.get(id).is_none());
                }
            }
            for (i, &id) in offers.keys().enumerate() {
                let present = i % 2 == 1 && got.contains(&id);
                prop_assert_eq!(m.get(NodeId::from_u128(id)).is_some(), present);
                prop_assert_eq!(m.room_for(NodeId::from_u128(id)) == 0, present || cap == 0);
            }
        }
    }
}
