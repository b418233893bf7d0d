//! PAST's own messages ([`PastMessage`]) and their versioned binary encoding.
//!
//! Every message is one frame carried as the payload of a pastry-core routed or direct
//! message: magic `"PA"`, version byte [`VERSION`], type byte, then the body. Integers are
//! big-endian fixed width, lists carry a u16 count checked against its bound and against
//! the remaining input before anything is allocated, objects a u32 length bounded by
//! [`MAX_OBJECT_WIRE`]. Decoding never panics; it rejects unknown versions and types,
//! over-long lists, impossible values and trailing bytes with a
//! [`pastry_core::codec::DecodeError`]. Receivers drop such input and count it.

use bytes::Bytes;
use pastry_core::codec::{DecodeError, Reader};
use pastry_core::{Address, NodeHandle, NodeId};

use crate::event::InsertFailure;
use crate::object::{Certificate, PastObject};

/// The frame's first two bytes.
pub const MAGIC: [u8; 2] = *b"PA";
/// The wire version this build speaks.
pub const VERSION: u8 = 1;
/// Largest object content on the wire (the configured limit is usually smaller).
pub const MAX_OBJECT_WIRE: usize = 16 << 20;
/// Longest key list (digests, hand-off offers, object batches).
pub const MAX_LIST: usize = 4096;
/// Longest handle list (replica holders, lookup path).
pub const MAX_HANDLES: usize = 64;
/// Longest recorded lookup path.
pub const MAX_PATH: usize = 16;

/// How a replica node answered the root of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaStatus {
    /// Stored here; `fresh` when it was not here before this insert.
    Stored {
        /// Newly stored by this insert.
        fresh: bool,
    },
    /// Stored on a leaf-set member by replica diversion; this node keeps a pointer.
    Diverted {
        /// Newly stored by this insert.
        fresh: bool,
    },
    /// Refused.
    Refused(InsertFailure),
}

/// A PAST message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PastMessage<A> {
    /// Client -> root (routed to the key): store `object` on `k` replicas.
    Insert {
        /// The client's request id.
        request: u64,
        /// Replicas wanted.
        k: u8,
        /// The object.
        object: PastObject,
    },
    /// Root -> client (direct): the insert's outcome.
    InsertResult {
        /// The client's request id.
        request: u64,
        /// The key.
        key: NodeId,
        /// `None` on success.
        failure: Option<InsertFailure>,
        /// The replica nodes that acknowledged.
        holders: Vec<NodeHandle<A>>,
    },
    /// Root -> replica node (direct): store this replica.
    Replicate {
        /// The root's id for this insert.
        id: u64,
        /// Replicas of the object.
        k: u8,
        /// The object.
        object: PastObject,
    },
    /// Replica node -> root: the answer to `Replicate`.
    ReplicateAck {
        /// The root's id.
        id: u64,
        /// The key.
        key: NodeId,
        /// The answer.
        status: ReplicaStatus,
    },
    /// Root -> replica nodes: the insert failed; drop the fresh copy of this content.
    Abort {
        /// The key.
        key: NodeId,
        /// SHA-256 of the content to drop.
        hash: [u8; 32],
    },
    /// Full replica node -> leaf-set member: hold a diverted replica for me.
    Divert {
        /// The diverting node's id for this diversion.
        id: u64,
        /// Replicas of the object.
        k: u8,
        /// The object.
        object: PastObject,
    },
    /// The answer to `Divert`.
    DivertAck {
        /// The diverting node's id.
        id: u64,
        /// The key.
        key: NodeId,
        /// Stored.
        ok: bool,
    },
    /// Pointer holder -> diverted holder: drop your diverted replica of `key`.
    Discard {
        /// The key.
        key: NodeId,
    },
    /// Client -> root (routed), or relayed directly along the replica set, or sent
    /// directly to one node (fetch, `relay` 0): find `key`.
    Lookup {
        /// The client's request id.
        request: u64,
        /// The key.
        key: NodeId,
        /// Where the answer goes.
        client: NodeHandle<A>,
        /// How many more replica nodes the request may be relayed to.
        relay: u8,
        /// Nodes the routed request passed (for caching), at most [`MAX_PATH`].
        path: Vec<NodeHandle<A>>,
    },
    /// Answer to `Lookup`: the object.
    Found {
        /// The client's request id.
        request: u64,
        /// Served from a cache.
        from_cache: bool,
        /// The object.
        object: PastObject,
    },
    /// Answer to `Lookup`: not here.
    NotFound {
        /// The client's request id.
        request: u64,
        /// The key.
        key: NodeId,
    },
    /// Client -> root (routed): who holds `key`?
    LookupHandles {
        /// The client's request id.
        request: u64,
        /// The key.
        key: NodeId,
        /// Handles wanted at most.
        max: u8,
    },
    /// Root -> client: the replica nodes.
    Handles {
        /// The client's request id.
        request: u64,
        /// The key.
        key: NodeId,
        /// The nodes, closest first.
        handles: Vec<NodeHandle<A>>,
    },
    /// A node that answered a lookup -> a node on its route: cache this object.
    CachePush {
        /// The object.
        object: PastObject,
    },
    /// Maintenance: "these are the keys (and versions) I hold in the arc [lo, hi]".
    SyncDigest {
        /// The sender's round.
        round: u64,
        /// Start of the arc (clockwise).
        lo: NodeId,
        /// End of the arc.
        hi: NodeId,
        /// The sender's keys in the arc, clockwise from `lo`, with versions.
        entries: Vec<(NodeId, u64)>,
    },
    /// Maintenance: objects the digest's sender should hold and lacks.
    SyncData {
        /// The digest's round.
        round: u64,
        /// False when more objects were left out (byte budget).
        complete: bool,
        /// (k, object) pairs.
        items: Vec<(u8, PastObject)>,
    },
    /// Maintenance: "I hold these keys but am no longer among their replica nodes; do you
    /// have them?"
    HandoffOffer {
        /// The sender's round.
        round: u64,
        /// Keys and versions.
        entries: Vec<(NodeId, u64)>,
    },
    /// The answer to `HandoffOffer`.
    HandoffReply {
        /// The offer's round.
        round: u64,
        /// Keys held (at that version or higher).
        have: Vec<NodeId>,
        /// Keys wanted.
        want: Vec<NodeId>,
    },
    /// Objects pushed after `HandoffReply::want`.
    HandoffData {
        /// (k, object) pairs.
        items: Vec<(u8, PastObject)>,
    },
}

impl<A> PastMessage<A> {
    /// The wire type byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            PastMessage::Insert { .. } => 1,
            PastMessage::InsertResult { .. } => 2,
            PastMessage::Replicate { .. } => 3,
            PastMessage::ReplicateAck { .. } => 4,
            PastMessage::Abort { .. } => 5,
            PastMessage::Divert { .. } => 6,
            PastMessage::DivertAck { .. } => 7,
            PastMessage::Discard { .. } => 8,
            PastMessage::Lookup { .. } => 9,
            PastMessage::Found { .. } => 10,
            PastMessage::NotFound { .. } => 11,
            PastMessage::LookupHandles { .. } => 12,
            PastMessage::Handles { .. } => 13,
            PastMessage::CachePush { .. } => 14,
            PastMessage::SyncDigest { .. } => 15,
            PastMessage::SyncData { .. } => 16,
            PastMessage::HandoffOffer { .. } => 17,
            PastMessage::HandoffReply { .. } => 18,
            PastMessage::HandoffData { .. } => 19,
        }
    }
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn id(&mut self, v: NodeId) {
        self.0.extend_from_slice(&v.to_bytes());
    }
    fn count(&mut self, n: usize, max: usize) {
        // Callers bound their lists; clamp so the frame always stays decodable.
        self.u16(n.min(max) as u16);
    }
    fn handle<A: Address>(&mut self, h: &NodeHandle<A>) {
        self.id(h.id);
        h.addr.encode(&mut self.0);
    }
    fn handles<A: Address>(&mut self, hs: &[NodeHandle<A>], max: usize) {
        self.count(hs.len(), max);
        for h in hs.iter().take(max) {
            self.handle(h);
        }
    }
    fn object(&mut self, o: &PastObject) {
        let c = o.certificate();
        self.u8(u8::from(c.is_some()));
        self.u32(o.content().len() as u32);
        self.0.extend_from_slice(o.content());
        if let Some(c) = c {
            self.id(c.key);
            self.0.extend_from_slice(&c.owner);
            self.u64(c.version);
            self.0.extend_from_slice(&c.content_hash);
            self.0.extend_from_slice(&c.signature);
        }
    }
    fn failure(&mut self, f: Option<InsertFailure>) {
        match f {
            None => self.u8(0),
            Some(f) => {
                self.u8(f.code());
                if let InsertFailure::TooLarge { size, max } = f {
                    self.u32(u32::try_from(size).unwrap_or(u32::MAX));
                    self.u32(u32::try_from(max).unwrap_or(u32::MAX));
                }
            }
        }
    }
    fn entries(&mut self, es: &[(NodeId, u64)]) {
        self.count(es.len(), MAX_LIST);
        for (k, v) in es.iter().take(MAX_LIST) {
            self.id(*k);
            self.u64(*v);
        }
    }
    fn keys(&mut self, ks: &[NodeId]) {
        self.count(ks.len(), MAX_LIST);
        for k in ks.iter().take(MAX_LIST) {
            self.id(*k);
        }
    }
    fn items(&mut self, items: &[(u8, PastObject)]) {
        self.count(items.len(), MAX_LIST);
        for (k, o) in items.iter().take(MAX_LIST) {
            self.u8(*k);
            self.object(o);
        }
    }
}

/// Encodes `msg` as one frame.
pub fn encode<A: Address>(msg: &PastMessage<A>) -> Bytes {
    let mut w = W(Vec::with_capacity(64));
    w.0.extend_from_slice(&MAGIC);
    w.u8(VERSION);
    w.u8(msg.type_byte());
    match msg {
        PastMessage::Insert { request, k, object } => {
            w.u64(*request);
            w.u8(*k);
            w.object(object);
        }
        PastMessage::InsertResult {
            request,
            key,
            failure,
            holders,
        } => {
            w.u64(*request);
            w.id(*key);
            w.failure(*failure);
            w.handles(holders, MAX_HANDLES);
        }
        PastMessage::Replicate { id, k, object } | PastMessage::Divert { id, k, object } => {
            w.u64(*id);
            w.u8(*k);
            w.object(object);
        }
        PastMessage::ReplicateAck { id, key, status } => {
            w.u64(*id);
            w.id(*key);
            match status {
                ReplicaStatus::Stored { fresh } => {
                    w.u8(0);
                    w.u8(u8::from(*fresh));
                }
                ReplicaStatus::Diverted { fresh } => {
                    w.u8(1);
                    w.u8(u8::from(*fresh));
                }
                ReplicaStatus::Refused(f) => {
                    w.u8(2);
                    w.failure(Some(*f));
                }
            }
        }
        PastMessage::Abort { key, hash } => {
            w.id(*key);
            w.0.extend_from_slice(hash);
        }
        PastMessage::DivertAck { id, key, ok } => {
            w.u64(*id);
            w.id(*key);
            w.u8(u8::from(*ok));
        }
        PastMessage::Discard { key } => w.id(*key),
        PastMessage::Lookup {
            request,
            key,
            client,
            relay,
            path,
        } => {
            w.u64(*request);
            w.id(*key);
            w.handle(client);
            w.u8(*relay);
            w.handles(path, MAX_PATH);
        }
        PastMessage::Found {
            request,
            from_cache,
            object,
        } => {
            w.u64(*request);
            w.u8(u8::from(*from_cache));
            w.object(object);
        }
        PastMessage::NotFound { request, key } => {
            w.u64(*request);
            w.id(*key);
        }
        PastMessage::LookupHandles { request, key, max } => {
            w.u64(*request);
            w.id(*key);
            w.u8(*max);
        }
        PastMessage::Handles {
            request,
            key,
            handles,
        } => {
            w.u64(*request);
            w.id(*key);
            w.handles(handles, MAX_HANDLES);
        }
        PastMessage::CachePush { object } => w.object(object),
        PastMessage::SyncDigest {
            round,
            lo,
            hi,
            entries,
        } => {
            w.u64(*round);
            w.id(*lo);
            w.id(*hi);
            w.entries(entries);
        }
        PastMessage::SyncData {
            round,
            complete,
            items,
        } => {
            w.u64(*round);
            w.u8(u8::from(*complete));
            w.items(items);
        }
        PastMessage::HandoffOffer { round, entries } => {
            w.u64(*round);
            w.entries(entries);
        }
        PastMessage::HandoffReply { round, have, want } => {
            w.u64(*round);
            w.keys(have);
            w.keys(want);
        }
        PastMessage::HandoffData { items } => w.items(items),
    }
    Bytes::from(w.0)
}

struct R<'a>(Reader<'a>);

impl R<'_> {
    fn id(&mut self) -> Result<NodeId, DecodeError> {
        Ok(NodeId::from_bytes(self.0.array()?))
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.0.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed("boolean")),
        }
    }
    /// A list count, checked against `max` and against the input left at `min_item`
    /// bytes per item.
    fn count(&mut self, max: usize, min_item: usize) -> Result<usize, DecodeError> {
        let n = usize::from(self.0.u16()?);
        if n > max {
            return Err(DecodeError::TooLong { len: n, max });
        }
        if n * min_item > self.0.remaining() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }
    fn handle<A: Address>(&mut self) -> Result<NodeHandle<A>, DecodeError> {
        let id = self.id()?;
        Ok(NodeHandle::new(id, A::decode(&mut self.0)?))
    }
    fn handles<A: Address>(&mut self, max: usize) -> Result<Vec<NodeHandle<A>>, DecodeError> {
        let n = self.count(max, 17)?;
        (0..n).map(|_| self.handle()).collect()
    }
    fn object(&mut self) -> Result<PastObject, DecodeError> {
        let has_cert = self.bool()?;
        let len = self.0.u32()? as usize;
        if len > MAX_OBJECT_WIRE {
            return Err(DecodeError::TooLong {
                len,
                max: MAX_OBJECT_WIRE,
            });
        }
        let content = Bytes::copy_from_slice(self.0.bytes(len)?);
        let cert = if has_cert {
            Some(Certificate {
                key: self.id()?,
                owner: self.0.array()?,
                version: self.0.u64()?,
                content_hash: self.0.array()?,
                signature: self.0.array()?,
            })
        } else {
            None
        };
        Ok(PastObject::from_parts(content, cert))
    }
    fn failure(&mut self) -> Result<Option<InsertFailure>, DecodeError> {
        let code = self.0.u8()?;
        if code == 0 {
            return Ok(None);
        }
        let f = InsertFailure::from_code(code).ok_or(DecodeError::Malformed("failure code"))?;
        Ok(Some(match f {
            InsertFailure::TooLarge { .. } => InsertFailure::TooLarge {
                size: self.0.u32()? as usize,
                max: self.0.u32()? as usize,
            },
            f => f,
        }))
    }
    fn entries(&mut self) -> Result<Vec<(NodeId, u64)>, DecodeError> {
        let n = self.count(MAX_LIST, 24)?;
        (0..n).map(|_| Ok((self.id()?, self.0.u64()?))).collect()
    }
    fn keys(&mut self) -> Result<Vec<NodeId>, DecodeError> {
        let n = self.count(MAX_LIST, 16)?;
        (0..n).map(|_| self.id()).collect()
    }
    fn items(&mut self) -> Result<Vec<(u8, PastObject)>, DecodeError> {
        let n = self.count(MAX_LIST, 6)?;
        (0..n).map(|_| Ok((self.0.u8()?, self.object()?))).collect()
    }
}

/// Version byte of a stored replica record.
const RECORD_VERSION: u8 = 1;

/// A replica record as a node keeps it in its [`crate::Store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// `Some(owner)` for a diverted replica held on behalf of `owner`.
    pub diverted_for: Option<NodeId>,
    /// Replicas of the object.
    pub k: u8,
    /// The object.
    pub object: PastObject,
}

/// Encodes a store record: version, kind (0 primary, 1 diverted), k, owner id if diverted,
/// object.
pub(crate) fn encode_record(rec: &Record) -> Bytes {
    let mut w = W(Vec::with_capacity(rec.object.encoded_len() + 20));
    w.u8(RECORD_VERSION);
    match rec.diverted_for {
        None => w.u8(0),
        Some(o) => {
            w.u8(1);
            w.id(o);
        }
    }
    w.u8(rec.k);
    w.object(&rec.object);
    Bytes::from(w.0)
}

/// Decodes a store record.
pub(crate) fn decode_record(b: &[u8]) -> Result<Record, DecodeError> {
    let mut r = R(Reader::new(b));
    let v = r.0.u8()?;
    if v != RECORD_VERSION {
        return Err(DecodeError::UnsupportedVersion(v));
    }
    let diverted_for = match r.0.u8()? {
        0 => None,
        1 => Some(r.id()?),
        _ => return Err(DecodeError::Malformed("record kind")),
    };
    let rec = Record {
        diverted_for,
        k: r.0.u8()?,
        object: r.object()?,
    };
    if !r.0.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(rec)
}

/// Decodes one frame.
///
/// # Errors
/// [`DecodeError`] naming the first problem; never panics.
pub fn decode<A: Address>(frame: &[u8]) -> Result<PastMessage<A>, DecodeError> {
    let mut r = R(Reader::new(frame));
    if r.0.array::<2>()? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let v = r.0.u8()?;
    if v != VERSION {
        return Err(DecodeError::UnsupportedVersion(v));
    }
    let t = r.0.u8()?;
    let msg = match t {
        1 => PastMessage::Insert {
            request: r.0.u64()?,
            k: r.0.u8()?,
            object: r.object()?,
        },
        2 => PastMessage::InsertResult {
            request: r.0.u64()?,
            key: r.id()?,
            failure: r.failure()?,
            holders: r.handles(MAX_HANDLES)?,
        },
        3 => PastMessage::Replicate {
            id: r.0.u64()?,
            k: r.0.u8()?,
            object: r.object()?,
        },
        4 => PastMessage::ReplicateAck {
            id: r.0.u64()?,
            key: r.id()?,
            status: match r.0.u8()? {
                0 => ReplicaStatus::Stored { fresh: r.bool()? },
                1 => ReplicaStatus::Diverted { fresh: r.bool()? },
                2 => ReplicaStatus::Refused(
                    r.failure()?
                        .ok_or(DecodeError::Malformed("refusal without reason"))?,
                ),
                _ => return Err(DecodeError::Malformed("replica status")),
            },
        },
        5 => PastMessage::Abort {
            key: r.id()?,
            hash: r.0.array()?,
        },
        6 => PastMessage::Divert {
            id: r.0.u64()?,
            k: r.0.u8()?,
            object: r.object()?,
        },
        7 => PastMessage::DivertAck {
            id: r.0.u64()?,
            key: r.id()?,
            ok: r.bool()?,
        },
        8 => PastMessage::Discard { key: r.id()? },
        9 => PastMessage::Lookup {
            request: r.0.u64()?,
            key: r.id()?,
            client: r.handle()?,
            relay: r.0.u8()?,
            path: r.handles(MAX_PATH)?,
        },
        10 => PastMessage::Found {
            request: r.0.u64()?,
            from_cache: r.bool()?,
            object: r.object()?,
        },
        11 => PastMessage::NotFound {
            request: r.0.u64()?,
            key: r.id()?,
        },
        12 => PastMessage::LookupHandles {
            request: r.0.u64()?,
            key: r.id()?,
            max: r.0.u8()?,
        },
        13 => PastMessage::Handles {
            request: r.0.u64()?,
            key: r.id()?,
            handles: r.handles(MAX_HANDLES)?,
        },
        14 => PastMessage::CachePush {
            object: r.object()?,
        },
        15 => PastMessage::SyncDigest {
            round: r.0.u64()?,
            lo: r.id()?,
            hi: r.id()?,
            entries: r.entries()?,
        },
        16 => PastMessage::SyncData {
            round: r.0.u64()?,
            complete: r.bool()?,
            items: r.items()?,
        },
        17 => PastMessage::HandoffOffer {
            round: r.0.u64()?,
            entries: r.entries()?,
        },
        18 => PastMessage::HandoffReply {
            round: r.0.u64()?,
            have: r.keys()?,
            want: r.keys()?,
        },
        19 => PastMessage::HandoffData { items: r.items()? },
        t => return Err(DecodeError::UnknownType(t)),
    };
    if !r.0.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = NodeId> {
        any::<u128>().prop_map(NodeId::from_u128)
    }
    fn handle() -> impl Strategy<Value = NodeHandle<u32>> {
        (id(), any::<u32>()).prop_map(|(i, a)| NodeHandle::new(i, a))
    }
    fn handles(max: usize) -> impl Strategy<Value = Vec<NodeHandle<u32>>> {
        prop::collection::vec(handle(), 0..=max.min(8))
    }
    fn object() -> impl Strategy<Value = PastObject> {
        (
            prop::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
            any::<u8>(),
            id(),
            any::<u64>(),
        )
            .prop_map(|(c, signed, seed, key, version)| {
                if signed {
                    PastObject::signed(&SigningKey::from_bytes(&[seed; 32]), key, version, c)
                } else {
                    PastObject::immutable(c)
                }
            })
    }
    fn failure() -> impl Strategy<Value = InsertFailure> {
        prop_oneof![
            (any::<u32>(), any::<u32>()).prop_map(|(s, m)| InsertFailure::TooLarge {
                size: s as usize,
                max: m as usize
            }),
            (2u8..=10).prop_map(|c| InsertFailure::from_code(c).unwrap()),
        ]
    }
    fn entries() -> impl Strategy<Value = Vec<(NodeId, u64)>> {
        prop::collection::vec((id(), any::<u64>()), 0..10)
    }
    fn items() -> impl Strategy<Value = Vec<(u8, PastObject)>> {
        prop::collection::vec((any::<u8>(), object()), 0..4)
    }

    fn message() -> impl Strategy<Value = PastMessage<u32>> {
        prop_oneof![
            (any::<u64>(), any::<u8>(), object())
                .prop_map(|(request, k, object)| PastMessage::Insert { request, k, object }),
            (
                any::<u64>(),
                id(),
                prop::option::of(failure()),
                handles(MAX_HANDLES)
            )
                .prop_map(|(request, key, failure, holders)| {
                    PastMessage::InsertResult {
                        request,
                        key,
                        failure,
                        holders,
                    }
                }),
            (any::<u64>(), any::<u8>(), object())
                .prop_map(|(id, k, object)| PastMessage::Replicate { id, k, object }),
            (
                any::<u64>(),
                id(),
                prop_oneof![
                    any::<bool>().prop_map(|fresh| ReplicaStatus::Stored { fresh }),
                    any::<bool>().prop_map(|fresh| ReplicaStatus::Diverted { fresh }),
                    failure().prop_map(ReplicaStatus::Refused),
                ]
            )
                .prop_map(|(id, key, status)| PastMessage::ReplicateAck {
                    id,
                    key,
                    status
                }),
            (id(), any::<[u8; 32]>()).prop_map(|(key, hash)| PastMessage::Abort { key, hash }),
            (any::<u64>(), any::<u8>(), object()).prop_map(|(id, k, object)| PastMessage::Divert {
                id,
                k,
                object
            }),
            (any::<u64>(), id(), any::<bool>()).prop_map(|(id, key, ok)| PastMessage::DivertAck {
                id,
                key,
                ok
            }),
            id().prop_map(|key| PastMessage::Discard { key }),
            (any::<u64>(), id(), handle(), any::<u8>(), handles(MAX_PATH)).prop_map(
                |(request, key, client, relay, path)| PastMessage::Lookup {
                    request,
                    key,
                    client,
                    relay,
                    path
                }
            ),
            (any::<u64>(), any::<bool>(), object()).prop_map(|(request, from_cache, object)| {
                PastMessage::Found {
                    request,
                    from_cache,
                    object,
                }
            }),
            (any::<u64>(), id()).prop_map(|(request, key)| PastMessage::NotFound { request, key }),
            (any::<u64>(), id(), any::<u8>())
                .prop_map(|(request, key, max)| PastMessage::LookupHandles { request, key, max }),
            (any::<u64>(), id(), handles(MAX_HANDLES)).prop_map(|(request, key, handles)| {
                PastMessage::Handles {
                    request,
                    key,
                    handles,
                }
            }),
            object().prop_map(|object| PastMessage::CachePush { object }),
            (any::<u64>(), id(), id(), entries()).prop_map(|(round, lo, hi, entries)| {
                PastMessage::SyncDigest {
                    round,
                    lo,
                    hi,
                    entries,
                }
            }),
            (any::<u64>(), any::<bool>(), items()).prop_map(|(round, complete, items)| {
                PastMessage::SyncData {
                    round,
                    complete,
                    items,
                }
            }),
            (any::<u64>(), entries())
                .prop_map(|(round, entries)| PastMessage::HandoffOffer { round, entries }),
            (
                any::<u64>(),
                prop::collection::vec(id(), 0..10),
                prop::collection::vec(id(), 0..10)
            )
                .prop_map(|(round, have, want)| PastMessage::HandoffReply {
                    round,
                    have,
                    want
                }),
            items().prop_map(|items| PastMessage::HandoffData { items }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(msg in message()) {
            let frame = encode(&msg);
            prop_assert_eq!(frame[0..2].to_vec(), MAGIC.to_vec());
            let back: PastMessage<u32> = decode(&frame).unwrap();
            prop_assert_eq!(back, msg);
        }

        #[test]
        fn truncations_and_garbage_never_panic(msg in message(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
            let frame = encode(&msg);
            let n = cut.index(frame.len());
            prop_assert!(decode::<u32>(&frame[..n]).is_err());
            let mut bad = frame.to_vec();
            let i = flip.0.index(bad.len());
            bad[i] ^= flip.1;
            let _ = decode::<u32>(&bad);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode::<u32>(&bytes);
            let mut framed = b"PA\x01".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode::<u32>(&framed);
        }
    }

    #[test]
    fn bad_headers_and_bounds_are_named() {
        let ok = encode::<u32>(&PastMessage::Discard {
            key: NodeId::from_u128(5),
        });
        assert_eq!(decode::<u32>(b"XX\x01\x08"), Err(DecodeError::BadMagic));
        let mut v = ok.to_vec();
        v[2] = 9;
        assert_eq!(decode::<u32>(&v), Err(DecodeError::UnsupportedVersion(9)));
        v[2] = VERSION;
        v[3] = 200;
        assert_eq!(decode::<u32>(&v), Err(DecodeError::UnknownType(200)));
        let mut v = ok.to_vec();
        v.push(0);
        assert_eq!(decode::<u32>(&v), Err(DecodeError::TrailingBytes));
        // A key list claiming more entries than allowed.
        let mut v = b"PA\x01\x12".to_vec();
        v.extend_from_slice(&7u64.to_be_bytes());
        v.extend_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            decode::<u32>(&v),
            Err(DecodeError::TooLong {
                len: u16::MAX as usize,
                max: MAX_LIST
            })
        );
        // An object claiming more content than allowed.
        let mut v = b"PA\x01\x0e\x00".to_vec();
        v.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode::<u32>(&v),
            Err(DecodeError::TooLong { .. })
        ));
    }
}
