//! Scribe anycast on Mesh rings: delivered to exactly one member; a member whose policy
//! (the visitor) refuses passes it on to another member; when all refuse it fails.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use pastry_core::NodeHandle;
use pastry_core::mesh::Mesh;
use pastry_scribe::{
    Scribe, ScribeConfig, ScribeEvent, ScribePolicy, ScribeView, TopicId, topic_id,
};

/// Refuses anycasts at the nodes in the shared set.
struct Refusing(Arc<Mutex<BTreeSet<u32>>>);

impl ScribePolicy<u32> for Refusing {
    fn accept_anycast(
        &mut self,
        view: &ScribeView<'_, u32>,
        _topic: TopicId,
        _origin: &NodeHandle<u32>,
        _payload: &Bytes,
    ) -> bool {
        !self.0.lock().expect("lock").contains(&view.local().addr)
    }
}

fn anycast(m: &mut Mesh, i: u32, t: TopicId) -> u64 {
    m.with_application(i, APP, |s: &mut Scribe<u32>, ctx| {
        s.anycast(ctx, t, Bytes::from_static(b"any"))
    })
    .expect("registered")
    .expect("accepted")
}

/// (accepting node, AnycastReceived count) for anycast `id` from `origin`.
fn outcome(m: &Mesh, origin: u32, id: u64) -> (Option<u32>, bool, usize) {
    let ev = events(m);
    let by = ev.iter().find_map(|(n, e)| match e {
        ScribeEvent::AnycastSucceeded { id: x, by, .. } if *n == origin && *x == id => {
            Some(by.addr)
        }
        _ => None,
    });
    let failed = ev.iter().any(|(n, e)| {
        *n == origin && matches!(e, ScribeEvent::AnycastFailed { id: x, .. } if *x == id)
    });
    let received = ev
        .iter()
        .filter(|(_, e)| matches!(e, ScribeEvent::AnycastReceived { id: x, origin: o, .. } if *x == id && o.addr == origin))
        .count();
    (by, failed, received)
}

#[test]
fn anycast_reaches_one_member_and_a_refusal_moves_it_on() {
    for_seeds(|seed| {
        let mut m = ring(seed, 50)?;
        let refusing = Arc::new(Mutex::new(BTreeSet::new()));
        for i in 0..50u32 {
            let s = Scribe::with_policy(
                ScribeConfig {
                    seed: u64::from(i),
                    ..ScribeConfig::default()
                },
                Box::new(Refusing(refusing.clone())),
            )
            .map_err(|e| e.to_string())?;
            ensure(
                m.nodes[i as usize].register(APP, Box::new(s)).is_ok(),
                || "register".into(),
            )?;
        }
        let topic = topic_id(&format!("any-{seed}"));
        let members: BTreeSet<u32> = (0..50).filter(|i| i % 5 == 1).collect();
        subscribe_all(&mut m, topic, &members);
        let origin = 0;
        let a = anycast(&mut m, origin, topic);
        m.run_for(secs(3));
        let (by, failed, received) = outcome(&m, origin, a);
        let first = by.ok_or("first anycast not accepted")?;
        ensure(members.contains(&first) && !failed && received == 1, || {
            format!("first: by {first}, failed {failed}, received {received}")
        })?;
        // The member that took it now refuses: the search goes on to another member.
        refusing.lock().expect("lock").insert(first);
        let b = anycast(&mut m, origin, topic);
        m.run_for(secs(3));
        let (by, failed, received) = outcome(&m, origin, b);
        let second = by.ok_or("second anycast not accepted")?;
        ensure(
            members.contains(&second) && second != first && !failed && received == 1,
            || format!("second: by {second} (first {first}), failed {failed}, received {received}"),
        )?;
        // Everybody refuses: the anycast fails, nobody receives it.
        refusing
            .lock()
            .expect("lock")
            .extend(members.iter().copied());
        let c = anycast(&mut m, origin, topic);
        m.run_for(secs(3));
        let (by, failed, received) = outcome(&m, origin, c);
        ensure(by.is_none() && failed && received == 0, || {
            format!("all refusing: by {by:?}, failed {failed}, received {received}")
        })?;
        // No members at all: fails too.
        let empty = topic_id(&format!("nobody-{seed}"));
        let d = anycast(&mut m, origin, empty);
        m.run_for(secs(3));
        let (by, failed, _) = outcome(&m, origin, d);
        ensure(by.is_none() && failed, || {
            "anycast to an empty topic did not fail".into()
        })?;
        Ok(())
    });
}
