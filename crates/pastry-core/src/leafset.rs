//! The leaf set: the |L|/2 numerically nearest known live nodes on each side of this node.
//!
//! The left side runs counter-clockwise (smaller ids, modulo wrap-around), the right side
//! clockwise; each side is kept nearest first. In a ring of fewer than |L| + 1 nodes the same
//! node can sit on both sides; the leaf set then covers the whole ring. The leaf set never
//! decides liveness: the node adds members it heard from and removes those it found dead.

use crate::rtt::Rtt;
use crate::{NodeHandle, NodeId};

/// A leaf-set member with its RTT estimate (used for heartbeat and probe timeouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf<A> {
    /// The member.
    pub handle: NodeHandle<A>,
    /// Measured round-trip time to it.
    pub rtt: Rtt,
}

/// Which side of the leaf set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// Counter-clockwise: numerically smaller ids (modulo wrap-around).
    Left,
    /// Clockwise: numerically larger ids (modulo wrap-around).
    Right,
}

fn other(side: Side) -> Side {
    match side {
        Side::Left => Side::Right,
        Side::Right => Side::Left,
    }
}

/// Distance from `own` to `id` going the way `side` runs.
fn dist_from(own: NodeId, side: Side, id: NodeId) -> u128 {
    match side {
        Side::Left => id.cw_distance(own),
        Side::Right => own.cw_distance(id),
    }
}

/// The leaf set of one node.
#[derive(Debug, Clone)]
pub struct LeafSet<A> {
    own: NodeId,
    half: usize,
    /// Both sides in one allocation (one cache miss, not two, for a lookup): the left side
    /// is `leaves[..n_left]`, the right side `leaves[n_left..]`, each nearest first.
    leaves: Vec<Leaf<A>>,
    n_left: usize,
    /// Per side (left, right), the distance from the owner to the farthest member (0 when
    /// the side is empty), kept inline: most ids a node is asked about are far beyond
    /// both sides, and this answers for them without reading `leaves`.
    far: [u128; 2],
    /// Whether a side may take nodes from across the ring, nearer the other way round.
    /// Only in a ring of at most |L| + 1 nodes do the two sides legitimately meet; in a
    /// larger ring a side left short by a failure would otherwise fill up with the other
    /// side's members and "cover the ring" (see [`LeafSet::set_wrap`]).
    wrap: bool,
}

impl<A: Copy + PartialEq> LeafSet<A> {
    /// An empty leaf set for node `own` with `half` members a side (|L| / 2).
    pub fn new(own: NodeId, half: usize) -> Self {
        LeafSet {
            own,
            half,
            leaves: Vec::new(),
            n_left: 0,
            far: [0; 2],
            wrap: true,
        }
    }

    /// Whether any of `ids` would enter the leaf set of `own` whose members are `list`:
    /// the answer of [`LeafSet::would_accept`] on the leaf set that inserting every node
    /// of `list` into `LeafSet::new(own, half)` gives, without building it. Nodes ask
    /// this of the leaf set a peer shows them on every heartbeat.
    pub fn accepts_any(
        own: NodeId,
        half: usize,
        list: &[NodeHandle<A>],
        ids: impl IntoIterator<Item = NodeId>,
    ) -> bool {
        // Per side, the distances of the `half` nearest distinct nodes, nearest first:
        // a node enters a side when it is not among them and the side is short or the
        // node nearer than the farthest of them.
        let near = [Side::Left, Side::Right].map(|side| {
            let mut v: Vec<u128> = list
                .iter()
                .filter(|h| h.id != own)
                .map(|h| dist_from(own, side, h.id))
                .collect();
            v.sort_unstable();
            v.dedup();
            v.truncate(half);
            v
        });
        ids.into_iter().any(|id| {
            id != own
                && [Side::Left, Side::Right].into_iter().any(|side| {
                    let v = &near[side as usize];
                    let d = dist_from(own, side, id);
                    (v.len() < half || v.last().is_some_and(|&far| d < far))
                        && v.binary_search(&d).is_err()
                })
        })
    }

    /// Whether sides may take nodes from across the ring (the default).
    pub fn wrap(&self) -> bool {
        self.wrap
    }

    /// Allows or forbids the two sides to meet. The owner forbids it while it knows more
    /// nodes than the leaf set holds (the ring is then larger than the leaf set, so the
    /// sides cannot meet): a side then refuses nodes within the other side's reach.
    /// Forbidding drops the members within the other side's reach that are nearer that
    /// way, and returns those that left the leaf set altogether.
    pub fn set_wrap(&mut self, wrap: bool) -> Vec<NodeHandle<A>> {
        self.wrap = wrap;
        if wrap {
            return Vec::new();
        }
        let mut wrong: Vec<(Side, NodeId)> = Vec::new();
        for side in [Side::Left, Side::Right] {
            for l in self.side(side) {
                if self.reaches(other(side), l.handle.id) && self.across(side, l.handle.id) {
                    wrong.push((side, l.handle.id));
                }
            }
        }
        let mut gone = Vec::new();
        for (side, id) in wrong {
            let (start, end) = match side {
                Side::Left => (0, self.n_left),
                Side::Right => (self.n_left, self.leaves.len()),
            };
            if let Some(pos) = self.leaves[start..end]
                .iter()
                .position(|l| l.handle.id == id)
            {
                let l = self.leaves.remove(start + pos);
                if side == Side::Left {
                    self.n_left -= 1;
                }
                self.refresh_far();
                if !self.contains(id) {
                    gone.push(l.handle);
                }
            }
        }
        gone
    }

    /// True when `id` is strictly nearer going the other way than `side` runs.
    fn across(&self, side: Side, id: NodeId) -> bool {
        self.dist(side, id) > self.dist(other(side), id)
    }

    /// True when `id` lies between the owner and the farthest member of `side`.
    fn reaches(&self, side: Side, id: NodeId) -> bool {
        // `far` is 0 only for an empty side (a member is never the owner).
        let far = self.far[side as usize];
        far > 0 && self.dist(side, id) <= far
    }

    /// The owner's id.
    pub fn own(&self) -> NodeId {
        self.own
    }

    /// Members a side at most (|L| / 2).
    pub fn half(&self) -> usize {
        self.half
    }

    /// One side, nearest first.
    pub fn side(&self, side: Side) -> &[Leaf<A>] {
        match side {
            Side::Left => self.left(),
            Side::Right => self.right(),
        }
    }

    fn left(&self) -> &[Leaf<A>] {
        &self.leaves[..self.n_left]
    }

    fn right(&self) -> &[Leaf<A>] {
        &self.leaves[self.n_left..]
    }

    /// Recomputes [`LeafSet::far`] after `leaves` changed.
    fn refresh_far(&mut self) {
        for side in [Side::Left, Side::Right] {
            self.far[side as usize] = self
                .side(side)
                .last()
                .map_or(0, |l| self.dist(side, l.handle.id));
        }
    }

    /// False when `id` is surely not a member: beyond the farthest member on both sides.
    fn may_hold(&self, id: NodeId) -> bool {
        self.dist(Side::Left, id) <= self.far[Side::Left as usize]
            || self.dist(Side::Right, id) <= self.far[Side::Right as usize]
    }

    /// Distance from the owner to `id` going the way `side` runs.
    fn dist(&self, side: Side, id: NodeId) -> u128 {
        dist_from(self.own, side, id)
    }

    /// Where `id` would go on `side`, or `None` when it is present or too far.
    fn slot(&self, side: Side, id: NodeId) -> Option<usize> {
        let d = self.dist(side, id);
        // A full side takes nothing beyond its farthest member.
        if d > self.far[side as usize] && self.side(side).len() >= self.half {
            return None;
        }
        if id == self.own || (!self.wrap && self.reaches(other(side), id)) {
            return None;
        }
        let v = self.side(side);
        let pos = v.partition_point(|l| self.dist(side, l.handle.id) < d);
        if v.get(pos).is_some_and(|l| l.handle.id == id) || pos >= self.half {
            return None;
        }
        if pos == v.len() && !self.wrap && d > self.reach_limit() {
            return None;
        }
        Some(pos)
    }

    /// How far out a short side may take a node in a ring larger than the leaf set: 16 x
    /// |L|/2 mean gaps between ids, the gap measured over both sides together (one side
    /// alone can be several times denser than the other by chance). A short side that
    /// took any node beyond its end "covered" hundreds of nodes it did not know, and keys
    /// among them looped between it and the routing tables (simulator, 10,000 nodes,
    /// churn: 500 gaps out). The true next node lies that far out with negligible
    /// probability.
    fn reach_limit(&self) -> u128 {
        let (mut span, mut members) = (0u128, 0u128);
        for side in [Side::Left, Side::Right] {
            if let Some(far) = self.side(side).last() {
                span = span.saturating_add(self.dist(side, far.handle.id));
                members += self.side(side).len() as u128;
            }
        }
        if members < 2 {
            return u128::MAX;
        }
        (span / members).saturating_mul(16 * self.half as u128)
    }

    /// True when inserting `id` would make it a member (it is absent and near enough).
    pub fn would_accept(&self, id: NodeId) -> bool {
        self.slot(Side::Left, id).is_some() || self.slot(Side::Right, id).is_some()
    }

    /// Adds a live node. Returns whether it became a member, and appends to `evicted` the
    /// members pushed out of the leaf set altogether by it.
    pub fn insert(
        &mut self,
        handle: NodeHandle<A>,
        rtt: Rtt,
        evicted: &mut Vec<NodeHandle<A>>,
    ) -> bool {
        let mut added = false;
        let mut pushed: [Option<NodeHandle<A>>; 2] = [None, None];
        // The side the node is nearer on goes first: a short far side that took it first
        // would "reach" it and make its own side refuse it (a 35-node ring after graceful
        // leaves kept a node on the wrong side for a minute).
        let order = if self.across(Side::Left, handle.id) {
            [Side::Right, Side::Left]
        } else {
            [Side::Left, Side::Right]
        };
        for (side, out) in order.into_iter().zip(&mut pushed) {
            if let Some(pos) = self.slot(side, handle.id) {
                if self.leaves.capacity() == 0 {
                    self.leaves.reserve_exact(2 * self.half);
                }
                // `slot` gave `pos < half`: drop the farthest member first when the side is
                // full, so a side never grows beyond `half` (nor the allocation).
                let leaf = Leaf { handle, rtt };
                match side {
                    Side::Left => {
                        if self.n_left >= self.half {
                            self.n_left -= 1;
                            *out = Some(self.leaves.remove(self.n_left).handle);
                        }
                        self.leaves.insert(pos, leaf);
                        self.n_left += 1;
                    }
                    Side::Right => {
                        if self.leaves.len() - self.n_left >= self.half {
                            *out = self.leaves.pop().map(|l| l.handle);
                        }
                        self.leaves.insert(self.n_left + pos, leaf);
                    }
                }
                self.refresh_far();
                added = true;
            }
        }
        for h in pushed.into_iter().flatten() {
            if !self.contains(h.id) {
                evicted.push(h);
            }
        }
        added
    }

    /// Removes `id` from both sides; true if it was a member.
    pub fn remove(&mut self, id: NodeId) -> bool {
        let before = self.leaves.len();
        let from_left = self.left().iter().filter(|l| l.handle.id == id).count();
        self.leaves.retain(|l| l.handle.id != id);
        self.n_left -= from_left;
        self.refresh_far();
        before != self.leaves.len()
    }

    /// True when `id` is a member.
    pub fn contains(&self, id: NodeId) -> bool {
        self.get(id).is_some()
    }

    /// The member with this id.
    pub fn get(&self, id: NodeId) -> Option<&Leaf<A>> {
        // Binary search on each side.
        [Side::Left, Side::Right].into_iter().find_map(|side| {
            let d = self.dist(side, id);
            if d > self.far[side as usize] {
                return None;
            }
            let v = self.side(side);
            let pos = v.partition_point(|l| self.dist(side, l.handle.id) < d);
            v.get(pos).filter(|l| l.handle.id == id)
        })
    }

    /// Changes the address of member `id` (it came back at another address); true if it
    /// is a member.
    pub fn set_addr(&mut self, id: NodeId, addr: A) -> bool {
        if !self.may_hold(id) {
            return false;
        }
        let mut found = false;
        for l in &mut self.leaves {
            if l.handle.id == id {
                l.handle.addr = addr;
                found = true;
            }
        }
        found
    }

    /// Folds an RTT sample into the member's estimate (on both sides when it is on both).
    pub fn record_rtt(&mut self, id: NodeId, rtt_us: u32) {
        if !self.may_hold(id) {
            return;
        }
        for l in &mut self.leaves {
            if l.handle.id == id {
                l.rtt.update(rtt_us);
            }
        }
    }

    /// Distinct members: left side nearest first, then right-only members nearest first.
    pub fn members(&self) -> impl Iterator<Item = &Leaf<A>> + '_ {
        let left = self.left();
        let meet = self.sides_meet();
        left.iter().chain(
            self.right()
                .iter()
                .filter(move |r| !meet || !left.iter().any(|l| l.handle.id == r.handle.id)),
        )
    }

    /// Whether a node may sit on both sides. One that does is `d` away one way and
    /// `2^128 - d` the other, so the two farthest distances add up to 2^128 or more.
    fn sides_meet(&self) -> bool {
        self.far[0].checked_add(self.far[1]).is_none()
    }

    /// Distinct member handles, as [`LeafSet::members`].
    pub fn handles(&self) -> Vec<NodeHandle<A>> {
        self.members().map(|l| l.handle).collect()
    }

    /// Number of distinct members.
    pub fn len(&self) -> usize {
        if self.sides_meet() {
            self.members().count()
        } else {
            self.leaves.len()
        }
    }

    /// True when there are no members.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The nearest member on `side`.
    pub fn neighbor(&self, side: Side) -> Option<&Leaf<A>> {
        self.side(side).first()
    }

    /// The farthest member on `side`.
    pub fn farthest(&self, side: Side) -> Option<&Leaf<A>> {
        self.side(side).last()
    }

    /// True when the two sides meet: every node of the ring is a member.
    pub fn covers_ring(&self) -> bool {
        match (self.left().last(), self.right().last()) {
            (None, None) => true,
            (Some(l), Some(r)) => {
                let span = l
                    .handle
                    .id
                    .cw_distance(self.own)
                    .checked_add(self.own.cw_distance(r.handle.id));
                // A span of 2^128 or more (overflow) means the arcs meet or overlap.
                span.is_none()
            }
            _ => false,
        }
    }

    /// The number of nodes in the ring, estimated from the leaf set's density: exact when
    /// the leaf set covers the ring, else members x 2^128 / span.
    pub fn estimated_ring_size(&self) -> f64 {
        let members = self.members().count();
        let (Some(l), Some(r)) = (self.left().last(), self.right().last()) else {
            return members as f64 + 1.0;
        };
        if self.covers_ring() {
            return members as f64 + 1.0;
        }
        let span =
            l.handle.id.cw_distance(self.own) as f64 + self.own.cw_distance(r.handle.id) as f64;
        // `members` nodes (plus us) in `span`, so `members` gaps of span/members each.
        (members as f64) * 2f64.powi(128) / span.max(1.0)
    }

    /// True when `key` lies within the leaf set's range: between the farthest left and the
    /// farthest right member, or anywhere when [`LeafSet::covers_ring`].
    pub fn covers(&self, key: NodeId) -> bool {
        if self.covers_ring() {
            return true;
        }
        let from = self.left().last().map_or(self.own, |l| l.handle.id);
        let to = self.right().last().map_or(self.own, |l| l.handle.id);
        NodeId::in_cw_arc(key, from, to)
    }

    /// The member or owner (`None`) numerically closest to `key`, skipping members for which
    /// `skip` is true.
    pub fn closest(
        &self,
        key: NodeId,
        mut skip: impl FnMut(NodeId) -> bool,
    ) -> Option<NodeHandle<A>> {
        let mut best: Option<NodeHandle<A>> = None;
        let mut best_id = self.own;
        for l in &self.leaves {
            if !skip(l.handle.id) && key.is_closer(l.handle.id, best_id) {
                best = Some(l.handle);
                best_id = l.handle.id;
            }
        }
        best
    }

    /// Up to `k` of the owner (`None`) and members, closest to `key` first.
    pub fn replica_set(&self, key: NodeId, k: usize) -> Vec<Option<NodeHandle<A>>> {
        let mut all: Vec<(NodeId, Option<NodeHandle<A>>)> = vec![(self.own, None)];
        all.extend(self.members().map(|l| (l.handle.id, Some(l.handle))));
        all.sort_by(|a, b| key.cmp_closeness(a.0, b.0));
        all.into_iter().take(k).map(|x| x.1).collect()
    }

    /// The side of the owner `id` is on (the nearer way round); `None` for the owner itself.
    pub fn side_of(&self, id: NodeId) -> Option<Side> {
        if id == self.own {
            return None;
        }
        Some(if self.own.cw_distance(id) <= id.cw_distance(self.own) {
            Side::Right
        } else {
            Side::Left
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn h(v: u128) -> NodeHandle<u32> {
        NodeHandle::new(NodeId::from_u128(v), v as u32)
    }

    fn build(own: u128, half: usize, ids: &[u128]) -> LeafSet<u32> {
        let mut ls = LeafSet::new(NodeId::from_u128(own), half);
        let mut ev = Vec::new();
        for &i in ids {
            ls.insert(h(i), Rtt::UNKNOWN, &mut ev);
        }
        ls
    }

    /// The brute-force model: the `half` nearest ids each way round.
    fn model(own: u128, half: usize, ids: &BTreeSet<u128>) -> (Vec<u128>, Vec<u128>) {
        let o = NodeId::from_u128(own);
        let others: Vec<u128> = ids.iter().copied().filter(|&i| i != own).collect();
        let mut right = others.clone();
        right.sort_by_key(|&i| o.cw_distance(NodeId::from_u128(i)));
        right.truncate(half);
        let mut left = others;
        left.sort_by_key(|&i| NodeId::from_u128(i).cw_distance(o));
        left.truncate(half);
        (left, right)
    }

    fn ids_of(v: &[Leaf<u32>]) -> Vec<u128> {
        v.iter().map(|l| l.handle.id.as_u128()).collect()
    }

    #[test]
    fn ring_size_estimate_from_density() {
        // A small ring the leaf set covers: exact.
        assert_eq!(build(100, 4, &[200, 300]).estimated_ring_size(), 3.0);
        // 10,000 evenly spaced nodes, 8 a side: the estimate is the true size.
        let n = 10_000u128;
        let gap = u128::MAX / n;
        let ids: Vec<u128> = (1..n).map(|i| i * gap).collect();
        let est = build(0, 8, &ids).estimated_ring_size();
        assert!((est - n as f64).abs() < 1.0, "{est}");
    }

    #[test]
    fn small_ring_members_on_both_sides() {
        let ls = build(100, 4, &[200, 300]);
        assert_eq!(ids_of(ls.side(Side::Right)), vec![200, 300]);
        assert_eq!(ids_of(ls.side(Side::Left)), vec![300, 200]);
        assert!(ls.covers_ring());
        assert_eq!(ls.len(), 2);
        assert_eq!(
            ls.closest(NodeId::from_u128(290), |_| false)
                .map(|x| x.id.as_u128()),
            Some(300)
        );
        assert_eq!(ls.closest(NodeId::from_u128(120), |_| false), None);
    }

    #[test]
    fn a_short_side_in_a_large_ring_does_not_reach_across() {
        // Own 1000; left 990..960 (full, half = 4); right short: 1010 and 1020 only, as
        // after two failures in a ring known to be larger than the leaf set.
        let mut ls = LeafSet::new(NodeId::from_u128(1000), 4);
        assert!(ls.set_wrap(false).is_empty());
        let mut ev = Vec::new();
        for i in [990, 980, 970, 960, 1010, 1020] {
            assert!(ls.insert(h(i), Rtt::UNKNOWN, &mut ev));
        }
        assert!(!ls.covers_ring());
        // A left member is not taken on the right (that would make the sides meet).
        assert!(!ls.insert(h(960), Rtt::UNKNOWN, &mut ev));
        assert_eq!(ids_of(ls.side(Side::Right)), vec![1010, 1020]);
        assert!(!ls.covers_ring());
        assert!(!ls.covers(NodeId::from_u128(5000)));
        // A node beyond the right end still fills the short side, unless it lies
        // implausibly far out for the ids' density (gaps of 10 here: 16 x 4 x 10 = 640).
        assert!(!ls.insert(h(1700), Rtt::UNKNOWN, &mut ev));
        assert!(ls.insert(h(1030), Rtt::UNKNOWN, &mut ev));
        assert!(ls.insert(h(1600), Rtt::UNKNOWN, &mut ev));
        // With wrapping allowed (the default) the left member fills the right side too.
        let mut small = build(1000, 4, &[990, 980, 970, 960, 1010, 1020]);
        assert!(small.covers_ring());
        assert_eq!(ids_of(small.side(Side::Right)), vec![1010, 1020, 960, 970]);
        // Forbidding wrapping afterwards drops them from the side they are across.
        assert!(small.set_wrap(false).is_empty(), "still left members");
        assert_eq!(ids_of(small.side(Side::Right)), vec![1010, 1020]);
        assert_eq!(ids_of(small.side(Side::Left)), vec![990, 980, 970, 960]);
        assert!(!small.covers_ring());
    }
    #[test]
    fn a_node_goes_to_the_side_it_is_nearer_on_when_both_are_short() {
        // A ring of 20 evenly spaced nodes (larger than the leaf set, half = 2), both sides
        // short: the node two gaps to the right is also within the left side's reach (18
        // gaps that way; the limit is 16 x 2 mean gaps), but it belongs on the right.
        let gap = u128::MAX / 20;
        let mut ls = LeafSet::new(NodeId::ZERO, 2);
        assert!(ls.set_wrap(false).is_empty());
        let mut ev = Vec::new();
        assert!(ls.insert(h(gap), Rtt::UNKNOWN, &mut ev));
        assert!(ls.insert(h(u128::MAX - gap + 1), Rtt::UNKNOWN, &mut ev));
        assert!(ls.insert(h(2 * gap), Rtt::UNKNOWN, &mut ev));
        assert_eq!(ids_of(ls.side(Side::Right)), vec![gap, 2 * gap]);
        assert_eq!(ids_of(ls.side(Side::Left)), vec![u128::MAX - gap + 1]);
    }

    #[test]
    fn range_and_eviction() {
        let mut ls = build(1000, 2, &[900, 800, 1100, 1200]);
        assert!(!ls.covers_ring());
        assert!(ls.covers(NodeId::from_u128(850)));
        assert!(ls.covers(NodeId::from_u128(1200)));
        assert!(!ls.covers(NodeId::from_u128(1201)));
        assert!(!ls.covers(NodeId::from_u128(799)));
        let mut ev = Vec::new();
        assert!(ls.insert(h(1050), Rtt::UNKNOWN, &mut ev));
        assert_eq!(ev, vec![h(1200)]);
        assert!(!ls.would_accept(NodeId::from_u128(1300)));
        assert!(ls.would_accept(NodeId::from_u128(950)));
        assert!(ls.remove(NodeId::from_u128(1050)));
        assert!(!ls.remove(NodeId::from_u128(1050)));
        assert_eq!(ids_of(ls.side(Side::Right)), vec![1100]);
    }

    #[test]
    fn replica_set_orders_by_closeness() {
        let ls = build(1000, 4, &[900, 800, 1100, 1200]);
        let r = ls.replica_set(NodeId::from_u128(1090), 3);
        let got: Vec<u128> = r
            .iter()
            .map(|x| x.map_or(1000, |h| h.id.as_u128()))
            .collect();
        assert_eq!(got, vec![1100, 1000, 1200]);
    }

    proptest! {
        #[test]
        fn matches_model(own: u128, half in 1usize..8, ids in proptest::collection::vec(any::<u128>(), 0..40),
                         removals in proptest::collection::vec(any::<prop::sample::Index>(), 0..10)) {
            let mut set: BTreeSet<u128> = ids.iter().copied().collect();
            let mut ls = build(own, half, &ids);
            for r in &removals {
                if set.is_empty() { break; }
                let victim = *set.iter().nth(r.index(set.len())).unwrap();
                set.remove(&victim);
                ls.remove(NodeId::from_u128(victim));
                // The model has no memory of evicted nodes: re-offer every live one, as the
                // node's repair does.
                let mut ev = Vec::new();
                for &i in &set { ls.insert(h(i), Rtt::UNKNOWN, &mut ev); }
            }
            let (left, right) = model(own, half, &set);
            // Membership answers agree with the sides, and the inline farthest distances
            // with the members, also after forbidding the sides to meet.
            for &i in ids.iter().chain([own].iter()) {
                let member = left.contains(&i) || right.contains(&i);
                prop_assert_eq!(ls.contains(NodeId::from_u128(i)), member);
            }
            prop_assert_eq!(ids_of(ls.side(Side::Left)), left.clone());
            prop_assert_eq!(ids_of(ls.side(Side::Right)), right.clone());
            let distinct: BTreeSet<u128> = left.iter().chain(&right).copied().collect();
            let listed: Vec<u128> = ls.members().map(|l| l.handle.id.as_u128()).collect();
            prop_assert_eq!(listed.iter().copied().collect::<BTreeSet<u128>>(), distinct.clone());
            prop_assert_eq!(listed.len(), distinct.len());
            prop_assert_eq!(ls.len(), distinct.len());
            for wrap in [true, false] {
                ls.set_wrap(wrap);
                let far = ls.far;
                ls.refresh_far();
                prop_assert_eq!(far, ls.far);
            }
        }

        #[test]
        fn accepts_any_answers_as_the_built_leaf_set(own in 0u128..64, half in 1usize..8,
                                                      ids in proptest::collection::vec(0u128..64, 0..40)) {
            // Small ids: repeats and the owner among them.
            let theirs = build(own, half, &ids);
            let list: Vec<NodeHandle<u32>> = ids.iter().map(|&i| h(i)).collect();
            let own = NodeId::from_u128(own);
            for id in (0..64).map(NodeId::from_u128) {
                prop_assert_eq!(LeafSet::accepts_any(own, half, &list, [id]), theirs.would_accept(id));
            }
            let all = (0..64).map(NodeId::from_u128);
            prop_assert_eq!(LeafSet::accepts_any(own, half, &list, all.clone()),
                            all.clone().any(|id| theirs.would_accept(id)));
        }

        #[test]
        fn closest_is_true_closest_when_covered(own: u128, half in 1usize..6,
                                                ids in proptest::collection::vec(any::<u128>(), 0..30), key: u128) {
            let set: BTreeSet<u128> = ids.iter().copied().chain([own]).collect();
            let ls = build(own, half, &ids);
            let k = NodeId::from_u128(key);
            if ls.covers(k) {
                let truth = set.iter().copied().min_by(|&a, &b| k.cmp_closeness(NodeId::from_u128(a), NodeId::from_u128(b))).unwrap();
                let got = ls.closest(k, |_| false).map_or(own, |x| x.id.as_u128());
                prop_assert_eq!(got, truth);
            }
            // Both sides meet exactly when the ring is small enough to be known whole.
            prop_assert_eq!(ls.covers_ring(), set.len() - 1 < 2 * half);
        }
    }
}
