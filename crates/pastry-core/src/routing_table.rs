//! The routing table: row `r` holds, for each digit value `d`, one node sharing the first `r`
//! digits with this node and having `d` as digit `r`: the nearest such node by measured RTT
//! (proximity neighbour selection).
//!
//! Rows are allocated only up to the deepest populated one, so a node in a ring of N holds
//! about log_{2^b} N rows of 2^b slots, not 128 / b of them.

use crate::idfilter::IdFilter;
use crate::rtt::Rtt;
use crate::{NodeHandle, NodeId};

/// A routing-table entry: a node and how near it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<A> {
    /// The node.
    pub handle: NodeHandle<A>,
    /// Measured round-trip time; unknown sorts after every measured one.
    pub rtt: Rtt,
}

/// What [`RoutingTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted<A> {
    /// The slot was empty.
    New,
    /// The node was already there; its address and RTT were refreshed.
    Refreshed,
    /// The node replaced a farther one, returned.
    Replaced(NodeHandle<A>),
    /// The slot holds a nearer node (or the id is our own).
    Rejected,
}

/// The routing table of one node.
#[derive(Debug, Clone)]
pub struct RoutingTable<A> {
    own: NodeId,
    b: u8,
    /// The allocated rows back to back, `2^b` slots each: one allocation per table and one
    /// pointer to follow per lookup (a simulator holds a million tables).
    slots: Vec<Option<Entry<A>>>,
    /// Over `id mod 256`: most ids a node looks up are not in its table; the filter
    /// answers those without reading `slots`.
    filter: IdFilter<4>,
    /// Entries in `slots` (nodes ask on every table change whether they know more nodes
    /// than the leaf set holds; counting would read the whole table).
    count: u16,
}

impl<A: Copy + PartialEq> RoutingTable<A> {
    /// An empty table for node `own` with digits of `b` bits.
    pub fn new(own: NodeId, b: u8) -> Self {
        RoutingTable {
            own,
            b,
            slots: Vec::new(),
            filter: IdFilter::new(),
            count: 0,
        }
    }

    /// Digits of how many bits.
    pub fn b(&self) -> u8 {
        self.b
    }

    /// Slots per row: 2^b.
    pub fn columns(&self) -> usize {
        1 << self.b
    }

    /// Number of rows the table can have: `ceil(128 / b)`.
    pub fn max_rows(&self) -> usize {
        NodeId::digits(self.b)
    }

    /// Rows currently allocated (the deepest populated row + 1, or a little more).
    pub fn rows(&self) -> usize {
        self.slots.len() >> self.b
    }

    /// The slot `(row, column)` where `id` belongs; `None` for our own id.
    pub fn slot(&self, id: NodeId) -> Option<(usize, usize)> {
        if id == self.own {
            return None;
        }
        let row = self.own.shared_prefix_len(id, self.b);
        Some((row, id.digit(row, self.b) as usize))
    }

    /// The entry at `(row, column)`.
    pub fn get(&self, row: usize, col: usize) -> Option<&Entry<A>> {
        if col >= self.columns() || row >= self.rows() {
            return None;
        }
        self.slots[(row << self.b) + col].as_ref()
    }

    /// One row's slots (empty slice for rows never allocated).
    pub fn row(&self, row: usize) -> &[Option<Entry<A>>] {
        if row >= self.rows() {
            return &[];
        }
        &self.slots[row << self.b..(row + 1) << self.b]
    }

    /// The entry for the next hop towards `key`: the slot sharing one more digit with it.
    pub fn next_hop(&self, key: NodeId) -> Option<&Entry<A>> {
        let (row, col) = self.slot(key)?;
        self.get(row, col)
    }

    /// The entry holding `id`, if any.
    pub fn find(&self, id: NodeId) -> Option<&Entry<A>> {
        if !self.may_hold(id) {
            return None;
        }
        let (row, col) = self.slot(id)?;
        self.get(row, col).filter(|e| e.handle.id == id)
    }

    /// Offers a node with its RTT estimate: it takes an empty slot, refreshes itself, or
    /// replaces an occupant with a larger (or unknown) RTT.
    pub fn insert(&mut self, handle: NodeHandle<A>, rtt: Rtt) -> Inserted<A> {
        let Some((row, col)) = self.slot(handle.id) else {
            return Inserted::Rejected;
        };
        let need = (row + 1) << self.b;
        if self.slots.len() < need {
            self.slots.reserve_exact(need - self.slots.len());
            self.slots.resize(need, None);
        }
        let slot = &mut self.slots[(row << self.b) + col];
        match slot {
            None => {
                *slot = Some(Entry { handle, rtt });
                self.filter.insert(handle.id);
                self.count += 1;
                Inserted::New
            }
            Some(e) if e.handle.id == handle.id => {
                e.handle = handle;
                if rtt.is_known() {
                    e.rtt = rtt;
                }
                Inserted::Refreshed
            }
            Some(e) if rtt.proximity() < e.rtt.proximity() => {
                let old = e.handle;
                *e = Entry { handle, rtt };
                self.filter.insert(handle.id);
                self.forgot();
                Inserted::Replaced(old)
            }
            Some(_) => Inserted::Rejected,
        }
    }

    /// An RTT (microseconds) below which `insert` would put `id` in, or give it its first
    /// measured RTT: `u32::MAX` for an empty slot or an occupant of unknown RTT, 0 when
    /// `id` has no slot or already sits in its slot with a measured RTT.
    pub fn room_for(&self, id: NodeId) -> u32 {
        match self.slot(id).map(|(row, col)| self.get(row, col)) {
            None => 0,
            Some(None) => u32::MAX,
            Some(Some(e)) if e.handle.id == id => {
                if e.rtt.is_known() {
                    0
                } else {
                    u32::MAX
                }
            }
            Some(Some(e)) => e.rtt.proximity(),
        }
    }

    /// True when `insert` would put this node in (empty slot or nearer than the occupant).
    pub fn would_accept(&self, id: NodeId, rtt: Rtt) -> bool {
        match self.slot(id) {
            None => false,
            Some((row, col)) => match self.get(row, col) {
                None => true,
                Some(e) => e.handle.id != id && rtt.proximity() < e.rtt.proximity(),
            },
        }
    }

    /// Folds an RTT sample into the entry for `id`, if present.
    pub fn record_rtt(&mut self, id: NodeId, rtt_us: u32) {
        if self.may_hold(id)
            && let Some((row, col)) = self.slot(id)
            && let Some(Some(e)) = self.slots.get_mut((row << self.b) + col)
            && e.handle.id == id
        {
            e.rtt.update(rtt_us);
        }
    }

    /// False when `id` is surely not a member (its filter bit is clear).
    fn may_hold(&self, id: NodeId) -> bool {
        self.filter.may_hold(id)
    }

    /// A member left: its filter bit may now be stale.
    fn forgot(&mut self) {
        if self.filter.forgot() {
            let members = self.slots.iter().flatten().map(|e| e.handle.id);
            self.filter.rebuild(members);
        }
    }

    /// Removes `id`; returns its slot if it was present.
    pub fn remove(&mut self, id: NodeId) -> Option<(usize, usize)> {
        let (row, col) = self.slot(id)?;
        let slot = self.slots.get_mut((row << self.b) + col)?;
        if slot.is_some_and(|e| e.handle.id == id) {
            *slot = None;
            self.count -= 1;
            self.forgot();
            // Free empty trailing rows.
            let cols = self.columns();
            let mut len = self.slots.len();
            while len > 0 && self.slots[len - cols..len].iter().all(Option::is_none) {
                len -= cols;
            }
            if len < self.slots.len() {
                self.slots.truncate(len);
                self.slots.shrink_to_fit();
            }
            return Some((row, col));
        }
        None
    }

    /// Every entry, row by row.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<A>> + '_ {
        self.slots.iter().flatten()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// True when the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn h(v: u128) -> NodeHandle<u32> {
        NodeHandle::new(NodeId::from_u128(v), v as u32)
    }

    #[test]
    fn slots_and_replacement() {
        let own = NodeId::from_u128(0x1234 << 112);
        let mut rt = RoutingTable::new(own, 4);
        let far = 0x5000u128 << 112;
        assert_eq!(rt.slot(NodeId::from_u128(far)), Some((0, 5)));
        assert_eq!(rt.insert(h(far), Rtt::from_sample(900)), Inserted::New);
        assert_eq!(
            rt.insert(h(far + 1), Rtt::from_sample(1000)),
            Inserted::Rejected
        );
        assert_eq!(
            rt.insert(h(far + 2), Rtt::from_sample(100)),
            Inserted::Replaced(h(far))
        );
        assert_eq!(rt.insert(h(far + 2), Rtt::UNKNOWN), Inserted::Refreshed);
        assert_eq!(rt.get(0, 5).unwrap().rtt.srtt_us, 100);
        let deep = 0x1235u128 << 112;
        assert_eq!(rt.insert(h(deep), Rtt::UNKNOWN), Inserted::New);
        assert_eq!(rt.rows(), 4);
        assert_eq!(
            rt.next_hop(NodeId::from_u128(0x1235_7777 << 96))
                .map(|e| e.handle),
            Some(h(deep))
        );
        assert_eq!(rt.remove(NodeId::from_u128(deep)), Some((3, 5)));
        assert_eq!(rt.rows(), 1, "empty trailing rows are freed");
        assert_eq!(
            rt.insert(NodeHandle::new(own, 0), Rtt::UNKNOWN),
            Inserted::Rejected
        );
    }

    proptest! {
        /// Against a brute-force model: each slot holds the lowest-RTT node offered for it
        /// (first offered wins ties), and every entry satisfies the prefix invariant.
        #[test]
        fn matches_model(own: u128, b in 1u8..=8,
                         offers in proptest::collection::vec((any::<u128>(), 1u32..1000), 0..60)) {
            let o = NodeId::from_u128(own);
            let mut rt = RoutingTable::new(o, b);
            let mut model: BTreeMap<(usize, usize), (u128, u32)> = BTreeMap::new();
            let mut offered = Vec::new();
            for &(id, rtt) in &offers {
                // Make prefixes long enough to matter: share a random-length prefix with own.
                let keep = (id % 24) as u32 * 4;
                let id = if keep == 0 { id } else { (own & (!0u128 << (128 - keep))) | (id & (!0u128 >> keep)) };
                let n = NodeId::from_u128(id);
                rt.insert(h(id), Rtt::from_sample(rtt));
                offered.push(id);
                if id == own { continue; }
                let row = o.shared_prefix_len(n, b);
                let col = n.digit(row, b) as usize;
                let e = model.entry((row, col)).or_insert((id, rtt));
                if e.0 == id { e.1 = rtt; } else if rtt < e.1 { *e = (id, rtt); }
            }
            prop_assert_eq!(rt.len(), model.len());
            for (&(row, col), &(id, rtt)) in &model {
                let e = rt.get(row, col).unwrap();
                prop_assert_eq!(e.handle.id.as_u128(), id);
                prop_assert_eq!(e.rtt.srtt_us, rtt);
                prop_assert_eq!(o.shared_prefix_len(e.handle.id, b), row);
                prop_assert_eq!(e.handle.id.digit(row, b) as usize, col);
            }
            // `find` (through the filter) agrees with the slots; then remove every other
            // member and check again (stale filter bits are recomputed on the way).
            let held: Vec<u128> = model.values().map(|&(id, _)| id).collect();
            for (i, &id) in held.iter().enumerate() {
                prop_assert!(rt.find(NodeId::from_u128(id)).is_some());
                if i % 2 == 0 {
                    prop_assert!(rt.remove(NodeId::from_u128(id)).is_some());
                }
            }
            for (i, &id) in held.iter().enumerate() {
                prop_assert_eq!(rt.find(NodeId::from_u128(id)).is_some(), i % 2 == 1);
            }
            prop_assert_eq!(rt.len(), held.len() / 2);
            prop_assert_eq!(rt.len(), rt.entries().count());
            for &id in &offered {
                let member = held.iter().position(|&h| h == id).is_some_and(|i| i % 2 == 1);
                prop_assert_eq!(rt.find(NodeId::from_u128(id)).is_some(), member);
            }
        }
    }
}
