//! [`SplitStream`]: high-bandwidth multicast over a forest of Scribe trees (SOSP 2003).
//!
//! A channel (a 128-bit id) has S stripes (default 16, a power of two); stripe `i`'s topic
//! id is the channel id with its first `log2(S)` bits replaced by `i`, so the stripe ids
//! differ in the first digit when S = 2^b. Every member subscribes to every stripe. Since
//! Pastry routes towards a stripe id through nodes sharing ever longer prefixes with it,
//! the interior nodes of stripe `i`'s tree are nodes whose first digit is `i` (their
//! *primary* stripe): each node forwards (is interior) in its primary stripe only, which
//! makes the trees interior-node-disjoint where capacity allows.
//!
//! Capacity: a node forwards to at most `capacity` children over all stripes. A node
//! asked to adopt a child follows the paper's push-down:
//! - a request for a stripe that is not its primary (and that it is not root of) is
//!   refused even with spare capacity (deviation: the paper and FreePastry accept while
//!   there is room; refusing keeps far more nodes interior in one stripe only, measured
//!   in the tests), and the search moves on to its children sharing the stripe's first
//!   digit, then its parent;
//! - a request for its primary stripe is accepted by evicting a child from a non-primary
//!   stripe (it never keeps children there when its own stripe needs the room); failing
//!   that, the child in the primary stripe sharing the shortest prefix with the stripe id
//!   is evicted, unless the newcomer's prefix is no longer.
//!
//! - when full, the child evicted from a non-primary stripe is taken from the stripe where
//!   the node has the fewest children, so that its forwarding there ends soonest.
//!
//! An evicted or refused node ("orphan") that finds no parent anycasts to the channel's
//! spare-capacity group: a Scribe group whose members are the nodes with spare capacity,
//! and the full nodes that hold children outside their primary stripe (they can make room
//! for their primary stripe). A member accepts only when it is not a descendant of the
//! orphan in that stripe (its root path does not contain the orphan), then adopts it,
//! joining the stripe's tree as a forwarder if it was not in it. The orphan searches in
//! up to three passes, each started when the previous one fails; the first two search that
//! group, the last the channel's *room group*, whose members are only the nodes with spare
//! capacity (the paper's spare-capacity group: with capacity = S the forest has about S
//! free slots in all, which a bounded search of the larger group did not find):
//! 1. members whose adopting keeps the forest disjoint: with room, and the stripe is their
//!    primary one, or they are its root, or they already forward in it (no new interior
//!    (node, stripe) pair); or full, the stripe is their primary one, and they evict a
//!    non-primary child to make room (deviation: the paper's spare-capacity group holds
//!    only nodes with room, so its orphans land wherever there is room);
//! 2. members with room for at least half their capacity (a node that will take several
//!    orphans of the stripe, rather than many nodes taking one each);
//! 3. any member with room (the paper's search).
//!
//! Content: [`SplitStream::publish`] splits a block into S contiguous parts of nearly equal
//! size and publishes part `i` on stripe `i`. There is no erasure code: a node missing a
//! stripe misses that part of the block (it is told with the parts it did get). Each part
//! carries (block number, block length, part index), so receivers reassemble blocks and
//! count stripes received; reassembly buffers are bounded (`max_pending_blocks`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use pastry_core::rng::Rng;
use pastry_core::{
    Address, AppContext, Application, Delivery, Forward, ForwardAction, NodeHandle, NodeId,
};

use crate::config::{ScribeConfig, ScribeConfigError};
use crate::policy::{Admission, AdmitKind, ScribePolicy, ScribeView, shuffle};
use crate::scribe::{Scribe, ScribeError, ScribeEvent};
use crate::{TopicId, topic_id_bytes};

/// SplitStream's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitStreamConfig {
    /// Number of stripes S: a power of two in 2..=256. Default 16 (one per digit with
    /// Pastry's b = 4).
    pub stripes: usize,
    /// Outgoing capacity: children over all stripes at most, in stripes' worth of
    /// bandwidth. Default 16 (forward as much as one receives).
    pub capacity: usize,
    /// Blocks being reassembled at most; the oldest incomplete one is given up beyond it.
    /// Default 64.
    pub max_pending_blocks: usize,
    /// The embedded Scribe's configuration. Its child bounds are raised to at least
    /// `capacity` (per topic) and `capacity` + its own total (overall).
    pub scribe: ScribeConfig,
}

impl Default for SplitStreamConfig {
    fn default() -> Self {
        SplitStreamConfig {
            stripes: 16,
            capacity: 16,
            max_pending_blocks: 64,
            scribe: ScribeConfig::default(),
        }
    }
}

impl SplitStreamConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`ScribeConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ScribeConfigError> {
        if !self.stripes.is_power_of_two() || !(2..=256).contains(&self.stripes) {
            return Err(ScribeConfigError(
                "stripes must be a power of two in 2..=256",
            ));
        }
        if self.capacity == 0 || self.capacity > 4096 {
            return Err(ScribeConfigError("capacity must be in 1..=4096"));
        }
        if self.max_pending_blocks == 0 {
            return Err(ScribeConfigError("max_pending_blocks must be positive"));
        }
        self.scribe.validate()
    }

    fn stripe_bits(&self) -> u32 {
        self.stripes.trailing_zeros()
    }
}

/// What SplitStream tells the host, through `AppContext::notify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitStreamEvent {
    /// One stripe's part of a block arrived.
    StripeData {
        /// The stripe index.
        stripe: usize,
        /// The publisher.
        publisher: NodeId,
        /// The publisher's block number.
        block: u64,
        /// The part's bytes.
        part: Bytes,
    },
    /// Every part of a block arrived; `data` is the whole block.
    BlockReceived {
        /// The publisher.
        publisher: NodeId,
        /// The block number.
        block: u64,
        /// The block.
        data: Bytes,
    },
    /// A block was given up incomplete (its buffer was needed for newer blocks).
    BlockIncomplete {
        /// The publisher.
        publisher: NodeId,
        /// The block number.
        block: u64,
        /// Stripes whose part arrived.
        stripes: Vec<usize>,
    },
    /// The node is attached to stripe `stripe`'s tree (or is its root).
    StripeAttached {
        /// The stripe index.
        stripe: usize,
    },
    /// The node lost its parent in a stripe and looks for a new one.
    StripeLost {
        /// The stripe index.
        stripe: usize,
    },
}

/// Counters a SplitStream node keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitStreamStats {
    /// Parts received, per stripe.
    pub stripe_parts: Vec<u64>,
    /// Blocks fully reassembled.
    pub blocks_complete: u64,
    /// Blocks given up incomplete.
    pub blocks_incomplete: u64,
    /// Parts that did not decode.
    pub bad_parts: u64,
    /// Anycasts to the spare-capacity group sent (orphans looking for a parent).
    pub spare_anycasts: u64,
    /// Orphans adopted through the spare-capacity group.
    pub spare_adoptions: u64,
}

/// The channel's ids and this node's place in it, shared with the policy.
#[derive(Debug, Clone)]
struct Layout {
    stripes: Vec<TopicId>,
    spare: TopicId,
    /// The room group: only the nodes with spare capacity (the paper's spare-capacity
    /// group), searched by the second and third passes.
    room: TopicId,
    bits: u32,
    capacity: usize,
}

impl Layout {
    /// True for the two groups orphans anycast to.
    fn is_spare(&self, topic: TopicId) -> bool {
        topic == self.spare || topic == self.room
    }
    fn stripe_of(&self, topic: TopicId) -> Option<usize> {
        self.stripes.iter().position(|&s| s == topic)
    }
    fn digit(&self, id: NodeId) -> usize {
        (id.as_u128() >> (128 - self.bits)) as usize
    }
    fn primary(&self, me: NodeId) -> TopicId {
        self.stripes[self.digit(me)]
    }
    /// Bits `id` shares with `topic`, in whole stripe digits.
    fn prefix(&self, topic: TopicId, id: NodeId) -> u32 {
        (topic.as_u128() ^ id.as_u128()).leading_zeros() / self.bits
    }
    fn used<A: Address>(&self, view: &ScribeView<'_, A>) -> usize {
        self.stripes.iter().map(|&s| view.child_count(s)).sum()
    }
    /// Children this node may drop to make room for its primary stripe: those of the
    /// non-primary stripe (not one it is root of) where it has the fewest children, so
    /// that an eviction ends its forwarding there as soon as possible.
    fn victims<A: Address>(&self, view: &ScribeView<'_, A>) -> Vec<(TopicId, NodeHandle<A>)> {
        let prim = self.primary(view.local().id);
        self.stripes
            .iter()
            .filter(|&&s| s != prim && !view.is_root(s) && view.child_count(s) > 0)
            .min_by_key(|&&s| view.child_count(s))
            .map(|&s| view.children(s).map(|c| (s, c)).collect())
            .unwrap_or_default()
    }
}

/// Searches of the spare-capacity group an orphan makes, in order: first only members
/// whose adopting it keeps the forest interior-node-disjoint (the stripe is their primary
/// one, they are its root, or they forward in it already), then members with room for at
/// least half their capacity, then any member with room (see the module documentation).
const SPARE_PASSES: u8 = 3;

/// SplitStream's Scribe policy: capacity over stripes, push-down, spare-capacity anycasts.
struct StripePolicy {
    layout: Layout,
    rng: Rng,
}

impl<A: Address> ScribePolicy<A> for StripePolicy {
    fn admit(
        &mut self,
        view: &ScribeView<'_, A>,
        topic: TopicId,
        child: &NodeHandle<A>,
        kind: AdmitKind,
    ) -> Admission<A> {
        let l = &self.layout;
        if l.stripe_of(topic).is_none() {
            return if view.has_room(topic) {
                Admission::Accept
            } else {
                Admission::Refuse
            };
        }
        let me = view.local().id;
        let primary = l.primary(me) == topic;
        // Forwarding only in the primary stripe keeps the trees interior-node-disjoint:
        // a node adopts in another stripe only as its root, or through the spare-capacity
        // group (`Scribe::adopt`, which does not ask the policy) when the nodes of the
        // stripe's own digit have no room left.
        let _ = kind;
        if !primary && !view.is_root(topic) {
            return Admission::Refuse;
        }
        if l.used(view) < l.capacity && view.has_room(topic) {
            return Admission::Accept;
        }
        // Full, and the request is for our own stripe (or one we are root of): make room,
        // first from a non-primary stripe we are not root of.
        let victims = l.victims(view);
        if !victims.is_empty() {
            let (topic, child) = victims[self.rng.below(victims.len() as u64) as usize];
            return Admission::AcceptEvicting { topic, child };
        }
        // Then the child of this stripe sharing the shortest prefix with it.
        let worst = view
            .children(topic)
            .min_by_key(|c| (l.prefix(topic, c.id), c.id));
        match worst {
            Some(w) if l.prefix(topic, w.id) < l.prefix(topic, child.id) => {
                Admission::AcceptEvicting { topic, child: w }
            }
            _ => Admission::Refuse,
        }
    }

    fn accept_anycast(
        &mut self,
        view: &ScribeView<'_, A>,
        topic: TopicId,
        origin: &NodeHandle<A>,
        payload: &Bytes,
    ) -> bool {
        let l = &self.layout;
        if !l.is_spare(topic) {
            return true;
        }
        let Some((stripe, pass, orphan)) = decode_orphan::<A>(payload) else {
            return false;
        };
        let Some(&st) = l.stripes.get(stripe) else {
            return false;
        };
        let me = view.local().id;
        let primary = l.primary(me) == st;
        let room = l.used(view) < l.capacity && view.has_room(st);
        // Taking the orphan keeps this node interior in its primary stripe only (or in a
        // stripe where it forwards already, which adds no new (node, stripe) pair).
        let disjoint = primary || view.is_root(st) || view.child_count(st) > 0;
        let free = l.capacity.saturating_sub(l.used(view));
        let ok = match pass {
            0 => (room && disjoint) || (primary && !room && !l.victims(view).is_empty()),
            1 => room && free * 2 >= l.capacity,
            _ => room,
        };
        ok && orphan.id == origin.id
            && orphan.id != me
            && !view.path(st).contains(&orphan.id)
            && view.parent(st).is_none_or(|p| p.id != orphan.id)
            && !view.is_child(st, orphan.id)
    }

    fn search_order(
        &mut self,
        view: &ScribeView<'_, A>,
        topic: TopicId,
        subscribe: bool,
        rng: &mut Rng,
    ) -> (Vec<NodeHandle<A>>, Vec<NodeHandle<A>>) {
        let l = &self.layout;
        let (mut good, mut bad): (Vec<_>, Vec<_>) = view
            .children(topic)
            .partition(|c| !subscribe || l.prefix(topic, c.id) > 0);
        shuffle(&mut good, rng);
        shuffle(&mut bad, rng);
        let mut front = good;
        let mut back = Vec::new();
        if let Some(p) = view.parent(topic) {
            if subscribe && l.stripe_of(topic).is_some() && l.prefix(topic, p.id) > 0 {
                front.insert(0, p);
            } else {
                back.push(p);
            }
        }
        // Nodes of other digits refuse adoptions in this stripe: a subscription's search
        // skips them (their subtrees hold only spare-capacity adoptees).
        if !subscribe || l.stripe_of(topic).is_none() {
            back.extend(bad);
        }
        (front, back)
    }
}

fn encode_orphan<A: Address>(stripe: usize, pass: u8, orphan: NodeHandle<A>) -> Bytes {
    let mut v = Vec::with_capacity(2 + 16 + orphan.addr.encoded_len());
    v.push(stripe as u8);
    v.push(pass);
    v.extend_from_slice(&orphan.id.to_bytes());
    orphan.addr.encode(&mut v);
    Bytes::from(v)
}

fn decode_orphan<A: Address>(b: &[u8]) -> Option<(usize, u8, NodeHandle<A>)> {
    let mut r = pastry_core::codec::Reader::new(b);
    let stripe = usize::from(r.u8().ok()?);
    let pass = r.u8().ok()?;
    let id = NodeId::from_bytes(r.array::<16>().ok()?);
    let addr = A::decode(&mut r).ok()?;
    (r.is_empty() && pass < SPARE_PASSES).then_some((stripe, pass, NodeHandle::new(id, addr)))
}

/// Length of a part's header: block number, block length, part index.
const PART_HEADER: usize = 8 + 4 + 2;

struct Partial {
    parts: Vec<Option<Bytes>>,
    have: usize,
    len: usize,
}

/// The SplitStream application for one channel. Register it on a node under its own
/// application id; it embeds its own Scribe (whose messages travel under the same id).
pub struct SplitStream<A: Address> {
    scribe: Scribe<A>,
    layout: Layout,
    channel: NodeId,
    cfg: SplitStreamConfig,
    member: bool,
    spare_member: bool,
    room_member: bool,
    next_block: u64,
    blocks: BTreeMap<(NodeId, u64), Partial>,
    orphan_searches: BTreeSet<usize>,
    /// Pending spare-group anycasts: anycast id -> (stripe, pass).
    orphan_anycasts: BTreeMap<u64, (usize, u8)>,
    stats: SplitStreamStats,
}

impl<A: Address> core::fmt::Debug for SplitStream<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SplitStream")
            .field("channel", &self.channel)
            .field("member", &self.member)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<A: Address> SplitStream<A> {
    /// SplitStream for `channel`.
    ///
    /// # Errors
    /// [`ScribeConfigError`] when `cfg` does not validate.
    pub fn new(channel: NodeId, cfg: SplitStreamConfig) -> Result<Self, ScribeConfigError> {
        cfg.validate()?;
        let bits = cfg.stripe_bits();
        let low_mask = u128::MAX >> bits;
        let stripes: Vec<TopicId> = (0..cfg.stripes as u128)
            .map(|i| NodeId::from_u128((channel.as_u128() & low_mask) | (i << (128 - bits))))
            .collect();
        let mut spare_src = b"splitstream-spare:".to_vec();
        spare_src.extend_from_slice(&channel.to_bytes());
        let mut room_src = b"splitstream-room:".to_vec();
        room_src.extend_from_slice(&channel.to_bytes());
        let layout = Layout {
            stripes,
            spare: topic_id_bytes(&spare_src),
            room: topic_id_bytes(&room_src),
            bits,
            capacity: cfg.capacity,
        };
        let mut scfg = cfg.scribe.clone();
        scfg.max_children_per_topic = scfg.max_children_per_topic.max(cfg.capacity);
        scfg.max_children_total = scfg.max_children_total.max(cfg.capacity + 16);
        let policy = StripePolicy {
            layout: layout.clone(),
            rng: Rng::new(scfg.seed ^ 0x5b11_7000),
        };
        let scribe = Scribe::with_policy(scfg, Box::new(policy))?.embedded();
        Ok(SplitStream {
            scribe,
            layout,
            channel,
            stats: SplitStreamStats {
                stripe_parts: vec![0; cfg.stripes],
                ..SplitStreamStats::default()
            },
            cfg,
            member: false,
            spare_member: false,
            room_member: false,
            next_block: 0,
            blocks: BTreeMap::new(),
            orphan_searches: BTreeSet::new(),
            orphan_anycasts: BTreeMap::new(),
        })
    }

    /// Joins the channel: subscribes to every stripe (and to the spare-capacity group
    /// while the node has spare capacity).
    ///
    /// # Errors
    /// [`ScribeError::TooManyTopics`] when the embedded Scribe has no room for the stripes.
    pub fn subscribe(&mut self, ctx: &mut AppContext<'_, A>) -> Result<(), ScribeError> {
        self.member = true;
        let mut r = Ok(());
        for s in self.layout.stripes.clone() {
            if let Err(e) = self.scribe.subscribe(ctx, s) {
                r = Err(e);
            }
        }
        self.after(ctx);
        r
    }

    /// Leaves the channel (stays a forwarder where it has children).
    pub fn unsubscribe(&mut self, ctx: &mut AppContext<'_, A>) {
        self.member = false;
        for s in self.layout.stripes.clone() {
            self.scribe.unsubscribe(ctx, s);
        }
        self.after(ctx);
    }

    /// Publishes `block`: part `i` of S nearly equal contiguous parts goes on stripe `i`.
    /// Returns the block number.
    ///
    /// # Errors
    /// From [`Scribe::publish`] (payload too large, queue full); parts published before
    /// the error stay published.
    pub fn publish(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        block: Bytes,
    ) -> Result<u64, ScribeError> {
        self.next_block += 1;
        let no = self.next_block;
        let n = self.layout.stripes.len();
        let len = block.len();
        let mut r = Ok(no);
        for (i, &s) in self.layout.stripes.clone().iter().enumerate() {
            let part = block.slice(len * i / n..len * (i + 1) / n);
            let mut b = BytesMut::with_capacity(PART_HEADER + part.len());
            b.put_u64(no);
            b.put_u32(len as u32);
            b.put_u16(i as u16);
            b.put_slice(&part);
            if let Err(e) = self.scribe.publish(ctx, s, b.freeze()) {
                r = Err(e);
            }
        }
        self.after(ctx);
        r
    }

    // ---- inspection ----

    /// The channel id.
    pub fn channel(&self) -> NodeId {
        self.channel
    }

    /// The stripes' topic ids, by stripe index.
    pub fn stripe_ids(&self) -> &[TopicId] {
        &self.layout.stripes
    }

    /// The spare-capacity group's topic id.
    pub fn spare_group(&self) -> TopicId {
        self.layout.spare
    }

    /// Index of this node's primary stripe (its id's first digit).
    pub fn primary_stripe(&self, me: NodeId) -> usize {
        self.layout.digit(me)
    }

    /// Children per stripe, by stripe index.
    pub fn children_per_stripe(&self) -> Vec<usize> {
        self.layout
            .stripes
            .iter()
            .map(|&s| self.scribe.children(s).len())
            .collect()
    }

    /// Stripes in which this node has children (is interior).
    pub fn interior_stripes(&self) -> Vec<usize> {
        self.children_per_stripe()
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, _)| i)
            .collect()
    }

    /// Children over all stripes (used capacity).
    pub fn used_capacity(&self) -> usize {
        self.children_per_stripe().iter().sum()
    }

    /// Stripes in which the node is attached (has a parent or is root).
    pub fn attached_stripes(&self) -> Vec<usize> {
        self.layout
            .stripes
            .iter()
            .enumerate()
            .filter(|(_, s)| self.scribe.parent(**s).is_some() || self.scribe.is_root(**s))
            .map(|(i, _)| i)
            .collect()
    }

    /// The counters (`stripe_parts[i]`: parts received on stripe `i`).
    pub fn stats(&self) -> &SplitStreamStats {
        &self.stats
    }

    /// The embedded Scribe (trees, counters).
    pub fn scribe(&self) -> &Scribe<A> {
        &self.scribe
    }

    // ---- internals ----

    /// Handles what the embedded Scribe reported, then keeps spare-group membership right.
    fn after(&mut self, ctx: &mut AppContext<'_, A>) {
        for _ in 0..4 {
            let events = self.scribe.take_events();
            if events.is_empty() {
                break;
            }
            for e in events {
                self.on_scribe_event(ctx, e);
            }
            self.update_spare(ctx);
        }
    }

    fn update_spare(&mut self, ctx: &mut AppContext<'_, A>) {
        // A full node that forwards in a stripe other than its primary one stays in the
        // group: it takes an orphan of its primary stripe by evicting such a child.
        let spare = self.member
            && (self.used_capacity() < self.cfg.capacity
                || !self.layout.victims(&self.view(ctx)).is_empty());
        if spare && !self.spare_member {
            self.spare_member = self.scribe.subscribe(ctx, self.layout.spare).is_ok();
        } else if !spare && self.spare_member {
            self.spare_member = false;
            self.scribe.unsubscribe(ctx, self.layout.spare);
        }
        // Only nodes with room: the group the last pass searches. With capacity = S the
        // whole forest has about S free slots; in the spare group above (which also holds
        // every full node forwarding outside its primary stripe) a bounded search missed
        // them (measured: 26 of 10,000 nodes never attached to every stripe).
        let room = self.member && self.used_capacity() < self.cfg.capacity;
        if room && !self.room_member {
            self.room_member = self.scribe.subscribe(ctx, self.layout.room).is_ok();
        } else if !room && self.room_member {
            self.room_member = false;
            self.scribe.unsubscribe(ctx, self.layout.room);
        }
    }

    fn on_scribe_event(&mut self, ctx: &mut AppContext<'_, A>, e: ScribeEvent<A>) {
        match e {
            ScribeEvent::Delivered {
                topic,
                publisher,
                payload,
                ..
            } => {
                if let Some(stripe) = self.layout.stripe_of(topic) {
                    self.on_part(ctx, stripe, publisher, payload);
                }
            }
            ScribeEvent::Subscribed { topic, .. } => {
                if let Some(stripe) = self.layout.stripe_of(topic) {
                    self.orphan_searches.remove(&stripe);
                    ctx.notify(Box::new(SplitStreamEvent::StripeAttached { stripe }));
                }
            }
            ScribeEvent::ParentLost { topic, .. } => {
                if let Some(stripe) = self.layout.stripe_of(topic) {
                    ctx.notify(Box::new(SplitStreamEvent::StripeLost { stripe }));
                }
            }
            ScribeEvent::SubscribeFailed { topic, .. } => {
                // No tree node would adopt us: ask the spare-capacity group.
                if let Some(stripe) = self.layout.stripe_of(topic)
                    && self.orphan_searches.insert(stripe)
                {
                    self.spare_search(ctx, stripe, 0);
                }
            }
            ScribeEvent::AnycastSucceeded { topic, id, .. } if self.layout.is_spare(topic) => {
                // One search per stripe at a time; the next failure may start another.
                if let Some((stripe, _)) = self.orphan_anycasts.remove(&id) {
                    self.orphan_searches.remove(&stripe);
                }
            }
            ScribeEvent::AnycastFailed { topic, id } if self.layout.is_spare(topic) => {
                if let Some((stripe, pass)) = self.orphan_anycasts.remove(&id) {
                    let st = self.layout.stripes[stripe];
                    let orphan = self.scribe.parent(st).is_none() && !self.scribe.is_root(st);
                    if orphan && pass + 1 < SPARE_PASSES && self.orphan_searches.contains(&stripe) {
                        self.spare_search(ctx, stripe, pass + 1);
                    } else {
                        self.orphan_searches.remove(&stripe);
                    }
                }
            }
            ScribeEvent::AnycastReceived { topic, payload, .. } if self.layout.is_spare(topic) => {
                if let Some((stripe, _, orphan)) = decode_orphan::<A>(&payload)
                    && let Some(&st) = self.layout.stripes.get(stripe)
                {
                    // Full and asked for the primary stripe: drop a non-primary child first.
                    if self.used_capacity() >= self.cfg.capacity
                        && st == self.layout.primary(ctx.local_handle().id)
                    {
                        let victim = self.layout.victims(&self.view(ctx)).first().copied();
                        match victim {
                            Some((vt, v)) => {
                                self.scribe.evict(ctx, vt, v.id);
                            }
                            None => return,
                        }
                    }
                    if self.scribe.adopt(ctx, st, orphan).is_ok() {
                        self.stats.spare_adoptions += 1;
                    }
                }
            }
            _ => {}
        }
    }

    fn view(&self, ctx: &AppContext<'_, A>) -> ScribeView<'_, A> {
        self.scribe.view(ctx.local_handle())
    }

    /// Anycasts to the spare-capacity group for a parent in `stripe` (search `pass`).
    fn spare_search(&mut self, ctx: &mut AppContext<'_, A>, stripe: usize, pass: u8) {
        let payload = encode_orphan(stripe, pass, ctx.local_handle());
        let group = if pass + 1 < SPARE_PASSES {
            self.layout.spare
        } else {
            self.layout.room
        };
        match self.scribe.anycast(ctx, group, payload) {
            Ok(id) => {
                self.stats.spare_anycasts += 1;
                self.orphan_anycasts.insert(id, (stripe, pass));
            }
            Err(_) => {
                self.orphan_searches.remove(&stripe);
            }
        }
    }

    fn on_part(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        stripe: usize,
        publisher: NodeId,
        payload: Bytes,
    ) {
        let n = self.layout.stripes.len();
        if payload.len() < PART_HEADER {
            self.stats.bad_parts += 1;
            return;
        }
        let block = u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(payload[8..12].try_into().unwrap_or_default()) as usize;
        let idx = usize::from(u16::from_be_bytes(
            payload[12..14].try_into().unwrap_or_default(),
        ));
        let part = payload.slice(PART_HEADER..);
        if idx != stripe || part.len() != len * (idx + 1) / n - len * idx / n {
            self.stats.bad_parts += 1;
            return;
        }
        self.stats.stripe_parts[stripe] += 1;
        ctx.notify(Box::new(SplitStreamEvent::StripeData {
            stripe,
            publisher,
            block,
            part: part.clone(),
        }));
        let key = (publisher, block);
        if !self.blocks.contains_key(&key)
            && self.blocks.len() >= self.cfg.max_pending_blocks
            && let Some(((p, b), old)) = self.blocks.pop_first()
        {
            self.stats.blocks_incomplete += 1;
            let stripes = (0..n).filter(|&i| old.parts[i].is_some()).collect();
            ctx.notify(Box::new(SplitStreamEvent::BlockIncomplete {
                publisher: p,
                block: b,
                stripes,
            }));
        }
        let entry = self.blocks.entry(key).or_insert_with(|| Partial {
            parts: vec![None; n],
            have: 0,
            len,
        });
        if entry.len != len || entry.parts[idx].is_some() {
            return;
        }
        entry.parts[idx] = Some(part);
        entry.have += 1;
        if entry.have == n
            && let Some(done) = self.blocks.remove(&key)
        {
            let mut data = BytesMut::with_capacity(done.len);
            for p in done.parts.into_iter().flatten() {
                data.put_slice(&p);
            }
            self.stats.blocks_complete += 1;
            ctx.notify(Box::new(SplitStreamEvent::BlockReceived {
                publisher,
                block,
                data: data.freeze(),
            }));
        }
    }
}

impl<A: Address> Application<A> for SplitStream<A> {
    fn deliver(&mut self, ctx: &mut AppContext<'_, A>, msg: Delivery<A>) {
        self.scribe.on_deliver(ctx, msg);
        self.after(ctx);
    }

    fn forward(&mut self, ctx: &mut AppContext<'_, A>, msg: Forward<'_, A>) -> ForwardAction {
        let a = self.scribe.on_forward(ctx, msg);
        self.after(ctx);
        a
    }

    fn update(&mut self, ctx: &mut AppContext<'_, A>, handle: NodeHandle<A>, joined: bool) {
        self.scribe.on_update(ctx, handle, joined);
        self.after(ctx);
    }

    fn direct(&mut self, ctx: &mut AppContext<'_, A>, from: NodeHandle<A>, data: Bytes) {
        self.scribe.on_direct(ctx, from, data);
        self.after(ctx);
    }

    fn timer(&mut self, ctx: &mut AppContext<'_, A>, token: u64) {
        self.scribe.on_timer(ctx, token);
        self.after(ctx);
    }
}
