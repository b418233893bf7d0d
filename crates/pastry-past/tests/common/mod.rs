//! Shared helpers: rings of `Mesh` nodes running PAST, event collection, the truth about
//! which nodes should hold a key.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use pastry_core::mesh::Mesh;
use pastry_core::{AppId, Config, NodeId};
use pastry_past::{Past, PastConfig, PastEvent, PastStats};

pub const SEEDS: [u64; 3] = [1, 2, 3];
pub const PAST: AppId = 42;

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
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

/// A settled ring of `n` nodes, each running PAST with the config `cfg(i)` gives.
pub fn ring_with(seed: u64, n: usize, cfg: impl Fn(u32) -> PastConfig) -> Result<Mesh, String> {
    let mut m = Mesh::new(Config::default(), seed);
    m.build_ring(n, secs(1));
    m.run_for(secs(20));
    m.check_leaf_sets()?;
    for i in m.live() {
        add_past(&mut m, i, cfg(i));
    }
    Ok(m)
}

/// A settled ring of `n` nodes running PAST with `cfg`.
pub fn ring(seed: u64, n: usize, cfg: &PastConfig) -> Result<Mesh, String> {
    ring_with(seed, n, |_| cfg.clone())
}

/// Registers PAST on node `i` and starts its maintenance timer.
pub fn add_past(m: &mut Mesh, i: u32, cfg: PastConfig) {
    let past = Past::<u32>::new(cfg).expect("valid config");
    assert!(m.nodes[i as usize].register(PAST, Box::new(past)).is_ok());
    m.with_application::<Past<u32>, _>(i, PAST, |p, ctx| p.start(ctx));
}

/// Calls `f` on node `i`'s PAST.
pub fn past<R>(
    m: &mut Mesh,
    i: u32,
    f: impl FnOnce(&mut Past<u32>, &mut pastry_core::AppContext<'_, u32>) -> R,
) -> R {
    m.with_application::<Past<u32>, _>(i, PAST, f)
        .expect("PAST registered")
}

/// Takes the PAST events the nodes notified so far: (node, event).
pub fn take_events(m: &mut Mesh) -> Vec<(u32, PastEvent<u32>)> {
    std::mem::take(&mut m.app_events)
        .into_iter()
        .filter_map(|(i, _, v)| v.downcast::<PastEvent<u32>>().ok().map(|e| (i, *e)))
        .collect()
}

/// The event answering `request` at node `at`.
pub fn answer(events: &[(u32, PastEvent<u32>)], at: u32, request: u64) -> Option<&PastEvent<u32>> {
    events
        .iter()
        .find(|(i, e)| *i == at && e.request() == request)
        .map(|(_, e)| e)
}

/// The `k` live ready nodes closest to `key`, closest first.
pub fn k_closest(m: &Mesh, key: NodeId, k: usize) -> Vec<u32> {
    let mut v = m.live_ready();
    v.sort_by(|&a, &b| key.cmp_closeness(m.id(a), m.id(b)));
    v.truncate(k);
    v
}

/// Live nodes holding a primary replica of `key`, sorted by index.
pub fn holders(m: &mut Mesh, key: NodeId) -> Vec<u32> {
    let mut v: Vec<u32> = m
        .live()
        .into_iter()
        .filter(|&i| {
            m.with_application::<Past<u32>, _>(i, PAST, |p, _| p.holds(key))
                .unwrap_or(false)
        })
        .collect();
    v.sort();
    v
}

pub fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort();
    v
}

/// Sum of a counter over the live nodes.
pub fn total(m: &mut Mesh, f: impl Fn(&PastStats) -> u64) -> u64 {
    m.live()
        .into_iter()
        .map(|i| {
            m.with_application::<Past<u32>, _>(i, PAST, |p, _| f(&p.stats()))
                .unwrap_or(0)
        })
        .sum()
}

/// Deterministic content of `len` bytes.
pub fn content(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Inserts `data` from node `from` (content-addressed), runs `settle`, and returns the key
/// and the insert's event.
pub fn insert(
    m: &mut Mesh,
    from: u32,
    data: Bytes,
    k: Option<usize>,
    settle: Duration,
) -> (NodeId, PastEvent<u32>) {
    let key = pastry_past::content_key(&data);
    let req = past(m, from, |p, ctx| p.insert(ctx, data, k));
    m.run_for(settle);
    let ev = take_events(m);
    let e = answer(&ev, from, req).cloned().expect("insert answered");
    (key, e)
}

/// Looks `key` up from node `from`; runs `settle`; returns the event.
pub fn lookup(m: &mut Mesh, from: u32, key: NodeId, settle: Duration) -> PastEvent<u32> {
    let req = past(m, from, |p, ctx| p.lookup(ctx, key));
    m.run_for(settle);
    let ev = take_events(m);
    answer(&ev, from, req).cloned().expect("lookup answered")
}
