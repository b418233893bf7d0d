//! Physical links under the plane and sphere models, for link stress.
//!
//! The plane and sphere models give each pair of nodes a latency but no links. To count
//! how many copies of a multicast message cross one physical link (the Scribe paper's
//! *link stress*), a router network is laid over the model: [`ROUTERS`] routers at uniform
//! random positions (the nodes' own distribution), each linked to its [`NEAREST`] nearest
//! routers and along a minimum spanning tree (so the network is connected), link length =
//! distance in the model. A node hangs off its nearest router by an access link of its own;
//! a packet from `a` to `b` takes `a`'s access link, a shortest path between the two
//! routers, and `b`'s access link.
//!
//! This is accounting only: latencies stay the model's. Measured RTT matrices have no
//! geometry, so there is no link map for `matrix:` runs.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use pastry_core::rng::Rng;

use crate::net::Topology;

/// Routers laid over the model.
pub const ROUTERS: usize = 1024;
/// Each router is linked to this many nearest others (plus the spanning tree's links).
pub const NEAREST: usize = 4;

/// A link: an access link (one per node) or a router-to-router link, as a dense index.
pub type LinkId = u32;

/// The router network under a plane or sphere model.
#[derive(Debug)]
pub struct LinkMap {
    sphere: bool,
    /// Router positions: plane (x, y, 0) or unit vectors.
    routers: Vec<[f64; 3]>,
    /// Per router: (neighbour, link id).
    adj: Vec<Vec<(u16, LinkId)>>,
    /// Router links.
    links: u32,
    /// `next[v * ROUTERS + d]`: the neighbour of `v` on a shortest path to `d`.
    next: Vec<u16>,
    /// Per node index (filled as nodes are looked up): its router.
    attach: Vec<u16>,
}

impl LinkMap {
    /// The router network for `topo`, from `seed`; `None` for a matrix.
    pub fn new(topo: &Topology, seed: u64) -> Option<LinkMap> {
        let sphere = match topo {
            Topology::Plane(_) => false,
            Topology::Sphere(_) => true,
            Topology::Matrix(_) => return None,
        };
        let mut rng = Rng::new(seed ^ 0x0114_e50f_11a4);
        let routers: Vec<[f64; 3]> = (0..ROUTERS)
            .map(|_| {
                if sphere {
                    let z = 2.0 * rng.unit() - 1.0;
                    let lon = 2.0 * std::f64::consts::PI * rng.unit();
                    let r = (1.0 - z * z).sqrt();
                    [r * lon.cos(), r * lon.sin(), z]
                } else {
                    [rng.unit() * 1000.0, rng.unit() * 1000.0, 0.0]
                }
            })
            .collect();
        let mut m = LinkMap {
            sphere,
            routers,
            adj: vec![Vec::new(); ROUTERS],
            links: 0,
            next: Vec::new(),
            attach: Vec::new(),
        };
        m.connect();
        m.route_all();
        Some(m)
    }

    fn dist(&self, p: [f64; 3], q: [f64; 3]) -> f64 {
        if self.sphere {
            (p[0] * q[0] + p[1] * q[1] + p[2] * q[2])
                .clamp(-1.0, 1.0)
                .acos()
        } else {
            ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()
        }
    }

    fn router_dist(&self, a: usize, b: usize) -> f64 {
        self.dist(self.routers[a], self.routers[b])
    }

    fn link(&mut self, a: usize, b: usize) {
        if a == b || self.adj[a].iter().any(|&(n, _)| usize::from(n) == b) {
            return;
        }
        let id = self.links;
        self.links += 1;
        self.adj[a].push((b as u16, id));
        self.adj[b].push((a as u16, id));
    }

    /// The k-nearest links and a minimum spanning tree (Prim's, O(R^2)).
    fn connect(&mut self) {
        let n = self.routers.len();
        for a in 0..n {
            let mut by: Vec<(f64, usize)> = (0..n)
                .filter(|&b| b != a)
                .map(|b| (self.router_dist(a, b), b))
                .collect();
            by.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            for &(_, b) in by.iter().take(NEAREST) {
                self.link(a, b);
            }
        }
        let mut in_tree = vec![false; n];
        let mut best: Vec<(f64, usize)> = (0..n).map(|b| (self.router_dist(0, b), 0)).collect();
        in_tree[0] = true;
        for _ in 1..n {
            let Some(v) = (0..n)
                .filter(|&v| !in_tree[v])
                .min_by(|&x, &y| best[x].0.total_cmp(&best[y].0).then(x.cmp(&y)))
            else {
                break;
            };
            in_tree[v] = true;
            self.link(v, best[v].1);
            for w in 0..n {
                let d = self.router_dist(v, w);
                if !in_tree[w] && d < best[w].0 {
                    best[w] = (d, v);
                }
            }
        }
    }

    /// Dijkstra from every router: `next` toward each destination.
    fn route_all(&mut self) {
        #[derive(PartialEq)]
        struct Item(f64, u16);
        impl Eq for Item {}
        impl PartialOrd for Item {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Item {
            fn cmp(&self, o: &Self) -> Ordering {
                o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
            }
        }
        let n = self.routers.len();
        self.next = vec![u16::MAX; n * n];
        let mut dist = vec![f64::INFINITY; n];
        let mut heap = BinaryHeap::new();
        for d in 0..n {
            dist.fill(f64::INFINITY);
            dist[d] = 0.0;
            self.next[d * n + d] = d as u16;
            heap.push(Item(0.0, d as u16));
            while let Some(Item(du, u)) = heap.pop() {
                let u = usize::from(u);
                if du > dist[u] {
                    continue;
                }
                for &(v, _) in &self.adj[u] {
                    let v = usize::from(v);
                    let dv = du + self.router_dist(u, v);
                    if dv < dist[v] {
                        dist[v] = dv;
                        // From v, the way to d starts with u.
                        self.next[v * n + d] = u as u16;
                        heap.push(Item(dv, v as u16));
                    }
                }
            }
        }
    }

    /// Router links, then one access link per node: ids below this are router links.
    pub fn router_links(&self) -> u32 {
        self.links
    }

    /// The router node `i` hangs off (its nearest).
    pub fn router_of(&mut self, topo: &Topology, i: u32) -> u16 {
        let i = i as usize;
        while self.attach.len() <= i {
            let k = self.attach.len() as u32;
            let p = match topo {
                Topology::Plane(v) => v
                    .get(k as usize)
                    .map(|p| [f64::from(p[0]), f64::from(p[1]), 0.0]),
                Topology::Sphere(v) => v
                    .get(k as usize)
                    .map(|p| [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])]),
                Topology::Matrix(_) => None,
            };
            let r = p.map_or(0, |p| {
                (0..self.routers.len())
                    .min_by(|&a, &b| {
                        self.dist(p, self.routers[a])
                            .total_cmp(&self.dist(p, self.routers[b]))
                    })
                    .unwrap_or(0)
            });
            self.attach.push(r as u16);
        }
        self.attach[i]
    }

    /// Appends the links a packet from node `a` to node `b` crosses.
    pub fn path(&mut self, topo: &Topology, a: u32, b: u32, out: &mut Vec<LinkId>) {
        if a == b {
            return;
        }
        let (ra, rb) = (self.router_of(topo, a), self.router_of(topo, b));
        out.push(self.links + a);
        let n = self.routers.len();
        let mut v = usize::from(ra);
        let d = usize::from(rb);
        // A shortest path has at most n - 1 links; the bound only guards the table.
        for _ in 0..n {
            if v == d {
                break;
            }
            let w = usize::from(self.next[v * n + d]);
            if let Some(&(_, id)) = self.adj[v].iter().find(|&&(x, _)| usize::from(x) == w) {
                out.push(id);
            }
            v = w;
        }
        out.push(self.links + b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(points: &[[f32; 2]]) -> Topology {
        Topology::Plane(points.to_vec())
    }

    #[test]
    fn every_router_reaches_every_other_along_links() {
        for topo in [plane(&[]), Topology::Sphere(Vec::new())] {
            let m = LinkMap::new(&topo, 7).expect("a link map for plane and sphere");
            assert!(m.router_links() as usize >= ROUTERS - 1);
            let n = ROUTERS;
            for d in (0..n).step_by(97) {
                for s in (0..n).step_by(89) {
                    let mut v = s;
                    let mut steps = 0;
                    while v != d {
                        let w = usize::from(m.next[v * n + d]);
                        assert!(
                            m.adj[v].iter().any(|&(x, _)| usize::from(x) == w),
                            "next hop {w} of {v} is not a neighbour"
                        );
                        v = w;
                        steps += 1;
                        assert!(steps < n, "no route from {s} to {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_path_is_two_access_links_around_the_router_path() {
        let topo = plane(&[[10.0, 10.0], [990.0, 990.0], [10.5, 10.5]]);
        let mut m = LinkMap::new(&topo, 1).unwrap();
        let mut p = Vec::new();
        m.path(&topo, 0, 1, &mut p);
        let access = m.router_links();
        assert_eq!(p.first(), Some(&access));
        assert_eq!(p.last(), Some(&(access + 1)));
        // Corner to corner crosses many routers; each router link at most once.
        let core: Vec<LinkId> = p[1..p.len() - 1].to_vec();
        assert!(
            core.len() >= 10,
            "{} router links corner to corner",
            core.len()
        );
        assert!(core.iter().all(|&l| l < access));
        let mut dedup = core.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), core.len());
        // The reverse path crosses the same links.
        let mut back = Vec::new();
        m.path(&topo, 1, 0, &mut back);
        back.sort_unstable();
        p.sort_unstable();
        assert_eq!(back, p);
        // Two nodes on the same router: only their access links.
        p.clear();
        m.path(&topo, 0, 2, &mut p);
        if m.router_of(&topo, 0) == m.router_of(&topo, 2) {
            assert_eq!(p, vec![access, access + 2]);
        }
        p.clear();
        m.path(&topo, 2, 2, &mut p);
        assert!(p.is_empty());
    }

    #[test]
    fn no_link_map_for_a_matrix() {
        let m = crate::net::RttMatrix::parse("0 10\n10 0\n").unwrap();
        assert!(LinkMap::new(&Topology::Matrix(std::sync::Arc::new(m)), 1).is_none());
    }
}
