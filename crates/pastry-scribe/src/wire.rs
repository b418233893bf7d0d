//! Scribe's own messages and their versioned binary encoding.
//!
//! Every Scribe message travels inside a pastry-core application payload (routed with
//! `AppContext::route` or sent with `AppContext::send_direct`). The payload is one frame:
//!
//! | field   | size | value                                         |
//! |---------|------|-----------------------------------------------|
//! | magic   | 2    | `"SC"`                                        |
//! | version | 1    | [`VERSION`]                                   |
//! | type    | 1    | the [`ScribeMsg`] variant ([`MsgType`])       |
//! | body    | rest | the variant's fields, in declaration order    |
//!
//! Integers are big-endian and fixed width; ids are 16 bytes; a node handle is its id then
//! the address's own wire form ([`Address::encode`]); a payload is a `u32` length then the
//! bytes; a list is a `u16` count then the items. Every list and payload has a bound
//! ([`MAX_PATH`], [`MAX_VISIT`], [`MAX_TOPICS_PER_MSG`], [`MAX_PAYLOAD`]); decoding checks
//! each count against its bound and the remaining input before allocating, rejects bytes
//! left after the last field, and never panics. The encoding is canonical: a frame that
//! decodes re-encodes to the same bytes.
//!
//! This module never decides anything; it only turns messages into bytes and back.

use core::fmt;

use bytes::Bytes;
use pastry_core::codec::{DecodeError, Reader};
use pastry_core::{Address, NodeHandle, NodeId};

use crate::TopicId;

/// The two bytes every Scribe frame starts with.
pub const MAGIC: [u8; 2] = *b"SC";
/// The wire version this crate writes and accepts.
pub const VERSION: u8 = 3;
/// Length of the frame header (magic, version, type).
pub const HEADER_LEN: usize = 4;
/// Most ids in a root path ([`ScribeMsg::SubscribeAck::path`], heartbeats).
pub const MAX_PATH: usize = 64;
/// Most handles in an anycast or subscribe search's `visited` and `to_visit` lists.
pub const MAX_VISIT: usize = 256;
/// Most topics named in one aggregated message (heartbeat, refresh, unsubscribe, drop).
pub const MAX_TOPICS_PER_MSG: usize = 1024;
/// Largest application payload a frame carries.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The input ended before a field did.
    Truncated,
    /// The frame does not start with [`MAGIC`].
    BadMagic,
    /// The version byte is not [`VERSION`].
    UnsupportedVersion(u8),
    /// The type byte names no message.
    UnknownType(u8),
    /// A count or length is over its bound.
    TooLong {
        /// What was too long.
        what: &'static str,
        /// The length found.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Bytes were left after the last field.
    TrailingBytes,
    /// A field had an impossible value (the string names it).
    Malformed(&'static str),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated scribe message"),
            WireError::BadMagic => f.write_str("not a scribe message (bad magic)"),
            WireError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported scribe wire version {v} (expected {VERSION})"
                )
            }
            WireError::UnknownType(t) => write!(f, "unknown scribe message type {t}"),
            WireError::TooLong { what, len, max } => {
                write!(f, "{what} of length {len} exceeds maximum {max}")
            }
            WireError::TrailingBytes => f.write_str("trailing bytes after scribe message"),
            WireError::Malformed(what) => write!(f, "malformed {what}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<DecodeError> for WireError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Truncated => WireError::Truncated,
            DecodeError::Malformed(w) => WireError::Malformed(w),
            _ => WireError::Malformed("address"),
        }
    }
}

/// One data message of a topic, as it travels down the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataMsg {
    /// The topic.
    pub topic: TopicId,
    /// Sequence number the root gave it (per topic, increasing).
    pub seq: u64,
    /// Id of the node that published it.
    pub publisher: NodeId,
    /// The publisher's message number: with `publisher`, the duplicate-suppression key.
    pub id: u64,
    /// A copy sent again from a replay buffer to a node that missed it while it
    /// re-attached, or forwarded down from such a copy.
    pub replayed: bool,
    /// The application's bytes.
    pub payload: Bytes,
}

/// A search through a tree (subscribe push-down and anycast): a depth-first walk that
/// carries the nodes already visited and those still to visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search<A> {
    /// Ids of nodes already visited.
    pub visited: Vec<NodeId>,
    /// Nodes still to visit, next first.
    pub to_visit: Vec<NodeHandle<A>>,
}

impl<A> Default for Search<A> {
    fn default() -> Self {
        Search {
            visited: Vec::new(),
            to_visit: Vec::new(),
        }
    }
}

/// Every message Scribe sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScribeMsg<A> {
    /// Routed towards the topic (then, when pushed down, sent directly): `subscriber` asks
    /// to become a child of the first tree node that accepts it.
    Subscribe {
        /// The topic.
        topic: TopicId,
        /// The node that wants a parent.
        subscriber: NodeHandle<A>,
        /// The subscriber's attempt number (echoed in the answer).
        attempt: u64,
        /// The highest sequence number the subscriber knows the topic reached (0: none),
        /// so that a root without the topic's history numbers on from it.
        last_seq: u64,
        /// The push-down search so far (empty while routed).
        search: Search<A>,
    },
    /// Direct, parent to child: you are my child; `path` lists your ancestors, root first.
    SubscribeAck {
        /// The topic.
        topic: TopicId,
        /// The attempt answered (0 for an adoption the child did not ask this node for).
        attempt: u64,
        /// The highest sequence number the sender knows the topic reached: where the
        /// child's history starts, and where it goes on numbering should it become root.
        last_seq: u64,
        /// The child's ancestors, root first, the sender last.
        path: Vec<NodeId>,
    },
    /// Direct, to a subscriber: the search found no node to adopt it.
    SubscribeFailed {
        /// The topic.
        topic: TopicId,
        /// The attempt that failed.
        attempt: u64,
    },
    /// Direct, child to parent: remove me from these topics' children.
    Unsubscribe {
        /// The topics.
        topics: Vec<TopicId>,
    },
    /// Direct, parent to child: you are no longer my child in these topics; find a parent.
    Drop {
        /// The topics.
        topics: Vec<TopicId>,
    },
    /// Routed to the topic's root: publish `payload`.
    Publish {
        /// The topic.
        topic: TopicId,
        /// The publisher.
        publisher: NodeHandle<A>,
        /// The publisher's message number.
        id: u64,
        /// The bytes.
        payload: Bytes,
    },
    /// Direct, root to publisher: the root took message `id`.
    PublishAck {
        /// The topic.
        topic: TopicId,
        /// The publisher's message number.
        id: u64,
    },
    /// Direct, parent to child: a published message.
    Data(DataMsg),
    /// Direct, parent to child: I am alive; per topic, your ancestors, root first.
    Heartbeat {
        /// (topic, the child's root path) pairs.
        topics: Vec<(TopicId, Vec<NodeId>)>,
    },
    /// Direct, child to parent: I am still your child in these topics.
    Refresh {
        /// The topics.
        topics: Vec<TopicId>,
    },
    /// Routed towards the topic, then sent directly along a depth-first search of the tree:
    /// deliver `payload` to one member that accepts it.
    Anycast {
        /// The topic.
        topic: TopicId,
        /// The node that sent the anycast.
        origin: NodeHandle<A>,
        /// The origin's anycast number.
        id: u64,
        /// The bytes.
        payload: Bytes,
        /// The search so far.
        search: Search<A>,
    },
    /// Direct, to the origin: the sender accepted anycast `id`.
    AnycastAccepted {
        /// The topic.
        topic: TopicId,
        /// The origin's anycast number.
        id: u64,
    },
    /// Direct, to the origin: the search visited every reachable member and none accepted.
    AnycastFailed {
        /// The topic.
        topic: TopicId,
        /// The origin's anycast number.
        id: u64,
    },
    /// Direct, child to its new parent: send me again the messages you still hold with a
    /// sequence number above `after` (I missed them while I had no parent).
    Replay {
        /// The topic.
        topic: TopicId,
        /// The highest sequence number the child has seen.
        after: u64,
    },
}

/// The type byte of each [`ScribeMsg`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// [`ScribeMsg::Subscribe`].
    Subscribe = 1,
    /// [`ScribeMsg::SubscribeAck`].
    SubscribeAck = 2,
    /// [`ScribeMsg::SubscribeFailed`].
    SubscribeFailed = 3,
    /// [`ScribeMsg::Unsubscribe`].
    Unsubscribe = 4,
    /// [`ScribeMsg::Drop`].
    Drop = 5,
    /// [`ScribeMsg::Publish`].
    Publish = 6,
    /// [`ScribeMsg::PublishAck`].
    PublishAck = 7,
    /// [`ScribeMsg::Data`].
    Data = 8,
    /// [`ScribeMsg::Heartbeat`].
    Heartbeat = 9,
    /// [`ScribeMsg::Refresh`].
    Refresh = 10,
    /// [`ScribeMsg::Anycast`].
    Anycast = 11,
    /// [`ScribeMsg::AnycastAccepted`].
    AnycastAccepted = 12,
    /// [`ScribeMsg::AnycastFailed`].
    AnycastFailed = 13,
    /// [`ScribeMsg::Replay`].
    Replay = 14,
}

impl MsgType {
    /// Every type, in wire order.
    pub const ALL: [MsgType; 14] = [
        MsgType::Subscribe,
        MsgType::SubscribeAck,
        MsgType::SubscribeFailed,
        MsgType::Unsubscribe,
        MsgType::Drop,
        MsgType::Publish,
        MsgType::PublishAck,
        MsgType::Data,
        MsgType::Heartbeat,
        MsgType::Refresh,
        MsgType::Anycast,
        MsgType::AnycastAccepted,
        MsgType::AnycastFailed,
        MsgType::Replay,
    ];

    /// Index into per-type counter arrays (type byte - 1).
    pub const fn index(self) -> usize {
        self as usize - 1
    }

    fn from_byte(b: u8) -> Option<MsgType> {
        MsgType::ALL.get(usize::from(b).wrapping_sub(1)).copied()
    }

    /// True for messages that carry application data (publish and tree data); the others
    /// are control traffic.
    pub const fn is_data(self) -> bool {
        matches!(self, MsgType::Publish | MsgType::Data)
    }
}

impl<A> ScribeMsg<A> {
    /// The message's type.
    pub fn kind(&self) -> MsgType {
        match self {
            ScribeMsg::Subscribe { .. } => MsgType::Subscribe,
            ScribeMsg::SubscribeAck { .. } => MsgType::SubscribeAck,
            ScribeMsg::SubscribeFailed { .. } => MsgType::SubscribeFailed,
            ScribeMsg::Unsubscribe { .. } => MsgType::Unsubscribe,
            ScribeMsg::Drop { .. } => MsgType::Drop,
            ScribeMsg::Publish { .. } => MsgType::Publish,
            ScribeMsg::PublishAck { .. } => MsgType::PublishAck,
            ScribeMsg::Data(_) => MsgType::Data,
            ScribeMsg::Heartbeat { .. } => MsgType::Heartbeat,
            ScribeMsg::Refresh { .. } => MsgType::Refresh,
            ScribeMsg::Anycast { .. } => MsgType::Anycast,
            ScribeMsg::AnycastAccepted { .. } => MsgType::AnycastAccepted,
            ScribeMsg::AnycastFailed { .. } => MsgType::AnycastFailed,
            ScribeMsg::Replay { .. } => MsgType::Replay,
        }
    }
}

/// Why a message could not be encoded: a list or payload is over its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeError {
    /// What was too long.
    pub what: &'static str,
    /// Its length.
    pub len: usize,
    /// The bound.
    pub max: usize,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of length {} exceeds maximum {}",
            self.what, self.len, self.max
        )
    }
}

impl std::error::Error for EncodeError {}

fn check(what: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        Err(EncodeError { what, len, max })
    } else {
        Ok(())
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
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn id(&mut self, id: NodeId) {
        self.0.extend_from_slice(&id.to_bytes());
    }
    fn handle<A: Address>(&mut self, h: &NodeHandle<A>) {
        self.id(h.id);
        h.addr.encode(&mut self.0);
    }
    fn payload(&mut self, p: &Bytes) -> Result<(), EncodeError> {
        check("payload", p.len(), MAX_PAYLOAD)?;
        self.0.extend_from_slice(&(p.len() as u32).to_be_bytes());
        self.0.extend_from_slice(p);
        Ok(())
    }
    fn ids(&mut self, what: &'static str, ids: &[NodeId], max: usize) -> Result<(), EncodeError> {
        check(what, ids.len(), max)?;
        self.u16(ids.len() as u16);
        for &i in ids {
            self.id(i);
        }
        Ok(())
    }
    fn search<A: Address>(&mut self, s: &Search<A>) -> Result<(), EncodeError> {
        self.ids("visited list", &s.visited, MAX_VISIT)?;
        check("to-visit list", s.to_visit.len(), MAX_VISIT)?;
        self.u16(s.to_visit.len() as u16);
        for h in &s.to_visit {
            self.handle(h);
        }
        Ok(())
    }
}

/// Encodes `msg` as one frame.
///
/// # Errors
/// [`EncodeError`] when a list or the payload is over its bound; nothing is returned then.
pub fn encode<A: Address>(msg: &ScribeMsg<A>) -> Result<Bytes, EncodeError> {
    let mut w = W(Vec::with_capacity(64));
    w.0.extend_from_slice(&MAGIC);
    w.u8(VERSION);
    w.u8(msg.kind() as u8);
    match msg {
        ScribeMsg::Subscribe {
            topic,
            subscriber,
            attempt,
            last_seq,
            search,
        } => {
            w.id(*topic);
            w.handle(subscriber);
            w.u64(*attempt);
            w.u64(*last_seq);
            w.search(search)?;
        }
        ScribeMsg::SubscribeAck {
            topic,
            attempt,
            last_seq,
            path,
        } => {
            w.id(*topic);
            w.u64(*attempt);
            w.u64(*last_seq);
            w.ids("root path", path, MAX_PATH)?;
        }
        ScribeMsg::SubscribeFailed { topic, attempt }
        | ScribeMsg::Replay {
            topic,
            after: attempt,
        } => {
            w.id(*topic);
            w.u64(*attempt);
        }
        ScribeMsg::Unsubscribe { topics }
        | ScribeMsg::Drop { topics }
        | ScribeMsg::Refresh { topics } => w.ids("topic list", topics, MAX_TOPICS_PER_MSG)?,
        ScribeMsg::Publish {
            topic,
            publisher,
            id,
            payload,
        } => {
            w.id(*topic);
            w.handle(publisher);
            w.u64(*id);
            w.payload(payload)?;
        }
        ScribeMsg::PublishAck { topic, id }
        | ScribeMsg::AnycastAccepted { topic, id }
        | ScribeMsg::AnycastFailed { topic, id } => {
            w.id(*topic);
            w.u64(*id);
        }
        ScribeMsg::Data(d) => {
            w.id(d.topic);
            w.u64(d.seq);
            w.id(d.publisher);
            w.u64(d.id);
            w.u8(u8::from(d.replayed));
            w.payload(&d.payload)?;
        }
        ScribeMsg::Heartbeat { topics } => {
            check("topic list", topics.len(), MAX_TOPICS_PER_MSG)?;
            w.u16(topics.len() as u16);
            for (t, path) in topics {
                w.id(*t);
                w.ids("root path", path, MAX_PATH)?;
            }
        }
        ScribeMsg::Anycast {
            topic,
            origin,
            id,
            payload,
            search,
        } => {
            w.id(*topic);
            w.handle(origin);
            w.u64(*id);
            w.payload(payload)?;
            w.search(search)?;
        }
    }
    Ok(Bytes::from(w.0))
}

struct R<'a>(Reader<'a>);

impl R<'_> {
    fn id(&mut self) -> Result<NodeId, WireError> {
        Ok(NodeId::from_bytes(self.0.array::<16>()?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(self.0.u64()?)
    }
    fn handle<A: Address>(&mut self) -> Result<NodeHandle<A>, WireError> {
        let id = self.id()?;
        Ok(NodeHandle::new(id, A::decode(&mut self.0)?))
    }
    fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_item: usize,
    ) -> Result<usize, WireError> {
        let n = usize::from(self.0.u16()?);
        if n > max {
            return Err(WireError::TooLong { what, len: n, max });
        }
        if n * min_item > self.0.remaining() {
            return Err(WireError::Truncated);
        }
        Ok(n)
    }
    fn ids(&mut self, what: &'static str, max: usize) -> Result<Vec<NodeId>, WireError> {
        let n = self.count(what, max, 16)?;
        (0..n).map(|_| self.id()).collect()
    }
    fn payload(&mut self) -> Result<Bytes, WireError> {
        let n = self.0.u32()? as usize;
        if n > MAX_PAYLOAD {
            return Err(WireError::TooLong {
                what: "payload",
                len: n,
                max: MAX_PAYLOAD,
            });
        }
        Ok(Bytes::copy_from_slice(self.0.bytes(n)?))
    }
    fn search<A: Address>(&mut self) -> Result<Search<A>, WireError> {
        let visited = self.ids("visited list", MAX_VISIT)?;
        let n = self.count("to-visit list", MAX_VISIT, 17)?;
        let to_visit = (0..n).map(|_| self.handle()).collect::<Result<_, _>>()?;
        Ok(Search { visited, to_visit })
    }
}

/// Decodes one frame. Never panics, whatever the input.
///
/// # Errors
/// [`WireError`] naming the first problem found.
pub fn decode<A: Address>(frame: &[u8]) -> Result<ScribeMsg<A>, WireError> {
    let mut r = R(Reader::new(frame));
    let head = r.0.array::<HEADER_LEN>()?;
    if head[..2] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if head[2] != VERSION {
        return Err(WireError::UnsupportedVersion(head[2]));
    }
    let kind = MsgType::from_byte(head[3]).ok_or(WireError::UnknownType(head[3]))?;
    let msg = match kind {
        MsgType::Subscribe => ScribeMsg::Subscribe {
            topic: r.id()?,
            subscriber: r.handle()?,
            attempt: r.u64()?,
            last_seq: r.u64()?,
            search: r.search()?,
        },
        MsgType::SubscribeAck => ScribeMsg::SubscribeAck {
            topic: r.id()?,
            attempt: r.u64()?,
            last_seq: r.u64()?,
            path: r.ids("root path", MAX_PATH)?,
        },
        MsgType::SubscribeFailed => ScribeMsg::SubscribeFailed {
            topic: r.id()?,
            attempt: r.u64()?,
        },
        MsgType::Unsubscribe => ScribeMsg::Unsubscribe {
            topics: r.ids("topic list", MAX_TOPICS_PER_MSG)?,
        },
        MsgType::Drop => ScribeMsg::Drop {
            topics: r.ids("topic list", MAX_TOPICS_PER_MSG)?,
        },
        MsgType::Refresh => ScribeMsg::Refresh {
            topics: r.ids("topic list", MAX_TOPICS_PER_MSG)?,
        },
        MsgType::Publish => ScribeMsg::Publish {
            topic: r.id()?,
            publisher: r.handle()?,
            id: r.u64()?,
            payload: r.payload()?,
        },
        MsgType::PublishAck => ScribeMsg::PublishAck {
            topic: r.id()?,
            id: r.u64()?,
        },
        MsgType::AnycastAccepted => ScribeMsg::AnycastAccepted {
            topic: r.id()?,
            id: r.u64()?,
        },
        MsgType::AnycastFailed => ScribeMsg::AnycastFailed {
            topic: r.id()?,
            id: r.u64()?,
        },
        MsgType::Replay => ScribeMsg::Replay {
            topic: r.id()?,
            after: r.u64()?,
        },
        MsgType::Data => ScribeMsg::Data(DataMsg {
            topic: r.id()?,
            seq: r.u64()?,
            publisher: r.id()?,
            id: r.u64()?,
            replayed: match r.0.u8()? {
                0 => false,
                1 => true,
                _ => return Err(WireError::Malformed("replayed flag")),
            },
            payload: r.payload()?,
        }),
        MsgType::Heartbeat => {
            let n = r.count("topic list", MAX_TOPICS_PER_MSG, 18)?;
            let mut topics = Vec::with_capacity(n);
            for _ in 0..n {
                let t = r.id()?;
                topics.push((t, r.ids("root path", MAX_PATH)?));
            }
            ScribeMsg::Heartbeat { topics }
        }
        MsgType::Anycast => ScribeMsg::Anycast {
            topic: r.id()?,
            origin: r.handle()?,
            id: r.u64()?,
            payload: r.payload()?,
            search: r.search()?,
        },
    };
    if !r.0.is_empty() {
        return Err(WireError::TrailingBytes);
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_errors_are_named() {
        assert_eq!(decode::<u32>(b"SC"), Err(WireError::Truncated));
        assert_eq!(decode::<u32>(b"XX\x01\x01"), Err(WireError::BadMagic));
        assert_eq!(
            decode::<u32>(b"SC\x09\x01"),
            Err(WireError::UnsupportedVersion(9))
        );
        assert_eq!(
            decode::<u32>(b"SC\x01\x01"),
            Err(WireError::UnsupportedVersion(1))
        );
        assert_eq!(decode::<u32>(b"SC\x03\x00"), Err(WireError::UnknownType(0)));
        assert_eq!(
            decode::<u32>(b"SC\x03\x63"),
            Err(WireError::UnknownType(0x63))
        );
    }

    #[test]
    fn trailing_bytes_and_huge_counts_are_rejected() {
        let m: ScribeMsg<u32> = ScribeMsg::Refresh {
            topics: vec![NodeId::from_u128(5)],
        };
        let mut b = encode(&m).unwrap().to_vec();
        assert_eq!(decode::<u32>(&b), Ok(m));
        b.push(0);
        assert_eq!(decode::<u32>(&b), Err(WireError::TrailingBytes));
        // A count of 65535 topics with no bytes behind it.
        let bad = [b'S', b'C', VERSION, MsgType::Refresh as u8, 0xff, 0xff];
        assert!(matches!(
            decode::<u32>(&bad),
            Err(WireError::TooLong { .. })
        ));
        let bad = [b'S', b'C', VERSION, MsgType::Refresh as u8, 0x00, 0x05];
        assert_eq!(decode::<u32>(&bad), Err(WireError::Truncated));
    }

    #[test]
    fn oversized_lists_do_not_encode() {
        let m: ScribeMsg<u32> = ScribeMsg::SubscribeAck {
            topic: NodeId::ZERO,
            attempt: 1,
            last_seq: 0,
            path: vec![NodeId::ZERO; MAX_PATH + 1],
        };
        assert!(encode(&m).is_err());
    }
}
