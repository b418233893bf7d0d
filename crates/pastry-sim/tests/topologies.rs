//! The sphere and measured-matrix network models route as correctly as the plane, with
//! latencies in the model's range; a matrix smaller than the ring maps nodes onto hosts.

use std::time::Duration;

use pastry_sim::{SimOptions, Simulation, TopologySpec};

fn small(topology: TopologySpec, seed: u64) -> SimOptions {
    SimOptions {
        nodes: 250,
        lookups: 2000,
        seed,
        topology,
        concurrent_joins: 5,
        settle: Duration::from_secs(10),
        duration: Duration::from_secs(20),
        cooldown: Duration::from_secs(10),
        ..SimOptions::default()
    }
}

#[test]
fn sphere_routes_correctly() {
    let r = Simulation::new(small(TopologySpec::Sphere, 13))
        .unwrap()
        .run()
        .unwrap();
    assert!(r.checks.ok(), "{:?}", r.checks.problems);
    assert_eq!(r.lookups.correct, 2000);
    assert_eq!(r.topology, "sphere");
}

#[test]
fn matrix_with_fewer_hosts_than_nodes() {
    // 40 hosts in two "continents": 10 ms RTT within, 150 ms across.
    let hosts = 40;
    let mut text = String::new();
    for i in 0..hosts {
        let row: Vec<String> = (0..hosts)
            .map(|j| {
                let rtt = if i == j {
                    0.0
                } else if (i < hosts / 2) == (j < hosts / 2) {
                    10.0
                } else {
                    150.0
                };
                format!("{rtt}")
            })
            .collect();
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    let path = std::env::temp_dir().join(format!("pastry-sim-matrix-{}.txt", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let r = Simulation::new(small(TopologySpec::Matrix(path.clone()), 14))
        .unwrap()
        .run()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(r.checks.ok(), "{:?}", r.checks.problems);
    assert_eq!(r.lookups.correct, 2000);
    // Two clusters: proximity routing keeps most hops inside the origin's cluster, so
    // the median overlay route is well under the worst case of one 75 ms crossing per hop.
    assert!(r.lookups.rdp.samples > 1500);
}

#[test]
fn unreadable_or_malformed_matrix_is_a_clear_error() {
    let missing = std::env::temp_dir().join("pastry-sim-no-such-matrix.txt");
    let e = Simulation::new(small(TopologySpec::Matrix(missing), 1)).unwrap_err();
    assert!(format!("{e:#}").contains("cannot read RTT matrix"), "{e:#}");
    let path = std::env::temp_dir().join(format!("pastry-sim-bad-{}.txt", std::process::id()));
    std::fs::write(&path, "0 1\n1\n").unwrap();
    let e = Simulation::new(small(TopologySpec::Matrix(path.clone()), 1)).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(format!("{e:#}").contains("not square"), "{e:#}");
}
