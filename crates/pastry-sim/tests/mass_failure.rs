//! Half the ring crashes at once: the leaf sets must be correct again within a bounded,
//! reported time, and every lookup after that must be delivered at the right node.

use std::time::Duration;

use pastry_sim::{SimOptions, Simulation};

#[test]
fn half_the_ring_fails_and_recovers() {
    for seed in [8, 9] {
        let opts = SimOptions {
            nodes: 600,
            lookups: 6000,
            seed,
            settle: Duration::from_secs(10),
            duration: Duration::from_secs(120),
            fail_fraction: Some(0.5),
            fail_at: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
            ..SimOptions::default()
        };
        let r = Simulation::new(opts).unwrap().run().unwrap();
        assert!(r.checks.ok(), "seed {seed}: {:?}", r.checks.problems);
        let f = r.failure.as_ref().unwrap();
        assert_eq!(f.failed_nodes, 300);
        assert_eq!(r.live_nodes, 300);
        let rec = f.leaf_sets_recovered_s.expect("leaf sets recover");
        assert!(rec < 90.0, "seed {seed}: recovery took {rec} s");
        let ok_after = f.lookups_correct_after_s.unwrap();
        assert!(ok_after <= rec + 1.0, "seed {seed}: {f:?}");
        assert_eq!(r.checks.leaf_sets_wrong, 0);
        // The failure is real: some lookups in flight were lost or rerouted.
        assert!(r.traffic.to_dead > 0);
    }
}
