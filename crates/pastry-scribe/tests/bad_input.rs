//! Garbled Scribe messages (routed and direct) are dropped and counted; the node keeps
//! working. Property tests: every message round-trips through the codec, and decoding
//! arbitrary or truncated bytes never panics.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::*;
use pastry_core::{NodeHandle, NodeId};
use pastry_scribe::topic_id;
use pastry_scribe::wire::{self, DataMsg, ScribeMsg, Search, WireError};
use proptest::prelude::*;

#[test]
fn garbled_messages_are_dropped_and_counted() {
    for_seeds(|seed| {
        let mut m = ring(seed, 30)?;
        register_scribe(&mut m, &pastry_scribe::ScribeConfig::default());
        let topic = topic_id(&format!("bad-{seed}"));
        let members: BTreeSet<u32> = (1..30).collect();
        subscribe_all(&mut m, topic, &members);
        let garbage: [&[u8]; 5] = [
            b"",
            b"SC",
            b"XX\x01\x08",
            b"SC\x02\x08",
            b"SC\x01\x08\x00\x01",
        ];
        let target = handle(&m, 5);
        m.with_application(0, APP, |_: &mut pastry_scribe::Scribe<u32>, ctx| {
            for g in garbage {
                ctx.send_direct(target, Bytes::copy_from_slice(g));
                ctx.route(topic, Bytes::copy_from_slice(g), None);
            }
        })
        .ok_or("registered")?;
        m.run_for(secs(2));
        let bad: u64 = (0..30u32)
            .map(|i| with_scribe(&mut m, i, |s| s.stats().bad_messages))
            .sum();
        // Five direct ones at node 5; five routed ones dropped at their first Scribe hop.
        ensure(bad == 10, || {
            format!("{bad} bad messages counted, expected 10")
        })?;
        let bad5 = with_scribe(&mut m, 5, |s| s.stats().bad_messages);
        ensure(bad5 >= 5, || format!("node 5 counted {bad5}"))?;
        check_tree(&mut m, topic, &members)?;
        let ids: Vec<u64> = (0..3u8).map(|k| publish(&mut m, 0, topic, &[k])).collect();
        m.run_for(secs(3));
        check_exactly_once(&m, topic, &members, m.id(0), &ids)
    });
}

fn id() -> impl Strategy<Value = NodeId> {
    any::<u128>().prop_map(NodeId::from_u128)
}

fn handle_s() -> impl Strategy<Value = NodeHandle<u32>> {
    (id(), any::<u32>()).prop_map(|(i, a)| NodeHandle::new(i, a))
}

fn payload() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn ids(max: usize) -> impl Strategy<Value = Vec<NodeId>> {
    proptest::collection::vec(id(), 0..max)
}

fn search() -> impl Strategy<Value = Search<u32>> {
    (ids(8), proptest::collection::vec(handle_s(), 0..8))
        .prop_map(|(visited, to_visit)| Search { visited, to_visit })
}

fn msg() -> impl Strategy<Value = ScribeMsg<u32>> {
    prop_oneof![
        (id(), handle_s(), any::<u64>(), any::<u64>(), search()).prop_map(
            |(topic, subscriber, attempt, last_seq, search)| {
                ScribeMsg::Subscribe {
                    topic,
                    subscriber,
                    attempt,
                    last_seq,
                    search,
                }
            }
        ),
        (id(), any::<u64>(), any::<u64>(), ids(10)).prop_map(|(topic, attempt, last_seq, path)| {
            ScribeMsg::SubscribeAck {
                topic,
                attempt,
                last_seq,
                path,
            }
        }),
        (id(), any::<u64>())
            .prop_map(|(topic, attempt)| ScribeMsg::SubscribeFailed { topic, attempt }),
        ids(10).prop_map(|topics| ScribeMsg::Unsubscribe { topics }),
        ids(10).prop_map(|topics| ScribeMsg::Drop { topics }),
        ids(10).prop_map(|topics| ScribeMsg::Refresh { topics }),
        (id(), handle_s(), any::<u64>(), payload()).prop_map(|(topic, publisher, id, payload)| {
            ScribeMsg::Publish {
                topic,
                publisher,
                id,
                payload,
            }
        }),
        (id(), any::<u64>()).prop_map(|(topic, id)| ScribeMsg::PublishAck { topic, id }),
        (
            id(),
            any::<u64>(),
            id(),
            any::<u64>(),
            any::<bool>(),
            payload()
        )
            .prop_map(|(topic, seq, publisher, id, replayed, payload)| {
                ScribeMsg::Data(DataMsg {
                    topic,
                    seq,
                    publisher,
                    id,
                    replayed,
                    payload,
                })
            }),
        proptest::collection::vec((id(), ids(6)), 0..6)
            .prop_map(|topics| ScribeMsg::Heartbeat { topics }),
        (id(), handle_s(), any::<u64>(), payload(), search()).prop_map(
            |(topic, origin, id, payload, search)| {
                ScribeMsg::Anycast {
                    topic,
                    origin,
                    id,
                    payload,
                    search,
                }
            }
        ),
        (id(), any::<u64>()).prop_map(|(topic, id)| ScribeMsg::AnycastAccepted { topic, id }),
        (id(), any::<u64>()).prop_map(|(topic, id)| ScribeMsg::AnycastFailed { topic, id }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(m in msg()) {
        let b = wire::encode(&m).expect("within bounds");
        prop_assert_eq!(wire::decode::<u32>(&b), Ok(m.clone()));
        // Every strict prefix fails cleanly; so does any extra byte.
        for cut in 0..b.len() {
            prop_assert!(wire::decode::<u32>(&b[..cut]).is_err());
        }
        let mut longer = b.to_vec();
        longer.push(0);
        prop_assert_eq!(wire::decode::<u32>(&longer), Err(WireError::TrailingBytes));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = wire::decode::<u32>(&b);
        let _ = wire::decode::<std::net::SocketAddr>(&b);
        let mut framed = b"SC\x01".to_vec();
        framed.extend_from_slice(&b);
        let _ = wire::decode::<u32>(&framed);
    }

    #[test]
    fn flipping_a_byte_never_panics(m in msg(), pos in any::<usize>(), x in 1u8..) {
        let mut b = wire::encode(&m).expect("within bounds").to_vec();
        let p = pos % b.len();
        b[p] ^= x;
        let _ = wire::decode::<u32>(&b);
    }
}
