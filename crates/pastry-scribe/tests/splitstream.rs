//! SplitStream on Mesh rings: 16 stripes, capacity 16, every node receives every stripe,
//! interior-node-disjointness where capacity allows, repair after losing 25% of the nodes.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use common::*;
use pastry_core::mesh::Mesh;
use pastry_core::{AppId, NodeId};
use pastry_scribe::{SplitStream, SplitStreamConfig, SplitStreamEvent, topic_id};

const SS: AppId = 9;

fn register_ss(m: &mut Mesh, channel: NodeId, capacity: usize) {
    for i in 0..m.nodes.len() as u32 {
        let mut cfg = SplitStreamConfig {
            capacity,
            ..SplitStreamConfig::default()
        };
        cfg.scribe.seed = u64::from(i) * 104_729 + 3;
        let s = SplitStream::<u32>::new(channel, cfg).expect("valid config");
        assert!(m.nodes[i as usize].register(SS, Box::new(s)).is_ok());
    }
}

fn ss<R>(m: &mut Mesh, i: u32, f: impl FnOnce(&SplitStream<u32>) -> R) -> R {
    m.with_application(i, SS, |s: &mut SplitStream<u32>, _| f(s))
        .expect("splitstream registered")
}

/// Stripes of block `block` (from `publisher`) each node received a part of.
fn stripes_received(m: &Mesh, publisher: NodeId, block: u64) -> BTreeMap<u32, BTreeSet<usize>> {
    let mut out: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    for (i, app, v) in &m.app_events {
        if *app != SS {
            continue;
        }
        if let Some(SplitStreamEvent::StripeData {
            stripe,
            publisher: p,
            block: b,
            ..
        }) = v.downcast_ref::<SplitStreamEvent>()
            && *p == publisher
            && *b == block
        {
            out.entry(*i).or_default().insert(*stripe);
        }
    }
    out
}

fn publish_block(m: &mut Mesh, from: u32, data: Bytes) -> u64 {
    m.with_application(from, SS, |s: &mut SplitStream<u32>, ctx| {
        s.publish(ctx, data)
    })
    .expect("splitstream registered")
    .expect("publish accepted")
}

/// Builds the forest: `n` nodes, every node but the source (0) subscribes.
fn forest(seed: u64, n: usize, capacity: usize) -> Result<(Mesh, Vec<u32>), String> {
    let mut m = ring(seed, n)?;
    let channel = topic_id(&format!("channel-{seed}"));
    register_ss(&mut m, channel, capacity);
    let members: Vec<u32> = (1..n as u32).collect();
    for &i in &members {
        m.with_application(i, SS, |s: &mut SplitStream<u32>, ctx| s.subscribe(ctx))
            .expect("registered")
            .map_err(|e| e.to_string())?;
        m.run_for(ms(100));
    }
    m.run_for(secs(60));
    Ok((m, members))
}

/// (non-primary interior (node, stripe) pairs other than roots, nodes over capacity, the unavoidable
/// minimum of such pairs: stripes whose digit has too few nodes to carry the tree).
fn interior_report(m: &mut Mesh, members: &[u32], capacity: usize) -> (usize, usize, usize) {
    let mut extra = 0;
    let mut over = 0;
    let mut groups = [0usize; 16];
    for &i in members {
        let id = m.id(i);
        groups[(id.as_u128() >> 124) as usize] += 1;
        let (prim, interior, used, roots) = ss(m, i, |s| {
            let roots: Vec<usize> = (0..16)
                .filter(|&x| s.scribe().is_root(s.stripe_ids()[x]))
                .collect();
            (
                s.primary_stripe(id),
                s.interior_stripes(),
                s.used_capacity(),
                roots,
            )
        });
        // A stripe's root forwards in it whatever its digit (the paper's exception).
        extra += interior
            .iter()
            .filter(|&&x| x != prim && !roots.contains(&x))
            .count();
        if used > capacity {
            over += 1;
        }
    }
    let need = groups
        .iter()
        .map(|&g| {
            (members.len() - 1)
                .saturating_sub(capacity * g)
                .div_ceil(capacity)
        })
        .sum();
    (extra, over, need)
}

/// Fewest stripes of block `b` any of `nodes` received.
fn worst_reception(m: &Mesh, publisher: u32, b: u64, nodes: &[u32]) -> usize {
    let got = stripes_received(m, m.id(publisher), b);
    nodes
        .iter()
        .map(|i| got.get(i).map_or(0, |s| s.len()))
        .min()
        .unwrap_or(0)
}

#[test]
fn every_node_receives_all_sixteen_stripes_with_capacity_sixteen() {
    for_seeds(|seed| {
        let (mut m, members) = forest(seed, 64, 16)?;
        let block: Vec<u8> = (0..1600u32).map(|x| x as u8).collect();
        let b = publish_block(&mut m, 0, Bytes::from(block.clone()));
        m.run_for(secs(5));
        let worst = worst_reception(&m, 0, b, &members);
        let (extra, over, need) = interior_report(&mut m, &members, 16);
        eprintln!(
            "seed {seed}: worst {worst}/16, non-primary interior {extra} (minimum {need}), over capacity {over}"
        );
        ensure(worst == 16, || {
            format!("a node received only {worst} stripes")
        })?;
        ensure(over == 0, || format!("{over} nodes over capacity"))?;
        // Disjointness at full load (16 stripes, in-degree = out-degree = 16: about 98% of
        // all capacity is used). The floor `need` assumes every helper of a short stripe
        // gives it its whole capacity, which that load leaves no slack for; the bound is
        // that members forward outside their primary stripe in at most one stripe on
        // average (the floor is always below it). Measured: 41 to 47, 85 to 90 before
        // spare-group searches preferred disjoint adopters.
        ensure(extra <= members.len().max(need), || {
            format!("{extra} non-primary interior (node, stripe) pairs; minimum {need}")
        })?;
        // Whole blocks are reassembled.
        let complete = m
            .app_events
            .iter()
            .filter(|(i, app, v)| {
                *app == SS
                    && members.contains(i)
                    && matches!(v.downcast_ref::<SplitStreamEvent>(),
                        Some(SplitStreamEvent::BlockReceived { block: x, data, .. }) if *x == b && data[..] == block[..])
            })
            .count();
        ensure(complete == members.len(), || {
            format!("{complete} of {} reassembled the block", members.len())
        })?;
        Ok(())
    });
}

#[test]
fn nodes_are_interior_in_their_primary_stripe_only_when_capacity_allows() {
    for_seeds(|seed| {
        let (mut m, members) = forest(seed, 48, 48)?;
        let b = publish_block(&mut m, 0, Bytes::from(vec![7u8; 320]));
        m.run_for(secs(5));
        let worst = worst_reception(&m, 0, b, &members);
        let (extra, over, need) = interior_report(&mut m, &members, 48);
        eprintln!(
            "seed {seed}: worst {worst}/16, non-primary interior {extra} (minimum {need}), over {over}"
        );
        ensure(worst == 16 && over == 0, || {
            format!("worst {worst}, over {over}")
        })?;
        ensure(extra <= need + members.len() / 8, || {
            format!("{extra} non-primary interior (node, stripe) pairs; minimum {need}")
        })?;
        Ok(())
    });
}

#[test]
fn survivors_get_fifteen_of_sixteen_stripes_after_a_quarter_crashes() {
    for_seeds(|seed| {
        let (mut m, members) = forest(seed, 64, 16)?;
        // A quarter of the nodes crash at once (never the source).
        let crashed: BTreeSet<u32> = members.iter().copied().filter(|i| i % 4 == 2).collect();
        for &i in &crashed {
            m.crash(i);
        }
        let survivors: Vec<u32> = members
            .iter()
            .copied()
            .filter(|i| !crashed.contains(i))
            .collect();
        m.run_for(secs(90));
        let b = publish_block(&mut m, 0, Bytes::from(vec![1u8; 1600]));
        m.run_for(secs(5));
        let worst = worst_reception(&m, 0, b, &survivors);
        let full = {
            let got = stripes_received(&m, m.id(0), b);
            survivors
                .iter()
                .filter(|i| got.get(i).is_some_and(|s| s.len() == 16))
                .count()
        };
        eprintln!(
            "seed {seed}: {} crashed; worst survivor {worst}/16; {full}/{} got all 16",
            crashed.len(),
            survivors.len()
        );
        ensure(worst >= 15, || {
            format!("a survivor received only {worst} stripes")
        })?;
        Ok(())
    });
}
