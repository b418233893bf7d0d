//! The relative delay penalty (RDP) floor of Pastry prefix routing on the `plane` model.
//!
//! Builds an idealised, static overlay: every node has its exact leaf set (|L| = 16, eight
//! numerically nearest on each side) and a routing table (b = 4) whose slot (row r, column c)
//! holds the lowest-latency node among all nodes sharing the node's first r digits and having
//! digit c at position r (perfect proximity neighbour selection). It then routes random
//! lookups with Pastry's rule and reports hops and RDP. With `--rt-candidates K` each slot
//! holds the nearest of only K uniformly random candidates instead (K = 1: random tables).
//! `--know-group K` measures a routing extension, not Pastry: a node whose own prefix group
//! at a table hop's row (the nodes sharing as many leading digits with it as the key does)
//! has at most K members knows them all, and sends the message straight to the one
//! numerically closest to the key.
//!
//! The network reproduces the simulator's plane model (`src/net.rs`): positions uniform on a
//! 1000 x 1000 plane, stored as `f32`; one-way latency is the Euclidean distance at 100 us
//! per unit, truncated to whole microseconds, with no per-message constant. Nothing here uses
//! the simulator itself, and no messages or failures are simulated.
//!
//! `cargo run --release -p pastry-sim --example rdp_floor -- --nodes 100000 --seed 1`

use std::process::ExitCode;
use std::time::Instant;

use pastry_core::NodeId;

/// Digit width in bits (hex digits).
const B: u8 = 4;
/// Columns per routing-table row.
const COLS: usize = 1 << B;
/// Leaf-set members on each side.
const LEAF_HALF: usize = 8;
/// Side of the plane, in distance units.
const PLANE_SIDE: f64 = 1000.0;
/// One-way latency per distance unit, in microseconds (as in `net.rs`).
const US_PER_UNIT: f64 = 100.0;
/// Candidate sets larger than this get a grid index; smaller ones are scanned.
const GRID_MIN: usize = 64;
/// Routes longer than this are counted as failures (a loop would be a bug).
const MAX_HOPS: usize = 64;
/// An empty routing-table slot.
const NONE: u32 = u32::MAX;

const USAGE: &str = "\
usage: rdp_floor [--nodes N] [--lookups L] [--seed S] [--rt-candidates K] [--know-group K]
  --nodes N           nodes on the ring (default 100000, at least 2)
  --lookups L         random lookups to route (default 200000, at least 1)
  --seed S            seed for ids, positions, lookups and candidate draws (default 1)
  --rt-candidates K   each routing-table slot holds the nearest of K random candidates
                      (default: all candidates, i.e. perfect proximity tables)
  --know-group K      a node knows its whole prefix group at a table hop's row when it has
                      at most K members, and goes to the one closest to the key (default 0:
                      Pastry's rule)";

/// Command-line options.
#[derive(Debug)]
struct Opts {
    nodes: usize,
    lookups: usize,
    seed: u64,
    rt_candidates: Option<usize>,
    know_group: usize,
}

/// Parses argv; `Err` carries the message to print before the usage text.
fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        nodes: 100_000,
        lookups: 200_000,
        seed: 1,
        rt_candidates: None,
        know_group: 0,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let flags = [
            "--nodes",
            "--lookups",
            "--seed",
            "--rt-candidates",
            "--know-group",
        ];
        if !flags.contains(&flag.as_str()) {
            return Err(format!("unknown argument `{flag}`"));
        }
        let val = it
            .next()
            .ok_or_else(|| format!("missing value after `{flag}`"))?;
        let num = |what: &str| -> Result<u64, String> {
            val.replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("{what}: `{val}` is not a non-negative integer"))
        };
        match flag.as_str() {
            "--nodes" => o.nodes = usize::try_from(num("--nodes")?).map_err(|e| e.to_string())?,
            "--lookups" => {
                o.lookups = usize::try_from(num("--lookups")?).map_err(|e| e.to_string())?;
            }
            "--seed" => o.seed = num("--seed")?,
            "--know-group" => {
                o.know_group = usize::try_from(num("--know-group")?).map_err(|e| e.to_string())?;
            }
            "--rt-candidates" => {
                o.rt_candidates =
                    Some(usize::try_from(num("--rt-candidates")?).map_err(|e| e.to_string())?);
            }
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    if o.nodes < 2 || o.nodes >= NONE as usize {
        return Err(format!("--nodes must be in 2..{NONE}"));
    }
    if o.lookups == 0 {
        return Err("--lookups must be at least 1".into());
    }
    if o.rt_candidates == Some(0) {
        return Err("--rt-candidates must be at least 1".into());
    }
    Ok(o)
}

/// SplitMix64: a small seeded generator.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Squared distance exactly as `net.rs` computes it (f32 difference, then f64).
fn dist2(p: [f32; 2], q: [f32; 2]) -> f64 {
    let (dx, dy) = (f64::from(p[0] - q[0]), f64::from(p[1] - q[1]));
    dx * dx + dy * dy
}

/// One-way latency in microseconds, as `Topology::latency_us` on the plane.
fn latency_us(pos: &[[f32; 2]], a: u32, b: u32) -> u64 {
    if a == b {
        return 0;
    }
    (dist2(pos[a as usize], pos[b as usize]).sqrt() * US_PER_UNIT) as u64
}

/// A uniform grid over the points with indices `lo..hi`, for exact nearest-neighbour queries.
#[derive(Debug)]
struct Grid {
    g: usize,
    cell: f64,
    /// `start[c]..start[c + 1]` indexes `items` for cell `c` (row-major).
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Grid {
    fn cell_of(&self, v: f32) -> usize {
        ((f64::from(v) / self.cell) as usize).min(self.g - 1)
    }

    fn new(pos: &[[f32; 2]], lo: usize, hi: usize) -> Grid {
        let m = hi - lo;
        let g = ((m as f64 / 2.0).sqrt() as usize).max(1); // about two points per cell
        let mut grid = Grid {
            g,
            cell: PLANE_SIDE / g as f64,
            start: vec![0; g * g + 1],
            items: vec![0; m],
        };
        let key = |grid: &Grid, i: usize| grid.cell_of(pos[i][1]) * g + grid.cell_of(pos[i][0]);
        for i in lo..hi {
            let c = key(&grid, i);
            grid.start[c + 1] += 1;
        }
        for c in 0..g * g {
            grid.start[c + 1] += grid.start[c];
        }
        let mut fill = grid.start.clone();
        for i in lo..hi {
            let c = key(&grid, i);
            grid.items[fill[c] as usize] = i as u32;
            fill[c] += 1;
        }
        grid
    }

    /// The point nearest `p` (smallest computed distance, then smallest index).
    fn nearest(&self, pos: &[[f32; 2]], p: [f32; 2]) -> u32 {
        let (cx, cy) = (self.cell_of(p[0]) as isize, self.cell_of(p[1]) as isize);
        let g = self.g as isize;
        let mut best = (f64::INFINITY, NONE);
        for k in 0..=g {
            // Cells at Chebyshev distance exactly k from (cx, cy).
            for y in (cy - k).max(0)..=(cy + k).min(g - 1) {
                let edge = y == cy - k || y == cy + k;
                let step = if edge { 1 } else { 2 * k.max(1) };
                let mut x = cx - k;
                while x <= cx + k {
                    if (0..g).contains(&x) {
                        let c = (y * g + x) as usize;
                        for &i in &self.items[self.start[c] as usize..self.start[c + 1] as usize] {
                            let d = dist2(p, pos[i as usize]);
                            if d < best.0 || (d == best.0 && i < best.1) {
                                best = (d, i);
                            }
                        }
                    }
                    x += step;
                }
            }
            // Every point in ring k + 1 or beyond is more than k cells away on one axis.
            // The slack covers f32 rounding in `dist2`.
            let reach = k as f64 * self.cell - 1e-3;
            if best.1 != NONE && reach > 0.0 && best.0 <= reach * reach {
                break;
            }
        }
        best.1
    }
}

/// Nearest of the points `lo..hi` to `p`, by scanning.
fn nearest_scan(pos: &[[f32; 2]], p: [f32; 2], lo: usize, hi: usize) -> u32 {
    let mut best = (f64::INFINITY, NONE);
    for (i, &q) in pos.iter().enumerate().take(hi).skip(lo) {
        let d = dist2(p, q);
        if d < best.0 {
            best = (d, i as u32);
        }
    }
    best.1
}

/// Nearest to `p` of `k` distinct uniformly random points of `lo..hi` (all when fewer),
/// drawn by Floyd's algorithm; `stamp`/`gen` mark the points already drawn.
fn nearest_of_random(
    pos: &[[f32; 2]],
    p: [f32; 2],
    (lo, hi): (usize, usize),
    k: usize,
    rng: &mut Rng,
    stamp: &mut [u32],
    generation: &mut u32,
) -> u32 {
    let m = hi - lo;
    if m <= k {
        return nearest_scan(pos, p, lo, hi);
    }
    *generation += 1;
    let mut best = (f64::INFINITY, NONE);
    for j in m - k..m {
        let t = rng.below(j + 1);
        let pick = if stamp[lo + t] == *generation { j } else { t };
        stamp[lo + pick] = *generation;
        let i = lo + pick;
        let d = dist2(p, pos[i]);
        if d < best.0 || (d == best.0 && (i as u32) < best.1) {
            best = (d, i as u32);
        }
    }
    best.1
}

/// The overlay: nodes in increasing id order, so a shared prefix is a contiguous range.
#[derive(Debug)]
struct Overlay {
    ids: Vec<NodeId>,
    pos: Vec<[f32; 2]>,
    rows: usize,
    /// `table[(node * rows + row) * COLS + col]`, `NONE` when empty.
    table: Vec<u32>,
}

impl Overlay {
    fn slot(&self, node: usize, row: usize, col: usize) -> u32 {
        if row >= self.rows {
            return NONE;
        }
        self.table[(node * self.rows + row) * COLS + col]
    }

    /// Leaf-set members of `node` (by index): eight on each side, or every other node when
    /// the ring has at most 2 * 8 + 1 nodes.
    fn leaves(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.ids.len();
        let (right, left) = if n <= 2 * LEAF_HALF + 1 {
            (n - 1, 0)
        } else {
            (LEAF_HALF, LEAF_HALF)
        };
        (1..=right).chain(n - left..n).map(move |d| (node + d) % n)
    }

    /// True when `key` lies within `node`'s leaf-set range (both ends included).
    fn in_leaf_range(&self, node: usize, key: NodeId) -> bool {
        let n = self.ids.len();
        if n <= 2 * LEAF_HALF + 1 {
            return true;
        }
        let left = self.ids[(node + n - LEAF_HALF) % n];
        let right = self.ids[(node + LEAF_HALF) % n];
        NodeId::in_cw_arc(key, left, right)
    }

    /// The globally numerically closest node to `key` (the tie rule of `id.rs`).
    fn root(&self, key: NodeId) -> usize {
        let n = self.ids.len();
        let succ = self.ids.partition_point(|&x| x < key) % n;
        let pred = (succ + n - 1) % n;
        if key.is_closer(self.ids[pred], self.ids[succ]) {
            pred
        } else {
            succ
        }
    }
}

/// Draws the network and builds leaf sets (implicit) and routing tables.
fn build(o: &Opts, seeds: &mut Rng) -> Overlay {
    let n = o.nodes;
    let mut id_rng = Rng(seeds.next_u64());
    let mut pos_rng = Rng(seeds.next_u64());
    let mut cand_rng = Rng(seeds.next_u64());
    // Ids must be distinct; a 128-bit collision is astronomically unlikely but cheap to rule out.
    let mut ids: Vec<u128> = (0..n).map(|_| id_rng.next_u128()).collect();
    ids.sort_unstable();
    ids.dedup();
    while ids.len() < n {
        ids.push(id_rng.next_u128());
        ids.sort_unstable();
        ids.dedup();
    }
    let ids: Vec<NodeId> = ids.into_iter().map(NodeId::from_u128).collect();
    // Positions are independent of ids, so assigning them in id order is still uniform.
    let pos: Vec<[f32; 2]> = (0..n)
        .map(|_| {
            [
                (pos_rng.unit() * PLANE_SIDE) as f32,
                (pos_rng.unit() * PLANE_SIDE) as f32,
            ]
        })
        .collect();
    // Rows beyond the longest prefix two nodes share are empty for everyone.
    let rows = ids
        .windows(2)
        .map(|w| w[0].shared_prefix_len(w[1], B))
        .max()
        .unwrap_or(0)
        + 1;
    let rows = rows.min(NodeId::digits(B));
    let mut table = vec![NONE; n * rows * COLS];
    let mut stamp = vec![0u32; n];
    let mut generation = 0u32;

    for row in 0..rows {
        // Walk the parent groups: maximal runs sharing the first `row` digits.
        let mut plo = 0;
        while plo < n {
            let mut phi = plo + 1;
            while phi < n && ids[plo].shared_prefix_len(ids[phi], B) >= row {
                phi += 1;
            }
            // Split the parent into child groups by digit `row`.
            let mut children: Vec<(usize, usize, usize)> = Vec::with_capacity(COLS);
            let mut clo = plo;
            while clo < phi {
                let d = ids[clo].digit(row, B);
                let mut chi = clo + 1;
                while chi < phi && ids[chi].digit(row, B) == d {
                    chi += 1;
                }
                children.push((d as usize, clo, chi));
                clo = chi;
            }
            // With a single child every member has that digit: the row's slots stay empty.
            if children.len() > 1 {
                for &(col, clo, chi) in &children {
                    let grid = (o.rt_candidates.is_none() && chi - clo > GRID_MIN)
                        .then(|| Grid::new(&pos, clo, chi));
                    for x in (plo..clo).chain(chi..phi) {
                        let p = pos[x];
                        let best = match (o.rt_candidates, &grid) {
                            (Some(k), _) => nearest_of_random(
                                &pos,
                                p,
                                (clo, chi),
                                k,
                                &mut cand_rng,
                                &mut stamp,
                                &mut generation,
                            ),
                            (None, Some(g)) => g.nearest(&pos, p),
                            (None, None) => nearest_scan(&pos, p, clo, chi),
                        };
                        table[(x * rows + row) * COLS + col] = best;
                    }
                }
            }
            plo = phi;
        }
    }
    Overlay {
        ids,
        pos,
        rows,
        table,
    }
}

/// How a hop was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HopKind {
    Leaf,
    Table,
    Fallback,
    Group,
}

/// The member of the group of nodes sharing the first `l` digits of `key` (a contiguous
/// run of the sorted ids) numerically closest to `key`, when the group has at most `max`
/// members.
fn closest_in_small_group(ov: &Overlay, key: NodeId, l: usize, max: usize) -> Option<usize> {
    let bits = u32::from(B) * l as u32;
    let mask = u128::MAX.checked_shr(bits).unwrap_or(0);
    let lo = key.as_u128() & !mask;
    let hi = lo | mask;
    let a = ov.ids.partition_point(|i| i.as_u128() < lo);
    let b = ov.ids.partition_point(|i| i.as_u128() <= hi);
    if b - a > max {
        return None;
    }
    (a..b).min_by(|&p, &q| key.cmp_closeness(ov.ids[p], ov.ids[q]))
}

/// The next hop from `x` for `key`, or `None` when `x` is where the key is delivered or
/// (a failure) when no known node is closer.
fn next_hop(ov: &Overlay, x: usize, key: NodeId, know_group: usize) -> Option<(usize, HopKind)> {
    if ov.in_leaf_range(x, key) {
        let best = std::iter::once(x)
            .chain(ov.leaves(x))
            .min_by(|&a, &b| key.cmp_closeness(ov.ids[a], ov.ids[b]))?;
        return (best != x).then_some((best, HopKind::Leaf));
    }
    let l = key.shared_prefix_len(ov.ids[x], B);
    if know_group > 0
        && let Some(y) = closest_in_small_group(ov, key, l, know_group)
        && y != x
    {
        return Some((y, HopKind::Group));
    }
    let s = ov.slot(x, l, key.digit(l, B) as usize);
    if s != NONE {
        return Some((s as usize, HopKind::Table));
    }
    // Rare case: any known node with at least as long a prefix that is closer to the key;
    // take the closest such.
    let table = (0..ov.rows)
        .flat_map(|r| (0..COLS).map(move |c| (r, c)))
        .map(|(r, c)| ov.slot(x, r, c))
        .filter(|&s| s != NONE)
        .map(|s| s as usize);
    ov.leaves(x)
        .chain(table)
        .filter(|&y| {
            key.shared_prefix_len(ov.ids[y], B) >= l && key.is_closer(ov.ids[y], ov.ids[x])
        })
        .min_by(|&a, &b| key.cmp_closeness(ov.ids[a], ov.ids[b]))
        .map(|y| (y, HopKind::Fallback))
}

/// Per-run statistics.
#[derive(Debug, Default)]
struct Stats {
    lookups: usize,
    failures: usize,
    self_rooted: usize,
    zero_direct: usize,
    hop_hist: Vec<usize>,
    ratios: Vec<f64>,
    overlay_sum: u128,
    direct_sum: u128,
    /// Sum and count of the i-th hop's latency (index 0 = first hop).
    nth_hop: Vec<(u128, usize)>,
    last_hop: (u128, usize),
    kinds: [usize; 4],
    last_leaf: usize,
}

fn route_all(ov: &Overlay, o: &Opts, seeds: &mut Rng) -> Stats {
    let mut rng = Rng(seeds.next_u64());
    let n = ov.ids.len();
    let mut st = Stats {
        lookups: o.lookups,
        ..Stats::default()
    };
    let mut path: Vec<(u64, HopKind)> = Vec::new(); // latency and kind of each hop
    for _ in 0..o.lookups {
        let origin = rng.below(n);
        let key = NodeId::from_u128(rng.next_u128());
        let root = ov.root(key);
        path.clear();
        let mut x = origin;
        let ok = loop {
            match next_hop(ov, x, key, o.know_group) {
                None => break x == root,
                Some(_) if path.len() == MAX_HOPS => break false,
                Some((y, kind)) => {
                    path.push((latency_us(&ov.pos, x as u32, y as u32), kind));
                    x = y;
                }
            }
        };
        if !ok {
            st.failures += 1;
            continue;
        }
        let hops = path.len();
        if st.hop_hist.len() <= hops {
            st.hop_hist.resize(hops + 1, 0);
            st.nth_hop.resize(hops, (0, 0));
        }
        st.hop_hist[hops] += 1;
        for (i, &(lat, kind)) in path.iter().enumerate() {
            st.nth_hop[i].0 += u128::from(lat);
            st.nth_hop[i].1 += 1;
            st.kinds[kind as usize] += 1;
        }
        if let Some(&(lat, kind)) = path.last() {
            st.last_hop.0 += u128::from(lat);
            st.last_hop.1 += 1;
            st.last_leaf += usize::from(kind == HopKind::Leaf);
        }
        let overlay: u64 = path.iter().map(|&(lat, _)| lat).sum();
        let direct = latency_us(&ov.pos, origin as u32, root as u32);
        st.overlay_sum += u128::from(overlay);
        st.direct_sum += u128::from(direct);
        if origin == root {
            st.self_rooted += 1;
        } else if direct == 0 {
            st.zero_direct += 1; // co-located within 1 us: no finite ratio
        } else {
            st.ratios.push(overlay as f64 / direct as f64);
        }
    }
    st
}

fn ms(sum: u128, count: usize) -> f64 {
    if count == 0 {
        f64::NAN
    } else {
        sum as f64 / count as f64 / 1000.0
    }
}

fn report(o: &Opts, ov: &Overlay, st: &Stats, build_s: f64, route_s: f64) {
    let n = ov.ids.len();
    let filled = ov.table.iter().filter(|&&s| s != NONE).count();
    println!(
        "rdp_floor: nodes {n}, lookups {}, seed {}, b {B}, |L| {}, tables {}{}",
        o.lookups,
        o.seed,
        2 * LEAF_HALF,
        match o.rt_candidates {
            None => "perfect (nearest of all candidates)".to_string(),
            Some(k) => format!("nearest of {k} random candidates"),
        },
        match o.know_group {
            0 => String::new(),
            k => format!(", prefix groups of up to {k} nodes known whole"),
        }
    );
    println!(
        "build {build_s:.2} s (rows {}, {:.1} table entries per node), routing {route_s:.2} s",
        ov.rows,
        filled as f64 / n as f64
    );
    let delivered = st.lookups - st.failures;
    println!(
        "delivered to the numerically closest node: {delivered} / {}, failures {}",
        st.lookups, st.failures
    );
    let hops_total: usize = st.hop_hist.iter().enumerate().map(|(h, c)| h * c).sum();
    println!(
        "hops: mean {:.4}",
        hops_total as f64 / delivered.max(1) as f64
    );
    let hist: Vec<String> = st
        .hop_hist
        .iter()
        .enumerate()
        .map(|(h, &c)| format!("{h}:{:.3}%", 100.0 * c as f64 / delivered.max(1) as f64))
        .collect();
    println!("hop histogram: {}", hist.join(" "));
    let mut r = st.ratios.clone();
    r.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        if r.is_empty() {
            f64::NAN
        } else {
            r[((q * r.len() as f64).ceil() as usize).clamp(1, r.len()) - 1]
        }
    };
    println!(
        "RDP: mean of ratios {:.4}, p50 {:.4}, p95 {:.4}, ratio of means {:.4} \
         ({} ratios; {} origin == root, {} zero direct latency skipped)",
        r.iter().sum::<f64>() / r.len().max(1) as f64,
        pct(0.50),
        pct(0.95),
        st.overlay_sum as f64 / st.direct_sum.max(1) as f64,
        r.len(),
        st.self_rooted,
        st.zero_direct
    );
    println!(
        "latency (ms, one way): overlay mean {:.3}, direct mean {:.3}",
        ms(st.overlay_sum, delivered),
        ms(st.direct_sum, delivered)
    );
    let nth: Vec<String> = (0..6)
        .map(|i| {
            st.nth_hop.get(i).map_or("-".to_string(), |&(s, c)| {
                format!("{}:{:.3} (n={c})", i + 1, ms(s, c))
            })
        })
        .collect();
    println!("mean latency of hop i (ms): {}", nth.join(", "));
    println!(
        "mean latency of the last hop (ms): {:.3} (n={}, {:.1}% of last hops via the leaf set)",
        ms(st.last_hop.0, st.last_hop.1),
        st.last_hop.1,
        100.0 * st.last_leaf as f64 / st.last_hop.1.max(1) as f64
    );
    println!(
        "hops by kind: table {}, leaf set {}, fallback {}, known group {}",
        st.kinds[HopKind::Table as usize],
        st.kinds[HopKind::Leaf as usize],
        st.kinds[HopKind::Fallback as usize],
        st.kinds[HopKind::Group as usize]
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse_args(&args) {
        Ok(o) => o,
        Err(msg) => {
            if msg.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("rdp_floor: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut seeds = Rng(o.seed);
    let t0 = Instant::now();
    let ov = build(&o, &mut seeds);
    let t1 = Instant::now();
    let st = route_all(&ov, &o, &mut seeds);
    let t2 = Instant::now();
    report(
        &o,
        &ov,
        &st,
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
    );
    if st.failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(nodes: usize, rt_candidates: Option<usize>) -> Opts {
        Opts {
            nodes,
            lookups: 20_000,
            seed: 7,
            rt_candidates,
            know_group: 0,
        }
    }

    #[test]
    fn grid_nearest_matches_scan() {
        let mut rng = Rng(3);
        let pos: Vec<[f32; 2]> = (0..5000)
            .map(|_| [(rng.unit() * 1000.0) as f32, (rng.unit() * 1000.0) as f32])
            .collect();
        for (lo, hi) in [(0, 5000), (100, 300), (10, 12)] {
            let grid = Grid::new(&pos, lo, hi);
            for q in &pos {
                let (a, b) = (grid.nearest(&pos, *q), nearest_scan(&pos, *q, lo, hi));
                assert_eq!(dist2(*q, pos[a as usize]), dist2(*q, pos[b as usize]));
            }
        }
    }

    #[test]
    fn perfect_slots_are_nearest_candidates() {
        let o = opts(3000, None);
        let ov = build(&o, &mut Rng(o.seed));
        for x in (0..ov.ids.len()).step_by(37) {
            for row in 0..ov.rows {
                for col in 0..COLS {
                    let cands: Vec<usize> = (0..ov.ids.len())
                        .filter(|&y| {
                            ov.ids[x].shared_prefix_len(ov.ids[y], B) >= row
                                && ov.ids[y].digit(row, B) as usize == col
                                && ov.ids[x].digit(row, B) as usize != col
                        })
                        .collect();
                    let s = ov.slot(x, row, col);
                    let best = cands
                        .iter()
                        .map(|&y| latency_us(&ov.pos, x as u32, y as u32));
                    match best.min() {
                        None => assert_eq!(s, NONE),
                        Some(l) => assert_eq!(latency_us(&ov.pos, x as u32, s), l),
                    }
                }
            }
        }
    }

    #[test]
    fn every_lookup_reaches_the_root() {
        for (n, k) in [
            (2, None),
            (17, None),
            (18, None),
            (5000, None),
            (5000, Some(1)),
        ] {
            let o = opts(n, k);
            let mut seeds = Rng(o.seed);
            let ov = build(&o, &mut seeds);
            let st = route_all(&ov, &o, &mut seeds);
            assert_eq!(st.failures, 0, "n {n}, k {k:?}");
        }
    }

    #[test]
    fn known_groups_shorten_routes_and_still_reach_the_root() {
        let o = opts(5000, None);
        let mut seeds = Rng(o.seed);
        let ov = build(&o, &mut seeds);
        let pastry = route_all(&ov, &o, &mut Rng(11));
        let o = Opts {
            know_group: 32,
            ..o
        };
        let known = route_all(&ov, &o, &mut Rng(11));
        assert_eq!(known.failures, 0);
        assert!(known.kinds[HopKind::Group as usize] > 0);
        let hops = |st: &Stats| {
            st.hop_hist
                .iter()
                .enumerate()
                .map(|(h, c)| h * c)
                .sum::<usize>()
        };
        assert!(hops(&known) < hops(&pastry));
        // A group of one (the node alone) adds nothing.
        let alone = route_all(&ov, &Opts { know_group: 1, ..o }, &mut Rng(11));
        assert_eq!(hops(&alone), hops(&pastry));
    }

    #[test]
    fn bad_arguments_are_rejected() {
        let parse = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(parse(&["--nodes", "1"]).is_err());
        assert!(parse(&["--nodes"]).is_err());
        assert!(parse(&["--bogus", "3"]).is_err());
        assert!(parse(&["--rt-candidates", "0"]).is_err());
        assert_eq!(parse(&["--nodes", "10_000"]).map(|o| o.nodes), Ok(10_000));
        assert_eq!(parse(&["--know-group", "32"]).map(|o| o.know_group), Ok(32));
    }
}
