//! Many joins in flight at once (the case that splits rings in the published protocol):
//! the ring must still converge to correct leaf sets and route consistently.

use std::time::Duration;

use pastry_sim::{SimOptions, Simulation};

#[test]
fn hundreds_of_simultaneous_joins_converge() {
    for seed in [3, 4] {
        let opts = SimOptions {
            nodes: 600,
            lookups: 3000,
            seed,
            concurrent_joins: 200,
            settle: Duration::from_secs(20),
            duration: Duration::from_secs(20),
            cooldown: Duration::from_secs(10),
            ..SimOptions::default()
        };
        let r = Simulation::new(opts).unwrap().run().unwrap();
        assert!(r.checks.ok(), "seed {seed}: {:?}", r.checks.problems);
        assert_eq!(r.joins.completed, 599);
        assert_eq!(r.joins.concurrency, 200);
        assert_eq!(r.checks.leaf_sets_wrong, 0);
        assert_eq!(r.lookups.correct, 3000);
        // Two hundred at a time finish far sooner than one at a time would (~600 x 0.4 s).
        assert!(r.joins.build_sim_s < 60.0, "{}", r.joins.build_sim_s);
    }
}
