//! The ring splits into two halves and heals: while split, each half delivers the other's
//! keys (the checker must see those violations); after the heal the halves merge back into
//! one ring with correct leaf sets.

use std::time::Duration;

use pastry_sim::workload::Partition;
use pastry_sim::{SimOptions, Simulation};

#[test]
fn partition_then_heal_merges_the_ring() {
    let opts = SimOptions {
        nodes: 300,
        lookups: 3000,
        seed: 10,
        settle: Duration::from_secs(10),
        duration: Duration::from_secs(100),
        partition: Some(Partition {
            start: Duration::from_secs(10),
            length: Duration::from_secs(40),
        }),
        cooldown: Duration::from_secs(200),
        ..SimOptions::default()
    };
    let r = Simulation::new(opts).unwrap().run().unwrap();
    let p = r.partition.as_ref().unwrap();
    assert!(!r.checks.expect_clean);
    assert!(
        p.violations_during > 0,
        "the checker sees split-brain deliveries: {p:?}"
    );
    assert!(r.traffic.dropped > 0);
    let merged = p.leaf_sets_merged_s.expect("the halves merge");
    assert!(merged < 250.0, "{p:?}");
    assert_eq!(
        r.checks.leaf_sets_wrong, 0,
        "{:?}",
        r.checks.leaf_set_examples
    );
    assert_eq!(r.live_nodes, 300);
}
