//! The messages nodes exchange. Typed here; [`crate::codec`] gives their wire form.
//!
//! Every message names its sender's id; the sender's address is what the host saw it come
//! from. A network host checks the id against the peer's authenticated key before handing
//! the message to the node.

use bytes::Bytes;

use crate::{NodeHandle, NodeId};

/// Identifies an application on a node (FreePastry's application instance name, as a
/// number). Messages for an application id nobody registered surface as host events.
pub type AppId = u16;

/// A message with its sender's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<A> {
    /// The id of the node that sent this message (the previous hop, not the origin).
    pub sender: NodeId,
    /// What the message says.
    pub body: Body<A>,
}

/// The message types. The wire type byte is [`Body::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<A> {
    /// A message routed by key, one hop of it. Boxed: it is three times the size of any
    /// other body, and every message in a simulator's queue would pay for it.
    Route(Box<RouteMsg<A>>),
    /// Acknowledges receipt of the [`Body::Route`] hop with this `hop_id`.
    RouteAck {
        /// The `hop_id` of the acknowledged hop.
        hop_id: u64,
    },
    /// An application message sent straight to a node, not routed.
    Direct {
        /// The destination application.
        app: AppId,
        /// The application's bytes.
        data: Bytes,
    },
    /// The root's answer to a join: its leaf set, plus the routing-table rows gathered on
    /// the way.
    JoinReply {
        /// The root's leaf set (the root itself is the sender).
        leaf_set: Vec<NodeHandle<A>>,
        /// Routing-table candidates contributed by each hop of the join route.
        rows: Vec<NodeHandle<A>>,
    },
    /// Liveness and RTT probe; also how a joining node introduces itself.
    Probe {
        /// Echoed in the reply.
        nonce: u64,
        /// The sender is joining: add it to the leaf set even though it is not ready.
        joining: bool,
        /// The reply should carry the responder's leaf set.
        want_leaf_set: bool,
    },
    /// Answer to a [`Body::Probe`].
    ProbeReply {
        /// The probe's nonce.
        nonce: u64,
        /// The responder has finished joining.
        ready: bool,
        /// The responder's leaf set when asked for, else empty.
        leaf_set: Vec<NodeHandle<A>>,
        /// An [`Body::Announce`] from the prober with an RTT below this (microseconds)
        /// would change the responder's routing table or neighbourhood set: `u32::MAX`
        /// when there is room, 0 when nothing would change. Spares announcements that
        /// would be rejected (more than half of them in a 30,000-node build).
        room_us: u32,
    },
    /// Periodic heartbeat to the left neighbour and failure notices to the leaf set: the
    /// sender's leaf set and the nodes it recently found dead.
    LeafSetUpdate {
        /// This is the periodic heartbeat (the receiver's right neighbour is alive).
        heartbeat: bool,
        /// The sender's leaf set.
        leaf_set: Vec<NodeHandle<A>>,
        /// Nodes the sender recently declared dead.
        failed: Vec<NodeId>,
    },
    /// Asks for one row of the receiver's routing table.
    RowRequest {
        /// The row index.
        row: u8,
        /// When not 0, the RTT in µs the sender measured to the receiver: the request then
        /// also does what an [`Body::Announce`] does (a node that just joined asks some of
        /// the nodes it announces itself to for rows; one message instead of two).
        rtt_us: u32,
    },
    /// One row of the sender's routing table.
    RowReply {
        /// The row index.
        row: u8,
        /// The row's non-empty entries.
        entries: Vec<NodeHandle<A>>,
        /// The sender's RTT estimate to each entry in µs (0: not measured), same length
        /// as `entries` (checked when decoding). With the receiver's RTT to the sender it
        /// bounds the receiver's RTT to each entry from below (triangle inequality), so
        /// only entries that may be nearer than a slot's occupant are probed.
        rtt_us: Vec<u32>,
    },
    /// A node that finished joining tells a routing-table member the RTT it measured to it,
    /// so the member can consider it for its own table (proximity neighbour selection).
    Announce {
        /// Round-trip time the sender measured to the receiver, in microseconds.
        rtt_us: u32,
    },
    /// The sender leaves the ring gracefully.
    Leave {
        /// The sender's leaf set, to help the receiver repair its own.
        leaf_set: Vec<NodeHandle<A>>,
    },
    /// Asks a leaf-set member to probe `target` on the sender's behalf: the sender's own
    /// probe of `target` went unanswered (SWIM's indirect probe). Lost packets on one path
    /// then do not make a live member look dead.
    IndirectProbe {
        /// The node the sender suspects.
        target: NodeHandle<A>,
        /// Echoed in the reply.
        nonce: u64,
    },
    /// Answer to an [`Body::IndirectProbe`], sent only when `target` answered the probe.
    IndirectProbeReply {
        /// The node that answered.
        target: NodeId,
        /// The request's nonce.
        nonce: u64,
    },
    /// A join's root asks a leaf-set member to pass its [`Body::JoinReply`] on to `joiner`:
    /// the joiner asked again, so the root's direct answer may not reach it (a broken path
    /// between the two). The member sends `JoinReply { leaf_set, rows }` to the joiner.
    JoinReplyRelay {
        /// The joining node.
        joiner: NodeHandle<A>,
        /// The root's leaf set, the root itself included.
        leaf_set: Vec<NodeHandle<A>>,
        /// The routing-table candidates gathered along the join route.
        rows: Vec<NodeHandle<A>>,
    },
    /// A routed message for `target`, a leaf-set member of the sender that the sender's
    /// own probes do not reach but the receiver's did: the receiver forwards it to
    /// `target` (one hop of the route, acknowledged like a [`Body::Route`]).
    RelayedRoute {
        /// The node the sender chose as next hop.
        target: NodeHandle<A>,
        /// The message.
        route: Box<RouteMsg<A>>,
    },
}

impl<A> Body<A> {
    /// The routed message this carries, if any (a [`Body::Route`] or a
    /// [`Body::RelayedRoute`]).
    pub fn route(&self) -> Option<&RouteMsg<A>> {
        match self {
            Body::Route(m) | Body::RelayedRoute { route: m, .. } => Some(m),
            _ => None,
        }
    }
}

impl<A> Body<A> {
    /// The wire type byte of this message.
    pub fn kind(&self) -> MessageKind {
        match self {
            Body::Route(_) => MessageKind::Route,
            Body::RouteAck { .. } => MessageKind::RouteAck,
            Body::Direct { .. } => MessageKind::Direct,
            Body::JoinReply { .. } => MessageKind::JoinReply,
            Body::Probe { .. } => MessageKind::Probe,
            Body::ProbeReply { .. } => MessageKind::ProbeReply,
            Body::LeafSetUpdate { .. } => MessageKind::LeafSetUpdate,
            Body::RowRequest { .. } => MessageKind::RowRequest,
            Body::RowReply { .. } => MessageKind::RowReply,
            Body::Announce { .. } => MessageKind::Announce,
            Body::Leave { .. } => MessageKind::Leave,
            Body::IndirectProbe { .. } => MessageKind::IndirectProbe,
            Body::IndirectProbeReply { .. } => MessageKind::IndirectProbeReply,
            Body::JoinReplyRelay { .. } => MessageKind::JoinReplyRelay,
            Body::RelayedRoute { .. } => MessageKind::RelayedRoute,
        }
    }
}

/// The wire type of a message; also indexes per-type counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum MessageKind {
    Route = 1,
    RouteAck = 2,
    Direct = 3,
    JoinReply = 4,
    Probe = 5,
    ProbeReply = 6,
    LeafSetUpdate = 7,
    RowRequest = 8,
    RowReply = 9,
    Announce = 10,
    Leave = 11,
    IndirectProbe = 12,
    IndirectProbeReply = 13,
    JoinReplyRelay = 14,
    RelayedRoute = 15,
}

impl MessageKind {
    /// Every kind, in wire order.
    pub const ALL: [MessageKind; 15] = [
        MessageKind::Route,
        MessageKind::RouteAck,
        MessageKind::Direct,
        MessageKind::JoinReply,
        MessageKind::Probe,
        MessageKind::ProbeReply,
        MessageKind::LeafSetUpdate,
        MessageKind::RowRequest,
        MessageKind::RowReply,
        MessageKind::Announce,
        MessageKind::Leave,
        MessageKind::IndirectProbe,
        MessageKind::IndirectProbeReply,
        MessageKind::JoinReplyRelay,
        MessageKind::RelayedRoute,
    ];

    /// The kind with this wire byte.
    pub fn from_u8(v: u8) -> Option<MessageKind> {
        MessageKind::ALL
            .get(usize::from(v).checked_sub(1)?)
            .copied()
    }

    /// A short lowercase name, for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Route => "route",
            MessageKind::RouteAck => "route_ack",
            MessageKind::Direct => "direct",
            MessageKind::JoinReply => "join_reply",
            MessageKind::Probe => "probe",
            MessageKind::ProbeReply => "probe_reply",
            MessageKind::LeafSetUpdate => "leaf_set_update",
            MessageKind::RowRequest => "row_request",
            MessageKind::RowReply => "row_reply",
            MessageKind::Announce => "announce",
            MessageKind::Leave => "leave",
            MessageKind::IndirectProbe => "indirect_probe",
            MessageKind::IndirectProbeReply => "indirect_probe_reply",
            MessageKind::JoinReplyRelay => "join_reply_relay",
            MessageKind::RelayedRoute => "relayed_route",
        }
    }
}

/// One hop of a routed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMsg<A> {
    /// Per-hop id the receiver acknowledges with [`Body::RouteAck`]; 0 asks for no ack.
    pub hop_id: u64,
    /// The key routed to.
    pub key: NodeId,
    /// The node that first sent the message.
    pub origin: NodeHandle<A>,
    /// The origin's request id ([`crate::RequestId`]), carried end to end.
    pub request: u64,
    /// Overlay hops taken so far.
    pub hops: u8,
    /// Record the path in `path` (for `pastry lookup` and tests).
    pub trace: bool,
    /// Ids of the nodes visited so far, origin first, when `trace` is set.
    pub path: Vec<NodeId>,
    /// What is routed.
    pub payload: RoutePayload<A>,
}

/// The contents of a routed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePayload<A> {
    /// Application data for application `app`.
    App {
        /// The application, on every node of the route.
        app: AppId,
        /// Its bytes.
        data: Bytes,
    },
    /// A join request keyed by the joiner's id; each hop adds routing-table candidates.
    Join {
        /// The joining node.
        joiner: NodeHandle<A>,
        /// Candidates gathered so far from the hops' routing tables.
        rows: Vec<NodeHandle<A>>,
    },
}
