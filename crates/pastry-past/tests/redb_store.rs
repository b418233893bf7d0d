//! The redb store: contents survive drop and reopen (also under a running PAST whose
//! nodes restart), a file of another format version is refused with a clear error.

mod common;

use bytes::Bytes;
use common::*;
use pastry_core::NodeId;
use pastry_past::{Past, PastConfig, PastEvent, RedbStore, Store, StoreError};

#[test]
fn redb_store_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let k = |v: u128| NodeId::from_u128(v);
    {
        let mut s = RedbStore::open(&path).unwrap();
        s.put(k(1), Bytes::from_static(b"one")).unwrap();
        s.put(k(2), Bytes::from_static(b"two")).unwrap();
        s.put(k(3), Bytes::from_static(b"three")).unwrap();
        s.remove(k(2)).unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.bytes_used(), 8);
    assert_eq!(s.get(k(1)).unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(s.get(k(2)).unwrap(), None);
    assert_eq!(s.keys_between(k(0), k(9), 10).unwrap(), vec![k(1), k(3)]);
}

#[test]
fn a_wrong_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(RedbStore::open(&path).unwrap());
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut t = tx.open_table(meta).unwrap();
            t.insert("format_version", 99).unwrap();
        }
        tx.commit().unwrap();
    }
    match RedbStore::open(&path) {
        Err(
            e @ StoreError::FormatVersion {
                found: 99,
                expected: 1,
            },
        ) => {
            assert!(e.to_string().contains("version 99"), "{e}");
        }
        other => panic!("opened a version-99 file: {other:?}"),
    }
}

#[test]
fn past_nodes_on_redb_keep_their_replicas_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 4;
    let cfg = PastConfig::default();
    let mut m = pastry_core::mesh::Mesh::new(pastry_core::Config::default(), seed);
    m.build_ring(12, secs(1));
    m.run_for(secs(20));
    for i in m.live() {
        let store = RedbStore::open(dir.path().join(format!("n{i}.redb"))).unwrap();
        let p = Past::<u32>::with_store(cfg.clone(), Box::new(store)).unwrap();
        assert!(m.nodes[i as usize].register(PAST, Box::new(p)).is_ok());
    }
    let mut objs = Vec::new();
    for j in 0..3u64 {
        let data = content(j, 2000);
        let (key, e) = insert(&mut m, j as u32, data.clone(), None, secs(3));
        assert!(matches!(e, PastEvent::Inserted { .. }), "{e:?}");
        objs.push((key, data));
    }
    let before: Vec<Vec<NodeId>> = m
        .live()
        .into_iter()
        .map(|i| past(&mut m, i, |p, _| p.stored_keys()))
        .collect();
    drop(m); // closes every database
    for (i, keys) in before.iter().enumerate() {
        let store = RedbStore::open(dir.path().join(format!("n{i}.redb"))).unwrap();
        let p = Past::<u32>::with_store(cfg.clone(), Box::new(store)).unwrap();
        assert_eq!(&p.stored_keys(), keys, "node {i}");
        for (key, data) in &objs {
            if keys.contains(key) {
                assert_eq!(p.stored_object(*key).unwrap().content(), data);
                assert!(p.holds(*key));
            }
        }
    }
    assert_eq!(before.iter().map(Vec::len).sum::<usize>(), 15);
}
