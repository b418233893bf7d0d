//! Join edge cases on the in-memory `Mesh`: a bootstrap that never answers, the consistent
//! join (nothing delivered before `Ready`), tiny rings, unusual `b` and |L|, a joiner that
//! crashes half way, and rejoining under the same id after a crash. Ring tests run several
//! seeds and name the failing one.

use std::time::Duration;

use pastry_core::leafset::Side;
use pastry_core::mesh::Mesh;
use pastry_core::{Config, Instant, NodeId, NodeState, RouteError};

const SEEDS: [u64; 3] = [1, 2, 3];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Runs `f` for every seed; a failure names its seed.
fn for_seeds(f: impl Fn(u64) -> Result<(), String>) {
    let mut failed = Vec::new();
    for seed in SEEDS {
        if let Err(e) = f(seed) {
            eprintln!("FAILED with seed {seed}: {e}");
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?} (see stderr)");
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

/// A ring of `n` nodes joined one by one, settled, with correct leaf sets.
fn converged_ring(cfg: Config, seed: u64, n: usize) -> Result<Mesh, String> {
    let mut m = Mesh::new(cfg, seed);
    m.build_ring(n, secs(1));
    m.run_for(secs(30));
    m.check_leaf_sets()?;
    Ok(m)
}

/// Routes `n` lookups from random live ready nodes to random keys.
fn send_lookups(m: &mut Mesh, n: usize) -> Vec<(NodeId, NodeId, u64)> {
    let mut sent = Vec::new();
    for _ in 0..n {
        let from = m.random_live_ready().expect("a ready node");
        let key = m.random_id();
        sent.push((m.id(from), key, m.route(from, key, b"x")));
    }
    sent
}

/// Each lookup was delivered exactly once, at the closest live ready node of the moment.
fn check_lookups(m: &Mesh, sent: &[(NodeId, NodeId, u64)]) -> Result<(), String> {
    check_lookups_since(m, 0, sent)
}

/// As `check_lookups`, counting only deliveries from index `start` of `m.deliveries` on.
fn check_lookups_since(
    m: &Mesh,
    start: usize,
    sent: &[(NodeId, NodeId, u64)],
) -> Result<(), String> {
    for &(origin, key, req) in sent {
        let ds: Vec<_> = m.deliveries[start..]
            .iter()
            .filter(|d| {
                d.delivery.origin.id == origin && d.delivery.request == req && d.delivery.key == key
            })
            .collect();
        ensure(ds.len() == 1, || {
            let f: Vec<_> = m.failures.iter().filter(|f| f.1 == key).collect();
            format!(
                "lookup of {key:?} (request {req}) delivered {} times; failures {f:?}",
                ds.len()
            )
        })?;
        ensure(ds[0].at == ds[0].expected, || {
            format!(
                "{key:?} delivered at {} but closest live was {}",
                ds[0].at, ds[0].expected
            )
        })?;
    }
    Ok(())
}

/// `check_leaf_sets` compares ids; this also checks that every leaf-set member is reached
/// at the address of the live node with that id.
fn check_addresses(m: &Mesh) -> Result<(), String> {
    for i in m.live() {
        for h in m.nodes[i as usize].leaf_set().handles() {
            let owner = m.live().into_iter().find(|&x| m.id(x) == h.id);
            ensure(owner == Some(h.addr), || {
                format!(
                    "node {i} reaches {:?} at {}, live owner {owner:?}",
                    h.id, h.addr
                )
            })?;
        }
    }
    Ok(())
}

fn no_violations(m: &Mesh) -> Result<(), String> {
    let v = m.violations();
    ensure(v.is_empty(), || {
        format!("{} deliveries at a wrong node, first {:?}", v.len(), v[0])
    })
}

/// Joins node `j` through `bootstrap`, which never answers, and checks the join fails after
/// exactly `join_attempts * join_timeout`, not before.
fn join_fails_on_time(m: &mut Mesh, j: u32, bootstrap: u32) -> Result<(), String> {
    let t0 = m.now();
    let (attempts, timeout) = (m.cfg.join_attempts, m.cfg.join_timeout);
    let give_up = t0 + timeout * attempts;
    m.join(j, bootstrap);
    ensure(m.nodes[j as usize].state() == NodeState::Joining, || {
        "not joining".into()
    })?;
    m.run_until(give_up - Duration::from_micros(1));
    ensure(m.join_failures.is_empty(), || {
        format!("gave up early, before {give_up:?}")
    })?;
    ensure(m.nodes[j as usize].state() == NodeState::Joining, || {
        format!("{:?} before the last timeout", m.nodes[j as usize].state())
    })?;
    m.run_until(give_up);
    ensure(m.join_failures == vec![j], || {
        format!("join failures {:?} at {give_up:?}", m.join_failures)
    })?;
    ensure(m.nodes[j as usize].state() == NodeState::Left, || {
        format!("{:?} after JoinFailed", m.nodes[j as usize].state())
    })?;
    // One join request per attempt, and nothing more to do.
    let route_sent = m.nodes[j as usize].stats().sent[0];
    ensure(route_sent == u64::from(attempts), || {
        format!("{route_sent} join requests for {attempts} attempts")
    })?;
    ensure(m.nodes[j as usize].poll_timeout().is_none(), || {
        "timers left after giving up".into()
    })?;
    ensure(!m.live().contains(&j), || {
        "a failed joiner counts as live".into()
    })?;
    let now = m.now();
    ensure(
        m.nodes[j as usize].route(now, NodeId::ZERO, 0, bytes::Bytes::new())
            == Err(RouteError::NotMember),
        || "a node that gave up still routes".into(),
    )
}

#[test]
fn join_through_a_crashed_bootstrap_fails_after_every_attempt() {
    for_seeds(|seed| {
        let mut m = converged_ring(Config::default(), seed, 5)?;
        let dead = m.random_live_ready().unwrap();
        m.crash(dead);
        let j = m.add_node();
        join_fails_on_time(&mut m, j, dead)?;
        // The ring never heard of it.
        m.run_for(secs(30));
        m.check_leaf_sets()
    });
}

#[test]
fn join_through_a_silent_bootstrap_fails_with_other_timeouts() {
    let cfg = Config {
        join_attempts: 2,
        join_timeout: secs(3),
        ..Config::default()
    };
    for_seeds(|seed| {
        let mut m = converged_ring(cfg.clone(), seed, 5)?;
        // A node that never started ignores everything.
        let idle = m.add_node();
        let j = m.add_node();
        join_fails_on_time(&mut m, j, idle)?;
        ensure(m.nodes[idle as usize].stats().ignored == 2, || {
            format!(
                "idle node ignored {}",
                m.nodes[idle as usize].stats().ignored
            )
        })
    });
}

#[test]
fn join_tries_the_next_bootstrap_after_a_timeout() {
    for_seeds(|seed| {
        let mut m = converged_ring(Config::default(), seed, 10)?;
        // An address where nobody answers.
        let dead = m.add_node();
        m.crash(dead);
        let alive = m.random_live_ready().unwrap();
        let j = m.add_node();
        let t0 = m.now();
        let now = m.now();
        m.nodes[j as usize].join(now, &[dead, alive]);
        // `Mesh::join` on a node already joining only drains it into the mesh.
        m.join(j, dead);
        m.run_until(t0 + m.cfg.join_timeout - ms(1));
        ensure(m.nodes[j as usize].state() == NodeState::Joining, || {
            "ready before the first attempt timed out".into()
        })?;
        m.run_for(secs(10));
        ensure(m.nodes[j as usize].state() == NodeState::Ready, || {
            format!(
                "{:?} after trying the live bootstrap",
                m.nodes[j as usize].state()
            )
        })?;
        ensure(m.join_failures.is_empty(), || "join failed".into())?;
        m.run_for(secs(30));
        m.check_leaf_sets()?;
        let sent = send_lookups(&mut m, 100);
        m.run_for(secs(10));
        check_lookups(&m, &sent)
    });
}

/// Keys the joiner `j` will own once in the ring: its id and points half way to where its
/// future neighbours take over.
fn keys_owned_by(m: &Mesh, j: u32) -> Vec<NodeId> {
    let me = m.id(j);
    let mut others: Vec<NodeId> = m.live_ready().iter().map(|&i| m.id(i)).collect();
    others.sort();
    let right = others
        .iter()
        .copied()
        .min_by_key(|&x| me.cw_distance(x))
        .unwrap();
    let left = others
        .iter()
        .copied()
        .min_by_key(|&x| x.cw_distance(me))
        .unwrap();
    vec![
        me,
        me.wrapping_add(me.cw_distance(right) / 4),
        left.wrapping_add(left.cw_distance(me) / 4 * 3),
    ]
}

#[test]
fn a_joining_node_delivers_nothing_before_it_is_ready() {
    for_seeds(|seed| {
        let mut m = converged_ring(Config::default(), seed, 30)?;
        let j = m.add_node();
        let keys = keys_owned_by(&m, j);
        let b = m.random_live_ready().unwrap();
        let start = m.deliveries.len();
        m.join(j, b);
        let mut sent = Vec::new();
        let mut ready_at: Option<Instant> = None;
        let mut next_send = m.now();
        let mut steps = 0u32;
        // Until two seconds after it is ready: step the mesh one item at a time, routing the
        // joiner's future keys every 20 ms from random ready nodes and from the joiner.
        while ready_at.is_none_or(|t| m.now() < t + secs(2)) {
            ensure(steps < 1_000_000, || "the joiner never became ready".into())?;
            steps += 1;
            if m.now() >= next_send {
                next_send = m.now() + ms(20);
                for &key in &keys {
                    let from = m.random_live_ready().unwrap();
                    sent.push((m.id(from), key, m.route(from, key, b"k")));
                }
                if ready_at.is_none() {
                    sent.push((m.id(j), keys[0], m.route(j, keys[0], b"own")));
                }
            }
            if !m.step() {
                m.run_for(ms(1));
            }
            if ready_at.is_none() && m.nodes[j as usize].state() == NodeState::Ready {
                ready_at = Some(m.now());
            }
        }
        let ready_at = ready_at.unwrap();
        m.run_for(secs(10));
        let sent_while_joining = sent.len();
        ensure(sent_while_joining > 10, || {
            format!("only {sent_while_joining} lookups raced the join")
        })?;
        // Nothing at the joiner before it was ready, and it held at least its own lookups.
        let at_j: Vec<_> = m.deliveries[start..].iter().filter(|d| d.at == j).collect();
        ensure(!at_j.is_empty(), || "the joiner never delivered".into())?;
        if let Some(d) = at_j.iter().find(|d| d.time < ready_at) {
            return Err(format!(
                "delivered {:?} at {:?}, before it was ready at {ready_at:?}",
                d.delivery.key, d.time
            ));
        }
        ensure(m.nodes[j as usize].stats().held > 0, || {
            "the joiner held nothing".into()
        })?;
        // Every lookup exactly once, at the node that owned the key at that moment: the old
        // owner before, the joiner after.
        check_lookups(&m, &sent)?;
        let before = m.deliveries[start..]
            .iter()
            .filter(|d| d.time < ready_at)
            .count();
        ensure(before > 0, || "no delivery during the join".into())?;
        no_violations(&m)?;
        m.check_leaf_sets()
    });
}

#[test]
fn joining_a_one_node_ring() {
    for_seeds(|seed| {
        let mut m = Mesh::new(Config::default(), seed);
        let a = m.add_node();
        m.start_ring(a);
        ensure(m.nodes[a as usize].state() == NodeState::Ready, || {
            "start_ring".into()
        })?;
        let b = m.add_node();
        m.join(b, a);
        m.run_for(secs(5));
        ensure(m.nodes[b as usize].state() == NodeState::Ready, || {
            format!("second node {:?}", m.nodes[b as usize].state())
        })?;
        m.check_leaf_sets()?;
        // Each is the other's only member, on both sides.
        for (x, y) in [(a, b), (b, a)] {
            let ls = m.nodes[x as usize].leaf_set();
            ensure(ls.handles() == vec![m.nodes[y as usize].handle()], || {
                format!("node {x} leaf set {:?}", ls.handles())
            })?;
            ensure(ls.covers_ring(), || {
                format!("node {x} does not cover the ring")
            })?;
        }
        let sent = send_lookups(&mut m, 50);
        m.run_for(secs(5));
        check_lookups(&m, &sent)?;
        // A third node through the second one, and the lone ring keeps working.
        let c = m.add_node();
        m.join(c, b);
        m.run_for(secs(20));
        m.check_leaf_sets()?;
        let sent = send_lookups(&mut m, 50);
        m.run_for(secs(5));
        check_lookups(&m, &sent)?;
        no_violations(&m)
    });
}

#[test]
fn joining_through_a_node_that_is_still_joining() {
    for_seeds(|seed| {
        let mut m = converged_ring(Config::default(), seed, 10)?;
        let j1 = m.add_node();
        let j2 = m.add_node();
        let b = m.random_live_ready().unwrap();
        m.join(j1, b);
        m.join(j2, j1);
        m.run_for(secs(30));
        for j in [j1, j2] {
            ensure(m.nodes[j as usize].state() == NodeState::Ready, || {
                format!("node {j} {:?}", m.nodes[j as usize].state())
            })?;
        }
        m.check_leaf_sets()?;
        let sent = send_lookups(&mut m, 100);
        m.run_for(secs(10));
        check_lookups(&m, &sent)?;
        no_violations(&m)
    });
}

#[test]
fn joins_converge_for_every_digit_size_and_leaf_set_size() {
    let mut failed = Vec::new();
    for b in [1u8, 2, 8] {
        for l in [2usize, 4, 32] {
            let cfg = Config {
                b,
                leaf_set_size: l,
                max_reroutes: 12.max(l / 2) as u8,
                ..Config::default()
            };
            for seed in [1u64, 2] {
                let run = || -> Result<(), String> {
                    let mut m = converged_ring(cfg.clone(), seed, 40)?;
                    let sent = send_lookups(&mut m, 200);
                    m.run_for(secs(10));
                    check_lookups(&m, &sent)?;
                    // A few more joins into the settled ring.
                    for _ in 0..5 {
                        let j = m.add_node();
                        let boot = m.random_live_ready().unwrap();
                        m.join(j, boot);
                        m.run_for(ms(300));
                    }
                    m.run_for(secs(30));
                    m.check_leaf_sets()?;
                    let sent = send_lookups(&mut m, 200);
                    m.run_for(secs(10));
                    check_lookups(&m, &sent)?;
                    no_violations(&m)
                };
                if let Err(e) = run() {
                    eprintln!("FAILED with b = {b}, |L| = {l}, seed {seed}: {e}");
                    failed.push((b, l, seed));
                }
            }
        }
    }
    assert!(failed.is_empty(), "failing (b, |L|, seed): {failed:?}");
}

#[test]
fn a_joiner_that_crashes_half_way_leaves_no_trace() {
    for_seeds(|seed| {
        let mut m = converged_ring(Config::default(), seed, 30)?;
        let j = m.add_node();
        let b = m.random_live_ready().unwrap();
        m.join(j, b);
        // Step until some ring member has the joiner in its leaf set, then crash it.
        let jid = m.id(j);
        let mut steps = 0;
        while !m
            .live_ready()
            .iter()
            .any(|&i| m.nodes[i as usize].leaf_set().contains(jid))
        {
            ensure(m.step() && steps < 100_000, || {
                "nobody took the joiner".into()
            })?;
            steps += 1;
        }
        ensure(m.nodes[j as usize].state() == NodeState::Joining, || {
            "the joiner was already ready".into()
        })?;
        m.crash(j);
        m.run_for(secs(60));
        m.check_leaf_sets()?;
        let sent = send_lookups(&mut m, 100);
        m.run_for(secs(10));
        check_lookups(&m, &sent)?;
        no_violations(&m)
    });
}

/// Crashes a node and starts a new one with the same id (a new address) after `wait`.
fn rejoin_same_id(seed: u64, wait: Duration) -> Result<(), String> {
    let mut m = converged_ring(Config::default(), seed, 30)?;
    let v = m.random_live_ready().unwrap();
    let id = m.id(v);
    m.crash(v);
    m.run_for(wait);
    let w = m.add_node_with_id(id);
    let b = m.random_live_ready().unwrap();
    m.join(w, b);
    m.run_for(secs(90));
    ensure(m.nodes[w as usize].state() == NodeState::Ready, || {
        format!("rejoined node {:?}", m.nodes[w as usize].state())
    })?;
    m.check_leaf_sets()?;
    // Members that still reach the id at the crashed node's address.
    let stale: Vec<u32> = m
        .live()
        .into_iter()
        .filter(|&i| {
            m.nodes[i as usize]
                .leaf_set()
                .handles()
                .iter()
                .any(|h| h.id == id && h.addr != w)
        })
        .collect();
    let start = m.deliveries.len();
    let mut sent = send_lookups(&mut m, 200);
    // Keys the node owns, from everywhere.
    for from in m.live_ready() {
        sent.push((m.id(from), id, m.route(from, id, b"x")));
    }
    m.run_for(secs(10));
    check_lookups_since(&m, start, &sent).map_err(|e| {
        format!(
            "{e}; before these lookups, nodes {stale:?} still had the rejoined id at the \
             crashed node's address {v} (it is now at {w})"
        )
    })?;
    ensure(stale.is_empty(), || {
        format!("nodes {stale:?} reach the rejoined id at the old address {v}, not {w}")
    })?;
    check_addresses(&m)?;
    ensure(m.deliveries[start..].iter().any(|d| d.at == w), || {
        "the rejoined node delivered nothing".into()
    })?;
    no_violations(&m)
}

#[test]
fn rejoin_under_the_same_id_after_the_crash_was_noticed() {
    for_seeds(|seed| rejoin_same_id(seed, secs(30)));
}

#[test]
fn rejoin_under_the_same_id_before_the_crash_was_noticed() {
    for_seeds(|seed| rejoin_same_id(seed, ms(100)));
}

/// A node that restarts under the same id starts numbering its requests afresh; roots that
/// remember the previous incarnation's (origin, request) pairs for de-duplication must not
/// swallow the new incarnation's lookups.
#[test]
fn lookups_of_a_rejoined_node_are_not_taken_for_duplicates() {
    for_seeds(|seed| {
        let mut m = converged_ring(Config::default(), seed, 30)?;
        let v = m.random_live_ready().unwrap();
        let id = m.id(v);
        let keys: Vec<NodeId> = (0..5).map(|_| m.random_id()).collect();
        let mut first = Vec::new();
        for &key in &keys {
            first.push((id, key, m.route(v, key, b"old")));
        }
        m.run_for(secs(5));
        check_lookups(&m, &first)?;
        m.crash(v);
        m.run_for(secs(30));
        let w = m.add_node_with_id(id);
        let b = m.random_live_ready().unwrap();
        m.join(w, b);
        m.run_for(secs(60));
        m.check_leaf_sets()?;
        let start = m.deliveries.len();
        let mut second = Vec::new();
        for &key in &keys {
            second.push((id, key, m.route(w, key, b"new")));
        }
        m.run_for(secs(5));
        check_lookups_since(&m, start, &second).map_err(|e| {
            format!(
                "{e} (requests of the old incarnation {:?}, new {:?}; duplicates swallowed: {})",
                first.iter().map(|x| x.2).collect::<Vec<_>>(),
                second.iter().map(|x| x.2).collect::<Vec<_>>(),
                m.live()
                    .iter()
                    .map(|&i| m.nodes[i as usize].stats().duplicates)
                    .sum::<u64>()
            )
        })
    });
}

/// Nodes whose leaf-set side lacks a true member that sits on their other side: the
/// signature of a side refilled without the members it already holds on the other side.
fn one_sided_members(m: &Mesh) -> Vec<String> {
    let mut ids: Vec<NodeId> = m.live().iter().map(|&i| m.id(i)).collect();
    ids.sort();
    let n = ids.len();
    let half = m.cfg.leaf_set_size / 2;
    let mut out = Vec::new();
    for i in m.live() {
        let ls = m.nodes[i as usize].leaf_set();
        let pos = ids.binary_search(&m.id(i)).unwrap();
        for (side, other, step) in [
            (Side::Left, Side::Right, n - 1),
            (Side::Right, Side::Left, 1),
        ] {
            let got: Vec<NodeId> = ls.side(side).iter().map(|l| l.handle.id).collect();
            for k in 1..=half.min(n - 1) {
                let want = ids[(pos + k * step) % n];
                let elsewhere = ls.side(other).iter().any(|l| l.handle.id == want);
                if !got.contains(&want) && elsewhere {
                    out.push(format!(
                        "node {i}: {want:?} missing on its {side:?} side, present on the {other:?}"
                    ));
                }
            }
        }
    }
    out
}

/// In a ring smaller than |L| + 1, members sit on both sides. After a crash, the side that
/// lost a member must be refilled with the nearest nodes that way, even those already on
/// the other side; a replacement node then joins.
#[test]
fn a_ring_smaller_than_the_leaf_set_converges_after_a_crash_and_a_join() {
    for_seeds(|seed| {
        let mut m = converged_ring(Config::default(), seed, 12)?;
        let v = m.random_live_ready().unwrap();
        m.crash(v);
        m.run_for(secs(60));
        let j = m.add_node();
        let b = m.random_live_ready().unwrap();
        m.join(j, b);
        m.run_for(secs(60));
        m.check_leaf_sets().map_err(|e| {
            let why = one_sided_members(&m);
            format!(
                "{e}\n{} one-sided members, e.g. {:?}",
                why.len(),
                why.first()
            )
        })?;
        let sent = send_lookups(&mut m, 100);
        m.run_for(secs(10));
        check_lookups(&m, &sent)
    });
}
