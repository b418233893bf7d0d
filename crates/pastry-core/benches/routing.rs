//! Measures the per-hop routing decision, `Node::decide(key)`, in ns per call, on a node of
//! a converged 1000-node ring built with the `Mesh` harness; separately for keys inside the
//! node's leaf-set range and keys routed through its routing table. Also the primitives it
//! leans on: `NodeId::shared_prefix_len`, `LeafSet::closest`, `RoutingTable::next_hop`.
//!
//! The ring is built once, before the benches (well under a second; its shape is printed to
//! stderr), and shared by every bench.
//! Each bench cycles through a precomputed array of random keys, so the branch predictor
//! cannot learn a single key's path.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use divan::{Bencher, black_box};
use pastry_core::mesh::Mesh;
use pastry_core::rng::Rng;
use pastry_core::{Config, Decision, Node, NodeId};

/// Nodes in the ring.
const RING: usize = 1000;
/// Seed of the mesh (ids, positions) and of the key generator.
const SEED: u64 = 0x5eed;
/// Keys per array: a power of two, so cycling is a mask.
const KEYS: usize = 1024;

/// The node under test and its key sets.
struct Fixture {
    node: Node<u32>,
    /// Random keys with `node.leaf_set().covers(key)`.
    leaf_keys: Vec<NodeId>,
    /// Random keys outside the leaf-set range: routed by the routing table.
    table_keys: Vec<NodeId>,
}

/// `Node` is `Send` but not `Sync` (applications are `Send` only), hence the mutex; each
/// bench locks it once, outside the timed loop.
static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();

fn fixture() -> MutexGuard<'static, Fixture> {
    FIXTURE
        .get_or_init(|| Mutex::new(build()))
        .lock()
        .expect("fixture lock")
}

fn build() -> Fixture {
    let mut m = Mesh::new(Config::default(), SEED);
    m.build_ring(RING, Duration::from_millis(200));
    m.run_for(Duration::from_secs(30));
    let converged = m.check_leaf_sets();
    let mean_rt = m
        .nodes
        .iter()
        .map(|n| n.routing_table().len())
        .sum::<usize>() as f64
        / RING as f64;

    let node = m.nodes.swap_remove(RING / 2);
    let mut rng = Rng::new(SEED ^ 0xbe9c);
    let mut random_key =
        || NodeId::from_u128(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()));
    let (mut leaf_keys, mut table_keys) = (Vec::new(), Vec::new());
    while leaf_keys.len() < KEYS || table_keys.len() < KEYS {
        let k = random_key();
        let set = if node.leaf_set().covers(k) {
            &mut leaf_keys
        } else {
            &mut table_keys
        };
        if set.len() < KEYS {
            set.push(k);
        }
    }
    let rare = table_keys
        .iter()
        .filter(|&&k| !matches!(node.decide(k), Decision::Forward { rare: false, .. }))
        .count();
    eprintln!(
        "routing fixture: {RING}-node ring (leaf sets {}); node {} has {} \
         leaf-set members and {} routing-table entries (ring mean {mean_rt:.1}); {rare}/{KEYS} \
         table keys take the rare path",
        if converged.is_ok() {
            "converged"
        } else {
            "NOT converged"
        },
        RING / 2,
        node.leaf_set().len(),
        node.routing_table().len(),
    );
    Fixture {
        node,
        leaf_keys,
        table_keys,
    }
}

/// Benches `f` over `keys`, one key per call, cycling.
fn over_keys<O>(bencher: Bencher, keys: &[NodeId], mut f: impl FnMut(NodeId) -> O) {
    assert!(keys.len().is_power_of_two());
    let mask = keys.len() - 1;
    let mut i = 0;
    bencher.bench_local(|| {
        let k = keys[i & mask];
        i = i.wrapping_add(1);
        f(black_box(k))
    });
}

/// `Node::decide` for keys in the leaf-set range (the last hop or two of a route).
#[divan::bench]
fn decide_leaf_set(bencher: Bencher) {
    let fx = fixture();
    over_keys(bencher, &fx.leaf_keys, |k| fx.node.decide(k));
}

/// `Node::decide` for keys outside the leaf-set range (the early hops of a route).
#[divan::bench]
fn decide_routing_table(bencher: Bencher) {
    let fx = fixture();
    over_keys(bencher, &fx.table_keys, |k| fx.node.decide(k));
}

/// `NodeId::shared_prefix_len` with b = 4, the node's id against random keys.
#[divan::bench]
fn shared_prefix_len(bencher: Bencher) {
    let fx = fixture();
    let me = fx.node.id();
    over_keys(bencher, &fx.table_keys, |k| me.shared_prefix_len(k, 4));
}

/// `LeafSet::closest` (16 members) for keys in the leaf-set range, skipping nobody.
#[divan::bench]
fn leaf_set_closest(bencher: Bencher) {
    let fx = fixture();
    let ls = fx.node.leaf_set();
    over_keys(bencher, &fx.leaf_keys, |k| ls.closest(k, |_| false));
}

/// `RoutingTable::next_hop` for keys outside the leaf-set range.
#[divan::bench]
fn routing_table_next_hop(bencher: Bencher) {
    let fx = fixture();
    let rt = fx.node.routing_table();
    over_keys(bencher, &fx.table_keys, |k| rt.next_hop(k).copied());
}

fn main() {
    // Build the ring up front, so its report does not land inside divan's table.
    drop(fixture());
    divan::main();
}
