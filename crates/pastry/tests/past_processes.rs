//! PAST across 8 `pastry node` processes on 127.0.0.1: 200 objects put, two processes
//! killed with kill -9 and one restarted on the same data directory (its redb store), then
//! every object read back byte-identical; a put over the size limit and a get of a missing
//! key fail with clear errors, through the HTTP API and the `pastry put/get/replicas`
//! commands.

use std::process::Command;
use std::time::Instant;

use pastry_core::NodeId;
use pastry_net::client;

mod common;
use common::*;

/// Fast failure detection so the test does not wait out the default 7 s heartbeats.
const FAST: &str = "heartbeat_interval_ms = 500\nheartbeat_timeout_ms = 800\n\
probe_timeout_initial_ms = 300\nprobe_timeout_min_ms = 100\nprobe_timeout_max_ms = 500\n\
join_timeout_ms = 1000\n\
[past]\nmax_object_bytes = 65536\nrequest_timeout_ms = 4000\nsync_interval_ms = 5000\n\
update_sync_delay_ms = 500\n";

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

fn objects(n: usize) -> Vec<Vec<u8>> {
    let mut rng = pastry_core::rng::Rng::new(42);
    (0..n)
        .map(|i| {
            let len = 1 + rng.below(4096) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            v[..len.min(8)].copy_from_slice(&(i as u64).to_be_bytes()[..len.min(8)]);
            v
        })
        .collect()
}

fn cli(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eight_processes_keep_every_object_through_kill_9_and_restart() {
    let started = Instant::now();
    let tmp = TempDir::new("past");
    let config = tmp.path().join("pastry.toml");
    std::fs::write(&config, FAST).unwrap();
    let dir = |i: usize| tmp.path().join(format!("n{i}"));

    let mut procs = vec![start(&dir(0), &config, None)];
    for i in 1..8 {
        let b = procs[0].addr.clone();
        procs.push(start(&dir(i), &config, Some(&b)));
    }
    let ids: Vec<String> = procs.iter().map(|p| p.id.clone()).collect();
    let all: Vec<&NodeProc> = procs.iter().collect();
    wait_until(30, "8 processes ready with full leaf sets", || {
        leaf_sets_hold_exactly(&all, &ids)
    });

    // 200 objects, put from every process in turn (8 clients at once).
    let objs = objects(200);
    let https: Vec<String> = procs.iter().map(|p| p.http.clone()).collect();
    let keys: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (objs, https) = (&objs, &https);
                s.spawn(move || {
                    (t..objs.len())
                        .step_by(8)
                        .map(|i| {
                            let r = client::past_put(&https[i % 8], &objs[i], None)
                                .unwrap_or_else(|e| panic!("put {i}: {e:#}"));
                            let holders = r["holders"].as_array().map_or(0, Vec::len);
                            assert_eq!(holders, 5, "put {i}: {r}");
                            (i, r["key"].as_str().unwrap().to_string())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, String)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort();
        all.into_iter().map(|(_, k)| k).collect()
    });
    for (o, k) in objs.iter().zip(&keys) {
        assert_eq!(
            *k,
            pastry_past::content_key(o).to_string(),
            "keys are content hashes"
        );
    }
    println!(
        "200 puts done after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // `pastry replicas` names 5 nodes of the ring; `pastry get` writes the bytes.
    let (code, out, err) = cli(&["replicas", "--node", &procs[1].http, &keys[0]]);
    assert_eq!(code, 0, "{err}");
    let lines = String::from_utf8_lossy(&out).lines().count();
    assert!(lines >= 5, "{}", String::from_utf8_lossy(&out));
    let file = tmp.path().join("obj0");
    let (code, _, err) = cli(&[
        "get",
        "--node",
        &procs[2].http,
        &keys[0],
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), objs[0]);

    // kill -9 two processes; restart one of them on the same data directory.
    let held = |http: &str| {
        client::status(http)
            .unwrap()
            .counters
            .get("past_replicas_held")
            .copied()
            .unwrap_or(0)
    };
    let held_before = held(&procs[3].http);
    assert!(held_before > 0, "node 3 holds replicas");
    let second = procs.remove(6);
    let first = procs.remove(3);
    let (first_id, first_dir) = (first.id.clone(), dir(3));
    drop(first); // SIGKILL
    drop(second); // SIGKILL
    let back = start(&first_dir, &config, Some(&procs[0].addr));
    assert_eq!(back.id, first_id, "a restart keeps the id");
    // Right after the restart (before maintenance could refill it), its store has them.
    let held_after = held(&back.http);
    assert!(
        held_after >= held_before,
        "{held_after} of {held_before} replicas after restart"
    );
    procs.push(back);
    let live_ids: Vec<String> = procs.iter().map(|p| p.id.clone()).collect();
    let live: Vec<&NodeProc> = procs.iter().collect();
    wait_until(30, "leaf sets of the 7 live processes exact", || {
        leaf_sets_hold_exactly(&live, &live_ids)
    });
    println!(
        "ring repaired after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Every object, from every live process in turn, byte-identical.
    let https: Vec<String> = procs.iter().map(|p| p.http.clone()).collect();
    std::thread::scope(|s| {
        for t in 0..7 {
            let (objs, keys, https) = (&objs, &keys, &https);
            s.spawn(move || {
                for i in (t..objs.len()).step_by(7) {
                    let key = NodeId::from_hex(&keys[i]).unwrap();
                    let got = client::past_get(&https[(i + 1) % 7], key)
                        .unwrap_or_else(|e| panic!("get {i} ({key}): {e:#}"));
                    assert!(got == objs[i], "object {i} differs");
                }
            });
        }
    });
    println!(
        "200 gets done after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The restarted process is again a replica node of some keys.
    let restarted = procs.last().unwrap();
    let named = keys
        .iter()
        .filter(|k| {
            client::past_replicas(&restarted.http, NodeId::from_hex(k).unwrap())
                .is_ok_and(|r| r.to_string().contains(&first_id))
        })
        .count();
    assert!(
        named > 0,
        "the restarted node is a replica node of some keys"
    );

    // Clear errors: too large, missing, malformed.
    let big = vec![7u8; 65_537];
    let e = client::past_put(&procs[0].http, &big, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("413") && e.contains("65536"), "{e}");
    let big_file = tmp.path().join("big");
    std::fs::write(&big_file, &big).unwrap();
    let (code, _, err) = cli(&["put", "--node", &procs[0].http, big_file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("larger than") && err.contains("65536"),
        "{err}"
    );
    let missing = "0123456789abcdef0123456789abcdef";
    let e = client::past_get(&procs[1].http, NodeId::from_hex(missing).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("404") && e.contains("no object"), "{e}");
    let (code, out, err) = cli(&["get", "--node", &procs[1].http, missing]);
    assert_eq!(code, 2, "{err}");
    assert!(
        out.is_empty() && err.contains("no object under this key"),
        "{err}"
    );
    let (code, _, err) = cli(&["get", "--node", &procs[1].http, "not-a-key"]);
    assert_eq!(code, 2);
    assert!(err.contains("32 hexadecimal digits"), "{err}");
    let r = client::get(&format!("{}/past/get/xyz", procs[1].http)).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    println!("done after {:.1} s", started.elapsed().as_secs_f64());
}
