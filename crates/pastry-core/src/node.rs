//! The node state machine: routing, join, leave, failure detection and repair.
//!
//! A [`Node`] never performs IO and never reads a clock. The host feeds it messages
//! ([`Node::handle_message`]), expired deadlines ([`Node::handle_timeout`]) and commands
//! ([`Node::join`], [`Node::route`], [`Node::leave`]), each with the current time, then drains
//! [`Node::poll_transmit`] and [`Node::poll_event`] and sleeps until [`Node::poll_timeout`].
//!
//! Protocol summary (details and deviations in DESIGN.md):
//! - **Routing**: leaf set when the key is in its range, else the routing-table slot sharing
//!   one more digit, else the rare case (any known node with as long a prefix and numerically
//!   closer). Each forwarded hop is acknowledged; a silent next hop is suspected, probed and
//!   routed around. A node never delivers while a closer leaf-set member is merely suspected:
//!   it holds the message until the probe settles (consistent routing under loss).
//! - **Join**: the join request is routed to the joiner's id; each hop adds routing-table
//!   candidates, the root answers with its leaf set. The joiner probes every leaf-set
//!   candidate (and those their replies reveal) and becomes ready only when each answered or
//!   was found dead (MSR-TR-2003-94). It probes routing-table candidates for RTT and keeps
//!   the nearest per slot, then announces itself to its routing-table members.
//! - **Maintenance**: heartbeats carrying the leaf set go to the left neighbour; silence from
//!   the right neighbour triggers a probe; a node found dead is removed, announced to the leaf
//!   set, and the leaf set repaired from the farthest member of the short side. Routing-table
//!   holes are repaired lazily by asking a member of the same row (then the next) for its
//!   row; a periodic row exchange keeps entries near.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use core::any::Any;
use core::fmt;
use core::time::Duration;

use crate::app::{AppCommand, AppContext, Application, Delivery, Forward, ForwardAction};
use crate::config::Config;
use crate::headheap::HeadHeap;
use crate::idmap::IdMap;
use crate::leafset::{Leaf, LeafSet, Side};
use crate::message::{AppId, Body, Message, MessageKind, RouteMsg, RoutePayload};
use crate::neighborhood::NeighborhoodSet;
use crate::rng::Rng;
use crate::routing_table::{Entry, Inserted, RoutingTable};
use crate::rtt::Rtt;
use crate::time::micros;
use crate::{Address, Instant, NodeHandle, NodeId};

/// Identifies a message routed from this node; it comes back in [`Delivery::request`].
pub type RequestId = u64;

/// A message for the host to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit<A> {
    /// Destination address.
    pub to: A,
    /// The message.
    pub msg: Message<A>,
}

/// Lifecycle of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Created; neither joined nor started a ring.
    Idle,
    /// Joining: routes and forwards, but delivers nothing yet.
    Joining,
    /// A full member of the ring.
    Ready,
    /// Left the ring (or gave up joining); ignores all input.
    Left,
}

/// Something the host should know about.
#[derive(Debug)]
pub enum Event<A> {
    /// The node finished joining (or started a new ring) and now delivers messages.
    Ready,
    /// No bootstrap node answered the join; the node is [`NodeState::Left`].
    JoinFailed,
    /// A routed message for an application id with no registered [`Application`].
    Delivered(Delivery<A>),
    /// A direct message for an application id with no registered [`Application`].
    DirectDelivered {
        /// The sender.
        from: NodeHandle<A>,
        /// The application id it was sent to.
        app: AppId,
        /// Its bytes.
        data: Bytes,
    },
    /// A routed message was dropped at this node.
    RouteFailed {
        /// The key.
        key: NodeId,
        /// The origin's request id.
        request: RequestId,
        /// The origin.
        origin: NodeHandle<A>,
        /// Why.
        reason: RouteFailure,
    },
    /// A node joined (`joined = true`) or left this node's leaf set.
    LeafSetChanged {
        /// The node.
        handle: NodeHandle<A>,
        /// Joined or left.
        joined: bool,
    },
    /// A value an application handed to the host with [`AppContext::notify`].
    Application {
        /// The application.
        app: AppId,
        /// Its value.
        value: Box<dyn Any + Send>,
    },
}

/// Why a routed message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteFailure {
    /// Every candidate next hop failed to acknowledge (`max_reroutes` exceeded).
    NoLiveNextHop,
    /// The hop count passed `max_hops`.
    TooManyHops,
    /// The node could not hold the message (`max_held_messages`).
    HoldQueueFull,
    /// An application's `forward` dropped it.
    DroppedByApplication,
}

/// Why [`Node::route`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// The node is idle or has left.
    NotMember,
    /// The payload exceeds `max_payload_bytes`.
    PayloadTooLarge {
        /// The payload's size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::NotMember => f.write_str("the node is not a member of a ring"),
            RouteError::PayloadTooLarge { len, max } => {
                write!(f, "payload of {len} bytes exceeds the limit of {max}")
            }
        }
    }
}

impl std::error::Error for RouteError {}

/// What to route: see [`Node::route`].
#[derive(Debug, Clone)]
pub struct RouteRequest<A> {
    /// The key.
    pub key: NodeId,
    /// The destination application.
    pub app: AppId,
    /// The bytes.
    pub data: Bytes,
    /// Send the first hop to this node (common API hint).
    pub hint: Option<NodeHandle<A>>,
    /// Record the path.
    pub trace: bool,
}

/// Counters a node keeps about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages sent, by [`MessageKind`] wire byte - 1.
    pub sent: [u64; MessageKind::ALL.len()],
    /// Messages received, by [`MessageKind`] wire byte - 1.
    pub received: [u64; MessageKind::ALL.len()],
    /// Messages routed from this node.
    pub routes_originated: u64,
    /// Routed messages delivered here.
    pub delivered: u64,
    /// Routed messages forwarded (excluding ones originated here).
    pub forwarded: u64,
    /// Forwards that went through the rare case.
    pub rare_cases: u64,
    /// Next hops that failed to acknowledge, so the message was rerouted.
    pub reroutes: u64,
    /// Routed messages dropped, any reason.
    pub route_failures: u64,
    /// Messages held (joining, or a closer node suspected).
    pub held: u64,
    /// Forwards sent without reroute protection because the ack table was full.
    pub acks_untracked: u64,
    /// Probes sent, retries included.
    pub probes_sent: u64,
    /// Nodes this node declared dead.
    pub nodes_declared_dead: u64,
    /// Probes whose every try went unanswered while the node sent us other messages (so
    /// it was not declared dead).
    pub probes_inconclusive: u64,
    /// Members found alive by another member's probe ([`Body::IndirectProbe`]) after our
    /// own probes of them went unanswered (so not declared dead).
    pub probes_rescued: u64,
    /// Route hops sent to a member that reaches the next hop for us, because our own
    /// probes do not reach it (non-transitive connectivity).
    pub relayed_hops: u64,
    /// Messages ignored: from ourselves, oversized payloads, in the wrong state.
    pub ignored: u64,
    /// Repeated deliveries of the same message (after a lost ack) swallowed at the root.
    pub duplicates: u64,
    /// Routed messages an application's `forward` took over (`ForwardAction::Consumed`).
    pub consumed: u64,
}

// Probe purposes, combined as bit flags.
const P_SUSPECT: u8 = 1; // a member is suspected: excluded from routing until answered
const P_JOIN: u8 = 2; // counts towards the consistent join
const P_WANT_LS: u8 = 4; // ask for the leaf set
const P_RT: u8 = 8; // a routing-table candidate: measure RTT, then announce ourselves
const P_NOTICE: u8 = 16; // only suspected because another node said so (second hand)
const P_LEAF: u8 = 32; // a leaf-set candidate: its failure matters to our neighbours
const P_RELAY: u8 = 64; // asked by another member (IndirectProbe): tell it if answered

/// Members an [`Body::IndirectProbe`]'s answer goes to, per probe, at most.
const RELAYS_MAX: usize = 4;

/// Leaf-set members reached only through another member, at most (see [`Relay`]).
const RELAY_ROUTES_MAX: usize = 16;

/// How long a [`Relay`] is used without news. Broken paths tend to stay broken (a route
/// or filter between two networks), and finding one again costs a missed ack and a probe
/// round; a path that heals is found by any acknowledged hop or answered probe.
const RELAY_TTL: Duration = Duration::from_secs(600);

/// A leaf-set member our probes did not reach but another member's did: a broken path
/// between two nodes that both reach everyone else (non-transitive connectivity), or loss.
/// Routed messages for it go to that member ([`Body::RelayedRoute`]) until `until`, until
/// the member fails us, or until it answers us directly. (Under loss too: 5% loss, 300
/// nodes, seeds 1-16, the lookups' RDP was no worse for it, 2.87 against 2.95 when only
/// a hop to it that also went unacknowledged started relaying.)
#[derive(Debug, Clone, Copy)]
struct Relay<A> {
    id: NodeId,
    via: NodeHandle<A>,
    until: Instant,
}

#[derive(Debug, Clone)]
struct Probe<A> {
    addr: A,
    nonce: u64,
    first_nonce: u64,
    sent_at: Instant,
    tries: u32,
    flags: u8,
    /// It sent us something while under probe: alive, whatever becomes of the probe.
    heard: bool,
    /// Our own tries are over; only the other members' answers are awaited.
    via_wait: bool,
    /// What few probes need, out of line: a probe is in a map on every node with one
    /// outstanding, so its size counts at a million nodes.
    extra: Option<Box<ProbeExtra<A>>>,
}

impl<A> Probe<A> {
    fn extra(&mut self) -> &mut ProbeExtra<A> {
        self.extra.get_or_insert_with(|| {
            Box::new(ProbeExtra {
                notify: Vec::new(),
                via: 0,
                via_until: Instant::ZERO,
                relay: Vec::new(),
            })
        })
    }

    /// The nonce of the [`Body::IndirectProbe`]s sent about it, 0 when none were.
    fn via(&self) -> u64 {
        self.extra.as_ref().map_or(0, |e| e.via)
    }

    fn notify(&self) -> &[NodeHandle<A>] {
        self.extra.as_ref().map_or(&[], |e| &e.notify)
    }

    fn relay(&self) -> &[(NodeHandle<A>, u64)] {
        self.extra.as_ref().map_or(&[], |e| &e.relay)
    }
}

#[derive(Debug, Clone)]
struct ProbeExtra<A> {
    /// Leaf-set members a failure notice's sender could not reach (not in its leaf set):
    /// told in turn if the probe confirms the failure.
    notify: Vec<NodeHandle<A>>,
    /// Nonce of the [`Body::IndirectProbe`]s sent about it (0: none), which their answers
    /// carry, and until when those answers are waited for.
    via: u64,
    via_until: Instant,
    /// Members that asked us to probe it ([`Body::IndirectProbe`]) and their nonces:
    /// answered if it answers us.
    relay: Vec<(NodeHandle<A>, u64)>,
}

/// A node recently found dead or gone.
#[derive(Debug, Clone, Copy)]
struct Failed {
    id: NodeId,
    at: Instant,
    /// It was, or was about to be, a leaf-set member: our neighbours care.
    leaf: bool,
    /// Only one unanswered probe says so (a far node, probed without retries): not passed
    /// on to anyone.
    weak: bool,
}

#[derive(Debug, Clone)]
struct PendingHop<A> {
    msg: RouteMsg<A>,
    next: NodeHandle<A>,
    sent_at: Instant,
    excluded: Vec<NodeId>,
    reroutes: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Ready,
    Suspect(NodeId),
}

#[derive(Debug, Clone)]
struct Held<A> {
    msg: RouteMsg<A>,
    excluded: Vec<NodeId>,
    reroutes: u8,
    wait: Wait,
}

#[derive(Debug, Clone)]
enum JoinPhase {
    AwaitReply { attempt: u32 },
    Probing { pending: BTreeSet<NodeId> },
}

#[derive(Debug, Clone)]
struct Join<A> {
    bootstraps: Vec<A>,
    phase: JoinPhase,
    /// The leaf set every candidate heard of so far would make: only its members are
    /// worth probing (a joiner's own leaf set fills only as answers come back, so it
    /// would accept nearly anything early on).
    candidates: LeafSet<A>,
    /// What each node we measured said an announcement must beat (`room_us` of its
    /// probe reply), for the announcements at the end of the join.
    rooms: Vec<(NodeId, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Heartbeat,
    HeartbeatCheck,
    RtMaintenance,
    Join(u32),
    Ack(u64),
    Probe(NodeId, u64),
    App(AppId, u64),
}

/// The routing decision for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<A> {
    /// This node is the root.
    Deliver,
    /// Send to this node; `rare` when it came from the rare case.
    Forward {
        /// The next hop.
        to: NodeHandle<A>,
        /// Chosen by the rare case (no leaf-set range, no routing-table entry).
        rare: bool,
    },
    /// The closest known node is suspected; wait for its probe to settle.
    Hold(NodeId),
}

/// The node's routing state: what applications may read through [`AppContext`].
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Tables<A> {
    pub(crate) me: NodeHandle<A>,
    pub(crate) leaf_set: LeafSet<A>,
    pub(crate) routing_table: RoutingTable<A>,
    pub(crate) neighborhood: NeighborhoodSet<A>,
}

impl<A: Address> Tables<A> {
    fn new(cfg: &Config, me: NodeHandle<A>) -> Self {
        Tables {
            me,
            leaf_set: LeafSet::new(me.id, cfg.leaf_set_size / 2),
            routing_table: RoutingTable::new(me.id, cfg.b),
            neighborhood: NeighborhoodSet::new(cfg.neighborhood_size),
        }
    }

    /// The routing decision of the Pastry paper for `key`. Nodes for which `skip` is true
    /// are not chosen; of those, the ones for which `soft` is also true (suspected) make the
    /// node hold the message rather than deliver it when they are closer than this node.
    pub fn decide(
        &self,
        key: NodeId,
        hard: impl Fn(NodeId) -> bool,
        soft: impl Fn(NodeId) -> bool,
    ) -> Decision<A> {
        let me = self.me.id;
        let b = self.routing_table.b();
        if self.leaf_set.covers(key) {
            let leaf = self.leaf_set.closest(key, |id| hard(id) || soft(id));
            // A routing-table entry nearer the key than the leaf set's choice is a node
            // inside the leaf set's range that the leaf set lacks (a side short after a
            // failure, not yet repaired). Go there: the leaf set's choice, not covering the
            // key itself, could send the message straight back through its table.
            if let Some(e) = self.routing_table.next_hop(key)
                && !hard(e.handle.id)
                && !soft(e.handle.id)
                && key.is_closer(e.handle.id, leaf.map_or(me, |h| h.id))
            {
                return Decision::Forward {
                    to: e.handle,
                    rare: false,
                };
            }
            if let Some(to) = leaf {
                return Decision::Forward { to, rare: false };
            }
            return match self.leaf_set.closest(key, &hard) {
                Some(s) => Decision::Hold(s.id),
                None => Decision::Deliver,
            };
        }
        if let Some(e) = self.routing_table.next_hop(key)
            && !hard(e.handle.id)
            && !soft(e.handle.id)
        {
            return Decision::Forward {
                to: e.handle,
                rare: false,
            };
        }
        // Rare case: any known node with at least as long a prefix and numerically closer.
        let l = me.shared_prefix_len(key, b);
        let mut best: Option<(usize, NodeHandle<A>)> = None;
        let mut suspect: Option<NodeId> = None;
        for h in self.known() {
            if hard(h.id) || !key.is_closer(h.id, me) {
                continue;
            }
            let p = h.id.shared_prefix_len(key, b);
            if p < l {
                continue;
            }
            if soft(h.id) {
                suspect.get_or_insert(h.id);
                continue;
            }
            let better = match best {
                None => true,
                Some((bp, bh)) => p > bp || (p == bp && key.is_closer(h.id, bh.id)),
            };
            if better {
                best = Some((p, h));
            }
        }
        match (best, suspect) {
            (Some((_, to)), _) => Decision::Forward { to, rare: true },
            (None, Some(s)) => Decision::Hold(s),
            // Nobody known is closer: this node is the best root it can find.
            (None, None) => Decision::Deliver,
        }
    }

    /// Every node in the leaf set, routing table and neighbourhood set (may repeat).
    fn known(&self) -> impl Iterator<Item = NodeHandle<A>> + '_ {
        self.leaf_set
            .members()
            .map(|l| l.handle)
            .chain(self.routing_table.entries().map(|e| e.handle))
            .chain(self.neighborhood.entries().iter().map(|e| e.handle))
    }

    /// The handle we hold for `id` in any table (cheap: a table slot, two binary searches
    /// and a scan of the neighbourhood set).
    fn find(&self, id: NodeId) -> Option<NodeHandle<A>> {
        if let Some(e) = self.routing_table.find(id) {
            return Some(e.handle);
        }
        if let Some(l) = self.leaf_set.get(id) {
            return Some(l.handle);
        }
        self.neighborhood.get(id).map(|e| e.handle)
    }

    /// RTT estimate to a known node.
    fn rtt(&self, id: NodeId) -> Rtt {
        if let Some(l) = self.leaf_set.get(id) {
            return l.rtt;
        }
        if let Some(e) = self.routing_table.find(id) {
            return e.rtt;
        }
        self.neighborhood.get(id).map_or(Rtt::UNKNOWN, |e| e.rtt)
    }

    /// What RTT an announcement from `id` must beat to change the routing table or the
    /// neighbourhood set (see [`Body::ProbeReply`]).
    fn announce_room(&self, id: NodeId) -> u32 {
        self.routing_table
            .room_for(id)
            .max(self.neighborhood.room_for(id))
    }

    fn is_known(&self, id: NodeId) -> bool {
        self.find(id).is_some()
    }

    pub(crate) fn local_lookup(&self, key: NodeId, num: usize) -> Vec<NodeHandle<A>> {
        let mut out = Vec::new();
        if let Decision::Forward { to, .. } = self.decide(key, |_| false, |_| false) {
            out.push(to);
        } else {
            return out;
        }
        let b = self.routing_table.b();
        let l = self.me.id.shared_prefix_len(key, b);
        let mut rest: Vec<NodeHandle<A>> = self
            .known()
            .filter(|h| key.is_closer(h.id, self.me.id) && h.id.shared_prefix_len(key, b) >= l)
            .collect();
        rest.sort_by(|x, y| key.cmp_closeness(x.id, y.id));
        rest.dedup_by_key(|h| h.id);
        let first = out[0].id;
        out.extend(rest.into_iter().filter(|h| h.id != first));
        out.truncate(num);
        out
    }

    pub(crate) fn neighbor_set(&self, num: usize) -> Vec<NodeHandle<A>> {
        let (l, r) = (
            self.leaf_set.side(Side::Left),
            self.leaf_set.side(Side::Right),
        );
        let mut out: Vec<NodeHandle<A>> = Vec::new();
        for i in 0..l.len().max(r.len()) {
            for side in [l, r] {
                if let Some(x) = side.get(i)
                    && !out.iter().any(|h| h.id == x.handle.id)
                {
                    out.push(x.handle);
                }
            }
        }
        out.truncate(num);
        out
    }

    pub(crate) fn replica_set(&self, key: NodeId, max: usize) -> Vec<NodeHandle<A>> {
        self.leaf_set
            .replica_set(key, max)
            .into_iter()
            .map(|h| h.unwrap_or(self.me))
            .collect()
    }

    pub(crate) fn range(&self, id: NodeId, rank: usize) -> Option<(NodeId, NodeId)> {
        // The known nodes in clockwise order, from the farthest left member to the farthest
        // right one (a full circle when the leaf set covers the ring).
        let ls = &self.leaf_set;
        let mut ring: Vec<NodeId> = ls
            .side(Side::Left)
            .iter()
            .rev()
            .map(|l| l.handle.id)
            .collect();
        ring.push(self.me.id);
        ring.extend(ls.side(Side::Right).iter().map(|l| l.handle.id));
        let whole = ls.covers_ring();
        if whole {
            ring.sort_by_key(|x| self.me.id.cw_distance(*x));
            ring.dedup();
        }
        let n = ring.len();
        let pos = ring.iter().position(|&x| x == id)?;
        let k = rank + 1;
        if whole && n <= k {
            return Some((id.wrapping_add(1), id));
        }
        let (prev, next) = if whole {
            (ring[(pos + n - k % n) % n], ring[(pos + k) % n])
        } else {
            (*ring.get(pos.checked_sub(k)?)?, *ring.get(pos + k)?)
        };
        // Keys strictly past the midpoint belong to the clockwise node (tie rule).
        let from = prev.wrapping_add(prev.cw_distance(id).div_ceil(2));
        let to = id.wrapping_add(id.cw_distance(next).div_ceil(2).wrapping_sub(1));
        Some((from, to))
    }
}

struct AppSlot<A> {
    id: AppId,
    app: Box<dyn Application<A>>,
}

/// One Pastry node. See the module and crate docs for the drain contract.
// The fields in the order of their use: what nearly every message reads or writes first,
// in as few cache lines as will hold it, then the statistics, then what is rarely touched.
// A simulator holds a million nodes, and each message to one costs a cache miss per line
// it touches (with Rust's own field order, nearly every line of the struct).
#[repr(C, align(64))]
pub struct Node<A: Address> {
    now: Instant,
    state: NodeState,
    cfg: Arc<Config>,
    right: Option<NodeId>,
    right_heard: Instant,
    t: Tables<A>,
    probes: IdMap<Probe<A>>,
    failed: VecDeque<Failed>,
    timers: HeadHeap<(Instant, Timer)>,
    transmits: VecDeque<Transmit<A>>,
    events: VecDeque<Event<A>>,
    stats: Stats,
    rng: Rng,
    apps: Vec<AppSlot<A>>,
    acks: BTreeMap<u64, PendingHop<A>>,
    held: VecDeque<Held<A>>,
    join: Option<Box<Join<A>>>,
    ready_at: Instant,
    /// When `lazy_fill` last asked for a row.
    last_fill: Instant,
    /// The node the last routing-table maintenance asked for a row, until it answers.
    maintenance_peer: Option<NodeId>,
    next_id: u64,
    next_request: u64,
    recent_deliveries: VecDeque<(NodeId, u64)>,
    relays: Vec<Relay<A>>,
}

impl<A: Address> fmt::Debug for Node<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("me", &self.t.me)
            .field("state", &self.state)
            .field("leaf_set", &self.t.leaf_set.len())
            .field("routing_table", &self.t.routing_table.len())
            .finish_non_exhaustive()
    }
}

impl<A: Address> Node<A> {
    /// A new idle node with id `id` reachable at `addr`. `seed` drives every random choice
    /// the node makes. `cfg` must have passed [`Config::validate`].
    pub fn new(cfg: Arc<Config>, id: NodeId, addr: A, seed: u64) -> Self {
        debug_assert!(cfg.validate().is_ok(), "config must be validated");
        let me = NodeHandle::new(id, addr);
        Node {
            t: Tables::new(&cfg, me),
            cfg,
            state: NodeState::Idle,
            rng: Rng::new(seed),
            apps: Vec::new(),
            timers: HeadHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            probes: IdMap::new(),
            acks: BTreeMap::new(),
            held: VecDeque::new(),
            failed: VecDeque::new(),
            join: None,
            right: None,
            right_heard: Instant::ZERO,
            ready_at: Instant::ZERO,
            last_fill: Instant::ZERO,
            maintenance_peer: None,
            next_id: 0,
            // Request ids start at a random point, so that a node restarted under the same
            // id is not taken for a repeat of its former self by the roots' de-duplication.
            next_request: Rng::new(seed ^ 0x5eed_0f4e_9e57).next_u64() >> 1,
            recent_deliveries: VecDeque::new(),
            relays: Vec::new(),
            now: Instant::ZERO,
            stats: Stats::default(),
        }
    }

    /// Registers `app` under `id`; its upcalls start with the next input.
    ///
    /// # Errors
    /// Gives the application back if `id` is taken.
    #[allow(clippy::result_large_err)]
    pub fn register(
        &mut self,
        id: AppId,
        app: Box<dyn Application<A>>,
    ) -> Result<(), Box<dyn Application<A>>> {
        if self.apps.iter().any(|s| s.id == id) {
            return Err(app);
        }
        self.apps.push(AppSlot { id, app });
        Ok(())
    }

    // ---- accessors ----

    /// This node's handle.
    pub fn handle(&self) -> NodeHandle<A> {
        self.t.me
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.t.me.id
    }

    /// Lifecycle state.
    pub fn state(&self) -> NodeState {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The leaf set.
    pub fn leaf_set(&self) -> &LeafSet<A> {
        &self.t.leaf_set
    }

    /// The routing table.
    pub fn routing_table(&self) -> &RoutingTable<A> {
        &self.t.routing_table
    }

    /// The neighbourhood set.
    pub fn neighborhood(&self) -> &NeighborhoodSet<A> {
        &self.t.neighborhood
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The routing decision this node would take for `key` now.
    pub fn decide(&self, key: NodeId) -> Decision<A> {
        self.t.decide(key, |_| false, |id| self.is_suspect(id))
    }

    /// Common API `local_lookup`: see [`AppContext::local_lookup`].
    pub fn local_lookup(&self, key: NodeId, num: usize) -> Vec<NodeHandle<A>> {
        self.t.local_lookup(key, num)
    }

    /// Common API `neighborSet`: see [`AppContext::neighbor_set`].
    pub fn neighbor_set(&self, num: usize) -> Vec<NodeHandle<A>> {
        self.t.neighbor_set(num)
    }

    /// Common API `replicaSet`: see [`AppContext::replica_set`].
    pub fn replica_set(&self, key: NodeId, max: usize) -> Vec<NodeHandle<A>> {
        self.t.replica_set(key, max)
    }

    /// Common API `range`: see [`AppContext::range`].
    pub fn range(&self, handle: &NodeHandle<A>, rank: usize) -> Option<(NodeId, NodeId)> {
        self.t.range(handle.id, rank)
    }

    /// Messages currently held (joining, or waiting on a suspected node).
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    // ---- the drain contract ----

    /// The next message to send, if any. Drain until `None` after every input.
    pub fn poll_transmit(&mut self) -> Option<Transmit<A>> {
        let t = self.transmits.pop_front();
        if t.is_none() {
            shrink_idle(&mut self.transmits);
        }
        t
    }

    /// The next event, if any. Drain until `None` after every input.
    pub fn poll_event(&mut self) -> Option<Event<A>> {
        let e = self.events.pop_front();
        if e.is_none() {
            shrink_idle(&mut self.events);
        }
        e
    }

    /// The earliest deadline at which [`Node::handle_timeout`] must be called. Does not
    /// drain anything; may be earlier than needed (a cancelled timer), never later.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|(at, _)| *at)
    }

    // ---- commands ----

    /// Starts a new ring with this node as its only member; it is ready at once.
    pub fn start_ring(&mut self, now: Instant) {
        if self.state != NodeState::Idle {
            return;
        }
        let now = self.tick(now);
        self.become_ready(now, Vec::new());
    }

    /// Joins the ring through `bootstrap` (tried in turn on timeout). An empty list starts
    /// a new ring, as [`Node::start_ring`].
    pub fn join(&mut self, now: Instant, bootstrap: &[A]) {
        if self.state != NodeState::Idle {
            return;
        }
        let now = self.tick(now);
        let bootstraps: Vec<A> = bootstrap
            .iter()
            .copied()
            .filter(|a| *a != self.t.me.addr)
            .collect();
        if bootstraps.is_empty() {
            self.become_ready(now, Vec::new());
            return;
        }
        self.state = NodeState::Joining;
        self.join = Some(Box::new(Join {
            bootstraps,
            phase: JoinPhase::AwaitReply { attempt: 0 },
            candidates: LeafSet::new(self.t.me.id, self.cfg.leaf_set_size / 2),
            rooms: Vec::new(),
        }));
        self.send_join_request(now, 0);
    }

    /// Routes `data` to the root of `key` for application `app`; returns the request id
    /// carried to the root.
    ///
    /// # Errors
    /// [`RouteError`] when the node is not a member or the payload is too large.
    pub fn route(
        &mut self,
        now: Instant,
        key: NodeId,
        app: AppId,
        data: Bytes,
    ) -> Result<RequestId, RouteError> {
        self.route_with(
            now,
            RouteRequest {
                key,
                app,
                data,
                hint: None,
                trace: false,
            },
        )
    }

    /// Routes as [`Node::route`], with a first-hop hint and path tracing.
    ///
    /// # Errors
    /// [`RouteError`] when the node is not a member or the payload is too large.
    pub fn route_with(
        &mut self,
        now: Instant,
        req: RouteRequest<A>,
    ) -> Result<RequestId, RouteError> {
        self.check_route(&req.data)?;
        let now = self.tick(now);
        self.next_request += 1;
        let request = self.next_request;
        self.originate(now, req, request);
        Ok(request)
    }

    fn check_route(&self, data: &Bytes) -> Result<(), RouteError> {
        if !matches!(self.state, NodeState::Joining | NodeState::Ready) {
            return Err(RouteError::NotMember);
        }
        if data.len() > self.cfg.max_payload_bytes {
            return Err(RouteError::PayloadTooLarge {
                len: data.len(),
                max: self.cfg.max_payload_bytes,
            });
        }
        Ok(())
    }

    /// Calls `f` on the application registered under `app` if it is a `T`, with a context
    /// to route, send, set timers and notify from, as in an upcall: this is how a host
    /// invokes an application's own API (PAST's insert, Scribe's subscribe, ...). `None`
    /// when no application is registered under `app` or it is not a `T`. Poll the node
    /// afterwards, as after any input.
    pub fn with_application<T: Application<A>, R>(
        &mut self,
        now: Instant,
        app: AppId,
        f: impl FnOnce(&mut T, &mut AppContext<'_, A>) -> R,
    ) -> Option<R> {
        self.tick(now);
        self.with_app(app, |a, ctx| {
            let any: &mut dyn Any = a;
            any.downcast_mut::<T>().map(|t| f(t, ctx))
        })
        .flatten()
    }

    /// Feeds an RTT the host measured to `peer` (a transport's own estimate, say) into the
    /// tables, as if a probe had measured it: failure-detection timeouts and proximity
    /// neighbour selection both use it. Hosts that do not measure need not call this.
    pub fn observe_rtt(&mut self, now: Instant, peer: NodeHandle<A>, rtt: Duration) {
        self.tick(now);
        if peer.id != self.t.me.id && !rtt.is_zero() {
            self.record_rtt(now, peer, micros(rtt).min(u64::from(u32::MAX)) as u32);
        }
    }

    /// Sends `data` straight to `to`'s application `app` (its `direct` upcall, or
    /// [`Event::DirectDelivered`]).
    ///
    /// # Errors
    /// [`RouteError`] when the node is not a member or the payload is too large.
    pub fn send_direct(
        &mut self,
        now: Instant,
        to: NodeHandle<A>,
        app: AppId,
        data: Bytes,
    ) -> Result<(), RouteError> {
        self.check_route(&data)?;
        self.tick(now);
        self.direct(to, app, data);
        Ok(())
    }

    /// Sends a direct message, or hands it over locally when `to` is this node (a "send to
    /// every replica" loop includes ourselves).
    fn direct(&mut self, to: NodeHandle<A>, app: AppId, data: Bytes) {
        if to.id == self.t.me.id {
            let me = self.t.me;
            self.deliver_direct(me, app, data);
        } else {
            self.send(to.addr, Body::Direct { app, data });
        }
    }

    fn deliver_direct(&mut self, from: NodeHandle<A>, app: AppId, data: Bytes) {
        if self
            .with_app(app, |a, ctx| a.direct(ctx, from, data.clone()))
            .is_none()
        {
            self.events
                .push_back(Event::DirectDelivered { from, app, data });
        }
    }

    /// Leaves the ring gracefully: tells the leaf set, then ignores all input.
    pub fn leave(&mut self, now: Instant) {
        if self.state == NodeState::Left {
            return;
        }
        self.tick(now);
        if self.state != NodeState::Idle {
            let leaf_set = self.t.leaf_set.handles();
            for h in &leaf_set {
                self.send(
                    h.addr,
                    Body::Leave {
                        leaf_set: leaf_set.clone(),
                    },
                );
            }
        }
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.state = NodeState::Left;
        self.timers.clear();
        self.probes.clear();
        self.acks.clear();
        self.held.clear();
        self.join = None;
    }

    // ---- inputs ----

    /// Processes a message that arrived from `from`.
    pub fn handle_message(&mut self, now: Instant, from: A, msg: Message<A>) {
        let now = self.tick(now);
        let kind = msg.body.kind();
        self.stats.received[kind as usize - 1] += 1;
        if matches!(self.state, NodeState::Idle | NodeState::Left) || msg.sender == self.t.me.id {
            self.stats.ignored += 1;
            return;
        }
        let sender = NodeHandle::new(msg.sender, from);
        match msg.body {
            Body::Route(m) => self.on_route(now, sender, *m),
            Body::RelayedRoute { target, route } => {
                self.on_relayed_route(now, sender, target, *route);
            }
            Body::RouteAck { hop_id } => self.on_route_ack(now, sender, hop_id),
            Body::Direct { app, data } => {
                self.heard_from(now, sender, true);
                if data.len() > self.cfg.max_payload_bytes {
                    self.stats.ignored += 1;
                } else {
                    self.deliver_direct(sender, app, data);
                }
            }
            Body::JoinReply { leaf_set, rows } => self.on_join_reply(now, sender, leaf_set, rows),
            Body::Probe {
                nonce,
                joining,
                want_leaf_set,
            } => {
                self.heard_from(now, sender, true);
                if joining && self.t.routing_table.would_accept(sender.id, Rtt::UNKNOWN) {
                    self.t.routing_table.insert(sender, Rtt::UNKNOWN);
                    self.sync_wrap(now);
                }
                let leaf_set = if want_leaf_set {
                    self.t.leaf_set.handles()
                } else {
                    Vec::new()
                };
                let ready = self.state == NodeState::Ready;
                let room_us = self.t.announce_room(sender.id);
                self.send(
                    sender.addr,
                    Body::ProbeReply {
                        nonce,
                        ready,
                        leaf_set,
                        room_us,
                    },
                );
            }
            Body::ProbeReply {
                nonce,
                leaf_set,
                room_us,
                ..
            } => self.on_probe_reply(now, sender, nonce, leaf_set, room_us),
            Body::LeafSetUpdate {
                heartbeat,
                leaf_set,
                failed,
            } => {
                self.heard_from(now, sender, true);
                let quiet = failed.is_empty();
                for f in failed {
                    self.on_failure_notice(now, f, sender.id, &leaf_set);
                }
                if heartbeat {
                    self.anti_entropy(sender, &leaf_set, true);
                } else if quiet {
                    // An anti-entropy answer that itself reports no failure may still hold
                    // nodes we know are dead: say so (that answer carries failures, so it
                    // gets none back; two nodes cannot bounce updates for ever).
                    self.anti_entropy(sender, &leaf_set, false);
                }
                self.consider_leaves(now, &leaf_set);
            }
            Body::RowRequest { row, rtt_us } => {
                self.heard_from(now, sender, true);
                if rtt_us != 0 {
                    self.announced(sender, rtt_us);
                }
                let (entries, rtt_us) = self
                    .t
                    .routing_table
                    .row(row as usize)
                    .iter()
                    .flatten()
                    .map(|e| (e.handle, if e.rtt.is_known() { e.rtt.srtt_us } else { 0 }))
                    .unzip();
                self.send(
                    sender.addr,
                    Body::RowReply {
                        row,
                        entries,
                        rtt_us,
                    },
                );
            }
            Body::RowReply {
                row: _,
                entries,
                rtt_us,
            } => {
                self.heard_from(now, sender, true);
                let max_probes = if self.maintenance_peer == Some(sender.id) {
                    self.maintenance_peer = None;
                    self.cfg.rt_maintenance_probes
                } else {
                    self.cfg.row_probes
                };
                self.consider_row(now, sender.id, &entries, &rtt_us, max_probes);
            }
            Body::Announce { rtt_us } => {
                self.heard_from(now, sender, true);
                self.announced(sender, rtt_us);
            }
            Body::Leave { leaf_set } => {
                self.remove_node(now, sender.id, false, (0, false), &[]);
                self.consider_leaves(now, &leaf_set);
            }
            Body::IndirectProbe { target, nonce } => {
                self.heard_from(now, sender, true);
                self.on_indirect_probe(now, sender, target, nonce);
            }
            Body::IndirectProbeReply { target, nonce } => {
                self.heard_from(now, sender, true);
                self.on_indirect_probe_reply(now, sender, target, nonce);
            }
            Body::JoinReplyRelay {
                joiner,
                leaf_set,
                rows,
            } => {
                self.heard_from(now, sender, true);
                // Only for a member, about a joiner that belongs next to us both: nobody
                // can make us send join answers to arbitrary nodes.
                let near =
                    self.t.leaf_set.would_accept(joiner.id) || self.t.leaf_set.contains(joiner.id);
                if self.state == NodeState::Ready
                    && self.t.leaf_set.contains(sender.id)
                    && joiner.id != self.t.me.id
                    && near
                {
                    self.send(joiner.addr, Body::JoinReply { leaf_set, rows });
                } else {
                    self.stats.ignored += 1;
                }
            }
        }
        self.prune_timers();
    }

    /// Processes every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.tick(now);
        while let Some(&(at, timer)) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.on_timer(now, timer);
        }
        self.prune_timers();
        // A burst (a join, a failure) can leave the heap mostly empty: give memory back, as
        // a simulator holds a million of these.
        self.timers.shrink();
        if self.held.is_empty() {
            shrink_idle(&mut self.held);
        }
    }

    // ---- internals: sending and timers ----

    /// Advances the node's clock to `now`, never backwards; returns the clock.
    fn tick(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    fn send(&mut self, to: A, body: Body<A>) {
        self.stats.sent[body.kind() as usize - 1] += 1;
        self.transmits.push_back(Transmit {
            to,
            msg: Message {
                sender: self.t.me.id,
                body,
            },
        });
    }

    fn set_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.push((at, timer));
    }

    /// Pops timers at the head of the queue that would do nothing when due: a probe
    /// answered (or superseded by a retry), a hop acknowledged, a join attempt that got
    /// its reply. Cancelling is lazy, so without this [`Node::poll_timeout`] reports
    /// deadlines that are already moot and the host wakes the node for nothing (80% of
    /// a 100,000-node simulation's wake-ups did nothing before this).
    fn prune_timers(&mut self) {
        while let Some((_, timer)) = self.timers.peek() {
            let moot = match *timer {
                Timer::Probe(id, nonce) => self.probes.get(&id).is_none_or(|p| p.nonce != nonce),
                Timer::Ack(hop_id) => !self.acks.contains_key(&hop_id),
                Timer::Join(attempt) => !self.join.as_ref().is_some_and(
                    |j| matches!(j.phase, JoinPhase::AwaitReply { attempt: a } if a == attempt),
                ),
                Timer::Heartbeat
                | Timer::HeartbeatCheck
                | Timer::RtMaintenance
                | Timer::App(..) => false,
            };
            if !moot {
                break;
            }
            self.timers.pop();
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A duration scaled by a random factor in `[lo, 1)`, to keep nodes out of step.
    fn jitter(&mut self, d: Duration, lo: f64) -> Duration {
        d.mul_f64(lo + (1.0 - lo) * self.rng.unit())
    }

    /// `d` give or take `spread` (a fraction): periodic timers average their configured
    /// period (a period only ever jittered down cost 5-13% more messages than configured).
    fn around(&mut self, d: Duration, spread: f64) -> Duration {
        d.mul_f64(1.0 - spread + 2.0 * spread * self.rng.unit())
    }

    fn timeout_for(&self, id: NodeId) -> Duration {
        self.timeout_with_floor(id, self.cfg.probe_timeout_min)
    }

    /// A hop's ack deadline: the RTT estimate's timeout with its own, lower floor. A dead
    /// routing-table entry costs a route this much before it goes elsewhere, so the floor
    /// matters under churn; a hop whose ack is merely late is rerouted, and the root drops
    /// the repeat.
    fn ack_timeout_for(&self, id: NodeId) -> Duration {
        self.timeout_with_floor(id, self.cfg.ack_timeout_min)
    }

    fn timeout_with_floor(&self, id: NodeId, floor: Duration) -> Duration {
        let c = &self.cfg;
        self.t
            .rtt(id)
            .timeout(c.probe_timeout_initial, floor, c.probe_timeout_max)
    }

    fn is_suspect(&self, id: NodeId) -> bool {
        self.probes
            .get(&id)
            .is_some_and(|p| p.flags & P_SUSPECT != 0)
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Heartbeat => {
                if self.state != NodeState::Ready {
                    return;
                }
                if let Some(left) = self.t.leaf_set.neighbor(Side::Left).map(|l| l.handle) {
                    let failed = self.recent_failures(now);
                    let leaf_set = self.t.leaf_set.handles();
                    self.send(
                        left.addr,
                        Body::LeafSetUpdate {
                            heartbeat: true,
                            leaf_set,
                            failed,
                        },
                    );
                }
                let d = self.around(self.cfg.heartbeat_interval, 0.1);
                self.set_timer(now + d, Timer::Heartbeat);
            }
            Timer::HeartbeatCheck => {
                if self.state != NodeState::Ready {
                    return;
                }
                self.track_right(now);
                let timeout = self.cfg.heartbeat_timeout;
                match self.t.leaf_set.neighbor(Side::Right).map(|l| l.handle) {
                    None => self.right_heard = now,
                    Some(r) if now >= self.right_heard + timeout => {
                        // A neighbour reached only through another member is silent by
                        // nature: its messages keep going through that member meanwhile.
                        let suspect = if self.relay_for(now, r.id).is_some() {
                            0
                        } else {
                            P_SUSPECT
                        };
                        self.probe(now, r, suspect | P_WANT_LS);
                        self.right_heard = now;
                    }
                    Some(_) => {}
                }
                // Strictly in the future: either just reset to now, or not yet due.
                self.set_timer(self.right_heard + timeout, Timer::HeartbeatCheck);
            }
            Timer::RtMaintenance => {
                if self.state != NodeState::Ready {
                    return;
                }
                self.rt_maintenance(now);
                self.repair_leaf_set(now);
                let d = self.around(self.cfg.rt_maintenance_interval, 0.25);
                self.set_timer(now + d, Timer::RtMaintenance);
            }
            Timer::Join(attempt) => self.on_join_timeout(now, attempt),
            Timer::Ack(hop_id) => {
                if let Some(p) = self.acks.remove(&hop_id) {
                    self.stats.reroutes += 1;
                    // A relay that fails us relays nothing more.
                    self.relays.retain(|r| r.via.id != p.next.id);
                    self.probe(now, p.next, P_SUSPECT);
                    let mut excluded = p.excluded;
                    excluded.push(p.next.id);
                    self.reroute(now, p.msg, excluded, p.reroutes + 1);
                }
            }
            Timer::Probe(id, nonce) => self.on_probe_timeout(now, id, nonce),
            Timer::App(app, token) => {
                self.with_app(app, |a, ctx| a.timer(ctx, token));
            }
        }
    }

    /// Recent failures of nodes in (or due in) our leaf set: what heartbeats gossip. Failures
    /// of far nodes (routing-table candidates) concern nobody near us.
    fn recent_failures(&mut self, now: Instant) -> Vec<NodeId> {
        let ttl = self.cfg.failed_set_ttl;
        self.failed.retain(|f| now.saturating_since(f.at) <= ttl);
        self.failed
            .iter()
            .filter(|f| f.leaf)
            .map(|f| f.id)
            .collect()
    }

    fn recently_failed(&self, id: NodeId) -> bool {
        self.recent_failure(id).is_some()
    }

    /// Like [`Self::recently_failed`], without the failures only one unanswered probe says.
    fn recently_failed_surely(&self, id: NodeId) -> bool {
        self.recent_failure(id).is_some_and(|f| !f.weak)
    }

    /// `id`'s entry in the failed set (one at most), unless it is older than the TTL.
    fn recent_failure(&self, id: NodeId) -> Option<&Failed> {
        self.failed
            .iter()
            .find(|f| f.id == id && self.now.saturating_since(f.at) <= self.cfg.failed_set_ttl)
    }

    /// Remembers a failure. When full, far nodes' entries go first: under churn a node sees
    /// many of those, and they must not push out the ones its neighbours need to hear of.
    fn add_failed(&mut self, now: Instant, id: NodeId, leaf: bool, weak: bool) {
        self.failed.retain(|f| f.id != id);
        if self.cfg.failed_set_size == 0 {
            return;
        }
        if self.failed.len() >= self.cfg.failed_set_size {
            let victim = self.failed.iter().position(|f| !f.leaf).unwrap_or(0);
            self.failed.remove(victim);
        }
        self.failed.push_back(Failed {
            id,
            at: now,
            leaf,
            weak,
        });
    }

    // ---- internals: routing ----

    fn originate(&mut self, now: Instant, req: RouteRequest<A>, request: u64) {
        self.stats.routes_originated += 1;
        let me = self.t.me;
        let msg = RouteMsg {
            hop_id: 0,
            key: req.key,
            origin: me,
            request,
            hops: 0,
            trace: req.trace,
            path: if req.trace { vec![me.id] } else { Vec::new() },
            payload: RoutePayload::App {
                app: req.app,
                data: req.data,
            },
        };
        match req.hint {
            Some(h) if h.id != me.id => self.send_route(now, h, msg, Vec::new(), 0),
            _ => self.reroute(now, msg, Vec::new(), 0),
        }
    }

    fn on_route(&mut self, now: Instant, sender: NodeHandle<A>, mut m: RouteMsg<A>) {
        if self.accept_hop(now, sender, &mut m) {
            self.reroute(now, m, Vec::new(), 0);
        }
    }

    /// A member that cannot reach `target` asks us to pass `m` on to it. Applications here
    /// are not asked (`forward`): the hop is the sender's, relayed. If we no longer know
    /// `target` or suspect it ourselves, the hop is not acknowledged: the sender then
    /// stops relaying through us and decides again. (Routing it on by key from here could
    /// send it straight back to the sender: a loop.)
    fn on_relayed_route(
        &mut self,
        now: Instant,
        sender: NodeHandle<A>,
        target: NodeHandle<A>,
        mut m: RouteMsg<A>,
    ) {
        let to = self
            .t
            .find(target.id)
            .filter(|h| h.addr == target.addr && h.id != sender.id && !self.is_suspect(h.id));
        let Some(to) = to else {
            self.stats.ignored += 1;
            return;
        };
        if self.accept_hop(now, sender, &mut m) {
            self.send_hop(now, to, m, Vec::new(), 0, false);
        }
    }

    /// What every hop does on receiving a routed message: acknowledge it, check it, count
    /// the hop. False when it is dropped.
    fn accept_hop(&mut self, now: Instant, sender: NodeHandle<A>, m: &mut RouteMsg<A>) -> bool {
        if m.hop_id != 0 {
            self.send(sender.addr, Body::RouteAck { hop_id: m.hop_id });
        }
        let joiner = match &m.payload {
            RoutePayload::Join { joiner, .. } => Some(joiner.id),
            RoutePayload::App { data, .. } => {
                if data.len() > self.cfg.max_payload_bytes {
                    self.stats.ignored += 1;
                    return false;
                }
                None
            }
        };
        // A joiner's own request says nothing about its readiness to take keys.
        self.heard_from(now, sender, joiner != Some(sender.id));
        m.hops = m.hops.saturating_add(1);
        if m.trace && m.path.len() < crate::codec::MAX_PATH {
            m.path.push(self.t.me.id);
        }
        if m.hops > self.cfg.max_hops {
            self.fail_route(m, RouteFailure::TooManyHops);
            return false;
        }
        if joiner.is_some() {
            self.add_join_rows(m, sender.id);
        }
        true
    }

    /// Decides and acts for a message this node holds: forward, deliver, or hold.
    fn reroute(&mut self, now: Instant, mut m: RouteMsg<A>, excluded: Vec<NodeId>, reroutes: u8) {
        if reroutes > self.cfg.max_reroutes {
            self.fail_route(&m, RouteFailure::NoLiveNextHop);
            return;
        }
        let joiner = match &m.payload {
            RoutePayload::Join { joiner, .. } => Some(joiner.id),
            RoutePayload::App { .. } => None,
        };
        let decision = self.t.decide(
            m.key,
            |id| Some(id) == joiner,
            |id| {
                excluded.contains(&id)
                    || self
                        .probes
                        .get(&id)
                        .is_some_and(|p| p.flags & P_SUSPECT != 0)
            },
        );
        match decision {
            Decision::Forward { mut to, rare } => {
                if reroutes == 0
                    && let RoutePayload::App { app, data } = &mut m.payload
                {
                    let app = *app;
                    let (key, origin, hops) = (m.key, m.origin, m.hops);
                    let action = self.with_app(app, |a, ctx| {
                        a.forward(
                            ctx,
                            Forward {
                                key,
                                origin,
                                hops,
                                data,
                                next_hop: &mut to,
                            },
                        )
                    });
                    match action {
                        Some(ForwardAction::Drop) => {
                            self.fail_route(&m, RouteFailure::DroppedByApplication);
                            return;
                        }
                        Some(ForwardAction::Consumed) => {
                            self.stats.consumed += 1;
                            return;
                        }
                        Some(ForwardAction::Continue) | None => {}
                    }
                    if to.id == self.t.me.id {
                        self.deliver(now, m, excluded, reroutes);
                        return;
                    }
                }
                if rare {
                    self.stats.rare_cases += 1;
                    self.lazy_fill(now, m.key, to);
                }
                if m.origin.id != self.t.me.id && reroutes == 0 {
                    self.stats.forwarded += 1;
                }
                self.send_route(now, to, m, excluded, reroutes);
            }
            Decision::Deliver => self.deliver(now, m, excluded, reroutes),
            Decision::Hold(s) => {
                // The message waits for `s`'s probe to settle. `s` may be excluded only for
                // this message (it missed this message's ack) without being under probe: probe
                // it now, or the message would wait for nothing.
                let known = self.t.find(s);
                if !self.is_suspect(s)
                    && let Some(h) = known
                {
                    self.probe(now, h, P_SUSPECT);
                }
                if self.is_suspect(s) {
                    self.hold(m, excluded, reroutes, Wait::Suspect(s));
                } else {
                    // No probe possible (probe table full): stop avoiding it.
                    let mut excluded = excluded;
                    excluded.retain(|x| *x != s);
                    self.reroute(now, m, excluded, reroutes + 1);
                }
            }
        }
    }

    fn send_route(
        &mut self,
        now: Instant,
        to: NodeHandle<A>,
        m: RouteMsg<A>,
        excluded: Vec<NodeId>,
        reroutes: u8,
    ) {
        self.send_hop(now, to, m, excluded, reroutes, true);
    }

    /// Sends `m` to `target`, through the member that reaches it for us if we do not
    /// (and `relay`), and waits for the hop's ack.
    fn send_hop(
        &mut self,
        now: Instant,
        target: NodeHandle<A>,
        mut m: RouteMsg<A>,
        excluded: Vec<NodeId>,
        reroutes: u8,
        relay: bool,
    ) {
        let via = relay
            .then(|| self.relay_for(now, target.id))
            .flatten()
            .filter(|v| !excluded.contains(&v.id));
        let to = via.unwrap_or(target);
        if self.acks.len() >= self.cfg.max_pending_acks {
            self.stats.acks_untracked += 1;
            m.hop_id = 0;
        } else {
            let hop_id = self.fresh_id();
            m.hop_id = hop_id;
            let deadline = now + self.ack_timeout_for(to.id);
            self.acks.insert(
                hop_id,
                PendingHop {
                    msg: m.clone(),
                    next: to,
                    sent_at: now,
                    excluded,
                    reroutes,
                },
            );
            self.set_timer(deadline, Timer::Ack(hop_id));
        }
        let m = Box::new(m);
        if via.is_some() {
            self.stats.relayed_hops += 1;
            self.send(to.addr, Body::RelayedRoute { target, route: m });
        } else {
            self.send(to.addr, Body::Route(m));
        }
    }

    fn on_route_ack(&mut self, now: Instant, sender: NodeHandle<A>, hop_id: u64) {
        self.heard_from(now, sender, true);
        if self
            .acks
            .get(&hop_id)
            .is_some_and(|p| p.next.id == sender.id)
            && let Some(p) = self.acks.remove(&hop_id)
        {
            // It answers us directly now.
            self.relays.retain(|r| r.id != sender.id);
            let us = micros(now.saturating_since(p.sent_at)).min(u64::from(u32::MAX)) as u32;
            self.record_rtt(now, sender, us);
        }
    }

    fn hold(&mut self, m: RouteMsg<A>, excluded: Vec<NodeId>, reroutes: u8, wait: Wait) {
        if self.held.len() >= self.cfg.max_held_messages {
            self.fail_route(&m, RouteFailure::HoldQueueFull);
            return;
        }
        self.stats.held += 1;
        self.held.push_back(Held {
            msg: m,
            excluded,
            reroutes,
            wait,
        });
    }

    /// Re-decides every held message waiting on `wait`; `alive` lifts the suspicion.
    fn release(&mut self, now: Instant, wait: Wait) {
        if !self.held.iter().any(|h| h.wait == wait) {
            return;
        }
        let (go, stay): (VecDeque<Held<A>>, VecDeque<Held<A>>) =
            self.held.drain(..).partition(|h| h.wait == wait);
        self.held = stay;
        for mut h in go {
            if let Wait::Suspect(id) = wait {
                // It answered or was removed: either way it need not be avoided any longer.
                h.excluded.retain(|x| *x != id);
            }
            self.reroute(now, h.msg, h.excluded, h.reroutes);
        }
    }

    fn fail_route(&mut self, m: &RouteMsg<A>, reason: RouteFailure) {
        self.stats.route_failures += 1;
        self.events.push_back(Event::RouteFailed {
            key: m.key,
            request: m.request,
            origin: m.origin,
            reason,
        });
    }

    fn deliver(&mut self, now: Instant, m: RouteMsg<A>, excluded: Vec<NodeId>, reroutes: u8) {
        if self.state != NodeState::Ready {
            self.hold(m, excluded, reroutes, Wait::Ready);
            return;
        }
        if let RoutePayload::App { .. } = m.payload {
            // A lost ack makes the previous hop reroute a message we already have; the root
            // swallows such repeats (within a bounded window) so delivery is exactly once.
            let tag = (m.origin.id, m.request);
            if self.recent_deliveries.contains(&tag) {
                self.stats.duplicates += 1;
                return;
            }
            if self.recent_deliveries.len() >= self.cfg.dedup_window {
                self.recent_deliveries.pop_front();
            }
            if self.cfg.dedup_window > 0 {
                self.recent_deliveries.push_back(tag);
            }
        }
        self.stats.delivered += 1;
        match m.payload {
            RoutePayload::App { app, data } => {
                let d = Delivery {
                    key: m.key,
                    app,
                    data,
                    origin: m.origin,
                    request: m.request,
                    hops: m.hops,
                    path: m.path,
                };
                let mut slot = Some(d);
                let handled = self.with_app(app, |a, ctx| {
                    if let Some(d) = slot.take() {
                        a.deliver(ctx, d);
                    }
                });
                if handled.is_none()
                    && let Some(d) = slot
                {
                    self.events.push_back(Event::Delivered(d));
                }
            }
            RoutePayload::Join { joiner, mut rows } => {
                let l = self.t.me.id.shared_prefix_len(joiner.id, self.cfg.b);
                for r in l..self.t.routing_table.rows() {
                    Self::push_row(&self.t.routing_table, r, joiner.id, &mut rows);
                }
                let leaf_set: Vec<NodeHandle<A>> = self
                    .t
                    .leaf_set
                    .handles()
                    .into_iter()
                    .filter(|h| h.id != joiner.id)
                    .collect();
                // A repeated request (the joiner's earlier one timed out) may mean our
                // answers do not reach it: two members, different ones at each attempt,
                // also pass the answer on (the joiner takes whichever comes first).
                let relays: Vec<NodeHandle<A>> = if m.request > 0 {
                    let mut near = leaf_set.clone();
                    near.sort_by_key(|h| h.id.distance(joiner.id));
                    // (`request` is the joiner's attempt; any value is safe here.)
                    let first = ((m.request - 1) % 64) as usize * 2;
                    near.iter()
                        .cycle()
                        .skip(first)
                        .take(2.min(near.len()))
                        .copied()
                        .collect()
                } else {
                    Vec::new()
                };
                for via in relays {
                    let mut with_me = leaf_set.clone();
                    with_me.retain(|h| h.id != via.id);
                    with_me.push(self.t.me);
                    let relayed = Body::JoinReplyRelay {
                        joiner,
                        leaf_set: with_me,
                        rows: rows.clone(),
                    };
                    self.send(via.addr, relayed);
                }
                self.send(joiner.addr, Body::JoinReply { leaf_set, rows });
                let _ = now;
            }
        }
    }

    fn push_row(rt: &RoutingTable<A>, row: usize, joiner: NodeId, rows: &mut Vec<NodeHandle<A>>) {
        for e in rt.row(row).iter().flatten() {
            if rows.len() >= JOIN_ROWS_MAX {
                return;
            }
            if e.handle.id != joiner && !rows.iter().any(|h| h.id == e.handle.id) {
                rows.push(e.handle);
            }
        }
    }

    /// A hop of a join route adds itself and its routing-table row for the joiner (the
    /// first hop adds rows 0 up to that row, and its neighbourhood set).
    fn add_join_rows(&mut self, m: &mut RouteMsg<A>, sender: NodeId) {
        let RoutePayload::Join { joiner, rows } = &mut m.payload else {
            return;
        };
        let l = self.t.me.id.shared_prefix_len(joiner.id, self.cfg.b);
        let first = sender == joiner.id;
        let start = if first { 0 } else { l };
        for r in start..=l.min(self.t.routing_table.rows().saturating_sub(1)) {
            Self::push_row(&self.t.routing_table, r, joiner.id, rows);
        }
        if first {
            for e in self.t.neighborhood.entries() {
                if rows.len() < JOIN_ROWS_MAX
                    && e.handle.id != joiner.id
                    && !rows.iter().any(|h| h.id == e.handle.id)
                {
                    rows.push(e.handle);
                }
            }
        }
        if rows.len() < JOIN_ROWS_MAX && !rows.iter().any(|h| h.id == self.t.me.id) {
            rows.push(self.t.me);
        }
    }

    // ---- internals: liveness ----

    /// `sender` just talked to us, so it is alive: lift any suspicion, refresh the
    /// heartbeat clock, and (if `may_insert`) take it into the leaf set if it belongs there.
    fn heard_from(&mut self, now: Instant, sender: NodeHandle<A>, may_insert: bool) {
        // A node that restarted under the same id at another address: follow it.
        if self
            .t
            .find(sender.id)
            .is_some_and(|h| h.addr != sender.addr)
        {
            self.t.leaf_set.set_addr(sender.id, sender.addr);
            if self.t.routing_table.find(sender.id).is_some() {
                self.t.routing_table.insert(sender, Rtt::UNKNOWN);
            }
            self.t.neighborhood.set_addr(sender.id, sender.addr);
        }
        if let Some(p) = self.probes.get_mut(&sender.id) {
            p.addr = sender.addr;
            p.heard = true;
            if p.flags & P_SUSPECT != 0 {
                p.flags &= !P_SUSPECT;
                self.release(now, Wait::Suspect(sender.id));
            }
        }
        self.failed.retain(|f| f.id != sender.id);
        if may_insert && self.t.leaf_set.would_accept(sender.id) {
            let rtt = self.t.rtt(sender.id);
            self.leaf_insert(now, sender, rtt);
        }
        if self.right == Some(sender.id) {
            self.right_heard = now;
        }
    }

    /// A node that just joined told us the RTT it measured to us: consider it for the
    /// routing table and the neighbourhood set without a probe of our own.
    fn announced(&mut self, sender: NodeHandle<A>, rtt_us: u32) {
        self.t
            .routing_table
            .insert(sender, Rtt::from_sample(rtt_us));
        self.t.neighborhood.insert(sender, rtt_us);
    }

    fn record_rtt(&mut self, now: Instant, h: NodeHandle<A>, us: u32) {
        self.t.leaf_set.record_rtt(h.id, us);
        if self.t.routing_table.find(h.id).is_some() {
            self.t.routing_table.record_rtt(h.id, us);
        } else if !matches!(
            self.t.routing_table.insert(h, Rtt::from_sample(us)),
            Inserted::Rejected
        ) {
            self.sync_wrap(now);
        }
        self.t.neighborhood.insert(h, us);
    }

    fn probe(&mut self, now: Instant, h: NodeHandle<A>, flags: u8) {
        if h.id == self.t.me.id {
            return;
        }
        // Gossip may name a node we know at another (stale or forged) address: probe the
        // address we know, or a lie about it would get a live member declared dead.
        let h = self.t.find(h.id).unwrap_or(h);
        if let Some(p) = self.probes.get_mut(&h.id) {
            // Second-hand suspicion stays second hand only while nothing else asks for the
            // probe; any reason of our own makes the result first-hand evidence. Probing
            // for another member is no reason of ours: merged with a notice it stays a
            // notice (else a helper confirming a failure re-announced it to its leaf set,
            // 5% more leaf-set updates under churn).
            let own = |f: u8| f & P_NOTICE == 0 && f & !P_RELAY != 0;
            let first_hand = own(p.flags) || own(flags);
            p.flags |= flags;
            if first_hand {
                p.flags &= !P_NOTICE;
            }
            return;
        }
        let essential = flags & (P_SUSPECT | P_JOIN) != 0;
        let cap = self.cfg.max_outstanding_probes * if essential { 2 } else { 1 };
        if self.probes.len() >= cap {
            return;
        }
        let nonce = self.fresh_id();
        self.probes.insert(
            h.id,
            Probe {
                addr: h.addr,
                nonce,
                first_nonce: nonce,
                sent_at: now,
                tries: 0,
                flags,
                heard: false,
                via_wait: false,
                extra: None,
            },
        );
        self.send_probe(now, h, nonce, flags);
    }

    fn send_probe(&mut self, now: Instant, h: NodeHandle<A>, nonce: u64, flags: u8) {
        self.stats.probes_sent += 1;
        let joining = self.state == NodeState::Joining;
        // A probe for another member asks for the leaf set too: if that member cannot
        // reach it, we may be the only one to see what its leaf set lacks (anti-entropy
        // on the reply), as its heartbeats to that member are lost as well.
        self.send(
            h.addr,
            Body::Probe {
                nonce,
                joining,
                want_leaf_set: flags & (P_WANT_LS | P_RELAY) != 0,
            },
        );
        let tries = self.probes.get(&h.id).map_or(0, |p| p.tries);
        let timeout = self.probe_timeout(h.id, tries);
        self.set_timer(now + timeout, Timer::Probe(h.id, nonce));
    }

    /// How long try `tries` (0 the first) of a probe of `id` waits for the reply.
    fn probe_timeout(&self, id: NodeId, tries: u32) -> Duration {
        (self.timeout_for(id) * (1 << tries.min(4))).min(self.cfg.probe_timeout_max)
    }

    fn on_probe_reply(
        &mut self,
        now: Instant,
        sender: NodeHandle<A>,
        nonce: u64,
        leaf_set: Vec<NodeHandle<A>>,
        room_us: u32,
    ) {
        let Some(p) = self
            .probes
            .get(&sender.id)
            .filter(|p| nonce >= p.first_nonce && nonce <= p.nonce)
            .cloned()
        else {
            self.heard_from(now, sender, true);
            return;
        };
        self.probes.remove(&sender.id);
        self.relay_alive(sender.id, p.relay());
        if p.flags & P_SUSPECT != 0 {
            self.release(now, Wait::Suspect(sender.id));
        }
        if nonce == p.nonce {
            self.relays.retain(|r| r.id != sender.id);
            let us = micros(now.saturating_since(p.sent_at)).min(u64::from(u32::MAX)) as u32;
            self.record_rtt(now, sender, us);
            // Candidates the second phase of our join found are announced to as well, when
            // the announcement would change their tables.
            let fresh = self.state == NodeState::Ready
                && now.saturating_since(self.ready_at) < Duration::from_secs(60);
            if fresh && p.flags & P_RT != 0 && self.cfg.announce && us < room_us {
                self.send(sender.addr, Body::Announce { rtt_us: us });
            }
            if let Some(j) = self.join.as_mut()
                && j.rooms.len() < JOIN_ROOMS_MAX
            {
                j.rooms.push((sender.id, room_us));
            }
        }
        self.heard_from(now, sender, true);
        if !leaf_set.is_empty() {
            self.anti_entropy(sender, &leaf_set, true);
            self.consider_leaves(now, &leaf_set);
        }
        if p.flags & P_JOIN != 0 {
            self.join_probe_done(now, sender.id);
        }
    }

    fn on_probe_timeout(&mut self, now: Instant, id: NodeId, nonce: u64) {
        let Some(p) = self.probes.get_mut(&id) else {
            return;
        };
        if p.nonce != nonce {
            return;
        }
        if p.via_wait {
            // No member reached it either.
            self.probe_exhausted(now, id);
            return;
        }
        // A failure notice gets one retry: its sender already tried with every retry, but a
        // false removal under loss would spread. A mere routing-table candidate (in none
        // of our tables) gets no retry: if it is dead (rows are full of those under churn)
        // or the probe is lost, we only miss a candidate.
        // A routing-table entry that missed a hop's ack (suspected, not a leaf member) gets
        // none either: the missed ack was its first chance, the probe its second, and
        // keeping a live one costs nothing but a table slot we refill (churn, 10,000
        // nodes, 2 h: 0.3 million of 2.1 million probes to dead nodes saved).
        let rt_only = p.flags & !(P_RT | P_SUSPECT) == 0 && !self.t.leaf_set.contains(id);
        // Probing only for another member gets one retry too: it waits long enough.
        let retries = if p.flags & P_NOTICE != 0 || p.flags == P_RELAY {
            self.cfg.probe_retries.min(1)
        } else if (p.flags & !P_RT == 0 && !self.t.is_known(id)) || rt_only {
            0
        } else {
            self.cfg.probe_retries
        };
        // A first-hand suspicion of a member (not only another member's request): others
        // probe it too from now on, in parallel with our retries, so a lossy path between
        // us alone does not make it look dead (and an answer through them ends the probe
        // early). A notice's probe too if only another member reached it lately: our
        // silence then says nothing, whatever the notice's sender found.
        let notice_ok = p.flags & P_NOTICE == 0 || self.relays.iter().any(|r| r.id == id);
        if p.via() == 0 && !p.heard && notice_ok && p.flags != P_RELAY {
            let ours: Duration = (p.tries + 1..=retries)
                .map(|k| self.probe_timeout(id, k))
                .sum();
            self.probe_indirectly(now, id, ours);
        }
        let Some(p) = self.probes.get_mut(&id) else {
            return;
        };
        if p.tries < retries {
            p.tries += 1;
            let nonce = self.next_id + 1;
            self.next_id = nonce;
            p.nonce = nonce;
            p.sent_at = now;
            let (h, flags) = (NodeHandle::new(id, p.addr), p.flags);
            self.send_probe(now, h, nonce, flags);
            return;
        }
        if p.flags == P_RELAY {
            // Silence proves nothing to us: we only probed it for someone else, who hears
            // that it is alive if it spoke to us meanwhile.
            if let Some(p) = self.probes.remove(&id)
                && p.heard
            {
                self.relay_alive(id, p.relay());
            }
            return;
        }
        let helpers_until = p.extra.as_ref().filter(|e| e.via != 0).map(|e| e.via_until);
        if let Some(until) = helpers_until.filter(|&u| !p.heard && now < u) {
            let nonce = self.fresh_id();
            if let Some(p) = self.probes.get_mut(&id) {
                p.via_wait = true;
                p.nonce = nonce;
            }
            self.set_timer(until, Timer::Probe(id, nonce));
            return;
        }
        self.probe_exhausted(now, id);
    }

    /// A probe of leaf-set member `id` went unanswered: asks up to `indirect_probes` other
    /// members, those nearest it on the ring (likeliest to know it), to probe it for us.
    /// `ours` is how long our own retries take from now.
    fn probe_indirectly(&mut self, now: Instant, id: NodeId, ours: Duration) {
        let k = self.cfg.indirect_probes;
        let Some(flags) = self.probes.get(&id).map(|p| p.flags) else {
            return;
        };
        // Members, and candidates that would enter the leaf set: a node we cannot reach
        // but our neighbours can is still the root of its keys, and left out of our leaf
        // set it would have them delivered here.
        let member = self.t.leaf_set.contains(id)
            || (flags & P_LEAF != 0 && self.t.leaf_set.would_accept(id));
        let state_ok = match self.state {
            NodeState::Ready => true,
            NodeState::Joining => flags & P_JOIN != 0,
            _ => false,
        };
        if k == 0 || !state_ok || !member {
            return;
        }
        let mut helpers: Vec<NodeHandle<A>> = self
            .t
            .leaf_set
            .handles()
            .into_iter()
            .filter(|h| h.id != id && !self.probes.contains_key(&h.id))
            .collect();
        // The member that reached it for us lately first, then those nearest it.
        let via = self.relays.iter().find(|r| r.id == id).map(|r| r.via.id);
        helpers.sort_by_key(|h| (Some(h.id) != via, h.id.distance(id)));
        helpers.truncate(k);
        let Some(addr) = self.probes.get(&id).map(|p| p.addr) else {
            return;
        };
        if helpers.is_empty() {
            return;
        }
        let nonce = self.fresh_id();
        let target = NodeHandle::new(id, addr);
        // An answer takes a round trip to the helper and one or two (a retry) from it to
        // `id`. Our timeouts bound a round trip to the helper from above, and one from the
        // helper to `id` by the triangle inequality. Our own retries go on meanwhile, and
        // the wait ends with them: a dead member is not found any later than without
        // helpers (50% of 10,000 nodes failing: without that bound the leaf sets took
        // longer to recover). Only with no retries left does it go on after ours.
        let mut to_helper = Duration::ZERO;
        for h in &helpers {
            to_helper = to_helper.max(self.timeout_for(h.id));
            self.send(h.addr, Body::IndirectProbe { target, nonce });
        }
        let mut wait = to_helper * 2 + self.timeout_for(id) * 3;
        if !ours.is_zero() {
            wait = wait.min(ours);
        }
        if let Some(p) = self.probes.get_mut(&id) {
            let e = p.extra();
            e.via = nonce;
            e.via_until = now + wait;
        }
    }

    /// Every probe of `id` is over without an answer: dead, unless it spoke to us meanwhile.
    fn probe_exhausted(&mut self, now: Instant, id: NodeId) {
        let Some(p) = self.probes.remove(&id) else {
            return;
        };
        if p.heard {
            // Every try went unanswered, yet it spoke to us meanwhile: the probes or their
            // replies were lost, the node is not. Declaring it dead would drop a live
            // leaf-set member and deliver its keys here (simulator, 5% loss: such removals
            // were the wrong deliveries).
            self.stats.probes_inconclusive += 1;
            self.relay_alive(id, p.relay());
            if p.flags & P_JOIN != 0 {
                self.join_probe_done(now, id);
            }
            // Messages held for it go on: to it, or, if it fell silent, to another probe.
            self.release(now, Wait::Suspect(id));
            return;
        }
        self.remove_node(now, id, true, (p.flags, p.tries == 0), p.notify());
        if p.flags & P_JOIN != 0 {
            self.join_probe_done(now, id);
        }
    }

    /// A member asks us to probe `target` for it. Only leaf-set members may ask, and only
    /// about a node we know at that address or that would enter our leaf set: nobody can
    /// point our probes at arbitrary addresses. One probe serves every asker.
    fn on_indirect_probe(
        &mut self,
        now: Instant,
        sender: NodeHandle<A>,
        target: NodeHandle<A>,
        nonce: u64,
    ) {
        let plausible = self.t.find(target.id).map_or_else(
            || self.t.leaf_set.would_accept(target.id),
            |h| h.addr == target.addr,
        );
        // A node our own retried probes found dead a moment ago is not probed again: the
        // asker likely learnt of it from stale gossip.
        if self.state != NodeState::Ready
            || !self.t.leaf_set.contains(sender.id)
            || target.id == self.t.me.id
            || target.id == sender.id
            || !plausible
            || self.recently_failed_surely(target.id)
        {
            self.stats.ignored += 1;
            return;
        }
        self.probe(now, target, P_RELAY);
        if let Some(p) = self.probes.get_mut(&target.id)
            && p.relay().len() < RELAYS_MAX
            && !p.relay().iter().any(|(h, _)| h.id == sender.id)
        {
            p.extra().relay.push((sender, nonce));
        }
    }

    /// Member `helper` reached `target` after our own probes of it went unanswered.
    fn on_indirect_probe_reply(
        &mut self,
        now: Instant,
        helper: NodeHandle<A>,
        target: NodeId,
        nonce: u64,
    ) {
        // Not ours, a later helper's answer, or the probe ended otherwise: nothing to do.
        if nonce == 0 || self.probes.get(&target).is_none_or(|p| p.via() != nonce) {
            return;
        }
        let Some(p) = self.probes.remove(&target) else {
            return;
        };
        self.stats.probes_rescued += 1;
        // Unless it spoke to us meanwhile (so our tries were lost, not the path broken),
        // the helper relays for it from now on.
        if !p.heard {
            self.set_relay(now, target, helper);
        }
        let h = NodeHandle::new(target, p.addr);
        if !self.t.leaf_set.contains(target) && self.t.leaf_set.would_accept(target) {
            self.leaf_insert(now, h, Rtt::UNKNOWN);
        }
        self.relay_alive(target, p.relay());
        self.release(now, Wait::Suspect(target));
        if p.flags & P_JOIN != 0 {
            self.join_probe_done(now, target);
        }
    }

    /// The member that reaches leaf-set member `id` for us, if one does lately.
    fn relay_for(&self, now: Instant, id: NodeId) -> Option<NodeHandle<A>> {
        self.relays
            .iter()
            .find(|r| r.id == id && now < r.until)
            .map(|r| r.via)
    }

    /// `via` reached `id` for us: remembered for a while (see [`Relay`]).
    fn set_relay(&mut self, now: Instant, id: NodeId, via: NodeHandle<A>) {
        self.relays.retain(|r| r.id != id && now < r.until);
        if self.relays.len() >= RELAY_ROUTES_MAX {
            self.relays.remove(0);
        }
        let until = now + RELAY_TTL;
        self.relays.push(Relay { id, via, until });
    }

    /// Tells the members that asked us to probe `target` that it answered.
    fn relay_alive(&mut self, target: NodeId, relay: &[(NodeHandle<A>, u64)]) {
        for &(h, nonce) in relay {
            self.send(h.addr, Body::IndirectProbeReply { target, nonce });
        }
    }

    /// Someone says `id` failed: suspect it if we use it, else remember it.
    fn on_failure_notice(
        &mut self,
        now: Instant,
        id: NodeId,
        from: NodeId,
        from_list: &[NodeHandle<A>],
    ) {
        if id == self.t.me.id {
            return;
        }
        if let Some(h) = self.t.find(id) {
            self.probe(now, h, P_SUSPECT | P_NOTICE);
            // Nodes beyond the sender's reach would otherwise learn of it only hop by hop
            // through heartbeats. The members at the two ends of the sender's leaf set
            // (only they, to keep this to a handful of messages) pass it on to their own
            // members the sender could not reach.
            let mut theirs = LeafSet::new(from, self.t.leaf_set.half());
            let mut evicted = Vec::new();
            for x in from_list.iter().filter(|x| x.id != id) {
                theirs.insert(*x, Rtt::UNKNOWN, &mut evicted);
            }
            let me = self.t.me.id;
            let at_edge = [Side::Left, Side::Right]
                .iter()
                .any(|s| theirs.farthest(*s).is_some_and(|l| l.handle.id == me));
            if !at_edge {
                return;
            }
            let beyond: Vec<NodeHandle<A>> = self
                .t
                .leaf_set
                .members()
                .map(|l| l.handle)
                .filter(|m| m.id != id && m.id != from && !from_list.iter().any(|x| x.id == m.id))
                .collect();
            if let Some(p) = self.probes.get_mut(&id) {
                for m in beyond {
                    if !p.notify().iter().any(|x| x.id == m.id) {
                        p.extra().notify.push(m);
                    }
                }
            }
        } else if !self.probes.contains_key(&id) {
            // Remembered so stale gossip cannot bring it back, but not passed on: each hop
            // re-gossiping with a fresh timestamp would keep a failure circling the ring
            // for ever and flood every failed set.
            self.add_failed(now, id, false, false);
        }
    }

    /// Removes a node found dead (`dead`) or gone (`Leave`) from every table, tells the leaf
    /// set when it was a member, and starts repair. `probe_flags` are those of the probe
    /// that found it dead, if one did; `one_try` when that probe was sent only once.
    fn remove_node(
        &mut self,
        now: Instant,
        id: NodeId,
        dead: bool,
        (probe_flags, one_try): (u8, bool),
        notify: &[NodeHandle<A>],
    ) {
        // Only first-hand findings are announced: a notice's receivers confirming it must
        // not re-announce it to their own leaf sets (|L|^2 messages per failure).
        let announce = probe_flags & P_NOTICE == 0;
        let was_known = self.t.is_known(id);
        let dead_addr = self.t.leaf_set.get(id).map(|l| l.handle.addr);
        let leaf = self.t.leaf_set.contains(id) || probe_flags & (P_LEAF | P_NOTICE) != 0;
        if let Some(j) = self.join.as_mut() {
            j.candidates.remove(id);
        }
        self.add_failed(now, id, leaf, one_try && !leaf);
        self.relays.retain(|r| r.id != id && r.via.id != id);
        let side = self.t.leaf_set.side_of(id);
        let was_leaf = self.leaf_remove(now, id);
        let rt_slot = self.t.routing_table.remove(id);
        self.t.neighborhood.remove(id);
        if rt_slot.is_some() {
            self.sync_wrap(now);
        }
        if let Some(p) = self.probes.remove(&id)
            && p.flags & P_JOIN != 0
        {
            self.join_probe_done(now, id);
        }
        if was_known && dead {
            self.stats.nodes_declared_dead += 1;
        }
        if was_leaf && dead && announce && self.state == NodeState::Ready {
            // Failures come in runs (a rack, a partition side, a crashed process with
            // several nodes): check the next member beyond the dead one now rather than
            // wait for heartbeats to find each in turn. If it is dead too, this repeats.
            let me = self.t.me.id;
            let out = |x: NodeId| match side {
                Some(Side::Left) => x.cw_distance(me),
                _ => me.cw_distance(x),
            };
            let next = side.and_then(|s| {
                self.t
                    .leaf_set
                    .side(s)
                    .iter()
                    .find(|l| out(l.handle.id) > out(id))
                    .map(|l| l.handle)
            });
            if let Some(n) = next {
                self.probe(now, n, 0);
            }
            let leaf_set = self.t.leaf_set.handles();
            for h in &leaf_set {
                self.send(
                    h.addr,
                    Body::LeafSetUpdate {
                        heartbeat: false,
                        leaf_set: leaf_set.clone(),
                        failed: vec![id],
                    },
                );
            }
            // "Every try went unanswered" does not make a node dead: under loss a live
            // member is sometimes dropped. Our leaf set, sent to it as a heartbeat, lacks
            // it, so a live one answers with its own and is back within a round trip (a
            // dead one costs one message).
            if let Some(addr) = dead_addr {
                self.send(
                    addr,
                    Body::LeafSetUpdate {
                        heartbeat: true,
                        leaf_set,
                        failed: Vec::new(),
                    },
                );
            }
        }
        if was_leaf && dead && !announce && self.state == NodeState::Ready {
            let leaf_set = self.t.leaf_set.handles();
            for h in notify {
                self.send(
                    h.addr,
                    Body::LeafSetUpdate {
                        heartbeat: false,
                        leaf_set: leaf_set.clone(),
                        failed: vec![id],
                    },
                );
            }
        }
        if was_leaf {
            self.repair_leaf_set(now);
        }
        if let Some((row, _)) = rt_slot {
            let _ = self.repair_row(row);
        }
        self.release(now, Wait::Suspect(id));
    }

    // ---- internals: leaf set ----

    fn leaf_insert(&mut self, now: Instant, h: NodeHandle<A>, rtt: Rtt) {
        let mut evicted = Vec::new();
        let was_member = self.t.leaf_set.contains(h.id);
        if self.t.leaf_set.insert(h, rtt, &mut evicted) {
            // A member may also take a slot on the other side (small rings, or after a
            // failure left that side short): that is not a join.
            if !was_member {
                self.leaf_changed(h, true);
            }
            for e in evicted {
                self.leaf_changed(e, false);
            }
            self.track_right(now);
            self.sync_wrap(now);
        }
    }

    fn leaf_remove(&mut self, now: Instant, id: NodeId) -> bool {
        let Some(h) = self.t.leaf_set.get(id).map(|l| l.handle) else {
            return false;
        };
        self.t.leaf_set.remove(id);
        self.leaf_changed(h, false);
        self.track_right(now);
        self.sync_wrap(now);
        true
    }

    /// Lets the leaf set's sides reach across the ring only while this node knows at most
    /// |L| other nodes (leaf set and routing table), i.e. while the ring may be no larger
    /// than the leaf set and the two sides may meet.
    /// Otherwise a side left short by a failure took the other side's members, the leaf
    /// set "covered the ring", and routes looped between it and the routing table (found
    /// by the simulator: 10,000 nodes, churn, seed 1).
    fn sync_wrap(&mut self, now: Instant) {
        // Every routing-table entry is a distinct known node: more than |L| of them settle
        // it without the membership scan below (the common case, on every table change).
        let half = self.t.leaf_set.half();
        if !self.t.leaf_set.wrap() && self.t.routing_table.len() > 2 * half {
            return;
        }
        let outside = self
            .t
            .routing_table
            .entries()
            .filter(|e| !self.t.leaf_set.contains(e.handle.id))
            .count();
        let wrap = self.t.leaf_set.len() + outside <= 2 * half;
        if wrap == self.t.leaf_set.wrap() {
            return;
        }
        let gone = self.t.leaf_set.set_wrap(wrap);
        if wrap {
            // Members may now also belong on the other side (the sides meet).
            let members: Vec<Leaf<A>> = self.t.leaf_set.members().copied().collect();
            for l in members {
                self.leaf_insert(now, l.handle, l.rtt);
            }
        } else {
            for h in &gone {
                self.leaf_changed(*h, false);
            }
            self.track_right(now);
            self.repair_leaf_set(now);
        }
    }

    fn leaf_changed(&mut self, handle: NodeHandle<A>, joined: bool) {
        self.events
            .push_back(Event::LeafSetChanged { handle, joined });
        let ids: Vec<AppId> = self.apps.iter().map(|s| s.id).collect();
        for app in ids {
            self.with_app(app, |a, ctx| a.update(ctx, handle, joined));
        }
    }

    /// Restarts the heartbeat clock when the right neighbour changes.
    fn track_right(&mut self, now: Instant) {
        let r = self.t.leaf_set.neighbor(Side::Right).map(|l| l.handle.id);
        if r != self.right {
            self.right = r;
            self.right_heard = now;
        }
    }

    /// Anti-entropy on a leaf set a peer showed us (in a heartbeat or a probe reply): the
    /// peer may lack nodes we know belong in its leaf set (its far left side is known only
    /// to its left neighbours, who never hear from it otherwise), or hold nodes we found
    /// dead (a lost failure notice; or its left neighbour died and nobody it hears from
    /// told it). Answer with our leaf set and those failures. Answers are checked for
    /// stale nodes only (`check_missing` false) and answers that report failures not at
    /// all, so two nodes cannot bounce updates back and forth.
    fn anti_entropy(&mut self, peer: NodeHandle<A>, list: &[NodeHandle<A>], check_missing: bool) {
        // A far node found dead by one unanswered probe (a routing-table candidate) is not
        // reported: reporting it made a neighbour probe its live member again at every
        // heartbeat until lost probes dropped it (simulator, 5% loss). Leaving out every
        // failure but our own members' slowed the leaf sets' recovery after 50% of
        // 10,000 nodes failed (median 81 s against 51 s, seeds 1-5).
        let stale: Vec<NodeId> = list
            .iter()
            .map(|h| h.id)
            .filter(|id| self.recently_failed_surely(*id))
            .collect();
        if !stale.is_empty() || (check_missing && self.missing_from(peer.id, list)) {
            let leaf_set = self.t.leaf_set.handles();
            self.send(
                peer.addr,
                Body::LeafSetUpdate {
                    heartbeat: false,
                    leaf_set,
                    failed: stale,
                },
            );
        }
    }

    /// True when this node or one of its leaf-set members belongs in the leaf set of `owner`
    /// (whose members are `list`) but is not in it.
    fn missing_from(&self, owner: NodeId, list: &[NodeHandle<A>]) -> bool {
        let ours =
            std::iter::once(self.t.me.id).chain(self.t.leaf_set.members().map(|l| l.handle.id));
        LeafSet::accepts_any(owner, self.t.leaf_set.half(), list, ours)
    }

    /// Probes every node in `list` that would enter the leaf set.
    fn consider_leaves(&mut self, now: Instant, list: &[NodeHandle<A>]) {
        let joining = self.state == NodeState::Joining;
        let fresh: Vec<NodeHandle<A>> = list
            .iter()
            .copied()
            .filter(|h| h.id != self.t.me.id && !self.recently_failed(h.id))
            .collect();
        let mut evicted = Vec::new();
        if let Some(j) = self.join.as_mut() {
            for h in &fresh {
                j.candidates.insert(*h, Rtt::UNKNOWN, &mut evicted);
            }
        }
        // Everything below acts only on nodes the leaf set would accept, and only such an
        // action changes the leaf set: when it accepts none (most lists, from neighbours
        // whose leaf sets overlap ours), nothing happens.
        if !fresh.iter().any(|h| self.t.leaf_set.would_accept(h.id)) {
            return;
        }
        // Which of them would make it into the leaf set: only those are probed (after a
        // failure opens a slot, a list names several nodes beyond the gap, and one probe
        // fills it). Candidates under probe are not counted: one may be dead, and then
        // the next list must still get the slot filled.
        let trial = (!joining).then(|| {
            let mut t = self.t.leaf_set.clone();
            for h in &fresh {
                t.insert(*h, Rtt::UNKNOWN, &mut evicted);
            }
            t
        });
        for h in &fresh {
            if let Some(l) = self.t.leaf_set.get(h.id).copied() {
                // Already a member (alive as far as we know) that now also belongs on the
                // other side, e.g. after a failure there in a small ring.
                if self.t.leaf_set.would_accept(h.id) {
                    self.leaf_insert(now, l.handle, l.rtt);
                }
                continue;
            }
            let promising = match &self.join {
                Some(j) if joining => j.candidates.contains(h.id),
                _ => trial.as_ref().is_none_or(|t| t.contains(h.id)),
            };
            if promising && self.t.leaf_set.would_accept(h.id) {
                let flags = if joining {
                    P_JOIN | P_WANT_LS | P_RT | P_LEAF
                } else {
                    P_RT | P_LEAF
                };
                self.probe(now, *h, flags);
                if joining
                    && self.probes.contains_key(&h.id)
                    && let Some(j) = self.join.as_mut()
                    && let JoinPhase::Probing { pending } = &mut j.phase
                {
                    pending.insert(h.id);
                }
            }
        }
    }

    /// Asks the farthest member of each short side for its leaf set.
    fn repair_leaf_set(&mut self, now: Instant) {
        if self.state == NodeState::Left || self.t.leaf_set.covers_ring() {
            return;
        }
        let half = self.t.leaf_set.half();
        for side in [Side::Left, Side::Right] {
            if self.t.leaf_set.side(side).len() >= half {
                continue;
            }
            let target = self
                .t
                .leaf_set
                .farthest(side)
                .map(|l| l.handle)
                .or_else(|| {
                    // Nothing left on that side: the nearest known node that way.
                    let me = self.t.me.id;
                    self.t
                        .known()
                        .filter(|h| self.t.leaf_set.side_of(h.id) == Some(side))
                        .min_by_key(|h| me.distance(h.id))
                });
            if let Some(t) = target {
                self.probe(now, t, P_WANT_LS);
            }
        }
    }

    // ---- internals: routing table ----

    /// A route took the rare case: when that is because the routing-table slot for `key`
    /// is empty, ask the next hop `to` (which shares at least as many digits with the key,
    /// so with us) for that row: its entry for the slot is likely there. At most one such
    /// request per `rt_fill_interval`.
    fn lazy_fill(&mut self, now: Instant, key: NodeId, to: NodeHandle<A>) {
        if self.t.routing_table.next_hop(key).is_some()
            || now.saturating_since(self.last_fill) < self.cfg.rt_fill_interval
        {
            return;
        }
        self.last_fill = now;
        let row = self.t.me.id.shared_prefix_len(key, self.cfg.b);
        self.send(
            to.addr,
            Body::RowRequest {
                row: row as u8,
                rtt_us: 0,
            },
        );
    }

    /// Asks a member of `row` (else of the next row) for that row: the lazy repair of a
    /// hole, and routing-table maintenance. The member is the nearest of three drawn at
    /// random: a near member's entries are near it, so likely near us, and the draw keeps
    /// some variety (figures in DESIGN.md). Returns the member asked.
    fn repair_row(&mut self, row: usize) -> Option<NodeId> {
        let rt = &self.t.routing_table;
        let r = if rt.row(row).iter().flatten().next().is_some() {
            row
        } else {
            row + 1
        };
        let members: Vec<&Entry<A>> = rt.row(r).iter().flatten().collect();
        if members.is_empty() {
            return None;
        }
        let target = (0..3)
            .map(|_| members[self.rng.below(members.len() as u64) as usize])
            .min_by_key(|e| (e.rtt.proximity(), e.handle.id))?
            .handle;
        self.send(
            target.addr,
            Body::RowRequest {
                row: row as u8,
                rtt_us: 0,
            },
        );
        Some(target.id)
    }

    fn rt_maintenance(&mut self, _now: Instant) {
        let rows = self.t.routing_table.rows();
        if rows == 0 {
            return;
        }
        // A row with a hole that should not be there comes first: routes through it take
        // the rare case (an extra hop). Else a random row, for proximity: one whose slots
        // have a choice of nodes (2 or more expected, from the ring size the leaf set's
        // density gives); a deeper row's slot has one candidate at most and nothing to
        // improve.
        let choice = self.rows_expecting(2.0).max(1);
        let row = self
            .first_unexpected_hole()
            .unwrap_or_else(|| self.rng.below(choice as u64) as usize);
        self.maintenance_peer = self.repair_row(row);
    }

    /// How many rows, from row 0, have slots expecting at least `nodes` candidates each:
    /// ring size / 2^(b x (row + 1)), the size estimated from the leaf set's density.
    fn rows_expecting(&self, nodes: f64) -> usize {
        let n = self.t.leaf_set.estimated_ring_size();
        let b = i32::from(self.cfg.b);
        (0..self.t.routing_table.rows())
            .take_while(|&r| n / 2f64.powi(b * (r as i32 + 1)) >= nodes)
            .count()
    }

    /// The first row with an empty slot that almost surely has candidates: one whose slots
    /// expect at least 8 nodes.
    fn first_unexpected_hole(&self) -> Option<usize> {
        let rt = &self.t.routing_table;
        (0..self.rows_expecting(8.0)).find(|&r| {
            let own = usize::from(self.t.me.id.digit(r, rt.b()));
            rt.row(r)
                .iter()
                .enumerate()
                .any(|(c, e)| c != own && e.is_none())
        })
    }

    /// Probes the entries of a row another node sent: every one for an empty slot, and up
    /// to `max_probes` of those that may be nearer than a slot's occupant,
    /// most promising first. "May be nearer" uses the triangle inequality: our RTT to a
    /// candidate is at least |rtt(us, sender) - rtt(sender, candidate)|, so a candidate
    /// whose bound is not below the occupant's RTT is not worth a probe.
    fn consider_row(
        &mut self,
        now: Instant,
        sender: NodeId,
        entries: &[NodeHandle<A>],
        rtt_us: &[u32],
        max_probes: usize,
    ) {
        let to_sender = self.t.rtt(sender);
        let mut maybe: Vec<(u32, NodeHandle<A>)> = Vec::new();
        for (i, h) in entries.iter().enumerate() {
            if h.id == self.t.me.id || self.recently_failed(h.id) || self.probes.contains_key(&h.id)
            {
                continue;
            }
            let Some((row, col)) = self.t.routing_table.slot(h.id) else {
                continue;
            };
            match self.t.routing_table.get(row, col) {
                None => self.probe(now, *h, P_RT),
                Some(e) if e.handle.id != h.id => {
                    let theirs = rtt_us.get(i).copied().unwrap_or(0);
                    let bound = if to_sender.is_known() && theirs > 0 {
                        to_sender.srtt_us.abs_diff(theirs)
                    } else {
                        0
                    };
                    if bound < e.rtt.proximity() {
                        maybe.push((bound, *h));
                    }
                }
                Some(_) => {}
            }
        }
        maybe.sort_by_key(|&(bound, h)| (bound, h.id));
        for (_, h) in maybe.into_iter().take(max_probes) {
            self.probe(now, h, P_RT);
        }
    }

    // ---- internals: join ----

    /// Probes the routing-table candidates a join gathered, at most
    /// `join_probes_per_slot` per slot (the first hop's neighbourhood set comes first in
    /// the list: those nodes are near the bootstrap, so likely near us).
    fn join_rt_candidates(&mut self, now: Instant, list: &[NodeHandle<A>]) {
        let mut per_slot: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for h in list {
            if h.id == self.t.me.id || self.recently_failed(h.id) {
                continue;
            }
            let Some(slot) = self.t.routing_table.slot(h.id) else {
                continue;
            };
            let n = per_slot.entry(slot).or_insert(0);
            if *n < self.cfg.join_probes_per_slot {
                *n += 1;
                self.probe(now, *h, P_RT);
            }
        }
    }

    fn send_join_request(&mut self, now: Instant, attempt: u32) {
        let Some(j) = &self.join else { return };
        let to = j.bootstraps[attempt as usize % j.bootstraps.len()];
        let me = self.t.me;
        let msg = RouteMsg {
            hop_id: 0,
            key: me.id,
            origin: me,
            // The attempt: a root that gets a repeat also answers through a member.
            request: u64::from(attempt),
            hops: 0,
            trace: false,
            path: Vec::new(),
            payload: RoutePayload::Join {
                joiner: me,
                rows: Vec::new(),
            },
        };
        self.send(to, Body::Route(Box::new(msg)));
        self.set_timer(now + self.cfg.join_timeout, Timer::Join(attempt));
    }

    fn on_join_timeout(&mut self, now: Instant, attempt: u32) {
        let Some(j) = &mut self.join else { return };
        let JoinPhase::AwaitReply { attempt: current } = j.phase else {
            return;
        };
        if current != attempt {
            return;
        }
        if attempt + 1 >= self.cfg.join_attempts {
            self.shut_down();
            self.events.push_back(Event::JoinFailed);
            return;
        }
        j.phase = JoinPhase::AwaitReply {
            attempt: attempt + 1,
        };
        self.send_join_request(now, attempt + 1);
    }

    fn on_join_reply(
        &mut self,
        now: Instant,
        sender: NodeHandle<A>,
        leaf_set: Vec<NodeHandle<A>>,
        rows: Vec<NodeHandle<A>>,
    ) {
        let awaiting = self
            .join
            .as_ref()
            .is_some_and(|j| matches!(j.phase, JoinPhase::AwaitReply { .. }));
        if !awaiting {
            self.stats.ignored += 1;
            return;
        }
        if let Some(j) = self.join.as_mut() {
            j.phase = JoinPhase::Probing {
                pending: BTreeSet::new(),
            };
        }
        let mut leaves = vec![sender];
        leaves.extend(leaf_set);
        self.consider_leaves(now, &leaves);
        self.join_rt_candidates(now, &rows);
        self.maybe_join_done(now);
    }

    fn join_probe_done(&mut self, now: Instant, id: NodeId) {
        if let Some(j) = self.join.as_mut()
            && let JoinPhase::Probing { pending } = &mut j.phase
        {
            pending.remove(&id);
        }
        self.maybe_join_done(now);
    }

    fn maybe_join_done(&mut self, now: Instant) {
        let done = self.join.as_ref().is_some_and(
            |j| matches!(&j.phase, JoinPhase::Probing { pending } if pending.is_empty()),
        );
        if done && self.state == NodeState::Joining {
            let rooms = self.join.take().map(|j| j.rooms).unwrap_or_default();
            self.become_ready(now, rooms);
        }
    }

    /// `rooms` says, for nodes measured while joining, what RTT an announcement to them
    /// must beat to change their tables; the others are announced to regardless.
    fn become_ready(&mut self, now: Instant, mut rooms: Vec<(NodeId, u32)>) {
        self.state = NodeState::Ready;
        self.ready_at = now;
        self.events.push_back(Event::Ready);
        // The paper's announcement of the new node's state, cut to the nodes it is most
        // likely to matter to: the nearest ones, whose table slots we may now fill better.
        // Each learns the RTT we measured, so it needs no probe of its own.
        let mut announce: Vec<(u32, NodeHandle<A>)> = Vec::new();
        if self.cfg.announce {
            let mut near: BTreeMap<NodeId, (u32, NodeHandle<A>)> = BTreeMap::new();
            for e in self
                .t
                .routing_table
                .entries()
                .chain(self.t.neighborhood.entries())
                .filter(|e| e.rtt.is_known())
            {
                let v = near.entry(e.handle.id).or_insert((e.rtt.srtt_us, e.handle));
                v.0 = v.0.min(e.rtt.srtt_us);
            }
            announce = near.into_values().collect();
            announce.sort_by_key(|(rtt, h)| (*rtt, h.id));
            announce.truncate(self.cfg.announce_max);
        }
        // Second phase of the join (the paper's "nearby node discovery"): ask the nearest
        // member of each row for its row, and probe the candidates that may be nearer. A
        // member also due an announcement gets it in the request.
        for row in 0..self.t.routing_table.rows() {
            let mut members: Vec<(u32, NodeHandle<A>)> = self
                .t
                .routing_table
                .row(row)
                .iter()
                .flatten()
                .map(|e| (e.rtt.proximity(), e.handle))
                .collect();
            members.sort_by_key(|&(rtt, h)| (rtt, h.id));
            let ask = if row < 3 { 3 } else { 1 };
            for (_, h) in members.into_iter().take(ask) {
                let rtt_us = announce
                    .iter()
                    .position(|(_, a)| a.id == h.id)
                    .map_or(0, |i| announce.remove(i).0);
                self.send(
                    h.addr,
                    Body::RowRequest {
                        row: row as u8,
                        rtt_us,
                    },
                );
            }
        }
        // Of a node measured more than once, the last answer counts.
        rooms.reverse();
        rooms.sort_by_key(|&(id, _)| id);
        rooms.dedup_by_key(|&mut (id, _)| id);
        for (rtt_us, h) in announce {
            let room = rooms
                .binary_search_by_key(&h.id, |&(id, _)| id)
                .map_or(u32::MAX, |i| rooms[i].1);
            if rtt_us < room {
                self.send(h.addr, Body::Announce { rtt_us });
            }
        }
        self.track_right(now);
        let hb = self.jitter(self.cfg.heartbeat_interval, 0.0);
        self.set_timer(now + hb, Timer::Heartbeat);
        self.set_timer(now + self.cfg.heartbeat_timeout, Timer::HeartbeatCheck);
        let rt = self.jitter(self.cfg.rt_maintenance_interval, 0.0);
        self.set_timer(now + rt, Timer::RtMaintenance);
        self.release(now, Wait::Ready);
    }

    // ---- internals: applications ----

    /// Calls `f` on application `app` with a context; `None` when no such application.
    fn with_app<R>(
        &mut self,
        app: AppId,
        f: impl FnOnce(&mut dyn Application<A>, &mut AppContext<'_, A>) -> R,
    ) -> Option<R> {
        let idx = self.apps.iter().position(|s| s.id == app)?;
        let mut commands = Vec::new();
        let r = {
            let slot = &mut self.apps[idx];
            let mut ctx = AppContext {
                tables: &self.t,
                app,
                now: self.now,
                next_request: &mut self.next_request,
                commands: &mut commands,
            };
            f(slot.app.as_mut(), &mut ctx)
        };
        for c in commands {
            self.run_app_command(app, c);
        }
        Some(r)
    }

    fn run_app_command(&mut self, app: AppId, c: AppCommand<A>) {
        let now = self.now;
        match c {
            AppCommand::Route {
                key,
                data,
                hint,
                request,
            } => {
                if self.check_route(&data).is_ok() {
                    self.originate(
                        now,
                        RouteRequest {
                            key,
                            app,
                            data,
                            hint,
                            trace: false,
                        },
                        request,
                    );
                }
            }
            AppCommand::Direct { to, data } => {
                if self.check_route(&data).is_ok() {
                    self.direct(to, app, data);
                }
            }
            AppCommand::Timer { at, token } => self.set_timer(at, Timer::App(app, token)),
            AppCommand::Notify(value) => self.events.push_back(Event::Application { app, value }),
        }
    }
}

/// Frees an empty queue's buffer. Output queues fill and drain once per input, and a
/// buffer kept between inputs is cold by the next one in a simulator holding a million
/// nodes (a cache miss to write it, and ~1 KiB a node); a buffer freed and allocated again
/// is one the allocator just handed back, still in cache.
fn shrink_idle<T>(q: &mut VecDeque<T>) {
    if q.is_empty() && q.capacity() > 0 {
        *q = VecDeque::new();
    }
}

/// Routing-table candidates a join request carries at most.
const JOIN_ROWS_MAX: usize = 512;
/// Probe answers a joining node keeps for its announcements (it probes about 100).
const JOIN_ROOMS_MAX: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u128) -> Node<u32> {
        Node::new(
            Arc::new(Config::default()),
            NodeId::from_u128(id),
            id as u32,
            1,
        )
    }

    #[test]
    fn a_lone_node_wakes_only_for_its_periodic_timers() {
        let mut n = node(5);
        n.start_ring(Instant::ZERO);
        assert_eq!(n.state(), NodeState::Ready);
        assert!(matches!(n.poll_event(), Some(Event::Ready)));
        let mut wakes = 0;
        let end = Instant::ZERO + Duration::from_secs(600);
        while let Some(t) = n.poll_timeout().filter(|t| *t <= end) {
            n.handle_timeout(t);
            wakes += 1;
            assert!(n.poll_transmit().is_none(), "nobody to talk to");
        }
        // Heartbeat every ~20 s, check every 24 s, table maintenance every ~300 s.
        assert!((50..=125).contains(&wakes), "{wakes} wake-ups in 600 s");
        // It is its own root for every key.
        assert_eq!(n.decide(NodeId::from_u128(u128::MAX)), Decision::Deliver);
    }

    #[test]
    fn time_never_goes_backwards() {
        let mut n = node(5);
        n.start_ring(Instant::from_micros(1_000_000));
        n.handle_timeout(Instant::ZERO);
        assert!(n.poll_timeout().unwrap() > Instant::from_micros(1_000_000));
    }

    #[test]
    fn routing_decision_follows_the_paper() {
        // |L| = 4: two neighbours a side fill the leaf set without covering the ring.
        let cfg = Config {
            leaf_set_size: 4,
            max_reroutes: 4,
            ..Config::default()
        };
        let mut n = Node::new(Arc::new(cfg), NodeId::from_u128(0x5000 << 112), 1u32, 1);
        let me = n.handle();
        let h = |v: u128| NodeHandle::new(NodeId::from_u128(v), v as u32);
        // Leaf set: two close neighbours each side; table: one node in row 0, column 9.
        let mut ev = Vec::new();
        for v in [
            (0x5000 << 112) + 10,
            (0x5000 << 112) + 20,
            (0x5000 << 112) - 10,
            (0x5000 << 112) - 20,
        ] {
            n.t.leaf_set.insert(h(v), Rtt::UNKNOWN, &mut ev);
        }
        n.t.routing_table
            .insert(h(0x9abc << 112), Rtt::from_sample(100));
        n.t.routing_table
            .insert(h(0x5100 << 112), Rtt::from_sample(100));
        // In leaf-set range.
        assert!(!n.t.leaf_set.covers_ring());
        assert_eq!(
            n.decide(NodeId::from_u128((0x5000 << 112) + 16)),
            Decision::Forward {
                to: h((0x5000 << 112) + 20),
                rare: false
            }
        );
        assert_eq!(
            n.decide(NodeId::from_u128((0x5000 << 112) + 2)),
            Decision::Deliver
        );
        // Routing table: one more digit.
        assert_eq!(
            n.decide(NodeId::from_u128(0x9fff << 112)),
            Decision::Forward {
                to: h(0x9abc << 112),
                rare: false
            }
        );
        // Rare case: no entry for digit 0xc; the known node sharing as long a prefix (0) and
        // numerically closer to the key is chosen.
        assert_eq!(
            n.decide(NodeId::from_u128(0xc000 << 112)),
            Decision::Forward {
                to: h(0x9abc << 112),
                rare: true
            }
        );
        assert_eq!(
            me.id.shared_prefix_len(NodeId::from_u128(0x51ff << 112), 4),
            1
        );
        assert_eq!(
            n.decide(NodeId::from_u128(0x51ff << 112)),
            Decision::Forward {
                to: h(0x5100 << 112),
                rare: false
            }
        );
    }

    #[test]
    fn a_short_leaf_set_side_neither_reaches_across_nor_loops() {
        // The simulator's loops (10,000 nodes, churn, seed 1): a node whose right side was
        // short took its left members there, or a node far out, and sent keys in the gap
        // to it, whose table sent them straight back.
        let cfg = Config {
            leaf_set_size: 4,
            ..Config::default()
        };
        let base = 0x1652u128 << 112;
        let mut n = Node::new(Arc::new(cfg), NodeId::from_u128(base), 1u32, 1);
        n.start_ring(Instant::ZERO);
        let h = |v: u128| NodeHandle::new(NodeId::from_u128(v), ((v >> 96) ^ v) as u32);
        let t = Instant::from_micros(1_000);
        // A large ring: table entries far away, a full left side, one right member.
        for v in [
            0x9abcu128 << 112,
            0xc000 << 112,
            0x1e81 << 112,
            0x3000 << 112,
        ] {
            n.record_rtt(t, h(v), 50_000);
        }
        for v in [base - 10, base - 20, base + 10] {
            n.heard_from(t, h(v), true);
        }
        assert!(
            !n.t.leaf_set.wrap(),
            "the node knows more nodes than its leaf set holds"
        );
        // A left member heard from again does not fill the short right side.
        n.heard_from(t, h(base - 20), true);
        assert_eq!(n.t.leaf_set.side(Side::Right).len(), 1);
        assert!(!n.t.leaf_set.covers_ring());
        // Nor does a node implausibly far out (ids 10 apart here; the limit is 320).
        n.heard_from(t, h(0x2283 << 112), true);
        assert!(!n.t.leaf_set.covers(NodeId::from_u128(0x1e3b << 112)));
        assert_eq!(
            n.decide(NodeId::from_u128(0x1e3b << 112)),
            Decision::Forward {
                to: h(0x1e81 << 112),
                rare: false
            }
        );
        // A node a little further out does; the table knows one in between.
        n.heard_from(t, h(base + 300), true);
        n.record_rtt(t, h(base + 100), 50_000);
        let key = NodeId::from_u128(base + 110);
        assert!(n.t.leaf_set.covers(key));
        assert!(!n.t.leaf_set.contains(NodeId::from_u128(base + 100)));
        // The entry is nearer the key than the leaf set's choice: it goes there.
        assert_eq!(
            n.decide(key),
            Decision::Forward {
                to: h(base + 100),
                rare: false
            }
        );
    }

    /// A ready node at 0x5000.. with two leaf-set members a side (not covering the ring),
    /// and what it sent so far drained.
    fn small_world() -> Node<u32> {
        world(10)
    }

    /// A node with a leaf set of 4 members `gap` apart on each side: the ring looks like
    /// 2^128 / `gap` nodes.
    fn world(gap: u128) -> Node<u32> {
        let cfg = Config {
            leaf_set_size: 4,
            ..Config::default()
        };
        let mut n = Node::new(Arc::new(cfg), NodeId::from_u128(0x5000 << 112), 1u32, 1);
        n.start_ring(Instant::ZERO);
        let mut ev = Vec::new();
        for (v, addr) in [(1, 210), (2, 220), (-1i128, 190), (-2, 180)] {
            let id = ((0x5000u128 << 112) as i128 + v * gap as i128) as u128;
            n.t.leaf_set.insert(
                NodeHandle::new(NodeId::from_u128(id), addr),
                Rtt::UNKNOWN,
                &mut ev,
            );
        }
        while n.poll_transmit().is_some() {}
        while n.poll_event().is_some() {}
        n
    }

    fn sent(n: &mut Node<u32>) -> Vec<(u32, Body<u32>)> {
        std::iter::from_fn(|| n.poll_transmit())
            .map(|t| (t.to, t.msg.body))
            .collect()
    }

    #[test]
    fn a_row_reply_probes_only_entries_that_may_be_nearer() {
        let mut n = small_world();
        let h = |v: u128, addr: u32| NodeHandle::new(NodeId::from_u128(v << 112), addr);
        // Slot (0, 1) holds a node 10 ms away; the sender of the row is 50 ms away.
        n.t.routing_table
            .insert(h(0x1000, 10), Rtt::from_sample(10_000));
        n.t.routing_table
            .insert(h(0x7000, 70), Rtt::from_sample(50_000));
        let near = h(0x1100, 11); // 55 ms from the sender: maybe 5 ms from us
        let far = h(0x1200, 12); // 200 ms from the sender: at least 150 ms from us
        let unmeasured = h(0x1300, 13); // the sender has no RTT: no bound
        let hole = h(0x2000, 20); // an empty slot: always worth a probe
        let msg = Message {
            sender: h(0x7000, 70).id,
            body: Body::RowReply {
                row: 0,
                entries: vec![far, near, unmeasured, hole],
                rtt_us: vec![200_000, 55_000, 0, 400_000],
            },
        };
        n.handle_message(Instant::from_micros(1000), 70, msg);
        let mut probed: Vec<u32> = sent(&mut n)
            .into_iter()
            .filter(|(_, b)| matches!(b, Body::Probe { .. }))
            .map(|(to, _)| to)
            .collect();
        probed.sort_unstable();
        assert_eq!(probed, vec![11, 13, 20]);
    }

    #[test]
    fn maintenance_asks_a_near_member_and_may_probe_more_of_its_row() {
        let mut n = small_world();
        let h = |v: u128, addr: u32| NodeHandle::new(NodeId::from_u128(v << 112), addr);
        // Row 0 only: members at 10..150 ms, farther the higher the digit.
        for d in 1..16u128 {
            if d != 5 {
                n.t.routing_table
                    .insert(h(d << 12, d as u32), Rtt::from_sample(d as u32 * 10_000));
            }
        }
        // Over many rounds the member asked is the nearest of three drawn: the five nearest
        // members are asked about 16 times as often as the five farthest.
        let mut asked = [0u32; 16];
        for _ in 0..600 {
            n.rt_maintenance(Instant::from_micros(1000));
            let out = sent(&mut n);
            assert_eq!(out.len(), 1);
            assert!(matches!(out[0].1, Body::RowRequest { row: 0, .. }));
            asked[out[0].0 as usize] += 1;
        }
        let near: u32 = [1, 2, 3, 4, 6].iter().map(|&d| asked[d]).sum();
        let far: u32 = asked[11..].iter().sum();
        assert!(near > 5 * far && far > 0, "{asked:?}");
        // Its reply names ten nodes each possibly nearer than a slot's occupant: up to
        // `rt_maintenance_probes` (8) are probed. The same row from anyone else gets
        // `row_probes` (4).
        let peer = n.maintenance_peer.expect("a request is outstanding");
        let peer = n.t.find(peer).unwrap();
        let entries: Vec<NodeHandle<u32>> = (0..10u128)
            .map(|i| h((0xf000 | i << 4) + 1, 100 + i as u32))
            .collect();
        let probes = |n: &mut Node<u32>, from: NodeHandle<u32>| {
            let msg = Message {
                sender: from.id,
                body: Body::RowReply {
                    row: 0,
                    entries: entries.clone(),
                    rtt_us: vec![0; entries.len()],
                },
            };
            n.handle_message(Instant::from_micros(2000), from.addr, msg);
            let out = sent(n);
            out.iter()
                .filter(|(_, b)| matches!(b, Body::Probe { .. }))
                .count()
        };
        assert_eq!(probes(&mut n, peer), 8);
        assert_eq!(n.maintenance_peer, None);
        n.probes.clear();
        assert_eq!(probes(&mut n, peer), 4);
    }

    #[test]
    fn maintenance_leaves_alone_rows_whose_slots_have_no_choice() {
        // A ring of about 1,000 nodes: a row-0 slot has ~62 candidates, a row-1 slot ~4,
        // a row-2 slot ~0.2 (its occupant, if any, is the only one).
        let mut n = world(u128::MAX / 1000);
        let h = |v: u128, addr: u32| NodeHandle::new(NodeId::from_u128(v << 112), addr);
        for d in 0..16u128 {
            for (v, own) in [(d << 12, 5), (0x5000 | d << 8, 0), (0x5000 | d << 4, 0)] {
                if d != own {
                    n.t.routing_table
                        .insert(h(v, v as u32), Rtt::from_sample(10_000));
                }
            }
        }
        assert_eq!(n.first_unexpected_hole(), None);
        let mut rows = [0u32; 3];
        for _ in 0..300 {
            n.rt_maintenance(Instant::from_micros(1000));
            for (_, b) in sent(&mut n) {
                if let Body::RowRequest { row, .. } = b {
                    rows[usize::from(row)] += 1;
                }
            }
        }
        assert_eq!(rows[2], 0, "{rows:?}");
        assert!(rows[0] > 100 && rows[1] > 100, "{rows:?}");
    }

    #[test]
    fn a_row_request_with_an_rtt_announces_its_sender() {
        let mut n = small_world();
        let h = |v: u128, addr: u32| NodeHandle::new(NodeId::from_u128(v << 112), addr);
        let ask = |n: &mut Node<u32>, from: NodeHandle<u32>, rtt_us: u32| {
            let msg = Message {
                sender: from.id,
                body: Body::RowRequest { row: 0, rtt_us },
            };
            n.handle_message(Instant::from_micros(1000), from.addr, msg);
            sent(n)
        };
        // Without an RTT it is a plain request: answered, the sender not taken.
        let plain = h(0x3000, 30);
        let out = ask(&mut n, plain, 0);
        assert!(
            out.iter()
                .any(|(to, b)| *to == 30 && matches!(b, Body::RowReply { .. }))
        );
        assert!(n.t.routing_table.find(plain.id).is_none());
        // With one, the sender enters the table with that RTT, as after an Announce.
        let joined = h(0x4000, 40);
        let out = ask(&mut n, joined, 7_000);
        assert!(
            out.iter()
                .any(|(to, b)| *to == 40 && matches!(b, Body::RowReply { .. }))
        );
        let e =
            n.t.routing_table
                .find(joined.id)
                .expect("announced by its request");
        assert_eq!(e.rtt.srtt_us, 7_000);
        assert!(!out.iter().any(|(_, b)| matches!(b, Body::Probe { .. })));
    }

    #[test]
    fn a_probe_reply_says_what_an_announcement_must_beat() {
        let cfg = Config {
            leaf_set_size: 4,
            neighborhood_size: 2,
            ..Config::default()
        };
        let mut n = Node::new(Arc::new(cfg), NodeId::from_u128(0x5000 << 112), 1u32, 1);
        n.start_ring(Instant::ZERO);
        let h = |v: u128, addr: u32| NodeHandle::new(NodeId::from_u128(v << 112), addr);
        let room = |n: &mut Node<u32>, from: NodeHandle<u32>| {
            let msg = Message {
                sender: from.id,
                body: Body::Probe {
                    nonce: 7,
                    joining: false,
                    want_leaf_set: false,
                },
            };
            n.handle_message(Instant::from_micros(1000), from.addr, msg);
            sent(n)
                .into_iter()
                .find_map(|(to, b)| match b {
                    Body::ProbeReply { room_us, .. } if to == from.addr => Some(room_us),
                    _ => None,
                })
                .expect("a probe is answered")
        };
        // Slot (0, 1) holds a node 10 ms away; the neighbourhood set is not full yet.
        n.t.routing_table
            .insert(h(0x1000, 10), Rtt::from_sample(10_000));
        assert_eq!(
            room(&mut n, h(0x1100, 11)),
            u32::MAX,
            "the neighbourhood has room"
        );
        // Full of nodes 3 and 8 ms away: an announcement must beat the slot's 10 ms.
        n.t.neighborhood.insert(h(0x2000, 20), 3_000);
        n.t.neighborhood.insert(h(0x3000, 30), 8_000);
        assert_eq!(room(&mut n, h(0x1100, 11)), 10_000);
        // An empty slot takes anyone.
        assert_eq!(room(&mut n, h(0x4000, 40)), u32::MAX);
        // A measured member of both has nothing to gain; in row 0 but not measured, it has.
        assert_eq!(room(&mut n, h(0x1000, 10)), 8_000);
        n.t.neighborhood.insert(h(0x1000, 10), 2_000);
        assert_eq!(room(&mut n, h(0x1000, 10)), 0);
        n.t.routing_table.insert(h(0x6000, 60), Rtt::UNKNOWN);
        assert_eq!(room(&mut n, h(0x6000, 60)), u32::MAX);
    }

    #[test]
    fn a_new_node_announces_itself_only_where_that_changes_a_table() {
        let mut n = Node::new(
            Arc::new(Config::default()),
            NodeId::from_u128(0x5000 << 112),
            1u32,
            1,
        );
        let h = |v: u128, addr: u32| NodeHandle::new(NodeId::from_u128(v << 112), addr);
        let root = h(0x5100, 2);
        n.join(Instant::ZERO, &[root.addr]);
        sent(&mut n);
        // Six row-0 candidates (addresses 10..15), RTTs 2..7 ms; the three nearest get
        // row requests (carrying their announcement), the other three may get an Announce.
        let rows: Vec<NodeHandle<u32>> =
            (0..6).map(|i| h(0x1000 * (i + 6), 10 + i as u32)).collect();
        let msg = Message {
            sender: root.id,
            body: Body::JoinReply {
                leaf_set: vec![],
                rows: rows.clone(),
            },
        };
        n.handle_message(Instant::from_micros(1000), root.addr, msg);
        let probes: Vec<(u32, u64)> = sent(&mut n)
            .into_iter()
            .filter_map(|(to, b)| match b {
                Body::Probe { nonce, .. } => Some((to, nonce)),
                _ => None,
            })
            .collect();
        // 10..12 nearest; 13 says an announcement must beat 1 ms (it measures 5 ms), 14
        // has room, 15 needs below 7 ms and we measure 7 ms. The root answers last, so the
        // node is still joining when the others answer.
        let rooms = [u32::MAX, u32::MAX, u32::MAX, 1_000, u32::MAX, 7_000];
        let mut order = probes.clone();
        order.sort_by_key(|&(to, _)| to == root.addr);
        let mut announced = Vec::new();
        for (to, nonce) in order {
            let (rtt_ms, room_us) = match to {
                a if a == root.addr => (1, u32::MAX),
                a => (u64::from(a - 10) + 2, rooms[(a - 10) as usize]),
            };
            let from = if to == root.addr {
                root
            } else {
                rows[(to - 10) as usize]
            };
            let at = Instant::from_micros(1000 + rtt_ms * 1000);
            answer_probe(&mut n, NodeHandle::new(from.id, to), nonce, room_us, at);
            announced.extend(
                sent(&mut n)
                    .into_iter()
                    .filter(|(_, b)| matches!(b, Body::Announce { .. }))
                    .map(|(to, _)| to),
            );
        }
        assert_eq!(n.state(), NodeState::Ready);
        assert_eq!(probes.len(), 7, "the root and six candidates probed");
        assert_eq!(announced, vec![14]);
    }

    #[test]
    fn a_rare_case_route_asks_the_next_hop_for_the_missing_row() {
        let mut n = small_world();
        let x = NodeHandle::new(NodeId::from_u128(0x9abc << 112), 9u32);
        n.t.routing_table.insert(x, Rtt::from_sample(100));
        // No entry for digit 0xc: routes to 0xc0.. take the rare case through x.
        let key = |i: u128| NodeId::from_u128((0xc000 << 112) + i);
        let route = |n: &mut Node<u32>, at: u64, k: NodeId| {
            n.route(Instant::from_micros(at), k, 0, Bytes::new())
                .unwrap();
            sent(n)
        };
        let row_requests = |out: &[(u32, Body<u32>)]| {
            out.iter()
                .filter(|(to, b)| *to == 9 && matches!(b, Body::RowRequest { row: 0, .. }))
                .count()
        };
        assert_eq!(row_requests(&route(&mut n, 2_000_000, key(1))), 1);
        // At most one request per `rt_fill_interval` (1 s).
        assert_eq!(row_requests(&route(&mut n, 2_500_000, key(2))), 0);
        assert_eq!(row_requests(&route(&mut n, 3_100_000, key(3))), 1);
        // A route the table serves asks nothing.
        assert_eq!(
            row_requests(&route(&mut n, 9_000_000, NodeId::from_u128(0x9fff << 112))),
            0
        );
    }

    #[test]
    fn maintenance_goes_to_a_row_with_a_hole_that_should_be_filled() {
        let mut n = small_world();
        // A leaf set 10 ids wide a side: an estimated ring of ~2^128 x 4 / 40 nodes, so
        // every slot of the first rows should have candidates.
        assert!(n.t.leaf_set.estimated_ring_size() > 1e30);
        let h = |v: u128| NodeHandle::new(NodeId::from_u128(v << 112), v as u32);
        for d in [0u128, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
            n.t.routing_table.insert(h(d << 12), Rtt::from_sample(100));
        }
        // Row 1 lacks column 7: ask one of its members for row 1.
        for d in 0..16u128 {
            if d != 0 && d != 7 {
                n.t.routing_table
                    .insert(h(0x5000 | d << 8), Rtt::from_sample(100));
            }
        }
        assert_eq!(n.first_unexpected_hole(), Some(1));
        n.rt_maintenance(Instant::from_micros(1000));
        let out = sent(&mut n);
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0].1, Body::RowRequest { row: 1, .. }));
        assert_eq!(out[0].0 & 0xf0ff, 0x5000, "asked a row-1 member");
    }

    /// Node 1000, ready, with node 1010 (address 7) in its leaf set.
    fn ring_of_two() -> (Node<u32>, NodeHandle<u32>) {
        let mut n = node(1000);
        n.start_ring(Instant::ZERO);
        let other = NodeHandle::new(NodeId::from_u128(1010), 7u32);
        let mut ev = Vec::new();
        n.t.leaf_set.insert(other, Rtt::UNKNOWN, &mut ev);
        (n, other)
    }

    #[test]
    fn a_suspected_closer_member_holds_delivery() {
        let (mut n, other) = ring_of_two();
        let key = NodeId::from_u128(1009);
        assert_eq!(
            n.decide(key),
            Decision::Forward {
                to: other,
                rare: false
            }
        );
        n.probe(Instant::ZERO, other, P_SUSPECT);
        assert_eq!(n.decide(key), Decision::Hold(other.id));
        // A message for that key is held, not delivered, until the probe settles.
        while n.poll_event().is_some() {}
        n.route(Instant::ZERO, key, 1, Bytes::from_static(b"k"))
            .unwrap();
        assert_eq!(n.held_len(), 1);
        assert!(n.poll_event().is_none());
        // The suspect never answers: after the retries it is declared dead and we deliver.
        let end = Instant::ZERO + Duration::from_secs(20);
        let mut out = Vec::new();
        while let Some(t) = n.poll_timeout().filter(|t| *t <= end) {
            n.handle_timeout(t);
            out.extend(sent(&mut n));
        }
        assert_eq!(n.held_len(), 0);
        assert!(!n.leaf_set().contains(other.id));
        let mut delivered = false;
        while let Some(e) = n.poll_event() {
            delivered |= matches!(e, Event::Delivered(ref d) if d.key == key);
        }
        assert!(delivered);
        assert_eq!(n.stats().nodes_declared_dead, 1);
        // The "dead" member is sent our leaf set as a heartbeat: it lacks the member, so a
        // live one (its probes were only lost) answers with its own and is a member again.
        let told = out.iter().any(|(to, b)| {
            *to == 7
                && matches!(b, Body::LeafSetUpdate { heartbeat: true, leaf_set, .. }
                    if !leaf_set.iter().any(|h| h.id == other.id))
        });
        assert!(told, "{out:?}");
        n.handle_message(
            end,
            7,
            Message {
                sender: other.id,
                body: Body::LeafSetUpdate {
                    heartbeat: false,
                    leaf_set: vec![n.handle()],
                    failed: Vec::new(),
                },
            },
        );
        assert!(n.leaf_set().contains(other.id));
    }

    #[test]
    fn a_suspect_that_spoke_while_its_probes_were_lost_is_not_declared_dead() {
        let (mut n, other) = ring_of_two();
        n.probe(Instant::ZERO, other, P_SUSPECT);
        // Not a probe reply, but proof of life (here an ack for a hop we no longer track).
        let t = Instant::from_micros(10_000);
        n.handle_message(
            t,
            7,
            Message {
                sender: other.id,
                body: Body::RouteAck { hop_id: 12345 },
            },
        );
        let end = Instant::ZERO + Duration::from_secs(20);
        while let Some(t) = n.poll_timeout().filter(|t| *t <= end) {
            n.handle_timeout(t);
        }
        assert!(n.leaf_set().contains(other.id));
        assert_eq!(n.stats().nodes_declared_dead, 0);
        assert_eq!(n.stats().probes_inconclusive, 1);
        assert!(n.probes.is_empty());
    }

    /// Runs `n`'s timers up to `end`, returning what it sent.
    fn run_until(n: &mut Node<u32>, end: Instant) -> Vec<(u32, Body<u32>)> {
        let mut out = Vec::new();
        while let Some(t) = n.poll_timeout().filter(|t| *t <= end) {
            n.handle_timeout(t);
            out.extend(sent(n));
        }
        out
    }

    fn indirect_probes(out: &[(u32, Body<u32>)]) -> Vec<(u32, NodeId, u64)> {
        out.iter()
            .filter_map(|(to, b)| match b {
                Body::IndirectProbe { target, nonce } => Some((*to, target.id, *nonce)),
                _ => None,
            })
            .collect()
    }

    /// The member of `small_world` at address 210 (just right of the node).
    fn member_210() -> NodeHandle<u32> {
        NodeHandle::new(NodeId::from_u128((0x5000 << 112) + 10), 210)
    }

    #[test]
    fn a_member_whose_probes_are_lost_is_kept_when_another_member_reaches_it() {
        let mut n = small_world();
        let target = member_210();
        let key = NodeId::from_u128(target.id.as_u128() - 1);
        n.probe(Instant::ZERO, target, P_SUSPECT);
        while n.poll_event().is_some() {}
        n.route(Instant::ZERO, key, 1, Bytes::from_static(b"k"))
            .unwrap();
        assert_eq!(n.held_len(), 1);
        // The first probe goes unanswered: the other three members are asked to probe it.
        let first = n.poll_timeout().unwrap();
        let out = run_until(&mut n, first);
        let asked = indirect_probes(&out);
        let mut helpers: Vec<u32> = asked.iter().map(|a| a.0).collect();
        helpers.sort_unstable();
        assert_eq!(helpers, vec![180, 190, 220]);
        assert!(asked.iter().all(|a| a.1 == target.id && a.2 == asked[0].2));
        let nonce = asked[0].2;
        assert_eq!(n.stats().sent[MessageKind::IndirectProbe as usize - 1], 3);
        // Answers with another nonce, or from before any request, prove nothing.
        let reply = |n: &mut Node<u32>, nonce: u64| {
            let helper = n.t.leaf_set.get(NodeId::from_u128((0x5000 << 112) + 20));
            let helper = helper.unwrap().handle;
            let msg = Message {
                sender: helper.id,
                body: Body::IndirectProbeReply {
                    target: target.id,
                    nonce,
                },
            };
            n.handle_message(first, helper.addr, msg);
        };
        reply(&mut n, nonce + 1);
        reply(&mut n, 0);
        assert_eq!(n.stats().probes_rescued, 0);
        assert_eq!(n.held_len(), 1);
        // A helper reached it: alive, and the held message goes to it, through the helper.
        reply(&mut n, nonce);
        assert_eq!(n.stats().probes_rescued, 1);
        assert!(n.probes.is_empty());
        assert_eq!(n.held_len(), 0);
        let out = sent(&mut n);
        assert!(out.iter().any(|(to, b)| *to == 220
            && matches!(b, Body::RelayedRoute { target: t, route } if *t == target && route.key == key)));
        assert!(n.leaf_set().contains(target.id));
        assert_eq!(n.stats().nodes_declared_dead, 0);
    }

    /// `from` answers `n`'s probe `nonce` (without a leaf set).
    fn answer_probe(
        n: &mut Node<u32>,
        from: NodeHandle<u32>,
        nonce: u64,
        room_us: u32,
        at: Instant,
    ) {
        let msg = Message {
            sender: from.id,
            body: Body::ProbeReply {
                nonce,
                ready: true,
                leaf_set: vec![],
                room_us,
            },
        };
        n.handle_message(at, from.addr, msg);
    }

    /// `helper` tells `n` that it reached `target` (answering IndirectProbe `nonce`).
    fn helper_reached(
        n: &mut Node<u32>,
        at: Instant,
        helper: NodeHandle<u32>,
        target: NodeId,
        nonce: u64,
    ) {
        let msg = Message {
            sender: helper.id,
            body: Body::IndirectProbeReply { target, nonce },
        };
        n.handle_message(at, helper.addr, msg);
    }

    /// The hop ids of the routed messages for `key` in `out` (relayed or not), by receiver.
    fn route_hops(out: &[(u32, Body<u32>)], key: NodeId) -> Vec<(u32, u64)> {
        out.iter()
            .filter_map(|(to, b)| b.route().filter(|m| m.key == key).map(|m| (*to, m.hop_id)))
            .collect()
    }

    #[test]
    fn a_candidate_only_another_member_reaches_enters_the_leaf_set() {
        // A node between us and member 210 that our probes never reach (a broken path)
        // while member 220 reaches it: left out, its keys would be delivered here.
        let mut n = small_world();
        let c = NodeHandle::new(NodeId::from_u128((0x5000 << 112) + 5), 205);
        let neighbour = n.t.leaf_set.get(NodeId::from_u128((0x5000 << 112) + 20));
        let helper = neighbour.unwrap().handle;
        let msg = Message {
            sender: helper.id,
            body: Body::LeafSetUpdate {
                heartbeat: false,
                leaf_set: vec![c],
                failed: Vec::new(),
            },
        };
        n.handle_message(Instant::ZERO, helper.addr, msg);
        assert!(
            sent(&mut n)
                .iter()
                .any(|(to, b)| *to == 205 && matches!(b, Body::Probe { .. }))
        );
        let first = n.poll_timeout().unwrap();
        let asked = indirect_probes(&run_until(&mut n, first));
        assert!(!asked.is_empty() && asked.iter().all(|a| a.1 == c.id));
        assert!(!n.leaf_set().contains(c.id));
        helper_reached(&mut n, first, helper, c.id, asked[0].2);
        assert!(n.leaf_set().contains(c.id));
        assert_eq!(n.stats().probes_rescued, 1);
        assert_eq!(n.stats().nodes_declared_dead, 0);
        // Its keys are now routed towards it, not delivered here.
        n.route(
            first,
            NodeId::from_u128((0x5000 << 112) + 4),
            1,
            Bytes::new(),
        )
        .unwrap();
        assert_eq!(n.stats().delivered, 0);
        assert_eq!(
            route_hops(&sent(&mut n), NodeId::from_u128((0x5000 << 112) + 4)).len(),
            1
        );
    }

    /// `small_world` after its member 210 went silent to our probes while member 220
    /// reached it; then a message is routed for a key of 210's. Gives the node, 210, 220,
    /// the key and the time.
    fn relayed_world() -> (Node<u32>, NodeHandle<u32>, NodeHandle<u32>, NodeId, Instant) {
        let mut n = small_world();
        let target = member_210();
        let helper = n.t.leaf_set.get(NodeId::from_u128((0x5000 << 112) + 20));
        let helper = helper.unwrap().handle;
        let key = NodeId::from_u128(target.id.as_u128() - 1);
        n.probe(Instant::ZERO, target, P_SUSPECT);
        let first = n.poll_timeout().unwrap();
        let asked = indirect_probes(&run_until(&mut n, first));
        helper_reached(&mut n, first, helper, target.id, asked[0].2);
        sent(&mut n);
        n.route(first, key, 1, Bytes::new()).unwrap();
        (n, target, helper, key, first)
    }

    #[test]
    fn a_member_only_another_member_reaches_gets_its_messages_through_that_member() {
        // Our probes go unanswered, the helper's are answered: kept, and reached through
        // the helper from now on.
        let (mut n, target, helper, key, first) = relayed_world();
        let out = sent(&mut n);
        let hops = route_hops(&out, key);
        assert_eq!(hops.iter().map(|h| h.0).collect::<Vec<_>>(), vec![220]);
        assert!(out.iter().any(|(to, b)| *to == 220
            && matches!(b, Body::RelayedRoute { target: t, .. } if *t == target)));
        assert_eq!(n.stats().relayed_hops, 1);
        // The helper acknowledges the hop.
        let ack = |n: &mut Node<u32>, from: NodeHandle<u32>, hop_id: u64, at: Instant| {
            let msg = Message {
                sender: from.id,
                body: Body::RouteAck { hop_id },
            };
            n.handle_message(at, from.addr, msg);
        };
        ack(&mut n, helper, hops[0].1, first);
        assert!(n.acks.is_empty());
        // Once it answers a probe of ours directly, messages go to it again.
        let later = first + Duration::from_secs(30);
        n.probe(later, target, P_RT);
        let nonce = sent(&mut n)
            .iter()
            .find_map(|(to, b)| match b {
                Body::Probe { nonce, .. } if *to == 210 => Some(*nonce),
                _ => None,
            })
            .unwrap();
        answer_probe(&mut n, target, nonce, 0, later);
        sent(&mut n);
        n.route(later, key, 1, Bytes::new()).unwrap();
        let hops = route_hops(&sent(&mut n), key);
        assert_eq!(hops.iter().map(|h| h.0).collect::<Vec<_>>(), vec![210]);
        assert_eq!(n.stats().relayed_hops, 1);
    }

    #[test]
    fn a_relayed_hop_goes_to_its_target_or_is_not_acknowledged() {
        let mut n = small_world();
        let asker = member_210();
        let target = n.t.leaf_set.get(NodeId::from_u128((0x5000 << 112) - 10));
        let target = target.unwrap().handle;
        // The key is nearest to us, but the hop was meant for `target`: it goes there,
        // not delivered here, and applications here are not asked.
        let key = n.t.me.id;
        let relayed = |n: &mut Node<u32>, target: NodeHandle<u32>, hop_id: u64| {
            let msg = Message {
                sender: asker.id,
                body: Body::RelayedRoute {
                    target,
                    route: Box::new(RouteMsg {
                        hop_id,
                        key,
                        origin: asker,
                        request: 1,
                        hops: 1,
                        trace: false,
                        path: Vec::new(),
                        payload: RoutePayload::App {
                            app: 1,
                            data: Bytes::new(),
                        },
                    }),
                },
            };
            n.handle_message(Instant::ZERO, asker.addr, msg);
            sent(n)
        };
        // Even if we reach it only through another member ourselves: one relay at most.
        n.relays.push(Relay {
            id: target.id,
            via: NodeHandle::new(NodeId::from_u128((0x5000 << 112) - 20), 180),
            until: Instant::ZERO + Duration::from_secs(60),
        });
        let out = relayed(&mut n, target, 7);
        assert!(out.contains(&(asker.addr, Body::RouteAck { hop_id: 7 })));
        let fwd = route_hops(&out, key);
        assert_eq!(fwd.len(), 1);
        assert_eq!(fwd[0].0, target.addr);
        assert!(
            out.iter()
                .any(|(_, b)| matches!(b, Body::Route(m) if m.hops == 2))
        );
        assert_eq!(n.stats().delivered, 0);
        // A target we do not know (or at another address): no ack, nothing sent.
        let stranger = NodeHandle::new(NodeId::from_u128(0xa000 << 112), 999);
        let ignored = n.stats().ignored;
        assert!(relayed(&mut n, stranger, 8).is_empty());
        assert!(relayed(&mut n, NodeHandle::new(target.id, 555), 9).is_empty());
        assert_eq!(n.stats().ignored, ignored + 2);
    }

    #[test]
    fn a_repeated_join_is_answered_through_two_members_too() {
        let mut n = small_world();
        let joiner = NodeHandle::new(NodeId::from_u128((0x5000 << 112) + 3), 203);
        let join = |n: &mut Node<u32>, attempt: u64| {
            let msg = Message {
                sender: joiner.id,
                body: Body::Route(Box::new(RouteMsg {
                    hop_id: 0,
                    key: joiner.id,
                    origin: joiner,
                    request: attempt,
                    hops: 0,
                    trace: false,
                    path: Vec::new(),
                    payload: RoutePayload::Join {
                        joiner,
                        rows: Vec::new(),
                    },
                })),
            };
            n.handle_message(Instant::ZERO, joiner.addr, msg);
            sent(n)
        };
        let relays = |out: &[(u32, Body<u32>)]| -> Vec<u32> {
            out.iter()
                .filter_map(|(to, b)| match b {
                    Body::JoinReplyRelay {
                        joiner: j,
                        leaf_set,
                        ..
                    } => {
                        assert_eq!(*j, joiner);
                        assert!(
                            leaf_set
                                .iter()
                                .any(|h| h.id == NodeId::from_u128(0x5000 << 112))
                        );
                        Some(*to)
                    }
                    _ => None,
                })
                .collect()
        };
        let first = join(&mut n, 0);
        assert!(
            first
                .iter()
                .any(|(to, b)| *to == 203 && matches!(b, Body::JoinReply { .. }))
        );
        assert!(relays(&first).is_empty());
        // Attempts 1 and 2: the direct answer, and two members each, nearest first.
        let second = join(&mut n, 1);
        assert!(
            second
                .iter()
                .any(|(to, b)| *to == 203 && matches!(b, Body::JoinReply { .. }))
        );
        assert_eq!(relays(&second), vec![210, 190]);
        assert_eq!(relays(&join(&mut n, 2)), vec![220, 180]);
        // The member passes the answer on; nobody else can make it send one.
        let mut m = small_world();
        let root = member_210();
        let relay_msg = |from: NodeHandle<u32>| Message {
            sender: from.id,
            body: Body::JoinReplyRelay {
                joiner,
                leaf_set: vec![root],
                rows: Vec::new(),
            },
        };
        m.handle_message(Instant::ZERO, root.addr, relay_msg(root));
        assert_eq!(
            sent(&mut m),
            vec![(
                203,
                Body::JoinReply {
                    leaf_set: vec![root],
                    rows: Vec::new()
                }
            )]
        );
        let stranger = NodeHandle::new(NodeId::from_u128(0xa000 << 112), 999);
        m.handle_message(Instant::ZERO, stranger.addr, relay_msg(stranger));
        assert!(sent(&mut m).is_empty());
    }

    #[test]
    fn a_relay_that_fails_us_is_dropped() {
        let (mut n, _, _, key, _) = relayed_world();
        assert_eq!(route_hops(&sent(&mut n), key)[0].0, 220);
        // The relayed hop goes unacknowledged: the relay is dropped, and the helper is
        // excluded and probed like any silent next hop.
        let t = n.poll_timeout().unwrap();
        let out = run_until(&mut n, t);
        assert!(n.relays.is_empty());
        assert!(
            out.iter()
                .any(|(to, b)| *to == 220 && matches!(b, Body::Probe { .. }))
        );
        assert!(!route_hops(&out, key).iter().any(|h| h.0 == 220));
    }

    #[test]
    fn a_node_does_not_probe_for_others_what_it_just_found_dead() {
        let mut n = small_world();
        let asker = member_210();
        let dead = NodeHandle::new(NodeId::from_u128((0x5000 << 112) - 5), 195);
        n.probe(Instant::ZERO, dead, P_RT | P_LEAF);
        run_until(&mut n, Instant::ZERO + Duration::from_secs(20));
        assert!(n.recently_failed_surely(dead.id));
        let ignored = n.stats().ignored;
        let msg = Message {
            sender: asker.id,
            body: Body::IndirectProbe {
                target: dead,
                nonce: 5,
            },
        };
        n.handle_message(Instant::ZERO + Duration::from_secs(21), asker.addr, msg);
        assert!(sent(&mut n).is_empty());
        assert_eq!(n.stats().ignored, ignored + 1);
    }

    #[test]
    fn a_member_nobody_reaches_is_declared_dead_no_later_than_without_helpers() {
        let death = |helpers: usize| {
            let mut n = small_world();
            n.cfg = Arc::new(Config {
                indirect_probes: helpers,
                ..(*n.cfg).clone()
            });
            n.probe(Instant::ZERO, member_210(), P_SUSPECT);
            let mut asked = 0;
            while n.stats().nodes_declared_dead == 0 {
                let t = n.poll_timeout().unwrap();
                n.handle_timeout(t);
                asked += indirect_probes(&sent(&mut n)).len();
            }
            assert!(!n.leaf_set().contains(member_210().id));
            (n.now, asked)
        };
        let (alone, none_asked) = death(0);
        let (helped, asked) = death(3);
        assert_eq!((none_asked, asked), (0, 3));
        assert!(helped <= alone, "{helped:?} > {alone:?}");
    }

    #[test]
    fn a_node_probes_for_members_only_and_answers_only_if_the_target_answered() {
        let mut n = small_world();
        let asker = member_210();
        let member_190 = n.t.leaf_set.get(NodeId::from_u128((0x5000 << 112) - 10));
        let target = member_190.unwrap().handle;
        let ask = |n: &mut Node<u32>, from: NodeHandle<u32>, target: NodeHandle<u32>| {
            let msg = Message {
                sender: from.id,
                body: Body::IndirectProbe { target, nonce: 77 },
            };
            n.handle_message(Instant::ZERO, from.addr, msg);
            sent(n)
        };
        // From a node outside the leaf set, or about an address we know no such node at,
        // or about a far node: ignored, nothing sent.
        let stranger = NodeHandle::new(NodeId::from_u128(0xa000 << 112), 999);
        let ignored = n.stats().ignored;
        assert!(ask(&mut n, stranger, target).is_empty());
        assert!(ask(&mut n, asker, NodeHandle::new(target.id, 555)).is_empty());
        assert!(ask(&mut n, asker, stranger).is_empty());
        assert_eq!(n.stats().ignored, ignored + 3);
        // From a member about a member: probed once, the asker answered on its reply.
        let probe_nonce = |out: &[(u32, Body<u32>)]| {
            out.iter()
                .find_map(|(to, b)| match b {
                    Body::Probe { nonce, .. } if *to == target.addr => Some(*nonce),
                    _ => None,
                })
                .expect("the target is probed")
        };
        let nonce = probe_nonce(&ask(&mut n, asker, target));
        answer_probe(&mut n, target, nonce, 0, Instant::from_micros(5_000));
        let out = sent(&mut n);
        assert!(out.contains(&(
            asker.addr,
            Body::IndirectProbeReply {
                target: target.id,
                nonce: 77,
            }
        )));
        // When the target does not answer (one retry), the asker hears nothing and we keep
        // the target: its silence is the asker's business.
        probe_nonce(&ask(&mut n, asker, target));
        let out = run_until(&mut n, Instant::ZERO + Duration::from_secs(20));
        let probes = out
            .iter()
            .filter(|(to, b)| *to == target.addr && matches!(b, Body::Probe { .. }))
            .count();
        assert_eq!(probes, 1, "one retry");
        assert!(
            !out.iter()
                .any(|(_, b)| matches!(b, Body::IndirectProbeReply { .. }))
        );
        assert!(n.leaf_set().contains(target.id));
        assert_eq!(n.stats().nodes_declared_dead, 0);
        // Its probes unanswered but another message from it seen: alive, and said so.
        let t0 = Instant::ZERO + Duration::from_secs(30);
        let msg = Message {
            sender: asker.id,
            body: Body::IndirectProbe { target, nonce: 78 },
        };
        n.handle_message(t0, asker.addr, msg);
        sent(&mut n);
        let ack = Message {
            sender: target.id,
            body: Body::RouteAck { hop_id: 1 << 63 },
        };
        n.handle_message(t0 + Duration::from_millis(5), target.addr, ack);
        let out = run_until(&mut n, t0 + Duration::from_secs(20));
        assert!(out.contains(&(
            asker.addr,
            Body::IndirectProbeReply {
                target: target.id,
                nonce: 78,
            }
        )));
    }

    #[test]
    fn a_far_node_one_probe_found_dead_is_not_reported_to_neighbours() {
        let mut n = small_world();
        // A routing-table candidate in none of our tables: one probe, no retry.
        let far = NodeHandle::new(NodeId::from_u128(0xa000 << 112), 900);
        n.probe(Instant::ZERO, far, P_RT);
        let member = member_210();
        n.probe(Instant::ZERO, member, P_SUSPECT);
        run_until(&mut n, Instant::ZERO + Duration::from_secs(20));
        assert_eq!(n.stats().nodes_declared_dead, 2);
        // A heartbeat whose leaf set names both: only the member's failure is reported.
        let neighbour = n.t.leaf_set.get(NodeId::from_u128((0x5000 << 112) - 10));
        let neighbour = neighbour.unwrap().handle;
        let msg = Message {
            sender: neighbour.id,
            body: Body::LeafSetUpdate {
                heartbeat: true,
                leaf_set: vec![n.handle(), far, member],
                failed: Vec::new(),
            },
        };
        n.handle_message(Instant::from_micros(21_000_000), neighbour.addr, msg);
        let reported: Vec<Vec<NodeId>> = sent(&mut n)
            .into_iter()
            .filter_map(|(to, b)| match b {
                Body::LeafSetUpdate { failed, .. } if to == neighbour.addr => Some(failed),
                _ => None,
            })
            .collect();
        assert_eq!(reported, vec![vec![member.id]]);
    }

    #[test]
    fn probing_for_another_member_does_not_make_a_notice_first_hand() {
        // Asked to probe a member, then told it failed: when it never answers we drop it
        // (the notice is confirmed) but do not announce it again, as a finding of our own
        // would be announced.
        let announced = |asked: bool| {
            let mut n = small_world();
            let member_190 = n.t.leaf_set.get(NodeId::from_u128((0x5000 << 112) - 10));
            let target = member_190.unwrap().handle;
            let member_220 = n.t.leaf_set.get(NodeId::from_u128((0x5000 << 112) + 20));
            let notifier = member_220.unwrap().handle;
            let say = |n: &mut Node<u32>, from: NodeHandle<u32>, body| {
                n.handle_message(
                    Instant::ZERO,
                    from.addr,
                    Message {
                        sender: from.id,
                        body,
                    },
                );
            };
            if asked {
                let body = Body::IndirectProbe { target, nonce: 5 };
                say(&mut n, member_210(), body);
            }
            let body = Body::LeafSetUpdate {
                heartbeat: false,
                leaf_set: vec![],
                failed: vec![target.id],
            };
            say(&mut n, notifier, body);
            let mut out = sent(&mut n);
            out.extend(run_until(&mut n, Instant::ZERO + Duration::from_secs(20)));
            assert!(!n.leaf_set().contains(target.id));
            out.iter()
                .filter(|(_, b)| {
                    matches!(b, Body::LeafSetUpdate { heartbeat: false, failed, .. }
                        if failed.contains(&target.id))
                })
                .count()
        };
        assert_eq!(announced(false), 0);
        assert_eq!(announced(true), 0);
    }
}
