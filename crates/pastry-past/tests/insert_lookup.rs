//! Inserts and lookups on small rings: replicas land exactly on the k closest live nodes,
//! every node reads back byte-identical objects, and requests that cannot succeed fail
//! with a clear reason.

mod common;

use common::*;
use pastry_past::{InsertFailure, LookupFailure, PastConfig, PastEvent};

#[test]
fn insert_then_lookup_from_other_nodes_returns_identical_bytes() {
    for_seeds(|seed| {
        let mut m = ring(seed, 30, &PastConfig::default())?;
        let nodes = m.live();
        for obj in 0..4u64 {
            let data = content(seed * 100 + obj, 100 + 3000 * obj as usize);
            let from = nodes[(obj as usize * 7) % nodes.len()];
            let (key, ev) = insert(&mut m, from, data.clone(), None, secs(3));
            match &ev {
                PastEvent::Inserted {
                    key: k, holders, ..
                } => {
                    ensure(*k == key, || "inserted key".into())?;
                    let mut want: Vec<_> =
                        k_closest(&m, key, 5).into_iter().map(|i| m.id(i)).collect();
                    let mut got: Vec<_> = holders.iter().map(|h| h.id).collect();
                    want.sort();
                    got.sort();
                    ensure(got == want, || format!("holders {got:?}, want {want:?}"))?;
                }
                e => return Err(format!("insert: {e:?}")),
            }
            for &reader in nodes.iter().skip(obj as usize).step_by(3) {
                match lookup(&mut m, reader, key, secs(3)) {
                    PastEvent::Found { key: k, object, .. } => {
                        ensure(k == key && object.content() == &data, || {
                            format!("node {reader} read other bytes for {key:?}")
                        })?;
                    }
                    e => return Err(format!("lookup from {reader}: {e:?}")),
                }
            }
        }
        ensure(total(&mut m, |s| s.lookups_failed) == 0, || {
            "failed lookups".into()
        })?;
        ensure(total(&mut m, |s| s.inserts_succeeded) == 4, || {
            "insert count".into()
        })
    });
}

#[test]
fn replicas_are_exactly_on_the_k_closest_live_nodes() {
    for_seeds(|seed| {
        let mut m = ring(seed, 40, &PastConfig::default())?;
        let nodes = m.live();
        for (j, k) in [(0u64, None), (1, Some(3)), (2, Some(1)), (3, Some(8))] {
            let data = content(seed * 10 + j, 500);
            let (key, ev) = insert(&mut m, nodes[j as usize], data, k, secs(3));
            ensure(matches!(ev, PastEvent::Inserted { .. }), || {
                format!("{ev:?}")
            })?;
            let want = sorted(k_closest(&m, key, k.unwrap_or(5)));
            let got = holders(&mut m, key);
            ensure(got == want, || {
                format!("k={k:?}: holders {got:?}, want {want:?}")
            })?;
        }
        // Maintenance rounds do not move anything in a stable ring.
        m.run_for(secs(130));
        for j in 0..4u64 {
            let key = pastry_past::content_key(&content(seed * 10 + j, 500));
            let k = [5, 3, 1, 8][j as usize];
            let want = sorted(k_closest(&m, key, k));
            let got = holders(&mut m, key);
            ensure(got == want, || {
                format!("after sync k={k}: holders {got:?}, want {want:?}")
            })?;
        }
        ensure(total(&mut m, |s| s.maintenance_messages_sent) > 0, || {
            "no maintenance".into()
        })?;
        ensure(total(&mut m, |s| s.replicas_dropped) == 0, || {
            "replicas dropped".into()
        })
    });
}

#[test]
fn missing_keys_and_oversized_objects_fail_clearly() {
    for_seeds(|seed| {
        let cfg = PastConfig {
            max_object_bytes: 10_000,
            ..PastConfig::default()
        };
        let mut m = ring(seed, 20, &cfg)?;
        let nodes = m.live();
        let missing = m.random_id();
        match lookup(&mut m, nodes[3], missing, secs(3)) {
            PastEvent::LookupFailed { reason, key, .. } => {
                ensure(reason == LookupFailure::NotFound && key == missing, || {
                    format!("{reason:?}")
                })?
            }
            e => return Err(format!("missing key: {e:?}")),
        }
        // Too large: refused at once, locally.
        let req = past(&mut m, nodes[1], |p, ctx| {
            p.insert(ctx, content(1, 10_001), None)
        });
        let ev = take_events(&mut m);
        match answer(&ev, nodes[1], req) {
            Some(PastEvent::InsertFailed { reason, .. }) => ensure(
                *reason
                    == InsertFailure::TooLarge {
                        size: 10_001,
                        max: 10_000,
                    },
                || format!("{reason:?}"),
            )?,
            e => return Err(format!("oversized: {e:?}")),
        }
        // A node with a larger limit inserting into nodes with the smaller one: the root
        // refuses it with the sizes.
        let big = PastConfig {
            max_object_bytes: 20_000,
            ..PastConfig::default()
        };
        let extra = m.add_node();
        common::add_past(&mut m, extra, big);
        m.join(extra, nodes[0]);
        m.run_for(secs(5));
        let data = content(2, 15_000);
        let (_, ev) = insert(&mut m, extra, data, None, secs(3));
        match ev {
            PastEvent::InsertFailed {
                reason:
                    InsertFailure::TooLarge {
                        size: 15_000,
                        max: 10_000,
                    },
                ..
            } => {}
            PastEvent::InsertFailed {
                reason: InsertFailure::TooLarge { .. },
                ..
            } if pastry_past::content_key(&content(2, 15_000)) == m.id(extra) => {}
            e => return Err(format!("remote oversized: {e:?}")),
        }
        Ok(())
    });
}

#[test]
fn lookup_handles_then_fetch_from_each_holder() {
    for_seeds(|seed| {
        let mut m = ring(seed, 25, &PastConfig::default())?;
        let nodes = m.live();
        let data = content(seed, 2048);
        let (key, _) = insert(&mut m, nodes[0], data.clone(), None, secs(3));
        let client = nodes[nodes.len() - 1];
        let req = past(&mut m, client, |p, ctx| p.lookup_handles(ctx, key, 5));
        m.run_for(secs(3));
        let ev = take_events(&mut m);
        let handles = match answer(&ev, client, req) {
            Some(PastEvent::Handles { handles, .. }) => handles.clone(),
            e => return Err(format!("handles: {e:?}")),
        };
        let want: Vec<_> = k_closest(&m, key, 5).into_iter().map(|i| m.id(i)).collect();
        let got: Vec<_> = handles.iter().map(|h| h.id).collect();
        ensure(got == want, || format!("handles {got:?}, want {want:?}"))?;
        for h in handles {
            let req = past(&mut m, client, |p, ctx| p.fetch(ctx, h, key));
            m.run_for(secs(2));
            let ev = take_events(&mut m);
            match answer(&ev, client, req) {
                Some(PastEvent::Found {
                    object,
                    source,
                    from_cache: false,
                    ..
                }) => ensure(object.content() == &data && source.id == h.id, || {
                    "fetched bytes or source".into()
                })?,
                e => return Err(format!("fetch from {h:?}: {e:?}")),
            }
        }
        // Fetching from a node that does not hold it: NotFound.
        let other = nodes
            .iter()
            .copied()
            .find(|i| !k_closest(&m, key, 5).contains(i) && *i != client)
            .ok_or("no other node")?;
        let h = m.nodes[other as usize].handle();
        let req = past(&mut m, client, |p, ctx| p.fetch(ctx, h, key));
        m.run_for(secs(2));
        let ev = take_events(&mut m);
        match answer(&ev, client, req) {
            Some(PastEvent::LookupFailed {
                reason: LookupFailure::NotFound,
                ..
            }) => Ok(()),
            e => Err(format!("fetch from non-holder: {e:?}")),
        }
    });
}

#[test]
fn an_insert_whose_replica_crashed_unnoticed_is_retried_until_it_succeeds() {
    for_seeds(|seed| {
        let cfg = PastConfig {
            request_retries: 6,
            ..PastConfig::default()
        };
        let mut m = ring(seed, 16, &cfg)?;
        let data = content(seed, 2000);
        let key = pastry_past::content_key(&data);
        // A replica node (not the root) crashes just before the put: until its neighbours
        // notice, the root's replica set names it and the root's wait for it times out.
        let set = k_closest(&m, key, 5);
        m.crash(set[2]);
        let from = *m
            .live()
            .iter()
            .find(|i| !set.contains(i))
            .expect("a client");
        let (_, ev) = insert(&mut m, from, data, None, secs(90));
        match ev {
            PastEvent::Inserted { holders, .. } => {
                let mut got: Vec<_> = holders.iter().map(|h| h.id).collect();
                let mut want: Vec<_> = k_closest(&m, key, 5).into_iter().map(|i| m.id(i)).collect();
                got.sort();
                want.sort();
                ensure(got == want, || format!("holders {got:?}, want {want:?}"))?;
            }
            e => return Err(format!("insert: {e:?}")),
        }
        ensure(total(&mut m, |s| s.insert_retries) >= 1, || {
            "no retry".into()
        })
    });
}
