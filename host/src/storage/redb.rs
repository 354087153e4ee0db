//! The durable backend: two tables in one redb file.
//!
//! A [`WriteBatch`] is one redb write transaction, so a batch's data and its meta entries (the
//! last-applied log id above all) reach the disk together: after a crash the store holds either
//! the whole batch or none of it, and the last-applied id always describes the data (etcd #13766
//! is the bug this prevents). Read views are redb read transactions: isolated from later commits.

use super::snapshot::{self, SnapshotInfo};
use super::{ReadView, StorageError, Store, Visit, WriteBatch, redb_err};
use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("fsm_data");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("fsm_meta");

/// A store opened without per-commit fsync still makes one commit durable this often: a restart
/// then replays at most about this much of the log (not everything since the last snapshot), and
/// redb can reuse the pages that the commits since the last durable one freed (it cannot before),
/// which bounds the file and the bookkeeping each commit walks.
pub const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The redb store. See the module docs.
pub struct RedbStore {
    db: Database,
    durability: Durability,
    /// When a commit was last made durable (only kept when commits are not all durable).
    last_durable: std::sync::Mutex<std::time::Instant>,
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`. With `durable`, every commit is fsynced
    /// before it returns; without, commits are fast but a crash may lose the latest ones (for
    /// benchmarks and tests only).
    pub fn open(path: &Path, durable: bool) -> Result<Self, StorageError> {
        let db = Database::create(path).map_err(redb_err)?;
        let store = RedbStore {
            db,
            durability: if durable { Durability::Immediate } else { Durability::None },
            last_durable: std::sync::Mutex::new(std::time::Instant::now()),
        };
        // Create both tables up front so read views never meet a missing table.
        let tx = store.begin_write()?;
        tx.open_table(DATA).map_err(redb_err)?;
        tx.open_table(META).map_err(redb_err)?;
        tx.commit().map_err(redb_err)?;
        Ok(store)
    }

    /// The number of data entries (redb keeps the count in the table's header: O(1)).
    pub(super) fn data_len(&self) -> Result<u64, StorageError> {
        let tx = self.db.begin_read().map_err(redb_err)?;
        tx.open_table(DATA).map_err(redb_err)?.len().map_err(redb_err)
    }

    fn begin_write(&self) -> Result<WriteTransaction, StorageError> {
        let mut tx = self.db.begin_write().map_err(redb_err)?;
        tx.set_durability(self.durability).map_err(redb_err)?;
        Ok(tx)
    }

    /// One write transaction: every data entry removed first when `clear`, then `data` (a `None`
    /// value deletes the key), then `meta`, committed together. [`Store::commit`] and the
    /// write-back layer's flush both end here.
    pub(super) fn write<'a>(
        &self,
        clear: bool,
        data: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        meta: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<(), StorageError> {
        let mut tx = self.begin_write()?;
        let mut last_durable = self.last_durable.lock().unwrap_or_else(|p| p.into_inner());
        let sync_now = matches!(self.durability, Durability::None) && last_durable.elapsed() >= SYNC_INTERVAL;
        if sync_now {
            tx.set_durability(Durability::Immediate).map_err(redb_err)?;
        }
        if clear {
            // Frees the table's pages without reading its entries; read views keep theirs.
            tx.delete_table(DATA).map_err(redb_err)?;
        }
        {
            let mut table = tx.open_table(DATA).map_err(redb_err)?;
            for (key, value) in data {
                match value {
                    Some(v) => table.insert(key, v).map_err(redb_err)?,
                    None => table.remove(key).map_err(redb_err)?,
                };
            }
            let mut table = tx.open_table(META).map_err(redb_err)?;
            for (name, value) in meta {
                table.insert(name, value).map_err(redb_err)?;
            }
        }
        tx.commit().map_err(redb_err)?;
        if sync_now {
            *last_durable = std::time::Instant::now();
        }
        Ok(())
    }
}

struct RedbView {
    data: ReadOnlyTable<&'static [u8], &'static [u8]>,
    meta: ReadOnlyTable<&'static str, &'static [u8]>,
}

impl ReadView for RedbView {
    fn get(&self, key: &[u8], found: &mut dyn FnMut(&[u8])) -> Result<bool, StorageError> {
        match self.data.get(key).map_err(redb_err)? {
            Some(guard) => {
                found(guard.value());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, visit: Visit<'_>) -> Result<(), StorageError> {
        visit_items(self.data.range::<&[u8]>((start, end)).map_err(redb_err)?, visit)
    }

    fn scan_rev(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, visit: Visit<'_>) -> Result<(), StorageError> {
        visit_items(self.data.range::<&[u8]>((start, end)).map_err(redb_err)?.rev(), visit)
    }

    fn meta(&self) -> Result<BTreeMap<String, Vec<u8>>, StorageError> {
        let mut out = BTreeMap::new();
        for item in self.meta.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            out.insert(k.value().to_owned(), v.value().to_vec());
        }
        Ok(out)
    }
}

type Item = (redb::AccessGuard<'static, &'static [u8]>, redb::AccessGuard<'static, &'static [u8]>);

/// Calls `visit` with each item of a range, in the range's order, until it breaks.
fn visit_items(
    items: impl Iterator<Item = Result<Item, redb::StorageError>>,
    visit: Visit<'_>,
) -> Result<(), StorageError> {
    for item in items {
        let (k, v) = item.map_err(redb_err)?;
        if visit(k.value(), v.value()).is_break() {
            break;
        }
    }
    Ok(())
}

impl Store for RedbStore {
    fn read(&self) -> Result<Box<dyn ReadView>, StorageError> {
        let tx = self.db.begin_read().map_err(redb_err)?;
        Ok(Box::new(RedbView {
            data: tx.open_table(DATA).map_err(redb_err)?,
            meta: tx.open_table(META).map_err(redb_err)?,
        }))
    }

    fn commit(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        self.write(
            batch.clear_data,
            batch.data.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
            batch.meta.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        )
    }

    fn sync(&self) -> Result<(), StorageError> {
        // An empty durable commit persists every non-durable commit before it.
        let mut tx = self.db.begin_write().map_err(redb_err)?;
        tx.set_durability(Durability::Immediate).map_err(redb_err)?;
        tx.commit().map_err(redb_err)
    }

    fn restore(
        &self,
        source: &mut dyn std::io::Read,
        required: &[(&str, &[u8])],
    ) -> Result<SnapshotInfo, StorageError> {
        // Always durable: an installed snapshot replaces state the log no longer holds.
        let mut tx = self.db.begin_write().map_err(redb_err)?;
        tx.set_durability(Durability::Immediate).map_err(redb_err)?;
        let info = {
            tx.delete_table(DATA).map_err(redb_err)?;
            tx.delete_table(META).map_err(redb_err)?;
            let mut data = tx.open_table(DATA).map_err(redb_err)?;
            let mut meta = tx.open_table(META).map_err(redb_err)?;
            snapshot::read(source, required, &mut |entry| {
                match entry {
                    snapshot::Entry::Meta(name, value) => meta.insert(name.as_str(), value.as_slice()),
                    snapshot::Entry::Data(key, value) => data.insert(key.as_slice(), value.as_slice()),
                }
                .map(drop)
                .map_err(redb_err)
            })?
            // On error the transaction is dropped here, uncommitted: the old state stays.
        };
        tx.commit().map_err(redb_err)?;
        Ok(info)
    }
}
