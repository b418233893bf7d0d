//! Helpers shared by the Scribe and SplitStream ring tests: rings of `Mesh` nodes with a
//! Scribe (or SplitStream) registered on every node, event extraction, tree checks.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use pastry_core::mesh::Mesh;
use pastry_core::{AppId, Config, NodeHandle, NodeId};
use pastry_scribe::{Scribe, ScribeConfig, ScribeEvent, TopicId, TopicInfo};

/// The application id Scribe is registered under in the tests.
pub const APP: AppId = 7;

pub const SEEDS: [u64; 3] = [11, 22, 33];

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Runs `f` for every seed; a failure names its seed.
pub fn for_seeds(f: impl Fn(u64) -> Result<(), String>) {
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
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

/// A settled ring of `n` nodes.
pub fn ring(seed: u64, n: usize) -> Result<Mesh, String> {
    let mut m = Mesh::new(Config::default(), seed);
    m.build_ring(n, secs(1));
    m.run_for(secs(20));
    m.check_leaf_sets()?;
    Ok(m)
}

/// Registers a Scribe built from `cfg` (seeded per node) on every node.
pub fn register_scribe(m: &mut Mesh, cfg: &ScribeConfig) {
    for i in 0..m.nodes.len() as u32 {
        register_scribe_on(m, i, cfg);
    }
}

pub fn register_scribe_on(m: &mut Mesh, i: u32, cfg: &ScribeConfig) {
    let cfg = ScribeConfig {
        seed: u64::from(i) * 7919 + 1,
        ..cfg.clone()
    };
    let s = Scribe::<u32>::new(cfg).expect("valid config");
    assert!(m.nodes[i as usize].register(APP, Box::new(s)).is_ok());
}

pub fn subscribe(m: &mut Mesh, i: u32, t: TopicId) {
    m.with_application(i, APP, |s: &mut Scribe<u32>, ctx| s.subscribe(ctx, t))
        .expect("scribe registered")
        .expect("subscribe accepted");
}

/// Subscribes `members` one after another (20 ms apart), then lets the tree settle 5 s.
pub fn subscribe_all(m: &mut Mesh, t: TopicId, members: &BTreeSet<u32>) {
    for &i in members {
        subscribe(m, i, t);
        m.run_for(ms(20));
    }
    m.run_for(secs(5));
}

pub fn unsubscribe(m: &mut Mesh, i: u32, t: TopicId) {
    m.with_application(i, APP, |s: &mut Scribe<u32>, ctx| s.unsubscribe(ctx, t))
        .expect("scribe registered");
}

pub fn publish(m: &mut Mesh, i: u32, t: TopicId, data: &[u8]) -> u64 {
    let data = Bytes::copy_from_slice(data);
    m.with_application(i, APP, |s: &mut Scribe<u32>, ctx| s.publish(ctx, t, data))
        .expect("scribe registered")
        .expect("publish accepted")
}

pub fn info(m: &mut Mesh, i: u32, t: TopicId) -> Option<TopicInfo<u32>> {
    m.with_application(i, APP, |s: &mut Scribe<u32>, _| s.topic_info(t))
        .expect("scribe registered")
}

pub fn with_scribe<R>(m: &mut Mesh, i: u32, f: impl FnOnce(&Scribe<u32>) -> R) -> R {
    m.with_application(i, APP, |s: &mut Scribe<u32>, _| f(s))
        .expect("scribe registered")
}

/// Scribe events seen so far, in order: (node, event).
pub fn events(m: &Mesh) -> Vec<(u32, ScribeEvent<u32>)> {
    m.app_events
        .iter()
        .filter(|(_, app, _)| *app == APP)
        .filter_map(|(i, _, v)| {
            v.downcast_ref::<ScribeEvent<u32>>()
                .map(|e| (*i, e.clone()))
        })
        .collect()
}

/// Deliveries per (node, publisher, message number) for `topic`.
pub fn deliveries(m: &Mesh, topic: TopicId) -> BTreeMap<(u32, NodeId, u64), usize> {
    let mut out = BTreeMap::new();
    for (i, e) in events(m) {
        if let ScribeEvent::Delivered {
            topic: t,
            publisher,
            id,
            ..
        } = e
            && t == topic
        {
            *out.entry((i, publisher, id)).or_insert(0) += 1;
        }
    }
    out
}

/// Checks that every member got every message in `ids` (published by `publisher`) exactly
/// once, and that nobody else got any.
pub fn check_exactly_once(
    m: &Mesh,
    topic: TopicId,
    members: &BTreeSet<u32>,
    publisher: NodeId,
    ids: &[u64],
) -> Result<(), String> {
    let d = deliveries(m, topic);
    for (&(i, p, id), &n) in &d {
        if p == publisher && ids.contains(&id) {
            ensure(members.contains(&i), || {
                format!("non-member {i} got message {id}")
            })?;
            ensure(n == 1, || format!("node {i} got message {id} {n} times"))?;
        }
    }
    for &i in members {
        for &id in ids {
            ensure(d.contains_key(&(i, publisher, id)), || {
                format!("member {i} never got message {id}")
            })?;
        }
    }
    Ok(())
}

/// Mesh index of the node with id `id`.
pub fn index_of(m: &Mesh, id: NodeId) -> u32 {
    (0..m.nodes.len() as u32)
        .find(|&i| m.id(i) == id)
        .unwrap_or_else(|| panic!("no node with id {id:?}"))
}

/// The tree of `topic` over the live nodes: checks it is one tree rooted at the topic's
/// true root (closest live node), parent and child links agree, there is no cycle, and
/// every node in `members` is reachable from the root. Returns (depth of deepest member,
/// largest child count).
pub fn check_tree(
    m: &mut Mesh,
    topic: TopicId,
    members: &BTreeSet<u32>,
) -> Result<(usize, usize), String> {
    let live = m.live();
    let mut infos: BTreeMap<u32, TopicInfo<u32>> = BTreeMap::new();
    for &i in &live {
        if let Some(t) = info(m, i, topic) {
            infos.insert(i, t);
        }
    }
    let root = m.closest_live(topic).ok_or("no live node")?;
    let roots: Vec<u32> = infos
        .iter()
        .filter(|(_, t)| t.is_root)
        .map(|(&i, _)| i)
        .collect();
    ensure(roots == vec![root], || {
        format!("roots {roots:?}, expected the closest live node {root}")
    })?;
    // Links agree both ways.
    for (&i, t) in &infos {
        for c in &t.children {
            let ci = c.addr;
            let ct = infos
                .get(&ci)
                .ok_or_else(|| format!("child {ci} of {i} has no state"))?;
            ensure(ct.parent.map(|p| p.addr) == Some(i), || {
                format!("{ci} is a child of {i} but its parent is {:?}", ct.parent)
            })?;
        }
        if let Some(p) = t.parent {
            let pt = infos
                .get(&p.addr)
                .ok_or_else(|| format!("parent {} of {i} has no state", p.addr))?;
            ensure(pt.children.iter().any(|c| c.addr == i), || {
                format!("{i} names {} as parent, which does not list it", p.addr)
            })?;
        }
    }
    // Walk down from the root.
    let mut depth: BTreeMap<u32, usize> = BTreeMap::new();
    let mut stack = vec![(root, 0usize)];
    while let Some((i, d)) = stack.pop() {
        ensure(depth.insert(i, d).is_none(), || {
            format!("node {i} reached twice: a cycle")
        })?;
        for c in &infos[&i].children {
            stack.push((c.addr, d + 1));
        }
    }
    for &i in members {
        ensure(depth.contains_key(&i), || {
            format!("member {i} not reachable from root {root}")
        })?;
        ensure(infos[&i].subscribed, || {
            format!("member {i} not subscribed")
        })?;
    }
    ensure(depth.len() == infos.len(), || {
        format!(
            "{} nodes hold state but only {} are in the tree",
            infos.len(),
            depth.len()
        )
    })?;
    let max_depth = members.iter().map(|i| depth[i]).max().unwrap_or(0);
    let stress = infos.values().map(|t| t.children.len()).max().unwrap_or(0);
    Ok((max_depth, stress))
}

/// A handle for node `i`.
pub fn handle(m: &Mesh, i: u32) -> NodeHandle<u32> {
    NodeHandle::new(m.id(i), i)
}
