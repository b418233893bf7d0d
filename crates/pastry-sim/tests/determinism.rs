//! The same seed and options give the same run (trace hash and every figure); another seed
//! gives another run.

use std::time::Duration;

use pastry_sim::sim::Churn;
use pastry_sim::workload::SessionDist;
use pastry_sim::{SimOptions, Simulation};

fn opts(seed: u64) -> SimOptions {
    SimOptions {
        nodes: 150,
        lookups: 1500,
        seed,
        loss: 0.01,
        jitter: Duration::from_millis(5),
        concurrent_joins: 10,
        settle: Duration::from_secs(5),
        duration: Duration::from_secs(120),
        cooldown: Duration::from_secs(20),
        churn: Some(Churn::Sessions {
            mean: Duration::from_secs(300),
            dist: SessionDist::Exponential,
            graceful: 0.5,
        }),
        ..SimOptions::default()
    }
}

fn run(seed: u64) -> pastry_sim::Report {
    Simulation::new(opts(seed)).unwrap().run().unwrap()
}

#[test]
fn same_seed_same_trace_hash() {
    let (a, b) = (run(21), run(21));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.perf.events, b.perf.events);
    let strip = |r: &pastry_sim::Report| {
        let mut v = serde_json::to_value(r).unwrap();
        v.as_object_mut().unwrap().remove("perf");
        v
    };
    assert_eq!(strip(&a), strip(&b));
    let c = run(22);
    assert_ne!(a.trace_hash, c.trace_hash);
}
