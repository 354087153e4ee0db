//! The state store: where the replicated state machine's keys and values live.
//!
//! One interface ([`Store`], [`ReadView`]) and two backends: [`RedbStore`] (durable, one redb
//! file) and [`MemoryStore`] (a persistent ordered map, for tests and throwaway nodes). Both pass
//! the same conformance suite (`host/tests/storage.rs`).
//!
//! The store knows nothing of wasm or Raft. It holds two keyspaces:
//! * **data**: the module's ordered byte keys and values;
//! * **meta**: a few named byte strings the layers above record atomically with the data (the
//!   last-applied log id, the state-machine contract). See [`meta`].
//!
//! Writes arrive as a [`WriteBatch`] and commit atomically: data changes and meta entries of one
//! batch are visible together or not at all, and with the redb backend they are on disk before
//! [`Store::commit`] returns (when configured durable).

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

mod key_filter;
mod map_key;
mod memory;
mod redb;
pub mod snapshot;
mod write_back;

pub use self::memory::MemoryStore;
pub use self::redb::RedbStore;
pub use self::write_back::{FlushPolicy, WriteBackStore};

/// A failure of the storage engine. It is **not deterministic**: the same command on another
/// replica may well succeed, so it must never be turned into a client reply as if the command had
/// been applied. The node stops applying instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// redb reported an error (I/O, corruption, a full disk).
    #[error("redb: {0}")]
    Redb(#[from] ::redb::Error),
    /// Reading or writing a snapshot stream failed.
    #[error("snapshot I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A snapshot stream is not one we wrote, or was damaged on the way.
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
    /// A well-formed snapshot of the wrong thing (another module's state, say).
    #[error("snapshot refused: {0}")]
    SnapshotRefused(String),
}

/// Converts any of redb's per-operation errors into [`StorageError`].
pub(crate) fn redb_err(e: impl Into<::redb::Error>) -> StorageError {
    StorageError::Redb(e.into())
}

/// Well-known meta keys, so every layer spells them the same way.
pub mod meta {
    /// The last log entry whose effects are in the data, in whatever encoding the Raft layer uses.
    pub const LAST_APPLIED: &str = "last_applied";
    /// The state-machine contract the data was produced under (module digest, ABI, engine,
    /// limits), encoded by the runtime.
    pub const CONTRACT: &str = "fsm_contract";
    /// The `.wasm` bytes of the module the data was produced by (and that applies what comes
    /// next): the replicated state carries its own code, so a replica restored from a snapshot
    /// runs the module the cluster runs, whatever its own config names.
    pub const MODULE: &str = "fsm_module";
    /// The state's time: the latest log-entry stamp applied (milliseconds since the Unix epoch,
    /// `i64` little-endian). A module's clock never reads less, so time never runs backwards
    /// across leader changes, restarts or snapshots.
    pub const CLOCK: &str = "clock_ms";
}

/// A scan's callback: gets each `(key, value)` in order; returns `Break` to stop the scan.
pub type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> ControlFlow<()>;

/// A consistent, read-only view of the store at one moment. Writes committed after the view was
/// opened are not visible through it, so a snapshot can stream from a view while the state
/// machine keeps applying.
pub trait ReadView: Send {
    /// Calls `found` with the value at `key`, if any; returns whether there was one. A callback
    /// rather than an owned value lets the caller copy straight out of the backend's page.
    fn get(&self, key: &[u8], found: &mut dyn FnMut(&[u8])) -> Result<bool, StorageError>;

    /// Visits entries with keys in `(start, end)` in ascending key order until `visit` breaks.
    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, visit: Visit<'_>) -> Result<(), StorageError>;

    /// [`ReadView::scan`] in descending key order: what a module needs to read the top of a
    /// range (a sorted set's highest scores, a list's tail) without walking all of it.
    fn scan_rev(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, visit: Visit<'_>) -> Result<(), StorageError>;

    /// Every meta entry, in name order.
    fn meta(&self) -> Result<BTreeMap<String, Vec<u8>>, StorageError>;
}

/// The store: opens read views and commits write batches.
///
/// There is one writer (the state machine's apply loop); readers are any number of views.
pub trait Store: Send + Sync {
    /// A view of everything committed so far.
    fn read(&self) -> Result<Box<dyn ReadView>, StorageError>;

    /// Commits a batch atomically (and durably, for a durable backend).
    fn commit(&self, batch: &WriteBatch) -> Result<(), StorageError>;

    /// Makes every commit so far durable, even on a store opened without per-commit fsync. The
    /// Raft layer calls it before a snapshot, so the log is only purged behind durable state.
    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Replaces the whole state (data and meta) with a snapshot's, atomically: if the stream is
    /// cut or damaged, the previous state stays as it was. The snapshot's meta must hold every
    /// `required` entry with exactly that value (checked before any data is read). See
    /// [`snapshot`] for the format.
    fn restore(
        &self,
        source: &mut dyn std::io::Read,
        required: &[(&str, &[u8])],
    ) -> Result<snapshot::SnapshotInfo, StorageError>;
}

/// Shared handle to a store, as the runtime and (later) the Raft layer hold it.
pub type SharedStore = Arc<dyn Store>;

/// Which backend holds the state, as a node's config names it
/// (`store_backend: redb | memory_durable | memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// [`RedbStore`] behind a write-back layer: the state lives in a file, memory holds a cache.
    Redb,
    /// [`MemoryStore`] for the state, kept durable by what is on disk besides it: the fsynced Raft
    /// log and the snapshot files. A restart loads the newest snapshot and replays the log after
    /// it, as Redis loads its RDB file and replays its AOF. The whole state must fit in memory.
    MemoryDurable,
    /// [`MemoryStore`] and a memory log: lost with the process.
    Memory,
}

impl Backend {
    /// Whether the node keeps its Raft log and vote on disk (every backend but `memory`).
    pub fn log_on_disk(self) -> bool {
        self != Backend::Memory
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "redb" => Ok(Backend::Redb),
            "memory_durable" => Ok(Backend::MemoryDurable),
            "memory" => Ok(Backend::Memory),
            other => Err(format!("unknown store backend {other:?}: expected `redb`, `memory_durable` or `memory`")),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Redb => "redb",
            Backend::MemoryDurable => "memory_durable",
            Backend::Memory => "memory",
        })
    }
}

/// Opens the configured backend: a redb file at `path` (fsynced on every commit when `durable`),
/// or a fresh memory store (`path` unused; a `memory_durable` node then restores its snapshot).
pub fn open(backend: Backend, path: &std::path::Path, durable: bool) -> Result<SharedStore, StorageError> {
    Ok(match backend {
        Backend::Redb if durable => Arc::new(RedbStore::open(path, true)?),
        // Not fsynced per commit, so nothing is lost by grouping commits in memory first.
        Backend::Redb => Arc::new(WriteBackStore::new(RedbStore::open(path, false)?, FlushPolicy::default())?),
        Backend::MemoryDurable | Backend::Memory => Arc::new(MemoryStore::new()),
    })
}

/// Data changes and meta entries to commit together. Later operations on the same key replace
/// earlier ones, so the batch holds at most one operation per key.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    /// Remove every data entry (meta stays) before applying `data`. This is how a module's
    /// `clear` (a `FLUSHDB`) reaches the store: one flag rather than a delete per key, so a flush
    /// of any size is one bounded log entry for the module and the overlay.
    pub clear_data: bool,
    /// `Some(value)` to store, `None` to delete.
    pub data: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Meta entries to set.
    pub meta: BTreeMap<String, Vec<u8>>,
}

impl WriteBatch {
    /// Records a put.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.data.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Records a delete.
    pub fn delete(&mut self, key: &[u8]) {
        self.data.insert(key.to_vec(), None);
    }

    /// Records a meta entry.
    pub fn set_meta(&mut self, name: &str, value: &[u8]) {
        self.meta.insert(name.to_owned(), value.to_vec());
    }

    /// Whether committing would change nothing.
    pub fn is_empty(&self) -> bool {
        !self.clear_data && self.data.is_empty() && self.meta.is_empty()
    }

    /// Empties the batch for reuse.
    pub fn clear(&mut self) {
        self.clear_data = false;
        self.data.clear();
        self.meta.clear();
    }
}

/// Visits the merge of two ordered sources: `lower`, a scan of a state (it calls the visitor it
/// is given for each entry), and `upper`, changes on top of it (`None` is a delete), both walking
/// in the same order (descending when `reverse`). An `upper` entry wins over a `lower` one with
/// the same key, and its deletes hide `lower`'s entries. Stops as soon as `visit` breaks. The
/// write-back layers and the apply overlay both read through this.
pub(crate) fn merge_scan<'u>(
    lower: impl FnOnce(Visit<'_>) -> Result<(), StorageError>,
    upper: impl Iterator<Item = (&'u [u8], Option<&'u [u8]>)>,
    reverse: bool,
    visit: Visit<'_>,
) -> Result<(), StorageError> {
    use std::cmp::Ordering;
    let mut upper = upper.peekable();
    let mut stopped = false;
    lower(&mut |key, value| {
        while let Some(&(upper_key, upper_value)) = upper.peek() {
            // `Less`: the upper entry comes first in walk order.
            let order = if reverse { key.cmp(upper_key) } else { upper_key.cmp(key) };
            if order == Ordering::Greater {
                break;
            }
            upper.next();
            let flow = upper_value.map_or(ControlFlow::Continue(()), |v| visit(upper_key, v));
            if flow.is_break() {
                stopped = true;
                return flow;
            }
            if order == Ordering::Equal {
                // The lower value for this key is superseded (or deleted).
                return ControlFlow::Continue(());
            }
        }
        let flow = visit(key, value);
        stopped = flow.is_break();
        flow
    })?;
    if !stopped {
        for (key, value) in upper {
            if let Some(value) = value
                && visit(key, value).is_break()
            {
                break;
            }
        }
    }
    Ok(())
}

/// Reads one value into a new vector: the convenient form of [`ReadView::get`].
pub fn get_owned(view: &dyn ReadView, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
    let mut out = None;
    view.get(key, &mut |v| out = Some(v.to_vec()))?;
    Ok(out)
}

/// SHA-256 over every data entry in key order (each as `u32 len, key, u32 len, value`, little
/// endian). Two stores with the same data have the same digest whatever their backend; meta
/// (which holds the last-applied log id) is not included.
pub fn state_digest(view: &dyn ReadView) -> Result<[u8; 32], StorageError> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    view.scan(Bound::Unbounded, Bound::Unbounded, &mut |k, v| {
        hasher.update((k.len() as u32).to_le_bytes());
        hasher.update(k);
        hasher.update((v.len() as u32).to_le_bytes());
        hasher.update(v);
        ControlFlow::Continue(())
    })?;
    Ok(hasher.finalize().into())
}

/// Lower-case hex, for digests in messages and replies.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
