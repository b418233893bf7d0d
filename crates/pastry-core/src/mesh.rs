//! `Mesh`: an in-memory network of a few hundred nodes with explicit time, for tests.
//!
//! Nodes are addressed by their index (`u32`). Each node sits at a random point of a
//! 1000 x 1000 plane; a message takes (Euclidean distance / 10 + 1) ms one way, so RTTs
//! range from 2 to about 300 ms and proximity means something. Optional random loss.
//! Every delivery is checked against the brute-force truth (the numerically closest live
//! ready node at that moment); checks of the leaf sets are available on demand. The
//! simulator (`pastry-sim`) is the scalable version of this; `Mesh` stays small and plain.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use bytes::Bytes;
use core::time::Duration;

use crate::app::Delivery;
use crate::leafset::Side;
use crate::node::{Event, Node, NodeState, RouteRequest};
use crate::rng::Rng;
use crate::{Config, Instant, Message, NodeId, RequestId};

/// A delivery seen by the mesh.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Index of the delivering node.
    pub at: u32,
    /// When.
    pub time: Instant,
    /// What.
    pub delivery: Delivery<u32>,
    /// Index of the node that should have delivered it (closest live ready node).
    pub expected: u32,
}

enum Item {
    Packet {
        to: u32,
        from: u32,
        msg: Message<u32>,
    },
    Wake(u32),
}

/// The harness.
pub struct Mesh {
    /// The shared configuration.
    pub cfg: Arc<Config>,
    /// The nodes; index = address.
    pub nodes: Vec<Node<u32>>,
    alive: Vec<bool>,
    pos: Vec<(f64, f64)>,
    now: Instant,
    queue: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    items: std::collections::HashMap<u64, Item>,
    seq: u64,
    rng: Rng,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Every delivery, in order.
    pub deliveries: Vec<Delivered>,
    /// Route failures seen: (node, key, request, reason).
    pub failures: Vec<(u32, NodeId, RequestId, crate::RouteFailure)>,
    /// Nodes that reported `JoinFailed`.
    pub join_failures: Vec<u32>,
    /// Messages carried.
    pub messages: u64,
    /// Values applications handed out with `AppContext::notify`: (node, app, value).
    pub app_events: Vec<(u32, crate::AppId, Box<dyn core::any::Any + Send>)>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("nodes", &self.nodes.len())
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// An empty mesh; `seed` decides node positions, ids (via [`Mesh::random_id`]), loss.
    pub fn new(cfg: Config, seed: u64) -> Mesh {
        cfg.validate().expect("valid config");
        Mesh {
            cfg: Arc::new(cfg),
            nodes: Vec::new(),
            alive: Vec::new(),
            pos: Vec::new(),
            now: Instant::ZERO,
            queue: BinaryHeap::new(),
            items: std::collections::HashMap::new(),
            seq: 0,
            rng: Rng::new(seed),
            loss: 0.0,
            deliveries: Vec::new(),
            failures: Vec::new(),
            join_failures: Vec::new(),
            messages: 0,
            app_events: Vec::new(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// A random id from the mesh's generator.
    pub fn random_id(&mut self) -> NodeId {
        NodeId::from_u128((u128::from(self.rng.next_u64()) << 64) | u128::from(self.rng.next_u64()))
    }

    /// Adds an idle node with a random id and position; returns its index.
    pub fn add_node(&mut self) -> u32 {
        let id = self.random_id();
        self.add_node_with_id(id)
    }

    /// Adds an idle node with the given id; returns its index.
    pub fn add_node_with_id(&mut self, id: NodeId) -> u32 {
        let i = self.nodes.len() as u32;
        let seed = self.rng.next_u64();
        self.nodes.push(Node::new(self.cfg.clone(), id, i, seed));
        self.alive.push(true);
        self.pos
            .push((self.rng.unit() * 1000.0, self.rng.unit() * 1000.0));
        i
    }

    /// One-way latency between two nodes.
    pub fn latency(&self, a: u32, b: u32) -> Duration {
        let (pa, pb) = (self.pos[a as usize], self.pos[b as usize]);
        let d = ((pa.0 - pb.0).powi(2) + (pa.1 - pb.1).powi(2)).sqrt();
        Duration::from_micros((d * 100.0) as u64 + 1000)
    }

    /// Node `i` starts a new ring.
    pub fn start_ring(&mut self, i: u32) {
        let now = self.now;
        self.nodes[i as usize].start_ring(now);
        self.flush(i);
    }

    /// Node `i` joins through node `bootstrap`.
    pub fn join(&mut self, i: u32, bootstrap: u32) {
        let now = self.now;
        self.nodes[i as usize].join(now, &[bootstrap]);
        self.flush(i);
    }

    /// Builds a ring of `n` nodes joined one at a time, each through a random earlier node,
    /// running `settle` of simulated time after each join.
    pub fn build_ring(&mut self, n: usize, settle: Duration) {
        let first = self.add_node();
        self.start_ring(first);
        for _ in 1..n {
            let i = self.add_node();
            let b = self.random_live_ready().expect("a ready node");
            self.join(i, b);
            self.run_for(settle);
        }
    }

    /// Node `i` leaves gracefully.
    pub fn leave(&mut self, i: u32) {
        let now = self.now;
        self.nodes[i as usize].leave(now);
        self.flush(i);
        self.alive[i as usize] = false;
    }

    /// Node `i` crashes: it stops without a word and messages to it vanish.
    pub fn crash(&mut self, i: u32) {
        self.alive[i as usize] = false;
    }

    /// True when node `i` has not crashed or left.
    pub fn is_alive(&self, i: u32) -> bool {
        self.alive[i as usize]
    }

    /// Indices of live nodes: neither crashed, nor left, nor given up joining.
    pub fn live(&self) -> Vec<u32> {
        (0..self.nodes.len() as u32)
            .filter(|&i| {
                self.alive[i as usize] && self.nodes[i as usize].state() != NodeState::Left
            })
            .collect()
    }

    /// Indices of live ready nodes.
    pub fn live_ready(&self) -> Vec<u32> {
        self.live()
            .into_iter()
            .filter(|&i| self.nodes[i as usize].state() == NodeState::Ready)
            .collect()
    }

    /// A random live ready node.
    pub fn random_live_ready(&mut self) -> Option<u32> {
        let r = self.live_ready();
        (!r.is_empty()).then(|| r[self.rng.below(r.len() as u64) as usize])
    }

    /// Routes `data` from node `from` to `key` (application 0, traced).
    pub fn route(&mut self, from: u32, key: NodeId, data: &'static [u8]) -> RequestId {
        let now = self.now;
        let req = RouteRequest {
            key,
            app: 0,
            data: Bytes::from_static(data),
            hint: None,
            trace: true,
        };
        let r = self.nodes[from as usize]
            .route_with(now, req)
            .expect("route accepted");
        self.flush(from);
        r
    }

    /// Calls [`Node::with_application`] on node `i` at the current time and carries what
    /// the application sent.
    pub fn with_application<T: crate::Application<u32>, R>(
        &mut self,
        i: u32,
        app: crate::AppId,
        f: impl FnOnce(&mut T, &mut crate::AppContext<'_, u32>) -> R,
    ) -> Option<R> {
        let now = self.now;
        let r = self.nodes[i as usize].with_application(now, app, f);
        self.flush(i);
        r
    }

    /// The live ready node numerically closest to `key` (the truth the checks use).
    pub fn closest_live(&self, key: NodeId) -> Option<u32> {
        self.live_ready()
            .into_iter()
            .min_by(|&a, &b| key.cmp_closeness(self.id(a), self.id(b)))
    }

    /// The id of node `i`.
    pub fn id(&self, i: u32) -> NodeId {
        self.nodes[i as usize].id()
    }

    /// Deliveries at a node other than the expected one.
    pub fn violations(&self) -> Vec<&Delivered> {
        self.deliveries
            .iter()
            .filter(|d| d.at != d.expected)
            .collect()
    }

    /// Compares every live ready node's leaf set with its true neighbours among the live
    /// nodes; returns a description of the first few mismatches.
    pub fn check_leaf_sets(&self) -> Result<(), String> {
        let live = self.live();
        let mut ids: Vec<NodeId> = live.iter().map(|&i| self.id(i)).collect();
        ids.sort();
        let half = self.cfg.leaf_set_size / 2;
        let mut errors = Vec::new();
        for &i in &live {
            let node = &self.nodes[i as usize];
            if node.state() != NodeState::Ready {
                errors.push(format!("node {i} not ready"));
                continue;
            }
            let me = node.id();
            let pos = ids.binary_search(&me).expect("live id present");
            let n = ids.len();
            let others = (n - 1).min(half);
            let want_right: Vec<NodeId> = (1..=others).map(|k| ids[(pos + k) % n]).collect();
            let want_left: Vec<NodeId> = (1..=others).map(|k| ids[(pos + n - k) % n]).collect();
            let got_right: Vec<NodeId> = node
                .leaf_set()
                .side(Side::Right)
                .iter()
                .map(|l| l.handle.id)
                .collect();
            let got_left: Vec<NodeId> = node
                .leaf_set()
                .side(Side::Left)
                .iter()
                .map(|l| l.handle.id)
                .collect();
            if got_right != want_right || got_left != want_left {
                errors.push(format!(
                    "node {i} {me:?}: left {got_left:?} want {want_left:?}; right {got_right:?} want {want_right:?}"
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            let n = errors.len();
            errors.truncate(3);
            Err(format!(
                "{n} nodes with wrong leaf sets, e.g.\n{}",
                errors.join("\n")
            ))
        }
    }

    /// Runs until no message is in flight and no timer is due before `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(Reverse((at, _, _))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Processes the next queued item; false when the queue is empty.
    pub fn step(&mut self) -> bool {
        let Some(Reverse((at, seq, _))) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        let now = self.now;
        match self.items.remove(&seq) {
            Some(Item::Packet { to, from, msg }) if self.alive[to as usize] => {
                self.nodes[to as usize].handle_message(now, from, msg);
                self.flush(to);
            }
            Some(Item::Wake(i)) => {
                let n = &mut self.nodes[i as usize];
                if self.alive[i as usize] && n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                    self.flush(i);
                }
            }
            _ => {}
        }
        true
    }

    fn push(&mut self, at: Instant, item: Item) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, 0)));
        self.items.insert(self.seq, item);
    }

    /// Drains node `i`'s outputs into the network and the logs, and schedules its wake-up.
    fn flush(&mut self, i: u32) {
        while let Some(t) = self.nodes[i as usize].poll_transmit() {
            self.messages += 1;
            if self.loss > 0.0 && self.rng.unit() < self.loss {
                continue;
            }
            let at = self.now + self.latency(i, t.to);
            self.push(
                at,
                Item::Packet {
                    to: t.to,
                    from: i,
                    msg: t.msg,
                },
            );
        }
        while let Some(ev) = self.nodes[i as usize].poll_event() {
            match ev {
                Event::Delivered(d) => {
                    let expected = self.closest_live(d.key).unwrap_or(u32::MAX);
                    self.deliveries.push(Delivered {
                        at: i,
                        time: self.now,
                        delivery: d,
                        expected,
                    });
                }
                Event::RouteFailed {
                    key,
                    request,
                    reason,
                    ..
                } => self.failures.push((i, key, request, reason)),
                Event::JoinFailed => self.join_failures.push(i),
                Event::Application { app, value } => self.app_events.push((i, app, value)),
                _ => {}
            }
        }
        if let Some(t) = self.nodes[i as usize].poll_timeout() {
            // One wake-up per distinct deadline is enough; stale ones are filtered in `step`.
            self.push(t.max(self.now), Item::Wake(i));
        }
    }
}
