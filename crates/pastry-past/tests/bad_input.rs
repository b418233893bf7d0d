//! Hostile input: garbled, truncated, unknown-version and misdirected PAST messages, sent
//! directly and routed, are dropped and counted; they never panic, never change a store,
//! and the system keeps serving lookups. Forged answers to a pending lookup are ignored.

mod common;

use bytes::Bytes;
use common::*;
use pastry_past::codec::{self, PastMessage};
use pastry_past::{PastConfig, PastEvent, PastObject};

#[test]
fn garbled_messages_are_dropped_and_counted() {
    for_seeds(|seed| {
        let mut m = ring(seed, 20, &PastConfig::default())?;
        let nodes = m.live();
        let data = content(seed, 1500);
        let (key, _) = insert(&mut m, nodes[0], data.clone(), None, secs(3));
        let stored_before: Vec<_> = m
            .live()
            .into_iter()
            .map(|i| past(&mut m, i, |p, _| (p.stored_keys(), p.stats().bytes_stored)))
            .collect();
        let valid = codec::encode::<u32>(&PastMessage::Replicate {
            id: 5,
            k: 5,
            object: PastObject::immutable(content(seed + 1, 100)),
        });
        let mut garbage: Vec<Bytes> = vec![
            Bytes::new(),
            Bytes::from_static(b"PA"),
            Bytes::from_static(b"PA\x02\x01"),
            Bytes::from_static(b"PA\x01\xee"),
            Bytes::from_static(b"XX\x01\x03\x00"),
            valid.slice(..valid.len() - 1),
            {
                let mut v = valid.to_vec();
                v.push(1);
                Bytes::from(v)
            },
            // A routed-only message sent directly, and a direct-only one routed below.
            codec::encode::<u32>(&PastMessage::Insert {
                request: 1,
                k: 5,
                object: PastObject::immutable(&b"x"[..]),
            }),
        ];
        let mut x = seed;
        for _ in 0..20 {
            let v: Vec<u8> = (0..40)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 33) as u8
                })
                .collect();
            garbage.push(Bytes::from(v));
        }
        let before = total(&mut m, |s| s.bad_messages);
        let n = garbage.len() as u64;
        for (j, g) in garbage.iter().enumerate() {
            let to = m.nodes[nodes[j % nodes.len()] as usize].handle();
            let g = g.clone();
            past(&mut m, nodes[(j + 1) % nodes.len()], |_, ctx| {
                ctx.send_direct(to, g)
            });
        }
        // Routed garbage is dropped on the first hop that looks at it.
        let routed = 5u64;
        for j in 0..routed {
            let k = m.random_id();
            let g = Bytes::from(vec![0xab; 10 + j as usize]);
            past(&mut m, nodes[j as usize], |_, ctx| ctx.route(k, g, None));
        }
        let misdirected = codec::encode::<u32>(&PastMessage::Discard { key });
        past(&mut m, nodes[4], |_, ctx| ctx.route(key, misdirected, None));
        m.run_for(secs(3));
        let counted = total(&mut m, |s| s.bad_messages) - before;
        ensure(counted > n + routed, || {
            format!("{counted} bad messages counted of {}", n + routed + 1)
        })?;
        let stored_after: Vec<_> = m
            .live()
            .into_iter()
            .map(|i| past(&mut m, i, |p, _| (p.stored_keys(), p.stats().bytes_stored)))
            .collect();
        ensure(stored_before == stored_after, || "a store changed".into())?;
        match lookup(&mut m, nodes[7], key, secs(3)) {
            PastEvent::Found { object, .. } if object.content() == &data => Ok(()),
            e => Err(format!("lookup after garbage: {e:?}")),
        }
    });
}

#[test]
fn a_forged_answer_to_a_lookup_is_ignored() {
    for_seeds(|seed| {
        let cfg = PastConfig {
            caching: false,
            ..PastConfig::default()
        };
        let mut m = ring(seed, 20, &cfg)?;
        let nodes = m.live();
        let data = content(seed, 800);
        let (key, _) = insert(&mut m, nodes[0], data.clone(), None, secs(3));
        let client = nodes[9];
        let req = past(&mut m, client, |p, ctx| p.lookup(ctx, key));
        // Before the real answer arrives, another node answers with other bytes.
        let to = m.nodes[client as usize].handle();
        let lie = codec::encode::<u32>(&PastMessage::Found {
            request: req,
            from_cache: false,
            object: PastObject::immutable(&b"not the object"[..]),
        });
        past(&mut m, nodes[3], |_, ctx| ctx.send_direct(to, lie));
        m.run_for(secs(3));
        let ev = take_events(&mut m);
        match answer(&ev, client, req) {
            Some(PastEvent::Found { object, .. }) if object.content() == &data => {}
            e => return Err(format!("answer: {e:?}")),
        }
        let bad = past(&mut m, client, |p, _| p.stats().bad_objects);
        ensure(bad == 1, || format!("{bad} bad objects at the client"))
    });
}
