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
    /// The Scribe workload, when the run had one (`--scribe-topics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scribe: Option<ScribeReport>,
    /// The SplitStream workload, when the run had one (`--splitstream`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub splitstream: Option<SplitStreamReport>,
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
    /// Messages sent during the build by kind, heartbeats included.
    pub by_kind: BTreeMap<String, u64>,
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
    /// Mean one-way latency, ms, of the i-th hop of lookup routes (index 0: the first
    /// hop), over every hop sent while measuring: where a route's delay goes.
    pub hop_latency_ms: Vec<f64>,
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
    /// Messages lost to the loss model, a partition or a broken link (whole run).
    pub dropped: u64,
    /// Messages sent to a node that was no longer live (whole run).
    pub to_dead: u64,
    /// Probes of members that went unanswered but another member's got an answer (live
    /// nodes' counters at the end of the run).
    pub probes_rescued: u64,
    /// Route hops sent through another member because our own probes did not reach the
    /// next hop (live nodes' counters at the end of the run).
    pub relayed_hops: u64,
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
        if !l.hop_latency_ms.is_empty() {
            write!(f, "  per hop  ")?;
            for (i, ms) in l.hop_latency_ms.iter().enumerate() {
                write!(f, "{} {}: {ms:.1} ms", if i == 0 { "" } else { "," }, i + 1)?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "  traffic   control {:.3} msgs/s and {:.1} bytes/s per node, lookups {:.3} msgs/s \
             per node, over {:.0} s; {} dropped, {} to dead nodes; {} probes answered only \
             through another member, {} hops relayed",
            t.control_msgs_per_node_s,
            t.control_bytes_per_node_s,
            t.lookup_msgs_per_node_s,
            t.window_s,
            t.dropped,
            t.to_dead,
            t.probes_rescued,
            t.relayed_hops
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
        if let Some(sc) = &self.scribe {
            writeln!(
                f,
                "  Scribe    {} topics, group sizes {}/{:.1}/{} (min/mean/max), {} memberships, \
                 {} attached after {:.1} s; {} joiner subscriptions",
                sc.topics,
                sc.group_min,
                sc.group_mean,
                sc.group_max,
                sc.memberships,
                sc.attached_at_settle,
                sc.attach_s,
                sc.joiner_subscriptions
            )?;
            writeln!(
                f,
                "  Scribe    {} messages published ({} failed, {} never disseminated): {} of {} \
                 expected deliveries ({:.4}%), {} deliveries in all, {} duplicates",
                sc.messages_published,
                sc.publishes_failed,
                sc.messages_never_disseminated,
                sc.delivered,
                sc.expected_deliveries,
                100.0 * sc.delivery_ratio,
                sc.deliveries_total,
                sc.duplicates
            )?;
            writeln!(
                f,
                "  Scribe    delivery RDP mean {:.3}, p50 {:.3}, p95 {:.3} ({} deliveries, {} \
                 replayed ones apart); depth mean {:.2}, max {}; node stress mean {:.2}, max {} \
                 ({} interior nodes, {} tree nodes, {} forwarders, {} members not in a tree)",
                sc.rdp.mean,
                sc.rdp.p50,
                sc.rdp.p95,
                sc.rdp.samples,
                sc.replayed_deliveries,
                sc.depth_mean,
                sc.depth_max,
                sc.node_stress_mean,
                sc.node_stress_max,
                sc.interior_nodes,
                sc.tree_nodes,
                sc.forwarders,
                sc.members_not_in_tree
            )?;
            writeln!(
                f,
                "  Scribe    control {:.4} msgs/s and {:.1} bytes/s per node; data {:.4} msgs/s \
                 per node",
                sc.control_msgs_per_node_s, sc.control_bytes_per_node_s, sc.data_msgs_per_node_s
            )?;
            match &sc.link_stress {
                Some(l) => writeln!(
                    f,
                    "  Scribe    link stress mean {:.2}, max {} over {:.0} links a message; \
                     unicast from the root mean {:.2}, max {}; IP multicast 1 over {:.0} links \
                     ({} messages)",
                    l.mean,
                    l.max,
                    l.links_per_message,
                    l.unicast_mean,
                    l.unicast_max,
                    l.ip_links_per_message,
                    l.messages
                )?,
                None => writeln!(
                    f,
                    "  Scribe    link stress not measured (no links in a matrix)"
                )?,
            }
        }
        if let Some(ss) = &self.splitstream {
            writeln!(
                f,
                "  Split     {} stripes, capacity {}, a block every {:.2} s: {} members, {} \
                 attached to every stripe after {:.1} s; {} blocks ({} errors, {} source \
                 changes), {} duplicate parts",
                ss.stripes,
                ss.capacity,
                ss.block_interval_s,
                ss.members,
                ss.attached_at_settle,
                ss.attach_s,
                ss.blocks_published,
                ss.publish_errors,
                ss.source_changes,
                ss.duplicate_parts
            )?;
            writeln!(
                f,
                "  Split     {} blocks{}: {:.3}% of {} nodes received all {} stripes of every \
                 block; nodes by stripes received {:?}",
                ss.blocks_before_failure,
                if ss.failure.is_some() {
                    " before the failure"
                } else {
                    ""
                },
                ss.all_stripes_pct,
                ss.nodes_counted,
                ss.stripes,
                ss.stripes_histogram
            )?;
            for (name, fo) in [("start", &ss.forest_at_start), ("end", &ss.forest_at_end)] {
                writeln!(
                    f,
                    "  Split     forest at the {name}: {}/{} nodes attached to every stripe; {} \
                     interior, {} interior in more than one stripe (max {}); node stress mean \
                     {:.2}, max {}",
                    fo.fully_attached,
                    fo.nodes,
                    fo.interior_nodes,
                    fo.interior_in_several,
                    fo.max_interior_stripes,
                    fo.stress_mean,
                    fo.stress_max
                )?;
            }
            if let Some(fl) = &ss.failure {
                writeln!(
                    f,
                    "  Split     failure: {} survivors, {} blocks after; worst block {:.2}% with \
                     >= S-1 stripes; >= 99% with >= S-1 {}; from then on worst {:.3}% (>= S-1), \
                     {:.3}% (all S); last block {:.3}% / {:.3}%",
                    fl.survivors,
                    fl.blocks_after,
                    fl.min_ge_s1_pct,
                    fl.recovery_s
                        .map_or("never".to_string(), |v| format!("after {v:.1} s")),
                    fl.after_recovery_min_ge_s1_pct,
                    fl.after_recovery_min_all_pct,
                    fl.last_block_ge_s1_pct,
                    fl.last_block_all_pct
                )?;
            }
            writeln!(
                f,
                "  Split     control {:.4} msgs/s and {:.1} bytes/s per node; data {:.3} msgs/s \
                 per node",
                ss.control_msgs_per_node_s, ss.control_bytes_per_node_s, ss.data_msgs_per_node_s
            )?;
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

/// The Scribe workload (`--scribe-topics`): groups, delivery, trees, traffic.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScribeReport {
    /// Topics (groups).
    pub topics: u32,
    /// Smallest group at the start (Zipf-like sizes).
    pub group_min: usize,
    /// Mean group size at the start.
    pub group_mean: f64,
    /// Largest group at the start.
    pub group_max: usize,
    /// Memberships subscribed at the start of the settle phase.
    pub memberships: u64,
    /// Of those, attached to their tree when the settle wait ended.
    pub attached_at_settle: u64,
    /// Simulated seconds until they were attached (or the wait's bound).
    pub attach_s: f64,
    /// Subscriptions of nodes that joined during the measurement phase (churn).
    pub joiner_subscriptions: u64,
    /// Messages published during the measurement phase.
    pub messages_published: u64,
    /// Of those, refused at the publisher or never acknowledged by a root.
    pub publishes_failed: u64,
    /// Of those, whose data no root ever sent and nobody received.
    pub messages_never_disseminated: u64,
    /// (member, message) pairs expected: the member's subscription was acknowledged before
    /// the publication and it was alive 10 s after it.
    pub expected_deliveries: u64,
    /// Of those, delivered (at least once, by the end of the run).
    pub delivered: u64,
    /// Every first delivery, expected or not (members that attached after the publication,
    /// or died within 10 s of it, included).
    pub deliveries_total: u64,
    /// Deliveries of a message a node had already delivered.
    pub duplicates: u64,
    /// delivered / expected_deliveries.
    pub delivery_ratio: f64,
    /// A few messages some expected members missed.
    pub missed_examples: Vec<String>,
    /// Delivery latency from the root's first send over the direct one-way latency root ->
    /// member, over every delivery at a member other than the root, except replayed ones.
    pub rdp: Rdp,
    /// First deliveries that came by replay: the member missed the message while it
    /// re-attached (churn) and got it from its new parent's buffer. Their delay is the
    /// detachment's, so they are left out of the RDP.
    pub replayed_deliveries: u64,
    /// At the start of the measurement phase: nodes in some tree (per topic, summed).
    pub tree_nodes: u64,
    /// Of those, tree nodes that are not members (forwarders).
    pub forwarders: u64,
    /// Nodes with at least one child in some tree.
    pub interior_nodes: u64,
    /// Node stress: children over all topics, mean over interior nodes.
    pub node_stress_mean: f64,
    /// Node stress: the most children of one node over all topics.
    pub node_stress_max: u64,
    /// Tree depth of members (hops from the root along parent links), mean.
    pub depth_mean: f64,
    /// Tree depth, maximum.
    pub depth_max: u32,
    /// Members whose parent links did not lead to a root at the snapshot.
    pub members_not_in_tree: u64,
    /// Scribe control messages (everything but publications and data) originated per node
    /// per second in the measurement window (the nodes' `ScribeStats`).
    pub control_msgs_per_node_s: f64,
    /// Their bytes per node per second.
    pub control_bytes_per_node_s: f64,
    /// Publications and tree data messages sent per node per second.
    pub data_msgs_per_node_s: f64,
    /// Link stress on the plane and sphere models (none for a matrix).
    pub link_stress: Option<LinkStress>,
}

/// Copies of a multicast message per physical link, on the router network laid over the
/// plane or sphere (see [`crate::links`]): Scribe's tree against unicast from the root to
/// each member that got the message, and IP multicast (each link of those unicast paths
/// once).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkStress {
    /// Disseminated messages counted.
    pub messages: u64,
    /// Scribe: copies per link, mean over the (message, link) pairs it used.
    pub mean: f64,
    /// Scribe: the most copies of one message on one link.
    pub max: u64,
    /// Scribe: links a message crossed, mean per message.
    pub links_per_message: f64,
    /// Unicast from the root: copies per link, mean.
    pub unicast_mean: f64,
    /// Unicast from the root: the most copies on one link.
    pub unicast_max: u64,
    /// IP multicast (stress 1): links a message crossed, mean per message.
    pub ip_links_per_message: f64,
}

/// One snapshot of the SplitStream forest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForestReport {
    /// Live nodes running SplitStream.
    pub nodes: u64,
    /// Of those, attached in every stripe.
    pub fully_attached: u64,
    /// Nodes with a child in at least one stripe.
    pub interior_nodes: u64,
    /// Nodes with children in more than one stripe (not interior-node-disjoint).
    pub interior_in_several: u64,
    /// The most stripes one node is interior in.
    pub max_interior_stripes: u64,
    /// Node stress: children over all stripes, mean over interior nodes.
    pub stress_mean: f64,
    /// Node stress: the most children of one node.
    pub stress_max: u64,
}

/// After a mass failure: how the survivors' stripes recovered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitStreamFailureReport {
    /// Nodes subscribed at the start that were alive at the end.
    pub survivors: u64,
    /// Blocks published from the failure on.
    pub blocks_after: u64,
    /// The worst block after the failure: percent of survivors with >= S-1 stripes of it.
    pub min_ge_s1_pct: f64,
    /// Seconds from the failure to the publication of the first block from which every
    /// block reached >= 99% of survivors with >= S-1 stripes; `None` if never.
    pub recovery_s: Option<f64>,
    /// From then on, the worst block's percent of survivors with >= S-1 stripes.
    pub after_recovery_min_ge_s1_pct: f64,
    /// From then on, the worst block's percent of survivors with all S stripes.
    pub after_recovery_min_all_pct: f64,
    /// The last block: percent of survivors with >= S-1 stripes.
    pub last_block_ge_s1_pct: f64,
    /// The last block: percent of survivors with all S stripes.
    pub last_block_all_pct: f64,
}

/// The SplitStream workload (`--splitstream`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitStreamReport {
    /// Stripes S.
    pub stripes: usize,
    /// Outgoing capacity per node, in stripes.
    pub capacity: usize,
    /// Seconds between blocks.
    pub block_interval_s: f64,
    /// Nodes subscribed at the start of the settle phase.
    pub members: u64,
    /// Of those, attached in every stripe when the settle wait ended.
    pub attached_at_settle: u64,
    /// Simulated seconds until then.
    pub attach_s: f64,
    /// Blocks published.
    pub blocks_published: u64,
    /// Blocks whose publication returned an error.
    pub publish_errors: u64,
    /// Times the source crashed and another node took over.
    pub source_changes: u64,
    /// Stripe parts received twice.
    pub duplicate_parts: u64,
    /// Blocks published at least 2 s before the mass failure (all without one).
    pub blocks_before_failure: u64,
    /// Members alive 2 s after the last of those blocks.
    pub nodes_counted: u64,
    /// Percent of them that received every stripe of every one of those blocks.
    pub all_stripes_pct: f64,
    /// `[k]`: nodes that received k stripes of every one of those blocks (the stripes
    /// received for all of them).
    pub stripes_histogram: Vec<u64>,
    /// The forest at the start of the measurement phase.
    pub forest_at_start: ForestReport,
    /// The forest at the end of the run.
    pub forest_at_end: ForestReport,
    /// Recovery from the mass failure, when the run had one.
    pub failure: Option<SplitStreamFailureReport>,
    /// Control messages of the embedded Scribe originated per node per second.
    pub control_msgs_per_node_s: f64,
    /// Their bytes per node per second.
    pub control_bytes_per_node_s: f64,
    /// Publications and tree data messages sent per node per second.
    pub data_msgs_per_node_s: f64,
}
