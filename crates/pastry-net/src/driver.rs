//! The driver: one task per node that owns its [`pastry_core::Node`] and is the only place
//! that reads the clock for it.
//!
//! The task `select!`s over messages from the transport, the node's next deadline, commands
//! from the host (admin API, CLI, tests) and a one-second housekeeping tick. It takes
//! whatever else is already queued (up to a bound) before draining the node's transmits and
//! events (the pastry-core drain contract): each transmit is encoded straight into its
//! peer's pending buffer, dialing the peer first if needed, and each peer's buffer goes to
//! its writer as one batch at the end of the drain; events update the node's state, metrics
//! and waiting callers. The node's deadline is one timer, re-armed only when it changes.
//!
//! RTT: every housekeeping tick the driver feeds the QUIC connections' RTT estimates of
//! peers in the node's leaf set or routing table into [`pastry_core::Node::observe_rtt`]
//! (when the estimate moved by a quarter, else at most every [`RTT_FEED_EVERY`] while it
//! keeps changing), so the node's failure-detection timeouts are RTT-derived without probes.
//! A dead peer's estimate stops changing (no acknowledgements), so it is never fed a stale
//! sample.
//!
//! Time: the node's [`pastry_core::Instant`] is microseconds since a tokio
//! [`tokio::time::Instant`] taken when the driver starts.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use crate::past::{PAST_APP, PastApiError, PastCommand, PastPending, PutResult, ReplicaHolder};
use crate::scribe::{
    MAX_STREAMS, PublishResult, SCRIBE_APP, ScribeApiError, ScribeCommand, ScribeHost,
    StreamClient, StreamLine, StreamSink, TopicStreams, TopicView, TreeNode, check_topic_name,
    message_line, to_line,
};
use crate::status::{
    HOPS_BUCKETS, Histogram, LeafSetView, NodeMetrics, PerKind, RTT_BUCKETS, RouteReport, Status,
};
use crate::transport::{self, Batch, CLOSE_NORMAL, Counters, Inbound, SendQueue, Shared};

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
    /// A request to the node's PAST.
    Past(PastCommand),
    /// A request to the node's Scribe.
    Scribe(ScribeCommand),
}

struct Peer {
    tx: mpsc::UnboundedSender<Batch>,
    /// Frames handed to the writer and not yet written (bounded by `send_queue_frames`).
    queued: Arc<AtomicUsize>,
    /// Frames encoded during the current drain, sent as one batch at its end.
    out: Vec<u8>,
    out_frames: usize,
    conn: Option<quinn::Connection>,
    /// The peer's authenticated id, once connected.
    id: Option<NodeId>,
    last_used: TokioInstant,
    generation: u64,
    /// The RTT estimate last fed to the node and when.
    rtt_fed: Option<(Duration, TokioInstant)>,
}

impl Peer {
    fn new(generation: u64, now: TokioInstant) -> (Peer, SendQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let peer = Peer {
            tx,
            queued: queued.clone(),
            out: Vec::new(),
            out_frames: 0,
            conn: None,
            id: None,
            last_used: now,
            generation,
            rtt_fed: None,
        };
        (peer, SendQueue { rx, queued })
    }
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
    /// Peers with frames in `out`, in first-use order.
    dirty: Vec<SocketAddr>,
    tasks: JoinSet<()>,
    next_generation: u64,
    pending: HashMap<u64, RouteReply>,
    /// PAST requests awaiting their outcome, by PAST request id.
    past_pending: HashMap<u64, PastPending>,
    /// Scribe's subscription streams and API counters.
    scribe: ScribeHost,
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
/// An RTT estimate that keeps changing by less than a quarter is fed at most this often.
pub const RTT_FEED_EVERY: Duration = Duration::from_secs(5);
/// RTT estimates fed per housekeeping tick at most.
const RTT_FEED_MAX: usize = 64;
/// Inputs (inbound batches, commands) taken per drain at most.
const MAX_INPUTS_PER_DRAIN: usize = 256;

/// Named values (counters or gauges).
type Named = Vec<(&'static str, u64)>;

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
            dirty: Vec::new(),
            tasks: JoinSet::new(),
            next_generation: 0,
            pending: HashMap::new(),
            past_pending: HashMap::new(),
            scribe: ScribeHost::default(),
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
        // One timer for the node's deadline, re-armed only when the deadline changes.
        let timer = tokio::time::sleep_until(self.origin);
        tokio::pin!(timer);
        let mut armed: Option<TokioInstant> = None;
        loop {
            let deadline = self.deadline();
            if deadline != armed {
                if let Some(d) = deadline {
                    timer.as_mut().reset(d);
                }
                armed = deadline;
            }
            let flow = tokio::select! {
                Some(inbound) = self.inbound.recv() => {
                    self.on_inbound(inbound);
                    // Batch: take what is already queued before draining the node.
                    for _ in 1..MAX_INPUTS_PER_DRAIN {
                        match self.inbound.try_recv() {
                            Ok(i) => self.on_inbound(i),
                            Err(_) => break,
                        }
                    }
                    Flow::Continue
                }
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => {
                        let mut flow = self.on_command(cmd).await;
                        for _ in 1..MAX_INPUTS_PER_DRAIN {
                            if let Flow::Stop = flow {
                                break;
                            }
                            match self.commands.try_recv() {
                                Ok(cmd) => flow = self.on_command(cmd).await,
                                Err(_) => break,
                            }
                        }
                        flow
                    }
                    None => {
                        self.shutdown(false).await;
                        Flow::Stop
                    }
                },
                () = &mut timer, if armed.is_some() => {
                    armed = None;
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
            Inbound::Messages { from, msgs } => {
                let n = msgs.len();
                let now = self.now();
                for (msg, len) in msgs {
                    let k = msg.body.kind() as usize - 1;
                    self.traffic.messages_in[k] += 1;
                    self.traffic.bytes_in[k] += len as u64;
                    self.node.handle_message(now, from, msg);
                }
                self.shared.permits.add_permits(n);
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
                    p.id = crate::tls::peer_id(&conn);
                    p.conn = Some(conn);
                }
            }
            Inbound::Accepted { conn } => {
                let addr = conn.remote_address();
                // The newest connection from an address wins: the old one may lead to a
                // previous incarnation of the node (restarted at the same address).
                if let Some(old) = self.peers.remove(&addr) {
                    self.drop_pending(&old);
                }
                self.make_room();
                let generation = self.generation();
                let (mut peer, queue) = Peer::new(generation, TokioInstant::now());
                self.tasks.spawn(transport::write_connection(
                    conn.clone(),
                    queue,
                    self.shared.clone(),
                ));
                peer.id = crate::tls::peer_id(&conn);
                peer.conn = Some(conn);
                self.peers.insert(addr, peer);
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
            Command::Past(cmd) => self.on_past(cmd),
            Command::Scribe(cmd) => self.on_scribe(cmd),
        }
        Flow::Continue
    }

    /// Starts a PAST request; its outcome comes back as a [`pastry_past::PastEvent`].
    fn on_past(&mut self, cmd: PastCommand) {
        type P = pastry_past::Past<SocketAddr>;
        let busy = self.past_pending.len() >= self.net.max_pending_routes;
        let now = self.now();
        let node = &mut self.node;
        let (request, pending) = match cmd {
            PastCommand::Put { data, k, reply } => {
                if busy {
                    let _ = reply.send(Err(PastApiError::Busy));
                    return;
                }
                let size = data.len();
                let r =
                    node.with_application::<P, _>(now, PAST_APP, |p, ctx| p.insert(ctx, data, k));
                let Some(r) = r else {
                    let _ = reply.send(Err(PastApiError::Disabled));
                    return;
                };
                (r, PastPending::Put(reply, size))
            }
            PastCommand::Get { key, reply } => {
                if busy {
                    let _ = reply.send(Err(PastApiError::Busy));
                    return;
                }
                let r = node.with_application::<P, _>(now, PAST_APP, |p, ctx| p.lookup(ctx, key));
                let Some(r) = r else {
                    let _ = reply.send(Err(PastApiError::Disabled));
                    return;
                };
                (r, PastPending::Get(reply))
            }
            PastCommand::Replicas { key, max, reply } => {
                if busy {
                    let _ = reply.send(Err(PastApiError::Busy));
                    return;
                }
                let r = node.with_application::<P, _>(now, PAST_APP, |p, ctx| {
                    p.lookup_handles(ctx, key, max)
                });
                let Some(r) = r else {
                    let _ = reply.send(Err(PastApiError::Disabled));
                    return;
                };
                (r, PastPending::Replicas(reply))
            }
        };
        // The outcome may already be among the node's events (a local copy, a refusal):
        // it is handled in the drain that follows, after this insertion.
        self.past_pending.insert(request, pending);
    }

    /// A PAST outcome: answers the waiting admin request.
    fn on_past_event(&mut self, value: &dyn std::any::Any) {
        use pastry_past::PastEvent;
        let Some(ev) = value.downcast_ref::<PastEvent<SocketAddr>>() else {
            return;
        };
        let Some(pending) = self.past_pending.remove(&ev.request()) else {
            return;
        };
        let unexpected = || PastApiError::Failed("unexpected answer from PAST".into());
        match (pending, ev) {
            (PastPending::Put(reply, size), PastEvent::Inserted { key, holders, .. }) => {
                let holders = holders
                    .iter()
                    .map(|h| ReplicaHolder::new(h.id, h.addr))
                    .collect();
                let _ = reply.send(Ok(PutResult {
                    key: key.to_string(),
                    size,
                    holders,
                }));
            }
            (PastPending::Put(reply, _), PastEvent::InsertFailed { reason, .. }) => {
                let _ = reply.send(Err((*reason).into()));
            }
            (PastPending::Put(reply, _), _) => {
                let _ = reply.send(Err(unexpected()));
            }
            (PastPending::Get(reply), PastEvent::Found { object, .. }) => {
                let _ = reply.send(Ok(object.content().clone()));
            }
            (PastPending::Get(reply), PastEvent::LookupFailed { reason, .. }) => {
                let _ = reply.send(Err((*reason).into()));
            }
            (PastPending::Get(reply), _) => {
                let _ = reply.send(Err(unexpected()));
            }
            (PastPending::Replicas(reply), PastEvent::Handles { handles, .. }) => {
                let list = handles
                    .iter()
                    .map(|h| ReplicaHolder::new(h.id, h.addr))
                    .collect();
                let _ = reply.send(Ok(list));
            }
            (PastPending::Replicas(reply), PastEvent::LookupFailed { reason, .. }) => {
                let _ = reply.send(Err((*reason).into()));
            }
            (PastPending::Replicas(reply), _) => {
                let _ = reply.send(Err(unexpected()));
            }
        }
    }

    /// Handles a request to Scribe: publish, open or close a subscription stream, topics.
    fn on_scribe(&mut self, cmd: ScribeCommand) {
        match cmd {
            ScribeCommand::Publish { name, data, reply } => {
                let _ = reply.send(self.scribe_publish(name, data));
            }
            ScribeCommand::Subscribe { name, reply } => {
                let (topic, client) = match self.scribe_subscribe(name) {
                    Ok(sink) => {
                        let (topic, client) = (sink.topic, sink.client);
                        if reply.send(Ok(sink)).is_ok() {
                            return;
                        }
                        (topic, client)
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                // The requester went away before getting its stream.
                self.close_stream(topic, client);
            }
            ScribeCommand::StreamClosed { topic, client } => self.close_stream(topic, client),
            ScribeCommand::Topics(reply) => {
                let _ = reply.send(self.scribe_topics());
            }
        }
    }

    fn scribe_publish(
        &mut self,
        name: String,
        data: Bytes,
    ) -> Result<PublishResult, ScribeApiError> {
        type S = pastry_scribe::Scribe<SocketAddr>;
        let topic = check_topic_name(&name)?;
        let size = data.len();
        let now = self.now();
        let id = self
            .node
            .with_application::<S, _>(now, SCRIBE_APP, |s, ctx| s.publish(ctx, topic, data))
            .ok_or(ScribeApiError::Disabled)??;
        self.scribe.publishes += 1;
        Ok(PublishResult {
            topic: name,
            topic_id: topic.to_string(),
            id,
            publisher: self.node.id().to_string(),
            size,
        })
    }

    /// Subscribes the node to the topic if no stream does yet, and opens a stream for it.
    fn scribe_subscribe(&mut self, name: String) -> Result<StreamSink, ScribeApiError> {
        type S = pastry_scribe::Scribe<SocketAddr>;
        let topic = check_topic_name(&name)?;
        if self.scribe.stream_count() >= MAX_STREAMS {
            return Err(ScribeApiError::TooManyStreams);
        }
        let now = self.now();
        let already = self.scribe.streams.contains_key(&topic);
        if !already {
            self.node
                .with_application::<S, _>(now, SCRIBE_APP, |s, ctx| s.subscribe(ctx, topic))
                .ok_or(ScribeApiError::Disabled)??;
            self.scribe.streams.insert(
                topic,
                TopicStreams {
                    name,
                    clients: Vec::new(),
                },
            );
        }
        self.scribe.next_client += 1;
        let id = self.scribe.next_client;
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let mut client = StreamClient {
            id,
            tx,
            queued: queued.clone(),
            dropped: 0,
        };
        if already {
            // Attached before this client came: tell it now (a first subscription's
            // attachment arrives as Scribe's event).
            let info = self
                .node
                .with_application::<S, _>(now, SCRIBE_APP, |s, _| s.topic_info(topic))
                .flatten();
            if let Some(i) = info
                && (i.is_root || i.parent.is_some())
            {
                let parent = i.parent.map(|p| p.id.to_string());
                client.offer(to_line(&StreamLine::Attached { parent }), false);
            }
        }
        if let Some(t) = self.scribe.streams.get_mut(&topic) {
            t.clients.push(client);
        }
        Ok(StreamSink {
            topic,
            client: id,
            rx,
            queued,
        })
    }

    /// Forgets a stream; the last stream of a topic gone, the node unsubscribes.
    fn close_stream(&mut self, topic: pastry_scribe::TopicId, client: u64) {
        type S = pastry_scribe::Scribe<SocketAddr>;
        let Some(t) = self.scribe.streams.get_mut(&topic) else {
            return;
        };
        t.clients.retain(|c| c.id != client);
        if t.clients.is_empty() {
            self.scribe.streams.remove(&topic);
            let now = self.now();
            self.node
                .with_application::<S, _>(now, SCRIBE_APP, |s, ctx| s.unsubscribe(ctx, topic));
            debug!(%topic, "last stream closed: unsubscribed");
        }
    }

    /// Closes streams whose reader went away without telling (housekeeping).
    fn sweep_streams(&mut self) {
        let closed: Vec<(pastry_scribe::TopicId, u64)> = self
            .scribe
            .streams
            .iter()
            .flat_map(|(t, s)| {
                s.clients
                    .iter()
                    .filter(|c| c.tx.is_closed())
                    .map(move |c| (*t, c.id))
            })
            .collect();
        for (topic, client) in closed {
            self.close_stream(topic, client);
        }
    }

    /// Every topic the node keeps state for.
    fn scribe_topics(&mut self) -> Result<Vec<TopicView>, ScribeApiError> {
        type S = pastry_scribe::Scribe<SocketAddr>;
        let now = self.now();
        let infos = self
            .node
            .with_application::<S, _>(now, SCRIBE_APP, |s, _| {
                s.topics()
                    .filter_map(|t| s.topic_info(t))
                    .collect::<Vec<_>>()
            })
            .ok_or(ScribeApiError::Disabled)?;
        Ok(infos
            .into_iter()
            .map(|i| {
                let streams = self.scribe.streams.get(&i.topic);
                TopicView {
                    topic_id: i.topic.to_string(),
                    name: streams.map(|s| s.name.clone()),
                    subscribed: i.subscribed,
                    root: i.is_root,
                    parent: i.parent.map(|p| TreeNode {
                        id: p.id.to_string(),
                        addr: p.addr.to_string(),
                    }),
                    children: i.children.len(),
                    child_ids: i.children.iter().map(|c| c.id.to_string()).collect(),
                    path: i.path.iter().map(|p| p.to_string()).collect(),
                    subscribing: i.subscribing,
                    last_seq: i.last_seq,
                    delivered: i.delivered,
                    streams: streams.map_or(0, |s| s.clients.len()),
                }
            })
            .collect())
    }

    /// What Scribe reports: deliveries and tree changes go to the topic's streams.
    fn on_scribe_event(&mut self, value: &dyn std::any::Any) {
        use pastry_scribe::ScribeEvent;
        let Some(ev) = value.downcast_ref::<ScribeEvent<SocketAddr>>() else {
            return;
        };
        let (topic, line) = match ev {
            ScribeEvent::Delivered {
                topic,
                seq,
                publisher,
                id,
                payload,
                ..
            } => {
                let Some(t) = self.scribe.streams.get_mut(topic) else {
                    return;
                };
                let base = message_line(*seq, *publisher, *id, payload, 0);
                let (mut sent, mut dropped) = (0, 0);
                for c in &mut t.clients {
                    if c.tx.is_closed() {
                        continue;
                    }
                    let line = if c.dropped > 0 {
                        message_line(*seq, *publisher, *id, payload, c.dropped)
                    } else {
                        base.clone()
                    };
                    if c.offer(line, true) {
                        sent += 1;
                    } else {
                        dropped += 1;
                    }
                }
                self.scribe.lines_sent += sent;
                self.scribe.lines_dropped += dropped;
                return;
            }
            ScribeEvent::Subscribed { topic, parent } => {
                let parent = parent.map(|p| p.id.to_string());
                (topic, StreamLine::Attached { parent })
            }
            ScribeEvent::ParentLost { topic, parent } => {
                debug!(%topic, parent = %parent.id, "scribe parent lost");
                let parent = parent.id.to_string();
                (topic, StreamLine::ParentLost { parent })
            }
            ScribeEvent::PublishFailed { topic, id } => {
                debug!(%topic, id, "scribe publish never acknowledged by the root");
                self.scribe.publishes_failed += 1;
                return;
            }
            ScribeEvent::SubscribeFailed { .. } => {
                self.scribe.subscribe_failures += 1;
                return;
            }
            _ => return,
        };
        let Some(t) = self.scribe.streams.get_mut(topic) else {
            return;
        };
        let line = to_line(&line);
        let (mut sent, mut dropped) = (0, 0);
        for c in &mut t.clients {
            if c.tx.is_closed() {
                continue;
            }
            if c.offer(line.clone(), false) {
                sent += 1;
            } else {
                dropped += 1;
            }
        }
        self.scribe.lines_sent += sent;
        self.scribe.lines_dropped += dropped;
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
            if let Some(p) = self.peers.remove(&lru) {
                self.drop_pending(&p);
                if let Some(conn) = p.conn {
                    debug!(addr = %lru, "closing least recently used connection");
                    conn.close(CLOSE_NORMAL.into(), b"evicted");
                }
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
        self.send_batches();
        let state = self.node.state();
        if *self.state.borrow() != state {
            self.state.send_replace(state);
        }
    }

    fn transmit(&mut self, t: Transmit<SocketAddr>) {
        let k = t.msg.body.kind() as usize - 1;
        if let Some(len) = self.encode_for(t.to, None, |out| codec::encode(&t.msg, out)) {
            self.traffic.messages_out[k] += 1;
            self.traffic.bytes_out[k] += len as u64;
        }
    }

    /// Appends one frame for `addr`, written by `encode`, to the peer's pending batch,
    /// dialing the peer (pinned to `expected`, else to the id the node's tables hold for
    /// `addr`) when there is no live connection. Returns the frame's length, or `None`
    /// when it could not be encoded (counted).
    fn encode_for<E: std::fmt::Display>(
        &mut self,
        addr: SocketAddr,
        expected: Option<NodeId>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Option<usize> {
        let usable = self.peers.get(&addr).is_some_and(|p| !p.tx.is_closed());
        if !usable {
            self.dial(addr, expected);
        }
        let p = self.peers.get_mut(&addr)?;
        let start = p.out.len();
        if let Err(e) = encode(&mut p.out) {
            p.out.truncate(start);
            self.traffic.encode_errors += 1;
            warn!(to = %addr, "cannot encode a message: {e}");
            return None;
        }
        if p.out_frames == 0 {
            self.dirty.push(addr);
        }
        p.out_frames += 1;
        Some(p.out.len() - start)
    }

    /// Replaces the entry for `addr` with a fresh one and starts dialing it; frames still
    /// pending for the old entry move to the new one.
    fn dial(&mut self, addr: SocketAddr, expected: Option<NodeId>) {
        let old = self.peers.remove(&addr);
        self.make_room();
        let generation = self.generation();
        let (mut peer, queue) = Peer::new(generation, TokioInstant::now());
        if let Some(old) = old {
            peer.out = old.out;
            peer.out_frames = old.out_frames;
        }
        let expected = expected.or_else(|| self.known_id(addr));
        self.tasks.spawn(transport::dial(
            self.endpoint.clone(),
            addr,
            expected,
            self.net.dial_timeout,
            generation,
            queue,
            self.shared.clone(),
        ));
        self.peers.insert(addr, peer);
    }

    /// Counts the frames pending for a peer being dropped.
    fn drop_pending(&mut self, p: &Peer) {
        if p.out_frames > 0 {
            Counters::add(&self.shared.counters.frames_dropped, p.out_frames as u64);
        }
    }

    /// Hands every peer's pending frames to its writer, one batch per peer; a full queue
    /// drops the batch (counted), a closed one (the connection died) is dialed again.
    fn send_batches(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let now = TokioInstant::now();
        let dirty = std::mem::take(&mut self.dirty);
        for addr in &dirty {
            let Some(p) = self.peers.get_mut(addr) else {
                continue;
            };
            if p.out_frames == 0 {
                continue;
            }
            let frames = std::mem::take(&mut p.out_frames);
            let data = Bytes::from(std::mem::take(&mut p.out));
            p.last_used = now;
            // An empty queue takes any batch (one drain's worth), so the bound is at most
            // `send_queue_frames` plus one batch.
            let queued = p.queued.load(Ordering::Relaxed);
            if queued > 0 && queued + frames > self.net.send_queue_frames {
                self.traffic.send_queue_full += frames as u64;
                Counters::add(&self.shared.counters.frames_dropped, frames as u64);
                continue;
            }
            p.queued.fetch_add(frames, Ordering::Relaxed);
            if let Err(mpsc::error::SendError(batch)) = p.tx.send(Batch { data, frames }) {
                // The connection is gone (the writer ended): dial again.
                p.queued.fetch_sub(frames, Ordering::Relaxed);
                let expected = p.id;
                self.dial(*addr, expected);
                if let Some(p) = self.peers.get_mut(addr) {
                    p.queued.fetch_add(frames, Ordering::Relaxed);
                    let _ = p.tx.send(batch);
                }
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
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
            Event::Application { app, value } if app == PAST_APP => {
                self.on_past_event(value.as_ref());
            }
            Event::Application { app, value } if app == SCRIBE_APP => {
                self.on_scribe_event(value.as_ref());
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
            if let Some(len) = self.encode_for(addr, Some(id), |out| codec::encode(&msg, out)) {
                let k = MessageKind::Probe as usize - 1;
                self.traffic.messages_out[k] += 1;
                self.traffic.bytes_out[k] += len as u64;
                self.traffic.heal_knocks += 1;
            }
        }
    }

    fn housekeeping(&mut self) {
        self.ticks += 1;
        self.heal();
        while self.tasks.try_join_next().is_some() {}
        self.peers.retain(|_, p| !p.tx.is_closed());
        self.pending.retain(|_, r| !r.is_closed());
        self.past_pending.retain(|_, p| match p {
            PastPending::Put(r, _) => !r.is_closed(),
            PastPending::Get(r) => !r.is_closed(),
            PastPending::Replicas(r) => !r.is_closed(),
        });
        self.sweep_streams();
        self.feed_rtt();
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

    /// Feeds the QUIC RTT estimates of connected leaf-set and routing-table members into the
    /// node (see the module docs).
    fn feed_rtt(&mut self) {
        let now = TokioInstant::now();
        let mut fed = 0;
        let node_now = self.now();
        for p in self.peers.values_mut() {
            if fed >= RTT_FEED_MAX {
                break;
            }
            let (Some(conn), Some(id)) = (&p.conn, p.id) else {
                continue;
            };
            if conn.close_reason().is_some() {
                continue;
            }
            let rtt = conn.rtt();
            let due = match p.rtt_fed {
                None => true,
                Some((last, at)) => {
                    let moved = rtt.abs_diff(last);
                    rtt != last && (moved * 4 > last || now.duration_since(at) >= RTT_FEED_EVERY)
                }
            };
            if !due {
                continue;
            }
            // Only members of the node's tables, under the address the node holds for them.
            let n = &self.node;
            let Some(handle) = n
                .leaf_set()
                .get(id)
                .map(|l| l.handle)
                .or_else(|| n.routing_table().find(id).map(|e| e.handle))
            else {
                continue;
            };
            self.node.observe_rtt(node_now, handle, rtt);
            p.rtt_fed = Some((rtt, now));
            fed += 1;
        }
    }

    fn connections(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.conn.as_ref().is_some_and(|c| c.close_reason().is_none()))
            .count()
    }

    /// Scribe's counters and gauges (topics, children, streams), when the node runs it.
    fn scribe_counters(&mut self) -> (Named, Named) {
        type S = pastry_scribe::Scribe<SocketAddr>;
        let now = self.now();
        let Some((st, topics, children, pending)) =
            self.node.with_application::<S, _>(now, SCRIBE_APP, |s, _| {
                (
                    s.stats().clone(),
                    s.topics().count(),
                    s.total_children(),
                    s.pending_publishes(),
                )
            })
        else {
            return (Vec::new(), Vec::new());
        };
        let h = &self.scribe;
        let counters = vec![
            ("scribe_delivered", st.delivered),
            ("scribe_duplicates", st.duplicates),
            ("scribe_control_messages_sent", st.control_messages_sent()),
            ("scribe_control_bytes_sent", st.control_bytes_sent()),
            ("scribe_data_messages_sent", st.data_messages_sent()),
            ("scribe_data_bytes_sent", st.data_bytes_sent()),
            ("scribe_messages_received", st.received.iter().sum()),
            ("scribe_bad_messages", st.bad_messages),
            ("scribe_encode_failures", st.encode_failures),
            (
                "scribe_publishes_without_members",
                st.publishes_without_members,
            ),
            ("scribe_parent_losses", st.parent_losses),
            ("scribe_children_timed_out", st.children_timed_out),
            ("scribe_loops_broken", st.loops_broken),
            ("scribe_publishes", h.publishes),
            ("scribe_publishes_failed", h.publishes_failed),
            ("scribe_subscribe_failures", h.subscribe_failures),
            ("scribe_stream_lines_sent", h.lines_sent),
            ("scribe_stream_lines_dropped", h.lines_dropped),
        ];
        let gauges = vec![
            ("scribe_topics", topics as u64),
            ("scribe_topics_subscribed", self.scribe.streams.len() as u64),
            ("scribe_children", children as u64),
            ("scribe_streams", self.scribe.stream_count() as u64),
            ("scribe_pending_publishes", pending as u64),
        ];
        (counters, gauges)
    }

    fn counters(&mut self) -> BTreeMap<String, u64> {
        let (scribe, _) = self.scribe_counters();
        let past = self.past_stats();
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
            ("probes_inconclusive", s.probes_inconclusive),
            ("probes_rescued", s.probes_rescued),
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
        .chain(
            past.map(|p| {
                [
                    ("past_replicas_held", p.replicas_held),
                    ("past_diverted_held", p.diverted_held),
                    ("past_bytes_stored", p.bytes_stored),
                    ("past_cache_entries", p.cache_entries),
                    ("past_inserts_succeeded", p.inserts_succeeded),
                    ("past_inserts_failed", p.inserts_failed),
                    ("past_insert_retries", p.insert_retries),
                    ("past_lookups_succeeded", p.lookups_succeeded),
                    ("past_lookups_failed", p.lookups_failed),
                    (
                        "past_lookups_served_from_cache",
                        p.lookups_served_from_cache,
                    ),
                    (
                        "past_lookups_served_from_replica",
                        p.lookups_served_from_replica,
                    ),
                    (
                        "past_maintenance_messages_sent",
                        p.maintenance_messages_sent,
                    ),
                    ("past_maintenance_bytes_sent", p.maintenance_bytes_sent),
                    (
                        "past_maintenance_objects_received",
                        p.maintenance_objects_received,
                    ),
                    ("past_bad_messages", p.bad_messages),
                    ("past_store_errors", p.store_errors),
                ]
            })
            .into_iter()
            .flatten(),
        )
        .chain(scribe)
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// PAST's counters, when the node runs PAST.
    fn past_stats(&mut self) -> Option<pastry_past::PastStats> {
        let now = self.now();
        self.node
            .with_application::<pastry_past::Past<SocketAddr>, _>(now, PAST_APP, |p, _| p.stats())
    }

    fn status(&mut self) -> Status {
        let mut counters = self.counters();
        // `/status` has no gauges: Scribe's (topics, children, streams) go with the counters.
        let (_, gauges) = self.scribe_counters();
        counters.extend(gauges.into_iter().map(|(k, v)| (k.to_string(), v)));
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
            counters,
        }
    }

    fn metrics(&mut self) -> NodeMetrics {
        let counters = self.counters();
        let mut gauges: BTreeMap<String, u64> = self
            .scribe_counters()
            .1
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let n = &self.node;
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
            counters,
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
