//! Caching along the lookup route: repeated lookups of a popular object from many nodes
//! are answered by caches on their routes (not only by the replicas), with identical bytes;
//! with caching off, every answer comes from a replica.

mod common;

use common::*;
use pastry_past::{PastConfig, PastEvent};

fn popular_object(seed: u64, caching: bool) -> Result<(u64, u64, u64), String> {
    let cfg = PastConfig {
        caching,
        ..PastConfig::default()
    };
    // Two replicas: in a ring this small the nodes sharing the key's first digit (the
    // usual last hop) are otherwise the replica nodes themselves.
    let mut m = ring(seed, 60, &cfg)?;
    let nodes = m.live();
    let data = content(seed, 4000);
    let (key, _) = insert(&mut m, nodes[0], data.clone(), Some(2), secs(3));
    let replicas = k_closest(&m, key, 2);
    let (mut from_route_cache, mut from_replica) = (0, 0);
    for round in 0..2 {
        for &c in &nodes {
            let req = past(&mut m, c, |p, ctx| p.lookup(ctx, key));
            m.run_for(secs(1));
            let ev = take_events(&mut m);
            match answer(&ev, c, req) {
                Some(PastEvent::Found {
                    object,
                    from_cache,
                    source,
                    ..
                }) => {
                    ensure(object.content() == &data, || {
                        format!("node {c} got other bytes")
                    })?;
                    let src = m
                        .live()
                        .into_iter()
                        .find(|&i| m.id(i) == source.id)
                        .ok_or("source")?;
                    if *from_cache && src != c {
                        from_route_cache += 1;
                        ensure(!replicas.contains(&src) || round > 0, || {
                            "replica served from cache".into()
                        })?;
                    } else if !from_cache {
                        from_replica += 1;
                    }
                    if !caching {
                        ensure(!from_cache, || "cache used while caching is off".into())?;
                    }
                }
                e => return Err(format!("lookup from {c}: {e:?}")),
            }
        }
    }
    let served = total(&mut m, |s| s.lookups_served_from_cache);
    let cached = total(&mut m, |s| s.cache_entries);
    ensure(
        cached <= if caching { nodes.len() as u64 } else { 0 },
        || format!("{cached} cache entries"),
    )?;
    Ok((from_route_cache, from_replica, served))
}

#[test]
fn repeated_lookups_are_served_by_caches_on_the_route() {
    for_seeds(|seed| {
        let (route, replica, served) = popular_object(seed, true)?;
        ensure(route > 0, || {
            format!("no lookup answered by a route cache ({replica} by replicas)")
        })?;
        // The second round from each non-replica node is answered by its own cache.
        ensure(served >= 58 + route, || {
            format!("served from cache {served}, route {route}")
        })?;
        Ok(())
    });
}

#[test]
fn with_caching_off_replicas_answer_everything() {
    for_seeds(|seed| {
        let (route, replica, served) = popular_object(seed, false)?;
        ensure(route == 0 && served == 0, || {
            format!("cache answers: {route} {served}")
        })?;
        ensure(replica == 120, || {
            format!("{replica} replica answers of 120")
        })
    });
}
