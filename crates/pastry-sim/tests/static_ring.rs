//! A ring built one join at a time, then lookups: every delivery at the right node, hops
//! within ceil(log16 N) + 1, every leaf set equal to the true neighbours.

use std::time::Duration;

use pastry_sim::{SimOptions, Simulation};

#[test]
fn serial_joins_then_lookups_are_all_correct() {
    for seed in [1, 2] {
        let opts = SimOptions {
            nodes: 300,
            lookups: 3000,
            seed,
            concurrent_joins: 1,
            settle: Duration::from_secs(10),
            duration: Duration::from_secs(20),
            cooldown: Duration::from_secs(10),
            ..SimOptions::default()
        };
        let r = Simulation::new(opts).unwrap().run().unwrap();
        assert!(r.checks.ok(), "seed {seed}: {:?}", r.checks.problems);
        assert_eq!(r.joins.completed, 299, "seed {seed}");
        assert_eq!(r.lookups.issued, 3000);
        assert_eq!(r.lookups.correct, 3000, "seed {seed}: {:?}", r.lookups);
        assert_eq!(r.checks.leaf_sets_wrong, 0);
        assert_eq!(r.checks.leaf_sets_checked, 300);
        // log16(300) = 2.06: routes take at most 3 hops plus a leaf-set hop.
        assert!(
            r.lookups.hops_histogram.len() <= 5,
            "{:?}",
            r.lookups.hops_histogram
        );
        assert!(
            r.lookups.mean_hops > 1.5 && r.lookups.mean_hops < 3.0,
            "{}",
            r.lookups.mean_hops
        );
        // Proximity routing: overlay routes are longer than direct, but not wildly.
        assert!(
            r.lookups.rdp.p50 >= 1.0 && r.lookups.rdp.p50 < 2.0,
            "{:?}",
            r.lookups.rdp
        );
        // An idle ring's maintenance stays within the budget.
        assert!(r.traffic.control_msgs_per_node_s < 0.3, "{:?}", r.traffic);
        assert_eq!(r.traffic.dropped + r.traffic.to_dead, 0);
    }
}
