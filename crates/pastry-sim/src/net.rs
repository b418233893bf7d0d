//! Network models: where nodes sit and how long a message takes between two of them.
//!
//! Three models, all giving a one-way latency in microseconds between two node indices:
//! - [`Topology::Plane`]: the Pastry paper's, nodes uniform on a 1000 x 1000 plane. One
//!   distance unit is 0.1 ms one way, so the plane's diagonal is 141 ms one way and a mean
//!   RTT is about 104 ms, close to Internet RTTs. No per-hop constant: the relative delay
//!   penalty is then exactly the paper's Euclidean ratio.
//! - [`Topology::Sphere`]: nodes uniform on the Earth's surface, great-circle distance at
//!   200 km per ms (light in fibre), so antipodes are 100 ms apart one way.
//! - [`Topology::Matrix`]: a measured all-pairs RTT matrix (ms, whitespace separated, one
//!   row per line); one-way latency is half the RTT. Node `k` sits on host `k mod H`; two
//!   nodes on the same host are 0.05 ms apart one way.
//!
//! Models never draw randomness after construction: positions are drawn once per node, from
//! the topology's own generator, when the node is added.

use std::f64::consts::PI;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use pastry_core::rng::Rng;

/// Which network model to use, as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum TopologySpec {
    /// Uniform on a 1000 x 1000 plane, Euclidean distance (the Pastry paper's).
    Plane,
    /// Uniform on a sphere the size of the Earth, great-circle distance.
    Sphere,
    /// A measured RTT matrix read from a file.
    Matrix(PathBuf),
}

impl fmt::Display for TopologySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologySpec::Plane => f.write_str("plane"),
            TopologySpec::Sphere => f.write_str("sphere"),
            TopologySpec::Matrix(p) => write!(f, "matrix:{}", p.display()),
        }
    }
}

impl std::str::FromStr for TopologySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plane" => Ok(TopologySpec::Plane),
            "sphere" => Ok(TopologySpec::Sphere),
            _ => match s.strip_prefix("matrix:") {
                Some(p) if !p.is_empty() => Ok(TopologySpec::Matrix(PathBuf::from(p))),
                _ => Err(format!(
                    "unknown topology `{s}`: expected plane, sphere or matrix:FILE"
                )),
            },
        }
    }
}

/// One-way latency, in microseconds, per distance unit of the plane.
const PLANE_US_PER_UNIT: f64 = 100.0;
/// Earth radius in km, and light in fibre in km per ms.
const EARTH_RADIUS_KM: f64 = 6371.0;
const FIBRE_KM_PER_MS: f64 = 200.0;
/// One-way latency between two nodes on the same matrix host.
const SAME_HOST_US: u32 = 50;
/// Largest matrix accepted (hosts a side); bounds memory at 64 MiB.
const MAX_MATRIX_HOSTS: usize = 4096;

/// A measured all-pairs RTT matrix, stored as one-way microseconds.
#[derive(Debug)]
pub struct RttMatrix {
    hosts: usize,
    one_way_us: Vec<u32>,
}

impl RttMatrix {
    /// Parses a square matrix of non-negative RTTs in ms: one row per line, fields
    /// separated by tabs or spaces. Blank lines are ignored.
    ///
    /// # Errors
    /// When the text is not a square matrix of non-negative numbers, or is too large.
    pub fn parse(text: &str) -> anyhow::Result<RttMatrix> {
        let mut rows: Vec<Vec<f64>> = Vec::new();
        for (ln, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if rows.len() >= MAX_MATRIX_HOSTS {
                bail!("matrix has more than {MAX_MATRIX_HOSTS} rows");
            }
            let mut row = Vec::new();
            for (col, field) in line.split_whitespace().enumerate() {
                let v: f64 = field.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "line {}, field {}: `{field}` is not a number",
                        ln + 1,
                        col + 1
                    )
                })?;
                if !v.is_finite() || v < 0.0 {
                    bail!(
                        "line {}, field {}: RTT {v} is not a non-negative number",
                        ln + 1,
                        col + 1
                    );
                }
                row.push(v);
            }
            rows.push(row);
        }
        let n = rows.len();
        if n < 2 {
            bail!("matrix needs at least 2 hosts, found {n}");
        }
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != n) {
            bail!(
                "matrix is not square: row {} has {} fields, expected {n}",
                i + 1,
                r.len()
            );
        }
        let mut one_way_us = Vec::with_capacity(n * n);
        for r in &rows {
            for &v in r {
                one_way_us.push((v * 500.0).round().min(f64::from(u32::MAX)) as u32);
            }
        }
        Ok(RttMatrix {
            hosts: n,
            one_way_us,
        })
    }

    /// Reads and parses a matrix file.
    ///
    /// # Errors
    /// When the file cannot be read or does not parse (see [`RttMatrix::parse`]).
    pub fn load(path: &Path) -> anyhow::Result<RttMatrix> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read RTT matrix {}", path.display()))?;
        RttMatrix::parse(&text).with_context(|| format!("bad RTT matrix {}", path.display()))
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// One-way latency between hosts `a` and `b` in microseconds.
    pub fn one_way_us(&self, a: usize, b: usize) -> u32 {
        self.one_way_us[a * self.hosts + b]
    }
}

/// The network model with every node's position.
#[derive(Debug)]
pub enum Topology {
    /// Positions on the plane, in distance units.
    Plane(Vec<[f32; 2]>),
    /// Unit vectors on the sphere.
    Sphere(Vec<[f32; 3]>),
    /// A matrix; node `k` is host `k mod hosts`.
    Matrix(Arc<RttMatrix>),
}

impl Topology {
    /// An empty topology of the given kind (the matrix is loaded here).
    ///
    /// # Errors
    /// When the matrix file cannot be read or parsed.
    pub fn new(spec: &TopologySpec) -> anyhow::Result<Topology> {
        Ok(match spec {
            TopologySpec::Plane => Topology::Plane(Vec::new()),
            TopologySpec::Sphere => Topology::Sphere(Vec::new()),
            TopologySpec::Matrix(p) => Topology::Matrix(Arc::new(RttMatrix::load(p)?)),
        })
    }

    /// Places a new node (index = number placed so far).
    pub fn add(&mut self, rng: &mut Rng) {
        match self {
            Topology::Plane(v) => {
                v.push([(rng.unit() * 1000.0) as f32, (rng.unit() * 1000.0) as f32]);
            }
            Topology::Sphere(v) => {
                let z = 2.0 * rng.unit() - 1.0;
                let lon = 2.0 * PI * rng.unit();
                let r = (1.0 - z * z).sqrt();
                v.push([(r * lon.cos()) as f32, (r * lon.sin()) as f32, z as f32]);
            }
            Topology::Matrix(_) => {}
        }
    }

    /// One-way latency from node `a` to node `b`, in microseconds.
    pub fn latency_us(&self, a: u32, b: u32) -> u64 {
        if a == b {
            return 0;
        }
        match self {
            Topology::Plane(v) => {
                let (p, q) = (v[a as usize], v[b as usize]);
                let (dx, dy) = (f64::from(p[0] - q[0]), f64::from(p[1] - q[1]));
                ((dx * dx + dy * dy).sqrt() * PLANE_US_PER_UNIT) as u64
            }
            Topology::Sphere(v) => {
                let (p, q) = (v[a as usize], v[b as usize]);
                let dot = (0..3)
                    .map(|k| f64::from(p[k]) * f64::from(q[k]))
                    .sum::<f64>()
                    .clamp(-1.0, 1.0);
                let km = dot.acos() * EARTH_RADIUS_KM;
                (km / FIBRE_KM_PER_MS * 1000.0) as u64
            }
            Topology::Matrix(m) => {
                let h = m.hosts();
                let (ha, hb) = (a as usize % h, b as usize % h);
                if ha == hb {
                    u64::from(SAME_HOST_US)
                } else {
                    u64::from(m.one_way_us(ha, hb))
                }
            }
        }
    }

    /// The plane position of node `i`, when the model is the plane.
    pub fn plane_pos(&self, i: u32) -> Option<[f32; 2]> {
        match self {
            Topology::Plane(v) => v.get(i as usize).copied(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_and_rejects() {
        assert_eq!("plane".parse::<TopologySpec>(), Ok(TopologySpec::Plane));
        assert_eq!(
            "matrix:/x/y".parse::<TopologySpec>(),
            Ok(TopologySpec::Matrix("/x/y".into()))
        );
        assert!("matrix:".parse::<TopologySpec>().is_err());
        assert!("torus".parse::<TopologySpec>().is_err());
    }

    #[test]
    fn matrix_parse_checks_shape_and_values() {
        let m = RttMatrix::parse("0\t10\n10\t0\n").unwrap();
        assert_eq!(m.hosts(), 2);
        assert_eq!(m.one_way_us(0, 1), 5000);
        let e = RttMatrix::parse("0 1 2\n1 0\n2 1 0\n").unwrap_err();
        assert!(e.to_string().contains("not square"), "{e}");
        let e = RttMatrix::parse("0 x\n1 0\n").unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
        let e = RttMatrix::parse("0 -1\n1 0\n").unwrap_err();
        assert!(e.to_string().contains("non-negative"), "{e}");
        assert!(RttMatrix::parse("").is_err());
    }

    #[test]
    fn latencies_are_in_range_and_symmetric() {
        let mut rng = Rng::new(3);
        for spec in [TopologySpec::Plane, TopologySpec::Sphere] {
            let mut t = Topology::new(&spec).unwrap();
            for _ in 0..50 {
                t.add(&mut rng);
            }
            let max = match spec {
                TopologySpec::Plane => 141_422,
                _ => 100_100,
            };
            for a in 0..50 {
                assert_eq!(t.latency_us(a, a), 0);
                for b in 0..50 {
                    let l = t.latency_us(a, b);
                    assert!(l <= max, "{spec}: {l}");
                    assert!(l.abs_diff(t.latency_us(b, a)) <= 1);
                }
            }
        }
        let t = Topology::Matrix(Arc::new(RttMatrix::parse("0 10\n10 0\n").unwrap()));
        assert_eq!(t.latency_us(0, 3), 5000);
        assert_eq!(t.latency_us(0, 2), u64::from(SAME_HOST_US));
    }
}
