//! Separate `pastry node` processes on 127.0.0.1: a 5-process ring that routes to the
//! numerically closest node, `pastry lookup`, kill -9 of one process (the leaf sets drop it
//! and its keys are delivered by the new root), a restart with the same data directory
//! (same id, back in the leaf sets), and the command's clear errors on bad input.

use std::net::UdpSocket;
use std::process::Command;

use pastry_core::NodeId;
use pastry_net::client;

mod common;
use common::*;

/// Fast failure detection so the test does not wait out the default 7 s heartbeats.
const FAST: &str = "heartbeat_interval_ms = 500\nheartbeat_timeout_ms = 800\n\
probe_timeout_initial_ms = 300\nprobe_timeout_min_ms = 100\nprobe_timeout_max_ms = 500\n\
join_timeout_ms = 1000\n";

fn closest(ids: &[String], key: NodeId) -> String {
    ids.iter()
        .map(|s| NodeId::from_hex(s).unwrap())
        .reduce(|a, b| if key.is_closer(b, a) { b } else { a })
        .unwrap()
        .to_string()
}

fn leaf_sets_hold_exactly(nodes: &[&NodeProc], ids: &[String]) -> bool {
    nodes.iter().all(|n| {
        client::status(&n.http).is_ok_and(|s| {
            s.state == "ready"
                && ids.iter().all(|id| *id == s.id || s.leaf_set_contains(id))
                && s.leaf_set
                    .left
                    .iter()
                    .chain(&s.leaf_set.right)
                    .all(|x| ids.contains(x))
        })
    })
}

#[test]
fn five_processes_route_survive_kill_9_and_restart_with_the_same_id() {
    let tmp = TempDir::new("ring");
    let config = tmp.path().join("pastry.toml");
    std::fs::write(&config, FAST).unwrap();
    let dir = |i: usize| tmp.path().join(format!("n{i}"));

    let first = start(&dir(0), &config, None);
    let mut procs = vec![first];
    for i in 1..5 {
        let b = procs[0].addr.clone();
        procs.push(start(&dir(i), &config, Some(&b)));
    }
    let ids: Vec<String> = procs.iter().map(|p| p.id.clone()).collect();
    let all: Vec<&NodeProc> = procs.iter().collect();
    wait_until(20, "5 processes ready with full leaf sets", || {
        leaf_sets_hold_exactly(&all, &ids)
    });
    let s = client::status(&procs[2].http).unwrap();
    assert_eq!(s.id.len(), 32);
    assert_eq!(s.routing_table.first().map(Vec::len), Some(16));

    // Routing from every process reaches the closest node; `pastry lookup` says so too.
    let mut rng = pastry_core::rng::Rng::new(7);
    for k in 0..20 {
        let key = NodeId::from_u128(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()));
        let r = client::route(&procs[k % 5].http, key).unwrap();
        assert_eq!(r.root, closest(&ids, key), "key {key}");
        assert_eq!(r.path.first(), Some(&procs[k % 5].id));
    }
    let key = NodeId::from_u128(0x1234 << 100);
    let out = Command::new(BIN)
        .args(["lookup", "--node", &procs[1].http, &key.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("root {}", closest(&ids, key))),
        "{text}"
    );
    assert!(text.contains("path ("), "{text}");

    let m = client::get(&format!("{}/metrics", procs[0].http)).unwrap();
    assert_eq!(m.status, 200);
    for name in [
        "pastry_messages_out_total",
        "pastry_bytes_in_total",
        "pastry_route_hops_bucket",
        "pastry_connection_rtt_seconds_bucket",
        "pastry_leaf_set_size",
        "pastry_connections",
        "pastry_routes_originated_total",
    ] {
        assert!(m.body.contains(name), "/metrics lacks {name}");
    }
    assert!(pastry_net::status::sum_metric(&m.body, "pastry_messages_in_total") > 0.0);

    // kill -9 one process: the others drop it from their leaf sets and its key (its own id)
    // is delivered by the new root.
    let victim = procs.remove(3);
    let victim_id = victim.id.clone();
    let victim_addr = victim.addr.clone();
    drop(victim); // SIGKILL
    let rest: Vec<String> = ids.iter().filter(|i| **i != victim_id).cloned().collect();
    let key = NodeId::from_hex(&victim_id).unwrap();
    let new_root = closest(&rest, key);
    let took = wait_until(30, "the dead node's key delivered by the new root", || {
        client::route(&procs[0].http, key).is_ok_and(|r| r.root == new_root)
    });
    println!("kill -9 to re-owned key: {:.2} s", took.as_secs_f64());
    let live: Vec<&NodeProc> = procs.iter().collect();
    wait_until(30, "leaf sets without the dead node", || {
        leaf_sets_hold_exactly(&live, &rest)
    });

    // Restart with the same data directory: same id, back in every leaf set.
    let bootstrap = procs[0].addr.clone();
    let back = start(&dir(3), &config, Some(&bootstrap));
    assert_eq!(back.id, victim_id, "a restart keeps the id");
    assert_ne!(back.addr, victim_addr, "the restarted node has a new port");
    procs.push(back);
    let all: Vec<&NodeProc> = procs.iter().collect();
    wait_until(30, "restarted node back in every leaf set", || {
        leaf_sets_hold_exactly(&all, &ids)
    });
    let r = client::route(&procs[0].http, key).unwrap();
    assert_eq!(r.root, victim_id);
}

fn run_node(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("node")
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn node_reports_bad_config_port_in_use_and_dead_bootstrap_clearly() {
    let tmp = TempDir::new("bad");
    let data = tmp.path().join("d");
    let data = data.to_str().unwrap();

    let (code, err) = run_node(&["--data-dir", data, "--config", "/nonexistent/x.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/x.toml"), "{err}");

    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "heartbeat_intervl_ms = 5\n").unwrap();
    let (code, err) = run_node(&["--data-dir", data, "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml") && err.contains("heartbeat_intervl_ms"),
        "{err}"
    );

    std::fs::write(&bad, "leaf_set_size = 7\n").unwrap();
    let (code, err) = run_node(&["--data-dir", data, "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("leaf_set_size"), "{err}");

    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let (code, err) = run_node(&[
        "--data-dir",
        data,
        "--listen",
        &port,
        "--http",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("address already in use") && err.contains(&port),
        "{err}"
    );

    // A bootstrap "node" that never answers: a bound UDP socket nobody reads.
    let quick = tmp.path().join("quick.toml");
    std::fs::write(
        &quick,
        "join_timeout_ms = 300\njoin_attempts = 2\n[net]\ndial_timeout_ms = 200\n",
    )
    .unwrap();
    let (code, err) = run_node(&[
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--config",
        quick.to_str().unwrap(),
        "--bootstrap",
        &port,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no bootstrap node answered") && err.contains(&port),
        "{err}"
    );
}
