//! [`Past`]: the PAST application — client API, insert coordination, lookups with caching,
//! replica diversion and replica maintenance — as one KBR [`Application`].
//!
//! Everything here is driven by pastry-core upcalls and by the host's calls through
//! `Node::with_application`; it never does IO and never reads a clock (time comes from the
//! context). All state a peer can make grow is bounded by a [`PastConfig`] field.
//!
//! # Protocol summary
//! - **Insert**: the client routes `Insert` to the key. The root sends `Replicate` to the
//!   k nodes of `replica_set(key, k)` (itself included), collects `ReplicateAck`s and
//!   answers the client with `InsertResult`. A replica node short of space (size / free >
//!   t_pri) diverts the replica to a leaf-set member outside the replica set (which accepts
//!   only if size / free <= t_div) and keeps a pointer. If any replica node refuses, the
//!   root aborts the fresh copies and reports the reason; a named insert then retries with
//!   the next salt (file diversion).
//! - **Lookup**: routed to the key. Any node on the route holding the object (replica or
//!   cache) answers the client directly and stops the message. The root answers, follows
//!   its diversion pointer, or — when it lacks the object (maintenance not done yet) —
//!   relays the request along the replica set. The answering node pushes the object into
//!   the caches of the last nodes of the route; the client caches it too.
//! - **Maintenance** (pull, then hand-off): on leaf-set changes (debounced) and every
//!   `sync_interval`, a node sends each neighbour that may share its keys a digest of the
//!   keys and versions it holds in one chunk of its key range (`range(me, k - 1)`); the
//!   neighbour answers with the objects the node should hold and lacks, within a byte
//!   budget. Separately the node offers the keys it holds but is no longer a replica node
//!   of to their current replica nodes; it drops a key only once every one of them has
//!   confirmed holding it, pushing the object to those that want it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use pastry_core::{
    Address, AppContext, Application, Delivery, Forward, ForwardAction, NodeHandle, NodeId,
};

use crate::cache::LruCache;
use crate::codec::{self, MAX_HANDLES, MAX_PATH, PastMessage, Record, ReplicaStatus};
use crate::config::{PastConfig, PastConfigError};
use crate::event::{InsertFailure, LookupFailure, PastEvent};
use crate::object::{PastObject, named_key};
use crate::store::{MemoryStore, Store, StoreError};

const T_CLIENT: u64 = 1;
const T_ROOT: u64 = 2;
const T_DIVERT: u64 = 3;
const T_SYNC: u64 = 4;
/// Resend a client request after a backoff (an insert the root could not complete).
const T_RESEND: u64 = 5;
const ID_MASK: u64 = (1 << 48) - 1;

/// A replica node accepts a `Replicate` when it is among the k + this many closest nodes
/// by its own view (the root's and its view of the ring may differ by a node or two).
const REPLICATE_SLACK: usize = 2;
/// Times the same digest chunk is repeated while a peer reports more to send.
const MAX_CHUNK_REPEATS: u32 = 3;
/// Keys a digest receiver scans per chunk, as a multiple of `sync_max_keys`.
const SCAN_FACTOR: usize = 4;
/// Recently inserted keys remembered so that an `Abort` can remove them.
const FRESH_MAX: usize = 1024;

fn token(kind: u64, attempt: u32, id: u64) -> u64 {
    (kind << 56) | (u64::from(attempt & 0xff) << 48) | (id & ID_MASK)
}

/// Why [`Past`] could not be built.
#[derive(Debug)]
pub enum PastError {
    /// The configuration is invalid.
    Config(PastConfigError),
    /// The store failed while being read.
    Store(StoreError),
}

impl core::fmt::Display for PastError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PastError::Config(e) => e.fmt(f),
            PastError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PastError {}

/// Counters and gauges for reports. Gauges (`replicas_held`, `diverted_held`,
/// `bytes_stored`, `pointers`, `cache_entries`, `cache_bytes`) are current values; the
/// rest count since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PastStats {
    /// Primary replicas in the store (gauge).
    pub replicas_held: u64,
    /// Diverted replicas held for other nodes (gauge).
    pub diverted_held: u64,
    /// Bytes of store records (gauge).
    pub bytes_stored: u64,
    /// Diversion pointers to replicas held elsewhere (gauge).
    pub pointers: u64,
    /// Objects in the cache (gauge).
    pub cache_entries: u64,
    /// Bytes in the cache (gauge).
    pub cache_bytes: u64,
    /// Replicas written to the store (inserts, maintenance, diversions).
    pub objects_stored: u64,
    /// Replicas dropped after hand-off to the current replica nodes.
    pub replicas_dropped: u64,
    /// Cache look-ups that found the object.
    pub cache_hits: u64,
    /// Cache look-ups that did not.
    pub cache_misses: u64,
    /// Lookups this node answered from its cache.
    pub lookups_served_from_cache: u64,
    /// Lookups this node answered from a replica it holds.
    pub lookups_served_from_replica: u64,
    /// Maintenance messages sent (digests, sync data, hand-off offers, replies and data).
    pub maintenance_messages_sent: u64,
    /// Bytes of maintenance messages sent.
    pub maintenance_bytes_sent: u64,
    /// Replicas received and stored through maintenance.
    pub maintenance_objects_received: u64,
    /// Replicas this node diverted to a leaf-set member.
    pub replica_diversions: u64,
    /// Named inserts retried under a new salt.
    pub file_diversions: u64,
    /// Replicas refused for lack of space (before diversion).
    pub refused_no_space: u64,
    /// Client inserts that succeeded.
    pub inserts_succeeded: u64,
    /// Client inserts that failed.
    pub inserts_failed: u64,
    /// Client inserts tried again after a passing failure at the root.
    pub insert_retries: u64,
    /// Client lookups and fetches that found the object.
    pub lookups_succeeded: u64,
    /// Client lookups and fetches that failed.
    pub lookups_failed: u64,
    /// Messages that did not decode or made no sense here (dropped).
    pub bad_messages: u64,
    /// Objects that failed verification (dropped).
    pub bad_objects: u64,
    /// Store operations that failed.
    pub store_errors: u64,
}

/// What the index knows about a stored record.
#[derive(Debug, Clone, Copy)]
struct Meta {
    version: u64,
    size: u64,
    k: u8,
    owner: Option<[u8; 32]>,
    hash: [u8; 32],
    diverted_for: Option<NodeId>,
}

/// A replica this node is responsible for but diverted to `holder`.
#[derive(Debug, Clone, Copy)]
struct Pointer<A> {
    holder: NodeHandle<A>,
    version: u64,
    k: u8,
    owner: Option<[u8; 32]>,
    hash: [u8; 32],
}

#[derive(Debug)]
struct Named {
    signer: SigningKey,
    name: Vec<u8>,
    version: u64,
    content: Bytes,
}

#[derive(Debug)]
enum Op<A> {
    Insert {
        object: PastObject,
        k: u8,
        named: Option<Box<Named>>,
        salt: u32,
    },
    Lookup {
        key: NodeId,
    },
    Handles {
        key: NodeId,
        max: u8,
    },
    Fetch {
        key: NodeId,
        handle: NodeHandle<A>,
    },
}

#[derive(Debug)]
struct ClientOp<A> {
    op: Op<A>,
    attempt: u32,
}

#[derive(Debug)]
struct RootInsert<A> {
    client: NodeHandle<A>,
    client_request: u64,
    key: NodeId,
    hash: [u8; 32],
    waiting: Vec<NodeHandle<A>>,
    acked: Vec<(NodeHandle<A>, bool)>,
}

#[derive(Debug)]
struct Diversion<A> {
    k: u8,
    object: PastObject,
    tried: Vec<NodeId>,
    target: NodeHandle<A>,
    attempt: u32,
    /// The insert root and its id, when the diversion answers a `Replicate`.
    reply: Option<(NodeHandle<A>, u64)>,
}

#[derive(Debug)]
struct HandoffEntry<A> {
    version: u64,
    need: Vec<NodeId>,
    confirmed: BTreeSet<NodeId>,
    pointer: Option<NodeHandle<A>>,
}

#[derive(Debug)]
struct SyncState<A> {
    /// Generation of the armed sync timer; older timers are ignored.
    generation: u64,
    scheduled_at: Option<pastry_core::Instant>,
    round: u64,
    /// The previous round's chunk: (lo, hi, sweep finished).
    last: Option<(NodeId, NodeId, bool)>,
    incomplete: bool,
    repeats: u32,
    handoff_cursor: NodeId,
    handoff: BTreeMap<NodeId, HandoffEntry<A>>,
    /// Bytes pushed per peer in the current hand-off round.
    pushed: BTreeMap<NodeId, usize>,
}

impl<A> Default for SyncState<A> {
    fn default() -> Self {
        SyncState {
            generation: 0,
            scheduled_at: None,
            round: 0,
            last: None,
            incomplete: false,
            repeats: 0,
            handoff_cursor: NodeId::ZERO,
            handoff: BTreeMap::new(),
            pushed: BTreeMap::new(),
        }
    }
}

/// Outcome of trying to store a replica locally.
enum Stored {
    Fresh,
    Already,
    NeedsDiversion,
    Refused(InsertFailure),
}

/// The PAST application: register one per node under an application id.
///
/// Client methods ([`Past::insert`], [`Past::insert_signed`], [`Past::insert_named`],
/// [`Past::lookup`], [`Past::lookup_handles`], [`Past::fetch`]) are called by the host
/// through `Node::with_application`; each returns a request id at once and its outcome
/// later arrives as a [`PastEvent`] via `AppContext::notify`.
pub struct Past<A: Address> {
    cfg: PastConfig,
    store: Box<dyn Store>,
    index: BTreeMap<NodeId, Meta>,
    pointers: BTreeMap<NodeId, Pointer<A>>,
    cache: LruCache,
    requests: BTreeMap<u64, ClientOp<A>>,
    next_request: u64,
    roots: BTreeMap<u64, RootInsert<A>>,
    root_dedup: BTreeMap<(NodeId, u64), u64>,
    diversions: BTreeMap<u64, Diversion<A>>,
    next_local: u64,
    fresh: BTreeMap<NodeId, [u8; 32]>,
    fresh_order: VecDeque<NodeId>,
    sync: SyncState<A>,
    armed: bool,
    stats: PastStats,
}

impl<A: Address> core::fmt::Debug for Past<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Past")
            .field("stored", &self.index.len())
            .field("pointers", &self.pointers.len())
            .field("cached", &self.cache.len())
            .field("pending", &self.requests.len())
            .finish_non_exhaustive()
    }
}

impl<A: Address> Past<A> {
    /// A PAST instance with an in-memory store.
    ///
    /// # Errors
    /// [`PastError::Config`] when `cfg` is invalid.
    pub fn new(cfg: PastConfig) -> Result<Self, PastError> {
        Past::with_store(cfg, Box::new(MemoryStore::new()))
    }

    /// A PAST instance on `store`, which may already hold replicas (a restarted node):
    /// its records are read once to build the in-memory index; records that do not decode
    /// or verify are removed.
    ///
    /// # Errors
    /// [`PastError::Config`] when `cfg` is invalid, [`PastError::Store`] when the store
    /// fails while being read.
    pub fn with_store(cfg: PastConfig, store: Box<dyn Store>) -> Result<Self, PastError> {
        cfg.validate().map_err(PastError::Config)?;
        let cache = LruCache::new(cfg.cache_capacity_bytes, cfg.cache_max_entries);
        let mut p = Past {
            cfg,
            store,
            index: BTreeMap::new(),
            pointers: BTreeMap::new(),
            cache,
            requests: BTreeMap::new(),
            next_request: 0,
            roots: BTreeMap::new(),
            root_dedup: BTreeMap::new(),
            diversions: BTreeMap::new(),
            next_local: 0,
            fresh: BTreeMap::new(),
            fresh_order: VecDeque::new(),
            sync: SyncState::default(),
            armed: false,
            stats: PastStats::default(),
        };
        p.load_index().map_err(PastError::Store)?;
        Ok(p)
    }

    fn load_index(&mut self) -> Result<(), StoreError> {
        let mut from = NodeId::ZERO;
        loop {
            let keys = self.store.keys_between(from, NodeId::MAX, 1024)?;
            let Some(&last) = keys.last() else {
                break;
            };
            for key in keys {
                let rec = self
                    .store
                    .get(key)?
                    .and_then(|b| codec::decode_record(&b).ok().map(|r| (r, b.len())));
                match rec {
                    Some((r, len))
                        if r.object.verify_for(key, self.cfg.max_object_bytes).is_ok() =>
                    {
                        self.index.insert(key, meta_of(&r, len as u64));
                    }
                    _ => {
                        self.stats.bad_objects += 1;
                        self.store.remove(key)?;
                    }
                }
            }
            if last == NodeId::MAX {
                break;
            }
            from = last.wrapping_add(1);
        }
        Ok(())
    }

    // ---- host-facing accessors ----

    /// The configuration.
    pub fn config(&self) -> &PastConfig {
        &self.cfg
    }

    /// Counters and current gauges.
    pub fn stats(&self) -> PastStats {
        let mut s = self.stats.clone();
        s.replicas_held = self
            .index
            .values()
            .filter(|m| m.diverted_for.is_none())
            .count() as u64;
        s.diverted_held = self.index.len() as u64 - s.replicas_held;
        s.bytes_stored = self.store.bytes_used();
        s.pointers = self.pointers.len() as u64;
        s.cache_entries = self.cache.len() as u64;
        s.cache_bytes = self.cache.bytes();
        s
    }

    /// True when this node holds a primary replica of `key` in its store.
    pub fn holds(&self, key: NodeId) -> bool {
        self.index
            .get(&key)
            .is_some_and(|m| m.diverted_for.is_none())
    }

    /// True when this node holds a diverted replica of `key` on behalf of another node.
    pub fn holds_diverted(&self, key: NodeId) -> bool {
        self.index
            .get(&key)
            .is_some_and(|m| m.diverted_for.is_some())
    }

    /// The node holding this node's diverted replica of `key`, if any.
    pub fn pointer(&self, key: NodeId) -> Option<NodeHandle<A>> {
        self.pointers.get(&key).map(|p| p.holder)
    }

    /// True when `key` is in the cache.
    pub fn is_cached(&self, key: NodeId) -> bool {
        self.cache.contains(key)
    }

    /// The stored object under `key` (primary or diverted), read from the store.
    pub fn stored_object(&self, key: NodeId) -> Option<PastObject> {
        self.load(key).map(|r| r.object)
    }

    /// Keys of every record in the store, ascending.
    pub fn stored_keys(&self) -> Vec<NodeId> {
        self.index.keys().copied().collect()
    }

    /// Client requests waiting for an answer.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// Starts the periodic maintenance timer if it is not running yet. Called by itself
    /// on the first leaf-set change; a host may call it right after registering.
    pub fn start(&mut self, ctx: &mut AppContext<'_, A>) {
        if !self.armed {
            self.armed = true;
            let d = self.cfg.sync_interval;
            self.schedule_sync(ctx, d);
        }
    }

    // ---- client API ----

    /// Inserts a content-addressed object (key = [`crate::content_key`] of `content`) on
    /// `k` replicas (`None`: `replicas` from the config; clamped to `max_replicas`).
    /// Answers [`PastEvent::Inserted`] or [`PastEvent::InsertFailed`].
    ///
    /// Content-addressed objects cannot be file-diverted: their key is fixed by their
    /// content, so when the replica nodes and their leaf sets are full the insert fails
    /// with [`InsertFailure::NoSpace`]; store the data as a named object to get diversion.
    pub fn insert(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        content: impl Into<Bytes>,
        k: Option<usize>,
    ) -> u64 {
        let object = PastObject::immutable(content);
        self.start_insert(ctx, object, k, None)
    }

    /// Inserts an owned object under a caller-chosen `key`, signed by `owner` with
    /// `version`. Replacing an existing object needs the same owner and a higher version.
    /// No file diversion (the key is the caller's).
    pub fn insert_signed(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        owner: &SigningKey,
        key: NodeId,
        version: u64,
        content: impl Into<Bytes>,
        k: Option<usize>,
    ) -> u64 {
        let object = PastObject::signed(owner, key, version, content);
        self.start_insert(ctx, object, k, None)
    }

    /// Inserts an owned object under [`named_key`]`(owner, name, salt)`, starting with salt
    /// 0 and retrying with the next salt after [`InsertFailure::NoSpace`], up to
    /// `file_diversion_retries` times (the paper's file diversion). The key and salt that
    /// succeeded come back in [`PastEvent::Inserted`]; readers need that key.
    pub fn insert_named(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        owner: &SigningKey,
        name: &[u8],
        version: u64,
        content: impl Into<Bytes>,
        k: Option<usize>,
    ) -> u64 {
        let content = content.into();
        let key = named_key(&owner.verifying_key(), name, 0);
        let object = PastObject::signed(owner, key, version, content.clone());
        let named = Named {
            signer: owner.clone(),
            name: name.to_vec(),
            version,
            content,
        };
        self.start_insert(ctx, object, k, Some(Box::new(named)))
    }

    /// Looks `key` up: from the local store or cache, else routed to the key, answered by
    /// the first node on the route holding it (replica or cache) or by the replica nodes.
    /// Answers [`PastEvent::Found`] or [`PastEvent::LookupFailed`].
    pub fn lookup(&mut self, ctx: &mut AppContext<'_, A>, key: NodeId) -> u64 {
        let request = self.new_request();
        let me = ctx.local_handle();
        if let Some((object, from_cache)) = self.local_copy(ctx, key) {
            if from_cache {
                self.stats.lookups_served_from_cache += 1;
            } else {
                self.stats.lookups_served_from_replica += 1;
            }
            self.stats.lookups_succeeded += 1;
            ctx.notify(Box::new(PastEvent::Found {
                request,
                key,
                object,
                from_cache,
                source: me,
            }));
            return request;
        }
        self.start_op(ctx, request, Op::Lookup { key })
    }

    /// Asks the root of `key` for the nodes responsible for its replicas (at most `max`).
    /// Answers [`PastEvent::Handles`] or [`PastEvent::LookupFailed`] (timeout).
    pub fn lookup_handles(&mut self, ctx: &mut AppContext<'_, A>, key: NodeId, max: usize) -> u64 {
        let request = self.new_request();
        let max = max.clamp(1, MAX_HANDLES) as u8;
        self.start_op(ctx, request, Op::Handles { key, max })
    }

    /// Asks `handle` directly for `key` (after [`Past::lookup_handles`]). Answers
    /// [`PastEvent::Found`] or [`PastEvent::LookupFailed`].
    pub fn fetch(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        handle: NodeHandle<A>,
        key: NodeId,
    ) -> u64 {
        let request = self.new_request();
        self.start_op(ctx, request, Op::Fetch { key, handle })
    }

    fn new_request(&mut self) -> u64 {
        self.next_request = (self.next_request + 1) & ID_MASK;
        self.next_request
    }

    fn start_insert(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        object: PastObject,
        k: Option<usize>,
        named: Option<Box<Named>>,
    ) -> u64 {
        let request = self.new_request();
        let key = object.key();
        let size = object.content().len();
        if size > self.cfg.max_object_bytes {
            self.stats.inserts_failed += 1;
            ctx.notify(Box::new(PastEvent::<A>::InsertFailed {
                request,
                key,
                reason: InsertFailure::TooLarge {
                    size,
                    max: self.cfg.max_object_bytes,
                },
            }));
            return request;
        }
        let k = k
            .unwrap_or(self.cfg.replicas)
            .clamp(1, self.cfg.max_replicas) as u8;
        self.start_op(
            ctx,
            request,
            Op::Insert {
                object,
                k,
                named,
                salt: 0,
            },
        )
    }

    fn start_op(&mut self, ctx: &mut AppContext<'_, A>, request: u64, op: Op<A>) -> u64 {
        if self.requests.len() >= self.cfg.max_pending_requests {
            self.fail_op(ctx, request, &op, FailKind::Busy);
            return request;
        }
        let op = ClientOp { op, attempt: 0 };
        self.send_op(ctx, request, &op);
        self.requests.insert(request, op);
        request
    }

    fn send_op(&mut self, ctx: &mut AppContext<'_, A>, request: u64, op: &ClientOp<A>) {
        let me = ctx.local_handle();
        match &op.op {
            Op::Insert { object, k, .. } => {
                let msg = PastMessage::<A>::Insert {
                    request,
                    k: *k,
                    object: object.clone(),
                };
                ctx.route(object.key(), codec::encode(&msg), None);
            }
            Op::Lookup { key } => {
                let msg = PastMessage::Lookup {
                    request,
                    key: *key,
                    client: me,
                    relay: self.relay_budget(),
                    path: Vec::new(),
                };
                ctx.route(*key, codec::encode(&msg), None);
            }
            Op::Handles { key, max } => {
                let msg = PastMessage::<A>::LookupHandles {
                    request,
                    key: *key,
                    max: *max,
                };
                ctx.route(*key, codec::encode(&msg), None);
            }
            Op::Fetch { key, handle } => {
                let msg = PastMessage::Lookup {
                    request,
                    key: *key,
                    client: me,
                    relay: 0,
                    path: Vec::new(),
                };
                ctx.send_direct(*handle, codec::encode(&msg));
            }
        }
        ctx.set_timer(
            self.cfg.request_timeout,
            token(T_CLIENT, op.attempt, request),
        );
    }

    fn relay_budget(&self) -> u8 {
        (self.cfg.max_replicas.saturating_sub(1)).min(255) as u8
    }

    fn fail_op(&mut self, ctx: &mut AppContext<'_, A>, request: u64, op: &Op<A>, why: FailKind) {
        let ev: PastEvent<A> = match op {
            Op::Insert { object, .. } => {
                self.stats.inserts_failed += 1;
                PastEvent::InsertFailed {
                    request,
                    key: object.key(),
                    reason: match why {
                        FailKind::Busy => InsertFailure::Busy,
                        FailKind::Timeout => InsertFailure::Timeout,
                        FailKind::NotFound => InsertFailure::NotResponsible,
                    },
                }
            }
            Op::Lookup { key } | Op::Fetch { key, .. } | Op::Handles { key, .. } => {
                self.stats.lookups_failed += 1;
                PastEvent::LookupFailed {
                    request,
                    key: *key,
                    reason: match why {
                        FailKind::Busy => LookupFailure::Busy,
                        FailKind::Timeout => LookupFailure::Timeout,
                        FailKind::NotFound => LookupFailure::NotFound,
                    },
                }
            }
        };
        ctx.notify(Box::new(ev));
    }

    fn client_timer(&mut self, ctx: &mut AppContext<'_, A>, attempt: u32, request: u64) {
        let Some(op) = self.requests.get_mut(&request) else {
            return;
        };
        if op.attempt & 0xff != attempt {
            return;
        }
        if op.attempt < self.cfg.request_retries {
            op.attempt += 1;
            let op = self.requests.remove(&request).expect("present");
            self.send_op(ctx, request, &op);
            self.requests.insert(request, op);
        } else {
            let op = self.requests.remove(&request).expect("present");
            self.fail_op(ctx, request, &op.op, FailKind::Timeout);
        }
    }

    // ---- local storage ----

    fn load(&self, key: NodeId) -> Option<Record> {
        self.index.get(&key)?;
        let b = self.store.get(key).ok()??;
        codec::decode_record(&b).ok()
    }

    /// The object from the store or (if fresh enough) the cache; true = from the cache.
    fn local_copy(&mut self, ctx: &AppContext<'_, A>, key: NodeId) -> Option<(PastObject, bool)> {
        if let Some(r) = self.load(key) {
            return Some((r.object, false));
        }
        if !self.cfg.caching {
            return None;
        }
        match self.cache.get(key) {
            Some((o, at)) if ctx.now().saturating_since(at) <= self.cfg.cache_ttl => {
                self.stats.cache_hits += 1;
                Some((o, true))
            }
            Some(_) => {
                self.cache.remove(key);
                self.stats.cache_misses += 1;
                None
            }
            None => {
                self.stats.cache_misses += 1;
                None
            }
        }
    }

    fn cache_object(&mut self, ctx: &AppContext<'_, A>, object: PastObject) {
        let key = object.key();
        if self.cfg.caching && !self.index.contains_key(&key) {
            self.cache.insert(key, object, ctx.now());
        }
    }

    /// Whether a primary replica of `size` record bytes fits, by the paper's rule.
    fn fits(&self, size: u64, freed: u64, t: f64) -> bool {
        let used = self.store.bytes_used().saturating_sub(freed);
        let free = self.cfg.quota_bytes.saturating_sub(used);
        size <= free && (size as f64) <= t * free as f64
    }

    fn put_record(&mut self, key: NodeId, rec: &Record) -> bool {
        let b = codec::encode_record(rec);
        let len = b.len() as u64;
        match self.store.put(key, b) {
            Ok(()) => {
                self.index.insert(key, meta_of(rec, len));
                self.stats.objects_stored += 1;
                true
            }
            Err(_) => {
                self.stats.store_errors += 1;
                false
            }
        }
    }

    fn remove_record(&mut self, key: NodeId) {
        match self.store.remove(key) {
            Ok(_) => {
                self.index.remove(&key);
            }
            Err(_) => self.stats.store_errors += 1,
        }
    }

    fn remember_fresh(&mut self, key: NodeId, hash: [u8; 32]) {
        if self.fresh.insert(key, hash).is_none() {
            self.fresh_order.push_back(key);
        }
        while self.fresh_order.len() > FRESH_MAX {
            if let Some(old) = self.fresh_order.pop_front() {
                self.fresh.remove(&old);
            }
        }
    }

    /// Compares an incoming object with what this node holds (store or pointer) for its key.
    fn compare(&self, object: &PastObject) -> Option<Result<Stored, ()>> {
        let key = object.key();
        let (owner, version, hash) = match (self.index.get(&key), self.pointers.get(&key)) {
            (Some(m), _) => (m.owner, m.version, m.hash),
            (None, Some(p)) => (p.owner, p.version, p.hash),
            (None, None) => return None,
        };
        Some(match (owner, object.owner()) {
            (None, None) => Ok(Stored::Already),
            (Some(a), Some(b)) if a == b => {
                if object.version() < version {
                    Ok(Stored::Refused(InsertFailure::StaleVersion))
                } else if object.version() == version {
                    if object.hash() == hash {
                        Ok(Stored::Already)
                    } else {
                        Ok(Stored::Refused(InsertFailure::VersionConflict))
                    }
                } else {
                    Err(()) // a newer version: replace
                }
            }
            _ => Ok(Stored::Refused(InsertFailure::NotOwner)),
        })
    }

    /// Verifies and stores a primary replica, replacing an older version of an owned
    /// object. `slack`: how far beyond the k closest this node may be by its own view.
    fn store_replica(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        k: u8,
        object: &PastObject,
        slack: usize,
    ) -> Stored {
        if let Err(e) = object.verify(self.cfg.max_object_bytes) {
            self.stats.bad_objects += 1;
            return Stored::Refused(match e {
                crate::ObjectError::TooLarge { size, max } => InsertFailure::TooLarge { size, max },
                _ => InsertFailure::InvalidObject,
            });
        }
        let key = object.key();
        let k = k.clamp(1, self.cfg.max_replicas as u8);
        let me = ctx.local_handle();
        if !ctx
            .replica_set(key, usize::from(k) + slack)
            .iter()
            .any(|h| h.id == me.id)
        {
            return Stored::Refused(InsertFailure::NotResponsible);
        }
        let replacing = match self.compare(object) {
            None => false,
            Some(Ok(s)) => return s,
            Some(Err(())) => true,
        };
        let rec = Record {
            diverted_for: None,
            k,
            object: object.clone(),
        };
        let size = codec::encode_record(&rec).len() as u64;
        let freed = match self.index.get(&key) {
            Some(m) if m.diverted_for.is_none() => m.size,
            _ => 0,
        };
        if !self.fits(size, freed, self.cfg.t_pri) {
            self.stats.refused_no_space += 1;
            if replacing {
                return Stored::Refused(InsertFailure::NoSpace);
            }
            return Stored::NeedsDiversion;
        }
        if !self.put_record(key, &rec) {
            return Stored::Refused(InsertFailure::StoreError);
        }
        self.cache.remove(key);
        if let Some(p) = self.pointers.remove(&key) {
            // The new version lives here now; the diverted old one can go.
            self.send(ctx, p.holder, &PastMessage::Discard { key });
        }
        if replacing {
            Stored::Already
        } else {
            Stored::Fresh
        }
    }

    // ---- sending ----

    fn send(&mut self, ctx: &mut AppContext<'_, A>, to: NodeHandle<A>, msg: &PastMessage<A>) {
        let b = codec::encode(msg);
        if matches!(
            msg,
            PastMessage::SyncDigest { .. }
                | PastMessage::SyncData { .. }
                | PastMessage::HandoffOffer { .. }
                | PastMessage::HandoffReply { .. }
                | PastMessage::HandoffData { .. }
        ) {
            self.stats.maintenance_messages_sent += 1;
            self.stats.maintenance_bytes_sent += b.len() as u64;
        }
        ctx.send_direct(to, b);
    }

    // ---- insert: root side ----

    fn on_insert(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        d_key: NodeId,
        client: NodeHandle<A>,
        request: u64,
        k: u8,
        object: PastObject,
    ) {
        let key = object.key();
        let reply = |this: &mut Self, ctx: &mut AppContext<'_, A>, f: InsertFailure| {
            this.send(
                ctx,
                client,
                &PastMessage::InsertResult {
                    request,
                    key,
                    failure: Some(f),
                    holders: Vec::new(),
                },
            );
        };
        if let Err(e) = object.verify(self.cfg.max_object_bytes) {
            self.stats.bad_objects += 1;
            let f = match e {
                crate::ObjectError::TooLarge { size, max } => InsertFailure::TooLarge { size, max },
                _ => InsertFailure::InvalidObject,
            };
            return reply(self, ctx, f);
        }
        if key != d_key {
            self.stats.bad_objects += 1;
            return reply(self, ctx, InsertFailure::InvalidObject);
        }
        if self.root_dedup.contains_key(&(client.id, request)) {
            return; // a retry of an insert still in progress
        }
        if self.roots.len() >= self.cfg.max_pending_inserts {
            return reply(self, ctx, InsertFailure::Busy);
        }
        let k = k.clamp(1, self.cfg.max_replicas as u8);
        let set = ctx.replica_set(key, usize::from(k));
        self.next_local = (self.next_local + 1) & ID_MASK;
        let id = self.next_local;
        self.roots.insert(
            id,
            RootInsert {
                client,
                client_request: request,
                key,
                hash: object.hash(),
                waiting: set.clone(),
                acked: Vec::new(),
            },
        );
        self.root_dedup.insert((client.id, request), id);
        let msg = PastMessage::Replicate { id, k, object };
        for h in set {
            self.send(ctx, h, &msg);
        }
        ctx.set_timer(self.cfg.replicate_timeout, token(T_ROOT, 0, id));
    }

    fn on_replicate_ack(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        id: u64,
        key: NodeId,
        status: ReplicaStatus,
    ) {
        let Some(r) = self.roots.get_mut(&id) else {
            return;
        };
        let Some(pos) = r.waiting.iter().position(|h| h.id == from.id) else {
            return;
        };
        if r.key != key {
            self.stats.bad_messages += 1;
            return;
        }
        r.waiting.remove(pos);
        match status {
            ReplicaStatus::Stored { fresh } | ReplicaStatus::Diverted { fresh } => {
                r.acked.push((from, fresh));
                if r.waiting.is_empty() {
                    self.finish_root(ctx, id, None);
                }
            }
            ReplicaStatus::Refused(f) => self.finish_root(ctx, id, Some(f)),
        }
    }

    fn finish_root(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        id: u64,
        failure: Option<InsertFailure>,
    ) {
        let Some(r) = self.roots.remove(&id) else {
            return;
        };
        self.root_dedup.remove(&(r.client.id, r.client_request));
        if failure.is_some() {
            for (h, fresh) in &r.acked {
                if *fresh {
                    self.send(
                        ctx,
                        *h,
                        &PastMessage::Abort {
                            key: r.key,
                            hash: r.hash,
                        },
                    );
                }
            }
        }
        let mut holders: Vec<NodeHandle<A>> = r.acked.iter().map(|(h, _)| *h).collect();
        holders.sort_by(|a, b| r.key.cmp_closeness(a.id, b.id));
        if failure.is_some() {
            holders.clear();
        }
        self.send(
            ctx,
            r.client,
            &PastMessage::InsertResult {
                request: r.client_request,
                key: r.key,
                failure,
                holders,
            },
        );
    }

    // ---- insert: replica side ----

    fn on_replicate(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        root: NodeHandle<A>,
        id: u64,
        k: u8,
        object: PastObject,
    ) {
        let key = object.key();
        let status = match self.store_replica(ctx, k, &object, REPLICATE_SLACK) {
            Stored::Fresh => {
                self.remember_fresh(key, object.hash());
                ReplicaStatus::Stored { fresh: true }
            }
            Stored::Already => {
                if self.pointers.contains_key(&key) {
                    ReplicaStatus::Diverted { fresh: false }
                } else {
                    ReplicaStatus::Stored { fresh: false }
                }
            }
            Stored::Refused(f) => ReplicaStatus::Refused(f),
            Stored::NeedsDiversion => {
                if !self.start_diversion(ctx, k, object, Some((root, id))) {
                    ReplicaStatus::Refused(InsertFailure::NoSpace)
                } else {
                    return; // answered when the diversion settles
                }
            }
        };
        self.send(ctx, root, &PastMessage::ReplicateAck { id, key, status });
    }

    fn on_abort(&mut self, ctx: &mut AppContext<'_, A>, key: NodeId, hash: [u8; 32]) {
        if self.fresh.get(&key) != Some(&hash) {
            return;
        }
        self.fresh.remove(&key);
        if self
            .index
            .get(&key)
            .is_some_and(|m| m.diverted_for.is_none() && m.hash == hash)
        {
            self.remove_record(key);
        }
        if let Some(p) = self.pointers.get(&key).copied()
            && p.hash == hash
        {
            self.pointers.remove(&key);
            self.send(ctx, p.holder, &PastMessage::Discard { key });
        }
    }

    // ---- replica diversion ----

    /// Starts diverting a replica to a leaf-set member outside the replica set; false when
    /// no diversion is possible (no candidate, limits reached).
    fn start_diversion(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        k: u8,
        object: PastObject,
        reply: Option<(NodeHandle<A>, u64)>,
    ) -> bool {
        if self.cfg.diversion_attempts == 0
            || self.diversions.len() >= self.cfg.max_pending_diversions
            || self.pointers.len() >= self.cfg.max_pointers
        {
            return false;
        }
        let key = object.key();
        if self
            .diversions
            .values()
            .any(|d| d.object.key() == key && d.reply.is_none() && reply.is_none())
        {
            return false; // maintenance already diverting this key
        }
        let Some(target) = self.diversion_candidate(ctx, key, k, &[]) else {
            return false;
        };
        self.next_local = (self.next_local + 1) & ID_MASK;
        let id = self.next_local;
        let d = Diversion {
            k,
            object,
            tried: vec![target.id],
            target,
            attempt: 0,
            reply,
        };
        self.send_divert(ctx, id, &d);
        self.diversions.insert(id, d);
        true
    }

    fn diversion_candidate(
        &self,
        ctx: &AppContext<'_, A>,
        key: NodeId,
        k: u8,
        tried: &[NodeId],
    ) -> Option<NodeHandle<A>> {
        let set: Vec<NodeId> = ctx
            .replica_set(key, usize::from(k))
            .iter()
            .map(|h| h.id)
            .collect();
        let mut c: Vec<NodeHandle<A>> = ctx
            .neighbor_set(usize::MAX)
            .into_iter()
            .filter(|h| !set.contains(&h.id) && !tried.contains(&h.id))
            .collect();
        // Each diverting node orders the candidates by its own hash, so the k replica nodes
        // of a key, diverting at once, ask different members first.
        let me = ctx.local_handle().id;
        c.sort_by_key(|h| spread(me, h.id, key));
        c.first().copied()
    }

    fn send_divert(&mut self, ctx: &mut AppContext<'_, A>, id: u64, d: &Diversion<A>) {
        let msg = PastMessage::Divert {
            id,
            k: d.k,
            object: d.object.clone(),
        };
        self.send(ctx, d.target, &msg);
        ctx.set_timer(self.cfg.diversion_timeout, token(T_DIVERT, d.attempt, id));
    }

    /// The current target refused or did not answer: try the next, or give up.
    fn diversion_next(&mut self, ctx: &mut AppContext<'_, A>, id: u64) {
        let Some(mut d) = self.diversions.remove(&id) else {
            return;
        };
        d.attempt += 1;
        let key = d.object.key();
        if (d.attempt as usize) < self.cfg.diversion_attempts
            && let Some(t) = self.diversion_candidate(ctx, key, d.k, &d.tried)
        {
            d.target = t;
            d.tried.push(t.id);
            self.send_divert(ctx, id, &d);
            self.diversions.insert(id, d);
            return;
        }
        if let Some((root, rid)) = d.reply {
            self.send(
                ctx,
                root,
                &PastMessage::ReplicateAck {
                    id: rid,
                    key,
                    status: ReplicaStatus::Refused(InsertFailure::NoSpace),
                },
            );
        }
    }

    fn on_divert_ack(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        id: u64,
        key: NodeId,
        ok: bool,
    ) {
        let Some(d) = self.diversions.get(&id) else {
            return;
        };
        if d.target.id != from.id || d.object.key() != key {
            return;
        }
        if !ok {
            return self.diversion_next(ctx, id);
        }
        let d = self.diversions.remove(&id).expect("present");
        self.stats.replica_diversions += 1;
        let obj = &d.object;
        self.pointers.insert(
            key,
            Pointer {
                holder: from,
                version: obj.version(),
                k: d.k,
                owner: obj.owner(),
                hash: obj.hash(),
            },
        );
        if let Some((root, rid)) = d.reply {
            self.remember_fresh(key, obj.hash());
            self.send(
                ctx,
                root,
                &PastMessage::ReplicateAck {
                    id: rid,
                    key,
                    status: ReplicaStatus::Diverted { fresh: true },
                },
            );
        }
    }

    fn on_divert(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        id: u64,
        k: u8,
        object: PastObject,
    ) {
        let key = object.key();
        let ok = if object.verify(self.cfg.max_object_bytes).is_err() {
            self.stats.bad_objects += 1;
            false
        } else if let Some(m) = self.index.get(&key) {
            // One diverted replica per node (the paper's rule): another diverter must pick
            // another member, or the k replicas would collapse into fewer copies. A repeat
            // from the same diverter is accepted again.
            m.diverted_for == Some(from.id) && m.hash == object.hash()
        } else {
            let rec = Record {
                diverted_for: Some(from.id),
                k: k.clamp(1, self.cfg.max_replicas as u8),
                object,
            };
            let size = codec::encode_record(&rec).len() as u64;
            if self.fits(size, 0, self.cfg.t_div) {
                self.put_record(key, &rec)
            } else {
                self.stats.refused_no_space += 1;
                false
            }
        };
        self.send(ctx, from, &PastMessage::DivertAck { id, key, ok });
    }

    fn on_discard(&mut self, from: NodeHandle<A>, key: NodeId) {
        if self
            .index
            .get(&key)
            .is_some_and(|m| m.diverted_for == Some(from.id))
        {
            self.remove_record(key);
        }
    }

    // ---- lookups ----

    /// Answers a lookup if this node has the object; true when answered.
    fn answer_lookup(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        request: u64,
        key: NodeId,
        client: NodeHandle<A>,
        path: &[NodeHandle<A>],
    ) -> bool {
        let Some((object, from_cache)) = self.local_copy(ctx, key) else {
            return false;
        };
        if from_cache {
            self.stats.lookups_served_from_cache += 1;
        } else {
            self.stats.lookups_served_from_replica += 1;
        }
        let me = ctx.local_handle().id;
        if self.cfg.caching && self.cfg.cache_path_nodes > 0 {
            let push = PastMessage::CachePush {
                object: object.clone(),
            };
            let targets: Vec<NodeHandle<A>> = path
                .iter()
                .rev()
                .filter(|h| h.id != me && h.id != client.id)
                .take(self.cfg.cache_path_nodes)
                .copied()
                .collect();
            for h in targets {
                self.send(ctx, h, &push);
            }
        }
        self.send(
            ctx,
            client,
            &PastMessage::Found {
                request,
                from_cache,
                object,
            },
        );
        true
    }

    /// A lookup reached this node as the key's root, by relay or as a fetch.
    fn serve_lookup(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        request: u64,
        key: NodeId,
        client: NodeHandle<A>,
        relay: u8,
        path: Vec<NodeHandle<A>>,
    ) {
        if self.answer_lookup(ctx, request, key, client, &path) {
            return;
        }
        if let Some(p) = self.pointers.get(&key).copied() {
            let msg = PastMessage::Lookup {
                request,
                key,
                client,
                relay: 0,
                path,
            };
            return self.send(ctx, p.holder, &msg);
        }
        if relay > 0 {
            // Not here (yet): ask the next replica node, farther from the key than us.
            let me = ctx.local_handle().id;
            let set = ctx.replica_set(key, self.cfg.max_replicas);
            if let Some(pos) = set.iter().position(|h| h.id == me)
                && let Some(next) = set.get(pos + 1).copied()
            {
                let msg = PastMessage::Lookup {
                    request,
                    key,
                    client,
                    relay: relay - 1,
                    path,
                };
                return self.send(ctx, next, &msg);
            }
        }
        self.send(ctx, client, &PastMessage::NotFound { request, key });
    }

    fn on_found(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        request: u64,
        from_cache: bool,
        object: PastObject,
    ) {
        let key = match self.requests.get(&request).map(|o| &o.op) {
            Some(Op::Lookup { key } | Op::Fetch { key, .. }) => *key,
            _ => return, // late duplicate
        };
        if object.verify_for(key, self.cfg.max_object_bytes).is_err() {
            self.stats.bad_objects += 1;
            return; // keep waiting: another node or a retry may answer correctly
        }
        self.requests.remove(&request);
        self.stats.lookups_succeeded += 1;
        self.cache_object(ctx, object.clone());
        ctx.notify(Box::new(PastEvent::Found {
            request,
            key,
            object,
            from_cache,
            source: from,
        }));
    }

    fn on_not_found(&mut self, ctx: &mut AppContext<'_, A>, request: u64, key: NodeId) {
        match self.requests.get(&request).map(|o| &o.op) {
            Some(Op::Lookup { key: k } | Op::Fetch { key: k, .. }) if *k == key => {}
            _ => return,
        }
        let op = self.requests.remove(&request).expect("present");
        self.fail_op(ctx, request, &op.op, FailKind::NotFound);
    }

    fn on_insert_result(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        request: u64,
        key: NodeId,
        failure: Option<InsertFailure>,
        holders: Vec<NodeHandle<A>>,
    ) {
        let Some(ClientOp {
            op: Op::Insert { object, salt, .. },
            ..
        }) = self.requests.get(&request)
        else {
            return;
        };
        if object.key() != key {
            return; // an answer for an earlier salt
        }
        let salt = *salt;
        let mut op = self.requests.remove(&request).expect("present");
        match failure {
            None => {
                self.stats.inserts_succeeded += 1;
                ctx.notify(Box::new(PastEvent::Inserted {
                    request,
                    key,
                    salt,
                    holders,
                }));
            }
            Some(InsertFailure::NoSpace)
                if salt < self.cfg.file_diversion_retries
                    && matches!(op.op, Op::Insert { named: Some(_), .. }) =>
            {
                // File diversion: the same named object under the next salt's key.
                if let Op::Insert {
                    object,
                    named: Some(n),
                    salt,
                    ..
                } = &mut op.op
                {
                    *salt += 1;
                    let key = named_key(&n.signer.verifying_key(), &n.name, *salt);
                    *object = PastObject::signed(&n.signer, key, n.version, n.content.clone());
                }
                op.attempt = 0;
                self.stats.file_diversions += 1;
                self.send_op(ctx, request, &op);
                self.requests.insert(request, op);
            }
            // The root's view of the replica set and a replica's disagreed (leaf sets in
            // flux), or the root was overloaded or missed an acknowledgement: these pass,
            // so the insert is tried again after a backoff, within the request's retries.
            Some(InsertFailure::NotResponsible | InsertFailure::Busy | InsertFailure::Timeout)
                if op.attempt < self.cfg.request_retries =>
            {
                op.attempt += 1;
                self.stats.insert_retries += 1;
                let backoff = self.cfg.retry_backoff * (1 << (op.attempt - 1).min(10));
                ctx.set_timer(backoff, token(T_RESEND, op.attempt, request));
                self.requests.insert(request, op);
            }
            Some(reason) => {
                self.stats.inserts_failed += 1;
                ctx.notify(Box::new(PastEvent::<A>::InsertFailed {
                    request,
                    key,
                    reason,
                }));
            }
        }
    }

    fn on_handles(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        request: u64,
        key: NodeId,
        handles: Vec<NodeHandle<A>>,
    ) {
        match self.requests.get(&request).map(|o| &o.op) {
            Some(Op::Handles { key: k, .. }) if *k == key => {}
            _ => return,
        }
        self.requests.remove(&request);
        ctx.notify(Box::new(PastEvent::Handles {
            request,
            key,
            handles,
        }));
    }

    fn on_cache_push(&mut self, ctx: &mut AppContext<'_, A>, object: PastObject) {
        if !self.cfg.caching {
            return;
        }
        if object.verify(self.cfg.max_object_bytes).is_err() {
            self.stats.bad_objects += 1;
            return;
        }
        self.cache_object(ctx, object);
    }

    // ---- maintenance ----

    fn schedule_sync(&mut self, ctx: &mut AppContext<'_, A>, delay: core::time::Duration) {
        let at = ctx.now() + delay;
        if self.sync.scheduled_at.is_some_and(|t| t <= at) {
            return;
        }
        self.sync.generation = (self.sync.generation + 1) & ID_MASK;
        self.sync.scheduled_at = Some(at);
        ctx.set_timer(delay, token(T_SYNC, 0, self.sync.generation));
    }

    fn sync_timer(&mut self, ctx: &mut AppContext<'_, A>, generation: u64) {
        if generation != self.sync.generation {
            return;
        }
        self.sync.scheduled_at = None;
        let unfinished = self.sync_round(ctx);
        let d = if unfinished {
            self.cfg.sync_batch_delay
        } else {
            self.cfg.sync_interval
        };
        self.schedule_sync(ctx, d);
    }

    /// Keys held (store and pointers) on the clockwise arc [from, to], in clockwise order.
    fn held_in_arc(
        &self,
        from: NodeId,
        to: NodeId,
        limit: usize,
        with_pointers: bool,
    ) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = arc(&self.index, from, to).take(limit).collect();
        if with_pointers {
            v.extend(arc(&self.pointers, from, to).take(limit));
            v.sort_by_key(|k| from.cw_distance(*k));
            v.dedup();
            v.truncate(limit);
        }
        v
    }

    /// One maintenance round; true when the sweep over the key range is not finished.
    fn sync_round(&mut self, ctx: &mut AppContext<'_, A>) -> bool {
        self.sync.round += 1;
        let round = self.sync.round;
        let me = ctx.local_handle();
        let limit = self.cfg.sync_max_keys;
        let mut unfinished = false;

        // Pull: a digest of one chunk of our range to the neighbours sharing it.
        let mut rank = self.cfg.max_replicas - 1;
        let range = loop {
            if let Some(r) = ctx.range(&me, rank) {
                break Some(r);
            }
            if rank == 0 {
                break None;
            }
            rank -= 1;
        };
        if let Some((from, to)) = range {
            let s = &mut self.sync;
            let start = match s.last {
                Some((lo, _, _)) if s.incomplete && s.repeats < MAX_CHUNK_REPEATS => {
                    s.repeats += 1;
                    lo
                }
                Some((_, hi, false)) => {
                    s.repeats = 0;
                    hi.wrapping_add(1)
                }
                _ => {
                    s.repeats = 0;
                    from
                }
            };
            let start = if NodeId::in_cw_arc(start, from, to) {
                start
            } else {
                from
            };
            let keys = self.held_in_arc(start, to, limit, true);
            let (hi, done) = match keys.last() {
                Some(&last) if keys.len() >= limit => (last, last == to),
                _ => (to, true),
            };
            let entries: Vec<(NodeId, u64)> = keys
                .iter()
                .map(|k| {
                    let v = self
                        .index
                        .get(k)
                        .map(|m| m.version)
                        .or_else(|| self.pointers.get(k).map(|p| p.version))
                        .unwrap_or(0);
                    (*k, v)
                })
                .collect();
            self.sync.last = Some((start, hi, done));
            self.sync.incomplete = false;
            unfinished = !done;
            let peers: Vec<NodeHandle<A>> = ctx
                .neighbor_set(2 * rank.max(1))
                .into_iter()
                .filter(|h| h.id != me.id)
                .collect();
            let msg = PastMessage::SyncDigest {
                round,
                lo: start,
                hi,
                entries,
            };
            for p in peers {
                self.send(ctx, p, &msg);
            }
        }

        // Hand-off: keys we hold but are no longer a replica node of.
        self.sync.handoff.clear();
        self.sync.pushed.clear();
        let cursor = self.sync.handoff_cursor;
        let scan: Vec<NodeId> = arc(&self.index, cursor, cursor.wrapping_add(u128::MAX))
            .take(limit)
            .collect();
        self.sync.handoff_cursor = match scan.last() {
            Some(&l) if scan.len() >= limit => l.wrapping_add(1),
            _ => NodeId::ZERO,
        };
        let mut candidates: Vec<(NodeId, u64, u8, Option<NodeHandle<A>>)> = scan
            .iter()
            .filter_map(|k| {
                let m = self.index.get(k)?;
                m.diverted_for
                    .is_none()
                    .then_some((*k, m.version, m.k, None))
            })
            .collect();
        candidates.extend(
            self.pointers
                .iter()
                .take(limit)
                .map(|(k, p)| (*k, p.version, p.k, Some(p.holder))),
        );
        let mut offers: BTreeMap<NodeHandle<A>, Vec<(NodeId, u64)>> = BTreeMap::new();
        for (key, version, k, pointer) in candidates {
            let set = ctx.replica_set(key, usize::from(k));
            if set.iter().any(|h| h.id == me.id) {
                continue;
            }
            for h in &set {
                offers.entry(*h).or_default().push((key, version));
            }
            self.sync.handoff.insert(
                key,
                HandoffEntry {
                    version,
                    need: set.iter().map(|h| h.id).collect(),
                    confirmed: BTreeSet::new(),
                    pointer,
                },
            );
        }
        for (h, mut entries) in offers {
            entries.truncate(codec::MAX_LIST);
            self.send(ctx, h, &PastMessage::HandoffOffer { round, entries });
        }
        unfinished
    }

    fn on_sync_digest(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        round: u64,
        lo: NodeId,
        hi: NodeId,
        entries: Vec<(NodeId, u64)>,
    ) {
        let theirs: BTreeMap<NodeId, u64> = entries.into_iter().collect();
        let scan_limit = self.cfg.sync_max_keys * SCAN_FACTOR;
        let scan = self.held_in_arc(lo, hi, scan_limit, false);
        let mut complete = scan.len() < scan_limit;
        let mut items = Vec::new();
        let mut bytes = 0usize;
        for key in scan {
            let Some(m) = self.index.get(&key).copied() else {
                continue;
            };
            if theirs.get(&key).is_some_and(|&v| v >= m.version) {
                continue;
            }
            if !ctx
                .replica_set(key, usize::from(m.k))
                .iter()
                .any(|h| h.id == from.id)
            {
                continue;
            }
            if !items.is_empty() && bytes + m.size as usize > self.cfg.sync_max_bytes
                || items.len() >= codec::MAX_LIST
            {
                complete = false;
                break;
            }
            let Some(r) = self.load(key) else {
                continue;
            };
            bytes += m.size as usize;
            items.push((m.k, r.object));
        }
        // Nothing missing and nothing more to look at: silence is the answer (an empty
        // complete `SyncData` changes nothing at the sender). Halves idle maintenance.
        if items.is_empty() && complete {
            return;
        }
        self.send(
            ctx,
            from,
            &PastMessage::SyncData {
                round,
                complete,
                items,
            },
        );
    }

    /// Stores a replica received through maintenance, diverting it if there is no room.
    fn accept_maintained(&mut self, ctx: &mut AppContext<'_, A>, k: u8, object: PastObject) {
        match self.store_replica(ctx, k, &object, 0) {
            Stored::Fresh => self.stats.maintenance_objects_received += 1,
            Stored::NeedsDiversion => {
                self.start_diversion(ctx, k, object, None);
            }
            Stored::Already | Stored::Refused(_) => {}
        }
    }

    fn on_sync_data(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        round: u64,
        complete: bool,
        items: Vec<(u8, PastObject)>,
    ) {
        if round == self.sync.round && !complete {
            self.sync.incomplete = true;
            let d = self.cfg.sync_batch_delay;
            self.schedule_sync(ctx, d);
        }
        for (k, o) in items {
            self.accept_maintained(ctx, k, o);
        }
    }

    fn on_handoff_offer(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        round: u64,
        entries: Vec<(NodeId, u64)>,
    ) {
        let me = ctx.local_handle().id;
        let (mut have, mut want) = (Vec::new(), Vec::new());
        for (key, version) in entries {
            let held = match (self.index.get(&key), self.pointers.get(&key)) {
                (Some(m), _) => Some(m.version),
                // A pointer to the offering node itself is no copy: it would let the
                // diverted holder drop the only replica we point at.
                (None, Some(p)) if p.holder.id != from.id => Some(p.version),
                _ => None,
            };
            match held {
                Some(v) if v >= version => have.push(key),
                _ => {
                    if ctx
                        .replica_set(key, self.cfg.max_replicas)
                        .iter()
                        .any(|h| h.id == me)
                    {
                        want.push(key);
                    }
                }
            }
        }
        self.send(ctx, from, &PastMessage::HandoffReply { round, have, want });
    }

    fn on_handoff_reply(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        round: u64,
        have: Vec<NodeId>,
        want: Vec<NodeId>,
    ) {
        if round != self.sync.round {
            return;
        }
        for key in have {
            let Some(e) = self.sync.handoff.get_mut(&key) else {
                continue;
            };
            if !e.need.contains(&from.id) {
                continue;
            }
            e.confirmed.insert(from.id);
            if e.need.iter().all(|n| e.confirmed.contains(n)) {
                let e = self.sync.handoff.remove(&key).expect("present");
                self.stats.replicas_dropped += 1;
                match e.pointer {
                    Some(holder) => {
                        if self
                            .pointers
                            .get(&key)
                            .is_some_and(|p| p.version == e.version)
                        {
                            self.pointers.remove(&key);
                            self.send(ctx, holder, &PastMessage::Discard { key });
                        }
                    }
                    None => {
                        if let Some(r) = self.load(key)
                            && r.object.version() == e.version
                        {
                            self.remove_record(key);
                            self.cache_object(ctx, r.object);
                        }
                    }
                }
            }
        }
        let mut items = Vec::new();
        let mut bytes = self.sync.pushed.get(&from.id).copied().unwrap_or(0);
        for key in want {
            let ok = self
                .sync
                .handoff
                .get(&key)
                .is_some_and(|e| e.pointer.is_none() && e.need.contains(&from.id));
            if !ok {
                continue;
            }
            let Some(m) = self.index.get(&key).copied() else {
                continue;
            };
            if bytes + m.size as usize > self.cfg.sync_max_bytes && bytes > 0 {
                break;
            }
            if let Some(r) = self.load(key) {
                bytes += m.size as usize;
                items.push((m.k, r.object));
            }
        }
        self.sync.pushed.insert(from.id, bytes);
        if !items.is_empty() {
            self.send(ctx, from, &PastMessage::HandoffData { items });
            // Ask again soon: the receiver confirms in the next round and we can drop.
            let d = self.cfg.sync_batch_delay;
            self.schedule_sync(ctx, d);
        }
    }

    // ---- dispatch ----

    fn handle(
        &mut self,
        ctx: &mut AppContext<'_, A>,
        from: NodeHandle<A>,
        msg: PastMessage<A>,
        routed: Option<NodeId>,
    ) {
        match (msg, routed) {
            (PastMessage::Insert { request, k, object }, Some(key)) => {
                self.on_insert(ctx, key, from, request, k, object)
            }
            (
                PastMessage::Lookup {
                    request,
                    key,
                    relay,
                    path,
                    client,
                },
                r,
            ) => {
                if r.is_some_and(|k| k != key) {
                    self.stats.bad_messages += 1;
                    return;
                }
                // A routed lookup answers its origin; a relayed one the client it names.
                let client = if r.is_some() { from } else { client };
                let relay = relay.min(self.relay_budget());
                self.serve_lookup(ctx, request, key, client, relay, path)
            }
            (PastMessage::LookupHandles { request, key, max }, Some(k)) if k == key => {
                let mut handles = ctx.replica_set(key, usize::from(max).min(self.cfg.max_replicas));
                handles.truncate(MAX_HANDLES);
                self.send(
                    ctx,
                    from,
                    &PastMessage::Handles {
                        request,
                        key,
                        handles,
                    },
                );
            }
            (
                PastMessage::InsertResult {
                    request,
                    key,
                    failure,
                    holders,
                },
                None,
            ) => self.on_insert_result(ctx, request, key, failure, holders),
            (PastMessage::Replicate { id, k, object }, None) => {
                self.on_replicate(ctx, from, id, k, object)
            }
            (PastMessage::ReplicateAck { id, key, status }, None) => {
                self.on_replicate_ack(ctx, from, id, key, status)
            }
            (PastMessage::Abort { key, hash }, None) => self.on_abort(ctx, key, hash),
            (PastMessage::Divert { id, k, object }, None) => {
                self.on_divert(ctx, from, id, k, object)
            }
            (PastMessage::DivertAck { id, key, ok }, None) => {
                self.on_divert_ack(ctx, from, id, key, ok)
            }
            (PastMessage::Discard { key }, None) => self.on_discard(from, key),
            (
                PastMessage::Found {
                    request,
                    from_cache,
                    object,
                },
                None,
            ) => self.on_found(ctx, from, request, from_cache, object),
            (PastMessage::NotFound { request, key }, None) => self.on_not_found(ctx, request, key),
            (
                PastMessage::Handles {
                    request,
                    key,
                    handles,
                },
                None,
            ) => self.on_handles(ctx, request, key, handles),
            (PastMessage::CachePush { object }, None) => self.on_cache_push(ctx, object),
            (
                PastMessage::SyncDigest {
                    round,
                    lo,
                    hi,
                    entries,
                },
                None,
            ) => self.on_sync_digest(ctx, from, round, lo, hi, entries),
            (
                PastMessage::SyncData {
                    round,
                    complete,
                    items,
                },
                None,
            ) => self.on_sync_data(ctx, round, complete, items),
            (PastMessage::HandoffOffer { round, entries }, None) => {
                self.on_handoff_offer(ctx, from, round, entries)
            }
            (PastMessage::HandoffReply { round, have, want }, None) => {
                self.on_handoff_reply(ctx, from, round, have, want)
            }
            (PastMessage::HandoffData { items }, None) => {
                for (k, o) in items {
                    self.accept_maintained(ctx, k, o);
                }
            }
            // A message that makes no sense on this path (a routed reply, say).
            _ => self.stats.bad_messages += 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum FailKind {
    Busy,
    Timeout,
    NotFound,
}

fn meta_of(r: &Record, size: u64) -> Meta {
    Meta {
        version: r.object.version(),
        size,
        k: r.k,
        owner: r.object.owner(),
        hash: r.object.hash(),
        diverted_for: r.diverted_for,
    }
}

/// A per-(diverter, candidate, key) pseudo-random rank.
fn spread(me: NodeId, candidate: NodeId, key: NodeId) -> [u8; 8] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(me.to_bytes());
    h.update(candidate.to_bytes());
    h.update(key.to_bytes());
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// Keys of `map` on the clockwise arc [from, to], in clockwise order.
fn arc<V>(
    map: &BTreeMap<NodeId, V>,
    from: NodeId,
    to: NodeId,
) -> impl Iterator<Item = NodeId> + '_ {
    let (a, b) = if from <= to {
        (map.range(from..=to), map.range(NodeId::MAX..NodeId::MAX))
    } else {
        (map.range(from..), map.range(..=to))
    };
    a.chain(b).map(|(k, _)| *k)
}

impl<A: Address> Application<A> for Past<A> {
    fn deliver(&mut self, ctx: &mut AppContext<'_, A>, msg: Delivery<A>) {
        match codec::decode::<A>(&msg.data) {
            Ok(m) => self.handle(ctx, msg.origin, m, Some(msg.key)),
            Err(_) => self.stats.bad_messages += 1,
        }
    }

    fn forward(&mut self, ctx: &mut AppContext<'_, A>, msg: Forward<'_, A>) -> ForwardAction {
        let m = match codec::decode::<A>(msg.data) {
            Ok(m) => m,
            Err(_) => {
                self.stats.bad_messages += 1;
                return ForwardAction::Drop;
            }
        };
        let PastMessage::Lookup {
            request,
            key,
            relay,
            mut path,
            ..
        } = m
        else {
            return ForwardAction::Continue;
        };
        if key != msg.key {
            self.stats.bad_messages += 1;
            return ForwardAction::Drop;
        }
        let client = msg.origin;
        if msg.hops > 0 && self.answer_lookup(ctx, request, key, client, &path) {
            return ForwardAction::Consumed;
        }
        let me = ctx.local_handle();
        if msg.hops > 0 && path.len() < MAX_PATH {
            path.push(me);
            *msg.data = codec::encode(&PastMessage::Lookup {
                request,
                key,
                client,
                relay,
                path,
            });
        }
        ForwardAction::Continue
    }

    fn update(&mut self, ctx: &mut AppContext<'_, A>, handle: NodeHandle<A>, joined: bool) {
        self.start(ctx);
        if !joined {
            // Pointers to a node that left our leaf set are no longer trusted: the replica
            // is pulled again (or diverted anew) by maintenance.
            self.pointers.retain(|_, p| p.holder.id != handle.id);
            // Replicas held for a node that left become ordinary replicas: the hand-off
            // gives them to the current replica nodes before dropping them.
            let orphans: Vec<NodeId> = self
                .index
                .iter()
                .filter(|(_, m)| m.diverted_for == Some(handle.id))
                .map(|(k, _)| *k)
                .collect();
            for key in orphans {
                if let Some(mut r) = self.load(key) {
                    r.diverted_for = None;
                    self.put_record(key, &r);
                }
            }
        }
        let d = self.cfg.update_sync_delay;
        self.schedule_sync(ctx, d);
    }

    fn direct(&mut self, ctx: &mut AppContext<'_, A>, from: NodeHandle<A>, data: Bytes) {
        match codec::decode::<A>(&data) {
            Ok(m) => self.handle(ctx, from, m, None),
            Err(_) => self.stats.bad_messages += 1,
        }
    }

    fn timer(&mut self, ctx: &mut AppContext<'_, A>, token: u64) {
        let kind = token >> 56;
        let attempt = ((token >> 48) & 0xff) as u32;
        let id = token & ID_MASK;
        match kind {
            T_CLIENT => self.client_timer(ctx, attempt, id),
            T_RESEND => {
                if let Some(op) = self.requests.remove(&id) {
                    if op.attempt & 0xff == attempt {
                        self.send_op(ctx, id, &op);
                    }
                    self.requests.insert(id, op);
                }
            }
            T_ROOT => self.finish_root(ctx, id, Some(InsertFailure::Timeout)),
            T_DIVERT
                if self
                    .diversions
                    .get(&id)
                    .is_some_and(|d| d.attempt & 0xff == attempt) =>
            {
                self.diversion_next(ctx, id)
            }
            T_SYNC => self.sync_timer(ctx, id),
            _ => {}
        }
    }
}
