//! A tiny filter over member ids for the tables a node asks "is this id a member?" after
//! every message: most ids asked about are not, and the filter says so without reading the
//! table's heap memory (a cache miss each in a simulator holding a million nodes).

use crate::NodeId;

/// Members that may leave a stale bit before the filter is recomputed.
const STALE_MAX: u8 = 16;

/// Bit `id mod 64·W` of every member's id, and of some former members until
/// [`STALE_MAX`] of them pile up and the owner recomputes it: never a false "no".
#[derive(Debug, Clone)]
pub(crate) struct IdFilter<const W: usize> {
    bits: [u64; W],
    stale: u8,
}

impl<const W: usize> IdFilter<W> {
    pub(crate) fn new() -> Self {
        IdFilter {
            bits: [0; W],
            stale: 0,
        }
    }

    fn bit(id: NodeId) -> (usize, u64) {
        let v = (id.as_u128() % (64 * W as u128)) as usize;
        (v / 64, 1 << (v % 64))
    }

    /// A member joined.
    pub(crate) fn insert(&mut self, id: NodeId) {
        let (word, mask) = Self::bit(id);
        self.bits[word] |= mask;
    }

    /// False when `id` is surely not a member.
    pub(crate) fn may_hold(&self, id: NodeId) -> bool {
        let (word, mask) = Self::bit(id);
        self.bits[word] & mask != 0
    }

    /// A member left: its bit may now be stale. Returns true when the owner should call
    /// [`IdFilter::rebuild`] with its members.
    #[must_use]
    pub(crate) fn forgot(&mut self) -> bool {
        self.stale += 1;
        self.stale >= STALE_MAX
    }

    /// Recomputes the filter from the members.
    pub(crate) fn rebuild(&mut self, members: impl IntoIterator<Item = NodeId>) {
        *self = IdFilter::new();
        for id in members {
            self.insert(id);
        }
    }
}
