//! The common KBR API (`app.rs`) with real [`Application`]s registered on `Mesh` nodes:
//! `deliver` at the root, `forward` at every hop before it (rewrite, redirect, drop),
//! `update` on leaf-set changes, `timer`, `send_direct`/`direct`, `notify`, and the read-only
//! views `replica_set`, `neighbor_set`, `local_lookup` and `range`, each checked against the
//! brute-force truth over the mesh's live ids. Ring tests run several seeds and name the
//! failing one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pastry_core::mesh::Mesh;
use pastry_core::rng::Rng;
use pastry_core::{
    AppContext, AppId, Application, Config, Decision, Delivery, Event, Forward, ForwardAction,
    Instant, Node, NodeHandle, NodeId, NodeState, RouteFailure,
};

const SEEDS: [u64; 3] = [1, 2, 3];

/// The application id `Mesh::route` sends to.
const APP: AppId = 0;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Runs `f` for every seed; a failure names its seed.
fn for_seeds(f: impl Fn(u64) -> Result<(), String>) {
    let mut failed = Vec::new();
    for seed in SEEDS {
        if let Err(e) = f(seed) {
            eprintln!("FAILED with seed {seed}: {e}");
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?} (see stderr)");
}

/// `Err(msg)` unless `cond`.
fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

/// A ring of `n` nodes joined one by one, settled, with correct leaf sets.
fn converged_ring(seed: u64, n: usize) -> Result<Mesh, String> {
    let mut m = Mesh::new(Config::default(), seed);
    m.build_ring(n, secs(1));
    m.run_for(secs(30));
    m.check_leaf_sets()?;
    Ok(m)
}

/// Mesh index of the live node with id `id`.
fn index_of(m: &Mesh, id: NodeId) -> u32 {
    m.live()
        .into_iter()
        .find(|&i| m.id(i) == id)
        .unwrap_or_else(|| panic!("no live node with id {id:?}"))
}

/// Live ready node indices sorted by id: the true ring.
fn sorted_ring(m: &Mesh) -> Vec<u32> {
    let mut v = m.live_ready();
    v.sort_by_key(|&i| m.id(i));
    v
}

/// How many live ready nodes other than `i` are strictly closer to `key` than `i`.
fn rank_of(m: &Mesh, key: NodeId, i: u32) -> usize {
    let me = m.id(i);
    m.live_ready()
        .into_iter()
        .filter(|&x| x != i && key.is_closer(m.id(x), me))
        .count()
}

/// Everything the recording application saw, shared with the test.
#[derive(Debug, Default)]
struct Log {
    /// (node, time, delivery) per `deliver` upcall.
    delivered: Vec<(u32, Instant, Delivery<u32>)>,
    forwarded: Vec<Fwd>,
    /// (node, handle, joined) per `update` upcall.
    updates: Vec<(u32, NodeHandle<u32>, bool)>,
    /// (node, token, time) per `timer` upcall.
    timers: Vec<(u32, u64, Instant)>,
    /// (node, from, data, time) per `direct` upcall.
    directs: Vec<(u32, NodeHandle<u32>, Bytes, Instant)>,
    views: Vec<View>,
}

/// One `forward` upcall.
#[derive(Debug, Clone)]
struct Fwd {
    at: u32,
    key: NodeId,
    origin: NodeHandle<u32>,
    hops: u8,
    data: Bytes,
    next: NodeHandle<u32>,
}

/// What `AppContext`'s read-only views returned during a `deliver` upcall.
#[derive(Debug, Clone)]
struct View {
    at: u32,
    key: NodeId,
    is_root: bool,
    replica: Vec<NodeHandle<u32>>,
    lookup: Vec<NodeHandle<u32>>,
    lookup_own: Vec<NodeHandle<u32>>,
    neighbors: Vec<NodeHandle<u32>>,
    range: Option<(NodeId, NodeId)>,
}

type Shared = Arc<Mutex<Log>>;

/// What the recorder does in `forward`.
#[derive(Debug, Clone, Copy, Default)]
enum OnForward {
    /// Let it go on unchanged.
    #[default]
    Pass,
    /// Append this node's address (4 bytes) to the payload.
    Stamp,
    /// Drop it at the node where `hops` has this value.
    DropAtHop(u8),
    /// Take it over (`ForwardAction::Consumed`) at the node where `hops` has this value.
    ConsumeAtHop(u8),
    /// At the origin (hops 0), send it to this node instead.
    RedirectAtOrigin(NodeHandle<u32>),
}

/// What the recorder does in `deliver`, besides recording.
#[derive(Debug, Clone, Copy, Default)]
enum OnDeliver {
    #[default]
    Record,
    /// Sets timers: (100 ms, 2), (750 ms, 1), (750 ms, 3), (0, 4).
    Timers,
    /// Sends "re:" + data straight back to the origin.
    ReplyDirect,
    /// Records the context's read-only views.
    Snapshot,
}

struct Recorder {
    log: Shared,
    on_forward: OnForward,
    on_deliver: OnDeliver,
}

impl Recorder {
    fn new(log: &Shared) -> Self {
        Recorder {
            log: log.clone(),
            on_forward: OnForward::Pass,
            on_deliver: OnDeliver::Record,
        }
    }
    fn forwarding(mut self, f: OnForward) -> Self {
        self.on_forward = f;
        self
    }
    fn delivering(mut self, d: OnDeliver) -> Self {
        self.on_deliver = d;
        self
    }
}

impl Application<u32> for Recorder {
    fn deliver(&mut self, ctx: &mut AppContext<'_, u32>, msg: Delivery<u32>) {
        let at = ctx.local_handle().addr;
        let mut log = self.log.lock().unwrap();
        match self.on_deliver {
            OnDeliver::Record => {}
            OnDeliver::Timers => {
                ctx.set_timer(ms(100), 2);
                ctx.set_timer(ms(750), 1);
                ctx.set_timer(ms(750), 3);
                ctx.set_timer(Duration::ZERO, 4);
            }
            OnDeliver::ReplyDirect => {
                let mut data = b"re:".to_vec();
                data.extend_from_slice(&msg.data);
                ctx.send_direct(msg.origin, Bytes::from(data));
            }
            OnDeliver::Snapshot => {
                let me = ctx.local_handle();
                log.views.push(View {
                    at,
                    key: msg.key,
                    is_root: ctx.is_root(msg.key),
                    replica: ctx.replica_set(msg.key, 5),
                    lookup: ctx.local_lookup(msg.key, 4),
                    lookup_own: ctx.local_lookup(me.id, 4),
                    neighbors: ctx.neighbor_set(6),
                    range: ctx.range(&me, 0),
                });
            }
        }
        log.delivered.push((at, ctx.now(), msg));
    }

    fn forward(&mut self, ctx: &mut AppContext<'_, u32>, msg: Forward<'_, u32>) -> ForwardAction {
        let at = ctx.local_handle().addr;
        let mut action = ForwardAction::Continue;
        match self.on_forward {
            OnForward::Pass => {}
            OnForward::Stamp => {
                let mut data = msg.data.to_vec();
                data.extend_from_slice(&at.to_be_bytes());
                *msg.data = Bytes::from(data);
            }
            OnForward::DropAtHop(h) => {
                if msg.hops == h {
                    action = ForwardAction::Drop;
                }
            }
            OnForward::ConsumeAtHop(h) => {
                if msg.hops == h {
                    action = ForwardAction::Consumed;
                }
            }
            OnForward::RedirectAtOrigin(to) => {
                if msg.hops == 0 {
                    *msg.next_hop = to;
                }
            }
        }
        self.log.lock().unwrap().forwarded.push(Fwd {
            at,
            key: msg.key,
            origin: msg.origin,
            hops: msg.hops,
            data: msg.data.clone(),
            next: *msg.next_hop,
        });
        action
    }

    fn update(&mut self, ctx: &mut AppContext<'_, u32>, handle: NodeHandle<u32>, joined: bool) {
        let at = ctx.local_handle().addr;
        self.log.lock().unwrap().updates.push((at, handle, joined));
    }

    fn direct(&mut self, ctx: &mut AppContext<'_, u32>, from: NodeHandle<u32>, data: Bytes) {
        let at = ctx.local_handle().addr;
        self.log
            .lock()
            .unwrap()
            .directs
            .push((at, from, data, ctx.now()));
    }

    fn timer(&mut self, ctx: &mut AppContext<'_, u32>, token: u64) {
        let at = ctx.local_handle().addr;
        self.log.lock().unwrap().timers.push((at, token, ctx.now()));
    }
}

/// Registers a recorder made by `make` under `app` on each of `nodes`.
fn register(m: &mut Mesh, nodes: &[u32], app: AppId, make: impl Fn() -> Recorder) {
    for &i in nodes {
        let ok = m.nodes[i as usize].register(app, Box::new(make())).is_ok();
        assert!(ok, "app id {app} already taken on node {i}");
    }
}

fn all_nodes(m: &Mesh) -> Vec<u32> {
    (0..m.nodes.len() as u32).collect()
}

/// Routes `n` lookups to random keys from random live ready nodes; returns
/// (origin, key, request).
fn send_lookups(m: &mut Mesh, n: usize, data: &'static [u8]) -> Vec<(u32, NodeId, u64)> {
    let mut sent = Vec::new();
    for _ in 0..n {
        let from = m.random_live_ready().expect("a ready node");
        let key = m.random_id();
        sent.push((from, key, m.route(from, key, data)));
    }
    sent
}

/// The deliveries the log holds for the lookup (origin, request).
fn delivered_for(log: &Log, m: &Mesh, from: u32, req: u64) -> Vec<(u32, Instant, Delivery<u32>)> {
    let origin = m.id(from);
    log.delivered
        .iter()
        .filter(|(_, _, d)| d.origin.id == origin && d.request == req)
        .cloned()
        .collect()
}

#[test]
fn deliver_upcall_runs_at_the_root_with_key_origin_hops_and_data() {
    for_seeds(|seed| {
        let mut m = converged_ring(seed, 40)?;
        let log = Shared::default();
        let nodes = all_nodes(&m);
        register(&mut m, &nodes, APP, || Recorder::new(&log));
        let mut sent = send_lookups(&mut m, 60, b"payload");
        // A key equal to the origin's own id is delivered locally, after no hop.
        let local = m.random_live_ready().unwrap();
        let own = m.id(local);
        sent.push((local, own, m.route(local, own, b"payload")));
        m.run_for(secs(10));
        ensure(m.deliveries.is_empty(), || {
            format!(
                "{} Event::Delivered although the app is registered everywhere",
                m.deliveries.len()
            )
        })?;
        ensure(m.failures.is_empty(), || {
            format!("failures {:?}", m.failures)
        })?;
        let log = log.lock().unwrap();
        let mut max_hops = 0;
        for &(from, key, req) in &sent {
            let ds = delivered_for(&log, &m, from, req);
            ensure(ds.len() == 1, || {
                format!("lookup of {key:?} delivered {} times", ds.len())
            })?;
            let (at, _, d) = &ds[0];
            let root = m.closest_live(key).unwrap();
            ensure(*at == root, || {
                format!("{key:?} delivered at {at}, closest live is {root}")
            })?;
            ensure(d.key == key, || format!("key {:?} != {key:?}", d.key))?;
            ensure(d.app == APP, || format!("app {}", d.app))?;
            ensure(d.origin == m.nodes[from as usize].handle(), || {
                format!("origin {:?}", d.origin)
            })?;
            ensure(d.data == Bytes::from_static(b"payload"), || {
                format!("data {:?}", d.data)
            })?;
            ensure(d.path.first() == Some(&m.id(from)), || {
                format!("path {:?} does not start at the origin", d.path)
            })?;
            ensure(d.path.last() == Some(&m.id(root)), || {
                format!("path {:?} does not end at the root", d.path)
            })?;
            ensure(usize::from(d.hops) + 1 == d.path.len(), || {
                format!("hops {} but path {:?}", d.hops, d.path)
            })?;
            max_hops = max_hops.max(d.hops);
        }
        let last = delivered_for(&log, &m, local, sent.last().unwrap().2);
        ensure(last[0].2.hops == 0 && last[0].0 == local, || {
            format!("local key: {:?}", last[0])
        })?;
        ensure(max_hops >= 2, || {
            format!("max hops {max_hops}: no multi-hop route")
        })
    });
}

#[test]
fn unregistered_app_falls_back_to_the_delivered_event() {
    for_seeds(|seed| {
        let mut m = converged_ring(seed, 40)?;
        let log = Shared::default();
        let other = Shared::default();
        let nodes = all_nodes(&m);
        let even: Vec<u32> = nodes.iter().copied().filter(|i| i % 2 == 0).collect();
        register(&mut m, &even, APP, || Recorder::new(&log));
        // Another application id everywhere: it must see none of application 0's traffic.
        register(&mut m, &nodes, 7, || Recorder::new(&other));
        // A taken id is refused.
        let dup = m.nodes[0].register(APP, Box::new(Recorder::new(&log)));
        ensure(dup.is_err(), || "duplicate app id accepted".into())?;

        let sent = send_lookups(&mut m, 80, b"x");
        m.run_for(secs(10));
        ensure(m.failures.is_empty(), || {
            format!("failures {:?}", m.failures)
        })?;
        let log = log.lock().unwrap();
        let (mut by_app, mut by_event) = (0, 0);
        for &(from, key, req) in &sent {
            let root = m.closest_live(key).unwrap();
            let upcalls = delivered_for(&log, &m, from, req);
            let events: Vec<_> = m
                .deliveries
                .iter()
                .filter(|d| d.delivery.origin.id == m.id(from) && d.delivery.request == req)
                .collect();
            if root % 2 == 0 {
                by_app += 1;
                ensure(upcalls.len() == 1 && upcalls[0].0 == root, || {
                    format!("{key:?}: upcalls {upcalls:?}, root {root}")
                })?;
                ensure(events.is_empty(), || format!("{key:?}: also an event"))?;
            } else {
                by_event += 1;
                ensure(upcalls.is_empty(), || {
                    format!("{key:?}: upcall at {upcalls:?}")
                })?;
                ensure(events.len() == 1, || {
                    format!("{key:?}: {} events", events.len())
                })?;
                let e = events[0];
                ensure(e.at == root && e.expected == root, || {
                    format!("{key:?}: event at {} expected {}", e.at, e.expected)
                })?;
                ensure(e.delivery.key == key && e.delivery.app == APP, || {
                    format!("{:?}", e.delivery)
                })?;
            }
        }
        ensure(by_app > 0 && by_event > 0, || {
            format!("{by_app} by app, {by_event} by event: both paths needed")
        })?;
        // `forward` ran only where application 0 is registered.
        ensure(log.forwarded.iter().all(|f| f.at % 2 == 0), || {
            "forward upcall on a node without the app".into()
        })?;
        let other = other.lock().unwrap();
        ensure(
            other.delivered.is_empty() && other.forwarded.is_empty(),
            || "application 7 saw application 0's messages".into(),
        )
    });
}

#[test]
fn forward_upcall_runs_at_every_hop_before_the_root() {
    for_seeds(|seed| {
        let mut m = converged_ring(seed, 60)?;
        let log = Shared::default();
        let nodes = all_nodes(&m);
        register(&mut m, &nodes, APP, || Recorder::new(&log));
        let sent = send_lookups(&mut m, 80, b"x");
        m.run_for(secs(10));
        let log = log.lock().unwrap();
        let mut total_hops = 0usize;
        for &(from, key, req) in &sent {
            let ds = delivered_for(&log, &m, from, req);
            ensure(ds.len() == 1, || {
                format!("{key:?} delivered {} times", ds.len())
            })?;
            let d = &ds[0].2;
            let mut fw: Vec<&Fwd> = log.forwarded.iter().filter(|f| f.key == key).collect();
            fw.sort_by_key(|f| f.hops);
            // One forward per hop: at the origin and every intermediate node, not the root.
            ensure(fw.len() == usize::from(d.hops), || {
                format!("{key:?}: {} forward upcalls for {} hops", fw.len(), d.hops)
            })?;
            for (h, f) in fw.iter().enumerate() {
                ensure(usize::from(f.hops) == h, || {
                    format!("{key:?}: hops {:?}", f.hops)
                })?;
                ensure(m.id(f.at) == d.path[h], || {
                    format!("{key:?}: forward #{h} at {} but path {:?}", f.at, d.path)
                })?;
                ensure(f.next.id == d.path[h + 1], || {
                    format!("{key:?}: forward #{h} next {:?}, path {:?}", f.next, d.path)
                })?;
                ensure(f.origin == m.nodes[from as usize].handle(), || {
                    format!("{key:?}: origin {:?}", f.origin)
                })?;
                ensure(f.data == Bytes::from_static(b"x"), || {
                    format!("{key:?}: data {:?}", f.data)
                })?;
            }
            total_hops += usize::from(d.hops);
        }
        ensure(log.forwarded.len() == total_hops, || {
            format!("{} forward upcalls, {total_hops} hops", log.forwarded.len())
        })
    });
}

#[test]
fn forward_can_rewrite_the_payload() {
    for_seeds(|seed| {
        let mut m = converged_ring(seed, 60)?;
        let log = Shared::default();
        let nodes = all_nodes(&m);
        register(&mut m, &nodes, APP, || {
            Recorder::new(&log).forwarding(OnForward::Stamp)
        });
        let sent = send_lookups(&mut m, 60, b"x");
        m.run_for(secs(10));
        let log = log.lock().unwrap();
        for &(from, key, req) in &sent {
            let ds = delivered_for(&log, &m, from, req);
            ensure(ds.len() == 1, || {
                format!("{key:?} delivered {} times", ds.len())
            })?;
            let (at, _, d) = &ds[0];
            ensure(*at == m.closest_live(key).unwrap(), || {
                format!("{key:?} at {at}")
            })?;
            // The root sees the payload every forwarding node stamped, in path order.
            let mut want = b"x".to_vec();
            for id in &d.path[..d.path.len() - 1] {
                want.extend_from_slice(&index_of(&m, *id).to_be_bytes());
            }
            ensure(d.data == want, || {
                format!("{key:?}: root got {:?}, want {want:?}", d.data)
            })?;
        }
        Ok(())
    });
}

#[test]
fn forward_can_redirect_the_next_hop() {
    for_seeds(|seed| {
        let mut m = converged_ring(seed, 40)?;
        let log = Shared::default();
        // Every origin sends its first hop through node `via`; the message still reaches
        // the root.
        let ring = sorted_ring(&m);
        let via = ring[7];
        let via_handle = m.nodes[via as usize].handle();
        let nodes = all_nodes(&m);
        register(&mut m, &nodes, APP, || {
            Recorder::new(&log).forwarding(OnForward::RedirectAtOrigin(via_handle))
        });
        let mut sent = Vec::new();
        for _ in 0..40 {
            let from = m.random_live_ready().unwrap();
            let key = m.random_id();
            if from == via || m.closest_live(key) == Some(from) {
                continue; // no first hop to redirect
            }
            sent.push((from, key, m.route(from, key, b"x")));
        }
        m.run_for(secs(10));
        let log = log.lock().unwrap();
        for &(from, key, req) in &sent {
            let ds = delivered_for(&log, &m, from, req);
            ensure(ds.len() == 1, || {
                format!("{key:?} delivered {} times", ds.len())
            })?;
            let (at, _, d) = &ds[0];
            ensure(*at == m.closest_live(key).unwrap(), || {
                format!("{key:?} at {at}")
            })?;
            ensure(d.path.get(1) == Some(&via_handle.id), || {
                format!("{key:?}: path {:?} does not go through {via}", d.path)
            })?;
        }
        ensure(!sent.is_empty(), || "nothing sent".into())
    });
}

#[test]
fn forward_can_consume_the_message_without_a_failure() {
    for_seeds(|seed| {
        let mut m = converged_ring(seed, 60)?;
        let log = Shared::default();
        let nodes = all_nodes(&m);
        register(&mut m, &nodes, APP, || {
            Recorder::new(&log).forwarding(OnForward::ConsumeAtHop(1))
        });
        let sent = send_lookups(&mut m, 80, b"x");
        m.run_for(secs(10));
        ensure(m.failures.is_empty(), || {
            format!("consumed messages reported as failures: {:?}", m.failures)
        })?;
        let log = log.lock().unwrap();
        let mut consumed = 0u64;
        for &(from, key, req) in &sent {
            let ds = delivered_for(&log, &m, from, req);
            let taken = log.forwarded.iter().any(|f| f.key == key && f.hops == 1);
            if taken {
                consumed += 1;
                ensure(ds.is_empty(), || format!("{key:?} consumed but delivered"))?;
                let later = log.forwarded.iter().any(|g| g.key == key && g.hops > 1);
                ensure(!later, || format!("{key:?} forwarded after being consumed"))?;
            } else {
                ensure(ds.len() == 1, || format!("{key:?}: deliveries {ds:?}"))?;
            }
        }
        ensure(consumed > 0, || "nothing consumed".into())?;
        let counted: u64 = m.nodes.iter().map(|n| n.stats().consumed).sum();
        ensure(counted == consumed, || {
            format!("Stats::consumed {counted}, {consumed} consumed")
        })
    });
}

#[test]
fn forward_can_drop_the_message() {
    for_seeds(|seed| {
        for drop_at in [0u8, 1] {
            let mut m = converged_ring(seed, 60)?;
            let log = Shared::default();
            let nodes = all_nodes(&m);
            register(&mut m, &nodes, APP, || {
                Recorder::new(&log).forwarding(OnForward::DropAtHop(drop_at))
            });
            let failures_before: u64 = m.nodes.iter().map(|n| n.stats().route_failures).sum();
            let sent = send_lookups(&mut m, 80, b"x");
            m.run_for(secs(10));
            let log = log.lock().unwrap();
            let mut dropped = 0u64;
            for &(from, key, req) in &sent {
                let ds = delivered_for(&log, &m, from, req);
                let fails: Vec<_> = m
                    .failures
                    .iter()
                    .filter(|f| f.1 == key && f.2 == req)
                    .collect();
                let dropper = log
                    .forwarded
                    .iter()
                    .find(|f| f.key == key && f.hops == drop_at);
                match dropper {
                    Some(f) => {
                        dropped += 1;
                        ensure(ds.is_empty(), || {
                            format!("{key:?} dropped at hop {drop_at} but delivered")
                        })?;
                        ensure(
                            fails.len() == 1
                                && fails[0].0 == f.at
                                && fails[0].3 == RouteFailure::DroppedByApplication,
                            || format!("{key:?} dropped at {}: failures {fails:?}", f.at),
                        )?;
                        if drop_at == 0 {
                            ensure(f.at == from, || format!("{key:?}: dropped off-origin"))?;
                        }
                        // Nobody forwarded it past the dropping node.
                        let later = log
                            .forwarded
                            .iter()
                            .any(|g| g.key == key && g.hops > drop_at);
                        ensure(!later, || format!("{key:?} forwarded after the drop"))?;
                    }
                    None => {
                        ensure(ds.len() == 1 && ds[0].2.hops <= drop_at, || {
                            format!("{key:?}: not dropped, deliveries {ds:?}")
                        })?;
                        ensure(fails.is_empty(), || format!("{key:?}: failures {fails:?}"))?;
                    }
                }
            }
            ensure(dropped > 0, || format!("nothing dropped at hop {drop_at}"))?;
            let failures: u64 = m.nodes.iter().map(|n| n.stats().route_failures).sum();
            ensure(failures - failures_before == dropped, || {
                format!(
                    "Stats::route_failures grew by {}, {dropped} dropped",
                    failures - failures_before
                )
            })?;
        }
        Ok(())
    });
}

/// Replays each node's `update` upcalls over its leaf set at registration and compares
/// the result with its leaf set now.
fn check_update_replay(
    m: &Mesh,
    log: &Log,
    initial: &[(u32, BTreeSet<NodeHandle<u32>>)],
) -> Result<(), String> {
    for (i, start) in initial {
        if !m.is_alive(*i) {
            continue;
        }
        let mut members = start.clone();
        for (at, h, joined) in &log.updates {
            if at != i {
                continue;
            }
            if *joined {
                ensure(members.insert(*h), || {
                    let mine: Vec<_> = log.updates.iter().filter(|u| u.0 == *i).collect();
                    format!(
                        "node {i}: update({h:?}, joined = true) while it was already a \
                         member; node {i}'s updates in order: {mine:?}"
                    )
                })?;
            } else {
                ensure(members.remove(h), || {
                    format!("node {i}: {h:?} left but absent")
                })?;
            }
        }
        let now: BTreeSet<NodeHandle<u32>> = m.nodes[*i as usize]
            .leaf_set()
            .handles()
            .into_iter()
            .collect();
        ensure(members == now, || {
            format!("node {i}: replayed updates give {members:?}, leaf set is {now:?}")
        })?;
    }
    Ok(())
}

/// A node joins right next to node `a` (id + 1), then a leaf-set member of `a` crashes;
/// applications on every node record `update`. Checks that each node holding the joiner,
/// and each node that held the victim, was told; with `replay`, also that replaying each
/// node's updates over its leaf set at registration gives its leaf set now.
fn update_scenario(seed: u64, replay: bool) -> Result<(), String> {
    let mut m = converged_ring(seed, 30)?;
    let log = Shared::default();
    // A node right next to `a` (id + 1) will join; registered before it joins.
    let a = m.random_live_ready().unwrap();
    let j = m.add_node_with_id(m.id(a).wrapping_add(1));
    let nodes = all_nodes(&m);
    register(&mut m, &nodes, APP, || Recorder::new(&log));
    let initial: Vec<(u32, BTreeSet<NodeHandle<u32>>)> = nodes
        .iter()
        .map(|&i| {
            (
                i,
                m.nodes[i as usize]
                    .leaf_set()
                    .handles()
                    .into_iter()
                    .collect(),
            )
        })
        .collect();
    let b = m.random_live_ready().unwrap();
    m.join(j, b);
    m.run_for(secs(20));
    m.check_leaf_sets()?;
    let jh = m.nodes[j as usize].handle();
    {
        let log = log.lock().unwrap();
        ensure(log.updates.contains(&(a, jh, true)), || {
            format!("node {a} got no update for its new neighbour {j}")
        })?;
        // Every node that now has j in its leaf set was told.
        for i in m.live() {
            if i != j && m.nodes[i as usize].leaf_set().contains(jh.id) {
                ensure(log.updates.contains(&(i, jh, true)), || {
                    format!("node {i} has {j} in its leaf set but got no update")
                })?;
            }
        }
        // The joiner saw its whole leaf set arrive.
        let got = log.updates.iter().filter(|u| u.0 == j && u.2).count();
        ensure(got >= m.nodes[j as usize].leaf_set().len(), || {
            format!("joiner got {got} joined updates")
        })?;
        if replay {
            check_update_replay(&m, &log, &initial)?;
        }
    }

    // Crash a leaf-set member of `a` other than j: after repair, `a` (and every node
    // that had it) was told it left.
    let victim = m.nodes[a as usize]
        .leaf_set()
        .handles()
        .into_iter()
        .find(|h| h.id != jh.id)
        .unwrap();
    let had: Vec<u32> = m
        .live()
        .into_iter()
        .filter(|&i| m.nodes[i as usize].leaf_set().contains(victim.id))
        .collect();
    m.crash(victim.addr);
    // Detection: up to a heartbeat timeout (24 s) plus probe retries, then the repair.
    m.run_for(secs(60));
    m.check_leaf_sets()?;
    let log = log.lock().unwrap();
    for i in had {
        if i == victim.addr {
            continue;
        }
        ensure(log.updates.contains(&(i, victim, false)), || {
            format!("node {i} got no update for the crash of {}", victim.addr)
        })?;
    }
    if replay {
        check_update_replay(&m, &log, &initial)?;
    }
    Ok(())
}

#[test]
fn update_upcall_reports_leaf_set_joins_and_failures() {
    for_seeds(|seed| update_scenario(seed, false));
}

/// `update(handle, true)` must mean "joined": a node already in the leaf set must not be
/// reported joining again (for instance when, while a side is short after a failure, a
/// member of the other side is also taken onto the short side).
#[test]
fn update_upcalls_replay_to_the_current_leaf_set() {
    for_seeds(|seed| update_scenario(seed, true));
}

#[test]
fn app_timers_fire_at_their_deadline_and_not_before() {
    for_seeds(|seed| {
        let mut m = converged_ring(seed, 20)?;
        let log = Shared::default();
        let nodes = all_nodes(&m);
        register(&mut m, &nodes, APP, || {
            Recorder::new(&log).delivering(OnDeliver::Timers)
        });
        let root = m.random_live_ready().unwrap();
        let from = m.live_ready().into_iter().find(|&i| i != root).unwrap();
        m.route(from, m.id(root), b"t");
        // Step until the delivery, which sets the timers.
        let mut steps = 0;
        while log.lock().unwrap().delivered.is_empty() {
            ensure(m.step() && steps < 100_000, || "never delivered".into())?;
            steps += 1;
        }
        let (at, t0, _) = log.lock().unwrap().delivered[0].clone();
        ensure(at == root, || format!("delivered at {at}, not {root}"))?;
        let timers = |log: &Shared| log.lock().unwrap().timers.clone();
        m.run_until(t0 + ms(99));
        ensure(timers(&log) == vec![(root, 4, t0)], || {
            format!("by +99 ms: {:?}", timers(&log))
        })?;
        m.run_until(t0 + ms(100));
        ensure(
            timers(&log).len() == 2 && timers(&log)[1] == (root, 2, t0 + ms(100)),
            || format!("by +100 ms: {:?}", timers(&log)),
        )?;
        m.run_until(t0 + ms(749));
        ensure(timers(&log).len() == 2, || {
            format!("by +749 ms: {:?}", timers(&log))
        })?;
        m.run_until(t0 + ms(750));
        let mut late: Vec<(u32, u64, Instant)> = timers(&log)[2..].to_vec();
        late.sort();
        ensure(
            late == vec![(root, 1, t0 + ms(750)), (root, 3, t0 + ms(750))],
            || format!("by +750 ms: {:?}", timers(&log)),
        )?;
        m.run_for(secs(10));
        ensure(timers(&log).len() == 4, || {
            format!("extra timers {:?}", timers(&log))
        })
    });
}

#[test]
fn send_direct_reaches_the_other_nodes_direct_upcall() {
    for_seeds(|seed| {
        let mut m = converged_ring(seed, 30)?;
        let log = Shared::default();
        let nodes = all_nodes(&m);
        register(&mut m, &nodes, APP, || {
            Recorder::new(&log).delivering(OnDeliver::ReplyDirect)
        });
        // Distinct (origin, root) pairs, so that each reply is told apart by its ends.
        let mut sent = Vec::new();
        let mut pairs = BTreeSet::new();
        for _ in 0..30 {
            let from = m.random_live_ready().unwrap();
            let key = m.random_id();
            let root = m.closest_live(key).unwrap();
            if root != from && pairs.insert((from, root)) {
                sent.push((from, key, m.route(from, key, b"ping")));
            }
        }
        m.run_for(secs(10));
        let log = log.lock().unwrap();
        for &(from, key, req) in &sent {
            let ds = delivered_for(&log, &m, from, req);
            ensure(ds.len() == 1, || {
                format!("{key:?} delivered {} times", ds.len())
            })?;
            let (root, t, _) = ds[0];
            let root_handle = m.nodes[root as usize].handle();
            let replies: Vec<_> = log
                .directs
                .iter()
                .filter(|d| d.0 == from && d.1 == root_handle && d.3 == t + m.latency(root, from))
                .collect();
            ensure(replies.len() == 1, || {
                format!("{key:?}: replies {replies:?} (all: {:?})", log.directs)
            })?;
            ensure(replies[0].2 == Bytes::from_static(b"re:ping"), || {
                format!("{key:?}: reply data {:?}", replies[0].2)
            })?;
        }
        ensure(log.directs.len() == sent.len(), || {
            format!(
                "{} direct upcalls for {} lookups",
                log.directs.len(),
                sent.len()
            )
        })
    });
}

/// `replica_set` includes this node, so applications send to its members directly; the
/// copy for the node itself must reach its own `direct` upcall too.
#[test]
fn send_direct_to_self_reaches_own_direct_upcall() {
    let mut net = Net::new(1);
    let log = Shared::default();
    assert!(
        net.nodes[0]
            .register(
                APP,
                Box::new(Recorder::new(&log).delivering(OnDeliver::ReplyDirect))
            )
            .is_ok()
    );
    net.nodes[0].start_ring(net.now);
    let key = net.nodes[0].id();
    net.nodes[0]
        .route(net.now, key, APP, Bytes::from_static(b"me"))
        .unwrap();
    net.run(20);
    let log = log.lock().unwrap();
    assert_eq!(log.delivered.len(), 1);
    let me = net.nodes[0].handle();
    assert_eq!(
        log.directs
            .iter()
            .map(|d| (d.0, d.1, d.2.clone()))
            .collect::<Vec<_>>(),
        vec![(0, me, Bytes::from_static(b"re:me"))],
        "direct message to self lost (Stats::ignored = {})",
        net.nodes[0].stats().ignored
    );
}

/// A hand-driven network following the run loop of the crate docs: every message takes
/// 1 ms; every event is kept with the time it was drained.
struct Net {
    nodes: Vec<Node<u32>>,
    now: Instant,
    inflight: Vec<(u32, u32, pastry_core::Message<u32>)>,
    events: Vec<(u32, Instant, Event<u32>)>,
}

impl Net {
    fn new(n: u32) -> Net {
        let cfg = Arc::new(Config::default());
        let mut rng = Rng::new(99);
        let nodes = (0..n)
            .map(|i| {
                let id = NodeId::from_u128((u128::from(rng.next_u64()) << 64) | u128::from(i));
                Node::new(cfg.clone(), id, i, rng.next_u64())
            })
            .collect();
        Net {
            nodes,
            now: Instant::ZERO,
            inflight: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Drains every node's transmits (sent on the next tick) and events.
    fn drain(&mut self) {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            while let Some(t) = n.poll_transmit() {
                self.inflight.push((t.to, i as u32, t.msg));
            }
            while let Some(ev) = n.poll_event() {
                self.events.push((i as u32, self.now, ev));
            }
        }
    }

    /// One millisecond: drain, carry messages, fire due timers, drain.
    fn tick(&mut self) {
        self.drain();
        self.now = self.now + ms(1);
        for (to, from, msg) in std::mem::take(&mut self.inflight) {
            self.nodes[to as usize].handle_message(self.now, from, msg);
        }
        for n in &mut self.nodes {
            if n.poll_timeout().is_some_and(|t| t <= self.now) {
                n.handle_timeout(self.now);
            }
        }
        self.drain();
    }

    fn run(&mut self, ticks: u32) {
        for _ in 0..ticks {
            self.tick();
        }
    }

    /// Removes and returns the `Event::Application` values of node `i`.
    fn take_app_events(&mut self, i: u32) -> Vec<(Instant, AppId, Box<dyn std::any::Any + Send>)> {
        let mut out = Vec::new();
        let mut rest = Vec::new();
        for (at, t, ev) in std::mem::take(&mut self.events) {
            match ev {
                Event::Application { app, value } if at == i => out.push((t, app, value)),
                ev => rest.push((at, t, ev)),
            }
        }
        self.events = rest;
        out
    }
}

/// Notifies the host of every delivery (key, data) and, one second later, of a timer.
struct Notifier;

impl Application<u32> for Notifier {
    fn deliver(&mut self, ctx: &mut AppContext<'_, u32>, msg: Delivery<u32>) {
        ctx.notify(Box::new((msg.key, msg.data)));
        ctx.set_timer(secs(1), 9);
    }
    fn timer(&mut self, ctx: &mut AppContext<'_, u32>, token: u64) {
        ctx.notify(Box::new((token, ctx.now())));
    }
}

#[test]
fn notify_surfaces_as_an_application_event() {
    // Two nodes, hand-driven: node 1 joins through node 0 and routes to node 0's id.
    let mut net = Net::new(2);
    assert!(net.nodes[0].register(5, Box::new(Notifier)).is_ok());
    let now = net.now;
    net.nodes[0].start_ring(now);
    net.nodes[1].join(now, &[0]);
    let mut ticks = 0;
    while net.nodes[1].state() != NodeState::Ready {
        net.tick();
        ticks += 1;
        assert!(ticks < 10_000, "node 1 never became ready");
    }
    assert!(
        net.events
            .iter()
            .any(|(i, _, e)| *i == 1 && matches!(e, Event::Ready))
    );
    let key = net.nodes[0].id();
    let now = net.now;
    net.nodes[1]
        .route(now, key, 5, Bytes::from_static(b"hi"))
        .unwrap();
    net.run(5);
    let evs = net.take_app_events(0);
    assert_eq!(evs.len(), 1, "one notification for the delivery");
    let (t0, app, value) = evs.into_iter().next().unwrap();
    assert_eq!(app, 5);
    let got = value
        .downcast::<(NodeId, Bytes)>()
        .expect("the value the application passed");
    assert_eq!(*got, (key, Bytes::from_static(b"hi")));
    assert!(
        net.take_app_events(1).is_empty(),
        "node 1 has no application"
    );

    // The timer notification comes one second after the delivery, not before.
    while net.now < t0 + ms(990) {
        net.tick();
    }
    assert!(net.take_app_events(0).is_empty(), "timer fired early");
    net.run(20);
    let evs = net.take_app_events(0);
    assert_eq!(evs.len(), 1);
    let (_, app, value) = evs.into_iter().next().unwrap();
    assert_eq!(app, 5);
    let (token, at) = *value.downcast::<(u64, Instant)>().unwrap();
    assert_eq!(token, 9);
    assert!(
        at >= t0 && at <= t0 + secs(1),
        "timer at {at:?}, delivery drained at {t0:?}"
    );

    // A direct message for an application nobody registered surfaces as DirectDelivered.
    let to = net.nodes[0].handle();
    let from = net.nodes[1].handle();
    let now = net.now;
    net.nodes[1]
        .send_direct(now, to, 9, Bytes::from_static(b"d"))
        .unwrap();
    net.run(3);
    let direct: Vec<_> = net
        .events
        .iter()
        .filter_map(|(i, _, e)| match e {
            Event::DirectDelivered { from, app, data } => Some((*i, *from, *app, data.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(direct, vec![(0, from, 9, Bytes::from_static(b"d"))]);
}

#[test]
fn timer_does_not_fire_before_its_deadline() {
    // One node driven by hand: handle_timeout just before the deadline does nothing.
    let mut net = Net::new(1);
    let log = Shared::default();
    assert!(
        net.nodes[0]
            .register(
                APP,
                Box::new(Recorder::new(&log).delivering(OnDeliver::Timers))
            )
            .is_ok()
    );
    let t0 = Instant::ZERO + secs(3);
    let node = &mut net.nodes[0];
    node.start_ring(t0);
    node.route(t0, node.id(), APP, Bytes::from_static(b"t"))
        .unwrap();
    assert_eq!(
        log.lock().unwrap().delivered.len(),
        1,
        "a 1-node ring delivers at once"
    );
    assert!(node.poll_timeout().is_some_and(|t| t <= t0));
    node.handle_timeout(t0);
    let fired =
        |log: &Shared| -> Vec<u64> { log.lock().unwrap().timers.iter().map(|t| t.1).collect() };
    assert_eq!(fired(&log), vec![4], "the zero-delay timer fires at once");
    node.handle_timeout(t0 + ms(99));
    assert_eq!(fired(&log), vec![4]);
    assert!(node.poll_timeout().is_some_and(|t| t <= t0 + ms(100)));
    node.handle_timeout(t0 + ms(100));
    assert_eq!(fired(&log), vec![4, 2]);
    node.handle_timeout(t0 + ms(749));
    assert_eq!(fired(&log), vec![4, 2]);
    node.handle_timeout(t0 + ms(750));
    assert_eq!(fired(&log), vec![4, 2, 1, 3]);
    let times: Vec<Instant> = log.lock().unwrap().timers.iter().map(|t| t.2).collect();
    assert_eq!(times, vec![t0, t0 + ms(100), t0 + ms(750), t0 + ms(750)]);
}

/// A key inside `[from, to]` (clockwise), `frac` of the way along.
fn along(from: NodeId, to: NodeId, frac: f64) -> NodeId {
    let span = from.cw_distance(to);
    from.wrapping_add((span as f64 * frac) as u128)
}

/// Checks `range` for `who` at `rank` as computed by node `by`: every key inside has `who`
/// among the rank + 1 closest live nodes; the keys just outside do not.
fn check_range(m: &Mesh, by: u32, who: u32, rank: usize, rng: &mut Rng) -> Result<(), String> {
    let h = m.nodes[who as usize].handle();
    let Some((from, to)) = m.nodes[by as usize].range(&h, rank) else {
        return Err(format!("node {by}: no range for {who} at rank {rank}"));
    };
    let mut inside = vec![from, to, along(from, to, 0.5), m.id(who)];
    for _ in 0..20 {
        inside.push(along(from, to, rng.unit()));
    }
    for k in inside {
        ensure(NodeId::in_cw_arc(k, from, to), || {
            format!("{k:?} not in its own range")
        })?;
        let r = rank_of(m, k, who);
        ensure(r <= rank, || {
            format!(
                "node {by}: range of {who} rank {rank} = [{from:?}, {to:?}] holds {k:?} where it ranks {r}"
            )
        })?;
    }
    if to.wrapping_add(1) != from {
        for k in [from.wrapping_add(u128::MAX), to.wrapping_add(1)] {
            let r = rank_of(m, k, who);
            ensure(r > rank, || {
                format!(
                    "node {by}: {k:?} just outside range of {who} rank {rank} [{from:?}, {to:?}] but ranks {r}"
                )
            })?;
        }
    }
    Ok(())
}

#[test]
fn replica_set_is_the_k_closest_live_nodes() {
    for_seeds(|seed| {
        let m = converged_ring(seed, 40)?;
        let half = m.cfg.leaf_set_size / 2;
        let mut rng = Rng::new(seed);
        for i in m.live_ready() {
            // Keys this node is root of or near: its own id, and keys around it within half
            // the distance to its farthest leaf-set members.
            let ls = m.nodes[i as usize].leaf_set();
            let left = ls
                .farthest(pastry_core::leafset::Side::Left)
                .unwrap()
                .handle
                .id;
            let right = ls
                .farthest(pastry_core::leafset::Side::Right)
                .unwrap()
                .handle
                .id;
            let me = m.id(i);
            let mut keys = vec![me];
            for _ in 0..4 {
                keys.push(along(
                    along(left, me, 0.5),
                    along(me, right, 0.5),
                    rng.unit(),
                ));
            }
            for key in keys {
                let mut truth = m.live_ready();
                truth.sort_by(|&a, &b| key.cmp_closeness(m.id(a), m.id(b)));
                for k in 1..=half + 1 {
                    let got: Vec<NodeId> = m.nodes[i as usize]
                        .replica_set(key, k)
                        .iter()
                        .map(|h| h.id)
                        .collect();
                    let want: Vec<NodeId> = truth[..k].iter().map(|&x| m.id(x)).collect();
                    ensure(got == want, || {
                        format!("node {i} replica_set({key:?}, {k}) = {got:?}, want {want:?}")
                    })?;
                }
            }
            // Asking for more than the leaf set holds gives the whole leaf set and itself.
            let all = m.nodes[i as usize].replica_set(me, 1000);
            ensure(all.len() == 2 * half + 1, || {
                format!("node {i}: {} replicas", all.len())
            })?;
            ensure(all[0].id == me, || {
                format!("node {i}: not first in its own replica set")
            })?;
        }
        Ok(())
    });
}

#[test]
fn neighbor_set_alternates_the_nearest_leaf_set_members() {
    for_seeds(|seed| {
        let m = converged_ring(seed, 40)?;
        let half = m.cfg.leaf_set_size / 2;
        let ring = sorted_ring(&m);
        let n = ring.len();
        for (pos, &i) in ring.iter().enumerate() {
            let mut want = Vec::new();
            for d in 1..=half {
                want.push(m.id(ring[(pos + n - d) % n]));
                want.push(m.id(ring[(pos + d) % n]));
            }
            for num in [0, 1, 2, 5, 2 * half, 2 * half + 10] {
                let got: Vec<NodeId> = m.nodes[i as usize]
                    .neighbor_set(num)
                    .iter()
                    .map(|h| h.id)
                    .collect();
                let w = &want[..num.min(want.len())];
                ensure(got == w, || {
                    format!("node {i} neighbor_set({num}) = {got:?}, want {w:?}")
                })?;
            }
        }
        Ok(())
    });
}

#[test]
fn local_lookup_starts_with_the_routing_decision() {
    for_seeds(|seed| {
        let mut m = converged_ring(seed, 60)?;
        let (mut roots, mut forwards) = (0, 0);
        for i in m.live_ready() {
            let mut keys: Vec<NodeId> = (0..10).map(|_| m.random_id()).collect();
            keys.push(m.id(i));
            for key in keys {
                let me = m.id(i);
                let got = m.nodes[i as usize].local_lookup(key, 4);
                match m.nodes[i as usize].decide(key) {
                    Decision::Deliver => {
                        roots += 1;
                        ensure(got.is_empty(), || {
                            format!("node {i} is root of {key:?}: {got:?}")
                        })?;
                        ensure(m.closest_live(key) == Some(i), || {
                            format!("node {i} decides Deliver for {key:?} but is not closest")
                        })?;
                    }
                    Decision::Forward { to, .. } => {
                        forwards += 1;
                        ensure(got.first() == Some(&to), || {
                            format!("node {i} key {key:?}: lookup {got:?}, decision {to:?}")
                        })?;
                        ensure(got.len() <= 4, || format!("{} > 4 entries", got.len()))?;
                        let ids: BTreeSet<NodeId> = got.iter().map(|h| h.id).collect();
                        ensure(ids.len() == got.len(), || format!("duplicates in {got:?}"))?;
                        for h in &got {
                            ensure(key.is_closer(h.id, me), || {
                                format!("node {i}: {h:?} in local_lookup({key:?}) is not closer")
                            })?;
                            ensure(index_of(&m, h.id) == h.addr, || format!("{h:?} stale"))?;
                        }
                        ensure(m.closest_live(key) != Some(i), || {
                            format!("node {i} forwards {key:?} although it is the root")
                        })?;
                        // Fewer entries only when fewer candidates: asking for one gives one.
                        ensure(m.nodes[i as usize].local_lookup(key, 1) == vec![to], || {
                            "local_lookup(key, 1)".into()
                        })?;
                    }
                    Decision::Hold(s) => return Err(format!("node {i} holds for {s:?}")),
                }
            }
        }
        ensure(roots > 0 && forwards > 0, || {
            format!("{roots} roots, {forwards} forwards")
        })
    });
}

#[test]
fn range_holds_exactly_the_keys_the_node_is_responsible_for() {
    for_seeds(|seed| {
        let m = converged_ring(seed, 40)?;
        let half = m.cfg.leaf_set_size / 2;
        let mut rng = Rng::new(seed);
        let ring = sorted_ring(&m);
        let n = ring.len();
        for (pos, &i) in ring.iter().enumerate() {
            let me = m.nodes[i as usize].handle();
            // Rank 0: the node is the closest; just outside belongs to a neighbour.
            let (from, to) = m.nodes[i as usize].range(&me, 0).ok_or("no range")?;
            let (l, r) = (ring[(pos + n - 1) % n], ring[(pos + 1) % n]);
            for (k, want) in [(from.wrapping_add(u128::MAX), l), (to.wrapping_add(1), r)] {
                let got = m.closest_live(k).unwrap();
                ensure(got == want, || {
                    format!(
                        "node {i}: {k:?} just outside its range is {got}'s, not neighbour {want}'s"
                    )
                })?;
            }
            // The rank-0 ranges tile the ring.
            let (rf, _) = m.nodes[r as usize]
                .range(&m.nodes[r as usize].handle(), 0)
                .ok_or("no range")?;
            ensure(to.wrapping_add(1) == rf, || {
                format!("node {i} range ends at {to:?}, right neighbour's starts at {rf:?}")
            })?;
            for rank in 0..half {
                check_range(&m, i, i, rank, &mut rng)?;
            }
            // Ranges of leaf-set members, as far as this node's leaf set reaches.
            for d in 1..=2 {
                for j in [ring[(pos + d) % n], ring[(pos + n - d) % n]] {
                    let h = m.nodes[j as usize].handle();
                    for rank in 0..half - d {
                        check_range(&m, i, j, rank, &mut rng)?;
                    }
                    // The member's own view agrees for rank 0.
                    ensure(
                        m.nodes[i as usize].range(&h, 0) == m.nodes[j as usize].range(&h, 0),
                        || format!("nodes {i} and {j} disagree on {j}'s range"),
                    )?;
                    // Beyond the leaf set's reach: no answer rather than a wrong one.
                    ensure(m.nodes[i as usize].range(&h, half).is_none(), || {
                        format!("node {i}: range of {j} at rank {half} beyond its leaf set")
                    })?;
                }
            }
            // A node outside the leaf set has no range here.
            let far = ring[(pos + n / 2) % n];
            ensure(
                m.nodes[i as usize]
                    .range(&m.nodes[far as usize].handle(), 0)
                    .is_none(),
                || format!("node {i} gives a range for non-member {far}"),
            )?;
        }
        Ok(())
    });
}

#[test]
fn range_in_a_ring_smaller_than_the_leaf_set() {
    for_seeds(|seed| {
        let m = converged_ring(seed, 5)?;
        let mut rng = Rng::new(seed);
        let ring = sorted_ring(&m);
        for &i in &ring {
            let me = m.nodes[i as usize].handle();
            for rank in 0..ring.len() - 1 {
                check_range(&m, i, i, rank, &mut rng)?;
                for &j in &ring {
                    check_range(&m, i, j, rank, &mut rng)?;
                }
            }
            // Among the n closest of every key: the whole ring.
            let whole = m.nodes[i as usize].range(&me, ring.len() - 1);
            ensure(whole == Some((me.id.wrapping_add(1), me.id)), || {
                format!("node {i}: rank n-1 range {whole:?}")
            })?;
        }
        Ok(())
    });
}

#[test]
fn app_context_views_match_the_node_and_the_ring() {
    for_seeds(|seed| {
        let mut m = converged_ring(seed, 40)?;
        let log = Shared::default();
        let nodes = all_nodes(&m);
        register(&mut m, &nodes, APP, || {
            Recorder::new(&log).delivering(OnDeliver::Snapshot)
        });
        let sent = send_lookups(&mut m, 40, b"v");
        m.run_for(secs(10));
        let log = log.lock().unwrap();
        ensure(log.views.len() == sent.len(), || {
            format!("{} views for {} lookups", log.views.len(), sent.len())
        })?;
        for v in &log.views {
            let node = &m.nodes[v.at as usize];
            ensure(v.is_root, || {
                format!("is_root false at the root {} of {:?}", v.at, v.key)
            })?;
            ensure(v.lookup.is_empty(), || {
                format!("local_lookup at the root: {:?}", v.lookup)
            })?;
            ensure(v.lookup_own.is_empty(), || "local_lookup of own id".into())?;
            ensure(v.replica == node.replica_set(v.key, 5), || {
                "replica_set".into()
            })?;
            ensure(v.replica[0].id == m.id(v.at), || {
                "root not first replica".into()
            })?;
            ensure(v.neighbors == node.neighbor_set(6), || {
                "neighbor_set".into()
            })?;
            ensure(v.range == node.range(&node.handle(), 0), || "range".into())?;
            let (from, to) = v.range.ok_or("no range at the root")?;
            ensure(NodeId::in_cw_arc(v.key, from, to), || {
                format!(
                    "key {:?} outside its root's range [{from:?}, {to:?}]",
                    v.key
                )
            })?;
        }
        Ok(())
    });
}

/// An application with its own API, reached by the host through `with_application`.
struct Counter {
    started: u64,
}

impl Application<u32> for Counter {
    fn deliver(&mut self, ctx: &mut AppContext<'_, u32>, msg: Delivery<u32>) {
        ctx.notify(Box::new((msg.key, msg.data)));
    }
}

impl Counter {
    fn start(&mut self, ctx: &mut AppContext<'_, u32>, key: NodeId) -> u64 {
        self.started += 1;
        ctx.route(key, Bytes::from_static(b"from the app"), None)
    }
}

#[test]
fn host_calls_into_an_application_through_with_application() {
    for_seeds(|seed| {
        let mut m = converged_ring(seed, 30)?;
        let nodes = all_nodes(&m);
        for &i in &nodes {
            let ok = m.nodes[i as usize]
                .register(9, Box::new(Counter { started: 0 }))
                .is_ok();
            ensure(ok, || "register".into())?;
        }
        // The wrong type or an unknown application id gives None and runs nothing.
        let wrong = m.with_application::<Recorder, _>(0, 9, |_, _| ());
        ensure(wrong.is_none(), || "downcast to the wrong type".into())?;
        let missing = m.with_application::<Counter, _>(0, 8, |_, _| ());
        ensure(missing.is_none(), || "unknown app id".into())?;

        let mut keys = Vec::new();
        for k in 0..20 {
            let from = nodes[k % nodes.len()];
            let key = m.random_id();
            let req = m.with_application::<Counter, _>(from, 9, |c, ctx| c.start(ctx, key));
            ensure(req.is_some(), || "with_application returned None".into())?;
            keys.push(key);
        }
        m.run_for(secs(5));
        let started: u64 = nodes
            .iter()
            .map(|&i| {
                m.with_application::<Counter, _>(i, 9, |c, _| c.started)
                    .unwrap_or(0)
            })
            .sum();
        ensure(started == 20, || format!("{started} started"))?;
        ensure(m.app_events.len() == 20, || {
            format!("{} notifications", m.app_events.len())
        })?;
        for (at, app, value) in &m.app_events {
            let (key, data) = value
                .downcast_ref::<(NodeId, Bytes)>()
                .ok_or("notified value of another type")?;
            ensure(*app == 9 && &data[..] == b"from the app", || {
                "payload".into()
            })?;
            ensure(keys.contains(key), || "unknown key".into())?;
            ensure(m.closest_live(*key) == Some(*at), || {
                format!("{key:?} delivered at {at}, not its root")
            })?;
        }
        Ok(())
    });
}
