//! [`PastEvent`]: what a client's requests come back as.
//!
//! Every client method of [`crate::Past`] returns a request id at once; its outcome comes
//! later (or at once, for requests refused locally) as a `PastEvent` the application hands
//! to the host with `AppContext::notify`, i.e. as `pastry_core::Event::Application { app,
//! value }` whose `value` downcasts to `PastEvent<A>`. Exactly one final event comes per
//! request id.

use core::fmt;

use pastry_core::{NodeHandle, NodeId};

use crate::object::PastObject;

/// Why an insert failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertFailure {
    /// The object is over `max_object_bytes`.
    TooLarge {
        /// The content's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The object's hash or certificate does not check out.
    InvalidObject,
    /// The replica nodes (and their leaf sets, by replica diversion) have no room, after
    /// every file diversion the request allowed.
    NoSpace,
    /// The key holds an object of another owner (or a content-addressed object).
    NotOwner,
    /// The key already holds a higher version.
    StaleVersion,
    /// The key holds the same version with other content.
    VersionConflict,
    /// The node the request reached was not responsible for the key.
    NotResponsible,
    /// Too many requests are outstanding (here or at the root).
    Busy,
    /// No answer after every retry.
    Timeout,
    /// A store failed.
    StoreError,
}

impl InsertFailure {
    pub(crate) fn code(self) -> u8 {
        match self {
            InsertFailure::TooLarge { .. } => 1,
            InsertFailure::InvalidObject => 2,
            InsertFailure::NoSpace => 3,
            InsertFailure::NotOwner => 4,
            InsertFailure::StaleVersion => 5,
            InsertFailure::VersionConflict => 6,
            InsertFailure::NotResponsible => 7,
            InsertFailure::Busy => 8,
            InsertFailure::Timeout => 9,
            InsertFailure::StoreError => 10,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<InsertFailure> {
        Some(match c {
            1 => InsertFailure::TooLarge { size: 0, max: 0 },
            2 => InsertFailure::InvalidObject,
            3 => InsertFailure::NoSpace,
            4 => InsertFailure::NotOwner,
            5 => InsertFailure::StaleVersion,
            6 => InsertFailure::VersionConflict,
            7 => InsertFailure::NotResponsible,
            8 => InsertFailure::Busy,
            9 => InsertFailure::Timeout,
            10 => InsertFailure::StoreError,
            _ => return None,
        })
    }
}

impl fmt::Display for InsertFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsertFailure::TooLarge { size, max } if *max > 0 => {
                write!(f, "object of {size} bytes exceeds the limit of {max}")
            }
            InsertFailure::TooLarge { .. } => f.write_str("object too large"),
            InsertFailure::InvalidObject => f.write_str("object hash or certificate is invalid"),
            InsertFailure::NoSpace => f.write_str("no space on the replica nodes"),
            InsertFailure::NotOwner => f.write_str("the key belongs to another owner"),
            InsertFailure::StaleVersion => f.write_str("a higher version is stored"),
            InsertFailure::VersionConflict => {
                f.write_str("the same version is stored with other content")
            }
            InsertFailure::NotResponsible => f.write_str("node not responsible for the key"),
            InsertFailure::Busy => f.write_str("too many requests outstanding"),
            InsertFailure::Timeout => f.write_str("no answer after every retry"),
            InsertFailure::StoreError => f.write_str("a store failed"),
        }
    }
}

/// Why a lookup, handles request or fetch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFailure {
    /// The nodes responsible for the key do not hold it.
    NotFound,
    /// No answer after every retry.
    Timeout,
    /// Too many requests are outstanding on this node.
    Busy,
}

impl fmt::Display for LookupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LookupFailure::NotFound => "key not found",
            LookupFailure::Timeout => "no answer after every retry",
            LookupFailure::Busy => "too many requests outstanding",
        })
    }
}

/// The outcome of a client request, handed to the host through `AppContext::notify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PastEvent<A> {
    /// An insert stored its replicas.
    Inserted {
        /// The request id `insert*` returned.
        request: u64,
        /// The key it is stored under (for a named insert after file diversion, the key of
        /// the salt that succeeded).
        key: NodeId,
        /// The salt used (named inserts; 0 otherwise).
        salt: u32,
        /// The replica nodes that acknowledged, closest to the key first.
        holders: Vec<NodeHandle<A>>,
    },
    /// An insert failed.
    InsertFailed {
        /// The request id.
        request: u64,
        /// The key (of the last attempt).
        key: NodeId,
        /// Why.
        reason: InsertFailure,
    },
    /// A lookup or fetch found the object (verified against the key).
    Found {
        /// The request id.
        request: u64,
        /// The key.
        key: NodeId,
        /// The object.
        object: PastObject,
        /// True when a cache (not a replica) served it.
        from_cache: bool,
        /// The node that served it.
        source: NodeHandle<A>,
    },
    /// A lookup or fetch failed.
    LookupFailed {
        /// The request id.
        request: u64,
        /// The key.
        key: NodeId,
        /// Why.
        reason: LookupFailure,
    },
    /// The answer to `lookup_handles`: the nodes responsible for the key's replicas.
    Handles {
        /// The request id.
        request: u64,
        /// The key.
        key: NodeId,
        /// The replica nodes as the key's root sees them, closest first.
        handles: Vec<NodeHandle<A>>,
    },
}

impl<A> PastEvent<A> {
    /// The request id the event answers.
    pub fn request(&self) -> u64 {
        match self {
            PastEvent::Inserted { request, .. }
            | PastEvent::InsertFailed { request, .. }
            | PastEvent::Found { request, .. }
            | PastEvent::LookupFailed { request, .. }
            | PastEvent::Handles { request, .. } => *request,
        }
    }
}
