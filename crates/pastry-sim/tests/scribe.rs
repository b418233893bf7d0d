//! The Scribe and SplitStream workloads on small rings: every expected member gets every
//! message on a static ring, nearly all under churn; every node gets every stripe, and
//! after a 25% mass failure the survivors get at least S-1 stripes again within a reported
//! time; the same seed gives the same trace hash.

use std::time::Duration;

use pastry_sim::workload::SessionDist;
use pastry_sim::{Churn, ScribeWorkload, SimOptions, Simulation, SplitStreamWorkload};

fn scribe(topics: u32, max_group: usize, messages: u64) -> ScribeWorkload {
    ScribeWorkload {
        topics,
        min_group: 5,
        max_group,
        messages,
        ..ScribeWorkload::default()
    }
}

fn scribe_opts(seed: u64) -> SimOptions {
    SimOptions {
        nodes: 200,
        lookups: 0,
        seed,
        settle: Duration::from_secs(5),
        duration: Duration::from_secs(60),
        cooldown: Duration::from_secs(20),
        scribe: Some(scribe(40, 150, 200)),
        ..SimOptions::default()
    }
}

#[test]
fn every_member_gets_every_message_on_a_static_ring_and_runs_are_deterministic() {
    let a = Simulation::new(scribe_opts(3)).unwrap().run().unwrap();
    assert!(a.checks.ok(), "{:?}", a.checks.problems);
    let s = a.scribe.as_ref().expect("scribe report");
    assert_eq!(s.topics, 40);
    assert_eq!((s.group_min, s.group_max), (5, 150), "{s:?}");
    assert_eq!(s.attached_at_settle, s.memberships, "{s:?}");
    assert_eq!(s.messages_published, 200);
    assert_eq!(s.publishes_failed, 0);
    assert!(s.expected_deliveries > 1000, "{s:?}");
    assert_eq!(
        s.delivered, s.expected_deliveries,
        "{:?}",
        s.missed_examples
    );
    assert_eq!(s.delivery_ratio, 1.0);
    assert_eq!(s.duplicates, 0);
    // Trees are real trees: members below a root, interior nodes with children.
    assert_eq!(s.members_not_in_tree, 0);
    assert!(s.depth_mean >= 1.0 && s.depth_max >= 2, "{s:?}");
    assert!(s.interior_nodes > 0 && s.node_stress_max >= 2, "{s:?}");
    // Delivery through the tree costs more than a direct send, but not absurdly more.
    assert!(
        s.rdp.samples > 0 && s.rdp.p50 >= 1.0 && s.rdp.mean < 5.0,
        "{:?}",
        s.rdp
    );
    assert!(s.control_msgs_per_node_s > 0.0);
    // Link stress on the router network under the plane: the tree spreads a message's
    // copies, where unicast from the root sends one per member over the root's access link
    // (the largest group has 150 members).
    let l = s.link_stress.as_ref().expect("link stress on the plane");
    assert_eq!(l.messages, 200, "{l:?}");
    assert!(l.unicast_max >= 149, "{l:?}");
    assert!(l.mean >= 1.0 && l.mean < l.unicast_mean, "{l:?}");
    assert!(l.max < l.unicast_max / 4, "{l:?}");
    assert!(l.ip_links_per_message > 1.0, "{l:?}");

    let b = Simulation::new(scribe_opts(3)).unwrap().run().unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.perf.events, b.perf.events);
    let bs = b.scribe.as_ref().unwrap();
    assert_eq!(
        (s.delivered, s.rdp.samples, s.tree_nodes),
        (bs.delivered, bs.rdp.samples, bs.tree_nodes)
    );
    let bl = bs.link_stress.as_ref().unwrap();
    assert_eq!((l.max, l.unicast_max), (bl.max, bl.unicast_max));
    assert_eq!(l.mean.to_bits(), bl.mean.to_bits());
    let c = Simulation::new(scribe_opts(4)).unwrap().run().unwrap();
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn nearly_every_expected_member_gets_every_message_under_churn() {
    let opts = SimOptions {
        duration: Duration::from_secs(10 * 60),
        cooldown: Duration::from_secs(30),
        churn: Some(Churn::Sessions {
            mean: Duration::from_secs(60 * 60),
            dist: SessionDist::Exponential,
            graceful: 0.0,
        }),
        scribe: Some(scribe(40, 150, 400)),
        ..scribe_opts(8)
    };
    let r = Simulation::new(opts).unwrap().run().unwrap();
    let s = r.scribe.as_ref().unwrap();
    assert_eq!(s.messages_published, 400);
    assert!(s.joiner_subscriptions > 0, "{s:?}");
    assert!(s.expected_deliveries > 2000, "{s:?}");
    assert!(s.delivery_ratio >= 0.98, "{s:?}");
    assert_eq!(s.duplicates, 0);
}

fn split_opts(fail: Option<f64>) -> SimOptions {
    SimOptions {
        nodes: 200,
        lookups: 0,
        seed: 5,
        settle: Duration::from_secs(5),
        duration: Duration::from_secs(if fail.is_some() { 100 } else { 20 }),
        cooldown: Duration::from_secs(10),
        fail_fraction: fail,
        fail_at: Duration::from_secs(10),
        splitstream: Some(SplitStreamWorkload::default()),
        ..SimOptions::default()
    }
}

#[test]
fn every_node_gets_all_sixteen_stripes() {
    let r = Simulation::new(split_opts(None)).unwrap().run().unwrap();
    assert!(r.checks.ok(), "{:?}", r.checks.problems);
    let s = r.splitstream.as_ref().expect("splitstream report");
    assert_eq!((s.stripes, s.capacity), (16, 16));
    assert_eq!(s.members, 200);
    assert_eq!(s.attached_at_settle, 200, "{s:?}");
    assert_eq!(s.blocks_published, 20);
    assert_eq!(s.nodes_counted, 200);
    assert_eq!(s.all_stripes_pct, 100.0, "{:?}", s.stripes_histogram);
    assert_eq!(s.duplicate_parts, 0);
    let f = &s.forest_at_start;
    assert_eq!(f.fully_attached, 200);
    // Capacity is respected; most interior nodes forward in one stripe only.
    assert!(f.stress_max <= 16, "{f:?}");
    assert!(f.interior_in_several * 2 < f.interior_nodes, "{f:?}");
}

#[test]
fn survivors_get_fifteen_of_sixteen_stripes_again_after_a_25_percent_failure() {
    let r = Simulation::new(split_opts(Some(0.25)))
        .unwrap()
        .run()
        .unwrap();
    assert!(r.checks.ok(), "{:?}", r.checks.problems);
    let s = r.splitstream.as_ref().unwrap();
    assert_eq!(s.all_stripes_pct, 100.0, "before the failure");
    let f = s.failure.as_ref().expect("failure report");
    assert_eq!(f.survivors, 150);
    // The failure cuts stripes, but re-attached nodes get the blocks they missed from
    // their new parents (Scribe's replay), so no block misses more than one stripe at
    // more than 1% of the survivors, and the forest recovers within the run.
    assert!(f.min_ge_s1_pct >= 99.0, "{f:?}");
    let rec = f.recovery_s.expect("recovered");
    assert!(rec < 80.0, "{f:?}");
    assert!(f.after_recovery_min_ge_s1_pct >= 99.0, "{f:?}");
    assert!(f.last_block_ge_s1_pct >= 99.0, "{f:?}");
}
