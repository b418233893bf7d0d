use std::time::Duration;
use pastry_core::mesh::Mesh;
use pastry_core::{Config, NodeId};
fn main() {
    let seed = 3;
    let mut m = Mesh::new(Config::default(), seed);
    m.build_ring(80, Duration::from_millis(500));
    m.run_for(Duration::from_secs(30));
    let mut ids: Vec<(NodeId, u32)> = m.live().into_iter().map(|i| (m.id(i), i)).collect();
    ids.sort();
    let dead: Vec<NodeId> = (1..=8).map(|k| ids[(10 + k) % ids.len()].0).collect();
    for k in 1..=8 { m.crash(ids[(10 + k) % ids.len()].1); }
    for t in 0..90 {
        m.run_for(Duration::from_secs(1));
        let holders: Vec<usize> = dead.iter().map(|d| m.live().iter().filter(|&&i| m.nodes[i as usize].leaf_set().contains(*d)).count()).collect();
        if t % 3 == 0 { println!("t={t}s holders per dead node {holders:?}"); }
        if holders.iter().all(|&h| h == 0) { println!("all gone at {t}s"); break; }
    }
}
