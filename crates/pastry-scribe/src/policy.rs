//! [`ScribePolicy`]: the host's say in who becomes a child, who accepts an anycast, and in
//! which order a search visits the tree (FreePastry's `ScribePolicy`).
//!
//! Scribe enforces its own hard bounds ([`crate::ScribeConfig::max_children_per_topic`],
//! [`crate::ScribeConfig::max_children_total`], [`crate::ScribeConfig::max_topics`]) before
//! asking the policy; a policy can only be stricter, or make room by evicting a child.
//! Policies are called synchronously from inside Scribe's upcalls and read the node's
//! Scribe state through a [`ScribeView`]; they never send anything themselves.

use bytes::Bytes;
use pastry_core::rng::Rng;
use pastry_core::{Address, NodeHandle, NodeId};

use crate::TopicId;
use crate::scribe::Topics;

/// What a node does with a node that asks to become its child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission<A> {
    /// Adopt it.
    Accept,
    /// Do not adopt it: the search for a parent goes on (push-down into this node's
    /// children, then up), or the routed subscription goes on towards the root.
    Refuse,
    /// Adopt it after dropping `child` from `topic` (which must be one of this node's
    /// children there); the dropped child looks for a new parent.
    AcceptEvicting {
        /// Topic of the child to drop.
        topic: TopicId,
        /// The child to drop.
        child: NodeHandle<A>,
    },
}

/// How the candidate child reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitKind {
    /// A subscription routed through this node, which is not in the tree yet: accepting
    /// makes this node a forwarder that subscribes on the child's behalf.
    NewForwarder,
    /// A subscription reached this node, which is in the tree (routed to it, or pushed
    /// down to it by a full node).
    Member,
}

/// The host's decisions inside Scribe. Every method has a default, so
/// `struct P; impl ScribePolicy<A> for P {}` is Scribe's plain behaviour.
pub trait ScribePolicy<A: Address>: Send + 'static {
    /// Whether `child` may become this node's child in `topic`. Called only when Scribe's
    /// own bounds leave room ([`ScribeView::has_room`]) or, with `has_room` false, to let
    /// the policy make room by eviction. Default: accept when there is room.
    fn admit(
        &mut self,
        view: &ScribeView<'_, A>,
        topic: TopicId,
        child: &NodeHandle<A>,
        kind: AdmitKind,
    ) -> Admission<A> {
        let _ = (child, kind);
        if view.has_room(topic) {
            Admission::Accept
        } else {
            Admission::Refuse
        }
    }

    /// Whether this node, a member of `topic`, takes the anycast `payload` from `origin`
    /// (the visitor of FreePastry's anycast). Refusing makes the search go on to the next
    /// member. Default: accept.
    fn accept_anycast(
        &mut self,
        view: &ScribeView<'_, A>,
        topic: TopicId,
        origin: &NodeHandle<A>,
        payload: &Bytes,
    ) -> bool {
        let _ = (view, topic, origin, payload);
        true
    }

    /// Orders the nodes a search (push-down of a subscription when `subscribe` is true,
    /// otherwise an anycast) visits next from this node: the returned `front` list is
    /// visited before everything already queued, in order, and `back` after it. Default:
    /// the children in random order at the front (depth-first, spreading load), the parent
    /// at the back (the search climbs only when this subtree is exhausted).
    fn search_order(
        &mut self,
        view: &ScribeView<'_, A>,
        topic: TopicId,
        subscribe: bool,
        rng: &mut Rng,
    ) -> (Vec<NodeHandle<A>>, Vec<NodeHandle<A>>) {
        let _ = subscribe;
        let mut front: Vec<NodeHandle<A>> = view.children(topic).collect();
        shuffle(&mut front, rng);
        let back = view.parent(topic).into_iter().collect();
        (front, back)
    }
}

/// Scribe's plain policy: every default of [`ScribePolicy`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPolicy;

impl<A: Address> ScribePolicy<A> for DefaultPolicy {}

/// Fisher-Yates shuffle with the node's generator.
pub fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// A read-only view of a node's Scribe state, for policies.
pub struct ScribeView<'a, A> {
    pub(crate) me: NodeHandle<A>,
    pub(crate) topics: &'a Topics<A>,
    pub(crate) max_children_per_topic: usize,
    pub(crate) max_children_total: usize,
    pub(crate) max_topics: usize,
}

impl<A: Address> core::fmt::Debug for ScribeView<'_, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ScribeView")
            .field("me", &self.me)
            .field("topics", &self.topics.len())
            .finish_non_exhaustive()
    }
}

impl<A: Address> ScribeView<'_, A> {
    /// This node.
    pub fn local(&self) -> NodeHandle<A> {
        self.me
    }

    /// True when the node keeps state for `topic` (member, forwarder or root).
    pub fn has_topic(&self, topic: TopicId) -> bool {
        self.topics.contains_key(&topic)
    }

    /// True when the local application subscribed to `topic`.
    pub fn is_member(&self, topic: TopicId) -> bool {
        self.topics.get(&topic).is_some_and(|t| t.subscribed)
    }

    /// True when this node acts as the root of `topic`'s tree.
    pub fn is_root(&self, topic: TopicId) -> bool {
        self.topics.get(&topic).is_some_and(|t| t.root)
    }

    /// The node's parent in `topic`.
    pub fn parent(&self, topic: TopicId) -> Option<NodeHandle<A>> {
        self.topics.get(&topic).and_then(|t| t.parent)
    }

    /// The node's children in `topic`.
    pub fn children(&self, topic: TopicId) -> impl Iterator<Item = NodeHandle<A>> + '_ {
        self.topics
            .get(&topic)
            .into_iter()
            .flat_map(|t| t.children.iter().map(|c| c.handle))
    }

    /// Number of children in `topic`.
    pub fn child_count(&self, topic: TopicId) -> usize {
        self.topics.get(&topic).map_or(0, |t| t.children.len())
    }

    /// True when `child` is this node's child in `topic`.
    pub fn is_child(&self, topic: TopicId, child: NodeId) -> bool {
        self.topics
            .get(&topic)
            .is_some_and(|t| t.children.iter().any(|c| c.handle.id == child))
    }

    /// The node's ancestors in `topic`, root first (as far as its parent told it).
    pub fn path(&self, topic: TopicId) -> &[NodeId] {
        self.topics.get(&topic).map_or(&[], |t| &t.path)
    }

    /// Children over all topics.
    pub fn total_children(&self) -> usize {
        self.topics.values().map(|t| t.children.len()).sum()
    }

    /// The topics the node keeps state for, in id order.
    pub fn topics(&self) -> impl Iterator<Item = TopicId> + '_ {
        self.topics.keys().copied()
    }

    /// True when Scribe's own bounds allow one more child in `topic`: under
    /// `max_children_per_topic` there, under `max_children_total` overall, and (when the
    /// node has no state for `topic` yet) under `max_topics`.
    pub fn has_room(&self, topic: TopicId) -> bool {
        let topic_ok = self.has_topic(topic) || self.topics.len() < self.max_topics;
        topic_ok
            && self.child_count(topic) < self.max_children_per_topic
            && self.total_children() < self.max_children_total
    }
}
