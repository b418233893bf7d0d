//! The PAST workload: objects inserted on a 200-node ring survive churn and a 20% mass
//! failure, every lookup is answered, every object is retrievable at the end; without
//! churn, the k-closest invariant is restored after the failure within a reported time.

use std::time::Duration;

use pastry_sim::workload::SessionDist;
use pastry_sim::{Churn, PastWorkload, SimOptions, Simulation};

fn past(objects: u64, lookups: u64, caching: bool) -> PastWorkload {
    PastWorkload {
        objects,
        k: 5,
        object_size: 512,
        lookups,
        caching,
    }
}

#[test]
fn objects_survive_churn_and_a_20_percent_failure() {
    let opts = SimOptions {
        nodes: 200,
        lookups: 200,
        seed: 11,
        settle: Duration::from_secs(10),
        duration: Duration::from_secs(20 * 60),
        cooldown: Duration::from_secs(120),
        churn: Some(Churn::Sessions {
            mean: Duration::from_secs(30 * 60),
            dist: SessionDist::Exponential,
            graceful: 0.0,
        }),
        fail_fraction: Some(0.2),
        fail_at: Duration::from_secs(5 * 60),
        past: Some(past(100, 600, true)),
        ..SimOptions::default()
    };
    let r = Simulation::new(opts).unwrap().run().unwrap();
    let p = r.past.as_ref().expect("PAST report");
    assert!(r.checks.ok(), "{:?}", r.checks.problems);
    assert_eq!(p.stored, 100, "{p:?}");
    assert_eq!(p.insert_failures, 0);
    assert_eq!(p.objects_lost, 0, "{p:?}");
    assert_eq!(p.lookups_issued, 600);
    assert_eq!(p.lookups_failed + p.lookups_unanswered, 0, "{p:?}");
    assert_eq!(
        p.lookups_answered + p.lookups_abandoned,
        p.lookups_issued,
        "{p:?}"
    );
    assert_eq!((p.verify_issued, p.verify_answered), (100, 100), "{p:?}");
    // The failure was real and maintenance did work.
    let rep = p.repair.as_ref().expect("repair report");
    assert!(rep.under_replicated_at_failure > 0, "{rep:?}");
    assert!(p.maintenance_objects_received > 0);
    assert!(p.maintenance_msgs_per_node_s > 0.0);
    assert!(p.lookups_from_cache > 0, "caching is on");
}

#[test]
fn repair_after_a_mass_failure_is_timed_and_runs_are_deterministic() {
    let opts = SimOptions {
        nodes: 200,
        lookups: 0,
        seed: 5,
        settle: Duration::from_secs(10),
        duration: Duration::from_secs(180),
        cooldown: Duration::from_secs(30),
        fail_fraction: Some(0.2),
        fail_at: Duration::from_secs(20),
        past: Some(past(100, 300, false)),
        ..SimOptions::default()
    };
    let a = Simulation::new(opts.clone()).unwrap().run().unwrap();
    assert!(a.checks.ok(), "{:?}", a.checks.problems);
    let p = a.past.as_ref().unwrap();
    assert_eq!(
        (p.objects_lost, p.lookups_failed, p.lookups_unanswered),
        (0, 0, 0),
        "{p:?}"
    );
    assert_eq!(p.lookups_from_cache, 0, "caching is off");
    assert_eq!(p.under_replicated_at_end, 0);
    let rep = p.repair.as_ref().unwrap();
    assert!(rep.under_replicated_at_failure > 0, "{rep:?}");
    let secs = rep.repaired_s.expect("repaired");
    assert!(secs > 0.0 && secs < 120.0, "{rep:?}");
    // At least the missing replicas' content crossed the network.
    assert!(
        rep.objects_moved >= rep.under_replicated_at_failure,
        "{rep:?}"
    );
    assert!(rep.bytes_moved >= rep.objects_moved * 512, "{rep:?}");

    let b = Simulation::new(opts).unwrap().run().unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
    let q = b.past.as_ref().unwrap();
    assert_eq!(q.repair.as_ref().unwrap().bytes_moved, rep.bytes_moved);
    assert_eq!(q.lookup_mean_ms, p.lookup_mean_ms);
}

#[test]
fn bad_past_flags_are_errors_not_panics() {
    for w in [
        PastWorkload {
            k: 0,
            ..past(10, 10, true)
        },
        PastWorkload {
            k: 10,
            ..past(10, 10, true)
        },
        PastWorkload {
            object_size: 0,
            ..past(10, 10, true)
        },
        PastWorkload {
            object_size: 2 << 20,
            ..past(10, 10, true)
        },
    ] {
        let opts = SimOptions {
            nodes: 10,
            past: Some(w.clone()),
            ..SimOptions::default()
        };
        let e = Simulation::new(opts).unwrap_err().to_string();
        assert!(e.contains("--past-"), "{w:?}: {e}");
    }
}
