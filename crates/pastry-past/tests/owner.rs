//! Owner-certificate objects: the owner replaces with higher versions, others cannot
//! replace, stale versions are refused, and forged certificates never get stored.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use pastry_past::codec::{self, PastMessage};
use pastry_past::{Certificate, InsertFailure, PastConfig, PastEvent, PastObject};

fn signed_insert(
    m: &mut pastry_core::mesh::Mesh,
    from: u32,
    who: &SigningKey,
    key: pastry_core::NodeId,
    version: u64,
    data: &'static [u8],
) -> PastEvent<u32> {
    let req = past(m, from, |p, ctx| {
        p.insert_signed(ctx, who, key, version, data, None)
    });
    m.run_for(secs(3));
    let ev = take_events(m);
    answer(&ev, from, req).cloned().expect("answered")
}

#[test]
fn only_the_owner_replaces_and_only_with_higher_versions() {
    for_seeds(|seed| {
        let cfg = PastConfig {
            caching: false,
            ..PastConfig::default()
        };
        let mut m = ring(seed, 30, &cfg)?;
        let nodes = m.live();
        let owner = SigningKey::from_bytes(&[seed as u8; 32]);
        let thief = SigningKey::from_bytes(&[seed as u8 + 100; 32]);
        let key = m.random_id();
        let e = signed_insert(&mut m, nodes[0], &owner, key, 1, b"version one");
        ensure(matches!(e, PastEvent::Inserted { .. }), || {
            format!("v1: {e:?}")
        })?;
        let e = signed_insert(&mut m, nodes[1], &thief, key, 9, b"stolen");
        ensure(
            matches!(
                e,
                PastEvent::InsertFailed {
                    reason: InsertFailure::NotOwner,
                    ..
                }
            ),
            || format!("thief: {e:?}"),
        )?;
        let e = signed_insert(&mut m, nodes[2], &owner, key, 2, b"version two");
        ensure(matches!(e, PastEvent::Inserted { .. }), || {
            format!("v2: {e:?}")
        })?;
        let e = signed_insert(&mut m, nodes[3], &owner, key, 1, b"version one");
        ensure(
            matches!(
                e,
                PastEvent::InsertFailed {
                    reason: InsertFailure::StaleVersion,
                    ..
                }
            ),
            || format!("stale: {e:?}"),
        )?;
        let e = signed_insert(&mut m, nodes[3], &owner, key, 2, b"other two");
        ensure(
            matches!(
                e,
                PastEvent::InsertFailed {
                    reason: InsertFailure::VersionConflict,
                    ..
                }
            ),
            || format!("conflict: {e:?}"),
        )?;
        // A content-addressed insert cannot take an owned key, nor the reverse.
        let data = content(seed, 300);
        let (ckey, e) = insert(&mut m, nodes[4], data, None, secs(3));
        ensure(matches!(e, PastEvent::Inserted { .. }), || {
            format!("content: {e:?}")
        })?;
        let e = signed_insert(&mut m, nodes[4], &owner, ckey, 5, b"squatter");
        ensure(
            matches!(
                e,
                PastEvent::InsertFailed {
                    reason: InsertFailure::NotOwner,
                    ..
                }
            ),
            || format!("owned over content: {e:?}"),
        )?;
        for &r in nodes.iter().step_by(4) {
            match lookup(&mut m, r, key, secs(3)) {
                PastEvent::Found { object, .. } => ensure(
                    &object.content()[..] == b"version two" && object.version() == 2,
                    || format!("node {r} read {object:?}"),
                )?,
                e => return Err(format!("lookup: {e:?}")),
            }
        }
        for i in k_closest(&m, key, 5) {
            let o = past(&mut m, i, |p, _| p.stored_object(key)).ok_or("replica missing")?;
            ensure(o.version() == 2, || {
                format!("node {i} holds version {}", o.version())
            })?;
        }
        Ok(())
    });
}

#[test]
fn forged_certificates_are_refused_everywhere() {
    for_seeds(|seed| {
        let mut m = ring(seed, 25, &PastConfig::default())?;
        let nodes = m.live();
        let owner = SigningKey::from_bytes(&[seed as u8; 32]);
        let forger = SigningKey::from_bytes(&[seed as u8 + 1; 32]);
        let key = m.random_id();
        let e = signed_insert(&mut m, nodes[0], &owner, key, 1, b"genuine");
        ensure(matches!(e, PastEvent::Inserted { .. }), || format!("{e:?}"))?;
        // The forger signs version 2 with its own key but claims the owner's public key.
        let mut cert = Certificate::sign(&forger, key, 2, b"forged");
        cert.owner = owner.verifying_key().to_bytes();
        let forged = PastObject::from_parts(bytes::Bytes::from_static(b"forged"), Some(cert));
        let bad_before = total(&mut m, |s| s.bad_objects);
        // Through the insert path (routed to the root)...
        let insert = codec::encode::<u32>(&PastMessage::Insert {
            request: 77,
            k: 5,
            object: forged.clone(),
        });
        past(&mut m, nodes[1], |_, ctx| ctx.route(key, insert, None));
        // ...and straight to every replica node, as a root would, and as maintenance data.
        for i in k_closest(&m, key, 5) {
            let h = m.nodes[i as usize].handle();
            let rep = codec::encode::<u32>(&PastMessage::Replicate {
                id: 1,
                k: 5,
                object: forged.clone(),
            });
            let data = codec::encode::<u32>(&PastMessage::HandoffData {
                items: vec![(5, forged.clone())],
            });
            let push = codec::encode::<u32>(&PastMessage::CachePush {
                object: forged.clone(),
            });
            past(&mut m, nodes[2], |_, ctx| {
                ctx.send_direct(h, rep);
                ctx.send_direct(h, data);
                ctx.send_direct(h, push);
            });
        }
        m.run_for(secs(3));
        take_events(&mut m);
        let bad = total(&mut m, |s| s.bad_objects) - bad_before;
        ensure(bad >= 16, || format!("{bad} forged objects counted"))?;
        for i in m.live() {
            let o = past(&mut m, i, |p, _| p.stored_object(key));
            if let Some(o) = o {
                ensure(&o.content()[..] == b"genuine", || {
                    format!("node {i} stored the forgery")
                })?;
            }
            ensure(!past(&mut m, i, |p, _| p.is_cached(key)), || {
                "forgery cached".into()
            })?;
        }
        match lookup(&mut m, nodes[3], key, secs(3)) {
            PastEvent::Found { object, .. } if &object.content()[..] == b"genuine" => Ok(()),
            e => Err(format!("lookup: {e:?}")),
        }
    });
}
