//! What a run measured: the [`Report`], its JSON form and its human summary.
//!
//! Field names carry units (`_s`, `_ms`, `_pct`, `_bytes`). The JSON form is the
//! serde serialisation of [`Report`]; the sample vectors behind the plots are skipped.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run's seed: the same seed and options give the same trace hash.
    pub seed: u64,
    /// The network model.
    pub topology: String,
    /// Bits per digit.
    pub b: u8,
    /// Leaf-set size |L|.
    pub leaf_set: usize,
    /// The ring size asked for.
    pub nodes: usize,
    /// Live ready nodes at the end of the run.
    pub live_nodes: usize,
    /// Ring construction.
    pub joins: JoinReport,
    /// Lookups and routing quality.
    pub lookups: LookupReport,
    /// Traffic during the measurement phase.
    pub traffic: TrafficReport,
    /// The checkers' findings.
    pub checks: CheckReport,
    /// Mass failure and recovery, when the run had one.
    pub failure: Option<FailureReport>,
    /// Partition and heal, when the run had one.
    pub partition: Option<PartitionReport>,
    /// The PAST workload, when the run had one (`--past-objects`).
    pub past: Option<PastReport>,
    /// Simulator performance.
    pub perf: PerfReport,
    /// FNV-1a over every processed event's (time, kind, node), as 16 hex digits.
    pub trace_hash: String,
    /// Every lookup's relative delay penalty (for the CDF plot); not in the JSON.
    #[serde(skip)]
    pub rdp_samples: Vec<f32>,
    /// Per simulated second: (control messages, lookup messages, live nodes); not in JSON.
    #[serde(skip)]
    pub traffic_series: Vec<(u32, u32, u32)>,
}

/// Ring construction through the join protocol.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JoinReport {
    /// Joins started (the first node starts the ring and is not counted).
    pub started: u64,
    /// Joins that reached `Ready`.
    pub completed: u64,
    /// Joins that gave up (`JoinFailed`).
    pub failed: u64,
    /// Joins in flight at once during the build.
    pub concurrency: usize,
    /// Simulated seconds to build the ring.
    pub build_sim_s: f64,
    /// Mean simulated time from `join` to `Ready`, ms.
    pub mean_join_ms: f64,
    /// Messages sent during the build, heartbeats excluded, per completed join.
    pub messages_per_join: f64,
}

/// Lookups: delivery, correctness, hops and relative delay penalty.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LookupReport {
    /// Lookups issued.
    pub issued: u64,
    /// Lookups delivered (first delivery of each).
    pub delivered: u64,
    /// Delivered at the numerically closest live ready node.
    pub correct: u64,
    /// Delivered at another node (consistency violations).
    pub wrong: u64,
    /// Dropped with `RouteFailed`.
    pub failed: u64,
    /// Neither delivered nor failed by the end of the run (lost with a crashed node).
    pub lost: u64,
    /// Deliveries of a lookup already delivered.
    pub duplicates: u64,
    /// delivered / issued, percent.
    pub delivered_pct: f64,
    /// correct / issued, percent.
    pub correct_pct: f64,
    /// Mean overlay hops of delivered lookups.
    pub mean_hops: f64,
    /// `hops_histogram[h]`: delivered lookups that took `h` hops.
    pub hops_histogram: Vec<u64>,
    /// The histogram in percent of delivered lookups.
    pub hops_pct: Vec<f64>,
    /// Relative delay penalty: overlay latency / direct latency (origin to root).
    pub rdp: Rdp,
}

/// Relative delay penalty summary, over lookups that took at least one hop.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rdp {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Total overlay latency / total direct latency: the paper's "relative distance"
    /// (routes are 30-40% longer), less swayed by lookups between very near nodes.
    pub ratio_of_means: f64,
    /// Lookups measured.
    pub samples: u64,
}

/// Traffic during the measurement phase (after the build and settle), per live node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrafficReport {
    /// Length of the measurement window, simulated seconds.
    pub window_s: f64,
    /// Control messages (everything but lookup hops and their acks) per node per second.
    pub control_msgs_per_node_s: f64,
    /// Their wire bytes per node per second.
    pub control_bytes_per_node_s: f64,
    /// Lookup hops and acks per node per second.
    pub lookup_msgs_per_node_s: f64,
    /// Messages sent in the window, by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Messages lost to the loss model or a partition (whole run).
    pub dropped: u64,
    /// Messages sent to a node that was no longer live (whole run).
    pub to_dead: u64,
}

/// What the checkers found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Deliveries at a node other than the closest live ready one.
    pub violations: u64,
    /// Of those, in windows where they are expected (recovery from a mass failure, a
    /// partition and its aftermath).
    pub expected_violations: u64,
    /// Lookups that looped (`TooManyHops`).
    pub looped: u64,
    /// Of those, in windows where they are expected (as for violations).
    pub expected_looped: u64,
    /// Leaf sets checked at the end of the run.
    pub leaf_sets_checked: u64,
    /// Of those, not equal to the true neighbours (or the node not ready).
    pub leaf_sets_wrong: u64,
    /// A few mismatches, for the reader.
    pub leaf_set_examples: Vec<String>,
    /// True when the run was expected to be violation-free (no loss, no partition).
    pub expect_clean: bool,
    /// Problems that make a clean run fail; empty when all is well.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when nothing went wrong that should not have.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Mass failure and recovery.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FailureReport {
    /// When the failure happened, simulated seconds from the start.
    pub at_s: f64,
    /// Nodes that crashed at once.
    pub failed_nodes: u64,
    /// Seconds after the failure until every live leaf set was correct (checked each
    /// second); `None` if never within the run.
    pub leaf_sets_recovered_s: Option<f64>,
    /// Seconds after the failure after which every lookup issued was delivered correctly.
    pub lookups_correct_after_s: Option<f64>,
    /// Lookups issued after the failure that were wrong, failed or lost.
    pub bad_lookups_after: u64,
}

/// Partition and heal.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PartitionReport {
    /// Start, simulated seconds from the start of the run.
    pub start_s: f64,
    /// Heal, simulated seconds from the start of the run.
    pub heal_s: f64,
    /// Violations delivered while partitioned.
    pub violations_during: u64,
    /// Violations delivered after the heal.
    pub violations_after: u64,
    /// Seconds after the heal until every live leaf set was correct; `None` if never.
    pub leaf_sets_merged_s: Option<f64>,
}

/// Simulator performance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PerfReport {
    /// Events processed (messages, wake-ups, workload steps).
    pub events: u64,
    /// Events per wall-clock second.
    pub events_per_s: f64,
    /// Wall-clock seconds for the whole run.
    pub wall_s: f64,
    /// Simulated seconds.
    pub sim_s: f64,
    /// Peak resident memory (VmHWM), bytes; 0 when unknown.
    pub peak_rss_bytes: u64,
    /// Resident memory growth while building the ring, per node, bytes.
    pub bytes_per_node: u64,
    /// Mean routing-table entries per live node at the end.
    pub mean_routing_table_entries: f64,
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        100.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

impl LookupReport {
    pub(crate) fn finish(&mut self, rdp: &mut [f32], sums: (f64, f64)) {
        self.delivered_pct = pct(self.delivered, self.issued);
        self.correct_pct = pct(self.correct, self.issued);
        let n: u64 = self.hops_histogram.iter().sum();
        let total: u64 = self
            .hops_histogram
            .iter()
            .enumerate()
            .map(|(h, c)| h as u64 * c)
            .sum();
        self.mean_hops = if n == 0 { 0.0 } else { total as f64 / n as f64 };
        self.hops_pct = self.hops_histogram.iter().map(|&c| pct(c, n)).collect();
        rdp.sort_by(f32::total_cmp);
        let q = |p: f64| -> f64 {
            if rdp.is_empty() {
                return 0.0;
            }
            let i = ((rdp.len() - 1) as f64 * p).round() as usize;
            f64::from(rdp[i])
        };
        self.rdp = Rdp {
            mean: if rdp.is_empty() {
                0.0
            } else {
                rdp.iter().map(|&x| f64::from(x)).sum::<f64>() / rdp.len() as f64
            },
            p50: q(0.5),
            p95: q(0.95),
            ratio_of_means: if sums.1 > 0.0 { sums.0 / sums.1 } else { 0.0 },
            samples: rdp.len() as u64,
        };
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.lookups;
        let j = &self.joins;
        let t = &self.traffic;
        let c = &self.checks;
        let p = &self.perf;
        writeln!(
            f,
            "pastry sim: {} nodes, b={}, |L|={}, topology {}, seed {}",
            self.nodes, self.b, self.leaf_set, self.topology, self.seed
        )?;
        writeln!(
            f,
            "  ring      {} joins ({} failed), {} at a time, built in {:.1} s simulated; \
             mean join {:.0} ms, {:.1} messages per join",
            j.completed,
            j.failed,
            j.concurrency,
            j.build_sim_s,
            j.mean_join_ms,
            j.messages_per_join
        )?;
        writeln!(
            f,
            "  lookups   {} issued, {} delivered ({:.3}%), {} correct ({:.3}%), {} wrong, \
             {} failed, {} lost, {} duplicates",
            l.issued,
            l.delivered,
            l.delivered_pct,
            l.correct,
            l.correct_pct,
            l.wrong,
            l.failed,
            l.lost,
            l.duplicates
        )?;
        let hist: Vec<String> = l
            .hops_pct
            .iter()
            .enumerate()
            .filter(|(h, _)| l.hops_histogram[*h] > 0)
            .map(|(h, p)| format!("{h}: {p:.2}%"))
            .collect();
        writeln!(
            f,
            "  hops      mean {:.3}; {}",
            l.mean_hops,
            hist.join(", ")
        )?;
        writeln!(
            f,
            "  RDP       mean {:.3}, p50 {:.3}, p95 {:.3}; total overlay / total direct latency \
             {:.3} ({} lookups)",
            l.rdp.mean, l.rdp.p50, l.rdp.p95, l.rdp.ratio_of_means, l.rdp.samples
        )?;
        writeln!(
            f,
            "  traffic   control {:.3} msgs/s and {:.1} bytes/s per node, lookups {:.3} msgs/s \
             per node, over {:.0} s; {} dropped, {} to dead nodes",
            t.control_msgs_per_node_s,
            t.control_bytes_per_node_s,
            t.lookup_msgs_per_node_s,
            t.window_s,
            t.dropped,
            t.to_dead
        )?;
        if let Some(fr) = &self.failure {
            let s = |x: Option<f64>| x.map_or("never".to_string(), |v| format!("{v:.1} s"));
            writeln!(
                f,
                "  failure   {} nodes crashed at {:.1} s; leaf sets correct after {}, \
                 lookups all correct after {} ({} bad lookups after the failure)",
                fr.failed_nodes,
                fr.at_s,
                s(fr.leaf_sets_recovered_s),
                s(fr.lookups_correct_after_s),
                fr.bad_lookups_after
            )?;
        }
        if let Some(pr) = &self.partition {
            writeln!(
                f,
                "  partition {:.1}..{:.1} s; {} violations during, {} after; leaf sets merged {}",
                pr.start_s,
                pr.heal_s,
                pr.violations_during,
                pr.violations_after,
                pr.leaf_sets_merged_s
                    .map_or("never".to_string(), |v| format!("after {v:.1} s"))
            )?;
        }
        if let Some(pa) = &self.past {
            writeln!(
                f,
                "  PAST      {} objects (k={}, {} bytes, caching {}): {} stored, {} insert failures, \
                 {} lost, {} not on their k closest nodes at the end",
                pa.objects,
                pa.k,
                pa.object_size,
                if pa.caching { "on" } else { "off" },
                pa.stored,
                pa.insert_failures,
                pa.objects_lost,
                pa.under_replicated_at_end
            )?;
            writeln!(
                f,
                "  PAST      lookups {} issued, {} answered ({} from caches), {} failed, {} unanswered, \
                 {} abandoned (client left); mean {:.0} ms; final check {}/{} retrievable",
                pa.lookups_issued,
                pa.lookups_answered,
                pa.lookups_from_cache,
                pa.lookups_failed,
                pa.lookups_unanswered,
                pa.lookups_abandoned,
                pa.lookup_mean_ms,
                pa.verify_answered,
                pa.verify_issued
            )?;
            writeln!(
                f,
                "  PAST      replica maintenance {:.4} msgs/s and {:.1} bytes/s per node ({} replicas \
                 moved); all PAST traffic {:.4} msgs/s and {:.1} bytes/s per node",
                pa.maintenance_msgs_per_node_s,
                pa.maintenance_bytes_per_node_s,
                pa.maintenance_objects_received,
                pa.app_msgs_per_node_s,
                pa.app_bytes_per_node_s
            )?;
            if let Some(r) = &pa.repair {
                writeln!(
                    f,
                    "  PAST      repair: {} objects lost with all replicas, {} under-replicated at the \
                     failure; all on their k closest nodes {}; {:.2} MiB moved in {} messages ({} replicas)",
                    r.lost_at_failure,
                    r.under_replicated_at_failure,
                    r.repaired_s
                        .map_or("never".to_string(), |v| format!("after {v:.0} s")),
                    mib(r.bytes_moved),
                    r.messages,
                    r.objects_moved
                )?;
            }
        }
        writeln!(
            f,
            "  checks    {} violations ({} expected), {} looped ({} expected), leaf sets {}/{} correct; {}",
            c.violations,
            c.expected_violations,
            c.looped,
            c.expected_looped,
            c.leaf_sets_checked - c.leaf_sets_wrong,
            c.leaf_sets_checked,
            if c.ok() {
                "ok".to_string()
            } else {
                format!("FAILED: {}", c.problems.join("; "))
            }
        )?;
        write!(
            f,
            "  perf      {} events in {:.2} s wall ({:.0} events/s), {:.0} s simulated; \
             peak RSS {:.0} MiB, {} bytes per node; trace hash {}",
            p.events,
            p.wall_s,
            p.events_per_s,
            p.sim_s,
            mib(p.peak_rss_bytes),
            p.bytes_per_node,
            self.trace_hash
        )
    }
}

/// The PAST workload (`--past-objects`): storage, lookups, maintenance and repair.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PastReport {
    /// Objects the run inserted.
    pub objects: u64,
    /// Replicas per object.
    pub k: usize,
    /// Bytes per object.
    pub object_size: usize,
    /// Caching along lookup routes was on.
    pub caching: bool,
    /// Inserts that succeeded (objects stored).
    pub stored: u64,
    /// Inserts that failed (or never answered).
    pub insert_failures: u64,
    /// A few insert failure reasons.
    pub insert_failure_examples: Vec<String>,
    /// Stored objects with no live replica anywhere after the cool-down.
    pub objects_lost: u64,
    /// A few lost keys.
    pub lost_examples: Vec<String>,
    /// Stored objects not on all of their k closest live nodes after the cool-down.
    pub under_replicated_at_end: u64,
    /// Lookups issued during the measurement phase.
    pub lookups_issued: u64,
    /// Of those, answered with the right object.
    pub lookups_answered: u64,
    /// Answered from a cache (route or client) rather than a replica.
    pub lookups_from_cache: u64,
    /// Failed (`LookupFailed`: not found, timeout, busy) or answered wrongly.
    pub lookups_failed: u64,
    /// Without a final answer at the end of the run.
    pub lookups_unanswered: u64,
    /// Whose client node crashed or left before the answer (not failures).
    pub lookups_abandoned: u64,
    /// A few lookup failures.
    pub lookup_failure_examples: Vec<String>,
    /// Mean simulated time from lookup to answer, ms.
    pub lookup_mean_ms: f64,
    /// Final check: one lookup per stored object from a random live node.
    pub verify_issued: u64,
    /// Of those, answered with the right object.
    pub verify_answered: u64,
    /// Not answered, or answered wrongly.
    pub verify_failed: u64,
    /// Whose client left before the answer.
    pub verify_abandoned: u64,
    /// Replica-maintenance messages (digests, sync data, hand-offs) per node per second
    /// in the measurement window (from the nodes' `PastStats`).
    pub maintenance_msgs_per_node_s: f64,
    /// Their bytes per node per second.
    pub maintenance_bytes_per_node_s: f64,
    /// Replicas received through maintenance in the window.
    pub maintenance_objects_received: u64,
    /// Every PAST message (inserts, lookups, answers, maintenance; routed hops and direct
    /// sends) per node per second in the window.
    pub app_msgs_per_node_s: f64,
    /// Their wire bytes per node per second.
    pub app_bytes_per_node_s: f64,
    /// Repair after a mass failure, when the run had one.
    pub repair: Option<RepairReport>,
}

/// PAST's repair after a mass failure.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// Objects with no live replica right after the failure (all k replicas crashed).
    pub lost_at_failure: u64,
    /// Objects not on all of their k closest live nodes right after the failure.
    pub under_replicated_at_failure: u64,
    /// Seconds after the failure until every other object was again on its k closest live
    /// nodes (checked each second); `None` if never within the run.
    pub repaired_s: Option<f64>,
    /// Maintenance messages sent from the failure until then.
    pub messages: u64,
    /// Their bytes (the bytes moved to repair).
    pub bytes_moved: u64,
    /// Replicas received through maintenance until then.
    pub objects_moved: u64,
}
