//! Storage management: a replica node without room diverts its replica to a leaf-set
//! member and keeps a pointer (replica diversion); lookups follow the pointer; a named
//! insert whose neighbourhood is full moves to the next salt (file diversion); when no
//! node can take the object, the insert fails with `NoSpace`.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use pastry_core::NodeId;
use pastry_past::{InsertFailure, PastConfig, PastEvent, named_key};

fn tiny() -> PastConfig {
    PastConfig {
        quota_bytes: 2_000,
        caching: false,
        ..PastConfig::default()
    }
}

fn roomy() -> PastConfig {
    PastConfig {
        quota_bytes: 10_000_000,
        caching: false,
        ..PastConfig::default()
    }
}

/// Ids of the `n` nodes closest to `key` in a ring about to be built: decided after the
/// ring exists, so configs are assigned by id rank.
fn full_near(m: &pastry_core::mesh::Mesh, key: NodeId, n: usize) -> Vec<u32> {
    k_closest(m, key, n)
}

#[test]
fn full_replica_nodes_divert_to_their_leaf_set_and_lookups_follow_pointers() {
    for_seeds(|seed| {
        // Build first with roomy nodes to learn the ring, then register PAST by rank.
        let mut m = pastry_core::mesh::Mesh::new(pastry_core::Config::default(), seed);
        m.build_ring(40, secs(1));
        m.run_for(secs(20));
        m.check_leaf_sets()?;
        let data = content(seed, 1_000);
        let key = pastry_past::content_key(&data);
        let full = full_near(&m, key, 5);
        for i in m.live() {
            add_past(&mut m, i, if full.contains(&i) { tiny() } else { roomy() });
        }
        let client = m
            .live()
            .into_iter()
            .find(|i| !full.contains(i))
            .ok_or("client")?;
        let (_, ev) = insert(&mut m, client, data.clone(), None, secs(4));
        ensure(matches!(ev, PastEvent::Inserted { .. }), || {
            format!("insert: {ev:?}")
        })?;
        let mut diverted_to = Vec::new();
        for &f in &full {
            let (holds, ptr) = past(&mut m, f, |p, _| (p.holds(key), p.pointer(key)));
            ensure(!holds, || format!("full node {f} stored it"))?;
            let h = ptr.ok_or_else(|| format!("full node {f} has no pointer"))?;
            ensure(!full.iter().any(|&x| m.id(x) == h.id), || {
                "diverted into the replica set".into()
            })?;
            let holds = past(&mut m, h.addr, |p, _| p.holds_diverted(key));
            ensure(holds, || {
                format!("node {} lacks the diverted replica", h.addr)
            })?;
            diverted_to.push(h.addr);
        }
        ensure(total(&mut m, |s| s.replica_diversions) == 5, || {
            "diversions counted".into()
        })?;
        ensure(total(&mut m, |s| s.diverted_held) == 5, || {
            format!("{} diverted replicas held", 5)
        })?;
        // Lookups reach the root, which follows its pointer.
        for &c in m.live().iter().take(8) {
            match lookup(&mut m, c, key, secs(3)) {
                PastEvent::Found { object, .. } if object.content() == &data => {}
                e => return Err(format!("lookup from {c}: {e:?}")),
            }
        }
        // Maintenance leaves the diverted replicas and pointers in place.
        m.run_for(secs(130));
        for &f in &full {
            ensure(past(&mut m, f, |p, _| p.pointer(key)).is_some(), || {
                "pointer lost".into()
            })?;
        }
        ensure(total(&mut m, |s| s.diverted_held) == 5, || {
            "diverted replicas lost".into()
        })
    });
}

#[test]
fn a_full_neighbourhood_fails_the_insert_with_no_space() {
    for_seeds(|seed| {
        let mut m = ring(seed, 25, &tiny())?;
        let nodes = m.live();
        let (key, ev) = insert(&mut m, nodes[2], content(seed, 1_000), None, secs(5));
        match ev {
            PastEvent::InsertFailed {
                reason: InsertFailure::NoSpace,
                key: k,
                ..
            } if k == key => {}
            e => return Err(format!("insert into a full ring: {e:?}")),
        }
        // Nothing is left behind: fresh copies and pointers are aborted.
        ensure(holders(&mut m, key).is_empty(), || {
            "a replica stayed".into()
        })?;
        ensure(total(&mut m, |s| s.pointers + s.diverted_held) == 0, || {
            "pointers stayed".into()
        })?;
        // Small objects still fit.
        let (_, ev) = insert(&mut m, nodes[2], content(seed, 50), None, secs(5));
        ensure(matches!(ev, PastEvent::Inserted { .. }), || {
            format!("small insert: {ev:?}")
        })?;
        // A named insert retries under new salts, then gives up with NoSpace.
        let owner = SigningKey::from_bytes(&[seed as u8; 32]);
        let req = past(&mut m, nodes[3], |p, ctx| {
            p.insert_named(ctx, &owner, b"big", 1, content(seed + 9, 1_000), None)
        });
        m.run_for(secs(20));
        let ev = take_events(&mut m);
        match answer(&ev, nodes[3], req) {
            Some(PastEvent::InsertFailed {
                reason: InsertFailure::NoSpace,
                key,
                ..
            }) => ensure(*key == named_key(&owner.verifying_key(), b"big", 3), || {
                "last salt".into()
            })?,
            e => return Err(format!("named insert: {e:?}")),
        }
        ensure(total(&mut m, |s| s.file_diversions) == 3, || {
            "file diversions".into()
        })
    });
}

#[test]
fn file_diversion_moves_a_named_object_to_a_free_part_of_the_ring() {
    for_seeds(|seed| {
        let mut m = pastry_core::mesh::Mesh::new(pastry_core::Config::default(), seed);
        m.build_ring(40, secs(1));
        m.run_for(secs(20));
        let owner = SigningKey::from_bytes(&[seed as u8 + 40; 32]);
        let vk = owner.verifying_key();
        // A name whose salt-0 and salt-1 neighbourhoods do not overlap.
        let name = (0..100u32)
            .map(|n| format!("file-{n}").into_bytes())
            .find(|n| {
                let a = full_near(&m, named_key(&vk, n, 0), 14);
                let b = full_near(&m, named_key(&vk, n, 1), 14);
                a.iter().all(|x| !b.contains(x))
            })
            .ok_or("no suitable name")?;
        let full = full_near(&m, named_key(&vk, &name, 0), 14);
        for i in m.live() {
            add_past(&mut m, i, if full.contains(&i) { tiny() } else { roomy() });
        }
        let client = m
            .live()
            .into_iter()
            .find(|i| !full.contains(i))
            .ok_or("client")?;
        let data = content(seed, 1_000);
        let req = past(&mut m, client, |p, ctx| {
            p.insert_named(ctx, &owner, &name, 1, data.clone(), None)
        });
        m.run_for(secs(12));
        let ev = take_events(&mut m);
        let key1 = named_key(&vk, &name, 1);
        match answer(&ev, client, req) {
            Some(PastEvent::Inserted { key, salt: 1, .. }) if *key == key1 => {}
            e => return Err(format!("named insert: {e:?}")),
        }
        ensure(
            holders(&mut m, key1) == sorted(k_closest(&m, key1, 5)),
            || "placement".into(),
        )?;
        match lookup(&mut m, full[0], key1, secs(3)) {
            PastEvent::Found { object, .. } if object.content() == &data => Ok(()),
            e => Err(format!("lookup: {e:?}")),
        }
    });
}
