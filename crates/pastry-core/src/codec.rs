//! The versioned binary wire codec for [`Message`]s.
//!
//! Hand-written over plain byte slices: no serde, no reflection, and decoding never panics
//! and never allocates more than the input could justify, whatever the bytes.
//!
//! # Frame
//!
//! Every message travels as one frame: an 8-byte header, then the body.
//!
//! | offset | size | field                                                    |
//! |-------:|-----:|----------------------------------------------------------|
//! | 0      | 2    | magic, [`MAGIC`] (`b"PY"`)                                |
//! | 2      | 1    | format version, [`VERSION`]                              |
//! | 3      | 1    | message type, [`MessageKind`] `as u8` (1..=15)           |
//! | 4      | 4    | body length in bytes, `u32` big-endian                   |
//! | 8      | n    | body                                                     |
//!
//! A whole frame, header included, is at most [`MAX_FRAME_LEN`] bytes. [`frame_len`] reads
//! a header off a stream and says how long the frame is; [`decode`] takes exactly one frame.
//!
//! # Body
//!
//! The body is the sender's [`NodeId`] (16 bytes), then the fields of the [`Body`] variant in
//! declaration order, with no padding and no optional fields:
//!
//! | field type          | wire form                                                     |
//! |---------------------|---------------------------------------------------------------|
//! | `u8`, `u16`, `u32`, `u64` | big-endian, fixed width (1, 2, 4, 8 bytes)              |
//! | `bool`              | one byte, 0 or 1; any other value is [`DecodeError::Malformed`] |
//! | [`NodeId`]          | 16 bytes, big-endian                                          |
//! | [`NodeHandle<A>`]   | 16-byte id, then [`Address::encode`]                           |
//! | [`Bytes`]           | `u32` length, then the bytes                                  |
//! | `Vec<T>`            | `u16` count, then the items                                   |
//! | [`RoutePayload`]    | one tag byte (0 = `App`, 1 = `Join`), then the variant's fields |
//!
//! Every handle list (and the `failed` id list of `LeafSetUpdate`) holds at most
//! [`MAX_HANDLES`] items; a [`RouteMsg`] path at most [`MAX_PATH`] ids. Both [`encode`] and
//! [`decode`] enforce every bound.
//!
//! The encoding is canonical: a frame that decodes re-encodes to the same bytes. The body
//! length must match the body exactly: bytes left inside the body after its last field, or
//! after the frame, are [`DecodeError::TrailingBytes`].
//!
//! # Versioning
//!
//! The version byte changes whenever the body layout of any type changes. A decoder accepts
//! only its own [`VERSION`]. [`frame_len`] does not look at the type byte, so a stream reader
//! can step over a frame of a type it does not know.

use core::fmt;

use bytes::Bytes;

use crate::message::{Body, Message, MessageKind, RouteMsg, RoutePayload};
use crate::{Address, NodeHandle, NodeId};

/// The two bytes every frame starts with.
pub const MAGIC: [u8; 2] = *b"PY";
/// The wire format version this codec writes and accepts.
/// Version 2: `RowReply` carries the sender's RTT to each entry. Version 3: `RowRequest`
/// carries an RTT. Version 4: `ProbeReply` carries `room_us`. Version 5: `IndirectProbe`
/// and `IndirectProbeReply`. Version 6: `JoinReplyRelay` and `RelayedRoute`.
pub const VERSION: u8 = 6;
/// Length of the frame header: magic, version, type, body length.
pub const HEADER_LEN: usize = 8;
/// Largest frame, header included.
pub const MAX_FRAME_LEN: usize = 4 << 20;
/// Largest number of items in any handle list (and in `LeafSetUpdate::failed`).
pub const MAX_HANDLES: usize = 1024;
/// Largest number of ids in [`RouteMsg::path`].
pub const MAX_PATH: usize = 255;

/// Length of a [`NodeId`] on the wire.
const ID_LEN: usize = 16;
/// [`RoutePayload`] tags.
const PAYLOAD_APP: u8 = 0;
const PAYLOAD_JOIN: u8 = 1;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended before the frame or a field did.
    Truncated,
    /// The frame does not start with [`MAGIC`].
    BadMagic,
    /// The frame's version byte is not [`VERSION`].
    UnsupportedVersion(u8),
    /// The frame's type byte is no [`MessageKind`].
    UnknownType(u8),
    /// A length or count is over its bound: the frame length over [`MAX_FRAME_LEN`], a list
    /// over [`MAX_HANDLES`], a path over [`MAX_PATH`].
    TooLong {
        /// The length or count found.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
    /// Bytes were left over: after the frame's declared length, or inside the body after
    /// its last field.
    TrailingBytes,
    /// A field had an impossible value (the string names it).
    Malformed(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("truncated input"),
            DecodeError::BadMagic => f.write_str("bad magic bytes"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "unsupported wire version {v} (expected {VERSION})")
            }
            DecodeError::UnknownType(t) => write!(f, "unknown message type {t}"),
            DecodeError::TooLong { len, max } => write!(f, "length {len} exceeds maximum {max}"),
            DecodeError::TrailingBytes => f.write_str("trailing bytes after message"),
            DecodeError::Malformed(what) => write!(f, "malformed {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a message could not be encoded: it exceeds a wire bound. Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// A handle list (or `LeafSetUpdate::failed`) has more than [`MAX_HANDLES`] items.
    ListTooLong {
        /// The list's length.
        len: usize,
        /// [`MAX_HANDLES`].
        max: usize,
    },
    /// [`RouteMsg::path`] has more than [`MAX_PATH`] ids.
    PathTooLong {
        /// The path's length.
        len: usize,
        /// [`MAX_PATH`].
        max: usize,
    },
    /// The frame would be longer than [`MAX_FRAME_LEN`] (a large `data` payload).
    FrameTooLong {
        /// The frame's length.
        len: usize,
        /// [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// Two lists that must be as long as each other are not (`RowReply`'s entries and
    /// their RTTs).
    LengthMismatch,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::ListTooLong { len, max } => {
                write!(f, "list of {len} items exceeds maximum {max}")
            }
            EncodeError::PathTooLong { len, max } => {
                write!(f, "route path of {len} ids exceeds maximum {max}")
            }
            EncodeError::FrameTooLong { len, max } => {
                write!(f, "frame of {len} bytes exceeds maximum {max}")
            }
            EncodeError::LengthMismatch => f.write_str("parallel lists of different lengths"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// A cursor over input bytes. Every read checks the length first and fails with
/// [`DecodeError::Truncated`] rather than panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Reads `N` bytes.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than `N` remain.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (a, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(*a)
    }

    /// Reads one byte.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] at the end of the input.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    /// Reads a big-endian `u16`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than 2 bytes remain.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u32`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than 4 bytes remain.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u64`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than 8 bytes remain.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads `n` bytes, borrowed from the input.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when fewer than `n` remain.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (a, rest) = self.buf.split_at_checked(n).ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(a)
    }

    /// Number of bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// Appends `msg` to `out` as one frame.
///
/// # Errors
/// [`EncodeError`] when the message exceeds a wire bound ([`MAX_HANDLES`], [`MAX_PATH`],
/// [`MAX_FRAME_LEN`]); `out` is then left as it was.
pub fn encode<A: Address>(msg: &Message<A>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_bounds(&msg.body)?;
    let len = encoded_len(msg);
    if len > MAX_FRAME_LEN {
        return Err(EncodeError::FrameTooLong {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let start = out.len();
    out.reserve(len);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(msg.body.kind() as u8);
    out.extend_from_slice(&[0; 4]); // body length, patched below
    put_id(out, msg.sender);
    put_body(out, &msg.body);

    // Patch in the length actually written, so that a frame stays self-consistent even if
    // an `Address` implementation's `encoded_len` disagreed with its `encode`.
    let written = out.len() - start;
    debug_assert_eq!(
        written, len,
        "Address::encode and Address::encoded_len disagree"
    );
    if written > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(EncodeError::FrameTooLong {
            len: written,
            max: MAX_FRAME_LEN,
        });
    }
    let body_len = u32::try_from(written - HEADER_LEN).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(start + 4..start + HEADER_LEN) {
        slot.copy_from_slice(&body_len.to_be_bytes());
    }
    Ok(())
}

/// The exact length of `msg`'s frame, header included, computed without encoding or
/// allocating.
///
/// Meaningful for messages within the wire bounds; [`encode`] refuses the others.
pub fn encoded_len<A: Address>(msg: &Message<A>) -> usize {
    HEADER_LEN + ID_LEN + body_len(&msg.body)
}

fn check_list(len: usize) -> Result<(), EncodeError> {
    if len > MAX_HANDLES {
        return Err(EncodeError::ListTooLong {
            len,
            max: MAX_HANDLES,
        });
    }
    Ok(())
}

fn check_bounds<A>(body: &Body<A>) -> Result<(), EncodeError> {
    match body {
        Body::Route(m) | Body::RelayedRoute { route: m, .. } => {
            if m.path.len() > MAX_PATH {
                return Err(EncodeError::PathTooLong {
                    len: m.path.len(),
                    max: MAX_PATH,
                });
            }
            match &m.payload {
                RoutePayload::App { .. } => Ok(()),
                RoutePayload::Join { rows, .. } => check_list(rows.len()),
            }
        }
        Body::JoinReply { leaf_set, rows } | Body::JoinReplyRelay { leaf_set, rows, .. } => {
            check_list(leaf_set.len())?;
            check_list(rows.len())
        }
        Body::ProbeReply { leaf_set, .. } | Body::Leave { leaf_set } => check_list(leaf_set.len()),
        Body::LeafSetUpdate {
            leaf_set, failed, ..
        } => {
            check_list(leaf_set.len())?;
            check_list(failed.len())
        }
        Body::RowReply {
            entries, rtt_us, ..
        } => {
            check_list(entries.len())?;
            if rtt_us.len() != entries.len() {
                return Err(EncodeError::LengthMismatch);
            }
            Ok(())
        }
        Body::RouteAck { .. }
        | Body::Direct { .. }
        | Body::Probe { .. }
        | Body::RowRequest { .. }
        | Body::Announce { .. }
        | Body::IndirectProbe { .. }
        | Body::IndirectProbeReply { .. } => Ok(()),
    }
}

fn handle_len<A: Address>(h: &NodeHandle<A>) -> usize {
    ID_LEN + h.addr.encoded_len()
}

fn handles_len<A: Address>(hs: &[NodeHandle<A>]) -> usize {
    2 + hs.iter().map(handle_len).sum::<usize>()
}

fn ids_len(ids: &[NodeId]) -> usize {
    2 + ids.len() * ID_LEN
}

fn data_len(data: &Bytes) -> usize {
    4 + data.len()
}

fn route_len<A: Address>(m: &RouteMsg<A>) -> usize {
    let payload = 1 + match &m.payload {
        RoutePayload::App { data, .. } => 2 + data_len(data),
        RoutePayload::Join { joiner, rows } => handle_len(joiner) + handles_len(rows),
    };
    8 + ID_LEN + handle_len(&m.origin) + 8 + 1 + 1 + ids_len(&m.path) + payload
}

/// Length of the body after the sender id.
fn body_len<A: Address>(body: &Body<A>) -> usize {
    match body {
        Body::Route(m) => route_len(m),
        Body::RelayedRoute { target, route } => handle_len(target) + route_len(route),
        Body::RouteAck { .. } => 8,
        Body::Direct { data, .. } => 2 + data_len(data),
        Body::JoinReply { leaf_set, rows } => handles_len(leaf_set) + handles_len(rows),
        Body::Probe { .. } => 8 + 1 + 1,
        Body::ProbeReply { leaf_set, .. } => 8 + 1 + handles_len(leaf_set) + 4,
        Body::LeafSetUpdate {
            leaf_set, failed, ..
        } => 1 + handles_len(leaf_set) + ids_len(failed),
        Body::RowRequest { .. } => 1 + 4,
        Body::RowReply {
            entries, rtt_us, ..
        } => 1 + handles_len(entries) + 4 * rtt_us.len(),
        Body::Announce { .. } => 4,
        Body::Leave { leaf_set } => handles_len(leaf_set),
        Body::IndirectProbe { target, .. } => handle_len(target) + 8,
        Body::IndirectProbeReply { .. } => ID_LEN + 8,
        Body::JoinReplyRelay {
            joiner,
            leaf_set,
            rows,
        } => handle_len(joiner) + handles_len(leaf_set) + handles_len(rows),
    }
}

fn put_id(out: &mut Vec<u8>, id: NodeId) {
    out.extend_from_slice(&id.to_bytes());
}

fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

fn put_handle<A: Address>(out: &mut Vec<u8>, h: &NodeHandle<A>) {
    put_id(out, h.id);
    h.addr.encode(out);
}

/// Writes a list count. Callers have checked it against its bound (at most [`MAX_HANDLES`]).
fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
}

fn put_handles<A: Address>(out: &mut Vec<u8>, hs: &[NodeHandle<A>]) {
    put_count(out, hs.len());
    for h in hs {
        put_handle(out, h);
    }
}

fn put_ids(out: &mut Vec<u8>, ids: &[NodeId]) {
    put_count(out, ids.len());
    for &id in ids {
        put_id(out, id);
    }
}

/// Writes a byte string. Callers have checked the frame length, so it fits in a `u32`.
fn put_data(out: &mut Vec<u8>, data: &Bytes) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(data);
}

fn put_route<A: Address>(out: &mut Vec<u8>, m: &RouteMsg<A>) {
    out.extend_from_slice(&m.hop_id.to_be_bytes());
    put_id(out, m.key);
    put_handle(out, &m.origin);
    out.extend_from_slice(&m.request.to_be_bytes());
    out.push(m.hops);
    put_bool(out, m.trace);
    put_ids(out, &m.path);
    match &m.payload {
        RoutePayload::App { app, data } => {
            out.push(PAYLOAD_APP);
            out.extend_from_slice(&app.to_be_bytes());
            put_data(out, data);
        }
        RoutePayload::Join { joiner, rows } => {
            out.push(PAYLOAD_JOIN);
            put_handle(out, joiner);
            put_handles(out, rows);
        }
    }
}

fn put_body<A: Address>(out: &mut Vec<u8>, body: &Body<A>) {
    match body {
        Body::Route(m) => put_route(out, m),
        Body::RelayedRoute { target, route } => {
            put_handle(out, target);
            put_route(out, route);
        }
        Body::RouteAck { hop_id } => out.extend_from_slice(&hop_id.to_be_bytes()),
        Body::Direct { app, data } => {
            out.extend_from_slice(&app.to_be_bytes());
            put_data(out, data);
        }
        Body::JoinReply { leaf_set, rows } => {
            put_handles(out, leaf_set);
            put_handles(out, rows);
        }
        Body::Probe {
            nonce,
            joining,
            want_leaf_set,
        } => {
            out.extend_from_slice(&nonce.to_be_bytes());
            put_bool(out, *joining);
            put_bool(out, *want_leaf_set);
        }
        Body::ProbeReply {
            nonce,
            ready,
            leaf_set,
            room_us,
        } => {
            out.extend_from_slice(&nonce.to_be_bytes());
            put_bool(out, *ready);
            put_handles(out, leaf_set);
            out.extend_from_slice(&room_us.to_be_bytes());
        }
        Body::LeafSetUpdate {
            heartbeat,
            leaf_set,
            failed,
        } => {
            put_bool(out, *heartbeat);
            put_handles(out, leaf_set);
            put_ids(out, failed);
        }
        Body::RowRequest { row, rtt_us } => {
            out.push(*row);
            out.extend_from_slice(&rtt_us.to_be_bytes());
        }
        Body::RowReply {
            row,
            entries,
            rtt_us,
        } => {
            out.push(*row);
            put_handles(out, entries);
            // Same count as `entries` (checked), so no second count on the wire.
            for rtt in rtt_us {
                out.extend_from_slice(&rtt.to_be_bytes());
            }
        }
        Body::Announce { rtt_us } => out.extend_from_slice(&rtt_us.to_be_bytes()),
        Body::Leave { leaf_set } => put_handles(out, leaf_set),
        Body::IndirectProbe { target, nonce } => {
            put_handle(out, target);
            out.extend_from_slice(&nonce.to_be_bytes());
        }
        Body::IndirectProbeReply { target, nonce } => {
            put_id(out, *target);
            out.extend_from_slice(&nonce.to_be_bytes());
        }
        Body::JoinReplyRelay {
            joiner,
            leaf_set,
            rows,
        } => {
            put_handle(out, joiner);
            put_handles(out, leaf_set);
            put_handles(out, rows);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// Checks a header's magic, version and length bound; returns the type byte and the total
/// frame length.
fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(u8, usize), DecodeError> {
    let [m0, m1, version, ty, l0, l1, l2, l3] = *header;
    if [m0, m1] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let body_len = u32::from_be_bytes([l0, l1, l2, l3]);
    let total = usize::try_from(body_len)
        .unwrap_or(usize::MAX)
        .saturating_add(HEADER_LEN);
    if total > MAX_FRAME_LEN {
        return Err(DecodeError::TooLong {
            len: total,
            max: MAX_FRAME_LEN,
        });
    }
    Ok((ty, total))
}

/// For stream framing: the total length of the frame that `header` starts, header
/// included, once at least [`HEADER_LEN`] bytes are there (`Ok(None)` before). Checks the
/// magic, the version and the length bound, not the type byte.
///
/// # Errors
/// [`DecodeError::BadMagic`], [`DecodeError::UnsupportedVersion`], or
/// [`DecodeError::TooLong`] when the declared length exceeds [`MAX_FRAME_LEN`]. The stream
/// cannot be resynchronised after any of these.
pub fn frame_len(header: &[u8]) -> Result<Option<usize>, DecodeError> {
    match header.first_chunk::<HEADER_LEN>() {
        None => Ok(None),
        Some(h) => parse_header(h).map(|(_, total)| Some(total)),
    }
}

/// Decodes exactly one frame.
///
/// # Errors
/// [`DecodeError`] when `frame` is not exactly one well-formed frame of this [`VERSION`]:
/// shorter than its declared length ([`DecodeError::Truncated`]), longer, or with bytes left
/// in the body after the last field ([`DecodeError::TrailingBytes`]), or otherwise invalid.
pub fn decode<A: Address>(frame: &[u8]) -> Result<Message<A>, DecodeError> {
    let (header, body) = frame
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(DecodeError::Truncated)?;
    let (ty, total) = parse_header(header)?;
    let kind = MessageKind::from_u8(ty).ok_or(DecodeError::UnknownType(ty))?;
    match frame.len().cmp(&total) {
        core::cmp::Ordering::Less => return Err(DecodeError::Truncated),
        core::cmp::Ordering::Greater => return Err(DecodeError::TrailingBytes),
        core::cmp::Ordering::Equal => {}
    }
    let mut r = Reader::new(body);
    let sender = read_id(&mut r)?;
    let body = read_body(kind, &mut r)?;
    if !r.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(Message { sender, body })
}

fn read_id(r: &mut Reader<'_>) -> Result<NodeId, DecodeError> {
    Ok(NodeId::from_bytes(r.array()?))
}

fn read_bool(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Malformed("bool")),
    }
}

fn read_handle<A: Address>(r: &mut Reader<'_>) -> Result<NodeHandle<A>, DecodeError> {
    let id = read_id(r)?;
    let addr = A::decode(r)?;
    Ok(NodeHandle::new(id, addr))
}

fn read_data(r: &mut Reader<'_>) -> Result<Bytes, DecodeError> {
    let n = usize::try_from(r.u32()?).map_err(|_| DecodeError::Truncated)?;
    Ok(Bytes::copy_from_slice(r.bytes(n)?))
}

/// Reads a `u16` count, checks it against `max`, then reads that many items of at least
/// `min_item` bytes each. The count is checked against the bytes left before allocating.
fn read_list<'a, T>(
    r: &mut Reader<'a>,
    max: usize,
    min_item: usize,
    mut item: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let n = usize::from(r.u16()?);
    if n > max {
        return Err(DecodeError::TooLong { len: n, max });
    }
    if n.saturating_mul(min_item) > r.remaining() {
        return Err(DecodeError::Truncated);
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(item(r)?);
    }
    Ok(v)
}

fn read_handles<A: Address>(r: &mut Reader<'_>) -> Result<Vec<NodeHandle<A>>, DecodeError> {
    read_list(r, MAX_HANDLES, ID_LEN, read_handle)
}

fn read_ids(r: &mut Reader<'_>, max: usize) -> Result<Vec<NodeId>, DecodeError> {
    read_list(r, max, ID_LEN, read_id)
}

fn read_route<A: Address>(r: &mut Reader<'_>) -> Result<RouteMsg<A>, DecodeError> {
    let hop_id = r.u64()?;
    let key = read_id(r)?;
    let origin = read_handle(r)?;
    let request = r.u64()?;
    let hops = r.u8()?;
    let trace = read_bool(r)?;
    let path = read_ids(r, MAX_PATH)?;
    let payload = match r.u8()? {
        PAYLOAD_APP => {
            let app = r.u16()?;
            let data = read_data(r)?;
            RoutePayload::App { app, data }
        }
        PAYLOAD_JOIN => {
            let joiner = read_handle(r)?;
            let rows = read_handles(r)?;
            RoutePayload::Join { joiner, rows }
        }
        _ => return Err(DecodeError::Malformed("route payload tag")),
    };
    Ok(RouteMsg {
        hop_id,
        key,
        origin,
        request,
        hops,
        trace,
        path,
        payload,
    })
}

fn read_body<A: Address>(kind: MessageKind, r: &mut Reader<'_>) -> Result<Body<A>, DecodeError> {
    Ok(match kind {
        MessageKind::Route => Body::Route(Box::new(read_route(r)?)),
        MessageKind::RouteAck => Body::RouteAck { hop_id: r.u64()? },
        MessageKind::Direct => {
            let app = r.u16()?;
            let data = read_data(r)?;
            Body::Direct { app, data }
        }
        MessageKind::JoinReply => {
            let leaf_set = read_handles(r)?;
            let rows = read_handles(r)?;
            Body::JoinReply { leaf_set, rows }
        }
        MessageKind::Probe => {
            let nonce = r.u64()?;
            let joining = read_bool(r)?;
            let want_leaf_set = read_bool(r)?;
            Body::Probe {
                nonce,
                joining,
                want_leaf_set,
            }
        }
        MessageKind::ProbeReply => {
            let nonce = r.u64()?;
            let ready = read_bool(r)?;
            let leaf_set = read_handles(r)?;
            let room_us = r.u32()?;
            Body::ProbeReply {
                nonce,
                ready,
                leaf_set,
                room_us,
            }
        }
        MessageKind::LeafSetUpdate => {
            let heartbeat = read_bool(r)?;
            let leaf_set = read_handles(r)?;
            let failed = read_ids(r, MAX_HANDLES)?;
            Body::LeafSetUpdate {
                heartbeat,
                leaf_set,
                failed,
            }
        }
        MessageKind::RowRequest => Body::RowRequest {
            row: r.u8()?,
            rtt_us: r.u32()?,
        },
        MessageKind::RowReply => {
            let row = r.u8()?;
            let entries = read_handles(r)?;
            if entries.len().saturating_mul(4) > r.remaining() {
                return Err(DecodeError::Truncated);
            }
            let rtt_us = (0..entries.len())
                .map(|_| r.u32())
                .collect::<Result<Vec<u32>, _>>()?;
            Body::RowReply {
                row,
                entries,
                rtt_us,
            }
        }
        MessageKind::Announce => Body::Announce { rtt_us: r.u32()? },
        MessageKind::Leave => Body::Leave {
            leaf_set: read_handles(r)?,
        },
        MessageKind::IndirectProbe => Body::IndirectProbe {
            target: read_handle(r)?,
            nonce: r.u64()?,
        },
        MessageKind::IndirectProbeReply => Body::IndirectProbeReply {
            target: read_id(r)?,
            nonce: r.u64()?,
        },
        MessageKind::RelayedRoute => {
            let target = read_handle(r)?;
            let route = Box::new(read_route(r)?);
            Body::RelayedRoute { target, route }
        }
        MessageKind::JoinReplyRelay => {
            let joiner = read_handle(r)?;
            let leaf_set = read_handles(r)?;
            let rows = read_handles(r)?;
            Body::JoinReplyRelay {
                joiner,
                leaf_set,
                rows,
            }
        }
    })
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn id(v: u128) -> NodeId {
        NodeId::from_u128(v)
    }

    fn h(v: u32) -> NodeHandle<u32> {
        NodeHandle::new(id(u128::from(v) * 0x0101_0101), v)
    }

    fn msg<A>(body: Body<A>) -> Message<A> {
        Message {
            sender: id(0x1122_3344_5566_7788_99aa_bbcc_ddee_ff00),
            body,
        }
    }

    fn enc<A: Address>(m: &Message<A>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(m, &mut out).expect("within bounds");
        out
    }

    /// One message of every type (both route payloads), with non-empty lists.
    fn samples() -> Vec<Message<u32>> {
        let route = |payload| RouteMsg {
            hop_id: 7,
            key: id(42),
            origin: h(1),
            request: 99,
            hops: 3,
            trace: true,
            path: vec![id(1), id(2)],
            payload,
        };
        vec![
            msg(Body::Route(Box::new(route(RoutePayload::App {
                app: 5,
                data: Bytes::from_static(b"hi"),
            })))),
            msg(Body::Route(Box::new(route(RoutePayload::Join {
                joiner: h(9),
                rows: vec![h(2), h(3)],
            })))),
            msg(Body::RouteAck { hop_id: u64::MAX }),
            msg(Body::Direct {
                app: 1,
                data: Bytes::from_static(b"direct"),
            }),
            msg(Body::JoinReply {
                leaf_set: vec![h(1)],
                rows: vec![h(2), h(3)],
            }),
            msg(Body::Probe {
                nonce: 3,
                joining: true,
                want_leaf_set: false,
            }),
            msg(Body::ProbeReply {
                nonce: 4,
                ready: true,
                leaf_set: vec![h(4)],
                room_us: 1500,
            }),
            msg(Body::LeafSetUpdate {
                heartbeat: true,
                leaf_set: vec![h(5)],
                failed: vec![id(6)],
            }),
            msg(Body::RowRequest { row: 2, rtt_us: 0 }),
            msg(Body::RowRequest {
                row: 1,
                rtt_us: 2345,
            }),
            msg(Body::RowReply {
                row: 2,
                entries: vec![h(7), h(8)],
                rtt_us: vec![0, 41_000],
            }),
            msg(Body::Announce { rtt_us: 1234 }),
            msg(Body::Leave {
                leaf_set: vec![h(10)],
            }),
            msg(Body::IndirectProbe {
                target: h(11),
                nonce: 12,
            }),
            msg(Body::IndirectProbeReply {
                target: id(11),
                nonce: 12,
            }),
            msg(Body::JoinReplyRelay {
                joiner: h(13),
                leaf_set: vec![h(14), h(15)],
                rows: vec![h(16)],
            }),
            msg(Body::RelayedRoute {
                target: h(17),
                route: Box::new(route(RoutePayload::App {
                    app: 3,
                    data: Bytes::from_static(b"relayed"),
                })),
            }),
        ]
    }

    /// A frame with a valid header for `ty` around `body`.
    fn frame(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        f.push(VERSION);
        f.push(ty);
        f.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn set_body_len(f: &mut [u8], len: u32) {
        f[4..8].copy_from_slice(&len.to_be_bytes());
    }

    #[test]
    fn samples_cover_every_kind() {
        let kinds: BTreeSet<_> = samples().iter().map(|m| m.body.kind()).collect();
        assert_eq!(kinds, MessageKind::ALL.into_iter().collect());
    }

    #[test]
    fn samples_round_trip() {
        for m in samples() {
            let f = enc(&m);
            assert_eq!(f.len(), encoded_len(&m), "{m:?}");
            assert_eq!(frame_len(&f), Ok(Some(f.len())));
            assert_eq!(decode::<u32>(&f), Ok(m));
        }
    }

    #[test]
    fn wire_layout_is_pinned() {
        let m: Message<u32> = Message {
            sender: id(0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100),
            body: Body::RouteAck {
                hop_id: 0x0102_0304_0506_0708,
            },
        };
        let mut want = b"PY\x06\x02\x00\x00\x00\x18".to_vec();
        want.extend_from_slice(&[15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(enc(&m), want);

        let m: Message<u32> = Message {
            sender: NodeId::ZERO,
            body: Body::JoinReplyRelay {
                joiner: NodeHandle::new(NodeId::MAX, 0xaabb_ccdd),
                leaf_set: vec![NodeHandle::new(NodeId::ZERO, 7)],
                rows: vec![],
            },
        };
        let mut want = b"PY\x06\x0e\x00\x00\x00\x3c".to_vec();
        want.extend_from_slice(&[0; 16]);
        want.extend_from_slice(&[0xff; 16]);
        want.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        want.extend_from_slice(&[0, 1]);
        want.extend_from_slice(&[0; 16]);
        want.extend_from_slice(&[0, 0, 0, 7]);
        want.extend_from_slice(&[0, 0]);
        assert_eq!(enc(&m), want);

        let m: Message<u32> = Message {
            sender: NodeId::ZERO,
            body: Body::Leave {
                leaf_set: vec![NodeHandle::new(NodeId::MAX, 0xaabb_ccdd)],
            },
        };
        let mut want = b"PY\x06\x0b\x00\x00\x00\x26".to_vec();
        want.extend_from_slice(&[0; 16]);
        want.extend_from_slice(&[0, 1]);
        want.extend_from_slice(&[0xff; 16]);
        want.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(enc(&m), want);

        let m: Message<u32> = Message {
            sender: NodeId::ZERO,
            body: Body::IndirectProbe {
                target: NodeHandle::new(NodeId::MAX, 0xaabb_ccdd),
                nonce: 0x0102_0304_0506_0708,
            },
        };
        let mut want = b"PY\x06\x0c\x00\x00\x00\x2c".to_vec();
        want.extend_from_slice(&[0; 16]);
        want.extend_from_slice(&[0xff; 16]);
        want.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(enc(&m), want);

        let m: Message<u32> = Message {
            sender: NodeId::ZERO,
            body: Body::RowRequest {
                row: 3,
                rtt_us: 0x0102_0304,
            },
        };
        let mut want = b"PY\x06\x08\x00\x00\x00\x15".to_vec();
        want.extend_from_slice(&[0; 16]);
        want.extend_from_slice(&[3, 1, 2, 3, 4]);
        assert_eq!(enc(&m), want);

        let m: Message<u32> = Message {
            sender: NodeId::ZERO,
            body: Body::ProbeReply {
                nonce: 9,
                ready: true,
                leaf_set: vec![],
                room_us: 0x0a0b_0c0d,
            },
        };
        let mut want = b"PY\x06\x06\x00\x00\x00\x1f".to_vec();
        want.extend_from_slice(&[0; 16]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(enc(&m), want);
    }

    #[test]
    fn encode_appends() {
        let m = &samples()[3];
        let mut out = vec![1, 2, 3];
        encode(m, &mut out).unwrap();
        encode(m, &mut out).unwrap();
        let n = encoded_len(m);
        assert_eq!(out.len(), 3 + 2 * n);
        assert_eq!(&out[..3], &[1, 2, 3]);
        assert_eq!(decode::<u32>(&out[3..3 + n]).as_ref(), Ok(m));
        assert_eq!(decode::<u32>(&out[3 + n..]).as_ref(), Ok(m));
    }

    #[test]
    fn bad_magic() {
        for m in samples() {
            let mut f = enc(&m);
            f[0] = b'X';
            assert_eq!(decode::<u32>(&f), Err(DecodeError::BadMagic));
            assert_eq!(frame_len(&f), Err(DecodeError::BadMagic));
            let mut f = enc(&m);
            f[1] = b'Z';
            assert_eq!(decode::<u32>(&f), Err(DecodeError::BadMagic));
        }
    }

    #[test]
    fn unsupported_version() {
        for v in [0, 1, 2, 3, 255] {
            let mut f = enc(&samples()[2]);
            f[2] = v;
            assert_eq!(decode::<u32>(&f), Err(DecodeError::UnsupportedVersion(v)));
            assert_eq!(frame_len(&f), Err(DecodeError::UnsupportedVersion(v)));
        }
    }

    #[test]
    fn unknown_type() {
        for t in [0, 16, 200, 255] {
            let mut f = enc(&samples()[2]);
            f[3] = t;
            assert_eq!(decode::<u32>(&f), Err(DecodeError::UnknownType(t)));
            // Stream framing can still step over a frame of an unknown type.
            assert_eq!(frame_len(&f), Ok(Some(f.len())));
        }
    }

    #[test]
    fn truncated_at_every_prefix() {
        for m in samples() {
            let f = enc(&m);
            for n in 0..f.len() {
                assert_eq!(
                    decode::<u32>(&f[..n]),
                    Err(DecodeError::Truncated),
                    "{m:?} at {n}"
                );
                let want = if n < HEADER_LEN { None } else { Some(f.len()) };
                assert_eq!(frame_len(&f[..n]), Ok(want));
            }
        }
    }

    #[test]
    fn body_shorter_than_fields_is_truncated() {
        for m in samples() {
            let mut f = enc(&m);
            f.pop();
            let body = u32::try_from(f.len() - HEADER_LEN).unwrap();
            set_body_len(&mut f, body);
            assert_eq!(decode::<u32>(&f), Err(DecodeError::Truncated), "{m:?}");
        }
    }

    #[test]
    fn trailing_bytes() {
        for m in samples() {
            // After the declared frame.
            let mut f = enc(&m);
            f.push(0);
            assert_eq!(decode::<u32>(&f), Err(DecodeError::TrailingBytes), "{m:?}");
            // Inside the declared body, after the last field.
            let body = u32::try_from(f.len() - HEADER_LEN).unwrap();
            set_body_len(&mut f, body);
            assert_eq!(decode::<u32>(&f), Err(DecodeError::TrailingBytes), "{m:?}");
        }
    }

    #[test]
    fn too_long_length_field() {
        let max_body = u32::try_from(MAX_FRAME_LEN - HEADER_LEN).unwrap();
        let mut f = enc(&samples()[2]);
        set_body_len(&mut f, max_body);
        assert_eq!(frame_len(&f), Ok(Some(MAX_FRAME_LEN)));
        assert_eq!(decode::<u32>(&f), Err(DecodeError::Truncated));
        for (body, len) in [
            (max_body + 1, MAX_FRAME_LEN + 1),
            (u32::MAX, usize::try_from(u32::MAX).unwrap() + HEADER_LEN),
        ] {
            set_body_len(&mut f, body);
            let want = DecodeError::TooLong {
                len,
                max: MAX_FRAME_LEN,
            };
            assert_eq!(frame_len(&f), Err(want.clone()));
            assert_eq!(decode::<u32>(&f), Err(want));
        }
    }

    #[test]
    fn bool_must_be_zero_or_one() {
        let m = msg::<u32>(Body::Probe {
            nonce: 1,
            joining: false,
            want_leaf_set: true,
        });
        let f = enc(&m);
        // header, sender, nonce, then the two bools.
        for at in [HEADER_LEN + 16 + 8, HEADER_LEN + 16 + 9] {
            for b in [2, 0xff] {
                let mut f = f.clone();
                f[at] = b;
                assert_eq!(decode::<u32>(&f), Err(DecodeError::Malformed("bool")));
            }
        }
    }

    #[test]
    fn bad_route_payload_tag() {
        let m = &samples()[0];
        let f = enc(m);
        let Body::Route(r) = &m.body else {
            unreachable!()
        };
        let at = HEADER_LEN + 16 + 8 + 16 + 20 + 8 + 1 + 1 + 2 + 16 * r.path.len();
        assert_eq!(f[at], PAYLOAD_APP);
        let mut f = f;
        f[at] = 2;
        assert_eq!(
            decode::<u32>(&f),
            Err(DecodeError::Malformed("route payload tag"))
        );
    }

    #[test]
    fn bad_address_family() {
        let addr: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let m = msg(Body::Leave {
            leaf_set: vec![NodeHandle::new(id(1), addr)],
        });
        let mut f = enc(&m);
        let at = HEADER_LEN + 16 + 2 + 16;
        assert_eq!(f[at], 4);
        f[at] = 5;
        assert_eq!(
            decode::<SocketAddr>(&f),
            Err(DecodeError::Malformed("address family"))
        );
    }

    #[test]
    fn too_many_handles() {
        let full: Vec<_> = (0..MAX_HANDLES as u32).map(h).collect();
        let m = msg(Body::Leave {
            leaf_set: full.clone(),
        });
        assert_eq!(decode::<u32>(&enc(&m)), Ok(m));

        let mut over = full;
        over.push(h(0));
        let m = msg(Body::Leave { leaf_set: over });
        let want = EncodeError::ListTooLong {
            len: MAX_HANDLES + 1,
            max: MAX_HANDLES,
        };
        let mut out = vec![9];
        assert_eq!(encode(&m, &mut out), Err(want));
        assert_eq!(out, [9], "nothing written on error");

        // Every list is bounded on encode.
        let big = || (0..=MAX_HANDLES as u32).map(h).collect::<Vec<_>>();
        let bodies = [
            Body::JoinReply {
                leaf_set: vec![],
                rows: big(),
            },
            Body::ProbeReply {
                nonce: 0,
                ready: true,
                leaf_set: big(),
                room_us: 0,
            },
            Body::LeafSetUpdate {
                heartbeat: false,
                leaf_set: vec![],
                failed: vec![id(0); 1025],
            },
            Body::RowReply {
                row: 0,
                rtt_us: vec![0; big().len()],
                entries: big(),
            },
        ];
        for b in bodies {
            assert_eq!(encode(&msg(b), &mut Vec::new()), Err(want));
        }

        // Decode: a count over the bound, with the items present.
        let mut body = vec![0; 16];
        body.extend_from_slice(&1025u16.to_be_bytes());
        for i in 0..=MAX_HANDLES as u32 {
            body.extend_from_slice(&[0; 16]);
            body.extend_from_slice(&i.to_be_bytes());
        }
        let f = frame(MessageKind::Leave as u8, &body);
        let want = DecodeError::TooLong {
            len: MAX_HANDLES + 1,
            max: MAX_HANDLES,
        };
        assert_eq!(decode::<u32>(&f), Err(want));
    }

    #[test]
    fn row_reply_rtts_match_the_entries() {
        let h = |v: u128| NodeHandle::new(NodeId::from_u128(v), v as u32);
        let bad = msg(Body::RowReply {
            row: 1,
            entries: vec![h(1), h(2)],
            rtt_us: vec![5],
        });
        assert_eq!(
            encode(&bad, &mut Vec::new()),
            Err(EncodeError::LengthMismatch)
        );
        // A frame whose RTT list is cut short does not decode.
        let good = msg(Body::RowReply {
            row: 1,
            entries: vec![h(1), h(2)],
            rtt_us: vec![5, 6],
        });
        let mut out = Vec::new();
        encode(&good, &mut out).unwrap();
        let mut short = out[..out.len() - 4].to_vec();
        let len = ((short.len() - HEADER_LEN) as u32).to_be_bytes();
        let at = HEADER_LEN - 4;
        short[at..HEADER_LEN].copy_from_slice(&len);
        assert_eq!(decode::<u32>(&short), Err(DecodeError::Truncated));
    }

    #[test]
    fn count_beyond_input_is_truncated_before_allocating() {
        let mut body = vec![0; 16];
        body.extend_from_slice(&(MAX_HANDLES as u16).to_be_bytes());
        let f = frame(MessageKind::Leave as u8, &body);
        assert_eq!(decode::<u32>(&f), Err(DecodeError::Truncated));
        // A data length far beyond the frame.
        let mut body = vec![0; 16];
        body.extend_from_slice(&[0, 1, 0xff, 0xff, 0xff, 0xff]);
        let f = frame(MessageKind::Direct as u8, &body);
        assert_eq!(decode::<u32>(&f), Err(DecodeError::Truncated));
    }

    #[test]
    fn path_bound() {
        let route = |path: Vec<NodeId>| {
            msg(Body::Route(Box::new(RouteMsg {
                hop_id: 0,
                key: id(0),
                origin: h(0),
                request: 0,
                hops: 0,
                trace: true,
                path,
                payload: RoutePayload::App {
                    app: 0,
                    data: Bytes::new(),
                },
            })))
        };
        let m = route(vec![id(3); MAX_PATH]);
        let mut f = enc(&m);
        assert_eq!(decode::<u32>(&f), Ok(m));

        let m = route(vec![id(3); MAX_PATH + 1]);
        let want = EncodeError::PathTooLong {
            len: MAX_PATH + 1,
            max: MAX_PATH,
        };
        assert_eq!(encode(&m, &mut Vec::new()), Err(want));

        // Decode: bump the path count to 256 and add one id.
        let at = HEADER_LEN + 16 + 8 + 16 + 20 + 8 + 1 + 1;
        f[at..at + 2].copy_from_slice(&256u16.to_be_bytes());
        f.splice(at + 2..at + 2, [0u8; 16]);
        let body = u32::try_from(f.len() - HEADER_LEN).unwrap();
        set_body_len(&mut f, body);
        let want = DecodeError::TooLong {
            len: MAX_PATH + 1,
            max: MAX_PATH,
        };
        assert_eq!(decode::<u32>(&f), Err(want));
    }

    #[test]
    fn frame_length_bound_on_encode() {
        let overhead = HEADER_LEN + 16 + 2 + 4;
        let m = msg::<u32>(Body::Direct {
            app: 0,
            data: Bytes::from(vec![7; MAX_FRAME_LEN - overhead]),
        });
        assert_eq!(encoded_len(&m), MAX_FRAME_LEN);
        let f = enc(&m);
        assert_eq!(f.len(), MAX_FRAME_LEN);
        assert_eq!(frame_len(&f), Ok(Some(MAX_FRAME_LEN)));
        assert_eq!(decode::<u32>(&f), Ok(m));

        let m = msg::<u32>(Body::Direct {
            app: 0,
            data: Bytes::from(vec![7; MAX_FRAME_LEN - overhead + 1]),
        });
        let want = EncodeError::FrameTooLong {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN,
        };
        let mut out = Vec::new();
        assert_eq!(encode(&m, &mut out), Err(want));
        assert!(out.is_empty());
    }

    #[test]
    fn frame_len_needs_a_whole_header() {
        let f = enc(&samples()[0]);
        for n in 0..HEADER_LEN {
            assert_eq!(frame_len(&f[..n]), Ok(None));
        }
        assert_eq!(frame_len(&f[..HEADER_LEN]), Ok(Some(f.len())));
        // Frames shorter than a sender id are framed, then fail to decode.
        let f = frame(MessageKind::RouteAck as u8, &[]);
        assert_eq!(frame_len(&f), Ok(Some(HEADER_LEN)));
        assert_eq!(decode::<u32>(&f), Err(DecodeError::Truncated));
    }

    #[test]
    fn reader() {
        let data = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17];
        let mut r = Reader::new(&data);
        assert_eq!(r.remaining(), 17);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u32(), Ok(0x0405_0607));
        assert_eq!(r.u64(), Ok(0x0809_0a0b_0c0d_0e0f));
        assert_eq!(r.bytes(3), Err(DecodeError::Truncated));
        assert_eq!(r.array::<2>(), Ok([16, 17]));
        assert!(r.is_empty());
        assert_eq!(r.u8(), Err(DecodeError::Truncated));
        assert_eq!(r.bytes(0), Ok(&[][..]));
        assert_eq!(r.bytes(usize::MAX), Err(DecodeError::Truncated));
    }

    #[test]
    fn errors_display() {
        let errs = [
            DecodeError::Truncated,
            DecodeError::BadMagic,
            DecodeError::UnsupportedVersion(2),
            DecodeError::UnknownType(200),
            DecodeError::TooLong { len: 5, max: 4 },
            DecodeError::TrailingBytes,
            DecodeError::Malformed("bool"),
        ];
        for e in errs {
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(
            DecodeError::UnknownType(200).to_string(),
            "unknown message type 200"
        );
        let e = EncodeError::PathTooLong { len: 256, max: 255 };
        assert_eq!(e.to_string(), "route path of 256 ids exceeds maximum 255");
    }

    // -------------------------------------------------------------------------------
    // Property tests
    // -------------------------------------------------------------------------------

    fn arb_id() -> impl Strategy<Value = NodeId> + Clone {
        any::<[u8; 16]>().prop_map(NodeId::from_bytes)
    }

    fn arb_data() -> impl Strategy<Value = Bytes> + Clone {
        vec(any::<u8>(), 0..48).prop_map(Bytes::from)
    }

    fn arb_socket_addr() -> impl Strategy<Value = SocketAddr> + Clone {
        // SocketAddr::new gives flowinfo and scope id 0: the wire form carries neither.
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        ]
    }

    fn arb_handle<A: Address, S>(addr: S) -> impl Strategy<Value = NodeHandle<A>> + Clone
    where
        S: Strategy<Value = A> + Clone,
    {
        (arb_id(), addr).prop_map(|(id, addr)| NodeHandle::new(id, addr))
    }

    fn arb_handles<A: Address, S>(addr: S) -> impl Strategy<Value = Vec<NodeHandle<A>>> + Clone
    where
        S: Strategy<Value = A> + Clone,
    {
        vec(arb_handle(addr), 0..12)
    }

    fn arb_route<A: Address, S>(addr: S) -> impl Strategy<Value = RouteMsg<A>>
    where
        S: Strategy<Value = A> + Clone + 'static,
    {
        let payload = prop_oneof![
            (any::<u16>(), arb_data()).prop_map(|(app, data)| RoutePayload::App { app, data }),
            (arb_handle(addr.clone()), arb_handles(addr.clone()))
                .prop_map(|(joiner, rows)| RoutePayload::Join { joiner, rows }),
        ];
        (
            any::<u64>(),
            arb_id(),
            arb_handle(addr),
            any::<u64>(),
            any::<u8>(),
            any::<bool>(),
            vec(arb_id(), 0..10),
            payload,
        )
            .prop_map(
                |(hop_id, key, origin, request, hops, trace, path, payload)| RouteMsg {
                    hop_id,
                    key,
                    origin,
                    request,
                    hops,
                    trace,
                    path,
                    payload,
                },
            )
    }

    fn arb_body<A: Address, S>(addr: S) -> impl Strategy<Value = Body<A>>
    where
        S: Strategy<Value = A> + Clone + 'static,
    {
        let hs = || arb_handles(addr.clone());
        prop_oneof![
            arb_route(addr.clone()).prop_map(|m| Body::Route(Box::new(m))),
            any::<u64>().prop_map(|hop_id| Body::RouteAck { hop_id }),
            (any::<u16>(), arb_data()).prop_map(|(app, data)| Body::Direct { app, data }),
            (hs(), hs()).prop_map(|(leaf_set, rows)| Body::JoinReply { leaf_set, rows }),
            (any::<u64>(), any::<bool>(), any::<bool>()).prop_map(
                |(nonce, joining, want_leaf_set)| Body::Probe {
                    nonce,
                    joining,
                    want_leaf_set
                }
            ),
            (any::<u64>(), any::<bool>(), hs(), any::<u32>()).prop_map(
                |(nonce, ready, leaf_set, room_us)| Body::ProbeReply {
                    nonce,
                    ready,
                    leaf_set,
                    room_us,
                }
            ),
            (any::<bool>(), hs(), vec(arb_id(), 0..12)).prop_map(
                |(heartbeat, leaf_set, failed)| Body::LeafSetUpdate {
                    heartbeat,
                    leaf_set,
                    failed
                }
            ),
            (any::<u8>(), any::<u32>()).prop_map(|(row, rtt_us)| Body::RowRequest { row, rtt_us }),
            (any::<u8>(), hs(), any::<u32>()).prop_map(|(row, entries, seed)| {
                let rtt_us = (0..entries.len() as u32)
                    .map(|i| seed.wrapping_mul(i + 1))
                    .collect();
                Body::RowReply {
                    row,
                    entries,
                    rtt_us,
                }
            }),
            any::<u32>().prop_map(|rtt_us| Body::Announce { rtt_us }),
            hs().prop_map(|leaf_set| Body::Leave { leaf_set }),
            (arb_handle(addr.clone()), any::<u64>())
                .prop_map(|(target, nonce)| Body::IndirectProbe { target, nonce }),
            (arb_id(), any::<u64>())
                .prop_map(|(target, nonce)| Body::IndirectProbeReply { target, nonce }),
            (arb_handle(addr.clone()), arb_route(addr.clone())).prop_map(|(target, m)| {
                Body::RelayedRoute {
                    target,
                    route: Box::new(m),
                }
            }),
            (arb_handle(addr.clone()), hs(), hs()).prop_map(|(joiner, leaf_set, rows)| {
                Body::JoinReplyRelay {
                    joiner,
                    leaf_set,
                    rows,
                }
            }),
        ]
    }

    fn arb_message<A: Address, S>(addr: S) -> impl Strategy<Value = Message<A>>
    where
        S: Strategy<Value = A> + Clone + 'static,
    {
        (arb_id(), arb_body(addr)).prop_map(|(sender, body)| Message { sender, body })
    }

    /// Encodes, checks the length, framing and round trip.
    fn check_round_trip<A: Address>(m: &Message<A>) -> Result<(), TestCaseError> {
        let mut f = Vec::new();
        encode(m, &mut f)?;
        prop_assert_eq!(f.len(), encoded_len(m));
        prop_assert_eq!(frame_len(&f), Ok(Some(f.len())));
        prop_assert_eq!(&decode::<A>(&f)?, m);
        Ok(())
    }

    /// Decodes arbitrary bytes as both address types: must not panic, and whatever decodes
    /// must re-encode to the same bytes (the encoding is canonical).
    fn check_decode_any(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(m) = decode::<u32>(bytes) {
            prop_assert_eq!(enc(&m), bytes);
        }
        if let Ok(m) = decode::<SocketAddr>(bytes) {
            prop_assert_eq!(enc(&m), bytes);
        }
        if let Ok(Some(n)) = frame_len(bytes) {
            prop_assert!((HEADER_LEN..=MAX_FRAME_LEN).contains(&n));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn round_trip_u32(m in arb_message(any::<u32>())) {
            check_round_trip(&m)?;
        }

        #[test]
        fn round_trip_socket_addr(m in arb_message(arb_socket_addr())) {
            check_round_trip(&m)?;
        }

        #[test]
        fn stream_of_frames_splits(ms in vec(arb_message(arb_socket_addr()), 0..6)) {
            let mut stream = Vec::new();
            for m in &ms {
                encode(m, &mut stream)?;
            }
            let mut rest = &stream[..];
            let mut got = Vec::new();
            while let Some(n) = frame_len(rest)? {
                let (f, tail) = rest.split_at(n);
                got.push(decode::<SocketAddr>(f)?);
                rest = tail;
            }
            prop_assert!(rest.is_empty());
            prop_assert_eq!(got, ms);
        }

        #[test]
        fn decode_arbitrary_bytes(bytes in vec(any::<u8>(), 0..512)) {
            check_decode_any(&bytes)?;
        }

        #[test]
        fn decode_random_body_behind_valid_header(
            ty in 0u8..=12,
            body in vec(any::<u8>(), 0..256),
        ) {
            check_decode_any(&frame(ty, &body))?;
        }

        #[test]
        fn decode_mutated_frames(
            m in arb_message(arb_socket_addr()),
            edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut f = enc(&m);
            for (at, b) in edits {
                let i = at.index(f.len());
                f[i] = b;
            }
            if let Some(cut) = cut {
                f.truncate(cut.index(f.len() + 1));
            }
            check_decode_any(&f)?;
        }

        #[test]
        fn decode_mutated_u32_frames(
            m in arb_message(any::<u32>()),
            edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut f = enc(&m);
            for (at, b) in edits {
                let i = at.index(f.len());
                f[i] = b;
            }
            check_decode_any(&f)?;
        }
    }
}
