//! Scribe multicast on Mesh rings: subscription builds one tree rooted at the topic's
//! root, every member gets every message exactly once, unsubscribing prunes the tree.

mod common;

use std::collections::BTreeSet;

use common::*;
use pastry_scribe::{ScribeConfig, ScribeEvent, topic_id};

#[test]
fn every_member_gets_every_message_exactly_once() {
    for_seeds(|seed| {
        let mut m = ring(seed, 60)?;
        register_scribe(&mut m, &ScribeConfig::default());
        let topic = topic_id(&format!("news-{seed}"));
        let members: BTreeSet<u32> = (0..60).filter(|i| i % 3 != 0).collect();
        for &i in &members {
            subscribe(&mut m, i, topic);
            m.run_for(ms(50));
        }
        m.run_for(secs(5));
        let (depth, stress) = check_tree(&mut m, topic, &members)?;
        eprintln!("seed {seed}: depth {depth} stress {stress}");
        // Every member heard it is attached.
        let ev = events(&m);
        for &i in &members {
            ensure(
                ev.iter().any(|(n, e)| {
                    *n == i && matches!(e, ScribeEvent::Subscribed { topic: t, .. } if *t == topic)
                }),
                || format!("member {i} never reported Subscribed"),
            )?;
        }
        // A non-member publishes.
        let publisher = 0;
        let mut ids = Vec::new();
        for k in 0..10u8 {
            ids.push(publish(&mut m, publisher, topic, &[k]));
            m.run_for(ms(200));
        }
        m.run_for(secs(5));
        check_exactly_once(&m, topic, &members, m.id(publisher), &ids)?;
        let pending = with_scribe(&mut m, publisher, |s| s.pending_publishes());
        ensure(pending == 0, || {
            format!("{pending} publishes never acknowledged")
        })?;
        Ok(())
    });
}

#[test]
fn unsubscribing_prunes_the_tree() {
    for_seeds(|seed| {
        let mut m = ring(seed, 50)?;
        register_scribe(&mut m, &ScribeConfig::default());
        let topic = topic_id(&format!("prune-{seed}"));
        let all: BTreeSet<u32> = (1..50).collect();
        subscribe_all(&mut m, topic, &all);
        check_tree(&mut m, topic, &all)?;
        // Half leave; they must not get later messages, and nodes that only forwarded for
        // them must leave the tree.
        let (stay, gone): (BTreeSet<u32>, BTreeSet<u32>) = all.iter().partition(|&&i| i % 2 == 0);
        for &i in &gone {
            unsubscribe(&mut m, i, topic);
        }
        m.run_for(secs(5));
        check_tree(&mut m, topic, &stay)?;
        for i in 0..50u32 {
            if let Some(t) = info(&mut m, i, topic) {
                ensure(t.subscribed || !t.children.is_empty() || t.is_root, || {
                    format!("node {i} kept useless state: {t:?}")
                })?;
            }
        }
        let ids: Vec<u64> = (0..3u8).map(|k| publish(&mut m, 0, topic, &[k])).collect();
        m.run_for(secs(3));
        check_exactly_once(&m, topic, &stay, m.id(0), &ids)?;
        // Everybody leaves: nothing is left anywhere.
        for &i in &stay {
            unsubscribe(&mut m, i, topic);
        }
        m.run_for(secs(5));
        for i in 0..50u32 {
            let t = info(&mut m, i, topic);
            ensure(t.is_none(), || format!("node {i} still holds {t:?}"))?;
        }
        Ok(())
    });
}

#[test]
fn child_limit_is_respected_by_pushing_children_down() {
    for_seeds(|seed| {
        let mut m = ring(seed, 60)?;
        let cfg = ScribeConfig {
            max_children_per_topic: 3,
            ..ScribeConfig::default()
        };
        register_scribe(&mut m, &cfg);
        let topic = topic_id(&format!("limit-{seed}"));
        let members: BTreeSet<u32> = (1..60).collect();
        subscribe_all(&mut m, topic, &members);
        m.run_for(secs(5));
        let (depth, stress) = check_tree(&mut m, topic, &members)?;
        ensure(stress <= 3, || {
            format!("a node has {stress} children, limit 3")
        })?;
        ensure(depth >= 3, || {
            format!("depth {depth}: 59 members under fan-out 3 need 4 levels")
        })?;
        // Push-down happened: some node was adopted by a node that was not on its route.
        let pushed: u64 = (0..60u32)
            .map(|i| {
                with_scribe(&mut m, i, |s| {
                    s.stats().sent[pastry_scribe::wire::MsgType::Subscribe.index()]
                })
            })
            .sum();
        ensure(pushed > 59, || {
            format!("only {pushed} subscribe messages: no push-down")
        })?;
        let ids: Vec<u64> = (0..5u8).map(|k| publish(&mut m, 0, topic, &[k])).collect();
        m.run_for(secs(3));
        check_exactly_once(&m, topic, &members, m.id(0), &ids)?;
        Ok(())
    });
}
