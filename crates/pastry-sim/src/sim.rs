//! The simulation engine: one event queue driving unmodified `pastry_core::Node<u32>`s.
//!
//! Events are ordered by (simulated time, sequence number), so equal times keep their
//! insertion order and a run is a pure function of its [`SimOptions`]. Each node has at
//! most one useful wake-up queued: the engine remembers the earliest wake it scheduled and
//! only queues another when the node's `poll_timeout` is earlier. A run has four phases:
//! **build** (joins through the real protocol, `concurrent_joins` at a time, each through a
//! nearby ready node), **settle** (quiet), **measure** (lookups spread evenly, churn, mass
//! failure, partition) and **quiet** (no new work; lets churn damage heal before the final
//! leaf-set check).
//!
//! The checkers run throughout: each delivery is compared with the numerically closest live
//! ready node at that instant (a `BTreeMap` of ready ids), every lookup must end delivered
//! or failed, and at the end every live node's leaf set must equal its true neighbours.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pastry_core::leafset::Side;
use pastry_core::message::RoutePayload;
use pastry_core::rng::Rng;
use pastry_core::{
    Body, Config, Event, Instant, Message, MessageKind, Node, NodeId, NodeState, RouteFailure,
    RouteRequest, codec,
};

use crate::net::{Topology, TopologySpec};
use crate::queue::EventQueue;
use crate::report::{
    CheckReport, FailureReport, JoinReport, LookupReport, PartitionReport, PerfReport, Report,
    TrafficReport,
};
use crate::workload::{Partition, SessionDist, TraceAction, TraceEvent, exp_gap};

mod past;
mod scribe;
pub use past::{PAST_APP, PastWorkload};
pub use scribe::{SCRIBE_APP, SPLITSTREAM_APP, ScribeWorkload, SplitStreamWorkload};

/// Churn during the measurement phase.
#[derive(Debug, Clone, PartialEq)]
pub enum Churn {
    /// Poisson arrivals at the rate that keeps the ring at its size, each node staying for a
    /// session drawn from `dist` with mean `mean`; initial nodes draw sessions too.
    Sessions {
        /// Mean session time.
        mean: Duration,
        /// Session-time distribution.
        dist: SessionDist,
        /// Fraction of departures that are graceful `leave`s; the rest crash.
        graceful: f64,
    },
    /// Joins, leaves and crashes at the times of a trace (see [`crate::workload::parse_trace`]).
    Trace(Vec<TraceEvent>),
}

/// Everything a run depends on. The same options give the same run.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Ring size to build.
    pub nodes: usize,
    /// Lookups to issue during the measurement phase, evenly spread.
    pub lookups: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Protocol configuration shared by every node (validated by [`Simulation::new`]).
    pub config: Config,
    /// Network model.
    pub topology: TopologySpec,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Extra one-way delay, uniform in `[0, jitter]`, per message.
    pub jitter: Duration,
    /// Fraction of node pairs that cannot reach each other at all, both ways, while each
    /// reaches everyone else (non-transitive connectivity, as measured on PlanetLab).
    pub broken_links: f64,
    /// Joins in flight at once while building; 0 picks `nodes / 500` (1..=2000).
    pub concurrent_joins: usize,
    /// Quiet time after the build, before measuring.
    pub settle: Duration,
    /// Length of the measurement phase.
    pub duration: Duration,
    /// Quiet time after the measurement phase, before the final checks.
    pub cooldown: Duration,
    /// Churn during the measurement phase.
    pub churn: Option<Churn>,
    /// Fraction of live nodes that crash at once at `fail_at`.
    pub fail_fraction: Option<f64>,
    /// When the mass failure happens, from the start of the measurement phase.
    pub fail_at: Duration,
    /// A partition into two halves during the measurement phase.
    pub partition: Option<Partition>,
    /// A PAST workload: PAST on every node, objects inserted after the build, looked up
    /// while measuring, verified at the end (see [`PastWorkload`]).
    pub past: Option<PastWorkload>,
    /// A Scribe workload: groups formed after the build, messages published while
    /// measuring (see [`ScribeWorkload`]).
    pub scribe: Option<ScribeWorkload>,
    /// A SplitStream workload: every node on one channel, a source streaming blocks while
    /// measuring (see [`SplitStreamWorkload`]).
    pub splitstream: Option<SplitStreamWorkload>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: 10_000,
            lookups: 100_000,
            seed: 1,
            config: Config::default(),
            topology: TopologySpec::Plane,
            loss: 0.0,
            jitter: Duration::ZERO,
            broken_links: 0.0,
            concurrent_joins: 0,
            settle: Duration::from_secs(30),
            duration: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
            churn: None,
            fail_fraction: None,
            fail_at: Duration::from_secs(10),
            partition: None,
            past: None,
            scribe: None,
            splitstream: None,
        }
    }
}

/// Progress of a run, handed to the progress callback.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// `"build"`, `"settle"`, `"measure"` or `"quiet"`.
    pub phase: &'static str,
    /// Work done in this phase (joins, or simulated ms).
    pub done: u64,
    /// Work in this phase.
    pub total: u64,
    /// Events processed so far.
    pub events: u64,
}

type ProgressFn = Box<dyn FnMut(&Progress)>;

/// Largest ring accepted (node indices are u32 and memory is finite).
pub const MAX_NODES: usize = 50_000_000;

// Event kinds, also hashed into the trace hash.
const K_MSG: u8 = 1;
const K_WAKE: u8 = 2;
const K_LOOKUP: u8 = 3;
const K_JOIN: u8 = 4;
const K_ARRIVAL: u8 = 5;
const K_SESSION_END: u8 = 6;
const K_TRACE: u8 = 7;
const K_FAIL: u8 = 8;
const K_PART_START: u8 = 9;
const K_PART_END: u8 = 10;
const K_CHECK: u8 = 11;
const K_PAST_LOOKUP: u8 = 12;
const K_PAST_CHECK: u8 = 13;
const K_SCRIBE_PUBLISH: u8 = 14;
const K_SS_BLOCK: u8 = 15;

/// A queued event's payload kept outside the heap (the heap holds 24-byte keys).
#[derive(Debug)]
enum Ev {
    Msg {
        to: u32,
        from: u32,
        msg: Message<u32>,
    },
    Other {
        kind: u8,
        arg: u32,
    },
}

#[derive(Debug)]
struct LookupRec {
    key: NodeId,
    at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Build,
    Settle,
    Measure,
    Quiet,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Settle => "settle",
            Phase::Measure => "measure",
            Phase::Quiet => "quiet",
        }
    }
}

/// Grid spatial index of ready nodes on the plane, for nearby bootstraps.
#[derive(Debug)]
struct Grid {
    side: usize,
    cells: Vec<Vec<u32>>,
}

impl Grid {
    fn new(nodes: usize) -> Grid {
        let side = ((nodes as f64 / 4.0).sqrt().ceil() as usize).clamp(1, 1024);
        Grid {
            side,
            cells: vec![Vec::new(); side * side],
        }
    }

    fn cell(&self, p: [f32; 2]) -> (usize, usize) {
        let s = self.side as f32 / 1000.0;
        (
            ((p[0] * s) as usize).min(self.side - 1),
            ((p[1] * s) as usize).min(self.side - 1),
        )
    }
}

/// Hop indices whose latency is kept apart (the last one takes all later hops).
const HOP_LATENCY_HOPS: usize = 12;

/// The cells of a `side` x `side` grid at Chebyshev distance exactly `r` from `(cx, cy)`,
/// each once: a ring's perimeter only, so a search out to radius R visits O(R^2) cells,
/// not O(R^3) (a million-node build spent 9% of its time rescanning inner cells).
fn ring_cells(cx: usize, cy: usize, r: usize, side: usize) -> impl Iterator<Item = (usize, usize)> {
    let (x0, x1) = (cx.saturating_sub(r), (cx + r).min(side - 1));
    let top = cy.checked_sub(r);
    let bottom = Some(cy + r).filter(|&y| r > 0 && y < side);
    let left = cx.checked_sub(r).filter(|_| r > 0);
    let right = Some(cx + r).filter(|&x| r > 0 && x < side);
    // The top and bottom rows include the corners; the columns take the rows between.
    let between = if r == 0 {
        0..0
    } else {
        cy.saturating_sub(r - 1)..(cy + r).min(side)
    };
    let rows = [top, bottom]
        .into_iter()
        .flatten()
        .flat_map(move |y| (x0..=x1).map(move |x| (x, y)));
    let cols = [left, right]
        .into_iter()
        .flatten()
        .flat_map(move |x| between.clone().map(move |y| (x, y)));
    rows.chain(cols)
}

/// The simulator's own state of one node.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The earliest wake-up queued for it (`u64::MAX`: none).
    wake_at: u64,
    /// Its index in `ready_list` (`u32::MAX`: not ready).
    ready_pos: u32,
    /// Not crashed, left or failed to join.
    alive: bool,
}

/// FNV-1a, 64 bits.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A discrete-event simulation of one Pastry ring. Build with [`Simulation::new`], run
/// with [`Simulation::run`].
pub struct Simulation {
    opts: SimOptions,
    cfg: Arc<Config>,
    now: u64,
    seq: u64,
    queue: EventQueue,
    slab: Vec<Option<Ev>>,
    free: Vec<u32>,
    nodes: Vec<Node<u32>>,
    /// Per node: alive, queued wake-up, position in `ready_list` (one cache line touched
    /// per event rather than three).
    slots: Vec<Slot>,
    join_started: Vec<u64>,
    topo: Topology,
    grid: Option<Grid>,
    ready: BTreeMap<NodeId, u32>,
    ready_list: Vec<u32>,
    rng_ids: Rng,
    rng_topo: Rng,
    rng_net: Rng,
    rng_work: Rng,
    rng_churn: Rng,
    hash: Fnv,
    events: u64,
    phase: Phase,
    // Build.
    joins_to_start: u64,
    joins_in_flight: usize,
    concurrency: usize,
    joins: JoinReport,
    join_time_total: u64,
    build_msgs: u64,
    build_heartbeats: u64,
    /// Build-phase messages by kind, heartbeats included.
    build_kinds: [u64; MessageKind::ALL.len()],
    // Measurement.
    measure_start: u64,
    measure_end: u64,
    lookups_issued: u64,
    lookup_interval: f64,
    outstanding: HashMap<(u32, u64), LookupRec>,
    lookups: LookupReport,
    rdp: Vec<f32>,
    rdp_sums: (f64, f64),
    /// Per hop index of lookup routes: (summed one-way latency in µs, hops taken).
    hop_latency: [(u64, u64); HOP_LATENCY_HOPS],
    partitioned: bool,
    part_times: Option<(u64, u64)>,
    part_report: Option<PartitionReport>,
    fail_time: Option<u64>,
    failure: Option<FailureReport>,
    last_bad_after_fail: Option<u64>,
    checking_since: Option<u64>,
    trace_ids: Vec<u32>,
    // Traffic.
    window_msgs: [u64; MessageKind::ALL.len()],
    window_ctl_msgs: u64,
    window_ctl_bytes: u64,
    window_lookup_msgs: u64,
    node_seconds: f64,
    live_count: u64,
    live_since: u64,
    dropped: u64,
    to_dead: u64,
    series: Vec<(u32, u32, u32)>,
    // Checks.
    checks: CheckReport,
    violation_examples: Vec<String>,
    // Application traffic (routed hops and direct sends of registered applications).
    window_app_msgs: u64,
    window_app_bytes: u64,
    // PAST workload.
    past: Option<past::PastSim>,
    // Scribe / SplitStream workloads.
    scribe: Option<scribe::GroupSim>,
    // Output.
    progress: Option<ProgressFn>,
    trace: Option<Box<dyn Write>>,
    trace_err: Option<std::io::Error>,
    wall_start: std::time::Instant,
    rss_before_build: u64,
    bytes_per_node: u64,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("nodes", &self.nodes.len())
            .field("now_us", &self.now)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Derives an independent generator for one purpose from the run seed.
fn stream(seed: u64, purpose: u64) -> Rng {
    let mut r = Rng::new(seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    Rng::new(r.next_u64())
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 4)
}

/// Reads a `/proc/self/status` field in bytes (Linux); 0 elsewhere.
pub fn proc_status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

impl Simulation {
    /// A simulation ready to run.
    ///
    /// # Errors
    /// Invalid options (node count, rates, protocol config) or an unreadable matrix file.
    pub fn new(opts: SimOptions) -> anyhow::Result<Simulation> {
        opts.config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        if opts.nodes == 0 || opts.nodes > MAX_NODES {
            anyhow::bail!("--nodes must be in 1..={MAX_NODES}, got {}", opts.nodes);
        }
        if !(0.0..1.0).contains(&opts.loss) {
            anyhow::bail!("--loss must be in [0, 1), got {}", opts.loss);
        }
        if !(0.0..1.0).contains(&opts.broken_links) {
            anyhow::bail!(
                "--broken-links must be in [0, 1), got {}",
                opts.broken_links
            );
        }
        if let Some(f) = opts.fail_fraction
            && !(0.0..1.0).contains(&f)
        {
            anyhow::bail!("--fail-fraction must be in [0, 1), got {f}");
        }
        if let Some(Churn::Sessions {
            mean,
            dist,
            graceful,
        }) = &opts.churn
        {
            if mean.is_zero() {
                anyhow::bail!("churn session mean must be positive");
            }
            if let SessionDist::Pareto { alpha } = dist
                && !(*alpha > 1.0 && alpha.is_finite())
            {
                anyhow::bail!("Pareto alpha must exceed 1, got {alpha}");
            }
            if !(0.0..=1.0).contains(graceful) {
                anyhow::bail!("graceful fraction must be in [0, 1], got {graceful}");
            }
        }
        if opts.duration.is_zero() && opts.lookups > 0 {
            anyhow::bail!("--duration must be positive when there are lookups");
        }
        let topo = Topology::new(&opts.topology)?;
        let grid = matches!(opts.topology, TopologySpec::Plane).then(|| Grid::new(opts.nodes));
        let concurrency = if opts.concurrent_joins == 0 {
            (opts.nodes / 500).clamp(1, 2000)
        } else {
            opts.concurrent_joins
        };
        let seed = opts.seed;
        let cap = opts.nodes;
        let past = match &opts.past {
            Some(w) => Some(past::PastSim::new(w.clone(), w.config(&opts.config)?, seed)),
            None => None,
        };
        let scribe = scribe::GroupSim::new(
            opts.scribe.clone(),
            opts.splitstream.clone(),
            seed,
            opts.duration,
            opts.nodes,
            &topo,
        )?;
        Ok(Simulation {
            cfg: Arc::new(opts.config.clone()),
            now: 0,
            seq: 0,
            queue: EventQueue::new(),
            slab: Vec::new(),
            free: Vec::new(),
            nodes: Vec::with_capacity(cap),
            slots: Vec::with_capacity(cap),
            join_started: Vec::with_capacity(cap),
            topo,
            grid,
            ready: BTreeMap::new(),
            ready_list: Vec::with_capacity(cap),
            rng_ids: stream(seed, 1),
            rng_topo: stream(seed, 2),
            rng_net: stream(seed, 3),
            rng_work: stream(seed, 4),
            rng_churn: stream(seed, 5),
            hash: Fnv(0xcbf2_9ce4_8422_2325),
            events: 0,
            phase: Phase::Build,
            joins_to_start: 0,
            joins_in_flight: 0,
            concurrency,
            joins: JoinReport {
                concurrency,
                ..JoinReport::default()
            },
            join_time_total: 0,
            build_msgs: 0,
            build_heartbeats: 0,
            build_kinds: [0; MessageKind::ALL.len()],
            measure_start: 0,
            measure_end: 0,
            lookups_issued: 0,
            lookup_interval: 0.0,
            outstanding: HashMap::new(),
            lookups: LookupReport::default(),
            rdp: Vec::new(),
            rdp_sums: (0.0, 0.0),
            hop_latency: [(0, 0); HOP_LATENCY_HOPS],
            partitioned: false,
            part_times: None,
            part_report: None,
            fail_time: None,
            failure: None,
            last_bad_after_fail: None,
            checking_since: None,
            trace_ids: Vec::new(),
            window_msgs: [0; MessageKind::ALL.len()],
            window_ctl_msgs: 0,
            window_ctl_bytes: 0,
            window_lookup_msgs: 0,
            node_seconds: 0.0,
            live_count: 0,
            live_since: 0,
            dropped: 0,
            to_dead: 0,
            series: Vec::new(),
            checks: CheckReport::default(),
            violation_examples: Vec::new(),
            window_app_msgs: 0,
            window_app_bytes: 0,
            past,
            scribe,
            progress: None,
            trace: None,
            trace_err: None,
            wall_start: std::time::Instant::now(),
            rss_before_build: 0,
            bytes_per_node: 0,
            opts,
        })
    }

    /// Calls `f` every 65,536 events and at each phase change.
    pub fn on_progress(&mut self, f: impl FnMut(&Progress) + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// Writes the JSON-lines trace to `w`: one `lookup` line per lookup as it completes,
    /// then one `node` line per live node at the end.
    pub fn trace_to(&mut self, w: impl Write + 'static) {
        self.trace = Some(Box::new(w));
    }

    /// The nodes (index = address), for inspection after [`Simulation::run_phases`].
    pub fn nodes(&self) -> &[Node<u32>] {
        &self.nodes
    }

    /// True when node `i` is live (not crashed, left or failed to join).
    pub fn is_alive(&self, i: u32) -> bool {
        self.slots[i as usize].alive
    }

    /// Runs the whole simulation and reports.
    ///
    /// # Errors
    /// Only when writing the trace fails.
    pub fn run(mut self) -> anyhow::Result<Report> {
        self.run_phases();
        self.finish()
    }

    /// Runs every phase without building the report (tests inspect the nodes afterwards,
    /// then call [`Simulation::finish`]).
    pub fn run_phases(&mut self) {
        self.wall_start = std::time::Instant::now();
        self.build();
        let grown = proc_status_bytes("VmRSS:").saturating_sub(self.rss_before_build);
        self.bytes_per_node = grown / self.opts.nodes as u64;
        self.set_phase(Phase::Settle);
        let settle_end = self.now + us(self.opts.settle);
        // PAST objects go in first; the settle phase lasts until every insert answered.
        self.past_insert_all();
        // Scribe members and SplitStream nodes subscribe; settle lasts until attached.
        self.scribe_subscribe_all();
        self.run_until(settle_end.max(self.now));
        self.measure();
        self.set_phase(Phase::Quiet);
        let end = self.now + us(self.opts.cooldown);
        self.run_until(end);
        self.account_live();
        self.past_verify();
    }

    // ---- the event queue ----

    fn push(&mut self, at: u64, ev: Ev) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(ev);
                s
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        self.seq += 1;
        self.queue.push((at, self.seq, (1 << 32) | u64::from(slot)));
    }

    fn push_other(&mut self, at: u64, kind: u8, arg: u32) {
        self.push(at, Ev::Other { kind, arg });
    }

    fn push_wake(&mut self, at: u64, node: u32) {
        self.seq += 1;
        self.queue.push((at, self.seq, u64::from(node)));
    }

    fn run_until(&mut self, until: u64) {
        while let Some(&(at, _, _)) = self.queue.peek() {
            if at > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Processes one event; false when the queue is empty.
    fn step(&mut self) -> bool {
        let Some((at, _, what)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        self.events += 1;
        if self.events & 0xffff == 0 {
            self.report_progress();
        }
        let now = self.now;
        if what >> 32 == 0 {
            let i = what as u32;
            self.hash_event(K_WAKE, i);
            if self.slots[i as usize].wake_at == at {
                self.slots[i as usize].wake_at = u64::MAX;
                if self.slots[i as usize].alive {
                    let n = &mut self.nodes[i as usize];
                    if n.poll_timeout().is_some_and(|t| t.as_micros() <= now) {
                        n.handle_timeout(Instant::from_micros(now));
                    }
                    self.flush(i);
                }
            }
            return true;
        }
        let slot = what as u32;
        let ev = self.slab[slot as usize].take();
        self.free.push(slot);
        match ev {
            Some(Ev::Msg { to, from, msg }) => {
                self.hash_event(K_MSG, to);
                if !self.slots[to as usize].alive {
                    self.to_dead += 1;
                } else if self.partitioned && self.side(to) != self.side(from) {
                    self.dropped += 1;
                } else {
                    self.nodes[to as usize].handle_message(Instant::from_micros(now), from, msg);
                    self.flush(to);
                }
            }
            Some(Ev::Other { kind, arg }) => {
                self.hash_event(kind, arg);
                self.on_workload(kind, arg);
            }
            None => {}
        }
        true
    }

    fn hash_event(&mut self, kind: u8, node: u32) {
        let mut h = self.hash;
        h.write(&self.now.to_le_bytes());
        h.write(&[kind]);
        h.write(&node.to_le_bytes());
        self.hash = h;
    }

    fn set_phase(&mut self, p: Phase) {
        self.phase = p;
        self.report_progress();
    }

    fn report_progress(&mut self) {
        let (done, total) = match self.phase {
            Phase::Build => (
                self.joins.completed + self.joins.failed,
                self.opts.nodes.saturating_sub(1) as u64,
            ),
            Phase::Measure => (
                self.now.saturating_sub(self.measure_start) / 1000,
                (self.measure_end - self.measure_start) / 1000,
            ),
            _ => (0, 0),
        };
        let p = Progress {
            phase: self.phase.name(),
            done,
            total,
            events: self.events,
        };
        if let Some(f) = self.progress.as_mut() {
            f(&p);
        }
    }

    // ---- nodes ----

    fn add_node(&mut self) -> u32 {
        let i = self.nodes.len() as u32;
        let id = NodeId::from_u128(
            (u128::from(self.rng_ids.next_u64()) << 64) | u128::from(self.rng_ids.next_u64()),
        );
        let seed = self.rng_ids.next_u64();
        self.nodes.push(Node::new(self.cfg.clone(), id, i, seed));
        self.slots.push(Slot {
            wake_at: u64::MAX,
            ready_pos: u32::MAX,
            alive: true,
        });
        self.past_register(i);
        self.scribe_register(i);
        self.join_started.push(u64::MAX);
        self.topo.add(&mut self.rng_topo);
        self.account_live();
        self.live_count += 1;
        i
    }

    /// Which half of a partition node `i` is in (a fixed hash of its index).
    fn side(&self, i: u32) -> bool {
        let mut r = Rng::new(u64::from(i) ^ self.opts.seed);
        r.next_u64() & 1 == 1
    }

    /// Whether the link between nodes `a` and `b` is broken (a fixed hash of the pair).
    fn broken(&self, a: u32, b: u32) -> bool {
        if self.opts.broken_links == 0.0 {
            return false;
        }
        let (lo, hi) = (a.min(b), a.max(b));
        let mut r =
            Rng::new((u64::from(lo) << 32 | u64::from(hi)) ^ self.opts.seed.rotate_left(17));
        r.unit() < self.opts.broken_links
    }

    /// Adds node-seconds up to now (before the live count changes).
    fn account_live(&mut self) {
        let (a, b) = (
            self.live_since.max(self.measure_start),
            self.now.min(self.measure_end),
        );
        if self.phase >= Phase::Measure && b > a {
            self.node_seconds += self.live_count as f64 * (b - a) as f64 / 1e6;
        }
        self.live_since = self.now;
    }

    fn mark_ready(&mut self, i: u32) {
        let id = self.nodes[i as usize].id();
        self.ready.insert(id, i);
        self.slots[i as usize].ready_pos = self.ready_list.len() as u32;
        self.ready_list.push(i);
        if let (Some(g), Some(p)) = (self.grid.as_mut(), self.topo.plane_pos(i)) {
            let (x, y) = g.cell(p);
            g.cells[y * g.side + x].push(i);
        }
    }

    fn unmark_ready(&mut self, i: u32) {
        let pos = self.slots[i as usize].ready_pos;
        if pos == u32::MAX {
            return;
        }
        let id = self.nodes[i as usize].id();
        self.ready.remove(&id);
        self.ready_list.swap_remove(pos as usize);
        if let Some(&moved) = self.ready_list.get(pos as usize) {
            self.slots[moved as usize].ready_pos = pos;
        }
        self.slots[i as usize].ready_pos = u32::MAX;
    }

    /// Node `i` stops: crashed (`graceful = false`) or leaving with notice.
    fn kill(&mut self, i: u32, graceful: bool) {
        if !self.slots[i as usize].alive {
            return;
        }
        if graceful {
            self.nodes[i as usize].leave(Instant::from_micros(self.now));
            self.flush(i);
        }
        self.past_on_kill(i);
        self.scribe_on_kill(i);
        self.unmark_ready(i);
        self.account_live();
        self.live_count -= 1;
        self.slots[i as usize].alive = false;
        // Free the dead node's tables: churn would otherwise grow memory without bound.
        let n = &self.nodes[i as usize];
        let (id, addr) = (n.id(), n.handle().addr);
        self.nodes[i as usize] = Node::new(self.cfg.clone(), id, addr, 0);
    }

    /// The live ready node numerically closest to `key`.
    fn closest_ready(&self, key: NodeId) -> Option<u32> {
        let after = self
            .ready
            .range(key..)
            .next()
            .or_else(|| self.ready.iter().next());
        let before = self
            .ready
            .range(..key)
            .next_back()
            .or_else(|| self.ready.iter().next_back());
        match (after, before) {
            (Some((a, &ia)), Some((b, &ib))) => Some(if key.is_closer(*b, *a) { ib } else { ia }),
            (Some((_, &i)), None) | (None, Some((_, &i))) => Some(i),
            (None, None) => None,
        }
    }

    /// A ready node near node `i`: the nearest on the plane (grid search), else the nearest
    /// of a random sample of 32.
    fn nearby_ready(&mut self, i: u32) -> Option<u32> {
        if self.ready_list.is_empty() {
            return None;
        }
        if let (Some(g), Some(p)) = (self.grid.as_mut(), self.topo.plane_pos(i)) {
            let (cx, cy) = g.cell(p);
            let side = g.side;
            let cell_len = 1000.0 / side as f64;
            let mut best: Option<(u64, u32)> = None;
            for r in 0..side {
                for (x, y) in ring_cells(cx, cy, r, side) {
                    let cell = &mut g.cells[y * side + x];
                    let slots = &self.slots;
                    cell.retain(|&n| slots[n as usize].ready_pos != u32::MAX);
                    for &n in cell.iter() {
                        let d = self.topo.latency_us(i, n);
                        if best.is_none_or(|(bd, _)| d < bd) {
                            best = Some((d, n));
                        }
                    }
                }
                // Any node in ring r + 1 is at least r cells away.
                if let Some((bd, _)) = best
                    && bd as f64 <= r as f64 * cell_len * 100.0
                {
                    break;
                }
            }
            if best.is_some() {
                return best.map(|(_, n)| n);
            }
        }
        let mut best: Option<(u64, u32)> = None;
        for _ in 0..32 {
            let n = self.ready_list[self.rng_work.below(self.ready_list.len() as u64) as usize];
            let d = self.topo.latency_us(i, n);
            if best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, n));
            }
        }
        best.map(|(_, n)| n)
    }

    fn random_ready(&mut self) -> Option<u32> {
        (!self.ready_list.is_empty())
            .then(|| self.ready_list[self.rng_work.below(self.ready_list.len() as u64) as usize])
    }

    /// A random ready node other than `not` if there is one: a joiner whose only bootstrap
    /// it cannot reach (`--broken-links`) could never join.
    fn random_ready_but(&mut self, not: u32) -> u32 {
        let n = self.ready_list.len();
        if n == 0 {
            return not;
        }
        let k = self.rng_work.below(n as u64) as usize;
        let pick = self.ready_list[k];
        if pick == not {
            self.ready_list[(k + 1) % n]
        } else {
            pick
        }
    }

    /// Adds a node and starts its join through a nearby ready node (and a random one as the
    /// fallback bootstrap).
    fn start_join(&mut self) -> Option<u32> {
        let i = self.add_node();
        let now = Instant::from_micros(self.now);
        let Some(near) = self.nearby_ready(i) else {
            self.nodes[i as usize].start_ring(now);
            self.flush(i);
            return Some(i);
        };
        let other = self.random_ready_but(near);
        self.join_started[i as usize] = self.now;
        self.joins.started += 1;
        self.nodes[i as usize].join(now, &[near, other]);
        self.flush(i);
        Some(i)
    }

    // ---- output of a node ----

    fn flush(&mut self, i: u32) {
        while let Some(t) = self.nodes[i as usize].poll_transmit() {
            self.transmit(i, t.to, t.msg);
        }
        while let Some(ev) = self.nodes[i as usize].poll_event() {
            self.on_node_event(i, ev);
        }
        if self.slots[i as usize].alive
            && let Some(t) = self.nodes[i as usize].poll_timeout()
        {
            let t = t.as_micros().max(self.now);
            if t < self.slots[i as usize].wake_at {
                self.slots[i as usize].wake_at = t;
                self.push_wake(t, i);
            }
        }
    }

    fn transmit(&mut self, from: u32, to: u32, msg: Message<u32>) {
        let kind = msg.body.kind();
        // Lookups are the simulator's own routes (application 0, nothing registered);
        // registered applications' routes and direct sends are application traffic.
        let (lookup_traffic, app_traffic) = match (&msg.body, msg.body.route()) {
            (_, Some(r)) => match r.payload {
                RoutePayload::App { app: 0, .. } => (true, false),
                RoutePayload::App { .. } => (false, true),
                RoutePayload::Join { .. } => (false, false),
            },
            (Body::RouteAck { .. }, _) => (true, false),
            (Body::Direct { .. }, _) => (false, true),
            _ => (false, false),
        };
        if self.phase == Phase::Build {
            self.build_msgs += 1;
            self.build_kinds[kind as usize - 1] += 1;
            if matches!(
                msg.body,
                Body::LeafSetUpdate {
                    heartbeat: true,
                    ..
                }
            ) {
                self.build_heartbeats += 1;
            }
        }
        if self.phase == Phase::Measure && self.now < self.measure_end {
            self.window_msgs[kind as usize - 1] += 1;
            if lookup_traffic {
                self.window_lookup_msgs += 1;
            } else if app_traffic {
                self.window_app_msgs += 1;
                self.window_app_bytes += codec::encoded_len(&msg) as u64;
            } else {
                self.window_ctl_msgs += 1;
                self.window_ctl_bytes += codec::encoded_len(&msg) as u64;
            }
        }
        let sec = (self.now / 1_000_000) as usize;
        if sec < 1_000_000 {
            if self.series.len() <= sec {
                self.series.resize(sec + 1, (0, 0, 0));
            }
            let e = &mut self.series[sec];
            if lookup_traffic {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
            e.2 = self.live_count as u32;
        }
        if self.scribe.is_some() {
            self.scribe_on_transmit(from, to, &msg);
        }
        if self.opts.loss > 0.0 && self.rng_net.unit() < self.opts.loss {
            self.dropped += 1;
            return;
        }
        if self.partitioned && self.side(from) != self.side(to) {
            self.dropped += 1;
            return;
        }
        if self.broken(from, to) {
            self.dropped += 1;
            return;
        }
        let mut delay = self.topo.latency_us(from, to);
        if lookup_traffic
            && self.phase == Phase::Measure
            && let Some(r) = msg.body.route()
        {
            let e = &mut self.hop_latency[usize::from(r.hops).min(HOP_LATENCY_HOPS - 1)];
            e.0 += delay;
            e.1 += 1;
        }
        if !self.opts.jitter.is_zero() {
            delay += (self.rng_net.unit() * us(self.opts.jitter) as f64) as u64;
        }
        self.push(self.now + delay, Ev::Msg { to, from, msg });
    }

    fn on_node_event(&mut self, i: u32, ev: Event<u32>) {
        match ev {
            Event::Ready => {
                self.mark_ready(i);
                let started = self.join_started[i as usize];
                if started != u64::MAX {
                    self.join_started[i as usize] = u64::MAX;
                    self.joins.completed += 1;
                    self.join_time_total += self.now - started;
                }
                if self.phase == Phase::Build {
                    self.joins_in_flight = self.joins_in_flight.saturating_sub(1);
                    self.push_other(self.now, K_JOIN, 0);
                }
                self.scribe_on_ready(i);
            }
            Event::JoinFailed => {
                self.joins.failed += 1;
                self.kill(i, false);
                if self.phase == Phase::Build {
                    self.joins_in_flight = self.joins_in_flight.saturating_sub(1);
                    self.push_other(self.now, K_JOIN, 0);
                }
                let faults = self.opts.loss > 0.0
                    || self.opts.broken_links > 0.0
                    || self.opts.partition.is_some()
                    || self.opts.churn.is_some()
                    || self.opts.fail_fraction.is_some();
                if !faults {
                    self.problem(format!(
                        "node {i} failed to join at {:.3} s",
                        self.now as f64 / 1e6
                    ));
                }
            }
            Event::Delivered(d) => self.on_delivered(i, d),
            Event::Application { app, value } => {
                self.past_on_event(i, value.as_ref());
                self.scribe_on_event(i, app, value.as_ref());
            }
            Event::RouteFailed {
                request,
                origin,
                reason,
                key,
            } => {
                if request == 0 {
                    return; // a join request, retried by the joiner
                }
                if let Some(rec) = self.outstanding.remove(&(origin.addr, request)) {
                    self.lookups.failed += 1;
                    self.note_bad_lookup(rec.at);
                    self.write_lookup(key, origin.addr, None, 0, 0.0, 0.0);
                }
                if reason == RouteFailure::TooManyHops {
                    self.checks.looped += 1;
                    if self.disrupted() {
                        self.checks.expected_looped += 1;
                    }
                }
            }
            _ => {}
        }
    }

    fn on_delivered(&mut self, i: u32, d: pastry_core::Delivery<u32>) {
        let origin = d.origin.addr;
        let Some(rec) = self.outstanding.remove(&(origin, d.request)) else {
            // A repeat is checked too: a copy that wandered (reroutes after lost acks)
            // and was delivered at another node broke consistent routing as much as a
            // wrong first delivery.
            self.lookups.duplicates += 1;
            let expected = self.closest_ready(d.key);
            if expected != Some(i) {
                self.violation(i, d.key, expected);
            }
            return;
        };
        debug_assert_eq!(rec.key, d.key);
        self.lookups.delivered += 1;
        let expected = self.closest_ready(d.key);
        if expected == Some(i) {
            self.lookups.correct += 1;
        } else {
            self.lookups.wrong += 1;
            self.note_bad_lookup(rec.at);
            self.violation(i, d.key, expected);
        }
        let h = usize::from(d.hops);
        if self.lookups.hops_histogram.len() <= h {
            self.lookups.hops_histogram.resize(h + 1, 0);
        }
        self.lookups.hops_histogram[h] += 1;
        let latency = self.now - rec.at;
        let direct = self.topo.latency_us(origin, i);
        if d.hops > 0 && direct > 0 {
            self.rdp.push((latency as f64 / direct as f64) as f32);
            self.rdp_sums.0 += latency as f64;
            self.rdp_sums.1 += direct as f64;
        }
        self.write_lookup(
            d.key,
            origin,
            Some(i),
            d.hops,
            latency as f64 / 1000.0,
            direct as f64 / 1000.0,
        );
    }

    /// From a partition's start on (its aftermath included).
    fn in_partition_aftermath(&self) -> bool {
        self.part_times.is_some_and(|(s, _)| self.now >= s)
    }

    /// True where the checkers expect violations: under message loss, from a partition on,
    /// and between a mass failure and the leaf sets' recovery.
    fn disrupted(&self) -> bool {
        let recovering = self.fail_time.is_some() && self.checking_since.is_some();
        self.opts.loss > 0.0 || self.in_partition_aftermath() || recovering
    }

    fn note_bad_lookup(&mut self, issued: u64) {
        if let Some(f) = self.fail_time
            && issued >= f
        {
            if let Some(fr) = self.failure.as_mut() {
                fr.bad_lookups_after += 1;
            }
            self.last_bad_after_fail = Some(self.last_bad_after_fail.unwrap_or(0).max(issued));
        }
    }

    fn violation(&mut self, at: u32, key: NodeId, expected: Option<u32>) {
        self.checks.violations += 1;
        let in_partition = self.in_partition_aftermath();
        if let Some(pr) = self.part_report.as_mut()
            && in_partition
        {
            if self.partitioned {
                pr.violations_during += 1;
            } else {
                pr.violations_after += 1;
            }
        }
        if self.disrupted() {
            self.checks.expected_violations += 1;
        } else if self.violation_examples.len() < 3 {
            self.violation_examples.push(format!(
                "key {:032x} delivered at node {at} at {:.6} s, closest live ready node is {:?}",
                key.as_u128(),
                self.now as f64 / 1e6,
                expected
            ));
        }
    }

    fn problem(&mut self, p: String) {
        if self.checks.problems.len() < 20 {
            self.checks.problems.push(p);
        }
    }

    fn write_lookup(
        &mut self,
        key: NodeId,
        origin: u32,
        root: Option<u32>,
        hops: u8,
        latency_ms: f64,
        direct_ms: f64,
    ) {
        let Some(w) = self.trace.as_mut() else { return };
        if self.trace_err.is_some() {
            return;
        }
        let oid = self.nodes[origin as usize].id().as_u128();
        let r = match root {
            Some(r) => {
                let rid = self.nodes[r as usize].id().as_u128();
                writeln!(
                    w,
                    "{{\"type\":\"lookup\",\"key\":\"{:032x}\",\"origin\":\"{oid:032x}\",\
                     \"root\":\"{rid:032x}\",\"hops\":{hops},\"latency_ms\":{latency_ms:.3},\
                     \"direct_ms\":{direct_ms:.3}}}",
                    key.as_u128()
                )
            }
            None => writeln!(
                w,
                "{{\"type\":\"lookup\",\"key\":\"{:032x}\",\"origin\":\"{oid:032x}\",\
                 \"root\":null,\"hops\":null,\"latency_ms\":null,\"direct_ms\":null}}",
                key.as_u128()
            ),
        };
        if let Err(e) = r {
            self.trace_err = Some(e);
        }
    }

    // ---- phases ----

    fn build(&mut self) {
        self.rss_before_build = proc_status_bytes("VmRSS:");
        self.set_phase(Phase::Build);
        let first = self.add_node();
        self.nodes[first as usize].start_ring(Instant::ZERO);
        self.flush(first);
        let total = self.opts.nodes as u64 - 1;
        self.joins_to_start = total;
        let k = self.concurrency;
        for _ in 0..k {
            self.push_other(0, K_JOIN, 0);
        }
        // Bounded: a join that never finishes is retried and finally fails within
        // join_attempts * join_timeout plus its probes; allow generously more.
        let per_join = us(self.cfg.join_timeout) * u64::from(self.cfg.join_attempts) + 60_000_000;
        let deadline = per_join.saturating_mul(self.opts.nodes as u64 / k as u64 + 2) + 600_000_000;
        while (self.joins.completed + self.joins.failed) < total
            && self.now < deadline
            && self.step()
        {}
        if self.joins.completed + self.joins.failed < total {
            self.problem(format!(
                "ring build stalled: {} of {total} joins finished",
                self.joins.completed + self.joins.failed,
            ));
        }
        self.joins.build_sim_s = self.now as f64 / 1e6;
        self.joins.mean_join_ms = if self.joins.completed == 0 {
            0.0
        } else {
            self.join_time_total as f64 / self.joins.completed as f64 / 1000.0
        };
        self.joins.messages_per_join = if self.joins.completed == 0 {
            0.0
        } else {
            (self.build_msgs - self.build_heartbeats) as f64 / self.joins.completed as f64
        };
        self.joins.by_kind = MessageKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), self.build_kinds[*k as usize - 1]))
            .collect();
    }

    fn measure(&mut self) {
        self.account_live();
        self.measure_start = self.now;
        self.measure_end = self.now + us(self.opts.duration);
        self.set_phase(Phase::Measure);
        self.live_since = self.now;
        let start = self.now;
        if self.opts.lookups > 0 {
            self.lookup_interval = us(self.opts.duration) as f64 / self.opts.lookups as f64;
            self.push_other(start, K_LOOKUP, 0);
        }
        match self.opts.churn.clone() {
            Some(Churn::Sessions { mean, dist, .. }) => {
                let live: Vec<u32> = (0..self.nodes.len() as u32)
                    .filter(|&i| self.slots[i as usize].alive)
                    .collect();
                for i in live {
                    let s = dist.draw(&mut self.rng_churn, mean);
                    self.push_other(start + us(s), K_SESSION_END, i);
                }
                let rate = self.opts.nodes as f64 / mean.as_secs_f64();
                let gap = exp_gap(&mut self.rng_churn, rate);
                self.push_other(start + us(gap), K_ARRIVAL, 0);
            }
            Some(Churn::Trace(events)) => {
                if let Some(e) = events.first() {
                    self.push_other(start + us(e.at), K_TRACE, 0);
                }
            }
            None => {}
        }
        if let Some(f) = self.opts.fail_fraction {
            let at = start + us(self.opts.fail_at);
            self.push_other(at, K_FAIL, 0);
            self.failure = Some(FailureReport {
                at_s: at as f64 / 1e6,
                ..FailureReport::default()
            });
            let _ = f;
        }
        if let Some(p) = self.opts.partition {
            let (s, e) = (start + us(p.start), start + us(p.start) + us(p.length));
            self.part_times = Some((s, e));
            self.part_report = Some(PartitionReport {
                start_s: s as f64 / 1e6,
                heal_s: e as f64 / 1e6,
                ..PartitionReport::default()
            });
            self.push_other(s, K_PART_START, 0);
            self.push_other(e, K_PART_END, 0);
        }
        self.past_measure_start();
        self.scribe_measure_start();
        let end = self.measure_end;
        self.run_until(end);
        self.account_live();
        self.past_measure_end();
        self.scribe_measure_end();
    }

    fn on_workload(&mut self, kind: u8, arg: u32) {
        let now = self.now;
        let measuring = self.phase == Phase::Measure && now < self.measure_end;
        match kind {
            K_JOIN
                if self.phase == Phase::Build
                    && self.joins_to_start > 0
                    && self.joins_in_flight < self.concurrency =>
            {
                self.joins_to_start -= 1;
                self.joins_in_flight += 1;
                self.start_join();
            }
            K_LOOKUP => {
                if !measuring || self.lookups_issued >= self.opts.lookups {
                    return;
                }
                self.issue_lookup();
                self.lookups_issued += 1;
                let next =
                    self.measure_start + (self.lookups_issued as f64 * self.lookup_interval) as u64;
                if self.lookups_issued < self.opts.lookups {
                    self.push_other(next.max(now), K_LOOKUP, 0);
                }
            }
            K_ARRIVAL => {
                if !measuring {
                    return;
                }
                if let Some(Churn::Sessions { mean, dist, .. }) = self.opts.churn.clone() {
                    if let Some(i) = self.start_join() {
                        let s = dist.draw(&mut self.rng_churn, mean);
                        self.push_other(now + us(s), K_SESSION_END, i);
                    }
                    let rate = self.opts.nodes as f64 / mean.as_secs_f64();
                    let gap = exp_gap(&mut self.rng_churn, rate);
                    self.push_other(now + us(gap), K_ARRIVAL, 0);
                }
            }
            K_SESSION_END => {
                if !measuring {
                    return;
                }
                if let Some(Churn::Sessions { graceful, .. }) = self.opts.churn {
                    let g = self.rng_churn.unit() < graceful;
                    self.kill(arg, g);
                }
            }
            K_TRACE => {
                let Some(Churn::Trace(events)) = &self.opts.churn else {
                    return;
                };
                let idx = arg as usize;
                let Some(e) = events.get(idx).copied() else {
                    return;
                };
                let next = events.get(idx + 1).map(|n| n.at);
                if measuring {
                    match e.action {
                        TraceAction::Join => {
                            if let Some(i) = self.start_join() {
                                debug_assert_eq!(self.trace_ids.len(), e.node as usize);
                                self.trace_ids.push(i);
                            }
                        }
                        TraceAction::Leave | TraceAction::Crash => {
                            if let Some(&i) = self.trace_ids.get(e.node as usize) {
                                self.kill(i, e.action == TraceAction::Leave);
                            }
                        }
                    }
                    if let Some(at) = next {
                        self.push_other(self.measure_start + us(at), K_TRACE, arg + 1);
                    }
                }
            }
            K_FAIL => {
                let f = self.opts.fail_fraction.unwrap_or(0.0);
                let mut live: Vec<u32> = self.ready_list.clone();
                live.sort_unstable();
                let k = (live.len() as f64 * f).round() as usize;
                for j in 0..k {
                    let r = j + self.rng_work.below((live.len() - j) as u64) as usize;
                    live.swap(j, r);
                    self.kill(live[j], false);
                }
                self.fail_time = Some(now);
                if let Some(fr) = self.failure.as_mut() {
                    fr.failed_nodes = k as u64;
                }
                self.checking_since = Some(now);
                self.push_other(now + 1_000_000, K_CHECK, 0);
                self.past_on_failure();
            }
            K_PAST_LOOKUP => self.past_lookup_tick(),
            K_SCRIBE_PUBLISH => self.scribe_publish_tick(),
            K_SS_BLOCK => self.split_block_tick(),
            K_PAST_CHECK => self.past_check(),
            K_PART_START => self.partitioned = true,
            K_PART_END => {
                self.partitioned = false;
                self.checking_since = Some(now);
                self.push_other(now + 1_000_000, K_CHECK, 0);
            }
            K_CHECK => {
                let Some(since) = self.checking_since else {
                    return;
                };
                let (_, wrong, _) = self.check_leaf_sets(0);
                if wrong == 0 {
                    let secs = (now - since) as f64 / 1e6;
                    if self.partitioned || self.part_times.is_some_and(|(_, e)| since >= e) {
                        if let Some(pr) = self.part_report.as_mut() {
                            pr.leaf_sets_merged_s = Some(secs);
                        }
                    } else if let Some(fr) = self.failure.as_mut() {
                        fr.leaf_sets_recovered_s = Some(secs);
                    }
                    self.checking_since = None;
                } else {
                    self.push_other(now + 1_000_000, K_CHECK, 0);
                }
            }
            _ => {}
        }
    }

    fn issue_lookup(&mut self) {
        let Some(i) = self.random_ready() else {
            return;
        };
        let key = NodeId::from_u128(
            (u128::from(self.rng_work.next_u64()) << 64) | u128::from(self.rng_work.next_u64()),
        );
        let req = RouteRequest {
            key,
            app: 0,
            data: Bytes::new(),
            hint: None,
            trace: false,
        };
        let now = Instant::from_micros(self.now);
        if let Ok(r) = self.nodes[i as usize].route_with(now, req) {
            self.lookups.issued += 1;
            self.outstanding
                .insert((i, r), LookupRec { key, at: self.now });
            self.flush(i);
        }
    }

    /// Compares every live node's leaf set with its true neighbours among the live ready
    /// nodes; returns (checked, wrong, up to `examples` descriptions).
    fn check_leaf_sets(&self, examples: usize) -> (u64, u64, Vec<String>) {
        let ids: Vec<NodeId> = self.ready.keys().copied().collect();
        let n = ids.len();
        let half = self.cfg.leaf_set_size / 2;
        let others = n.saturating_sub(1).min(half);
        let mut wrong = 0u64;
        let mut checked = 0u64;
        let mut ex = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !self.slots[i].alive {
                continue;
            }
            checked += 1;
            if node.state() != NodeState::Ready {
                wrong += 1;
                if ex.len() < examples {
                    ex.push(format!("node {i} is {:?}", node.state()));
                }
                continue;
            }
            let Ok(pos) = ids.binary_search(&node.id()) else {
                wrong += 1;
                continue;
            };
            let ls = node.leaf_set();
            let (r, l) = (ls.side(Side::Right), ls.side(Side::Left));
            let ok = r.len() == others
                && l.len() == others
                && (1..=others).all(|k| {
                    r[k - 1].handle.id == ids[(pos + k) % n]
                        && l[k - 1].handle.id == ids[(pos + n - k) % n]
                });
            if !ok {
                wrong += 1;
                if ex.len() < examples {
                    // The first place where either side differs from the true ring.
                    let diff = (1..=others).find_map(|k| {
                        let want = (ids[(pos + k) % n], ids[(pos + n - k) % n]);
                        let have = (
                            r.get(k - 1).map(|m| m.handle.id),
                            l.get(k - 1).map(|m| m.handle.id),
                        );
                        if have.0 != Some(want.0) {
                            Some(("right", k, have.0, want.0))
                        } else if have.1 != Some(want.1) {
                            Some(("left", k, have.1, want.1))
                        } else {
                            None
                        }
                    });
                    ex.push(format!(
                        "node {i} {:032x}: left {} right {} members, expected {others} each; \
                         first difference {:?} (side, position, has, want)",
                        node.id().as_u128(),
                        l.len(),
                        r.len(),
                        diff
                    ));
                }
            }
        }
        (checked, wrong, ex)
    }

    /// Final checks and the report.
    ///
    /// # Errors
    /// Only when writing the trace fails.
    pub fn finish(mut self) -> anyhow::Result<Report> {
        // Lookups never resolved.
        let mut lost: Vec<(u32, u64, NodeId, u64)> = self
            .outstanding
            .drain()
            .map(|((o, r), rec)| (o, r, rec.key, rec.at))
            .collect();
        lost.sort_unstable_by_key(|x| (x.0, x.1));
        self.lookups.lost = lost.len() as u64;
        for &(o, _, key, at) in &lost {
            self.note_bad_lookup(at);
            self.write_lookup(key, o, None, 0, 0.0, 0.0);
        }
        let (checked, wrong, ex) = self.check_leaf_sets(3);
        self.checks.leaf_sets_checked = checked;
        self.checks.leaf_sets_wrong = wrong;
        self.checks.leaf_set_examples = ex;
        if let Some(fr) = self.failure.as_mut() {
            let f = self.fail_time.unwrap_or(0);
            fr.lookups_correct_after_s = Some(
                self.last_bad_after_fail
                    .map_or(0.0, |t| (t.saturating_sub(f)) as f64 / 1e6),
            );
        }
        // Which findings make the run fail.
        let clean = self.opts.loss == 0.0 && self.opts.partition.is_none();
        self.checks.expect_clean = clean;
        let unexpected = self.checks.violations - self.checks.expected_violations;
        if clean && unexpected > 0 {
            let ex = self.violation_examples.join("; ");
            self.problem(format!(
                "{unexpected} deliveries at a wrong node, e.g. {ex}"
            ));
        }
        if self.checks.looped > self.checks.expected_looped {
            let n = self.checks.looped - self.checks.expected_looped;
            self.problem(format!("{n} lookups looped (TooManyHops)"));
        }
        let churny = self.opts.churn.is_some() || self.opts.fail_fraction.is_some();
        if clean && !churny && self.lookups.lost + self.lookups.failed > 0 {
            let (l, f) = (self.lookups.lost, self.lookups.failed);
            self.problem(format!(
                "{l} lookups never terminated and {f} failed in a run without faults"
            ));
        }
        if clean && wrong > 0 {
            let e = self.checks.leaf_set_examples.join("; ");
            self.problem(format!(
                "{wrong} of {checked} leaf sets differ from the true neighbours at the end: {e}"
            ));
        }
        if let Some(e) = self.trace_err.take() {
            return Err(anyhow::anyhow!("writing the trace: {e}"));
        }
        // Node lines for the trace.
        if self.trace.is_some() {
            let ids: Vec<u128> = self.ready.keys().map(|id| id.as_u128()).collect();
            if let Some(w) = self.trace.as_mut() {
                for id in ids {
                    writeln!(w, "{{\"type\":\"node\",\"id\":\"{id:032x}\"}}")
                        .map_err(|e| anyhow::anyhow!("writing the trace: {e}"))?;
                }
                w.flush()
                    .map_err(|e| anyhow::anyhow!("writing the trace: {e}"))?;
            }
        }
        let mut rdp = std::mem::take(&mut self.rdp);
        self.lookups.finish(&mut rdp, self.rdp_sums);
        self.lookups.hop_latency_ms = self
            .hop_latency
            .iter()
            .take_while(|&&(_, n)| n > 0)
            .map(|&(us, n)| us as f64 / n as f64 / 1000.0)
            .collect();
        let wall = self.wall_start.elapsed().as_secs_f64();
        let node_s = self.node_seconds.max(1e-9);
        let by_kind = MessageKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), self.window_msgs[*k as usize - 1]))
            .collect();
        let (mut probes_rescued, mut relayed_hops) = (0, 0);
        for (n, slot) in self.nodes.iter().zip(&self.slots) {
            if slot.alive {
                probes_rescued += n.stats().probes_rescued;
                relayed_hops += n.stats().relayed_hops;
            }
        }
        let past = self.past_finish(node_s);
        let (scribe, splitstream) = self.scribe_finish(node_s);
        let live = self.ready_list.len();
        let rt_entries: usize = self
            .ready_list
            .iter()
            .map(|&i| self.nodes[i as usize].routing_table().len())
            .sum();
        Ok(Report {
            seed: self.opts.seed,
            topology: self.opts.topology.to_string(),
            b: self.cfg.b,
            leaf_set: self.cfg.leaf_set_size,
            nodes: self.opts.nodes,
            live_nodes: live,
            joins: self.joins.clone(),
            lookups: self.lookups.clone(),
            traffic: TrafficReport {
                window_s: (self.measure_end - self.measure_start) as f64 / 1e6,
                control_msgs_per_node_s: self.window_ctl_msgs as f64 / node_s,
                control_bytes_per_node_s: self.window_ctl_bytes as f64 / node_s,
                lookup_msgs_per_node_s: self.window_lookup_msgs as f64 / node_s,
                by_kind,
                dropped: self.dropped,
                to_dead: self.to_dead,
                probes_rescued,
                relayed_hops,
            },
            checks: self.checks.clone(),
            failure: self.failure.clone(),
            partition: self.part_report.clone(),
            past,
            scribe,
            splitstream,
            perf: PerfReport {
                events: self.events,
                events_per_s: self.events as f64 / wall.max(1e-9),
                wall_s: wall,
                sim_s: self.now as f64 / 1e6,
                peak_rss_bytes: proc_status_bytes("VmHWM:"),
                bytes_per_node: self.bytes_per_node,
                mean_routing_table_entries: if live == 0 {
                    0.0
                } else {
                    rt_entries as f64 / live as f64
                },
            },
            trace_hash: format!("{:016x}", self.hash.0),
            rdp_samples: rdp,
            traffic_series: std::mem::take(&mut self.series),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{SimOptions, Simulation, ring_cells};
    use pastry_core::{Delivery, NodeId};
    use std::time::Duration;

    #[test]
    fn a_repeat_delivery_at_another_node_is_a_violation() {
        let mut sim = Simulation::new(SimOptions {
            nodes: 30,
            lookups: 0,
            duration: Duration::from_secs(5),
            ..SimOptions::default()
        })
        .unwrap();
        sim.run_phases();
        let key = NodeId::from_u128(0x1234 << 100);
        let root = sim.closest_ready(key).expect("a ready ring");
        let other = (0..30).find(|&i| i != root).unwrap();
        let d = Delivery {
            key,
            app: 0,
            data: bytes::Bytes::new(),
            origin: sim.nodes[other as usize].handle(),
            request: 77,
            hops: 2,
            path: Vec::new(),
        };
        // Not outstanding (delivered before): a repeat at the root is only a duplicate...
        sim.on_delivered(root, d.clone());
        assert_eq!((sim.lookups.duplicates, sim.checks.violations), (1, 0));
        // ...one at another node broke consistent routing.
        sim.on_delivered(other, d);
        assert_eq!((sim.lookups.duplicates, sim.checks.violations), (2, 1));
    }

    #[test]
    fn rings_partition_the_grid_by_chebyshev_distance() {
        for side in [1, 2, 5, 8] {
            for (cx, cy) in [
                (0, 0),
                (side - 1, 0),
                (side / 2, side / 2),
                (1 % side, side - 1),
            ] {
                let mut seen = vec![0u32; side * side];
                for r in 0..side {
                    for (x, y) in ring_cells(cx, cy, r, side) {
                        assert!(x < side && y < side);
                        assert_eq!(
                            x.abs_diff(cx).max(y.abs_diff(cy)),
                            r,
                            "({x}, {y}) in ring {r}"
                        );
                        seen[y * side + x] += 1;
                    }
                }
                assert!(
                    seen.iter().all(|&n| n == 1),
                    "side {side} at ({cx}, {cy}): {seen:?}"
                );
            }
        }
    }
}
