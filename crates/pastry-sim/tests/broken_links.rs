//! Non-transitive connectivity: some pairs of nodes cannot reach each other at all while
//! each reaches everyone else. Members reached only through another member stay in the
//! leaf sets, messages for them are relayed, and joins whose root cannot answer directly
//! get the answer through the root's members.

use std::time::Duration;

use pastry_sim::{SimOptions, Simulation};

#[test]
fn three_percent_of_links_broken() {
    // Before relaying, every one of these seeds delivered at a wrong node (1 to 6 lookups)
    // and ended with about a third of the leaf sets wrong. Seed 3 kept a wrong leaf set
    // when a node's right neighbour (whose heartbeats carry its leaf set) was unreachable,
    // seed 5 when its left neighbour was; seeds 4 and 8 looped between a node and a
    // relay that no longer knew the target; seed 4 had a join fail for want of its root's
    // answer.
    let (mut rescued, mut relayed) = (0, 0);
    for seed in [1, 2, 3, 4, 5, 8] {
        let opts = SimOptions {
            nodes: 300,
            lookups: 3000,
            seed,
            broken_links: 0.03,
            settle: Duration::from_secs(10),
            duration: Duration::from_secs(30),
            cooldown: Duration::from_secs(60),
            ..SimOptions::default()
        };
        let r = Simulation::new(opts).unwrap().run().unwrap();
        assert!(r.checks.ok(), "seed {seed}: {:?}", r.checks.problems);
        assert!(r.traffic.dropped > 0);
        assert_eq!(r.joins.failed, 0, "seed {seed}");
        assert_eq!(r.lookups.delivered, 3000, "seed {seed}: {:?}", r.lookups);
        assert_eq!(r.lookups.wrong, 0, "seed {seed}");
        assert_eq!(r.checks.violations, 0, "seed {seed}");
        assert_eq!(
            r.checks.leaf_sets_wrong, 0,
            "seed {seed}: {:?}",
            r.checks.leaf_set_examples
        );
        rescued += r.traffic.probes_rescued;
        relayed += r.traffic.relayed_hops;
    }
    assert!(rescued > 0 && relayed > 0, "{rescued} {relayed}");
}
