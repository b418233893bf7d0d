//! A 20-node ring in one process over real QUIC on 127.0.0.1: every routed message reaches
//! the numerically closest node, leaf sets hold the true neighbours, and a crashed node's
//! keys are taken over by the new root.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use pastry_core::NodeId;
use pastry_net::{Identity, NodeOptions, RunningNode, spawn};

const WAIT: Duration = Duration::from_secs(20);

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Deterministic identities from seeds, so a failure names the same ids every run.
fn identity(i: u32) -> Identity {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_be_bytes());
    seed[31] = 0x5a;
    Identity::from_seed(seed)
}

async fn ring(n: u32) -> Vec<RunningNode> {
    let mut nodes: Vec<RunningNode> = Vec::new();
    for i in 0..n {
        let mut opts = NodeOptions::new(localhost(), identity(i));
        opts.seed = Some(u64::from(i));
        if let Some(first) = nodes.first() {
            opts.bootstrap = vec![first.addr()];
        }
        let node = spawn(opts).await.unwrap();
        node.wait_ready(WAIT).await.unwrap();
        nodes.push(node);
    }
    nodes
}

fn closest(ids: &[NodeId], key: NodeId) -> NodeId {
    *ids.iter()
        .reduce(|a, b| if key.is_closer(*b, *a) { b } else { a })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_node_ring_routes_to_the_closest_node_and_survives_a_crash() {
    let nodes = ring(20).await;
    let mut ids: Vec<NodeId> = nodes.iter().map(|n| n.id()).collect();

    // Leaf sets hold the true neighbours: the nearest 8 on each side.
    let mut sorted = ids.clone();
    sorted.sort();
    for n in &nodes {
        let st = n.status().await.unwrap();
        assert_eq!(st.state, "ready");
        let i = sorted.iter().position(|x| *x == n.id()).unwrap();
        let right: Vec<String> = (1..=8).map(|d| sorted[(i + d) % 20].to_string()).collect();
        let left: Vec<String> = (1..=8)
            .map(|d| sorted[(i + 20 - d) % 20].to_string())
            .collect();
        assert_eq!(st.leaf_set.right, right, "right leaf set of {}", st.id);
        assert_eq!(st.leaf_set.left, left, "left leaf set of {}", st.id);
    }

    // 100 routes from every node to pseudo-random keys: each at the closest node.
    let mut rng = pastry_core::rng::Rng::new(42);
    for k in 0..100 {
        let key = NodeId::from_u128(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()));
        let from = &nodes[k % nodes.len()];
        let r = from
            .route(key, Bytes::from_static(b"x"), true, WAIT)
            .await
            .unwrap();
        assert_eq!(r.root_id(), Some(closest(&ids, key)), "key {key}");
        assert_eq!(r.path.first(), Some(&from.id().to_string()));
        assert_eq!(r.path.last(), Some(&r.root));
        assert!(r.hops <= 3, "{} hops in a ring of 20", r.hops);
    }

    // Crash one node; its key must be delivered by the new root.
    let victim = nodes[7].id();
    nodes[7].crash().await.unwrap();
    ids.retain(|x| *x != victim);
    let key = victim;
    let new_root = closest(&ids, key);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = nodes[0]
            .route(key, Bytes::new(), false, Duration::from_secs(10))
            .await;
        if let Ok(r) = &r
            && r.root_id() == Some(new_root)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "key of the crashed node not re-owned: {r:?}"
        );
    }
    let leaving = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7)
        .map(|(_, n)| {
            let c = n.client().clone();
            async move { c.leave().await }
        });
    for r in futures_join(leaving).await {
        r.unwrap();
    }
}

async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
