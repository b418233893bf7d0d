//! The PAST workload: a [`pastry_past::Past`] (memory store) on every node, objects
//! inserted after the build, looked up through the measurement phase, verified at the end.
//!
//! - **insert**: at the start of the settle phase each object is inserted from a random
//!   ready node; the settle phase is extended (bounded) until every insert has answered.
//! - **lookups**: `lookups` lookups of random stored objects from random ready nodes,
//!   spread evenly over the measurement phase (under churn, failures, partitions).
//! - **repair**: after a mass failure, once per simulated second, every stored object must
//!   again sit on its k numerically closest live ready nodes; the time and the maintenance
//!   bytes sent until then are the repair figures.
//! - **verify**: after the cool-down, objects with no live replica anywhere are counted as
//!   lost, then every stored object is looked up from a random ready node.
//!
//! Maintenance traffic comes from the nodes' own [`pastry_past::PastStats`] counters; those
//! of nodes that crash or leave are kept when the node is replaced. Nothing here touches a
//! run without PAST, so its trace hash is unchanged.

use std::collections::{BTreeMap, BTreeSet};

use pastry_core::rng::Rng;
use pastry_core::{AppId, Instant, NodeId};
use pastry_past::{InsertFailure, LookupFailure, Past, PastConfig, PastEvent};

use super::{K_PAST_CHECK, K_PAST_LOOKUP, Phase, Simulation, us};
use crate::report::{PastReport, RepairReport};

/// Application id PAST is registered under on every simulated node.
pub const PAST_APP: AppId = 1;

/// The PAST workload of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct PastWorkload {
    /// Objects to insert after the build (content-addressed, distinct contents).
    pub objects: u64,
    /// Replicas per object (the paper's k).
    pub k: usize,
    /// Bytes per object.
    pub object_size: usize,
    /// Lookups of random stored objects during the measurement phase.
    pub lookups: u64,
    /// Cache objects along lookup routes.
    pub caching: bool,
}

impl Default for PastWorkload {
    fn default() -> Self {
        PastWorkload {
            objects: 1000,
            k: 5,
            object_size: 1024,
            lookups: 1000,
            caching: true,
        }
    }
}

impl PastWorkload {
    /// The PAST configuration every node runs with.
    ///
    /// # Errors
    /// When `k` or `object_size` do not fit PAST's or the node's limits.
    pub fn config(&self, core: &pastry_core::Config) -> anyhow::Result<PastConfig> {
        let d = PastConfig::default();
        let max_k = core.leaf_set_size / 2 + 1;
        if self.k == 0 || self.k > max_k {
            anyhow::bail!(
                "--past-k must be in 1..={max_k} (|L|/2 + 1: replicas come from the leaf set), got {}",
                self.k
            );
        }
        if self.object_size == 0 || self.object_size > d.max_object_bytes {
            anyhow::bail!(
                "--past-object-size must be in 1..={}, got {}",
                d.max_object_bytes,
                self.object_size
            );
        }
        let cfg = PastConfig {
            replicas: self.k,
            // Every object of the run has k replicas: maintenance need only cover k.
            max_replicas: self.k,
            caching: self.caching,
            ..d
        };
        cfg.validate_with(core)
            .map_err(|e| anyhow::anyhow!("{e} (from the --past-* flags)"))?;
        Ok(cfg)
    }

    /// The content of object `i` of a run with seed `seed`: `object_size` bytes, distinct
    /// for every `i` (it starts with `i`).
    pub fn content(&self, seed: u64, i: u64) -> Vec<u8> {
        let mut r = Rng::new(seed ^ i.wrapping_mul(0xa076_1d64_78bd_642f));
        let mut out = Vec::with_capacity(self.object_size + 8);
        out.extend_from_slice(&i.to_be_bytes());
        while out.len() < self.object_size {
            out.extend_from_slice(&r.next_u64().to_le_bytes());
        }
        out.truncate(self.object_size.max(8));
        out
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingLookup {
    object: u32,
    at: u64,
    verify: bool,
}

/// The workload's state during a run.
#[derive(Debug)]
pub(crate) struct PastSim {
    pub(crate) w: PastWorkload,
    pub(crate) cfg: PastConfig,
    rng: Rng,
    seed: u64,
    /// Key of every object (inserted or not).
    keys: Vec<NodeId>,
    /// Objects whose insert succeeded.
    stored: Vec<u32>,
    inserts: BTreeMap<(u32, u64), u32>,
    lookups: BTreeMap<(u32, u64), PendingLookup>,
    pub(crate) lookups_issued: u64,
    lookup_interval: f64,
    latency_sum_us: f64,
    /// Maintenance (messages, bytes, objects received) of nodes no longer live.
    dead_maint: (u64, u64, u64),
    /// Totals at the start of the measurement window.
    maint_at_start: (u64, u64, u64),
    /// Totals at its end.
    maint_at_end: (u64, u64, u64),
    /// Totals at the mass failure.
    maint_at_fail: Option<(u64, u64, u64)>,
    /// Objects with no live replica right after the mass failure (excluded from repair).
    lost_at_fail: BTreeSet<u32>,
    pub(crate) report: PastReport,
}

impl PastSim {
    pub(crate) fn new(w: PastWorkload, cfg: PastConfig, seed: u64) -> PastSim {
        let report = PastReport {
            objects: w.objects,
            k: w.k,
            object_size: w.object_size,
            caching: w.caching,
            ..PastReport::default()
        };
        PastSim {
            rng: super::stream(seed, 6),
            seed,
            keys: Vec::new(),
            stored: Vec::new(),
            inserts: BTreeMap::new(),
            lookups: BTreeMap::new(),
            lookups_issued: 0,
            lookup_interval: 0.0,
            latency_sum_us: 0.0,
            dead_maint: (0, 0, 0),
            maint_at_start: (0, 0, 0),
            maint_at_end: (0, 0, 0),
            maint_at_fail: None,
            lost_at_fail: BTreeSet::new(),
            report,
            w,
            cfg,
        }
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

impl Simulation {
    /// Registers PAST on a node just added (runs with a PAST workload only).
    pub(super) fn past_register(&mut self, i: u32) {
        let Some(p) = self.past.as_ref() else { return };
        // The config was validated in `Simulation::new`.
        if let Ok(app) = Past::<u32>::new(p.cfg.clone()) {
            let _ = self.nodes[i as usize].register(PAST_APP, Box::new(app));
        }
    }

    /// Maintenance counters of node `i` (zeros without PAST on it).
    fn past_maint_of(&mut self, i: u32) -> (u64, u64, u64) {
        let now = Instant::from_micros(self.now);
        self.nodes[i as usize]
            .with_application::<Past<u32>, _>(now, PAST_APP, |p, _| {
                let s = p.stats();
                (
                    s.maintenance_messages_sent,
                    s.maintenance_bytes_sent,
                    s.maintenance_objects_received,
                )
            })
            .unwrap_or((0, 0, 0))
    }

    /// Maintenance sent by every node so far, live or not.
    fn past_maint_total(&mut self) -> (u64, u64, u64) {
        let mut t = self.past.as_ref().map_or((0, 0, 0), |p| p.dead_maint);
        for i in 0..self.nodes.len() as u32 {
            if self.slots[i as usize].alive {
                t = add3(t, self.past_maint_of(i));
            }
        }
        t
    }

    /// Node `i` is about to be replaced (crash, leave, failed join): keep its counters and
    /// forget the requests it was waiting for (their client is gone).
    pub(super) fn past_on_kill(&mut self, i: u32) {
        if self.past.is_none() {
            return;
        }
        let m = self.past_maint_of(i);
        let Some(p) = self.past.as_mut() else { return };
        p.dead_maint = add3(p.dead_maint, m);
        let gone: Vec<(u32, u64)> = p
            .lookups
            .range((i, 0)..=(i, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(l) = p.lookups.remove(&k) {
                if l.verify {
                    p.report.verify_abandoned += 1;
                } else {
                    p.report.lookups_abandoned += 1;
                }
            }
        }
        let gone: Vec<(u32, u64)> = p
            .inserts
            .range((i, 0)..=(i, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            p.inserts.remove(&k);
            p.report.insert_failures += 1;
        }
    }

    /// A [`PastEvent`] from node `i`.
    pub(super) fn past_on_event(&mut self, i: u32, value: &dyn std::any::Any) {
        let now = self.now;
        let Some(p) = self.past.as_mut() else { return };
        let Some(ev) = value.downcast_ref::<PastEvent<u32>>() else {
            return;
        };
        let id = (i, ev.request());
        match ev {
            PastEvent::Inserted { key, .. } => {
                if let Some(o) = p.inserts.remove(&id) {
                    debug_assert_eq!(p.keys[o as usize], *key);
                    p.stored.push(o);
                    p.report.stored += 1;
                }
            }
            PastEvent::InsertFailed { reason, .. } => {
                if p.inserts.remove(&id).is_some() {
                    p.report.insert_failures += 1;
                    if p.report.insert_failure_examples.len() < 3 {
                        p.report.insert_failure_examples.push(insert_reason(reason));
                    }
                }
            }
            PastEvent::Found {
                key,
                object,
                from_cache,
                ..
            } => {
                let Some(l) = p.lookups.remove(&id) else {
                    return;
                };
                let right = *key == p.keys[l.object as usize]
                    && object.key() == *key
                    && object.content().len() == p.w.object_size.max(8);
                if l.verify {
                    if right {
                        p.report.verify_answered += 1;
                    } else {
                        p.report.verify_failed += 1;
                    }
                    return;
                }
                if right {
                    p.report.lookups_answered += 1;
                    p.report.lookups_from_cache += u64::from(*from_cache);
                    p.latency_sum_us += (now - l.at) as f64;
                } else {
                    p.report.lookups_failed += 1;
                }
            }
            PastEvent::LookupFailed { key, reason, .. } => {
                let Some(l) = p.lookups.remove(&id) else {
                    return;
                };
                if l.verify {
                    p.report.verify_failed += 1;
                } else {
                    p.report.lookups_failed += 1;
                }
                if p.report.lookup_failure_examples.len() < 5 {
                    p.report.lookup_failure_examples.push(format!(
                        "{}lookup of {key} from node {i} at {:.3} s: {}",
                        if l.verify { "final " } else { "" },
                        now as f64 / 1e6,
                        lookup_reason(reason)
                    ));
                }
            }
            PastEvent::Handles { .. } => {}
        }
    }

    /// Inserts every object from random ready nodes, then runs until every insert answered
    /// (bounded by PAST's own retries).
    pub(super) fn past_insert_all(&mut self) {
        let Some(p) = self.past.as_mut() else { return };
        let (n, seed) = (p.w.objects, p.seed);
        let w = p.w.clone();
        let mut keys = Vec::with_capacity(n as usize);
        for o in 0..n {
            let content = w.content(seed, o);
            keys.push(pastry_past::content_key(&content));
        }
        p.keys = keys;
        for o in 0..n {
            let Some(i) = self.past_random_ready() else {
                break;
            };
            let content = w.content(seed, o);
            let now = Instant::from_micros(self.now);
            let req = self.nodes[i as usize].with_application::<Past<u32>, _>(
                now,
                PAST_APP,
                |past, ctx| past.insert(ctx, content, None),
            );
            if let (Some(r), Some(p)) = (req, self.past.as_mut()) {
                p.inserts.insert((i, r), o as u32);
            }
            self.flush(i);
        }
        self.past_wait(|p| p.inserts.is_empty());
        if let Some(p) = self.past.as_mut() {
            p.report.insert_failures += p.inserts.len() as u64;
            p.inserts.clear();
            p.stored.sort_unstable();
        }
    }

    /// Runs events until `done` holds or PAST's request deadline (every retry) passed.
    fn past_wait(&mut self, done: impl Fn(&PastSim) -> bool) {
        let Some(p) = self.past.as_ref() else { return };
        let c = &p.cfg;
        let bound = us(c.request_timeout) * (u64::from(c.request_retries) + 1) + 10_000_000;
        let deadline = self.now + bound;
        while self.past.as_ref().is_some_and(|p| !done(p)) && self.now < deadline {
            match self.queue.peek() {
                Some(&(at, _, _)) if at <= deadline => {
                    self.step();
                }
                _ => break,
            }
        }
    }

    fn past_random_ready(&mut self) -> Option<u32> {
        let p = self.past.as_mut()?;
        (!self.ready_list.is_empty())
            .then(|| self.ready_list[p.rng.below(self.ready_list.len() as u64) as usize])
    }

    /// Starts the measurement phase's lookups and records the maintenance baseline.
    pub(super) fn past_measure_start(&mut self) {
        if self.past.is_none() {
            return;
        }
        let base = self.past_maint_total();
        let start = self.now;
        let duration = us(self.opts.duration);
        let Some(p) = self.past.as_mut() else { return };
        p.maint_at_start = base;
        if p.w.lookups > 0 && !p.stored.is_empty() && duration > 0 {
            p.lookup_interval = duration as f64 / p.w.lookups as f64;
            self.push_other(start, K_PAST_LOOKUP, 0);
        }
    }

    /// The end of the measurement window: records the maintenance totals.
    pub(super) fn past_measure_end(&mut self) {
        if self.past.is_none() {
            return;
        }
        let t = self.past_maint_total();
        if let Some(p) = self.past.as_mut() {
            p.maint_at_end = t;
        }
    }

    /// One lookup of the measurement phase (`K_PAST_LOOKUP`).
    pub(super) fn past_lookup_tick(&mut self) {
        let measuring = self.phase == Phase::Measure && self.now < self.measure_end;
        let Some(p) = self.past.as_ref() else { return };
        if !measuring || p.lookups_issued >= p.w.lookups {
            return;
        }
        self.past_issue_lookup(false);
        let now = self.now;
        let Some(p) = self.past.as_mut() else { return };
        p.lookups_issued += 1;
        if p.lookups_issued < p.w.lookups {
            let next = self.measure_start + (p.lookups_issued as f64 * p.lookup_interval) as u64;
            self.push_other(next.max(now), K_PAST_LOOKUP, 0);
        }
    }

    fn past_issue_lookup(&mut self, verify: bool) {
        let Some(i) = self.past_random_ready() else {
            return;
        };
        let Some(p) = self.past.as_mut() else { return };
        if p.stored.is_empty() {
            return;
        }
        let o = p.stored[p.rng.below(p.stored.len() as u64) as usize];
        self.past_issue_lookup_of(i, o, verify);
    }

    fn past_issue_lookup_of(&mut self, i: u32, o: u32, verify: bool) {
        let Some(p) = self.past.as_ref() else { return };
        let key = p.keys[o as usize];
        let now = Instant::from_micros(self.now);
        // Register before the call: a local copy answers at once, during the call.
        let req =
            self.nodes[i as usize]
                .with_application::<Past<u32>, _>(now, PAST_APP, |past, ctx| past.lookup(ctx, key));
        let Some(p) = self.past.as_mut() else { return };
        if let Some(r) = req {
            if verify {
                p.report.verify_issued += 1;
            } else {
                p.report.lookups_issued += 1;
            }
            p.lookups.insert(
                (i, r),
                PendingLookup {
                    object: o,
                    at: self.now,
                    verify,
                },
            );
        }
        // The answer (if local) is among the node's events: flush after registering.
        self.flush(i);
    }

    /// Objects stored whose key has no live replica anywhere (primary or diverted).
    fn past_lost(&mut self) -> BTreeSet<u32> {
        let mut held: BTreeSet<NodeId> = BTreeSet::new();
        let now = Instant::from_micros(self.now);
        for i in 0..self.nodes.len() {
            if !self.slots[i].alive {
                continue;
            }
            if let Some(keys) =
                self.nodes[i]
                    .with_application::<Past<u32>, _>(now, PAST_APP, |p, _| p.stored_keys())
            {
                held.extend(keys);
            }
        }
        let Some(p) = self.past.as_ref() else {
            return BTreeSet::new();
        };
        p.stored
            .iter()
            .copied()
            .filter(|&o| !held.contains(&p.keys[o as usize]))
            .collect()
    }

    /// The `k` live ready nodes numerically closest to `key`.
    fn closest_k(&self, key: NodeId, k: usize) -> Vec<u32> {
        let k = k.min(self.ready.len());
        let mut after = self.ready.range(key..).chain(self.ready.iter()).peekable();
        let mut before = self
            .ready
            .range(..key)
            .rev()
            .chain(self.ready.iter().rev())
            .peekable();
        let mut out: Vec<u32> = Vec::with_capacity(k);
        while out.len() < k {
            let a = after.peek().map(|(id, i)| (**id, **i));
            let b = before.peek().map(|(id, i)| (**id, **i));
            let pick = match (a, b) {
                (Some(a), Some(b)) => {
                    if key.is_closer(b.0, a.0) {
                        before.next();
                        b.1
                    } else {
                        after.next();
                        a.1
                    }
                }
                (Some(a), None) => {
                    after.next();
                    a.1
                }
                (None, Some(b)) => {
                    before.next();
                    b.1
                }
                (None, None) => break,
            };
            if !out.contains(&pick) {
                out.push(pick);
            }
        }
        out
    }

    /// Stored objects (other than `skip`) not held by all of their k closest live ready
    /// nodes (a diversion pointer counts as holding).
    fn past_under_replicated(&mut self, skip: &BTreeSet<u32>) -> u64 {
        let Some(p) = self.past.as_ref() else {
            return 0;
        };
        let (k, now) = (p.w.k, Instant::from_micros(self.now));
        let objects: Vec<(u32, NodeId)> = p
            .stored
            .iter()
            .filter(|o| !skip.contains(o))
            .map(|&o| (o, p.keys[o as usize]))
            .collect();
        let mut bad = 0;
        for (_, key) in objects {
            let holders = self.closest_k(key, k);
            let ok = holders.iter().all(|&i| {
                self.nodes[i as usize]
                    .with_application::<Past<u32>, _>(now, PAST_APP, |p, _| {
                        p.holds(key) || p.pointer(key).is_some()
                    })
                    .unwrap_or(false)
            });
            bad += u64::from(!ok);
        }
        bad
    }

    /// Right after a mass failure: note what is lost and start the repair checks.
    pub(super) fn past_on_failure(&mut self) {
        if self.past.is_none() {
            return;
        }
        let lost = self.past_lost();
        let under = self.past_under_replicated(&lost);
        let totals = self.past_maint_total();
        let now = self.now;
        let Some(p) = self.past.as_mut() else { return };
        p.maint_at_fail = Some(totals);
        p.report.repair = Some(RepairReport {
            lost_at_failure: lost.len() as u64,
            under_replicated_at_failure: under,
            ..RepairReport::default()
        });
        p.lost_at_fail = lost;
        self.push_other(now + 1_000_000, K_PAST_CHECK, 0);
    }

    /// Once a second after a mass failure (`K_PAST_CHECK`): is every object back on its
    /// k closest nodes?
    pub(super) fn past_check(&mut self) {
        let Some(p) = self.past.as_ref() else { return };
        let (Some(fail), Some(base)) = (self.fail_time, p.maint_at_fail) else {
            return;
        };
        if p.report
            .repair
            .as_ref()
            .is_some_and(|r| r.repaired_s.is_some())
        {
            return;
        }
        let skip = p.lost_at_fail.clone();
        let under = self.past_under_replicated(&skip);
        if under > 0 {
            self.push_other(self.now + 1_000_000, K_PAST_CHECK, 0);
            return;
        }
        let totals = self.past_maint_total();
        let now = self.now;
        let Some(p) = self.past.as_mut() else { return };
        let d = sub3(totals, base);
        if let Some(r) = p.report.repair.as_mut() {
            r.repaired_s = Some((now - fail) as f64 / 1e6);
            r.messages = d.0;
            r.bytes_moved = d.1;
            r.objects_moved = d.2;
        }
    }

    /// After the cool-down: counts lost and under-replicated objects, then looks every
    /// stored object up from a random ready node.
    pub(super) fn past_verify(&mut self) {
        if self.past.is_none() {
            return;
        }
        let lost = self.past_lost();
        let under = self.past_under_replicated(&lost);
        let n_stored = match self.past.as_mut() {
            Some(p) => {
                p.report.objects_lost = lost.len() as u64;
                p.report.lost_examples = lost
                    .iter()
                    .take(3)
                    .map(|&o| p.keys[o as usize].to_string())
                    .collect();
                p.report.under_replicated_at_end = under;
                p.stored.len()
            }
            None => 0,
        };
        for j in 0..n_stored {
            let Some(i) = self.past_random_ready() else {
                break;
            };
            let Some(o) = self.past.as_ref().map(|p| p.stored[j]) else {
                break;
            };
            self.past_issue_lookup_of(i, o, true);
        }
        self.past_wait(|p| p.lookups.values().all(|l| !l.verify));
    }

    /// Fills the report's PAST section and adds its problems.
    pub(super) fn past_finish(&mut self, node_s: f64) -> Option<PastReport> {
        let clean = self.opts.loss == 0.0 && self.opts.partition.is_none();
        let p = self.past.as_mut()?;
        let mut r = std::mem::take(&mut p.report);
        for l in p.lookups.values() {
            if l.verify {
                r.verify_failed += 1;
            } else {
                r.lookups_unanswered += 1;
            }
        }
        p.lookups.clear();
        let w = sub3(p.maint_at_end, p.maint_at_start);
        r.maintenance_msgs_per_node_s = w.0 as f64 / node_s;
        r.maintenance_bytes_per_node_s = w.1 as f64 / node_s;
        r.maintenance_objects_received = w.2;
        r.app_msgs_per_node_s = self.window_app_msgs as f64 / node_s;
        r.app_bytes_per_node_s = self.window_app_bytes as f64 / node_s;
        r.lookup_mean_ms = if r.lookups_answered == 0 {
            0.0
        } else {
            p.latency_sum_us / r.lookups_answered as f64 / 1000.0
        };
        let mut problems = Vec::new();
        if r.objects_lost > 0 {
            problems.push(format!(
                "PAST: {} of {} objects lost (no live replica), e.g. {}",
                r.objects_lost,
                r.stored,
                r.lost_examples.join(", ")
            ));
        }
        if r.verify_failed > 0 {
            problems.push(format!(
                "PAST: {} of {} objects not retrievable at the end",
                r.verify_failed, r.verify_issued
            ));
        }
        if clean && r.insert_failures > 0 {
            problems.push(format!(
                "PAST: {} of {} inserts failed, e.g. {}",
                r.insert_failures,
                r.objects,
                r.insert_failure_examples.join(", ")
            ));
        }
        if clean && r.lookups_failed + r.lookups_unanswered > 0 {
            problems.push(format!(
                "PAST: {} lookups failed and {} unanswered, e.g. {}",
                r.lookups_failed,
                r.lookups_unanswered,
                r.lookup_failure_examples.join("; ")
            ));
        }
        // Under churn "every object on its k closest nodes" is a moving target: only a run
        // without churn must reach it.
        if let Some(rep) = &r.repair
            && rep.repaired_s.is_none()
            && self.opts.churn.is_none()
        {
            problems.push(format!(
                "PAST: objects never again on their {} closest nodes after the mass failure \
                 ({} under-replicated at the end)",
                r.k, r.under_replicated_at_end
            ));
        }
        for pr in problems {
            self.problem(pr);
        }
        Some(r)
    }
}

fn insert_reason(r: &InsertFailure) -> String {
    r.to_string()
}

fn lookup_reason(r: &LookupFailure) -> String {
    r.to_string()
}
