//! The Scribe and SplitStream workloads: a [`pastry_scribe::Scribe`] and/or a
//! [`pastry_scribe::SplitStream`] on every node, groups formed after the build, messages
//! (Scribe) or a steady stream of blocks (SplitStream) during the measurement phase.
//!
//! **Scribe** (`--scribe-topics T`):
//! - group sizes follow the Scribe paper's Zipf-like law: the group of rank r (1..=T) has
//!   `round(max * r^-1.25)` members, clamped to `[min, max]`, `max` capped at the ring size;
//!   members are distinct random ready nodes;
//! - at the start of the settle phase every member subscribes; the settle phase lasts until
//!   every membership is attached to its tree (bounded by [`ATTACH_BOUND`]), then for the
//!   settle time again;
//! - under churn a joining node subscribes, once ready, to each topic with probability
//!   size / ring size (so group sizes stay about constant); members that leave or crash stop
//!   being members;
//! - during the measurement phase `messages` publications, evenly spread, topic `j mod T`,
//!   each from a random ready node.
//!
//! A member is *expected* to receive a message when its subscription was acknowledged
//! (Scribe reported `Subscribed`) before the message was published and it stays alive until
//! [`DELIVERY_WINDOW`] after the publication. The delivery ratio is the share of expected
//! (member, message) pairs that were delivered at least once by the end of the run.
//! The root's dissemination time of a message is the instant the first `Data` frame of it
//! is sent (or the root delivers it locally); the delivery RDP of a member is the delivery
//! time from that instant over the direct one-way latency root -> member.
//!
//! **SplitStream** (`--splitstream`): one channel, S stripes, every node subscribes to all
//! of them at the start of the settle phase (which lasts until every node is attached to
//! every stripe, bounded); one source (a random node, replaced by another one if it crashes)
//! publishes a block of S parts every `block_interval` during the measurement phase. Each
//! node's received stripes per block are recorded from the `StripeData` events.
//!
//! Nothing here touches a run without these workloads: same events, same trace hash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use pastry_core::rng::Rng;
use pastry_core::{AppId, Body, Instant, Message, NodeId};
use pastry_scribe::wire::{HEADER_LEN, MsgType};
use pastry_scribe::{
    Scribe, ScribeConfig, ScribeEvent, SplitStream, SplitStreamConfig, SplitStreamEvent, TopicId,
    topic_id,
};

use super::{K_SCRIBE_PUBLISH, K_SS_BLOCK, Phase, Simulation, us};
use crate::links::{LinkId, LinkMap};
use crate::net::Topology;
use crate::report::{
    ForestReport, LinkStress, Rdp, ScribeReport, SplitStreamFailureReport, SplitStreamReport,
};

/// Application id Scribe is registered under on every simulated node.
pub const SCRIBE_APP: AppId = 2;
/// Application id SplitStream is registered under on every simulated node.
pub const SPLITSTREAM_APP: AppId = 3;

/// How long after its publication a message may take to arrive: a member alive until then
/// is expected to receive it (three publish attempts of 3 s, plus routing).
pub const DELIVERY_WINDOW: Duration = Duration::from_secs(10);

/// SplitStream blocks published at least this long before a mass failure count as "before
/// the failure" (a part crosses its tree in well under a second).
pub const SPLIT_WINDOW: Duration = Duration::from_secs(2);

/// Longest the settle phase waits for subscriptions to attach.
pub const ATTACH_BOUND: Duration = Duration::from_secs(600);

/// Most SplitStream blocks a run may publish (the per-node stripe masks are kept).
pub const MAX_BLOCKS: u64 = 20_000;

/// Bytes of each Scribe message.
const SCRIBE_PAYLOAD: usize = 64;

/// The Scribe workload of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ScribeWorkload {
    /// Topics (groups).
    pub topics: u32,
    /// Smallest group.
    pub min_group: usize,
    /// Largest group (capped at the ring size).
    pub max_group: usize,
    /// Publications during the measurement phase, evenly spread, topic `j mod topics`.
    pub messages: u64,
    /// A parent's heartbeat to an idle child (Scribe's `heartbeat_interval`).
    pub heartbeat: Duration,
    /// A child that hears nothing from its parent this long subscribes again (Scribe's
    /// `parent_timeout`).
    pub parent_timeout: Duration,
}

impl Default for ScribeWorkload {
    fn default() -> Self {
        ScribeWorkload {
            topics: 100,
            min_group: 10,
            max_group: 5000,
            messages: 300,
            heartbeat: ScribeConfig::default().heartbeat_interval,
            parent_timeout: ScribeConfig::default().parent_timeout,
        }
    }
}

impl ScribeWorkload {
    /// Group size of each topic (rank order) on a ring of `ring` nodes: the Scribe paper's
    /// Zipf-like `round(max * rank^-1.25)`, clamped to `[min, max]`, `max` at most `ring`.
    pub fn group_sizes(&self, ring: usize) -> Vec<usize> {
        let max = self.max_group.min(ring).max(1);
        let min = self.min_group.clamp(1, max);
        (1..=self.topics)
            .map(|r| {
                let s = (max as f64 * f64::from(r).powf(-1.25)).round() as usize;
                s.clamp(min, max)
            })
            .collect()
    }

    /// The Scribe configuration every node runs with (before its seed is set).
    ///
    /// # Errors
    /// Out-of-range values.
    pub fn config(&self) -> anyhow::Result<ScribeConfig> {
        self.validate()?;
        let cfg = ScribeConfig {
            heartbeat_interval: self.heartbeat,
            parent_timeout: self.parent_timeout,
            ..ScribeConfig::default()
        };
        cfg.validate().map_err(|e| {
            anyhow::anyhow!("{e} (from --scribe-heartbeat / --scribe-parent-timeout)")
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.topics == 0 || self.topics > 100_000 {
            anyhow::bail!("--scribe-topics must be in 1..=100000, got {}", self.topics);
        }
        if self.min_group == 0 || self.min_group > self.max_group {
            anyhow::bail!(
                "--scribe-min-group must be in 1..=--scribe-max-group, got {} and {}",
                self.min_group,
                self.max_group
            );
        }
        if self.messages > 10_000_000 {
            anyhow::bail!("--scribe-messages must be at most 10,000,000");
        }
        Ok(())
    }
}

/// The SplitStream workload of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitStreamWorkload {
    /// Stripes S (a power of two, 2..=64 here).
    pub stripes: usize,
    /// Outgoing capacity of every node, in stripes.
    pub capacity: usize,
    /// Time between two blocks of the source.
    pub block_interval: Duration,
    /// Bytes per block (split into S parts).
    pub block_size: usize,
    /// The embedded Scribe's heartbeat to an idle child.
    pub heartbeat: Duration,
    /// The embedded Scribe's parent timeout.
    pub parent_timeout: Duration,
    /// Nodes a push-down or spare-capacity anycast visits at most (the embedded Scribe's
    /// `max_search_visits`). Default 256, Scribe's wire maximum, not Scribe's 64: with
    /// capacity = S the forest has only about S free slots in all, and a search of 64 nodes
    /// left 0.8% (1,000 nodes) to 2.6% (3,000 nodes) of the nodes without some stripe.
    pub search_visits: usize,
}

impl Default for SplitStreamWorkload {
    fn default() -> Self {
        SplitStreamWorkload {
            stripes: 16,
            capacity: 16,
            block_interval: Duration::from_secs(1),
            block_size: 1024,
            search_visits: pastry_scribe::wire::MAX_VISIT,
            heartbeat: ScribeConfig::default().heartbeat_interval,
            parent_timeout: ScribeConfig::default().parent_timeout,
        }
    }
}

impl SplitStreamWorkload {
    /// The SplitStream configuration every node runs with (before its seed is set).
    ///
    /// # Errors
    /// Out-of-range stripes, capacity or block size.
    pub fn config(&self) -> anyhow::Result<SplitStreamConfig> {
        if !self.stripes.is_power_of_two() || !(2..=64).contains(&self.stripes) {
            anyhow::bail!(
                "--splitstream-stripes must be a power of two in 2..=64, got {}",
                self.stripes
            );
        }
        if self.block_interval.is_zero() {
            anyhow::bail!("--splitstream-block-interval must be positive");
        }
        if self.block_size < self.stripes || self.block_size > 1 << 20 {
            anyhow::bail!(
                "the block size must be in {}..=1048576, got {}",
                self.stripes,
                self.block_size
            );
        }
        let cfg = SplitStreamConfig {
            stripes: self.stripes,
            capacity: self.capacity,
            scribe: ScribeConfig {
                heartbeat_interval: self.heartbeat,
                parent_timeout: self.parent_timeout,
                max_search_visits: self.search_visits,
                ..ScribeConfig::default()
            },
            ..SplitStreamConfig::default()
        };
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("{e} (from the --splitstream-* flags)"))?;
        Ok(cfg)
    }
}

/// One published Scribe message.
#[derive(Debug)]
struct ScribeMsg {
    topic: u32,
    at: u64,
    /// Members attached when it was published.
    expected: Vec<u32>,
    /// Members it reached.
    got: BTreeSet<u32>,
    /// The root (first sender of its data) and when it sent it.
    root: Option<(u32, u64)>,
    failed: bool,
    /// Copies of its data frames per physical link (plane and sphere models).
    links: HashMap<LinkId, u32>,
}

#[derive(Debug)]
struct ScribeState {
    w: ScribeWorkload,
    cfg: ScribeConfig,
    sizes: Vec<usize>,
    ids: Vec<TopicId>,
    index: BTreeMap<TopicId, u32>,
    /// Per topic: current members (subscribed, alive) and those attached at least once.
    members: Vec<BTreeSet<u32>>,
    attached: Vec<BTreeSet<u32>>,
    /// Per node: topics it is a member of.
    node_topics: Vec<Vec<u32>>,
    /// Memberships not attached yet (for the settle wait).
    unattached: u64,
    msgs: Vec<ScribeMsg>,
    by_key: BTreeMap<(NodeId, u64), u32>,
    issued: u64,
    interval: f64,
    duplicates: u64,
    rdp: Vec<f32>,
    rdp_sums: (f64, f64),
    /// First deliveries that came by replay (not in the RDP).
    replayed: u64,
    /// The router network link stress is counted on (none for a matrix).
    link_map: Option<LinkMap>,
    /// Link ids of one path (reused).
    path: Vec<LinkId>,
    joiner_subscriptions: u64,
    /// Control (messages, bytes) and data messages of nodes no longer live.
    dead: (u64, u64, u64),
    at_start: (u64, u64, u64),
    at_end: (u64, u64, u64),
    report: ScribeReport,
}

#[derive(Debug)]
struct Block {
    at: u64,
    /// Per node index: bit s set when stripe s's part arrived.
    masks: Vec<u64>,
}

#[derive(Debug)]
struct SplitState {
    w: SplitStreamWorkload,
    cfg: SplitStreamConfig,
    channel: NodeId,
    source: Option<u32>,
    /// Nodes subscribed at the start of the settle phase.
    initial: Vec<bool>,
    attached: Vec<u64>,
    fully_attached: u64,
    blocks: Vec<Block>,
    by_key: BTreeMap<(NodeId, u64), u32>,
    duplicates: u64,
    max_blocks: u64,
    dead: (u64, u64, u64),
    at_start: (u64, u64, u64),
    at_end: (u64, u64, u64),
    report: SplitStreamReport,
}

/// The group-communication workloads' state during a run.
#[derive(Debug)]
pub(crate) struct GroupSim {
    rng: Rng,
    seed: u64,
    died: Vec<u64>,
    scribe: Option<ScribeState>,
    split: Option<SplitState>,
}

impl GroupSim {
    pub(crate) fn new(
        scribe: Option<ScribeWorkload>,
        split: Option<SplitStreamWorkload>,
        seed: u64,
        duration: Duration,
        nodes: usize,
        topo: &Topology,
    ) -> anyhow::Result<Option<GroupSim>> {
        if scribe.is_none() && split.is_none() {
            return Ok(None);
        }
        let scribe = match scribe {
            Some(w) => {
                let cfg = w.config()?;
                let sizes = w.group_sizes(nodes);
                let ids: Vec<TopicId> = (0..w.topics)
                    .map(|t| topic_id(&format!("sim-topic-{seed}-{t}")))
                    .collect();
                let index = ids
                    .iter()
                    .enumerate()
                    .map(|(i, &id)| (id, i as u32))
                    .collect();
                let n = w.topics as usize;
                Some(ScribeState {
                    report: ScribeReport {
                        topics: w.topics,
                        group_min: sizes.iter().copied().min().unwrap_or(0),
                        group_max: sizes.iter().copied().max().unwrap_or(0),
                        group_mean: sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64,
                        ..ScribeReport::default()
                    },
                    w,
                    cfg,
                    sizes,
                    ids,
                    index,
                    members: vec![BTreeSet::new(); n],
                    attached: vec![BTreeSet::new(); n],
                    node_topics: Vec::new(),
                    unattached: 0,
                    msgs: Vec::new(),
                    by_key: BTreeMap::new(),
                    issued: 0,
                    interval: 0.0,
                    duplicates: 0,
                    rdp: Vec::new(),
                    rdp_sums: (0.0, 0.0),
                    replayed: 0,
                    link_map: LinkMap::new(topo, seed),
                    path: Vec::new(),
                    joiner_subscriptions: 0,
                    dead: (0, 0, 0),
                    at_start: (0, 0, 0),
                    at_end: (0, 0, 0),
                })
            }
            None => None,
        };
        let split = match split {
            Some(w) => {
                let cfg = w.config()?;
                let max_blocks = (us(duration) / us(w.block_interval).max(1)).min(MAX_BLOCKS);
                if max_blocks.saturating_mul(nodes as u64) > 250_000_000 {
                    anyhow::bail!(
                        "SplitStream: {max_blocks} blocks x {nodes} nodes is too many stripe \
                         records; use a longer --splitstream-block-interval or a shorter --duration"
                    );
                }
                Some(SplitState {
                    channel: topic_id(&format!("sim-channel-{seed}")),
                    report: SplitStreamReport {
                        stripes: w.stripes,
                        capacity: w.capacity,
                        block_interval_s: w.block_interval.as_secs_f64(),
                        ..SplitStreamReport::default()
                    },
                    w,
                    cfg,
                    source: None,
                    initial: Vec::new(),
                    attached: Vec::new(),
                    fully_attached: 0,
                    blocks: Vec::new(),
                    by_key: BTreeMap::new(),
                    duplicates: 0,
                    max_blocks,
                    dead: (0, 0, 0),
                    at_start: (0, 0, 0),
                    at_end: (0, 0, 0),
                })
            }
            None => None,
        };
        Ok(Some(GroupSim {
            rng: super::stream(seed, 7),
            seed,
            died: Vec::new(),
            scribe,
            split,
        }))
    }

    /// Scribe's seed on node `i`.
    fn node_seed(&self, i: u32) -> u64 {
        let mut r =
            Rng::new(self.seed ^ 0x5c_1be0 ^ u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next_u64()
    }

    fn full_mask(&self) -> u64 {
        self.split.as_ref().map_or(0, |s| {
            if s.w.stripes >= 64 {
                u64::MAX
            } else {
                (1u64 << s.w.stripes) - 1
            }
        })
    }
}

fn add3(a: (u64, u64, u64), b: (u64, u64, u64)) -> (u64, u64, u64) {
    (a.0 + b.0, a.1 + b.1, a.2 + b.2)
}

fn sub3(a: (u64, u64, u64), b: (u64, u64, u64)) -> (u64, u64, u64) {
    (
        a.0.saturating_sub(b.0),
        a.1.saturating_sub(b.1),
        a.2.saturating_sub(b.2),
    )
}

fn quantiles(v: &mut [f32], sums: (f64, f64)) -> Rdp {
    v.sort_by(f32::total_cmp);
    let q = |p: f64| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        f64::from(v[((v.len() - 1) as f64 * p).round() as usize])
    };
    Rdp {
        mean: if v.is_empty() {
            0.0
        } else {
            v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
        },
        p50: q(0.5),
        p95: q(0.95),
        ratio_of_means: if sums.1 > 0.0 { sums.0 / sums.1 } else { 0.0 },
        samples: v.len() as u64,
    }
}

impl Simulation {
    /// Registers Scribe / SplitStream on a node just added (runs with those workloads only).
    pub(super) fn scribe_register(&mut self, i: u32) {
        let Some(g) = self.scribe.as_mut() else {
            return;
        };
        let seed = g.node_seed(i);
        let idx = i as usize;
        if g.died.len() <= idx {
            g.died.resize(idx + 1, u64::MAX);
        }
        if let Some(s) = g.scribe.as_mut() {
            if s.node_topics.len() <= idx {
                s.node_topics.resize(idx + 1, Vec::new());
            }
            let cfg = ScribeConfig {
                seed,
                ..s.cfg.clone()
            };
            if let Ok(app) = Scribe::<u32>::new(cfg) {
                let _ = self.nodes[idx].register(SCRIBE_APP, Box::new(app));
            }
        }
        if let Some(s) = g.split.as_mut() {
            if s.initial.len() <= idx {
                s.initial.resize(idx + 1, false);
                s.attached.resize(idx + 1, 0);
            }
            let mut cfg = s.cfg.clone();
            cfg.scribe.seed = seed ^ 0x5b;
            if let Ok(app) = SplitStream::<u32>::new(s.channel, cfg) {
                let _ = self.nodes[idx].register(SPLITSTREAM_APP, Box::new(app));
            }
        }
    }

    /// (control messages, control bytes, data messages) sent by node `i`'s Scribe and by
    /// its SplitStream's embedded Scribe.
    fn scribe_counters_of(&mut self, i: u32) -> ((u64, u64, u64), (u64, u64, u64)) {
        let now = Instant::from_micros(self.now);
        let n = &mut self.nodes[i as usize];
        let a = n
            .with_application::<Scribe<u32>, _>(now, SCRIBE_APP, |s, _| {
                let st = s.stats();
                (
                    st.control_messages_sent(),
                    st.control_bytes_sent(),
                    st.data_messages_sent(),
                )
            })
            .unwrap_or((0, 0, 0));
        let b = n
            .with_application::<SplitStream<u32>, _>(now, SPLITSTREAM_APP, |s, _| {
                let st = s.scribe().stats();
                (
                    st.control_messages_sent(),
                    st.control_bytes_sent(),
                    st.data_messages_sent(),
                )
            })
            .unwrap_or((0, 0, 0));
        (a, b)
    }

    fn scribe_counters_total(&mut self) -> ((u64, u64, u64), (u64, u64, u64)) {
        let Some(g) = self.scribe.as_ref() else {
            return ((0, 0, 0), (0, 0, 0));
        };
        let mut a = g.scribe.as_ref().map_or((0, 0, 0), |s| s.dead);
        let mut b = g.split.as_ref().map_or((0, 0, 0), |s| s.dead);
        for i in 0..self.nodes.len() as u32 {
            if self.slots[i as usize].alive {
                let (x, y) = self.scribe_counters_of(i);
                a = add3(a, x);
                b = add3(b, y);
            }
        }
        (a, b)
    }

    /// Node `i` is about to be replaced (crash, leave, failed join): keep its counters and
    /// drop its memberships.
    pub(super) fn scribe_on_kill(&mut self, i: u32) {
        if self.scribe.is_none() {
            return;
        }
        let (a, b) = self.scribe_counters_of(i);
        let now = self.now;
        let Some(g) = self.scribe.as_mut() else {
            return;
        };
        if let Some(d) = g.died.get_mut(i as usize) {
            *d = now;
        }
        if let Some(s) = g.scribe.as_mut() {
            s.dead = add3(s.dead, a);
            let topics = s
                .node_topics
                .get_mut(i as usize)
                .map(std::mem::take)
                .unwrap_or_default();
            for t in topics {
                s.members[t as usize].remove(&i);
                if !s.attached[t as usize].remove(&i) {
                    s.unattached = s.unattached.saturating_sub(1);
                }
            }
        }
        let full = g.full_mask();
        if let Some(s) = g.split.as_mut() {
            s.dead = add3(s.dead, b);
            if let Some(m) = s.attached.get_mut(i as usize) {
                if *m == full && s.initial[i as usize] {
                    s.fully_attached -= 1;
                }
                *m = 0;
            }
        }
    }

    /// Subscribes node `i` to topic `t` (Scribe).
    fn scribe_subscribe(&mut self, i: u32, t: u32) {
        let Some(s) = self.scribe.as_mut().and_then(|g| g.scribe.as_mut()) else {
            return;
        };
        if !s.members[t as usize].insert(i) {
            return;
        }
        s.node_topics[i as usize].push(t);
        s.unattached += 1;
        let topic = s.ids[t as usize];
        let now = Instant::from_micros(self.now);
        let _ = self.nodes[i as usize].with_application::<Scribe<u32>, _>(
            now,
            SCRIBE_APP,
            |sc, ctx| sc.subscribe(ctx, topic),
        );
        self.flush(i);
    }

    /// At the start of the settle phase: forms the groups, subscribes every member, and
    /// runs until every membership is attached (bounded by [`ATTACH_BOUND`]).
    pub(super) fn scribe_subscribe_all(&mut self) {
        let Some(g) = self.scribe.as_mut() else {
            return;
        };
        let start = self.now;
        let mut ready: Vec<u32> = self.ready_list.clone();
        ready.sort_unstable();
        // Scribe groups: distinct random ready nodes (Floyd's sampling).
        let mut plan: Vec<(u32, u32)> = Vec::new();
        if let Some(s) = g.scribe.as_ref() {
            for (t, &size) in s.sizes.iter().enumerate() {
                let n = ready.len();
                let k = size.min(n);
                let mut chosen: BTreeSet<usize> = BTreeSet::new();
                for j in n - k..n {
                    let r = g.rng.below(j as u64 + 1) as usize;
                    if !chosen.insert(r) {
                        chosen.insert(j);
                    }
                }
                plan.extend(chosen.into_iter().map(|x| (ready[x], t as u32)));
            }
        }
        let have_split = g.split.is_some();
        for (i, t) in plan {
            self.scribe_subscribe(i, t);
        }
        let memberships = self
            .scribe
            .as_ref()
            .and_then(|g| g.scribe.as_ref())
            .map_or(0, |s| s.unattached);
        if have_split {
            for &i in &ready {
                if let Some(s) = self.scribe.as_mut().and_then(|g| g.split.as_mut()) {
                    s.initial[i as usize] = true;
                }
                let now = Instant::from_micros(self.now);
                let _ = self.nodes[i as usize].with_application::<SplitStream<u32>, _>(
                    now,
                    SPLITSTREAM_APP,
                    |ss, ctx| ss.subscribe(ctx),
                );
                self.flush(i);
            }
        }
        let want = ready.len() as u64;
        let deadline = self.now + us(ATTACH_BOUND);
        let done = |g: &GroupSim| {
            g.scribe.as_ref().is_none_or(|s| s.unattached == 0)
                && g.split.as_ref().is_none_or(|s| s.fully_attached >= want)
        };
        while self.scribe.as_ref().is_some_and(|g| !done(g)) && self.now < deadline {
            match self.queue.peek() {
                Some(&(at, _, _)) if at <= deadline => {
                    self.step();
                }
                _ => break,
            }
        }
        let secs = (self.now - start) as f64 / 1e6;
        // Then the settle time again, quiet: the last adoptions' evictions and push-downs
        // finish before measuring.
        let quiet = self.now + us(self.opts.settle);
        self.run_until(quiet);
        let Some(g) = self.scribe.as_mut() else {
            return;
        };
        if let Some(s) = g.scribe.as_mut() {
            s.report.memberships = memberships;
            s.report.attached_at_settle = memberships.saturating_sub(s.unattached);
            s.report.attach_s = secs;
        }
        if let Some(s) = g.split.as_mut() {
            s.report.members = want;
            s.report.attached_at_settle = s.fully_attached;
            s.report.attach_s = secs;
        }
    }

    /// A node became ready: under churn (measurement phase), a Scribe joiner subscribes to
    /// each topic with probability size / ring size.
    pub(super) fn scribe_on_ready(&mut self, i: u32) {
        if self.phase != Phase::Measure {
            return;
        }
        let n = self.opts.nodes.max(1) as f64;
        let Some(g) = self.scribe.as_mut() else {
            return;
        };
        let mut picks = Vec::new();
        if let Some(s) = g.scribe.as_ref() {
            for (t, &size) in s.sizes.iter().enumerate() {
                if g.rng.unit() < size as f64 / n {
                    picks.push(t as u32);
                }
            }
        }
        if let Some(s) = g.scribe.as_mut() {
            s.joiner_subscriptions += picks.len() as u64;
        }
        for t in picks {
            self.scribe_subscribe(i, t);
        }
        // SplitStream: every node joins the channel (joiners are not counted as members).
        if self.scribe.as_ref().is_some_and(|g| g.split.is_some()) {
            let now = Instant::from_micros(self.now);
            let _ = self.nodes[i as usize].with_application::<SplitStream<u32>, _>(
                now,
                SPLITSTREAM_APP,
                |ss, ctx| ss.subscribe(ctx),
            );
            self.flush(i);
        }
    }

    /// Every frame a node sends: the first `Data` frame of a Scribe message marks its
    /// dissemination by the root; every one is counted on the links it crosses.
    pub(super) fn scribe_on_transmit(&mut self, from: u32, to: u32, msg: &Message<u32>) {
        let Body::Direct {
            app: SCRIBE_APP,
            data,
        } = &msg.body
        else {
            return;
        };
        // Data: header, topic (16), seq (8), publisher (16), id (8), payload.
        let p = HEADER_LEN + 16 + 8;
        if data.len() < p + 24 || data[3] != MsgType::Data as u8 {
            return;
        }
        let mut pub_id = [0u8; 16];
        pub_id.copy_from_slice(&data[p..p + 16]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&data[p + 16..p + 24]);
        let key = (NodeId::from_bytes(pub_id), u64::from_be_bytes(id));
        let now = self.now;
        let Some(s) = self.scribe.as_mut().and_then(|g| g.scribe.as_mut()) else {
            return;
        };
        if let Some(&m) = s.by_key.get(&key) {
            let m = &mut s.msgs[m as usize];
            if m.root.is_none() {
                m.root = Some((from, now));
            }
            if let Some(map) = s.link_map.as_mut() {
                s.path.clear();
                map.path(&self.topo, from, to, &mut s.path);
                count_links(&mut m.links, &s.path);
            }
        }
    }

    /// A [`ScribeEvent`] or [`SplitStreamEvent`] from node `i`.
    pub(super) fn scribe_on_event(&mut self, i: u32, app: AppId, value: &dyn std::any::Any) {
        if self.scribe.is_none() {
            return;
        }
        match app {
            SCRIBE_APP => {
                if let Some(ev) = value.downcast_ref::<ScribeEvent<u32>>() {
                    self.scribe_event(i, ev);
                }
            }
            SPLITSTREAM_APP => {
                if let Some(ev) = value.downcast_ref::<SplitStreamEvent>() {
                    self.split_event(i, ev);
                }
            }
            _ => {}
        }
    }

    fn scribe_event(&mut self, i: u32, ev: &ScribeEvent<u32>) {
        let now = self.now;
        let my_id = self.nodes[i as usize].id();
        let Some(s) = self.scribe.as_mut().and_then(|g| g.scribe.as_mut()) else {
            return;
        };
        match ev {
            ScribeEvent::Subscribed { topic, .. } => {
                if let Some(&t) = s.index.get(topic)
                    && s.members[t as usize].contains(&i)
                    && s.attached[t as usize].insert(i)
                {
                    s.unattached = s.unattached.saturating_sub(1);
                }
            }
            ScribeEvent::Delivered {
                publisher,
                id,
                replayed,
                ..
            } => {
                let Some(&m) = s.by_key.get(&(*publisher, *id)) else {
                    return;
                };
                let msg = &mut s.msgs[m as usize];
                if msg.root.is_none() {
                    msg.root = Some((i, now));
                }
                if !msg.got.insert(i) {
                    s.duplicates += 1;
                    return;
                }
                // A replayed copy's delay is how long the member was detached, not the
                // tree's: counted apart.
                if *replayed {
                    s.replayed += 1;
                    return;
                }
                if let Some((root, t0)) = msg.root
                    && root != i
                {
                    let direct = self.topo.latency_us(root, i);
                    if direct > 0 {
                        let lat = now.saturating_sub(t0);
                        if s.rdp.len() < 50_000_000 {
                            s.rdp.push((lat as f64 / direct as f64) as f32);
                        }
                        s.rdp_sums.0 += lat as f64;
                        s.rdp_sums.1 += direct as f64;
                    }
                }
            }
            ScribeEvent::PublishFailed { id, .. } => {
                if let Some(&m) = s.by_key.get(&(my_id, *id)) {
                    s.msgs[m as usize].failed = true;
                }
            }
            _ => {}
        }
    }

    fn split_event(&mut self, i: u32, ev: &SplitStreamEvent) {
        let Some(g) = self.scribe.as_mut() else {
            return;
        };
        let full = g.full_mask();
        let Some(s) = g.split.as_mut() else { return };
        let idx = i as usize;
        match ev {
            SplitStreamEvent::StripeData {
                stripe,
                publisher,
                block,
                ..
            } => {
                let Some(&b) = s.by_key.get(&(*publisher, *block)) else {
                    return;
                };
                let masks = &mut s.blocks[b as usize].masks;
                if masks.len() <= idx {
                    return; // joined after the block was published
                }
                let bit = 1u64 << *stripe;
                if masks[idx] & bit != 0 {
                    s.duplicates += 1;
                }
                masks[idx] |= bit;
            }
            SplitStreamEvent::StripeAttached { stripe } => {
                let m = &mut s.attached[idx];
                let was = *m == full;
                *m |= 1u64 << *stripe;
                if !was && *m == full && s.initial[idx] {
                    s.fully_attached += 1;
                }
            }
            SplitStreamEvent::StripeLost { stripe } => {
                let m = &mut s.attached[idx];
                if *m == full && s.initial[idx] {
                    s.fully_attached -= 1;
                }
                *m &= !(1u64 << *stripe);
            }
            _ => {}
        }
    }

    /// The start of the measurement phase: tree snapshots, traffic baselines, the first
    /// publication and block.
    pub(super) fn scribe_measure_start(&mut self) {
        if self.scribe.is_none() {
            return;
        }
        self.scribe_tree_stats();
        let forest = self.split_forest();
        let (a, b) = self.scribe_counters_total();
        let start = self.now;
        let duration = us(self.opts.duration);
        let mut src = None;
        if self.scribe.as_ref().is_some_and(|g| g.split.is_some()) {
            src = self.group_random_ready();
        }
        let Some(g) = self.scribe.as_mut() else {
            return;
        };
        let mut first_msg = false;
        if let Some(s) = g.scribe.as_mut() {
            s.at_start = a;
            if s.w.messages > 0 && duration > 0 {
                s.interval = duration as f64 / s.w.messages as f64;
                first_msg = true;
            }
        }
        let mut first_block = false;
        if let Some(s) = g.split.as_mut() {
            s.at_start = b;
            s.report.forest_at_start = forest.unwrap_or_default();
            s.source = src;
            first_block = s.max_blocks > 0;
        }
        if first_msg {
            self.push_other(start, K_SCRIBE_PUBLISH, 0);
        }
        if first_block {
            self.push_other(start, K_SS_BLOCK, 0);
        }
    }

    /// The end of the measurement window: traffic totals.
    pub(super) fn scribe_measure_end(&mut self) {
        if self.scribe.is_none() {
            return;
        }
        let (a, b) = self.scribe_counters_total();
        let Some(g) = self.scribe.as_mut() else {
            return;
        };
        if let Some(s) = g.scribe.as_mut() {
            s.at_end = a;
        }
        if let Some(s) = g.split.as_mut() {
            s.at_end = b;
        }
    }

    fn group_random_ready(&mut self) -> Option<u32> {
        let g = self.scribe.as_mut()?;
        (!self.ready_list.is_empty())
            .then(|| self.ready_list[g.rng.below(self.ready_list.len() as u64) as usize])
    }

    /// One publication of the measurement phase (`K_SCRIBE_PUBLISH`).
    pub(super) fn scribe_publish_tick(&mut self) {
        let measuring = self.phase == Phase::Measure && self.now < self.measure_end;
        let Some(s) = self.scribe.as_ref().and_then(|g| g.scribe.as_ref()) else {
            return;
        };
        if !measuring || s.issued >= s.w.messages {
            return;
        }
        let j = s.issued;
        let t = (j % u64::from(s.w.topics)) as u32;
        let topic = s.ids[t as usize];
        if let Some(i) = self.group_random_ready() {
            let mut payload = vec![0u8; SCRIBE_PAYLOAD];
            payload[..8].copy_from_slice(&j.to_be_bytes());
            let now = Instant::from_micros(self.now);
            let r = self.nodes[i as usize].with_application::<Scribe<u32>, _>(
                now,
                SCRIBE_APP,
                |sc, ctx| sc.publish(ctx, topic, Bytes::from(payload)),
            );
            let pid = self.nodes[i as usize].id();
            let at = self.now;
            if let Some(s) = self.scribe.as_mut().and_then(|g| g.scribe.as_mut()) {
                let m = s.msgs.len() as u32;
                s.msgs.push(ScribeMsg {
                    topic: t,
                    at,
                    expected: s.attached[t as usize].iter().copied().collect(),
                    got: BTreeSet::new(),
                    root: None,
                    failed: !matches!(r, Some(Ok(_))),
                    links: HashMap::new(),
                });
                if let Some(Ok(id)) = r {
                    s.by_key.insert((pid, id), m);
                }
            }
            // A root publishing to itself delivers during the call: flush after registering.
            self.flush(i);
        }
        let now = self.now;
        let ms = self.measure_start;
        let Some(s) = self.scribe.as_mut().and_then(|g| g.scribe.as_mut()) else {
            return;
        };
        s.issued += 1;
        if s.issued < s.w.messages {
            let next = ms + (s.issued as f64 * s.interval) as u64;
            self.push_other(next.max(now), K_SCRIBE_PUBLISH, 0);
        }
    }

    /// One block of the SplitStream source (`K_SS_BLOCK`).
    pub(super) fn split_block_tick(&mut self) {
        let measuring = self.phase == Phase::Measure && self.now < self.measure_end;
        let Some(s) = self.scribe.as_ref().and_then(|g| g.split.as_ref()) else {
            return;
        };
        if !measuring || s.blocks.len() as u64 >= s.max_blocks {
            return;
        }
        let (size, interval) = (s.w.block_size, us(s.w.block_interval));
        let src = match s.source {
            Some(i) if self.slots[i as usize].alive => Some(i),
            _ => {
                let n = self.group_random_ready();
                if let Some(s) = self.scribe.as_mut().and_then(|g| g.split.as_mut()) {
                    s.source = n;
                    s.report.source_changes += 1;
                }
                n
            }
        };
        if let Some(i) = src {
            let nb = self
                .scribe
                .as_ref()
                .and_then(|g| g.split.as_ref())
                .map_or(0, |s| s.blocks.len());
            let mut data = vec![0u8; size];
            data[..8.min(size)].copy_from_slice(&(nb as u64).to_be_bytes()[..8.min(size)]);
            let now = Instant::from_micros(self.now);
            let r = self.nodes[i as usize].with_application::<SplitStream<u32>, _>(
                now,
                SPLITSTREAM_APP,
                |ss, ctx| ss.publish(ctx, Bytes::from(data)),
            );
            let pid = self.nodes[i as usize].id();
            let (at, n) = (self.now, self.nodes.len());
            if let Some(s) = self.scribe.as_mut().and_then(|g| g.split.as_mut()) {
                let b = s.blocks.len() as u32;
                s.blocks.push(Block {
                    at,
                    masks: vec![0; n],
                });
                if let Some(Ok(no)) = r {
                    s.by_key.insert((pid, no), b);
                } else {
                    s.report.publish_errors += 1;
                }
            }
            self.flush(i);
        }
        let now = self.now;
        self.push_other(now + interval, K_SS_BLOCK, 0);
    }

    /// Children per node over Scribe's trees and the depth of every attached membership.
    fn scribe_tree_stats(&mut self) {
        let Some(s) = self.scribe.as_ref().and_then(|g| g.scribe.as_ref()) else {
            return;
        };
        let ids = s.ids.clone();
        let members: Vec<BTreeSet<u32>> = s.members.clone();
        let now = Instant::from_micros(self.now);
        // (topic, node) -> parent (None at a root).
        let mut parent: BTreeMap<(u32, u32), Option<u32>> = BTreeMap::new();
        let (mut interior, mut children_sum, mut stress_max) = (0u64, 0u64, 0u64);
        let mut forwarders = 0u64;
        for i in 0..self.nodes.len() as u32 {
            if !self.slots[i as usize].alive {
                continue;
            }
            let Some((kids, entries)) = self.nodes[i as usize].with_application::<Scribe<u32>, _>(
                now,
                SCRIBE_APP,
                |sc, _| {
                    let entries: Vec<(TopicId, Option<u32>, bool, bool)> = sc
                        .topics()
                        .map(|t| {
                            (
                                t,
                                sc.parent(t).map(|p| p.addr),
                                sc.is_root(t),
                                sc.is_subscribed(t),
                            )
                        })
                        .collect();
                    (sc.total_children() as u64, entries)
                },
            ) else {
                continue;
            };
            if kids > 0 {
                interior += 1;
                children_sum += kids;
                stress_max = stress_max.max(kids);
            }
            for (t, p, root, subscribed) in entries {
                let Some(&ti) = self
                    .scribe
                    .as_ref()
                    .and_then(|g| g.scribe.as_ref())
                    .and_then(|s| s.index.get(&t))
                else {
                    continue;
                };
                forwarders += u64::from(!subscribed);
                if root {
                    parent.insert((ti, i), None);
                } else if let Some(p) = p {
                    parent.insert((ti, i), Some(p));
                }
            }
        }
        let _ = ids;
        let (mut depth_sum, mut depth_n, mut depth_max, mut detached) = (0u64, 0u64, 0u32, 0u64);
        for (t, set) in members.iter().enumerate() {
            for &m in set {
                let mut cur = m;
                let mut d = 0u32;
                let ok = loop {
                    match parent.get(&(t as u32, cur)) {
                        Some(None) => break true,
                        Some(Some(p)) => {
                            d += 1;
                            cur = *p;
                            if d > 64 {
                                break false;
                            }
                        }
                        None => break false,
                    }
                };
                if ok {
                    depth_sum += u64::from(d);
                    depth_n += 1;
                    depth_max = depth_max.max(d);
                } else {
                    detached += 1;
                }
            }
        }
        let Some(s) = self.scribe.as_mut().and_then(|g| g.scribe.as_mut()) else {
            return;
        };
        let r = &mut s.report;
        r.tree_nodes = parent.len() as u64;
        r.forwarders = forwarders;
        r.interior_nodes = interior;
        r.node_stress_mean = if interior == 0 {
            0.0
        } else {
            children_sum as f64 / interior as f64
        };
        r.node_stress_max = stress_max;
        r.depth_mean = if depth_n == 0 {
            0.0
        } else {
            depth_sum as f64 / depth_n as f64
        };
        r.depth_max = depth_max;
        r.members_not_in_tree = detached;
    }

    /// The SplitStream forest now: attachment, interior-node-disjointness, node stress.
    fn split_forest(&mut self) -> Option<ForestReport> {
        let s = self.scribe.as_ref()?.split.as_ref()?;
        let full = s.w.stripes;
        let now = Instant::from_micros(self.now);
        let mut f = ForestReport::default();
        let mut used_sum = 0u64;
        for i in 0..self.nodes.len() {
            if !self.slots[i].alive {
                continue;
            }
            let Some((attached, per)) = self.nodes[i].with_application::<SplitStream<u32>, _>(
                now,
                SPLITSTREAM_APP,
                |ss, _| (ss.attached_stripes().len(), ss.children_per_stripe()),
            ) else {
                continue;
            };
            f.nodes += 1;
            f.fully_attached += u64::from(attached == full);
            let interior = per.iter().filter(|&&c| c > 0).count() as u64;
            let used: u64 = per.iter().map(|&c| c as u64).sum();
            if interior > 0 {
                f.interior_nodes += 1;
                used_sum += used;
                f.stress_max = f.stress_max.max(used);
                f.max_interior_stripes = f.max_interior_stripes.max(interior);
            }
            if interior > 1 {
                f.interior_in_several += 1;
            }
        }
        f.stress_mean = if f.interior_nodes == 0 {
            0.0
        } else {
            used_sum as f64 / f.interior_nodes as f64
        };
        Some(f)
    }

    /// Fills the Scribe and SplitStream report sections and adds their problems.
    pub(super) fn scribe_finish(
        &mut self,
        node_s: f64,
    ) -> (Option<ScribeReport>, Option<SplitStreamReport>) {
        if self.scribe.is_none() {
            return (None, None);
        }
        let forest_end = self.split_forest();
        let clean = self.opts.loss == 0.0
            && self.opts.partition.is_none()
            && self.opts.churn.is_none()
            && self.opts.fail_fraction.is_none();
        let churn = self.opts.churn.is_some();
        let lossy = self.opts.loss > 0.0 || self.opts.partition.is_some();
        let fail_time = self.fail_time;
        let window = us(DELIVERY_WINDOW);
        let split_window = us(SPLIT_WINDOW);
        let mut problems = Vec::new();
        let topo = &self.topo;
        let Some(g) = self.scribe.as_mut() else {
            return (None, None);
        };
        let died = std::mem::take(&mut g.died);
        let alive_at = |i: u32, t: u64| died.get(i as usize).is_none_or(|&d| d > t);
        let scribe = g.scribe.as_mut().map(|s| {
            let mut r = std::mem::take(&mut s.report);
            r.messages_published = s.msgs.len() as u64;
            r.joiner_subscriptions = s.joiner_subscriptions;
            let (mut expected, mut delivered, mut total) = (0u64, 0u64, 0u64);
            for m in &s.msgs {
                r.publishes_failed += u64::from(m.failed);
                total += m.got.len() as u64;
                let deadline = m.at + window;
                let mut missed = 0u64;
                for &e in &m.expected {
                    if !alive_at(e, deadline) {
                        continue;
                    }
                    expected += 1;
                    if m.got.contains(&e) {
                        delivered += 1;
                    } else {
                        missed += 1;
                    }
                }
                if missed > 0 && r.missed_examples.len() < 5 {
                    r.missed_examples.push(format!(
                        "topic {} message at {:.3} s: {missed} of {} members missed it{}",
                        m.topic,
                        m.at as f64 / 1e6,
                        m.expected.len(),
                        if m.root.is_none() {
                            " (never disseminated)"
                        } else {
                            ""
                        }
                    ));
                }
                r.messages_never_disseminated += u64::from(m.root.is_none());
            }
            r.expected_deliveries = expected;
            r.delivered = delivered;
            r.deliveries_total = total;
            r.duplicates = s.duplicates;
            r.delivery_ratio = if expected == 0 {
                1.0
            } else {
                delivered as f64 / expected as f64
            };
            r.rdp = quantiles(&mut s.rdp, s.rdp_sums);
            r.replayed_deliveries = s.replayed;
            r.link_stress = s
                .link_map
                .as_mut()
                .map(|map| link_stress(map, topo, &s.msgs));
            let w = sub3(s.at_end, s.at_start);
            r.control_msgs_per_node_s = w.0 as f64 / node_s;
            r.control_bytes_per_node_s = w.1 as f64 / node_s;
            r.data_msgs_per_node_s = w.2 as f64 / node_s;
            if clean && (delivered < expected || s.duplicates > 0) {
                problems.push(format!(
                    "Scribe: {delivered} of {expected} expected deliveries ({:.4}%), {} duplicates \
                     in a run without faults; e.g. {}",
                    100.0 * r.delivery_ratio,
                    s.duplicates,
                    r.missed_examples.join("; ")
                ));
            }
            r
        });
        let split = g.split.as_mut().map(|s| {
            let mut r = std::mem::take(&mut s.report);
            let st = s.w.stripes as u32;
            r.blocks_published = s.blocks.len() as u64;
            r.duplicate_parts = s.duplicates;
            // Blocks before the failure (all of them without one).
            let before: Vec<&Block> = s
                .blocks
                .iter()
                .filter(|b| fail_time.is_none_or(|f| b.at + split_window < f))
                .collect();
            r.blocks_before_failure = before.len() as u64;
            let mut hist = vec![0u64; s.w.stripes + 1];
            if let Some(last) = before.last() {
                let horizon = last.at + split_window;
                for i in 0..s.initial.len() {
                    if !s.initial[i] || !alive_at(i as u32, horizon) {
                        continue;
                    }
                    let and = before
                        .iter()
                        .fold(u64::MAX, |a, b| a & b.masks.get(i).copied().unwrap_or(0));
                    hist[(and.count_ones()).min(st) as usize] += 1;
                }
            }
            let counted: u64 = hist.iter().sum();
            r.nodes_counted = counted;
            r.all_stripes_pct = if counted == 0 {
                0.0
            } else {
                100.0 * hist[s.w.stripes] as f64 / counted as f64
            };
            r.stripes_histogram = hist;
            if let Some(f) = fail_time {
                let survivors: Vec<usize> = (0..s.initial.len())
                    .filter(|&i| s.initial[i] && alive_at(i as u32, u64::MAX - 1))
                    .collect();
                let after: Vec<&Block> = s.blocks.iter().filter(|b| b.at >= f).collect();
                let frac = |b: &Block, need: u32| -> f64 {
                    if survivors.is_empty() {
                        return 100.0;
                    }
                    let ok = survivors
                        .iter()
                        .filter(|&&i| b.masks.get(i).copied().unwrap_or(0).count_ones() >= need)
                        .count();
                    100.0 * ok as f64 / survivors.len() as f64
                };
                let fr: Vec<f64> = after.iter().map(|b| frac(b, st - 1)).collect();
                // The first block from which every later block reached >= 99%.
                let mut rec: Option<usize> = None;
                for k in (0..fr.len()).rev() {
                    if fr[k] >= 99.0 {
                        rec = Some(k);
                    } else {
                        break;
                    }
                }
                let mut fr_sorted = fr.clone();
                fr_sorted.sort_by(f64::total_cmp);
                r.failure = Some(SplitStreamFailureReport {
                    survivors: survivors.len() as u64,
                    blocks_after: after.len() as u64,
                    min_ge_s1_pct: fr_sorted.first().copied().unwrap_or(0.0),
                    recovery_s: rec.map(|k| (after[k].at - f) as f64 / 1e6),
                    after_recovery_min_ge_s1_pct: rec
                        .map_or(0.0, |k| fr[k..].iter().copied().fold(100.0, f64::min)),
                    after_recovery_min_all_pct: rec.map_or(0.0, |k| {
                        after[k..].iter().map(|b| frac(b, st)).fold(100.0, f64::min)
                    }),
                    last_block_ge_s1_pct: fr.last().copied().unwrap_or(0.0),
                    last_block_all_pct: after.last().map_or(0.0, |b| frac(b, st)),
                });
                if !churn && !lossy && rec.is_none() {
                    problems.push(format!(
                        "SplitStream: after the mass failure, blocks never again reached >= 99% \
                         of the {} survivors with >= {} of {} stripes",
                        survivors.len(),
                        st - 1,
                        st
                    ));
                }
            }
            r.forest_at_end = forest_end.clone().unwrap_or_default();
            let w = sub3(s.at_end, s.at_start);
            r.control_msgs_per_node_s = w.0 as f64 / node_s;
            r.control_bytes_per_node_s = w.1 as f64 / node_s;
            r.data_msgs_per_node_s = w.2 as f64 / node_s;
            if clean && (r.all_stripes_pct < 100.0 || r.blocks_published == 0) {
                problems.push(format!(
                    "SplitStream: {} of {} nodes received all {} stripes of every block \
                     in a run without faults (histogram {:?})",
                    r.stripes_histogram[s.w.stripes], r.nodes_counted, st, r.stripes_histogram
                ));
            }
            r
        });
        for p in problems {
            self.problem(p);
        }
        (scribe, split)
    }
}

/// Link stress of the disseminated messages: Scribe's counts as recorded, unicast and IP
/// multicast from the root to the members each message reached.
fn link_stress(map: &mut LinkMap, topo: &Topology, msgs: &[ScribeMsg]) -> LinkStress {
    let mut l = LinkStress::default();
    let (mut pairs, mut copies) = (0u64, 0u64);
    let (mut u_pairs, mut u_copies) = (0u64, 0u64);
    let mut unicast: HashMap<LinkId, u32> = HashMap::new();
    let mut path = Vec::new();
    for m in msgs {
        let Some((root, _)) = m.root else { continue };
        if m.links.is_empty() {
            continue;
        }
        l.messages += 1;
        tally(&m.links, &mut pairs, &mut copies, &mut l.max);
        unicast.clear();
        for &x in &m.got {
            path.clear();
            map.path(topo, root, x, &mut path);
            count_links(&mut unicast, &path);
        }
        tally(&unicast, &mut u_pairs, &mut u_copies, &mut l.unicast_max);
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    l.mean = ratio(copies, pairs);
    l.links_per_message = ratio(pairs, l.messages);
    l.unicast_mean = ratio(u_copies, u_pairs);
    l.ip_links_per_message = ratio(u_pairs, l.messages);
    l
}

/// One more copy on each link of `path`.
fn count_links(counts: &mut HashMap<LinkId, u32>, path: &[LinkId]) {
    for &l in path {
        *counts.entry(l).or_insert(0) += 1;
    }
}

/// Adds one message's per-link copies to the (links used, copies, most on a link) totals.
fn tally(counts: &HashMap<LinkId, u32>, links: &mut u64, copies: &mut u64, max: &mut u64) {
    *links += counts.len() as u64;
    for &c in counts.values() {
        *copies += u64::from(c);
        *max = (*max).max(u64::from(c));
    }
}
