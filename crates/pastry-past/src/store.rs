//! The [`Store`] trait: where a node keeps the replicas it holds, keyed by 128-bit id.
//!
//! A store maps keys to opaque byte records (PAST writes an encoded replica record) and
//! accounts for their size. [`MemoryStore`] is for the simulator and tests;
//! [`crate::RedbStore`] keeps records on disk. A store never interprets records and never
//! decides what to keep: quotas and verification are PAST's job.

use core::fmt;
use std::collections::BTreeMap;

use bytes::Bytes;
use pastry_core::NodeId;

/// A store operation failed.
#[derive(Debug)]
pub enum StoreError {
    /// The on-disk format version is not the one this build reads.
    FormatVersion {
        /// The version found.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// The backend failed (IO, corruption, ...).
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::FormatVersion { found, expected } => write!(
                f,
                "store format version {found} is not supported (this build reads version {expected})"
            ),
            StoreError::Backend(e) => write!(f, "store backend error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Persistent or in-memory key-value storage for replicas.
pub trait Store: Send + 'static {
    /// The record under `key`.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    fn get(&self, key: NodeId) -> Result<Option<Bytes>, StoreError>;

    /// Stores `value` under `key`, replacing any previous record. Durable when it returns
    /// (for persistent stores).
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails; the previous record is then unchanged.
    fn put(&mut self, key: NodeId, value: Bytes) -> Result<(), StoreError>;

    /// Removes the record under `key`; true if there was one.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    fn remove(&mut self, key: NodeId) -> Result<bool, StoreError>;

    /// Up to `limit` keys in `[lo, hi]` (numerically, inclusive), ascending. Empty when
    /// `lo > hi`.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    fn keys_between(&self, lo: NodeId, hi: NodeId, limit: usize)
    -> Result<Vec<NodeId>, StoreError>;

    /// Number of records.
    fn len(&self) -> u64;

    /// True when the store holds no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of the records' sizes in bytes.
    fn bytes_used(&self) -> u64;

    /// Up to `limit` keys on the clockwise arc from `from` to `to` (inclusive, wrapping
    /// past the largest id), in clockwise order.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    fn keys_in_arc(
        &self,
        from: NodeId,
        to: NodeId,
        limit: usize,
    ) -> Result<Vec<NodeId>, StoreError> {
        if from <= to {
            return self.keys_between(from, to, limit);
        }
        let mut v = self.keys_between(from, NodeId::MAX, limit)?;
        if v.len() < limit {
            let rest = self.keys_between(NodeId::ZERO, to, limit - v.len())?;
            v.extend(rest);
        }
        Ok(v)
    }
}

/// A [`Store`] in a `BTreeMap`: for the simulator and tests. Lost when dropped.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    map: BTreeMap<NodeId, Bytes>,
    bytes: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: NodeId) -> Result<Option<Bytes>, StoreError> {
        Ok(self.map.get(&key).cloned())
    }

    fn put(&mut self, key: NodeId, value: Bytes) -> Result<(), StoreError> {
        self.bytes += value.len() as u64;
        if let Some(old) = self.map.insert(key, value) {
            self.bytes -= old.len() as u64;
        }
        Ok(())
    }

    fn remove(&mut self, key: NodeId) -> Result<bool, StoreError> {
        Ok(match self.map.remove(&key) {
            Some(old) => {
                self.bytes -= old.len() as u64;
                true
            }
            None => false,
        })
    }

    fn keys_between(
        &self,
        lo: NodeId,
        hi: NodeId,
        limit: usize,
    ) -> Result<Vec<NodeId>, StoreError> {
        if lo > hi {
            return Ok(Vec::new());
        }
        Ok(self
            .map
            .range(lo..=hi)
            .take(limit)
            .map(|(k, _)| *k)
            .collect())
    }

    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    fn bytes_used(&self) -> u64 {
        self.bytes
    }
}

/// The behaviour every [`Store`] must have; run against each implementation.
#[cfg(test)]
pub(crate) fn check_store_contract(s: &mut dyn Store) {
    let k = |v: u128| NodeId::from_u128(v);
    assert!(s.is_empty());
    assert_eq!(s.bytes_used(), 0);
    assert_eq!(s.get(k(1)).unwrap(), None);
    s.put(k(10), Bytes::from_static(b"ten")).unwrap();
    s.put(k(20), Bytes::from_static(b"twenty")).unwrap();
    s.put(k(u128::MAX), Bytes::from_static(b"max")).unwrap();
    s.put(k(0), Bytes::from_static(b"")).unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s.bytes_used(), 3 + 6 + 3);
    assert_eq!(s.get(k(20)).unwrap().as_deref(), Some(&b"twenty"[..]));
    // Replacing adjusts the accounting.
    s.put(k(20), Bytes::from_static(b"20")).unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s.bytes_used(), 3 + 2 + 3);
    assert_eq!(s.get(k(20)).unwrap().as_deref(), Some(&b"20"[..]));
    // Ranges: ascending, inclusive, limited; arcs wrap.
    assert_eq!(
        s.keys_between(k(0), k(20), 10).unwrap(),
        vec![k(0), k(10), k(20)]
    );
    assert_eq!(s.keys_between(k(5), k(20), 1).unwrap(), vec![k(10)]);
    assert!(s.keys_between(k(20), k(5), 10).unwrap().is_empty());
    assert_eq!(
        s.keys_in_arc(k(15), k(10), 10).unwrap(),
        vec![k(20), k(u128::MAX), k(0), k(10)]
    );
    assert_eq!(
        s.keys_in_arc(k(u128::MAX), k(0), 10).unwrap(),
        vec![k(u128::MAX), k(0)]
    );
    assert_eq!(
        s.keys_in_arc(k(15), k(10), 2).unwrap(),
        vec![k(20), k(u128::MAX)]
    );
    // Removal.
    assert!(s.remove(k(10)).unwrap());
    assert!(!s.remove(k(10)).unwrap());
    assert_eq!(s.len(), 3);
    assert_eq!(s.bytes_used(), 2 + 3);
    assert_eq!(s.get(k(10)).unwrap(), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_meets_the_contract() {
        check_store_contract(&mut MemoryStore::new());
    }
}
