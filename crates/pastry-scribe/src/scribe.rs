//! [`Scribe`]: group membership, multicast and anycast over one tree per topic.
//!
//! A topic's tree is the union of the Pastry routes from its members to the topic id's
//! root. A subscription is routed towards the topic; the first node on the way that is
//! already in the tree (seen in the `forward` upcall) adopts the sender and the routing
//! stops; a node not yet in the tree adopts the sender too, becomes a forwarder, and goes
//! on routing the subscription in its own name. Publications are routed to the root, which
//! numbers them and sends them down the tree. Anycasts are routed towards the topic and,
//! from the first tree node met, walk the tree depth first until a member accepts.
//!
//! Repair: parents send heartbeats (data stands in for them); a child that hears nothing
//! for `parent_timeout`, or sees its parent leave its leaf set, subscribes again. Children
//! refresh their parents; a parent drops a child silent for `child_timeout`. A root that is
//! no longer the numerically closest node (a closer node joined) subscribes towards the
//! topic, so the closer node becomes root and adopts it. Root paths travel with
//! acknowledgements and heartbeats, so a node never adopts one of its ancestors and a loop
//! formed by racing repairs is found and broken.
//!
//! Everything Scribe tells the application is a [`ScribeEvent`] handed to the host with
//! `AppContext::notify` (so it surfaces as `pastry_core::Event::Application`).
//! Scribe never blocks, never reads a clock and keeps every list bounded.

use std::collections::{BTreeMap, HashSet, VecDeque};

use bytes::Bytes;
use core::time::Duration;
use pastry_core::rng::Rng;
use pastry_core::{
    Address, AppContext, Application, Delivery, Forward, ForwardAction, Instant, NodeHandle, NodeId,
};

use crate::TopicId;
use crate::config::{ScribeConfig, ScribeConfigError};
use crate::policy::{Admission, AdmitKind, DefaultPolicy, ScribePolicy, ScribeView};
use crate::wire::{self, DataMsg, MAX_PATH, MAX_VISIT, MsgType, ScribeMsg, Search};

/// A [`ScribeView`] borrowing only `self.topics` and `self.cfg`, so that `self.policy` and
/// `self.rng` stay free for the call that reads it.
macro_rules! view {
    ($s:ident, $me:expr) => {
        ScribeView {
            me: $me,
            topics: &$s.topics,
            max_children_per_topic: $s.cfg.max_children_per_topic,
            max_children_total: $s.cfg.max_children_total,
            max_topics: $s.cfg.max_topics,
        }
    };
}

/// The timer token of Scribe's maintenance tick.
pub(crate) const TICK_TOKEN: u64 = 0x5c_0001;

/// Topics a node keeps, at most, only to hold publications that reached it as root before
/// any tree (see `TopicState::held_until`); publications beyond are dropped as before.
const MAX_HELD_TOPICS: usize = 16;

/// What Scribe tells the host, through `AppContext::notify`. Hosts downcast
/// `pastry_core::Event::Application`'s value to `ScribeEvent<A>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScribeEvent<A> {
    /// A message published to a topic this node subscribed to. Each subscriber gets each
    /// message once (duplicates within `dedup_window` are suppressed).
    Delivered {
        /// The topic.
        topic: TopicId,
        /// The root's sequence number for it.
        seq: u64,
        /// The publisher's id.
        publisher: NodeId,
        /// The publisher's message number (what `publish` returned there).
        id: u64,
        /// It came by replay: the node missed it while re-attaching to the tree, and got
        /// it late from its new parent's buffer.
        replayed: bool,
        /// The bytes.
        payload: Bytes,
    },
    /// The node is attached to `topic`'s tree: `parent` adopted it, or (`None`) it is the
    /// root. Reported for subscribed topics on each (re)attachment.
    Subscribed {
        /// The topic.
        topic: TopicId,
        /// The new parent; `None` at the root.
        parent: Option<NodeHandle<A>>,
    },
    /// A subscription attempt failed (no tree node would adopt this node, or no answer in
    /// `subscribe_timeout`). Scribe tries again with backoff until `unsubscribe`.
    SubscribeFailed {
        /// The topic.
        topic: TopicId,
        /// Attempts so far.
        attempts: u32,
    },
    /// The node lost its parent in `topic` (timeout, failure, eviction, loop) and is
    /// subscribing again.
    ParentLost {
        /// The topic.
        topic: TopicId,
        /// The parent lost.
        parent: NodeHandle<A>,
    },
    /// `child` became a child of this node in `topic`.
    ChildAdded {
        /// The topic.
        topic: TopicId,
        /// The child.
        child: NodeHandle<A>,
    },
    /// `child` stopped being a child (it unsubscribed, timed out or was evicted).
    ChildRemoved {
        /// The topic.
        topic: TopicId,
        /// The child.
        child: NodeHandle<A>,
    },
    /// The root never acknowledged publish `id` after `publish_attempts` attempts.
    PublishFailed {
        /// The topic.
        topic: TopicId,
        /// The message number `publish` returned.
        id: u64,
    },
    /// This node (a member) accepted an anycast.
    AnycastReceived {
        /// The topic.
        topic: TopicId,
        /// The node that sent it.
        origin: NodeHandle<A>,
        /// The origin's anycast number.
        id: u64,
        /// The bytes.
        payload: Bytes,
    },
    /// The anycast `id` this node sent was accepted by `by`.
    AnycastSucceeded {
        /// The topic.
        topic: TopicId,
        /// The number `anycast` returned.
        id: u64,
        /// The member that accepted it.
        by: NodeHandle<A>,
    },
    /// The anycast `id` this node sent found no accepting member (or timed out).
    AnycastFailed {
        /// The topic.
        topic: TopicId,
        /// The number `anycast` returned.
        id: u64,
    },
}

/// Why a Scribe command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScribeError {
    /// The node already keeps state for `max_topics` topics.
    TooManyTopics,
    /// The payload is over `max_payload_bytes`.
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Too many publishes or anycasts await an answer.
    QueueFull,
    /// The node has no room for another child.
    NoRoom,
}

impl core::fmt::Display for ScribeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ScribeError::TooManyTopics => f.write_str("too many topics"),
            ScribeError::PayloadTooLarge { len, max } => {
                write!(f, "payload of {len} bytes exceeds the limit of {max}")
            }
            ScribeError::QueueFull => f.write_str("too many requests awaiting an answer"),
            ScribeError::NoRoom => f.write_str("no room for another child"),
        }
    }
}

impl std::error::Error for ScribeError {}

/// Counters a node keeps about its Scribe traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScribeStats {
    /// Messages sent (routed or direct), by [`MsgType::index`].
    pub sent: [u64; MsgType::ALL.len()],
    /// Bytes of Scribe frames sent, by [`MsgType::index`].
    pub sent_bytes: [u64; MsgType::ALL.len()],
    /// Messages received and decoded, by [`MsgType::index`].
    pub received: [u64; MsgType::ALL.len()],
    /// Messages delivered to the local application ([`ScribeEvent::Delivered`]).
    pub delivered: u64,
    /// Data messages received again and suppressed.
    pub duplicates: u64,
    /// Incoming payloads that did not decode (dropped).
    pub bad_messages: u64,
    /// Messages that could not be encoded (over a wire bound; not sent).
    pub encode_failures: u64,
    /// Publications that reached a root with no tree (nobody subscribed).
    pub publishes_without_members: u64,
    /// Parents lost (timeouts, failures, evictions, loops).
    pub parent_losses: u64,
    /// Children dropped for silence.
    pub children_timed_out: u64,
    /// Loops found through root paths and broken.
    pub loops_broken: u64,
    /// Messages sent again to a child that re-attached ([`ScribeMsg::Replay`]).
    pub replayed: u64,
}

impl ScribeStats {
    /// Control messages sent: everything but publications and tree data.
    pub fn control_messages_sent(&self) -> u64 {
        MsgType::ALL
            .iter()
            .filter(|t| !t.is_data())
            .map(|t| self.sent[t.index()])
            .sum()
    }

    /// Bytes of control messages sent.
    pub fn control_bytes_sent(&self) -> u64 {
        MsgType::ALL
            .iter()
            .filter(|t| !t.is_data())
            .map(|t| self.sent_bytes[t.index()])
            .sum()
    }

    /// Data messages (publications and tree data) sent.
    pub fn data_messages_sent(&self) -> u64 {
        self.sent[MsgType::Publish.index()] + self.sent[MsgType::Data.index()]
    }

    /// Bytes of data messages sent.
    pub fn data_bytes_sent(&self) -> u64 {
        self.sent_bytes[MsgType::Publish.index()] + self.sent_bytes[MsgType::Data.index()]
    }
}

/// A snapshot of one topic at one node, for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo<A> {
    /// The topic.
    pub topic: TopicId,
    /// The local application subscribed.
    pub subscribed: bool,
    /// This node acts as the tree's root.
    pub is_root: bool,
    /// The parent, if attached below the root.
    pub parent: Option<NodeHandle<A>>,
    /// The children.
    pub children: Vec<NodeHandle<A>>,
    /// The ancestors, root first, as the parent last told.
    pub path: Vec<NodeId>,
    /// A subscription is in flight.
    pub subscribing: bool,
    /// Highest sequence number seen.
    pub last_seq: u64,
    /// Messages delivered to the local application.
    pub delivered: u64,
}

pub(crate) struct Child<A> {
    pub(crate) handle: NodeHandle<A>,
    heard: Instant,
}

/// A subscription being placed: who, which attempt, and how far it knows the numbering.
#[derive(Clone, Copy)]
struct Sub<A> {
    subscriber: NodeHandle<A>,
    attempt: u64,
    last_seq: u64,
}

struct Pending {
    attempt: u64,
    deadline: Instant,
    tries: u32,
}

/// Bounded duplicate suppression: the last `window` (publisher, id) keys.
#[derive(Default)]
struct Seen {
    order: VecDeque<(NodeId, u64)>,
    set: HashSet<(NodeId, u64)>,
}

impl Seen {
    /// Records `key`; false when it was already there.
    fn insert(&mut self, key: (NodeId, u64), window: usize) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= window
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(key);
        self.set.insert(key);
        true
    }
}

pub(crate) struct TopicState<A> {
    pub(crate) subscribed: bool,
    pub(crate) root: bool,
    pub(crate) parent: Option<NodeHandle<A>>,
    pub(crate) children: Vec<Child<A>>,
    pub(crate) path: Vec<NodeId>,
    parent_heard: Instant,
    pending: Option<Pending>,
    last_seq: u64,
    /// Highest sequence number we know the topic reached, received or not (from our
    /// parent's acknowledgement, subscriptions we take, and, at the root, children's replay
    /// requests): a node that becomes root numbers on from here, not from what it happened
    /// to receive, so that a re-attaching node's replay (by sequence number) finds it.
    known_seq: u64,
    seen: Seen,
    delivered: u64,
    /// Recent messages, oldest first, for children that re-attach (bounded by
    /// `replay_messages` and `replay_bytes`).
    recent: VecDeque<DataMsg>,
    recent_bytes: usize,
    /// The last `after` we asked our parent to replay from (each gap is asked once).
    replay_asked: Option<u64>,
    /// A child asked us for messages after this that we lack while we had no parent to
    /// ask (a node that just became a forwarder to adopt it, or one re-subscribing itself):
    /// the lowest such `after`, asked of the next parent that adopts us.
    replay_owed: Option<u64>,
    /// The node has been in the tree (had a parent, or was root) before: a re-attachment
    /// asks for a replay, a first attachment does not (no history for new subscribers).
    attached_once: bool,
    /// Set on a root that got publications with no tree at all (its predecessor failed and
    /// the orphans have not found it yet): it keeps them, and the topic, until then for
    /// replay to the orphans, and numbers them anew once a subscriber tells it how far the
    /// numbering went. Cleared when it acknowledges a child (its numbering is out then).
    held_until: Option<Instant>,
}

impl<A> TopicState<A> {
    fn new(now: Instant) -> Self {
        TopicState {
            subscribed: false,
            root: false,
            parent: None,
            children: Vec::new(),
            path: Vec::new(),
            parent_heard: now,
            pending: None,
            last_seq: 0,
            known_seq: 0,
            seen: Seen::default(),
            delivered: 0,
            recent: VecDeque::new(),
            recent_bytes: 0,
            replay_asked: None,
            replay_owed: None,
            attached_once: false,
            held_until: None,
        }
    }

    fn child_pos(&self, id: NodeId) -> Option<usize> {
        self.children.iter().position(|c| c.handle.id == id)
    }
}

/// (topic, root path) entries of one heartbeat.
type HeartbeatTopics = Vec<(TopicId, Vec<NodeId>)>;

pub(crate) type Topics<A> = BTreeMap<TopicId, TopicState<A>>;

struct PendingPublish {
    topic: TopicId,
    payload: Bytes,
    deadline: Instant,
    attempts: u32,
}

struct PendingAnycast {
    topic: TopicId,
    deadline: Instant,
}

/// The Scribe application. Register it on a node (`Node::register`) under an application
/// id of the host's choosing, and call [`Scribe::subscribe`], [`Scribe::publish`],
/// [`Scribe::anycast`] through `Node::with_application`.
pub struct Scribe<A: Address> {
    cfg: ScribeConfig,
    topics: Topics<A>,
    policy: Box<dyn ScribePolicy<A>>,
    rng: Rng,
    next_id: u64,
    publishes: BTreeMap<u64, PendingPublish>,
    anycasts: BTreeMap<u64, PendingAnycast>,
    last_sent: BTreeMap<NodeId, Instant>,
    last_refresh: Instant,
    timer_armed: bool,
    events: VecDeque<ScribeEvent<A>>,
    notify: bool,
    stats: ScribeStats,
}

impl<A: Address> core::fmt::Debug for Scribe<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Scribe")
            .field("topics", &self.topics.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<A: Address> Scribe<A> {
    /// A Scribe with the default policy.
    ///
    /// # Errors
    /// [`ScribeConfigError`] when `cfg` does not validate.
    pub fn new(cfg: ScribeConfig) -> Result<Self, ScribeConfigError> {
        Self::with_policy(cfg, Box::new(DefaultPolicy))
    }

    /// A Scribe whose admission, anycast acceptance and search order come from `policy`.
    ///
    /// # Errors
    /// [`ScribeConfigError`] when `cfg` does not validate.
    pub fn with_policy(
        cfg: ScribeConfig,
        policy: Box<dyn ScribePolicy<A>>,
    ) -> Result<Self, ScribeConfigError> {
        cfg.validate()?;
        Ok(Scribe {
            rng: Rng::new(cfg.seed ^ 0x5c41_b3e0_0000_0001),
            cfg,
            topics: BTreeMap::new(),
            policy,
            next_id: 0,
            publishes: BTreeMap::new(),
            anycasts: BTreeMap::new(),
            last_sent: BTreeMap::new(),
            last_refresh: Instant::ZERO,
            timer_armed: false,
            events: VecDeque::new(),
            notify: true,
            stats: ScribeStats::default(),
        })
    }

    /// Events are kept for the embedding application (SplitStream) instead of notified.
    pub(crate) fn embedded(mut self) -> Self {
        self.notify = false;
        self
    }

    /// Drains the events kept by an embedded Scribe.
    pub(crate) fn take_events(&mut self) -> VecDeque<ScribeEvent<A>> {
        core::mem::take(&mut self.events)
    }

    // ---- the host's API ----

    /// Subscribes the local application to `topic`: from now on it gets
    /// [`ScribeEvent::Delivered`] for each message published there. Reports
    /// [`ScribeEvent::Subscribed`] once attached.
    ///
    /// # Errors
    /// [`ScribeError::TooManyTopics`] when the node keeps `max_topics` topics already.
    pub fn subscribe(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
    ) -> Result<(), ScribeError> {
        let r = self.do_subscribe(ctx, topic);
        self.finish(ctx);
        r
    }

    fn do_subscribe(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
    ) -> Result<(), ScribeError> {
        if let Some(st) = self.topics.get_mut(&topic) {
            if !st.subscribed {
                st.subscribed = true;
                if st.root || st.parent.is_some() {
                    let parent = st.parent;
                    self.events
                        .push_back(ScribeEvent::Subscribed { topic, parent });
                }
            }
            return Ok(());
        }
        if self.topics.len() >= self.cfg.max_topics {
            return Err(ScribeError::TooManyTopics);
        }
        let mut st = TopicState::new(ctx.now());
        st.subscribed = true;
        self.topics.insert(topic, st);
        self.start_join(ctx, topic, 0);
        Ok(())
    }

    /// Unsubscribes the local application from `topic`. The node stays in the tree as a
    /// forwarder while it has children; otherwise it leaves it (telling its parent).
    pub fn unsubscribe(&mut self, ctx: &mut AppContext<'_, A>, topic: TopicId) {
        if let Some(st) = self.topics.get_mut(&topic) {
            st.subscribed = false;
            self.maybe_prune(ctx, topic);
        }
        self.finish(ctx);
    }

    /// Publishes `payload` to `topic`: it is routed to the root, which sends it down the
    /// tree. Returns the message number (this node's, increasing). The root acknowledges;
    /// without an acknowledgement the publication is routed again (`publish_attempts`) and
    /// duplicates are suppressed by (publisher, number).
    ///
    /// # Errors
    /// [`ScribeError::PayloadTooLarge`], or [`ScribeError::QueueFull`] when
    /// `max_pending_publishes` publications await acknowledgement.
    pub fn publish(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        payload: Bytes,
    ) -> Result<u64, ScribeError> {
        self.check_payload(&payload)?;
        if self.publishes.len() >= self.cfg.max_pending_publishes {
            return Err(ScribeError::QueueFull);
        }
        let id = self.fresh_id();
        let me = ctx.local_handle();
        self.publishes.insert(
            id,
            PendingPublish {
                topic,
                payload: payload.clone(),
                deadline: ctx.now() + self.cfg.publish_timeout,
                attempts: 1,
            },
        );
        let msg = ScribeMsg::Publish {
            topic,
            publisher: me,
            id,
            payload,
        };
        self.route(ctx, topic, &msg);
        self.finish(ctx);
        Ok(id)
    }

    /// Anycasts `payload` to `topic`: routed towards the topic, it is offered to the tree
    /// members depth first from the first tree node met (so nearby members first), each
    /// member's policy ([`ScribePolicy::accept_anycast`]) accepting or passing it on.
    /// The answer is [`ScribeEvent::AnycastSucceeded`] or [`ScribeEvent::AnycastFailed`]
    /// carrying the returned number.
    ///
    /// # Errors
    /// [`ScribeError::PayloadTooLarge`], or [`ScribeError::QueueFull`] when
    /// `max_pending_anycasts` anycasts await an answer.
    pub fn anycast(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        payload: Bytes,
    ) -> Result<u64, ScribeError> {
        self.check_payload(&payload)?;
        if self.anycasts.len() >= self.cfg.max_pending_anycasts {
            return Err(ScribeError::QueueFull);
        }
        let id = self.fresh_id();
        self.anycasts.insert(
            id,
            PendingAnycast {
                topic,
                deadline: ctx.now() + self.cfg.anycast_timeout,
            },
        );
        let msg = ScribeMsg::Anycast {
            topic,
            origin: ctx.local_handle(),
            id,
            payload,
            search: Search::default(),
        };
        self.route(ctx, topic, &msg);
        self.finish(ctx);
        Ok(id)
    }

    /// Makes `child` a child of this node in `topic` without asking the policy (SplitStream
    /// adopts orphans found through its spare-capacity group this way). A node not yet in
    /// the tree joins it as a forwarder.
    ///
    /// # Errors
    /// [`ScribeError::NoRoom`] when Scribe's bounds leave no room, or `child` is this node
    /// or one of its ancestors in `topic`.
    pub fn adopt(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        child: NodeHandle<A>,
    ) -> Result<(), ScribeError> {
        let r = self.do_adopt(ctx, topic, child);
        self.finish(ctx);
        r
    }

    /// Drops `child` from `topic` without asking the policy, telling it (it looks for a new
    /// parent), and leaves the tree when nothing keeps this node in it. SplitStream makes
    /// room this way for an orphan of its primary stripe found through the spare-capacity
    /// group. Returns false when `child` was not a child in `topic`.
    pub(crate) fn evict(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        child: NodeId,
    ) -> bool {
        if self
            .topics
            .get(&topic)
            .is_none_or(|st| st.child_pos(child).is_none())
        {
            return false;
        }
        self.remove_child(ctx, topic, child, true);
        self.maybe_prune(ctx, topic);
        self.finish(ctx);
        true
    }

    fn do_adopt(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        child: NodeHandle<A>,
    ) -> Result<(), ScribeError> {
        let me = ctx.local_handle();
        if child.id == me.id {
            return Err(ScribeError::NoRoom);
        }
        if let Some(st) = self.topics.get(&topic) {
            if st.child_pos(child.id).is_some() {
                self.ack_child(ctx, topic, child, 0);
                return Ok(());
            }
            if st.path.contains(&child.id) || st.parent.is_some_and(|p| p.id == child.id) {
                return Err(ScribeError::NoRoom);
            }
        }
        if !self.view(me).has_room(topic) {
            return Err(ScribeError::NoRoom);
        }
        if let std::collections::btree_map::Entry::Vacant(e) = self.topics.entry(topic) {
            e.insert(TopicState::new(ctx.now()));
            self.start_join(ctx, topic, 0);
        }
        self.add_child(ctx, topic, child, 0);
        Ok(())
    }

    // ---- inspection ----

    /// The configuration.
    pub fn config(&self) -> &ScribeConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> &ScribeStats {
        &self.stats
    }

    /// The topics this node keeps state for (member, forwarder or root), in id order.
    pub fn topics(&self) -> impl Iterator<Item = TopicId> + '_ {
        self.topics.keys().copied()
    }

    /// A snapshot of `topic` at this node; `None` when the node is not in its tree.
    pub fn topic_info(&self, topic: TopicId) -> Option<TopicInfo<A>> {
        self.topics.get(&topic).map(|st| TopicInfo {
            topic,
            subscribed: st.subscribed,
            is_root: st.root,
            parent: st.parent,
            children: st.children.iter().map(|c| c.handle).collect(),
            path: st.path.clone(),
            subscribing: st.pending.is_some(),
            last_seq: st.last_seq,
            delivered: st.delivered,
        })
    }

    /// True when the local application subscribed to `topic`.
    pub fn is_subscribed(&self, topic: TopicId) -> bool {
        self.topics.get(&topic).is_some_and(|t| t.subscribed)
    }

    /// True when this node acts as `topic`'s root.
    pub fn is_root(&self, topic: TopicId) -> bool {
        self.topics.get(&topic).is_some_and(|t| t.root)
    }

    /// The parent in `topic`.
    pub fn parent(&self, topic: TopicId) -> Option<NodeHandle<A>> {
        self.topics.get(&topic).and_then(|t| t.parent)
    }

    /// The children in `topic`.
    pub fn children(&self, topic: TopicId) -> Vec<NodeHandle<A>> {
        self.topics
            .get(&topic)
            .map(|t| t.children.iter().map(|c| c.handle).collect())
            .unwrap_or_default()
    }

    /// Children over all topics (the node's stress).
    pub fn total_children(&self) -> usize {
        self.topics.values().map(|t| t.children.len()).sum()
    }

    /// Publications awaiting the root's acknowledgement.
    pub fn pending_publishes(&self) -> usize {
        self.publishes.len()
    }

    /// A read-only view for policies and embedding applications.
    pub fn view(&self, me: NodeHandle<A>) -> ScribeView<'_, A> {
        ScribeView {
            me,
            topics: &self.topics,
            max_children_per_topic: self.cfg.max_children_per_topic,
            max_children_total: self.cfg.max_children_total,
            max_topics: self.cfg.max_topics,
        }
    }

    // ---- upcalls (shared with SplitStream) ----

    pub(crate) fn on_deliver(&mut self, ctx: &mut AppContext<'_, A>, d: Delivery<A>) {
        match self.decode(&d.data) {
            Some(ScribeMsg::Subscribe {
                topic,
                subscriber,
                attempt,
                last_seq,
                search,
            }) => self.deliver_subscribe(ctx, topic, subscriber, attempt, last_seq, search),
            Some(ScribeMsg::Publish {
                topic,
                publisher,
                id,
                payload,
            }) => self.deliver_publish(ctx, topic, publisher, id, payload),
            Some(ScribeMsg::Anycast {
                topic,
                origin,
                id,
                payload,
                search,
            }) => {
                if self.topics.contains_key(&topic) {
                    self.anycast_step(ctx, topic, origin, id, payload, search);
                } else {
                    self.send(ctx, origin, &ScribeMsg::AnycastFailed { topic, id });
                }
            }
            Some(_) | None => {}
        }
        self.finish(ctx);
    }

    pub(crate) fn on_forward(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        f: Forward<'_, A>,
    ) -> ForwardAction {
        let action = match self.decode(f.data) {
            Some(ScribeMsg::Subscribe {
                topic,
                subscriber,
                attempt,
                last_seq,
                search,
            }) => {
                let sub = Sub {
                    subscriber,
                    attempt,
                    last_seq,
                };
                self.forward_subscribe(ctx, f.data, topic, sub, search)
            }
            Some(ScribeMsg::Anycast {
                topic,
                origin,
                id,
                payload,
                search,
            }) => {
                if self.topics.contains_key(&topic) {
                    self.anycast_step(ctx, topic, origin, id, payload, search);
                    ForwardAction::Consumed
                } else {
                    ForwardAction::Continue
                }
            }
            Some(_) => ForwardAction::Continue,
            None => ForwardAction::Drop,
        };
        self.finish(ctx);
        action
    }

    pub(crate) fn on_direct(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        data: Bytes,
    ) {
        let Some(msg) = self.decode(&data) else {
            self.finish(ctx);
            return;
        };
        self.heard_from(ctx.now(), from.id);
        match msg {
            ScribeMsg::Subscribe {
                topic,
                subscriber,
                attempt,
                last_seq,
                mut search,
            } => {
                let sub = Sub {
                    subscriber,
                    attempt,
                    last_seq,
                };
                if self.topics.contains_key(&topic) && subscriber.id != ctx.local_handle().id {
                    self.take_subscriber(ctx, topic, sub, search, false);
                } else {
                    push_visited(&mut search, ctx.local_handle().id);
                    self.subscribe_search_next(ctx, topic, sub, search);
                }
            }
            ScribeMsg::SubscribeAck {
                topic,
                attempt: _,
                last_seq,
                path,
            } => self.on_ack(ctx, from, topic, last_seq, path),
            ScribeMsg::SubscribeFailed { topic, attempt } => {
                if let Some(st) = self.topics.get_mut(&topic)
                    && let Some(p) = &mut st.pending
                    && p.attempt == attempt
                {
                    p.tries += 1;
                    let attempts = p.tries;
                    p.deadline = ctx.now() + backoff(&self.cfg, attempts);
                    self.events
                        .push_back(ScribeEvent::SubscribeFailed { topic, attempts });
                }
            }
            ScribeMsg::Unsubscribe { topics } => {
                for topic in topics {
                    self.remove_child(ctx, topic, from.id, false);
                    self.maybe_prune(ctx, topic);
                }
            }
            ScribeMsg::Drop { topics } => {
                for topic in topics {
                    if self.parent(topic).is_some_and(|p| p.id == from.id) {
                        self.parent_lost(ctx, topic);
                    }
                }
            }
            ScribeMsg::PublishAck { id, .. } => {
                self.publishes.remove(&id);
            }
            ScribeMsg::Data(d) => self.on_data(ctx, from, d),
            ScribeMsg::Heartbeat { topics } => self.on_heartbeat(ctx, from, topics),
            ScribeMsg::Refresh { topics } => {
                let now = ctx.now();
                let mut stale = Vec::new();
                for topic in topics {
                    match self.topics.get_mut(&topic).and_then(|st| {
                        let i = st.child_pos(from.id)?;
                        Some(&mut st.children[i])
                    }) {
                        Some(c) => c.heard = now,
                        None => stale.push(topic),
                    }
                }
                if !stale.is_empty() {
                    self.send(ctx, from, &ScribeMsg::Drop { topics: stale });
                }
            }
            ScribeMsg::Anycast {
                topic,
                origin,
                id,
                payload,
                mut search,
            } => {
                if self.topics.contains_key(&topic) {
                    self.anycast_step(ctx, topic, origin, id, payload, search);
                } else {
                    push_visited(&mut search, ctx.local_handle().id);
                    self.anycast_next(ctx, topic, origin, id, payload, search);
                }
            }
            ScribeMsg::AnycastAccepted { topic, id } => {
                if self.anycasts.remove(&id).is_some() {
                    self.events.push_back(ScribeEvent::AnycastSucceeded {
                        topic,
                        id,
                        by: from,
                    });
                }
            }
            ScribeMsg::AnycastFailed { topic, id } => {
                if self.anycasts.remove(&id).is_some() {
                    self.events
                        .push_back(ScribeEvent::AnycastFailed { topic, id });
                }
            }
            ScribeMsg::Replay { topic, after } => self.on_replay(ctx, from, topic, after),
            ScribeMsg::Publish { .. } => {}
        }
        self.finish(ctx);
    }

    /// A child that re-attached asks for the messages after `after` that we still hold.
    fn on_replay(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        topic: TopicId,
        after: u64,
    ) {
        let Some(st) = self.topics.get_mut(&topic) else {
            return;
        };
        if st.child_pos(from.id).is_none() {
            return;
        }
        if st.root {
            // The child numbers messages as its former root did: a root that took over
            // without that history (it joined closer to the topic, or was not in the tree
            // when the old root failed) continues from there, so that messages it numbers
            // are newer than `after` for every child and reach them by replay too.
            st.known_seq = st.known_seq.max(after);
        }
        let missed: Vec<DataMsg> = st
            .recent
            .iter()
            .filter(|d| d.seq > after)
            .cloned()
            .collect();
        // We may lack some ourselves: a node that became a forwarder to adopt this child
        // has no history, and one that was orphaned too missed the same messages. Ask our
        // own parent, once per gap; what it sends comes down the tree as ordinary data
        // (duplicates are suppressed below us).
        let have_next = st.recent.front().is_some_and(|d| d.seq <= after + 1);
        let ask_up = match st.parent {
            Some(p) if !have_next && st.replay_asked != Some(after) => Some(p),
            None if !have_next && !st.root => {
                // Not attached ourselves yet: ask the parent that adopts us.
                st.replay_owed = Some(st.replay_owed.map_or(after, |o| o.min(after)));
                None
            }
            _ => None,
        };
        self.stats.replayed += missed.len() as u64;
        for mut d in missed {
            d.replayed = true;
            if let Some(b) = self.encode(&ScribeMsg::Data(d)) {
                self.send_raw(ctx, from, MsgType::Data, b);
            }
        }
        if let Some(p) = ask_up {
            if let Some(st) = self.topics.get_mut(&topic) {
                st.replay_asked = Some(after);
            }
            self.send(ctx, p, &ScribeMsg::Replay { topic, after });
        }
    }

    pub(crate) fn on_update(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        handle: NodeHandle<A>,
        joined: bool,
    ) {
        let ids: Vec<TopicId> = self.topics.keys().copied().collect();
        for topic in ids {
            let Some(st) = self.topics.get(&topic) else {
                continue;
            };
            if joined {
                // A closer node may have joined: the root moves to it.
                if st.root && st.pending.is_none() && !ctx.is_root(topic) {
                    self.start_join(ctx, topic, 0);
                }
            } else if st.parent.is_some_and(|p| p.id == handle.id) {
                // Left our leaf set: most likely dead. If it was merely pushed out by a
                // closer node, the re-subscription finds a parent again and the old one
                // is told to let go when it next sends us something.
                self.parent_lost(ctx, topic);
            }
        }
        self.finish(ctx);
    }

    /// Handles Scribe's own timer; false when `token` is not Scribe's.
    pub(crate) fn on_timer(&mut self, ctx: &mut AppContext<'_, A>, token: u64) -> bool {
        if token != TICK_TOKEN {
            return false;
        }
        self.timer_armed = false;
        self.tick(ctx);
        self.finish(ctx);
        true
    }

    // ---- internals ----

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn check_payload(&self, payload: &Bytes) -> Result<(), ScribeError> {
        if payload.len() > self.cfg.max_payload_bytes {
            return Err(ScribeError::PayloadTooLarge {
                len: payload.len(),
                max: self.cfg.max_payload_bytes,
            });
        }
        Ok(())
    }

    fn decode(&mut self, data: &[u8]) -> Option<ScribeMsg<A>> {
        match wire::decode::<A>(data) {
            Ok(m) => {
                self.stats.received[m.kind().index()] += 1;
                Some(m)
            }
            Err(_) => {
                self.stats.bad_messages += 1;
                None
            }
        }
    }

    fn encode(&mut self, msg: &ScribeMsg<A>) -> Option<Bytes> {
        match wire::encode(msg) {
            Ok(b) => Some(b),
            Err(_) => {
                self.stats.encode_failures += 1;
                None
            }
        }
    }

    fn count_sent(&mut self, kind: MsgType, len: usize) {
        self.stats.sent[kind.index()] += 1;
        self.stats.sent_bytes[kind.index()] += len as u64;
    }

    fn send(&mut self, ctx: &mut AppContext<'_, A>, to: NodeHandle<A>, msg: &ScribeMsg<A>) {
        if let Some(b) = self.encode(msg) {
            self.send_raw(ctx, to, msg.kind(), b);
        }
    }

    fn send_raw(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        to: NodeHandle<A>,
        kind: MsgType,
        b: Bytes,
    ) {
        self.count_sent(kind, b.len());
        // Pruned to children in `tick`: a child sent anything recently needs no heartbeat.
        self.last_sent.insert(to.id, ctx.now());
        ctx.send_direct(to, b);
    }

    fn route(&mut self, ctx: &mut AppContext<'_, A>, key: NodeId, msg: &ScribeMsg<A>) {
        if let Some(b) = self.encode(msg) {
            self.count_sent(msg.kind(), b.len());
            ctx.route(key, b, None);
        }
    }

    /// Anything from a node counts as a heartbeat from a parent and a refresh from a child.
    fn heard_from(&mut self, now: Instant, id: NodeId) {
        for st in self.topics.values_mut() {
            if st.parent.is_some_and(|p| p.id == id) {
                st.parent_heard = now;
            }
            if let Some(i) = st.child_pos(id) {
                st.children[i].heard = now;
            }
        }
    }

    /// Hands events to the host (standalone) and keeps the maintenance timer armed.
    fn finish(&mut self, ctx: &mut AppContext<'_, A>) {
        if self.notify {
            while let Some(e) = self.events.pop_front() {
                ctx.notify(Box::new(e));
            }
        }
        let busy =
            !self.topics.is_empty() || !self.publishes.is_empty() || !self.anycasts.is_empty();
        if busy && !self.timer_armed {
            self.timer_armed = true;
            // Jittered so that the nodes' ticks spread out.
            let tick = self.cfg.tick_interval;
            let d = tick / 2 + tick.mul_f64(self.rng.unit() / 2.0);
            ctx.set_timer(d.max(Duration::from_micros(1)), TICK_TOKEN);
        }
    }

    fn start_join(&mut self, ctx: &mut AppContext<'_, A>, topic: TopicId, tries: u32) {
        let attempt = self.fresh_id();
        let deadline = ctx.now() + backoff(&self.cfg, tries);
        let Some(st) = self.topics.get_mut(&topic) else {
            return;
        };
        st.pending = Some(Pending {
            attempt,
            deadline,
            tries,
        });
        let last_seq = st.last_seq.max(st.known_seq);
        let msg = ScribeMsg::Subscribe {
            topic,
            subscriber: ctx.local_handle(),
            attempt,
            last_seq,
            search: Search::default(),
        };
        self.route(ctx, topic, &msg);
    }

    fn parent_lost(&mut self, ctx: &mut AppContext<'_, A>, topic: TopicId) {
        let Some(st) = self.topics.get_mut(&topic) else {
            return;
        };
        let Some(parent) = st.parent.take() else {
            return;
        };
        st.path.clear();
        self.stats.parent_losses += 1;
        self.events
            .push_back(ScribeEvent::ParentLost { topic, parent });
        if st.pending.is_none() {
            self.start_join(ctx, topic, 0);
        }
    }

    fn become_root(&mut self, ctx: &mut AppContext<'_, A>, topic: TopicId) {
        let Some(st) = self.topics.get_mut(&topic) else {
            return;
        };
        let was = st.root;
        st.root = true;
        st.attached_once = true;
        st.pending = None;
        let old = st.parent.take();
        st.path.clear();
        let subscribed = st.subscribed;
        if let Some(p) = old {
            self.send(
                ctx,
                p,
                &ScribeMsg::Unsubscribe {
                    topics: vec![topic],
                },
            );
        }
        if !was || old.is_some() {
            if subscribed {
                self.events.push_back(ScribeEvent::Subscribed {
                    topic,
                    parent: None,
                });
            }
            self.push_paths(ctx, topic);
        }
    }

    /// The path a child of ours in `topic` gets: our ancestors, then us.
    fn child_path(&self, me: NodeId, topic: TopicId) -> Vec<NodeId> {
        let mut p = self
            .topics
            .get(&topic)
            .map(|s| s.path.clone())
            .unwrap_or_default();
        p.push(me);
        if p.len() > MAX_PATH {
            p.drain(..p.len() - MAX_PATH);
        }
        p
    }

    /// Tells every child of `topic` its (changed) root path.
    fn push_paths(&mut self, ctx: &mut AppContext<'_, A>, topic: TopicId) {
        let path = self.child_path(ctx.local_handle().id, topic);
        let kids = self.children(topic);
        if kids.is_empty() {
            return;
        }
        let msg = ScribeMsg::Heartbeat {
            topics: vec![(topic, path)],
        };
        if let Some(b) = self.encode(&msg) {
            for c in kids {
                self.send_raw(ctx, c, MsgType::Heartbeat, b.clone());
            }
        }
    }

    fn ack_child(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        child: NodeHandle<A>,
        attempt: u64,
    ) {
        let path = self.child_path(ctx.local_handle().id, topic);
        let Some(st) = self.topics.get_mut(&topic) else {
            return;
        };
        st.held_until = None;
        let last_seq = st.last_seq.max(st.known_seq);
        self.send(
            ctx,
            child,
            &ScribeMsg::SubscribeAck {
                topic,
                attempt,
                last_seq,
                path,
            },
        );
    }

    fn add_child(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        child: NodeHandle<A>,
        attempt: u64,
    ) {
        let now = ctx.now();
        let Some(st) = self.topics.get_mut(&topic) else {
            return;
        };
        if st.child_pos(child.id).is_none() {
            st.children.push(Child {
                handle: child,
                heard: now,
            });
            self.events
                .push_back(ScribeEvent::ChildAdded { topic, child });
        }
        self.last_sent.entry(child.id).or_insert(now);
        self.ack_child(ctx, topic, child, attempt);
    }

    /// Removes `child` from `topic`; with `tell`, sends it a `Drop`.
    fn remove_child(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        child: NodeId,
        tell: bool,
    ) {
        let Some(st) = self.topics.get_mut(&topic) else {
            return;
        };
        let Some(i) = st.child_pos(child) else {
            return;
        };
        let c = st.children.remove(i).handle;
        self.events
            .push_back(ScribeEvent::ChildRemoved { topic, child: c });
        if tell {
            self.send(
                ctx,
                c,
                &ScribeMsg::Drop {
                    topics: vec![topic],
                },
            );
        }
    }

    /// Leaves `topic`'s tree when nothing keeps us in it.
    fn maybe_prune(&mut self, ctx: &mut AppContext<'_, A>, topic: TopicId) {
        let Some(st) = self.topics.get(&topic) else {
            return;
        };
        if st.subscribed || !st.children.is_empty() || st.held_until.is_some_and(|t| ctx.now() < t)
        {
            return;
        }
        let parent = st.parent;
        self.topics.remove(&topic);
        if let Some(p) = parent {
            self.send(
                ctx,
                p,
                &ScribeMsg::Unsubscribe {
                    topics: vec![topic],
                },
            );
        }
    }

    fn forward_subscribe(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        data: &mut Bytes,
        topic: TopicId,
        sub: Sub<A>,
        search: Search<A>,
    ) -> ForwardAction {
        let me = ctx.local_handle();
        let Sub {
            subscriber,
            attempt,
            last_seq,
        } = sub;
        if subscriber.id == me.id || !search.visited.is_empty() || !search.to_visit.is_empty() {
            return ForwardAction::Continue;
        }
        if self.topics.contains_key(&topic) {
            return if self.take_subscriber(ctx, topic, sub, search, true) {
                ForwardAction::Consumed
            } else {
                ForwardAction::Continue
            };
        }
        // Not in the tree: become a forwarder if the policy lets us, and go on in our name.
        let admission = {
            let view = view!(self, me);
            if !view.has_room(topic) {
                Admission::Refuse
            } else {
                self.policy
                    .admit(&view, topic, &subscriber, AdmitKind::NewForwarder)
            }
        };
        if admission != Admission::Accept {
            return ForwardAction::Continue;
        }
        let mut st = TopicState::new(ctx.now());
        st.known_seq = last_seq;
        self.topics.insert(topic, st);
        self.add_child(ctx, topic, subscriber, attempt);
        let own = self.fresh_id();
        let deadline = ctx.now() + backoff(&self.cfg, 0);
        if let Some(st) = self.topics.get_mut(&topic) {
            st.pending = Some(Pending {
                attempt: own,
                deadline,
                tries: 0,
            });
        }
        let msg = ScribeMsg::Subscribe {
            topic,
            subscriber: me,
            attempt: own,
            last_seq,
            search: Search::default(),
        };
        match self.encode(&msg) {
            Some(b) => {
                self.count_sent(MsgType::Subscribe, b.len());
                *data = b;
                ForwardAction::Continue
            }
            None => ForwardAction::Drop,
        }
    }

    fn deliver_subscribe(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        subscriber: NodeHandle<A>,
        attempt: u64,
        last_seq: u64,
        search: Search<A>,
    ) {
        let me = ctx.local_handle();
        if subscriber.id == me.id {
            // Our own subscription came back to us: we are the root.
            if self.topics.contains_key(&topic) {
                self.become_root(ctx, topic);
            }
            return;
        }
        match self.topics.get(&topic) {
            None => {
                if self.topics.len() >= self.cfg.max_topics {
                    self.send(
                        ctx,
                        subscriber,
                        &ScribeMsg::SubscribeFailed { topic, attempt },
                    );
                    return;
                }
                let mut st = TopicState::new(ctx.now());
                st.root = true;
                // In the tree from now on: should the root move on, we ask the next one
                // for what we miss, and so tell it how far the numbering went.
                st.attached_once = true;
                self.topics.insert(topic, st);
            }
            Some(st) if !st.root => self.become_root(ctx, topic),
            Some(_) => {}
        }
        let sub = Sub {
            subscriber,
            attempt,
            last_seq,
        };
        self.take_subscriber(ctx, topic, sub, search, false);
        self.maybe_prune(ctx, topic);
    }

    /// A tree node decides on `subscriber`: adopt it, or push it down (search). Returns
    /// false only for a routed subscription this node must not take (it descends from the
    /// subscriber): the subscription then goes on towards the root.
    fn take_subscriber(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        sub: Sub<A>,
        mut search: Search<A>,
        routed: bool,
    ) -> bool {
        let me = ctx.local_handle();
        let Sub {
            subscriber,
            attempt,
            last_seq,
        } = sub;
        let Some(st) = self.topics.get_mut(&topic) else {
            return false;
        };
        if st.held_until.is_some() && last_seq > st.known_seq {
            // Messages held with no tree, sent to nobody yet: number them after what the
            // subscriber saw, so that orphans of the previous root get them by replay.
            for (i, d) in st.recent.iter_mut().enumerate() {
                d.seq = last_seq + 1 + i as u64;
            }
            st.last_seq = last_seq + st.recent.len() as u64;
        }
        st.known_seq = st.known_seq.max(last_seq);
        if st.child_pos(subscriber.id).is_some() {
            self.add_child(ctx, topic, subscriber, attempt);
            return true;
        }
        let cycle = st.path.contains(&subscriber.id)
            || st.parent.is_some_and(|p| p.id == subscriber.id)
            || subscriber.id == me.id;
        if cycle && routed {
            return false;
        }
        if !cycle {
            let admission = {
                let view = view!(self, me);
                self.policy
                    .admit(&view, topic, &subscriber, AdmitKind::Member)
            };
            match admission {
                Admission::Accept if self.view(me).has_room(topic) => {
                    self.add_child(ctx, topic, subscriber, attempt);
                    return true;
                }
                Admission::AcceptEvicting { topic: et, child }
                    if child.id != subscriber.id && self.view(me).is_child(et, child.id) =>
                {
                    self.remove_child(ctx, et, child.id, true);
                    if et != topic {
                        self.maybe_prune(ctx, et);
                    }
                    if self.view(me).has_room(topic) {
                        self.add_child(ctx, topic, subscriber, attempt);
                        return true;
                    }
                }
                _ => {}
            }
        }
        // Push-down: search this node's subtree (then upwards) for a node with room.
        push_visited(&mut search, me.id);
        let (front, back) = {
            let view = view!(self, me);
            self.policy.search_order(&view, topic, true, &mut self.rng)
        };
        merge_search(&mut search, front, back, subscriber.id);
        self.subscribe_search_next(ctx, topic, sub, search);
        true
    }

    fn subscribe_search_next(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        sub: Sub<A>,
        mut search: Search<A>,
    ) {
        let Sub {
            subscriber,
            attempt,
            last_seq,
        } = sub;
        match next_in_search(&mut search, subscriber.id, self.cfg.max_search_visits) {
            Some(next) => {
                let msg = ScribeMsg::Subscribe {
                    topic,
                    subscriber,
                    attempt,
                    last_seq,
                    search,
                };
                self.send(ctx, next, &msg);
            }
            None => self.send(
                ctx,
                subscriber,
                &ScribeMsg::SubscribeFailed { topic, attempt },
            ),
        }
    }

    fn on_ack(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        topic: TopicId,
        last_seq: u64,
        path: Vec<NodeId>,
    ) {
        let me = ctx.local_handle().id;
        let now = ctx.now();
        let Some(st) = self.topics.get_mut(&topic) else {
            self.send(
                ctx,
                from,
                &ScribeMsg::Unsubscribe {
                    topics: vec![topic],
                },
            );
            return;
        };
        if st.parent.is_some_and(|p| p.id == from.id) {
            st.parent_heard = now;
            st.pending = None;
            st.known_seq = st.known_seq.max(last_seq);
            if st.path != path && !path.contains(&me) {
                st.path = path;
                self.push_paths(ctx, topic);
            }
            return;
        }
        let refuse = path.contains(&me)
            || path.len() >= MAX_PATH
            || st.parent.is_some()
            || (st.root && st.pending.is_none())
            || st.child_pos(from.id).is_some();
        if refuse {
            self.send(
                ctx,
                from,
                &ScribeMsg::Unsubscribe {
                    topics: vec![topic],
                },
            );
            return;
        }
        st.root = false;
        st.parent = Some(from);
        st.pending = None;
        st.path = path;
        st.parent_heard = now;
        let subscribed = st.subscribed;
        // A node that was in the tree before may have missed messages while it had no
        // parent: ask the new one for what it still holds.
        let own = st.attached_once.then_some(st.last_seq);
        let after = match (own, st.replay_owed.take()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        st.known_seq = st.known_seq.max(last_seq);
        if !st.attached_once {
            // A first attachment: our history starts where the parent's numbering stands
            // (no replay of older messages should we re-attach later).
            st.last_seq = st.last_seq.max(last_seq);
        }
        st.attached_once = true;
        st.replay_asked = after;
        self.last_sent.entry(from.id).or_insert(now);
        if let Some(after) = after
            && self.cfg.replay_messages > 0
        {
            self.send(ctx, from, &ScribeMsg::Replay { topic, after });
        }
        if subscribed {
            self.events.push_back(ScribeEvent::Subscribed {
                topic,
                parent: Some(from),
            });
        }
        self.push_paths(ctx, topic);
    }

    fn on_heartbeat(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        topics: Vec<(TopicId, Vec<NodeId>)>,
    ) {
        let me = ctx.local_handle().id;
        let mut stale = Vec::new();
        for (topic, path) in topics {
            let Some(st) = self.topics.get_mut(&topic) else {
                stale.push(topic);
                continue;
            };
            if st.parent.is_none_or(|p| p.id != from.id) {
                stale.push(topic);
                continue;
            }
            if path.contains(&me) || path.len() >= MAX_PATH {
                // A loop: leave this parent and subscribe again.
                self.stats.loops_broken += 1;
                stale.push(topic);
                self.parent_lost(ctx, topic);
                continue;
            }
            if st.path != path {
                st.path = path;
                self.push_paths(ctx, topic);
            }
        }
        if !stale.is_empty() {
            self.send(ctx, from, &ScribeMsg::Unsubscribe { topics: stale });
        }
    }

    fn deliver_publish(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        publisher: NodeHandle<A>,
        id: u64,
        payload: Bytes,
    ) {
        if publisher.id == ctx.local_handle().id {
            self.publishes.remove(&id);
        } else {
            self.send(ctx, publisher, &ScribeMsg::PublishAck { topic, id });
        }
        let Some(st) = self.topics.get(&topic) else {
            self.stats.publishes_without_members += 1;
            // Nobody subscribed, or the root failed and its orphans have not found us yet:
            // for the latter, keep the message for replay (for `child_timeout`, longer than
            // an orphan takes to notice its loss and re-attach).
            let held = self
                .topics
                .values()
                .filter(|t| t.held_until.is_some())
                .count();
            if self.cfg.replay_messages > 0
                && held < MAX_HELD_TOPICS
                && self.topics.len() < self.cfg.max_topics
            {
                let mut st = TopicState::new(ctx.now());
                st.root = true;
                st.attached_once = true;
                st.held_until = Some(ctx.now() + self.cfg.child_timeout);
                self.topics.insert(topic, st);
                let d = DataMsg {
                    topic,
                    seq: 1,
                    publisher: publisher.id,
                    id,
                    replayed: false,
                    payload,
                };
                self.disseminate(ctx, d, None);
            }
            return;
        };
        if !st.root {
            self.become_root(ctx, topic);
        }
        let seq = self
            .topics
            .get(&topic)
            .map_or(0, |s| s.last_seq.max(s.known_seq))
            + 1;
        let d = DataMsg {
            topic,
            seq,
            publisher: publisher.id,
            id,
            replayed: false,
            payload,
        };
        self.disseminate(ctx, d, None);
    }

    fn on_data(&mut self, ctx: &mut AppContext<'_, A>, from: NodeHandle<A>, d: DataMsg) {
        let topic = d.topic;
        let Some(st) = self.topics.get(&topic) else {
            self.send(
                ctx,
                from,
                &ScribeMsg::Unsubscribe {
                    topics: vec![topic],
                },
            );
            return;
        };
        let from_parent = st.parent.is_some_and(|p| p.id == from.id);
        if !from_parent {
            if st.child_pos(from.id).is_some() {
                return;
            }
            // A former parent: take the data (duplicates are suppressed) and let it go.
            self.send(
                ctx,
                from,
                &ScribeMsg::Unsubscribe {
                    topics: vec![topic],
                },
            );
        }
        self.disseminate(ctx, d, Some(from.id));
    }

    /// Delivers `d` locally (if subscribed) and sends it to every child, once.
    fn disseminate(&mut self, ctx: &mut AppContext<'_, A>, d: DataMsg, from: Option<NodeId>) {
        let window = self.cfg.dedup_window;
        let Some(st) = self.topics.get_mut(&d.topic) else {
            return;
        };
        if !st.seen.insert((d.publisher, d.id), window) {
            self.stats.duplicates += 1;
            return;
        }
        st.last_seq = st.last_seq.max(d.seq);
        let (max_msgs, max_bytes) = (self.cfg.replay_messages, self.cfg.replay_bytes);
        if max_msgs > 0 && d.payload.len() <= max_bytes {
            st.recent.push_back(d.clone());
            st.recent_bytes += d.payload.len();
            while st.recent.len() > max_msgs || st.recent_bytes > max_bytes {
                if let Some(old) = st.recent.pop_front() {
                    st.recent_bytes -= old.payload.len();
                }
            }
        }
        let kids: Vec<NodeHandle<A>> = st
            .children
            .iter()
            .map(|c| c.handle)
            .filter(|c| Some(c.id) != from)
            .collect();
        if st.subscribed {
            st.delivered += 1;
            self.stats.delivered += 1;
            self.events.push_back(ScribeEvent::Delivered {
                topic: d.topic,
                seq: d.seq,
                publisher: d.publisher,
                id: d.id,
                replayed: d.replayed,
                payload: d.payload.clone(),
            });
        }
        if kids.is_empty() {
            return;
        }
        if let Some(b) = self.encode(&ScribeMsg::Data(d)) {
            for c in kids {
                self.send_raw(ctx, c, MsgType::Data, b.clone());
            }
        }
    }

    fn anycast_step(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        origin: NodeHandle<A>,
        id: u64,
        payload: Bytes,
        mut search: Search<A>,
    ) {
        let me = ctx.local_handle();
        push_visited(&mut search, me.id);
        let accept = self.is_subscribed(topic) && {
            let view = view!(self, me);
            self.policy.accept_anycast(&view, topic, &origin, &payload)
        };
        if accept {
            self.events.push_back(ScribeEvent::AnycastReceived {
                topic,
                origin,
                id,
                payload,
            });
            if origin.id == me.id {
                if self.anycasts.remove(&id).is_some() {
                    self.events
                        .push_back(ScribeEvent::AnycastSucceeded { topic, id, by: me });
                }
            } else {
                self.send(ctx, origin, &ScribeMsg::AnycastAccepted { topic, id });
            }
            return;
        }
        let (front, back) = {
            let view = view!(self, me);
            self.policy.search_order(&view, topic, false, &mut self.rng)
        };
        merge_search(&mut search, front, back, me.id);
        self.anycast_next(ctx, topic, origin, id, payload, search);
    }

    fn anycast_next(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        topic: TopicId,
        origin: NodeHandle<A>,
        id: u64,
        payload: Bytes,
        mut search: Search<A>,
    ) {
        let me = ctx.local_handle().id;
        match next_in_search(&mut search, me, self.cfg.max_search_visits) {
            Some(next) => {
                let msg = ScribeMsg::Anycast {
                    topic,
                    origin,
                    id,
                    payload,
                    search,
                };
                self.send(ctx, next, &msg);
            }
            None => {
                if origin.id == me {
                    if self.anycasts.remove(&id).is_some() {
                        self.events
                            .push_back(ScribeEvent::AnycastFailed { topic, id });
                    }
                } else {
                    self.send(ctx, origin, &ScribeMsg::AnycastFailed { topic, id });
                }
            }
        }
    }

    /// The maintenance tick: timeouts, retries, heartbeats, refreshes, root moves.
    fn tick(&mut self, ctx: &mut AppContext<'_, A>) {
        let now = ctx.now();
        let me = ctx.local_handle();
        let ids: Vec<TopicId> = self.topics.keys().copied().collect();
        for topic in ids {
            // Children silent for too long are dropped.
            let timed_out: Vec<NodeId> = self.topics[&topic]
                .children
                .iter()
                .filter(|c| now.saturating_since(c.heard) > self.cfg.child_timeout)
                .map(|c| c.handle.id)
                .collect();
            for c in timed_out {
                self.stats.children_timed_out += 1;
                self.remove_child(ctx, topic, c, false);
            }
            let Some(st) = self.topics.get(&topic) else {
                continue;
            };
            if st.parent.is_some()
                && now.saturating_since(st.parent_heard) > self.cfg.parent_timeout
            {
                self.parent_lost(ctx, topic);
            }
            let Some(st) = self.topics.get(&topic) else {
                continue;
            };
            match &st.pending {
                Some(p) if now >= p.deadline => {
                    let tries = p.tries + 1;
                    if p.tries == 0 || st.subscribed {
                        self.events.push_back(ScribeEvent::SubscribeFailed {
                            topic,
                            attempts: tries,
                        });
                    }
                    self.start_join(ctx, topic, tries);
                }
                Some(_) => {}
                None => {
                    if st.root {
                        if !ctx.is_root(topic) {
                            self.start_join(ctx, topic, 0);
                        }
                    } else if st.parent.is_none() {
                        self.start_join(ctx, topic, 0);
                    }
                }
            }
            self.maybe_prune(ctx, topic);
        }
        self.send_heartbeats(ctx, me.id);
        if now.saturating_since(self.last_refresh) >= self.cfg.refresh_interval {
            self.last_refresh = now;
            self.send_refreshes(ctx);
        }
        self.retry_publishes(ctx);
        let expired: Vec<(u64, TopicId)> = self
            .anycasts
            .iter()
            .filter(|(_, a)| now >= a.deadline)
            .map(|(&id, a)| (id, a.topic))
            .collect();
        for (id, topic) in expired {
            self.anycasts.remove(&id);
            self.events
                .push_back(ScribeEvent::AnycastFailed { topic, id });
        }
        // Forget send times of nodes that are no longer children.
        let topics = &self.topics;
        self.last_sent
            .retain(|id, _| topics.values().any(|st| st.child_pos(*id).is_some()));
    }

    fn send_heartbeats(&mut self, ctx: &mut AppContext<'_, A>, me: NodeId) {
        let now = ctx.now();
        let mut per_child: BTreeMap<NodeId, (NodeHandle<A>, HeartbeatTopics)> = BTreeMap::new();
        for (&topic, st) in &self.topics {
            for c in &st.children {
                let due = self
                    .last_sent
                    .get(&c.handle.id)
                    .is_none_or(|&t| now.saturating_since(t) >= self.cfg.heartbeat_interval);
                if due {
                    let mut path = st.path.clone();
                    path.push(me);
                    if path.len() > MAX_PATH {
                        path.drain(..path.len() - MAX_PATH);
                    }
                    per_child
                        .entry(c.handle.id)
                        .or_insert_with(|| (c.handle, Vec::new()))
                        .1
                        .push((topic, path));
                }
            }
        }
        for (_, (h, mut topics)) in per_child {
            topics.truncate(wire::MAX_TOPICS_PER_MSG);
            self.send(ctx, h, &ScribeMsg::Heartbeat { topics });
        }
    }

    fn send_refreshes(&mut self, ctx: &mut AppContext<'_, A>) {
        let mut per_parent: BTreeMap<NodeId, (NodeHandle<A>, Vec<TopicId>)> = BTreeMap::new();
        for (&topic, st) in &self.topics {
            if let Some(p) = st.parent {
                per_parent
                    .entry(p.id)
                    .or_insert_with(|| (p, Vec::new()))
                    .1
                    .push(topic);
            }
        }
        for (_, (h, mut topics)) in per_parent {
            topics.truncate(wire::MAX_TOPICS_PER_MSG);
            self.send(ctx, h, &ScribeMsg::Refresh { topics });
        }
    }

    fn retry_publishes(&mut self, ctx: &mut AppContext<'_, A>) {
        let now = ctx.now();
        let due: Vec<u64> = self
            .publishes
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(&id, _)| id)
            .collect();
        let me = ctx.local_handle();
        for id in due {
            let Some(p) = self.publishes.get_mut(&id) else {
                continue;
            };
            if p.attempts >= self.cfg.publish_attempts {
                let topic = p.topic;
                self.publishes.remove(&id);
                self.events
                    .push_back(ScribeEvent::PublishFailed { topic, id });
                continue;
            }
            p.attempts += 1;
            p.deadline = now + self.cfg.publish_timeout;
            let msg = ScribeMsg::Publish {
                topic: p.topic,
                publisher: me,
                id,
                payload: p.payload.clone(),
            };
            let topic = p.topic;
            self.route(ctx, topic, &msg);
        }
    }
}

/// Wait before subscription attempt `tries + 1`: doubling from `subscribe_timeout`.
fn backoff(cfg: &ScribeConfig, tries: u32) -> Duration {
    cfg.subscribe_timeout
        .saturating_mul(1 << tries.min(8))
        .min(cfg.subscribe_backoff_max)
}

fn push_visited<A>(search: &mut Search<A>, id: NodeId) {
    if !search.visited.contains(&id) && search.visited.len() < MAX_VISIT {
        search.visited.push(id);
    }
}

/// Puts `front` before and `back` after the queued nodes, skipping visited and queued ones
/// and `subject` (the node searched for), within [`MAX_VISIT`].
fn merge_search<A: Address>(
    search: &mut Search<A>,
    front: Vec<NodeHandle<A>>,
    back: Vec<NodeHandle<A>>,
    subject: NodeId,
) {
    let mut out: Vec<NodeHandle<A>> = Vec::new();
    let ok = |h: &NodeHandle<A>, out: &Vec<NodeHandle<A>>, s: &Search<A>| {
        h.id != subject && !s.visited.contains(&h.id) && !out.iter().any(|o| o.id == h.id)
    };
    for h in front {
        if ok(&h, &out, search) {
            out.push(h);
        }
    }
    for h in core::mem::take(&mut search.to_visit) {
        if ok(&h, &out, search) {
            out.push(h);
        }
    }
    for h in back {
        if ok(&h, &out, search) {
            out.push(h);
        }
    }
    out.truncate(MAX_VISIT);
    search.to_visit = out;
}

/// The next node to visit, or `None` when the search is exhausted or over its budget.
fn next_in_search<A: Address>(
    search: &mut Search<A>,
    subject: NodeId,
    max_visits: usize,
) -> Option<NodeHandle<A>> {
    if search.visited.len() >= max_visits {
        return None;
    }
    while !search.to_visit.is_empty() {
        let h = search.to_visit.remove(0);
        if h.id != subject && !search.visited.contains(&h.id) {
            return Some(h);
        }
    }
    None
}

impl<A: Address> Application<A> for Scribe<A> {
    fn deliver(&mut self, ctx: &mut AppContext<'_, A>, msg: Delivery<A>) {
        self.on_deliver(ctx, msg);
    }

    fn forward(&mut self, ctx: &mut AppContext<'_, A>, msg: Forward<'_, A>) -> ForwardAction {
        self.on_forward(ctx, msg)
    }

    fn update(&mut self, ctx: &mut AppContext<'_, A>, handle: NodeHandle<A>, joined: bool) {
        self.on_update(ctx, handle, joined);
    }

    fn direct(&mut self, ctx: &mut AppContext<'_, A>, from: NodeHandle<A>, data: Bytes) {
        self.on_direct(ctx, from, data);
    }

    fn timer(&mut self, ctx: &mut AppContext<'_, A>, token: u64) {
        self.on_timer(ctx, token);
    }
}
