//! Scribe's replay under tree repair on Mesh rings: what a re-attaching node missed reaches
//! it even when its new parent has to ask up the tree before it is attached itself, and the
//! root's sequence numbers continue across root changes, so replay by sequence number
//! finds what was published under the new root.

mod common;

use std::collections::BTreeSet;

use common::*;
use pastry_core::NodeId;
use pastry_scribe::{ScribeConfig, ScribeEvent, TopicId, topic_id};

/// Every delivery of message `id` of `publisher` carried sequence number `seq`.
fn numbered(
    m: &pastry_core::mesh::Mesh,
    topic: TopicId,
    publisher: NodeId,
    id: u64,
    seq: u64,
) -> Result<(), String> {
    let seqs = seqs_of(m, topic, publisher, id);
    ensure(seqs == BTreeSet::from([seq]), || {
        format!("message {id} delivered with sequence numbers {seqs:?}, expected {seq}")
    })
}

/// The sequence numbers `members` delivered message `id` of `publisher` under.
fn seqs_of(
    m: &pastry_core::mesh::Mesh,
    topic: TopicId,
    publisher: NodeId,
    id: u64,
) -> BTreeSet<u64> {
    events(m)
        .into_iter()
        .filter_map(|(_, e)| match e {
            ScribeEvent::Delivered {
                topic: t,
                publisher: p,
                id: i,
                seq,
                ..
            } if t == topic && p == publisher && i == id => Some(seq),
            _ => None,
        })
        .collect()
}

/// How many deliveries of messages `ids` of `publisher` came by replay.
fn replayed_deliveries(
    m: &pastry_core::mesh::Mesh,
    topic: TopicId,
    publisher: NodeId,
    ids: &[u64],
) -> usize {
    events(m)
        .into_iter()
        .filter(|(_, e)| {
            matches!(e, ScribeEvent::Delivered {
                topic: t,
                publisher: p,
                id,
                replayed: true,
                ..
            } if *t == topic && *p == publisher && ids.contains(id))
        })
        .count()
}

/// An id just farther from `topic` than `root`, on the other side of it: the node that
/// takes over the topic when the root fails.
fn next_closest(topic: TopicId, root: NodeId) -> NodeId {
    let (t, r) = (topic.as_u128(), root.as_u128());
    let d = t.wrapping_sub(r).min(r.wrapping_sub(t));
    if r.wrapping_sub(t) == d {
        NodeId::from_u128(t.wrapping_sub(d + 1))
    } else {
        NodeId::from_u128(t.wrapping_add(d + 1))
    }
}

/// A small group on a larger ring: its tree is sparse, so an orphan's new route to the root
/// often meets a node outside the tree first, which becomes a forwarder to adopt it and has
/// neither the missed messages nor, yet, a parent to ask. It must ask once it has one.
#[test]
fn an_orphan_adopted_by_a_new_forwarder_still_gets_what_it_missed() {
    let exercised = std::cell::Cell::new(0);
    let replays = std::cell::Cell::new(0);
    for_seeds(|seed| {
        let mut m = ring(seed, 80)?;
        register_scribe(&mut m, &ScribeConfig::default());
        for k in 0..6u32 {
            let topic = topic_id(&format!("sparse-{seed}-{k}"));
            let root = m.closest_live(topic).ok_or("no root")?;
            let mut members: BTreeSet<u32> = m
                .live()
                .into_iter()
                .filter(|&i| i != root && (i * 7 + k) % 13 == 0)
                .collect();
            subscribe_all(&mut m, topic, &members);
            check_tree(&mut m, topic, &members)?;
            // A forwarder (not a member, not the root) with a member below it crashes.
            let in_tree: Vec<u32> = m
                .live()
                .into_iter()
                .filter(|&i| info(&mut m, i, topic).is_some())
                .collect();
            let mut victim = None;
            for &i in &in_tree {
                let t = info(&mut m, i, topic).ok_or("no state")?;
                if i != root
                    && !t.subscribed
                    && t.children.iter().any(|c| members.contains(&c.addr))
                {
                    victim = Some(i);
                    break;
                }
            }
            let Some(victim) = victim else { continue };
            let publisher = *members.iter().next().ok_or("no member")?;
            let before = publish(&mut m, publisher, topic, b"before");
            m.run_for(secs(2));
            check_exactly_once(&m, topic, &members, m.id(publisher), &[before])?;
            ensure(
                replayed_deliveries(&m, topic, m.id(publisher), &[before]) == 0,
                || "a message sent down an intact tree was flagged as replayed".to_string(),
            )?;
            m.crash(victim);
            members.remove(&victim);
            let mut ids = Vec::new();
            for j in 0..3u8 {
                ids.push(publish(&mut m, publisher, topic, &[j]));
                m.run_for(ms(300));
            }
            m.run_for(secs(40));
            check_tree(&mut m, topic, &members)?;
            check_exactly_once(&m, topic, &members, m.id(publisher), &ids)?;
            replays.set(replays.get() + replayed_deliveries(&m, topic, m.id(publisher), &ids));
            // Did a node outside the old tree take an orphan in?
            let fresh = m.live().into_iter().any(|i| {
                !in_tree.contains(&i)
                    && info(&mut m, i, topic)
                        .is_some_and(|t| !t.subscribed && !t.children.is_empty())
            });
            if fresh {
                exercised.set(exercised.get() + 1);
            }
        }
        Ok(())
    });
    assert!(
        exercised.get() > 0,
        "no orphan was adopted by a new forwarder"
    );
    // What the orphans missed reached them by replay, and said so.
    assert!(replays.get() > 0, "no delivery was flagged as replayed");
}

/// The root moves to a closer node that joins: the old root tells the new one how far the
/// numbering went (it asks it for replay), so the next message is numbered on, not from 1.
#[test]
fn numbering_continues_when_the_root_moves_to_a_joining_node() {
    for_seeds(|seed| {
        let mut m = ring(seed, 40)?;
        register_scribe(&mut m, &ScribeConfig::default());
        let topic = topic_id(&format!("renumber-move-{seed}"));
        let old_root = m.closest_live(topic).ok_or("no root")?;
        // The root is not a member: it became root when the first subscription reached it.
        let members: BTreeSet<u32> = (0..40).filter(|&i| i != old_root).collect();
        subscribe_all(&mut m, topic, &members);
        let p = *members.iter().next().ok_or("no member")?;
        let first = publish(&mut m, p, topic, b"one");
        m.run_for(secs(2));
        check_exactly_once(&m, topic, &members, m.id(p), &[first])?;
        let newcomer = m.add_node_with_id(topic);
        register_scribe_on(&mut m, newcomer, &ScribeConfig::default());
        m.join(newcomer, p);
        m.run_for(secs(30));
        ensure(
            info(&mut m, newcomer, topic).is_some_and(|t| t.is_root),
            || "newcomer is not root".into(),
        )?;
        let second = publish(&mut m, p, topic, b"two");
        m.run_for(secs(3));
        check_exactly_once(&m, topic, &members, m.id(p), &[second])?;
        numbered(&m, topic, m.id(p), second, 2)
    });
}

/// A node that joined the tree after the last message becomes root when the root crashes:
/// it numbers on from what its parent told it when it attached, and the crashed root's
/// orphans, asking for replay after the last number they saw, get the new message.
#[test]
fn numbering_continues_when_a_later_subscriber_takes_over_a_crashed_root() {
    for_seeds(|seed| {
        let mut m = ring(seed, 50)?;
        register_scribe(&mut m, &ScribeConfig::default());
        // A topic whose root is some node; the heir is a node placed next closest.
        let topic = topic_id(&format!("renumber-crash-{seed}"));
        let root = m.closest_live(topic).ok_or("no root")?;
        let mut members: BTreeSet<u32> = (0..50).filter(|&i| i != root && i % 2 == 0).collect();
        subscribe_all(&mut m, topic, &members);
        let p = *members.iter().next().ok_or("no member")?;
        let first = publish(&mut m, p, topic, b"one");
        m.run_for(secs(2));
        check_exactly_once(&m, topic, &members, m.id(p), &[first])?;
        // The heir: on the other side of the topic, just farther than the root.
        let heir_id = next_closest(topic, m.id(root));
        let heir = m.add_node_with_id(heir_id);
        register_scribe_on(&mut m, heir, &ScribeConfig::default());
        m.join(heir, p);
        m.run_for(secs(20));
        subscribe(&mut m, heir, topic);
        m.run_for(secs(5));
        members.insert(heir);
        check_tree(&mut m, topic, &members)?;
        m.crash(root);
        // The heir notices at once (the root is in its leaf set) and takes over; the
        // root's other children hear nothing for up to `parent_timeout`.
        m.run_for(secs(3));
        ensure(m.closest_live(topic) == Some(heir), || {
            "heir not closest".into()
        })?;
        let second = publish(&mut m, p, topic, b"two");
        m.run_for(secs(40));
        check_tree(&mut m, topic, &members)?;
        check_exactly_once(&m, topic, &members, m.id(p), &[second])?;
        numbered(&m, topic, m.id(p), second, 2)
    });
}

/// The root crashes and the next closest node, outside the tree, gets a publication before
/// any orphan has found it: it keeps the message (it has no tree to send it to) and, once
/// an orphan tells it how far the numbering went, numbers it on, so every orphan gets it.
#[test]
fn a_publication_reaching_a_new_root_before_its_tree_is_kept_for_the_orphans() {
    for_seeds(|seed| {
        let mut m = ring(seed, 50)?;
        register_scribe(&mut m, &ScribeConfig::default());
        let topic = topic_id(&format!("held-{seed}"));
        let root = m.closest_live(topic).ok_or("no root")?;
        let mut members: BTreeSet<u32> = (0..50).filter(|&i| i != root && i % 3 == 0).collect();
        subscribe_all(&mut m, topic, &members);
        // The heir joins after the tree formed and never subscribes.
        let heir_id = next_closest(topic, m.id(root));
        let p = *members.iter().next().ok_or("no member")?;
        let heir = m.add_node_with_id(heir_id);
        register_scribe_on(&mut m, heir, &ScribeConfig::default());
        m.join(heir, p);
        m.run_for(secs(20));
        let first = publish(&mut m, p, topic, b"one");
        m.run_for(secs(2));
        check_exactly_once(&m, topic, &members, m.id(p), &[first])?;
        ensure(info(&mut m, heir, topic).is_none(), || {
            "heir is in the tree".into()
        })?;
        m.crash(root);
        m.run_for(ms(500));
        let second = publish(&mut m, p, topic, b"two");
        m.run_for(secs(40));
        ensure(m.closest_live(topic) == Some(heir), || {
            "heir not closest".into()
        })?;
        members.remove(&root);
        check_tree(&mut m, topic, &members)?;
        check_exactly_once(&m, topic, &members, m.id(p), &[second])
    });
}
