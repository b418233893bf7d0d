//! What a node reports about itself: the `/status` JSON ([`Status`]), the report a root
//! sends back for a traced route ([`RouteReport`]), and the `/metrics` counters
//! ([`NodeMetrics`], rendered in the Prometheus text format by [`render_metrics`]).
//!
//! Plain data: built by the driver, serialised by the admin API, parsed by clients.

use std::collections::BTreeMap;
use std::fmt::Write;

use pastry_core::{MessageKind, NodeId};
use serde::{Deserialize, Serialize};

/// A node's state as `GET /status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node id, 32 hex digits.
    pub id: String,
    /// The address other nodes reach it at.
    pub addr: String,
    /// `"idle"`, `"joining"`, `"ready"` or `"left"`.
    pub state: String,
    /// The leaf set.
    pub leaf_set: LeafSetView,
    /// The routing table: rows of 2^b entries, each an id or null.
    pub routing_table: Vec<Vec<Option<String>>>,
    /// The neighbourhood set (nearest by RTT first).
    pub neighborhood: Vec<String>,
    /// Open QUIC connections.
    pub connections: usize,
    /// Counters: the node's own and the transport's.
    pub counters: BTreeMap<String, u64>,
}

/// The two sides of a leaf set, nearest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafSetView {
    /// Counter-clockwise neighbours (smaller ids).
    pub left: Vec<String>,
    /// Clockwise neighbours (larger ids).
    pub right: Vec<String>,
}

impl Status {
    /// Whether `id` appears in either side of the leaf set.
    pub fn leaf_set_contains(&self, id: &str) -> bool {
        self.leaf_set
            .left
            .iter()
            .chain(&self.leaf_set.right)
            .any(|x| x == id)
    }
}

/// Where a routed message ended: sent back by its root to the origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteReport {
    /// The key, 32 hex digits.
    pub key: String,
    /// The root's id (authenticated: the report came over its TLS connection).
    pub root: String,
    /// The root's address.
    pub root_addr: String,
    /// Overlay hops taken.
    pub hops: u8,
    /// Ids of the nodes visited, origin first and root last (when traced).
    pub path: Vec<String>,
    /// The origin's request id.
    pub request: u64,
}

impl RouteReport {
    /// The root's id.
    pub fn root_id(&self) -> Option<NodeId> {
        NodeId::from_hex(&self.root).ok()
    }
}

/// A fixed-bucket histogram (Prometheus style: cumulative on output).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with upper bucket bounds `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one value.
    pub fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Bucket bounds of the hops histogram.
pub const HOPS_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 16.0];
/// Bucket bounds of the RTT histogram, in seconds.
pub const RTT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Per-message-type traffic counters, indexed by wire type - 1.
pub type PerKind = [u64; MessageKind::ALL.len()];

/// One node's metrics, as the driver hands them to `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeMetrics {
    /// The node.
    pub id: NodeId,
    /// Messages received, by type.
    pub messages_in: PerKind,
    /// Bytes received, by type (whole frames).
    pub bytes_in: PerKind,
    /// Messages sent, by type.
    pub messages_out: PerKind,
    /// Bytes sent, by type (whole frames).
    pub bytes_out: PerKind,
    /// Plain counters (routes, failures, transport drops, ...).
    pub counters: BTreeMap<String, u64>,
    /// Gauges (leaf-set size, connections, ...).
    pub gauges: BTreeMap<String, u64>,
    /// Hops of the messages delivered here.
    pub hops: Histogram,
    /// Round-trip times of the node's QUIC connections, sampled periodically, in seconds.
    pub rtt: Histogram,
}

fn hist(out: &mut String, name: &str, help: &str, all: &[(String, &Histogram)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (node, h) in all {
        let mut cum = 0;
        for (b, c) in h.bounds.iter().zip(&h.counts) {
            cum += c;
            let _ = writeln!(out, "{name}_bucket{{node=\"{node}\",le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{node=\"{node}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "{name}_sum{{node=\"{node}\"}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{node=\"{node}\"}} {}", h.count);
    }
}

/// Renders the metrics of every node of a process in the Prometheus text format
/// (version 0.0.4), one `node` label per node.
pub fn render_metrics(nodes: &[NodeMetrics]) -> String {
    let mut out = String::new();
    type Get = fn(&NodeMetrics) -> &PerKind;
    let per_kind: [(&str, &str, Get); 4] = [
        (
            "pastry_messages_in_total",
            "Messages received, by type.",
            |m| &m.messages_in,
        ),
        (
            "pastry_messages_out_total",
            "Messages sent, by type.",
            |m| &m.messages_out,
        ),
        (
            "pastry_bytes_in_total",
            "Bytes received (whole frames), by type.",
            |m| &m.bytes_in,
        ),
        (
            "pastry_bytes_out_total",
            "Bytes sent (whole frames), by type.",
            |m| &m.bytes_out,
        ),
    ];
    for (name, help, get) in &per_kind {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for m in nodes {
            for kind in MessageKind::ALL {
                let v = get(m)[kind as usize - 1];
                let _ = writeln!(
                    out,
                    "{name}{{node=\"{}\",type=\"{}\"}} {v}",
                    m.id,
                    kind.name()
                );
            }
        }
    }
    let mut names: Vec<&String> = nodes.iter().flat_map(|m| m.counters.keys()).collect();
    names.sort();
    names.dedup();
    // The plain totals `messages_in`, `bytes_out`, ... (for `/status`) would repeat the
    // per-type families above under the same name: Prometheus rejects a family declared
    // twice, and summing the family would count every message twice.
    names.retain(|c| {
        let family = format!("pastry_{c}_total");
        !per_kind.iter().any(|(name, _, _)| *name == family)
    });
    for c in names {
        let _ = writeln!(out, "# TYPE pastry_{c}_total counter");
        for m in nodes {
            let v = m.counters.get(c).copied().unwrap_or(0);
            let _ = writeln!(out, "pastry_{c}_total{{node=\"{}\"}} {v}", m.id);
        }
    }
    let mut names: Vec<&String> = nodes.iter().flat_map(|m| m.gauges.keys()).collect();
    names.sort();
    names.dedup();
    for g in names {
        let _ = writeln!(out, "# TYPE pastry_{g} gauge");
        for m in nodes {
            let v = m.gauges.get(g).copied().unwrap_or(0);
            let _ = writeln!(out, "pastry_{g}{{node=\"{}\"}} {v}", m.id);
        }
    }
    let hops: Vec<(String, &Histogram)> =
        nodes.iter().map(|m| (m.id.to_string(), &m.hops)).collect();
    hist(
        &mut out,
        "pastry_route_hops",
        "Overlay hops of messages delivered here.",
        &hops,
    );
    let rtt: Vec<(String, &Histogram)> = nodes.iter().map(|m| (m.id.to_string(), &m.rtt)).collect();
    hist(
        &mut out,
        "pastry_connection_rtt_seconds",
        "QUIC connection RTT, sampled every 5 s.",
        &rtt,
    );
    out
}

/// Sums one metric over every node in a Prometheus text body: every sample line whose name
/// is `name` (labels ignored). For tests and benchmarks.
pub fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_types_labels_and_cumulative_buckets() {
        let mut hops = Histogram::new(HOPS_BUCKETS);
        hops.observe(1.0);
        hops.observe(3.0);
        let m = NodeMetrics {
            id: NodeId::from_u128(1),
            messages_in: [1; MessageKind::ALL.len()],
            bytes_in: [10; MessageKind::ALL.len()],
            messages_out: [2; MessageKind::ALL.len()],
            bytes_out: [20; MessageKind::ALL.len()],
            counters: BTreeMap::from([("routes_originated".to_string(), 5)]),
            gauges: BTreeMap::from([("leaf_set_size".to_string(), 4)]),
            hops,
            rtt: Histogram::new(RTT_BUCKETS),
        };
        let text = render_metrics(&[m.clone(), m.clone()]);
        assert!(text.contains("# TYPE pastry_messages_in_total counter"));
        assert!(text.contains(
            "pastry_messages_in_total{node=\"00000000000000000000000000000001\",type=\"route\"} 1"
        ));
        assert!(text.contains("le=\"2\"} 1\n"));
        assert!(text.contains("le=\"+Inf\"} 2\n"));
        assert_eq!(
            sum_metric(&text, "pastry_bytes_out_total"),
            2.0 * MessageKind::ALL.len() as f64 * 20.0
        );
        // The plain totals kept for `/status` do not repeat a per-type family.
        let mut m3 = m.clone();
        let total = 2 * MessageKind::ALL.len() as u64;
        m3.counters.insert("messages_out".to_string(), total);
        let single = render_metrics(&[m3]);
        assert_eq!(
            sum_metric(&single, "pastry_messages_out_total"),
            total as f64
        );
        assert_eq!(
            single.matches("# TYPE pastry_messages_out_total ").count(),
            1,
            "{single}"
        );
        assert_eq!(sum_metric(&text, "pastry_leaf_set_size"), 8.0);
        assert_eq!(sum_metric(&text, "pastry_routes_originated_total"), 10.0);
    }
}
