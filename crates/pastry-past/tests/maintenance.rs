//! Replica maintenance: after replica holders crash, and after new nodes join next to a
//! key, the replicas end up exactly on the new k closest live nodes, nodes that left the
//! replica set drop their copies only after the new holders have them, and lookups keep
//! working.

mod common;

use common::*;
use pastry_core::NodeId;
use pastry_past::{PastConfig, PastEvent};

fn check_placement(
    m: &mut pastry_core::mesh::Mesh,
    keys: &[NodeId],
    what: &str,
) -> Result<(), String> {
    for &key in keys {
        let want = sorted(k_closest(m, key, 5));
        let got = holders(m, key);
        ensure(got == want, || {
            format!("{what}: {key:?} held by {got:?}, want {want:?}")
        })?;
    }
    Ok(())
}

fn check_lookups(
    m: &mut pastry_core::mesh::Mesh,
    keys: &[(NodeId, bytes::Bytes)],
    what: &str,
) -> Result<(), String> {
    let live = m.live();
    for (j, (key, data)) in keys.iter().enumerate() {
        let reader = live[(j * 5 + 1) % live.len()];
        match lookup(m, reader, *key, secs(4)) {
            PastEvent::Found { object, .. } if object.content() == data => {}
            e => return Err(format!("{what}: lookup of {key:?} from {reader}: {e:?}")),
        }
    }
    Ok(())
}

#[test]
fn crashed_holders_are_replaced_by_the_next_closest_nodes() {
    for_seeds(|seed| {
        let cfg = PastConfig {
            caching: false,
            ..PastConfig::default()
        };
        let mut m = ring(seed, 40, &cfg)?;
        let nodes = m.live();
        let mut objs = Vec::new();
        for j in 0..6u64 {
            let data = content(seed * 50 + j, 700);
            let (key, ev) = insert(&mut m, nodes[j as usize * 3], data.clone(), None, secs(3));
            ensure(matches!(ev, PastEvent::Inserted { .. }), || {
                format!("{ev:?}")
            })?;
            objs.push((key, data));
        }
        let keys: Vec<NodeId> = objs.iter().map(|(k, _)| *k).collect();
        check_placement(&mut m, &keys, "after insert")?;
        // Crash two of the five holders of the first key (the closest and a farther one).
        let h = k_closest(&m, keys[0], 5);
        m.crash(h[0]);
        m.crash(h[3]);
        m.run_for(secs(90));
        m.check_leaf_sets()?;
        check_placement(&mut m, &keys, "after crashes")?;
        check_lookups(&mut m, &objs, "after crashes")?;
        ensure(
            total(&mut m, |s| s.maintenance_objects_received) >= 2,
            || "no replica moved by maintenance".into(),
        )
    });
}

#[test]
fn joins_near_a_key_move_replicas_and_old_holders_drop_theirs() {
    for_seeds(|seed| {
        let cfg = PastConfig {
            caching: false,
            ..PastConfig::default()
        };
        let mut m = ring(seed, 30, &cfg)?;
        let nodes = m.live();
        let mut objs = Vec::new();
        for j in 0..5u64 {
            let data = content(seed * 70 + j, 900);
            let (key, ev) = insert(&mut m, nodes[j as usize], data.clone(), None, secs(3));
            ensure(matches!(ev, PastEvent::Inserted { .. }), || {
                format!("{ev:?}")
            })?;
            objs.push((key, data));
        }
        let keys: Vec<NodeId> = objs.iter().map(|(k, _)| *k).collect();
        let before = k_closest(&m, keys[0], 5);
        // Three nodes join right next to the first key: they become its closest nodes.
        let key = keys[0].as_u128();
        for (n, off) in [(0u32, 3u128), (1, u128::MAX - 5), (2, 17)] {
            let id = NodeId::from_u128(key.wrapping_add(off));
            let i = m.add_node_with_id(id);
            add_past(&mut m, i, cfg.clone());
            m.join(i, nodes[n as usize]);
            m.run_for(secs(2));
        }
        m.run_for(secs(60));
        m.check_leaf_sets()?;
        check_placement(&mut m, &keys, "after joins")?;
        let after = k_closest(&m, keys[0], 5);
        let dropped: Vec<u32> = before
            .iter()
            .copied()
            .filter(|i| !after.contains(i))
            .collect();
        ensure(dropped.len() == 3, || {
            format!("expected 3 displaced holders, {dropped:?}")
        })?;
        for i in dropped {
            let still = past(&mut m, i, |p, _| p.holds(keys[0]));
            ensure(!still, || {
                format!("node {i} kept a replica it no longer owes")
            })?;
        }
        ensure(total(&mut m, |s| s.replicas_dropped) >= 3, || {
            "drops not counted".into()
        })?;
        check_lookups(&mut m, &objs, "after joins")?;
        // Then a graceful leave and another crash: still k replicas.
        let h = k_closest(&m, keys[1], 5);
        m.leave(h[1]);
        m.crash(h[2]);
        m.run_for(secs(90));
        check_placement(&mut m, &keys, "after leave and crash")?;
        check_lookups(&mut m, &objs, "after leave and crash")?;
        let sent = total(&mut m, |s| s.maintenance_bytes_sent);
        ensure(sent > 0, || "maintenance bytes not counted".into())
    });
}

#[test]
fn a_large_store_is_synchronised_in_bounded_chunks() {
    for_seeds(|seed| {
        let cfg = PastConfig {
            caching: false,
            sync_max_keys: 8,
            sync_max_bytes: 4096,
            ..PastConfig::default()
        };
        let mut m = ring(seed, 20, &cfg)?;
        let nodes = m.live();
        let mut keys = Vec::new();
        for j in 0..60u64 {
            let data = content(seed * 1000 + j, 1000);
            let key = pastry_past::content_key(&data);
            past(&mut m, nodes[j as usize % nodes.len()], |p, ctx| {
                p.insert(ctx, data, None)
            });
            keys.push(key);
        }
        m.run_for(secs(5));
        let ev = take_events(&mut m);
        let ok = ev
            .iter()
            .filter(|(_, e)| matches!(e, PastEvent::Inserted { .. }))
            .count();
        ensure(ok == 60, || format!("{ok} of 60 inserts succeeded"))?;
        let victims: Vec<u32> = k_closest(&m, keys[0], 2);
        for v in victims {
            m.crash(v);
        }
        m.run_for(secs(150));
        check_placement(&mut m, &keys, "after crashes with small chunks")
    });
}
