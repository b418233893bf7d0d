//! Churn: Poisson arrivals and exponential or Pareto sessions, and a trace file, with
//! lookups throughout. No loss, so no delivery may be at a wrong node; after the churn
//! stops the leaf sets must converge.

use std::time::Duration;

use pastry_sim::sim::Churn;
use pastry_sim::workload::{SessionDist, parse_trace};
use pastry_sim::{SimOptions, Simulation};

fn churn_opts(seed: u64, churn: Churn) -> SimOptions {
    SimOptions {
        nodes: 200,
        lookups: 4000,
        seed,
        settle: Duration::from_secs(10),
        duration: Duration::from_secs(600),
        cooldown: Duration::from_secs(60),
        churn: Some(churn),
        ..SimOptions::default()
    }
}

#[test]
fn session_churn_keeps_lookups_consistent() {
    for (seed, dist) in [
        (5, SessionDist::Exponential),
        (6, SessionDist::Pareto { alpha: 2.0 }),
    ] {
        let churn = Churn::Sessions {
            mean: Duration::from_secs(600),
            dist,
            graceful: 0.3,
        };
        let r = Simulation::new(churn_opts(seed, churn))
            .unwrap()
            .run()
            .unwrap();
        assert!(r.checks.ok(), "seed {seed}: {:?}", r.checks.problems);
        // About 200 arrivals and as many departures in 10 minutes.
        assert!(r.joins.started >= 199 + 150, "{:?}", r.joins);
        assert_eq!(r.lookups.wrong, 0);
        assert!(
            r.lookups.delivered_pct >= 99.0,
            "seed {seed}: {:?}",
            r.lookups
        );
        assert_eq!(r.checks.leaf_sets_wrong, 0);
        assert!(
            r.traffic.to_dead > 0,
            "crashed nodes must be noticed by someone"
        );
    }
}

#[test]
fn trace_driven_churn() {
    let mut text = String::new();
    for k in 0..40 {
        text.push_str(&format!("{} join n{k}\n", k * 5));
    }
    for k in 0..20 {
        let action = if k % 2 == 0 { "crash" } else { "leave" };
        text.push_str(&format!("{} {action} n{k}\n", 200 + k * 5));
    }
    let trace = parse_trace(&text).unwrap();
    let r = Simulation::new(churn_opts(7, Churn::Trace(trace)))
        .unwrap()
        .run()
        .unwrap();
    assert!(r.checks.ok(), "{:?}", r.checks.problems);
    assert_eq!(r.live_nodes, 200 + 40 - 20);
    assert_eq!(r.checks.leaf_sets_checked, 220);
    assert_eq!(r.lookups.wrong, 0);
}
