//! [`RedbStore`]: a [`Store`] in a redb database file.
//!
//! # On-disk format, version 1
//! - table `objects`: key `[u8; 16]` (the id, big-endian, so key order is id order), value
//!   the record bytes PAST hands to [`Store::put`].
//! - table `meta`: `"format_version"` -> `1`, `"count"` -> number of records,
//!   `"bytes"` -> sum of record sizes (kept in the same transaction as every write, so
//!   size accounting needs no scan on open).
//!
//! Opening a file whose `format_version` differs fails with
//! [`StoreError::FormatVersion`]; a file with records but no version is version 0.
//! Every write is one redb transaction committed with redb's default durability (fsynced
//! before `put`/`remove` return).

use std::path::Path;

use bytes::Bytes;
use pastry_core::NodeId;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::store::{Store, StoreError};

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const OBJECTS: TableDefinition<'static, [u8; 16], &'static [u8]> = TableDefinition::new("objects");
const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A durable [`Store`] on redb.
pub struct RedbStore {
    db: Database,
    count: u64,
    bytes: u64,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("count", &self.count)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating it if it does not exist.
    ///
    /// # Errors
    /// [`StoreError::FormatVersion`] when the file was written by another format version;
    /// [`StoreError::Backend`] when redb cannot open it.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let db = Database::create(path).map_err(backend)?;
        let tx = db.begin_write().map_err(backend)?;
        let (count, bytes) = {
            let mut meta = tx.open_table(META).map_err(backend)?;
            let objects = tx.open_table(OBJECTS).map_err(backend)?;
            let version = meta
                .get("format_version")
                .map_err(backend)?
                .map(|v| v.value());
            match version {
                Some(v) if v == u64::from(FORMAT_VERSION) => {}
                Some(v) => {
                    return Err(StoreError::FormatVersion {
                        found: u32::try_from(v).unwrap_or(u32::MAX),
                        expected: FORMAT_VERSION,
                    });
                }
                None if objects.len().map_err(backend)? > 0 => {
                    return Err(StoreError::FormatVersion {
                        found: 0,
                        expected: FORMAT_VERSION,
                    });
                }
                None => {
                    meta.insert("format_version", u64::from(FORMAT_VERSION))
                        .map_err(backend)?;
                    meta.insert("count", 0).map_err(backend)?;
                    meta.insert("bytes", 0).map_err(backend)?;
                }
            }
            let count = meta.get("count").map_err(backend)?.map_or(0, |v| v.value());
            let bytes = meta.get("bytes").map_err(backend)?.map_or(0, |v| v.value());
            (count, bytes)
        };
        tx.commit().map_err(backend)?;
        Ok(RedbStore { db, count, bytes })
    }

    /// Applies one change (`Some` = put, `None` = remove) in one durable transaction;
    /// returns the previous record's size.
    fn write(&mut self, key: NodeId, value: Option<&[u8]>) -> Result<Option<u64>, StoreError> {
        let tx = self.db.begin_write().map_err(backend)?;
        let (old, count, bytes) = {
            let mut objects = tx.open_table(OBJECTS).map_err(backend)?;
            let k = key.to_bytes();
            let old = match value {
                Some(v) => objects.insert(k, v).map_err(backend)?,
                None => objects.remove(k).map_err(backend)?,
            }
            .map(|g| g.value().len() as u64);
            let mut count = self.count;
            let mut bytes = self.bytes;
            if let Some(o) = old {
                count -= 1;
                bytes -= o;
            }
            if let Some(v) = value {
                count += 1;
                bytes += v.len() as u64;
            }
            let mut meta = tx.open_table(META).map_err(backend)?;
            meta.insert("count", count).map_err(backend)?;
            meta.insert("bytes", bytes).map_err(backend)?;
            (old, count, bytes)
        };
        tx.commit().map_err(backend)?;
        self.count = count;
        self.bytes = bytes;
        Ok(old)
    }
}

impl Store for RedbStore {
    fn get(&self, key: NodeId) -> Result<Option<Bytes>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let objects = tx.open_table(OBJECTS).map_err(backend)?;
        let v = objects.get(key.to_bytes()).map_err(backend)?;
        Ok(v.map(|g| Bytes::copy_from_slice(g.value())))
    }

    fn put(&mut self, key: NodeId, value: Bytes) -> Result<(), StoreError> {
        self.write(key, Some(&value)).map(|_| ())
    }

    fn remove(&mut self, key: NodeId) -> Result<bool, StoreError> {
        self.write(key, None).map(|o| o.is_some())
    }

    fn keys_between(
        &self,
        lo: NodeId,
        hi: NodeId,
        limit: usize,
    ) -> Result<Vec<NodeId>, StoreError> {
        if lo > hi || limit == 0 {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read().map_err(backend)?;
        let objects = tx.open_table(OBJECTS).map_err(backend)?;
        let mut out = Vec::new();
        for entry in objects
            .range(lo.to_bytes()..=hi.to_bytes())
            .map_err(backend)?
        {
            let (k, _) = entry.map_err(backend)?;
            out.push(NodeId::from_bytes(k.value()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn len(&self) -> u64 {
        self.count
    }

    fn bytes_used(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redb_store_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedbStore::open(dir.path().join("past.redb")).unwrap();
        crate::store::check_store_contract(&mut s);
    }
}
