//! The driver: one task per node that owns its [`pastry_core::Node`] and is the only place
//! that reads the clock for it.
//!
//! The task `select!`s over messages from the transport, the node's next deadline, commands
//! from the host (admin API, CLI, tests) and a one-second housekeeping tick. After every
//! input it drains the node's transmits and events (the pastry-core drain contract): each
//! transmit is encoded and queued on the peer's connection, dialing it first if needed;
//! events update the node's state, metrics and waiting callers.
//!
//! Time: the node's [`pastry_core::Instant`] is microseconds since a tokio
//! [`tokio::time::Instant`] taken when the driver starts.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use pastry_core::{
    AppId, Event, MessageKind, Node, NodeId, NodeState, RouteRequest, Transmit, codec,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant as TokioInstant;
use tracing::{debug, info, warn};

use crate::config::NetConfig;
use crate::status::{
    HOPS_BUCKETS, Histogram, LeafSetView, NodeMetrics, PerKind, RTT_BUCKETS, RouteReport, Status,
};
use crate::transport::{self, CLOSE_NORMAL, Counters, Inbound, Shared};

/// Application id of messages routed through the admin API (`POST /route`, `pastry lookup`,
/// `pastry hello`): their root reports back to the origin.
pub const ROUTE_APP: AppId = 0xff00;
/// Application id of the reports a root sends back for [`ROUTE_APP`] messages.
pub const REPORT_APP: AppId = 0xff01;

/// A message delivered at a node, as handed to a delivery sink.
#[derive(Debug, Clone)]
pub struct DeliveredEvent {
    /// The delivering node (the key's root).
    pub node: NodeId,
    /// The delivery.
    pub delivery: pastry_core::Delivery<SocketAddr>,
}

pub(crate) type RouteReply = oneshot::Sender<Result<RouteReport, String>>;

/// What the host asks of a driver.
#[derive(Debug)]
pub(crate) enum Command {
    Route {
        key: NodeId,
        app: AppId,
        data: Bytes,
        trace: bool,
        reply: Option<RouteReply>,
    },
    Status(oneshot::Sender<Status>),
    Metrics(oneshot::Sender<NodeMetrics>),
    /// Leave gracefully, then stop.
    Leave(oneshot::Sender<()>),
    /// Stop at once, telling no one (a crash, for tests).
    Crash(oneshot::Sender<()>),
}

struct Peer {
    tx: mpsc::Sender<Bytes>,
    conn: Option<quinn::Connection>,
    last_used: TokioInstant,
    generation: u64,
}

#[derive(Default)]
struct Traffic {
    messages_in: PerKind,
    bytes_in: PerKind,
    messages_out: PerKind,
    bytes_out: PerKind,
    encode_errors: u64,
    send_queue_full: u64,
    sink_full: u64,
    reports_bad: u64,
    heal_knocks: u64,
}

pub(crate) struct Driver {
    pub node: Node<SocketAddr>,
    pub origin: TokioInstant,
    pub endpoint: quinn::Endpoint,
    pub net: NetConfig,
    pub shared: Shared,
    pub inbound: mpsc::Receiver<Inbound>,
    pub commands: mpsc::Receiver<Command>,
    pub state: watch::Sender<NodeState>,
    pub sink: Option<mpsc::Sender<DeliveredEvent>>,
    peers: HashMap<SocketAddr, Peer>,
    tasks: JoinSet<()>,
    next_generation: u64,
    pending: HashMap<u64, RouteReply>,
    traffic: Traffic,
    hops: Histogram,
    rtt: Histogram,
    ticks: u64,
    /// Former leaf-set members that vanished while the leaf set still had room for them
    /// (dead, or cut off by a partition), with the next time to try them and the backoff.
    lost: BTreeMap<NodeId, Lost>,
}

/// A former leaf-set member the driver keeps knocking on, to heal partitions.
#[derive(Debug, Clone, Copy)]
struct Lost {
    addr: SocketAddr,
    next_try: TokioInstant,
    backoff: Duration,
    since: TokioInstant,
}

/// First retry of a lost leaf-set member; doubles up to [`HEAL_BACKOFF_MAX`].
const HEAL_BACKOFF_MIN: Duration = Duration::from_secs(2);
/// Longest wait between two knocks on a lost member.
const HEAL_BACKOFF_MAX: Duration = Duration::from_secs(120);
/// A lost member is forgotten after this long.
const HEAL_WINDOW: Duration = Duration::from_secs(1800);
/// Lost members remembered at most.
const HEAL_MAX_LOST: usize = 64;

enum Flow {
    Continue,
    Stop,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        node: Node<SocketAddr>,
        endpoint: quinn::Endpoint,
        net: NetConfig,
        shared: Shared,
        inbound: mpsc::Receiver<Inbound>,
        commands: mpsc::Receiver<Command>,
        state: watch::Sender<NodeState>,
        sink: Option<mpsc::Sender<DeliveredEvent>>,
    ) -> Driver {
        Driver {
            node,
            origin: TokioInstant::now(),
            endpoint,
            net,
            shared,
            inbound,
            commands,
            state,
            sink,
            peers: HashMap::new(),
            tasks: JoinSet::new(),
            next_generation: 0,
            pending: HashMap::new(),
            traffic: Traffic::default(),
            hops: Histogram::new(HOPS_BUCKETS),
            rtt: Histogram::new(RTT_BUCKETS),
            ticks: 0,
            lost: BTreeMap::new(),
        }
    }

    fn now(&self) -> pastry_core::Instant {
        let us = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        pastry_core::Instant::from_micros(us)
    }

    fn deadline(&self) -> Option<TokioInstant> {
        let at = self.node.poll_timeout()?;
        self.origin
            .checked_add(Duration::from_micros(at.as_micros()))
    }

    /// Runs the node: joins through `bootstrap` (or starts a ring), then serves until told
    /// to stop.
    pub(crate) async fn run(mut self, bootstrap: Vec<SocketAddr>) {
        let now = self.now();
        if bootstrap.is_empty() {
            self.node.start_ring(now);
        } else {
            self.node.join(now, &bootstrap);
        }
        self.flush();
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.deadline();
            let flow = tokio::select! {
                Some(inbound) = self.inbound.recv() => {
                    self.on_inbound(inbound);
                    // Batch: take what is already queued before draining the node.
                    for _ in 0..255 {
                        match self.inbound.try_recv() {
                            Ok(i) => self.on_inbound(i),
                            Err(_) => break,
                        }
                    }
                    Flow::Continue
                }
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => {
                        self.shutdown(false).await;
                        Flow::Stop
                    }
                },
                () = sleep_until(deadline) => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                    Flow::Continue
                }
                _ = housekeeping.tick() => {
                    self.housekeeping();
                    Flow::Continue
                }
            };
            if let Flow::Stop = flow {
                return;
            }
            self.flush();
        }
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Message { from, msg, len } => {
                let k = msg.body.kind() as usize - 1;
                self.traffic.messages_in[k] += 1;
                self.traffic.bytes_in[k] += len as u64;
                let now = self.now();
                self.node.handle_message(now, from, msg);
            }
            Inbound::Dialed {
                addr,
                conn,
                generation,
            } => {
                if let Some(p) = self.peers.get_mut(&addr)
                    && p.generation == generation
                {
                    self.rtt.observe(conn.rtt().as_secs_f64());
                    p.conn = Some(conn);
                }
            }
            Inbound::Accepted { conn } => {
                let addr = conn.remote_address();
                // The newest connection from an address wins: the old one may lead to a
                // previous incarnation of the node (restarted at the same address).
                self.peers.remove(&addr);
                self.make_room();
                let (tx, rx) = mpsc::channel(self.net.send_queue_frames);
                let generation = self.generation();
                self.tasks.spawn(transport::write_connection(
                    conn.clone(),
                    rx,
                    self.shared.clone(),
                ));
                self.peers.insert(
                    addr,
                    Peer {
                        tx,
                        conn: Some(conn),
                        last_used: TokioInstant::now(),
                        generation,
                    },
                );
            }
        }
    }

    async fn on_command(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Route {
                key,
                app,
                data,
                trace,
                reply,
            } => {
                let app = if reply.is_some() { ROUTE_APP } else { app };
                if reply.is_some() && self.pending.len() >= self.net.max_pending_routes {
                    if let Some(r) = reply {
                        let _ = r.send(Err("too many routes awaiting a report".into()));
                    }
                    return Flow::Continue;
                }
                let now = self.now();
                let req = RouteRequest {
                    key,
                    app,
                    data,
                    hint: None,
                    trace,
                };
                match self.node.route_with(now, req) {
                    Ok(request) => {
                        if let Some(r) = reply {
                            self.pending.insert(request, r);
                        }
                    }
                    Err(e) => {
                        if let Some(r) = reply {
                            let _ = r.send(Err(e.to_string()));
                        }
                    }
                }
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Metrics(reply) => {
                let _ = reply.send(self.metrics());
            }
            Command::Leave(reply) => {
                let now = self.now();
                self.node.leave(now);
                self.flush();
                self.shutdown(true).await;
                let _ = reply.send(());
                return Flow::Stop;
            }
            Command::Crash(reply) => {
                self.endpoint.close(CLOSE_NORMAL.into(), b"");
                self.state.send_replace(NodeState::Left);
                let _ = reply.send(());
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Stops: lets the writers send what is queued (`graceful`), then closes the endpoint.
    async fn shutdown(&mut self, graceful: bool) {
        self.peers.clear(); // closes every send queue: writers finish their streams
        if graceful {
            let tasks = &mut self.tasks;
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
        }
        self.tasks.abort_all();
        self.endpoint.close(CLOSE_NORMAL.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_millis(500), self.endpoint.wait_idle()).await;
        self.state.send_replace(NodeState::Left);
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Closes least recently used connections until there is room for one more.
    fn make_room(&mut self) {
        while self.peers.len() >= self.net.max_connections {
            let Some(lru) = self
                .peers
                .iter()
                .min_by_key(|(_, p)| p.last_used)
                .map(|(a, _)| *a)
            else {
                return;
            };
            if let Some(p) = self.peers.remove(&lru)
                && let Some(conn) = p.conn
            {
                debug!(addr = %lru, "closing least recently used connection");
                conn.close(CLOSE_NORMAL.into(), b"evicted");
            }
        }
    }

    /// The id the node knows for `addr`, if any: dials then pin the peer's key to it.
    fn known_id(&self, addr: SocketAddr) -> Option<NodeId> {
        let n = &self.node;
        n.leaf_set()
            .members()
            .map(|l| l.handle)
            .chain(n.routing_table().entries().map(|e| e.handle))
            .chain(n.neighborhood().entries().iter().map(|e| e.handle))
            .find(|h| h.addr == addr)
            .map(|h| h.id)
    }

    fn flush(&mut self) {
        loop {
            while let Some(t) = self.node.poll_transmit() {
                self.transmit(t);
            }
            let mut any = false;
            while let Some(ev) = self.node.poll_event() {
                any = true;
                self.on_event(ev);
            }
            if !any {
                break;
            }
        }
        let state = self.node.state();
        if *self.state.borrow() != state {
            self.state.send_replace(state);
        }
    }

    fn transmit(&mut self, t: Transmit<SocketAddr>) {
        let k = t.msg.body.kind() as usize - 1;
        let mut buf = Vec::with_capacity(codec::encoded_len(&t.msg));
        if let Err(e) = codec::encode(&t.msg, &mut buf) {
            self.traffic.encode_errors += 1;
            warn!(to = %t.to, "cannot encode a {} message: {e}", t.msg.body.kind().name());
            return;
        }
        self.traffic.messages_out[k] += 1;
        self.traffic.bytes_out[k] += buf.len() as u64;
        self.send_frame(t.to, Bytes::from(buf), None);
    }

    /// Queues `frame` for `addr`, dialing it (pinned to `expected`, else to the id the
    /// node's tables hold for `addr`) when there is no live connection.
    fn send_frame(&mut self, addr: SocketAddr, mut frame: Bytes, expected: Option<NodeId>) {
        let now = TokioInstant::now();
        if let Some(p) = self.peers.get_mut(&addr) {
            p.last_used = now;
            match p.tx.try_send(frame) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.traffic.send_queue_full += 1;
                    Counters::add(&self.shared.counters.frames_dropped, 1);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(f)) => {
                    // The connection is gone: dial again.
                    frame = f;
                    self.peers.remove(&addr);
                }
            }
        }
        self.make_room();
        let (tx, rx) = mpsc::channel(self.net.send_queue_frames);
        let _ = tx.try_send(frame);
        let generation = self.generation();
        let expected = expected.or_else(|| self.known_id(addr));
        self.tasks.spawn(transport::dial(
            self.endpoint.clone(),
            addr,
            expected,
            self.net.dial_timeout,
            generation,
            rx,
            self.shared.clone(),
        ));
        self.peers.insert(
            addr,
            Peer {
                tx,
                conn: None,
                last_used: now,
                generation,
            },
        );
    }

    fn on_event(&mut self, ev: Event<SocketAddr>) {
        match ev {
            Event::Ready => info!(id = %self.node.id(), addr = %self.node.handle().addr, "ready"),
            Event::JoinFailed => {
                warn!(id = %self.node.id(), "join failed: no bootstrap node answered")
            }
            Event::Delivered(d) => {
                self.hops.observe(f64::from(d.hops));
                if d.app == ROUTE_APP {
                    self.report(&d);
                }
                if let Some(sink) = &self.sink {
                    let ev = DeliveredEvent {
                        node: self.node.id(),
                        delivery: d,
                    };
                    if sink.try_send(ev).is_err() {
                        self.traffic.sink_full += 1;
                    }
                }
            }
            Event::DirectDelivered { from, app, data } if app == REPORT_APP => {
                match serde_json::from_slice::<RouteReport>(&data) {
                    // The root's id in the report must be the authenticated sender's.
                    Ok(r) if r.root_id() == Some(from.id) => {
                        if let Some(reply) = self.pending.remove(&r.request) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    _ => self.traffic.reports_bad += 1,
                }
            }
            Event::RouteFailed {
                key,
                request,
                origin,
                reason,
            } => {
                debug!(%key, ?reason, "route failed");
                if origin.id == self.node.id()
                    && let Some(reply) = self.pending.remove(&request)
                {
                    let _ = reply.send(Err(format!("route failed: {reason:?}")));
                }
            }
            Event::LeafSetChanged { handle, joined } => {
                debug!(node = %handle.id, addr = %handle.addr, joined, "leaf set changed");
                if joined {
                    self.lost.remove(&handle.id);
                } else if self.node.leaf_set().would_accept(handle.id)
                    && self.node.state() == NodeState::Ready
                {
                    // It left a gap: dead, or behind a partition. Pushed out by nearer
                    // nodes, it would not be accepted, and is not worth knocking on.
                    let now = TokioInstant::now();
                    if self.lost.len() >= HEAL_MAX_LOST
                        && let Some(oldest) = self
                            .lost
                            .iter()
                            .min_by_key(|(_, l)| l.since)
                            .map(|(id, _)| *id)
                    {
                        self.lost.remove(&oldest);
                    }
                    self.lost.insert(
                        handle.id,
                        Lost {
                            addr: handle.addr,
                            next_try: now + HEAL_BACKOFF_MIN,
                            backoff: HEAL_BACKOFF_MIN,
                            since: now,
                        },
                    );
                }
            }
            Event::DirectDelivered { .. } | Event::Application { .. } => {}
        }
    }

    /// At the root of a [`ROUTE_APP`] message: tell the origin where it ended.
    fn report(&mut self, d: &pastry_core::Delivery<SocketAddr>) {
        let me = self.node.handle();
        let report = RouteReport {
            key: d.key.to_string(),
            root: me.id.to_string(),
            root_addr: me.addr.to_string(),
            hops: d.hops,
            path: d.path.iter().map(|id| id.to_string()).collect(),
            request: d.request,
        };
        if d.origin.id == me.id {
            if let Some(reply) = self.pending.remove(&d.request) {
                let _ = reply.send(Ok(report));
            }
            return;
        }
        let data = Bytes::from(serde_json::to_vec(&report).unwrap_or_default());
        let now = self.now();
        if let Err(e) = self.node.send_direct(now, d.origin, REPORT_APP, data) {
            debug!("cannot report a delivery: {e}");
        }
    }

    /// Partition healing (beyond the paper): knock on lost leaf-set members with a probe
    /// whose nonce (0) the node never issued. If the member is back, the QUIC handshake
    /// (pinned to its id) succeeds, it takes us into its leaf set on hearing the probe and
    /// answers; our node takes it back on hearing the answer. Leaf-set gossip merges the
    /// rest of both sides. Backoff doubles per failed knock; nothing is sent when no member
    /// was lost, so an idle healthy ring pays nothing.
    fn heal(&mut self) {
        let now = TokioInstant::now();
        let me = self.node.id();
        let ready = self.node.state() == NodeState::Ready;
        let leaf_set = self.node.leaf_set();
        self.lost.retain(|id, l| {
            ready
                && now.duration_since(l.since) < HEAL_WINDOW
                && !leaf_set.contains(*id)
                && leaf_set.would_accept(*id)
        });
        let due: Vec<(NodeId, SocketAddr)> = self
            .lost
            .iter()
            .filter(|(_, l)| l.next_try <= now)
            .map(|(id, l)| (*id, l.addr))
            .collect();
        for (id, addr) in due {
            if let Some(l) = self.lost.get_mut(&id) {
                l.next_try = now + l.backoff;
                l.backoff = (l.backoff * 2).min(HEAL_BACKOFF_MAX);
            }
            let msg = pastry_core::Message::<SocketAddr> {
                sender: me,
                body: pastry_core::message::Body::Probe {
                    nonce: 0,
                    joining: false,
                    want_leaf_set: true,
                },
            };
            let mut buf = Vec::new();
            if codec::encode(&msg, &mut buf).is_ok() {
                let k = MessageKind::Probe as usize - 1;
                self.traffic.messages_out[k] += 1;
                self.traffic.bytes_out[k] += buf.len() as u64;
                self.traffic.heal_knocks += 1;
                self.send_frame(addr, Bytes::from(buf), Some(id));
            }
        }
    }

    fn housekeeping(&mut self) {
        self.ticks += 1;
        self.heal();
        while self.tasks.try_join_next().is_some() {}
        self.peers.retain(|_, p| !p.tx.is_closed());
        self.pending.retain(|_, r| !r.is_closed());
        if self.ticks.is_multiple_of(5) {
            for p in self.peers.values() {
                if let Some(c) = &p.conn
                    && c.close_reason().is_none()
                {
                    self.rtt.observe(c.rtt().as_secs_f64());
                }
            }
        }
    }

    fn connections(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.conn.as_ref().is_some_and(|c| c.close_reason().is_none()))
            .count()
    }

    fn counters(&self) -> BTreeMap<String, u64> {
        let s = self.node.stats();
        let c = &self.shared.counters;
        let t = &self.traffic;
        let sum = |a: &PerKind| a.iter().sum::<u64>();
        [
            ("routes_originated", s.routes_originated),
            ("delivered", s.delivered),
            ("forwarded", s.forwarded),
            ("rare_cases", s.rare_cases),
            ("reroutes", s.reroutes),
            ("route_failures", s.route_failures),
            ("held", s.held),
            ("acks_untracked", s.acks_untracked),
            ("probes_sent", s.probes_sent),
            ("nodes_declared_dead", s.nodes_declared_dead),
            ("ignored", s.ignored),
            ("duplicates", s.duplicates),
            ("messages_in", sum(&t.messages_in)),
            ("messages_out", sum(&t.messages_out)),
            ("bytes_in", sum(&t.bytes_in)),
            ("bytes_out", sum(&t.bytes_out)),
            ("encode_errors", t.encode_errors),
            ("send_queue_full", t.send_queue_full),
            ("delivery_sink_full", t.sink_full),
            ("reports_rejected", t.reports_bad),
            ("heal_knocks", t.heal_knocks),
            ("frames_bad_header", Counters::get(&c.frames_bad_header)),
            ("frames_bad_body", Counters::get(&c.frames_bad_body)),
            ("frames_truncated", Counters::get(&c.frames_truncated)),
            ("forged_sender", Counters::get(&c.forged_sender)),
            ("dial_failures", Counters::get(&c.dial_failures)),
            ("handshake_failures", Counters::get(&c.handshake_failures)),
            ("handshakes_refused", Counters::get(&c.handshakes_refused)),
            ("frames_dropped", Counters::get(&c.frames_dropped)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn status(&self) -> Status {
        let n = &self.node;
        let side = |s| {
            n.leaf_set()
                .side(s)
                .iter()
                .map(|l| l.handle.id.to_string())
                .collect()
        };
        let rt = n.routing_table();
        Status {
            id: n.id().to_string(),
            addr: n.handle().addr.to_string(),
            state: state_name(n.state()).to_string(),
            leaf_set: LeafSetView {
                left: side(pastry_core::leafset::Side::Left),
                right: side(pastry_core::leafset::Side::Right),
            },
            routing_table: (0..rt.rows())
                .map(|r| {
                    let row = rt.row(r);
                    (0..rt.columns())
                        .map(|c| {
                            row.get(c)
                                .and_then(|e| e.as_ref())
                                .map(|e| e.handle.id.to_string())
                        })
                        .collect()
                })
                .collect(),
            neighborhood: n
                .neighborhood()
                .entries()
                .iter()
                .map(|e| e.handle.id.to_string())
                .collect(),
            connections: self.connections(),
            counters: self.counters(),
        }
    }

    fn metrics(&self) -> NodeMetrics {
        let n = &self.node;
        let mut gauges = BTreeMap::new();
        gauges.insert("leaf_set_size".to_string(), n.leaf_set().len() as u64);
        gauges.insert(
            "routing_table_size".to_string(),
            n.routing_table().len() as u64,
        );
        gauges.insert(
            "neighborhood_size".to_string(),
            n.neighborhood().len() as u64,
        );
        gauges.insert("connections".to_string(), self.connections() as u64);
        gauges.insert("held_messages".to_string(), n.held_len() as u64);
        gauges.insert(
            "ready".to_string(),
            u64::from(n.state() == NodeState::Ready),
        );
        let t = &self.traffic;
        NodeMetrics {
            id: n.id(),
            messages_in: t.messages_in,
            bytes_in: t.bytes_in,
            messages_out: t.messages_out,
            bytes_out: t.bytes_out,
            counters: self.counters(),
            gauges,
            hops: self.hops.clone(),
            rtt: self.rtt.clone(),
        }
    }
}

/// The `/status` name of a node state.
pub fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Idle => "idle",
        NodeState::Joining => "joining",
        NodeState::Ready => "ready",
        NodeState::Left => "left",
    }
}

async fn sleep_until(deadline: Option<TokioInstant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
