//! PAST on a networked node: the options that register it ([`PastOptions`]), the answers
//! the driver hands back to the admin API ([`PutResult`], [`ReplicaHolder`]) and the
//! narrow error they fail with ([`PastApiError`], with the HTTP status it maps to).
//!
//! Each node runs one [`pastry_past::Past`] under [`PAST_APP`] on a
//! [`pastry_past::RedbStore`] in its data directory (`past.redb`), so its replicas survive
//! kill -9 and restarts; without a store path it keeps them in memory.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use pastry_core::{AppId, NodeId};
use pastry_past::{InsertFailure, LookupFailure, PastConfig};
use serde::Serialize;
use tokio::sync::oneshot;

/// Application id of PAST on networked nodes.
pub const PAST_APP: AppId = 0x0100;

/// File name of a node's PAST store inside its data directory.
pub const STORE_FILE: &str = "past.redb";

/// How a node runs PAST.
#[derive(Debug, Clone)]
pub struct PastOptions {
    /// PAST's parameters (validated against the node's [`pastry_core::Config`]).
    pub config: PastConfig,
    /// The redb file for the node's replicas; `None` keeps them in memory.
    pub store: Option<PathBuf>,
}

/// A successful put.
#[derive(Debug, Clone, Serialize)]
pub struct PutResult {
    /// The object's key (content hash), 32 hex digits.
    pub key: String,
    /// Bytes stored.
    pub size: usize,
    /// The replica nodes that acknowledged, closest to the key first.
    pub holders: Vec<ReplicaHolder>,
}

/// A node responsible for (or holding) a replica.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaHolder {
    /// Its id.
    pub id: String,
    /// Its address.
    pub addr: String,
}

impl ReplicaHolder {
    pub(crate) fn new(id: NodeId, addr: SocketAddr) -> ReplicaHolder {
        ReplicaHolder {
            id: id.to_string(),
            addr: addr.to_string(),
        }
    }
}

/// Why a PAST request through the admin API failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PastApiError {
    /// The object is over the size limit.
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// No node responsible for the key holds it.
    NotFound,
    /// The replica nodes have no room.
    NoSpace,
    /// No answer after every retry.
    Timeout,
    /// Too many requests are outstanding.
    Busy,
    /// The node does not run PAST.
    Disabled,
    /// The node has stopped.
    Stopped,
    /// Any other failure (its description).
    Failed(String),
}

impl PastApiError {
    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            PastApiError::TooLarge { .. } => 413,
            PastApiError::NotFound => 404,
            PastApiError::NoSpace => 507,
            PastApiError::Timeout => 504,
            PastApiError::Busy | PastApiError::Disabled | PastApiError::Stopped => 503,
            PastApiError::Failed(_) => 502,
        }
    }
}

impl fmt::Display for PastApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PastApiError::TooLarge { size, max } => write!(
                f,
                "object of {size} bytes is larger than the limit of {max} bytes"
            ),
            PastApiError::NotFound => f.write_str("no object under this key"),
            PastApiError::NoSpace => f.write_str("the replica nodes have no room for the object"),
            PastApiError::Timeout => f.write_str("no answer from the ring after every retry"),
            PastApiError::Busy => f.write_str("too many requests outstanding, try again"),
            PastApiError::Disabled => f.write_str("this node does not run PAST"),
            PastApiError::Stopped => f.write_str("the node has stopped"),
            PastApiError::Failed(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for PastApiError {}

impl From<InsertFailure> for PastApiError {
    fn from(f: InsertFailure) -> Self {
        match f {
            InsertFailure::TooLarge { size, max } => PastApiError::TooLarge { size, max },
            InsertFailure::NoSpace => PastApiError::NoSpace,
            InsertFailure::Timeout => PastApiError::Timeout,
            InsertFailure::Busy => PastApiError::Busy,
            other => PastApiError::Failed(other.to_string()),
        }
    }
}

impl From<LookupFailure> for PastApiError {
    fn from(f: LookupFailure) -> Self {
        match f {
            LookupFailure::NotFound => PastApiError::NotFound,
            LookupFailure::Timeout => PastApiError::Timeout,
            LookupFailure::Busy => PastApiError::Busy,
        }
    }
}

/// A PAST request the driver waits to answer.
#[derive(Debug)]
pub(crate) enum PastPending {
    Put(oneshot::Sender<Result<PutResult, PastApiError>>, usize),
    Get(oneshot::Sender<Result<Bytes, PastApiError>>),
    Replicas(oneshot::Sender<Result<Vec<ReplicaHolder>, PastApiError>>),
}

/// What the admin API asks a node's PAST.
#[derive(Debug)]
pub(crate) enum PastCommand {
    Put {
        data: Bytes,
        k: Option<usize>,
        reply: oneshot::Sender<Result<PutResult, PastApiError>>,
    },
    Get {
        key: NodeId,
        reply: oneshot::Sender<Result<Bytes, PastApiError>>,
    },
    Replicas {
        key: NodeId,
        max: usize,
        reply: oneshot::Sender<Result<Vec<ReplicaHolder>, PastApiError>>,
    },
}
