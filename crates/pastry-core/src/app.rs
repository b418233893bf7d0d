//! The common KBR API (Dabek et al., FreePastry's `rice.p2p.commonapi`) for applications.
//!
//! An [`Application`] is registered on a node under an [`AppId`] and called synchronously:
//! `deliver` at the key's root, `forward` at every hop before the message moves on (it may
//! change the message or drop it), `update` when the leaf set changes, `timer` for its own
//! timers, `direct` for messages sent straight to this node. Upcalls act through an
//! [`AppContext`]: they can route, send directly, set timers, notify the host, and read
//! `local_lookup`, `neighbor_set`, `replica_set` and `range`. Actions take effect when the
//! upcall returns, in the order issued.

use core::any::Any;
use core::fmt;
use core::time::Duration;

use bytes::Bytes;

use crate::message::AppId;
use crate::node::Tables;
use crate::{Address, Instant, NodeHandle, NodeId};

/// A routed message arriving at its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<A> {
    /// The key it was routed to.
    pub key: NodeId,
    /// The destination application.
    pub app: AppId,
    /// The application's bytes.
    pub data: Bytes,
    /// The node that routed it first.
    pub origin: NodeHandle<A>,
    /// The origin's request id.
    pub request: u64,
    /// Overlay hops taken.
    pub hops: u8,
    /// Ids of the nodes visited, origin first and this node last, when the route was traced.
    pub path: Vec<NodeId>,
}

/// A routed message about to leave this node, as `forward` sees it.
#[derive(Debug)]
pub struct Forward<'m, A> {
    /// The key it is routed to.
    pub key: NodeId,
    /// The node that routed it first.
    pub origin: NodeHandle<A>,
    /// Hops so far.
    pub hops: u8,
    /// The application's bytes; replace them to change the message.
    pub data: &'m mut Bytes,
    /// Where it goes next; replace it to redirect the message.
    pub next_hop: &'m mut NodeHandle<A>,
}

/// What `forward` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardAction {
    /// Send the (possibly changed) message on.
    Continue,
    /// Drop the message here: the origin hears of it as a route failure
    /// (`RouteFailure::DroppedByApplication`).
    Drop,
    /// The application took the message over here (answered a lookup from a cache, say):
    /// routing ends without a delivery and without a failure report.
    Consumed,
}

/// An application on a node: the upcalls of the common KBR API.
///
/// Applications are `Any`, so the host can reach its own concrete type again through
/// [`crate::Node::with_application`] (to start an insert or a subscription, say).
pub trait Application<A: Address>: Any + Send + 'static {
    /// A message routed to a key reached its root, this node.
    fn deliver(&mut self, ctx: &mut AppContext<'_, A>, msg: Delivery<A>);

    /// A routed message passes through this node. Default: let it go on unchanged.
    fn forward(&mut self, _ctx: &mut AppContext<'_, A>, _msg: Forward<'_, A>) -> ForwardAction {
        ForwardAction::Continue
    }

    /// `handle` joined (`joined = true`) or left this node's leaf set.
    fn update(&mut self, _ctx: &mut AppContext<'_, A>, _handle: NodeHandle<A>, _joined: bool) {}

    /// A message sent straight to this node by `from` with [`AppContext::send_direct`].
    fn direct(&mut self, _ctx: &mut AppContext<'_, A>, _from: NodeHandle<A>, _data: Bytes) {}

    /// A timer set with [`AppContext::set_timer`] expired.
    fn timer(&mut self, _ctx: &mut AppContext<'_, A>, _token: u64) {}
}

/// What an upcall asked the node to do.
#[derive(Debug)]
pub(crate) enum AppCommand<A> {
    Route {
        key: NodeId,
        data: Bytes,
        hint: Option<NodeHandle<A>>,
        request: u64,
    },
    Direct {
        to: NodeHandle<A>,
        data: Bytes,
    },
    Timer {
        at: Instant,
        token: u64,
    },
    Notify(Box<dyn Any + Send>),
}

/// The node as an application sees it during an upcall.
pub struct AppContext<'a, A> {
    pub(crate) tables: &'a Tables<A>,
    pub(crate) app: AppId,
    pub(crate) now: Instant,
    pub(crate) next_request: &'a mut u64,
    pub(crate) commands: &'a mut Vec<AppCommand<A>>,
}

impl<A> fmt::Debug for AppContext<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppContext")
            .field("app", &self.app)
            .field("now", &self.now)
            .finish()
    }
}

impl<A: Address> AppContext<'_, A> {
    /// The current time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// This node's handle.
    pub fn local_handle(&self) -> NodeHandle<A> {
        self.tables.me
    }

    /// The application being called.
    pub fn app(&self) -> AppId {
        self.app
    }

    /// Routes `data` to the root of `key`, for this application on every node. With a
    /// `hint`, the first hop is that node. Returns the request id carried in the
    /// [`Delivery`].
    pub fn route(&mut self, key: NodeId, data: Bytes, hint: Option<NodeHandle<A>>) -> u64 {
        *self.next_request += 1;
        let request = *self.next_request;
        self.commands.push(AppCommand::Route {
            key,
            data,
            hint,
            request,
        });
        request
    }

    /// Sends `data` straight to `to`'s instance of this application (its `direct` upcall).
    pub fn send_direct(&mut self, to: NodeHandle<A>, data: Bytes) {
        self.commands.push(AppCommand::Direct { to, data });
    }

    /// Calls this application's `timer(token)` after `delay`.
    pub fn set_timer(&mut self, delay: Duration, token: u64) {
        self.commands.push(AppCommand::Timer {
            at: self.now + delay,
            token,
        });
    }

    /// Hands a value to the host as [`crate::Event::Application`].
    pub fn notify(&mut self, value: Box<dyn Any + Send>) {
        self.commands.push(AppCommand::Notify(value));
    }

    /// Up to `num` nodes this node could use as next hops towards `key`, best first
    /// (common API `local_lookup`). Empty when this node is the key's root.
    pub fn local_lookup(&self, key: NodeId, num: usize) -> Vec<NodeHandle<A>> {
        self.tables.local_lookup(key, num)
    }

    /// Up to `num` leaf-set members, nearest first, alternating sides (common API
    /// `neighborSet`).
    pub fn neighbor_set(&self, num: usize) -> Vec<NodeHandle<A>> {
        self.tables.neighbor_set(num)
    }

    /// Up to `max` nodes, this one included, numerically closest to `key`, closest first:
    /// the nodes that should hold replicas of `key` (common API `replicaSet`). Only as far
    /// as the leaf set reaches, so at most |L|/2 + 1 is meaningful.
    pub fn replica_set(&self, key: NodeId, max: usize) -> Vec<NodeHandle<A>> {
        self.tables.replica_set(key, max)
    }

    /// The key range `[from, to]` (clockwise, inclusive) for which `handle` is among the
    /// `rank + 1` closest nodes, as far as this node's leaf set tells (common API `range`).
    /// `None` when `handle` is not this node or a leaf-set member, or the leaf set does not
    /// reach far enough.
    pub fn range(&self, handle: &NodeHandle<A>, rank: usize) -> Option<(NodeId, NodeId)> {
        self.tables.range(handle.id, rank)
    }

    /// True when this node is currently the root of `key` by its leaf set.
    pub fn is_root(&self, key: NodeId) -> bool {
        self.tables.leaf_set.covers(key) && self.tables.leaf_set.closest(key, |_| false).is_none()
    }
}
