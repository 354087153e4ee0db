//! The Raft log and vote: openraft's [`RaftLogStorage`], on disk or in memory.
//!
//! Disk: the entries in append-only segment files ([`super::wal`], `raft-log/`), and a small redb
//! database (`raft.redb`) for what is rarely written: the vote, the purge point and the cluster
//! id. Every append is one write and one `fdatasync` of the segment, so an entry is on disk before
//! openraft is told it is flushed, and so before any write it carries is acknowledged. Appends
//! arrive batched (the node packs many client writes into one entry, and followers receive many
//! entries per AppendEntries), so one fsync serves many writes. The committed-index hint rides in
//! front of the next append's entries. Logs written by earlier versions into `raft.redb` move to
//! the segments once, at open.
//!
//! Memory: the same structure in a map; lost with the process (see `docs/DESIGN.md` on why a
//! restarted memory node must not rejoin under its old id).
//!
//! File and redb calls block: they run under `block_in_place`, which keeps the async workers free.

use super::wal::{Wal, WalError};
use super::{NodeId, TypeConfig, WriteCounters, decode, encode, lock};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, Entry, EntryPayload, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";
const CLUSTER_ID: &str = "cluster_id";

/// The log store handed to openraft; clones share the same log (one is the reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Backing>,
    /// The index up to which the state can be rebuilt without the log (see
    /// [`LogStore::limit_purge_to`]).
    recoverable: Arc<std::sync::OnceLock<(tokio::sync::watch::Receiver<u64>, std::time::Duration)>>,
    /// The last index of the latest append, once it is durable: the write batcher proposes the
    /// next entry when the previous one is on disk (see `crate::node::writes::write_loop`).
    flushed: Arc<tokio::sync::watch::Sender<u64>>,
    /// The committed-index hint openraft last saved, not yet written: it goes in front of the
    /// next append's entries rather than costing a write of its own per commit advance.
    committed: Arc<Mutex<Option<LogId<NodeId>>>>,
    /// The node's write-path counters; appends count here (see [`LogStore::counters`]).
    counters: Arc<WriteCounters>,
    /// Most bytes of entries one AppendEntries carries (see [`LogStore::with_append_bytes_max`]).
    append_bytes_max: usize,
}

enum Backing {
    Disk {
        /// The vote, the purge point, the cluster id (and, from older versions, a committed hint).
        meta: Database,
        /// The entries. Appends sync outside this lock, so reads never wait for an fsync.
        wal: Arc<Mutex<Wal>>,
        /// The log writer thread (see [`log_writer`]): appends go to it, and it calls openraft
        /// back once they are on disk.
        writer: std::sync::mpsc::Sender<AppendJob>,
    },
    Memory(Mutex<MemoryLog>),
}

#[derive(Default)]
struct MemoryLog {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    meta: BTreeMap<&'static str, Vec<u8>>,
}

fn io_error(make: fn(AnyError) -> StorageIOError<NodeId>, e: impl std::fmt::Display) -> StorageError<NodeId> {
    make(AnyError::error(e.to_string())).into()
}

fn wal_error(make: fn(AnyError) -> StorageIOError<NodeId>) -> impl Fn(WalError) -> StorageError<NodeId> {
    move |e| io_error(make, e)
}

/// One redb write transaction with `durability`, off the async workers: `body` fills it, then it
/// commits. Every failure becomes a storage error of kind `kind`.
fn redb_write(
    db: &Database,
    durability: Durability,
    kind: fn(AnyError) -> StorageIOError<NodeId>,
    body: impl FnOnce(&redb::WriteTransaction) -> Result<(), String>,
) -> Result<(), StorageError<NodeId>> {
    tokio::task::block_in_place(|| {
        let w = |e: &dyn std::fmt::Display| io_error(kind, e);
        let mut tx = db.begin_write().map_err(|e| w(&e))?;
        tx.set_durability(durability).map_err(|e| w(&e))?;
        body(&tx).map_err(|e| w(&e))?;
        tx.commit().map_err(|e| w(&e))
    })
}

impl LogStore {
    /// Opens (or creates) the log in `dir`: `raft.redb` for the meta, `raft-log/` for the entries.
    /// Entries an earlier version kept in `raft.redb` are moved to the segments first.
    pub fn open_disk(dir: &Path) -> Result<Self, StorageError<NodeId>> {
        let path = dir.join("raft.redb");
        let meta = Database::create(&path).map_err(|e| io_error(StorageIOError::read_logs, e))?;
        let tx = meta.begin_write().map_err(|e| io_error(StorageIOError::write_logs, e))?;
        tx.open_table(LOG).map_err(|e| io_error(StorageIOError::write_logs, e))?;
        tx.open_table(META).map_err(|e| io_error(StorageIOError::write_logs, e))?;
        tx.commit().map_err(|e| io_error(StorageIOError::write_logs, e))?;
        let purged: Option<LogId<NodeId>> =
            meta_read(&meta, PURGED)?.map(|b| decode(&b)).transpose().map_err(|e| io_error(StorageIOError::read, e))?;
        let mut wal =
            Wal::open(&dir.join("raft-log"), purged.map(|p| p.index)).map_err(wal_error(StorageIOError::read_logs))?;
        migrate_redb_entries(&meta, &mut wal)?;
        let wal = Arc::new(Mutex::new(wal));
        let flushed: Arc<tokio::sync::watch::Sender<u64>> = Arc::default();
        let (writer, jobs) = std::sync::mpsc::channel();
        let counters: Arc<WriteCounters> = Arc::default();
        let (thread_wal, thread_flushed, thread_counters) = (wal.clone(), flushed.clone(), counters.clone());
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || log_writer(&thread_wal, &jobs, &thread_flushed, &thread_counters))
            .map_err(|e| io_error(StorageIOError::write_logs, e))?;
        Ok(LogStore {
            inner: Arc::new(Backing::Disk { meta, wal, writer }),
            recoverable: Arc::default(),
            flushed,
            committed: Arc::default(),
            counters,
            append_bytes_max: usize::MAX,
        })
    }

    /// A fresh in-memory log.
    pub fn memory() -> Self {
        LogStore {
            inner: Arc::new(Backing::Memory(Mutex::new(MemoryLog::default()))),
            recoverable: Arc::default(),
            flushed: Arc::default(),
            committed: Arc::default(),
            counters: Arc::default(),
            append_bytes_max: usize::MAX,
        }
    }

    /// Bounds the entries replication reads for one AppendEntries to about `bytes` (at least one
    /// entry): openraft 0.9 gives each AppendEntries one heartbeat interval, which a catch-up
    /// batch of large entries would not fit (`raft.append_entries_bytes_max`).
    pub fn with_append_bytes_max(mut self, bytes: usize) -> Self {
        self.append_bytes_max = bytes.max(1);
        self
    }

    /// The node's write-path counters: this store counts its appends; the node and the state
    /// machine count into the same ones.
    pub fn counters(&self) -> Arc<WriteCounters> {
        self.counters.clone()
    }

    /// Watches the last index of the latest durable append.
    pub fn flushed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.flushed.subscribe()
    }

    /// Lets a purge wait (briefly) until the state up to its index can be rebuilt without the
    /// log: durable in the state store, or in a verified snapshot file on disk. openraft asks to
    /// purge up to an installed snapshot as soon as the install starts; the install verifies and
    /// records the received snapshot file first, so a crash in between leaves a snapshot to
    /// restore at start. If that does not happen in time, the purge fails and the node stops.
    ///
    /// `wait` bounds the wait; past it the node stops rather than purge. After a snapshot build
    /// the wait is nil; after an install it covers verifying and recording the received snapshot,
    /// which grows with its size (the node derives it from `snapshot_chunk_timeout_ms`).
    pub fn limit_purge_to(&self, recoverable: tokio::sync::watch::Receiver<u64>, wait: std::time::Duration) {
        let _ = self.recoverable.set((recoverable, wait));
    }

    /// The log state as stored (last purged and last log ids).
    pub fn state(&self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state()
    }

    /// The cluster id this node belongs to, if it has been bootstrapped or has joined.
    pub fn cluster_id(&self) -> Result<Option<String>, StorageError<NodeId>> {
        Ok(self.meta_get(CLUSTER_ID)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Records the cluster id (durably, for redb).
    pub fn set_cluster_id(&self, id: &str) -> Result<(), StorageError<NodeId>> {
        self.meta_put(&[(CLUSTER_ID, id.as_bytes().to_vec())])
    }

    /// Whether the log has ever held anything (an entry, a vote or a purge).
    pub fn is_pristine(&self) -> Result<bool, StorageError<NodeId>> {
        let state = self.log_state()?;
        Ok(state.last_log_id.is_none() && self.meta_get(VOTE)?.is_none())
    }

    /// Disaster recovery (`--force-new-cluster`): appends a membership entry that makes `id` the
    /// only voter, in a term above every term this node has seen, and records a vote for that term,
    /// so that at start openraft takes the single-voter membership as effective, elects this node
    /// and commits everything its log holds. Returns the entry's index. Refused for a node that
    /// holds no log (there is nothing to recover) and for the memory backend (it has none after a
    /// restart).
    pub fn force_single_voter(&self, id: NodeId, member: super::Member) -> Result<u64, String> {
        let Backing::Disk { wal, .. } = &*self.inner else {
            return Err("a memory node has no log to recover from".into());
        };
        let state = self.log_state().map_err(|e| e.to_string())?;
        let Some(last) = state.last_log_id else {
            return Err("this node holds no Raft log: there is nothing to recover; BOOTSTRAP a new cluster".into());
        };
        let vote: Option<Vote<NodeId>> = self.meta_decode(VOTE).map_err(|e| e.to_string())?;
        let term = vote.map_or(0, |v| v.leader_id().term).max(last.leader_id.term) + 1;
        let log_id = LogId::new(openraft::CommittedLeaderId::new(term, id), last.index + 1);
        let membership = openraft::Membership::new(
            vec![std::collections::BTreeSet::from([id])],
            std::collections::BTreeMap::from([(id, member)]),
        );
        let entry: Entry<TypeConfig> = Entry { log_id, payload: openraft::EntryPayload::Membership(membership) };
        // The vote first: a crash before the entry leaves a vote for a term no entry has yet,
        // which a second run of the recovery simply goes past; never an entry above the vote.
        self.meta_encode(VOTE, &Vote::new(term, id)).map_err(|e| e.to_string())?;
        tokio::task::block_in_place(|| {
            let unsynced = lock(wal).append(vec![entry], None)?;
            unsynced.map_or(Ok(0), |u| u.sync())
        })
        .map_err(|e| e.to_string())?;
        Ok(log_id.index)
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError<NodeId>> {
        match &*self.inner {
            Backing::Disk { meta, .. } => tokio::task::block_in_place(|| meta_read(meta, name)),
            Backing::Memory(log) => Ok(lock(log).meta.get(name).cloned()),
        }
    }

    fn meta_put(&self, values: &[(&'static str, Vec<u8>)]) -> Result<(), StorageError<NodeId>> {
        self.meta_put_with(values, Durability::Immediate)
    }

    fn meta_put_with(
        &self,
        values: &[(&'static str, Vec<u8>)],
        durability: Durability,
    ) -> Result<(), StorageError<NodeId>> {
        match &*self.inner {
            Backing::Disk { meta, .. } => redb_write(meta, durability, StorageIOError::write, |tx| {
                let mut table = tx.open_table(META).map_err(|e| e.to_string())?;
                for (name, value) in values {
                    table.insert(*name, value.as_slice()).map_err(|e| e.to_string())?;
                }
                Ok(())
            }),
            Backing::Memory(log) => {
                let mut log = lock(log);
                for (name, value) in values {
                    log.meta.insert(name, value.clone());
                }
                Ok(())
            }
        }
    }

    fn meta_decode<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StorageError<NodeId>> {
        match self.meta_get(name)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some).map_err(|e| io_error(StorageIOError::read, e)),
        }
    }

    fn meta_encode<T: serde::Serialize>(&self, name: &'static str, value: &T) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(value).map_err(|e| io_error(StorageIOError::write, e))?;
        self.meta_put(&[(name, bytes)])
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let purged: Option<LogId<NodeId>> = self.meta_decode(PURGED)?;
        let last = match &*self.inner {
            Backing::Disk { wal, .. } => lock(wal).last_log_id(),
            Backing::Memory(log) => lock(log).entries.values().next_back().map(|e| e.log_id),
        };
        // A purge recorded before its delete finished can leave only entries below it.
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.max(purged) })
    }

    fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.entries_until(range, &mut |_| false)
    }

    /// The entries of `range`, ending early after the first one `stop_after` says is the last
    /// wanted (nothing past it is read from disk).
    fn entries_until<RB: RangeBounds<u64>>(
        &self,
        range: RB,
        stop_after: &mut dyn FnMut(&Entry<TypeConfig>) -> bool,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        match &*self.inner {
            // Entries within the tail cache are clones of shared payloads; older ones are read
            // from their segment (a lagging follower's catch-up), off the async workers.
            Backing::Disk { wal, .. } => {
                if let Some(entries) = lock(wal).read_cached(bounds, stop_after) {
                    return Ok(entries);
                }
                tokio::task::block_in_place(|| lock(wal).read_until(bounds, stop_after))
                    .map_err(wal_error(StorageIOError::read_logs))
            }
            Backing::Memory(log) => {
                let log = lock(log);
                let mut out = Vec::new();
                for entry in log.entries.range(bounds).map(|(_, e)| e) {
                    out.push(entry.clone());
                    if stop_after(entry) {
                        break;
                    }
                }
                Ok(out)
            }
        }
    }

    fn remove_range(&self, from: Bound<u64>, to: Bound<u64>) -> Result<(), StorageError<NodeId>> {
        match &*self.inner {
            Backing::Disk { wal, .. } => tokio::task::block_in_place(|| {
                let mut wal = lock(wal);
                match (from, to) {
                    (Bound::Included(index), Bound::Unbounded) => wal.truncate(index),
                    (Bound::Unbounded, Bound::Included(index)) => wal.purge(index),
                    _ => Err(WalError::Corrupt(format!("no such removal: {from:?}..{to:?}"))),
                }
            })
            .map_err(wal_error(StorageIOError::write_logs)),
            Backing::Memory(log) => {
                let mut log = lock(log);
                let doomed: Vec<u64> = log.entries.range((from, to)).map(|(i, _)| *i).collect();
                for index in doomed {
                    log.entries.remove(&index);
                }
                Ok(())
            }
        }
    }
}

/// One append for the log writer thread.
struct AppendJob {
    entries: Vec<Entry<TypeConfig>>,
    committed: Option<LogId<NodeId>>,
    callback: LogFlushed<TypeConfig>,
}

/// The log writer thread: writes each append, syncs it (outside the log's lock, so readers
/// never wait for the fsync), then tells openraft and the write batcher (`flushed`). A thread of
/// its own rather than `block_in_place` on an async worker: the hand-off of a worker's core
/// around every fsync cost more than the fsync on this path. Ends when the log store is dropped.
fn log_writer(
    wal: &Mutex<Wal>,
    jobs: &std::sync::mpsc::Receiver<AppendJob>,
    flushed: &tokio::sync::watch::Sender<u64>,
    counters: &WriteCounters,
) {
    while let Ok(job) = jobs.recv() {
        let last = job.entries.last().map(|e| e.log_id.index);
        let count = job.entries.len() as u64;
        let started = std::time::Instant::now();
        let written = lock(wal).append(job.entries, job.committed);
        match written.and_then(|unsynced| unsynced.map_or(Ok(0), |u| u.sync())) {
            Ok(bytes) => {
                counters.append_latency.observe(started.elapsed());
                WriteCounters::add(&counters.log_appends, 1);
                WriteCounters::add(&counters.log_entries_appended, count);
                WriteCounters::add(&counters.log_bytes_appended, bytes);
                job.callback.log_io_completed(Ok(()));
                if let Some(last) = last {
                    flushed.send_replace(last);
                }
            }
            Err(e) => job.callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
    }
}

/// One meta value from the log's redb database.
fn meta_read(meta: &Database, name: &str) -> Result<Option<Vec<u8>>, StorageError<NodeId>> {
    let tx = meta.begin_read().map_err(|e| io_error(StorageIOError::read, e))?;
    let table = tx.open_table(META).map_err(|e| io_error(StorageIOError::read, e))?;
    let value = table.get(name).map_err(|e| io_error(StorageIOError::read, e))?;
    Ok(value.map(|v| v.value().to_vec()))
}

/// Moves the entries an earlier version kept in `raft.redb`'s log table into the segments (once:
/// they are appended and synced, then the table is emptied; a crash in between finds the
/// segments already holding them and only empties the table).
fn migrate_redb_entries(meta: &Database, wal: &mut Wal) -> Result<(), StorageError<NodeId>> {
    let r = |e: &dyn std::fmt::Display| io_error(StorageIOError::read_logs, e);
    let tx = meta.begin_read().map_err(|e| r(&e))?;
    let table = tx.open_table(LOG).map_err(|e| r(&e))?;
    if table.is_empty().map_err(|e| r(&e))? {
        return Ok(());
    }
    if wal.last_log_id().is_none() {
        let mut entries: Vec<Entry<TypeConfig>> = Vec::new();
        for item in table.iter().map_err(|e| r(&e))? {
            let (_, value) = item.map_err(|e| r(&e))?;
            entries.push(decode(value.value()).map_err(|e| r(&e))?);
        }
        let count = entries.len();
        if let Some(unsynced) = wal.append(entries, None).map_err(wal_error(StorageIOError::write_logs))? {
            unsynced.sync().map_err(wal_error(StorageIOError::write_logs))?;
        }
        tracing::info!("moved {count} log entries from raft.redb to the raft-log segments");
    }
    drop(table);
    drop(tx);
    let tx = meta.begin_write().map_err(|e| r(&e))?;
    tx.delete_table(LOG).map_err(|e| r(&e))?;
    tx.open_table(LOG).map_err(|e| r(&e))?;
    tx.commit().map_err(|e| r(&e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.entries(range)
    }

    /// What replication sends in one AppendEntries: `[start, end)` cut after the entry that
    /// reaches [`LogStore::with_append_bytes_max`]'s bound (so never empty); entries past it are
    /// not read.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let (mut bytes, bytes_max) = (0usize, self.append_bytes_max);
        self.entries_until(start..end, &mut |entry| {
            bytes = bytes.saturating_add(entry_wire_bytes(entry));
            bytes >= bytes_max
        })
    }
}

/// About how many bytes `entry` takes in an AppendEntries.
fn entry_wire_bytes(entry: &Entry<TypeConfig>) -> usize {
    match &entry.payload {
        EntryPayload::Normal(request) => request.wire_bytes(),
        EntryPayload::Membership(_) | EntryPayload::Blank => 64,
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state()
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.meta_encode(VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.meta_decode(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        // Only a hint for replay at start (losing it is safe), so no write of its own: the next
        // append writes it (every node appends again soon: a leader's next batch, a follower's
        // next AppendEntries, or a heartbeat's commit advance riding on one).
        if let Some(committed) = committed {
            self.counters.commit_index.fetch_max(committed.index, std::sync::atomic::Ordering::Relaxed);
        }
        match &*self.inner {
            Backing::Disk { .. } => {
                *lock(&self.committed) = committed;
                Ok(())
            }
            Backing::Memory(_) => {
                let bytes = encode(&committed).map_err(|e| io_error(StorageIOError::write, e))?;
                self.meta_put_with(&[(COMMITTED, bytes)], Durability::None)
            }
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        if let Some(committed) = *lock(&self.committed) {
            return Ok(Some(committed));
        }
        if let Backing::Disk { wal, .. } = &*self.inner
            && let Some(committed) = lock(wal).committed()
        {
            return Ok(Some(committed));
        }
        // Memory logs, and disk logs of earlier versions, kept it in the meta table.
        Ok(self.meta_decode::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut last = None;
        match &*self.inner {
            Backing::Disk { writer, .. } => {
                let job = AppendJob {
                    entries: entries.into_iter().collect(),
                    committed: lock(&self.committed).take(),
                    callback,
                };
                // The writer thread calls back once the entries are on disk.
                return writer.send(job).map_err(|_| io_error(StorageIOError::write_logs, "the log writer stopped"));
            }
            Backing::Memory(log) => {
                let mut log = lock(log);
                for entry in entries {
                    last = Some(entry.log_id.index);
                    log.entries.insert(entry.log_id.index, entry);
                    WriteCounters::add(&self.counters.log_entries_appended, 1);
                }
                WriteCounters::add(&self.counters.log_appends, 1);
            }
        }
        callback.log_io_completed(Ok(()));
        if let Some(last) = last {
            self.flushed.send_replace(last);
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_range(Bound::Included(log_id.index), Bound::Unbounded)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        if let Some((recoverable, purge_wait)) = self.recoverable.get() {
            let purge_wait = *purge_wait;
            let mut recoverable = recoverable.clone();
            let wait = recoverable.wait_for(|r| *r >= log_id.index);
            if tokio::time::timeout(purge_wait, wait).await.is_err() {
                // Never purge what nothing else holds: stop instead (a restart finds the log and
                // the state consistent, and catches up from the leader).
                let why = format!(
                    "refusing to purge the log up to {log_id}: no durable state or recorded snapshot covers it after \
                     {purge_wait:?}"
                );
                tracing::error!("{why}");
                return Err(io_error(StorageIOError::write_logs, why));
            }
        }
        // Record the purge point first: a crash in between leaves entries behind it, which
        // openraft ignores, never a gap it cannot explain.
        self.meta_encode(PURGED, &log_id)?;
        self.remove_range(Bound::Unbounded, Bound::Included(log_id.index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Request;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request::Commands(Arc::new(vec![format!("set k{index}").into_bytes()]))),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn replication_reads_are_cut_by_bytes_but_never_empty() {
        let big = |index: u64| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request::Commands(Arc::new(vec![vec![0; 1000]]))),
        };
        let store = LogStore::memory();
        if let Backing::Memory(log) = &*store.inner {
            lock(log).entries.extend((1..=5).map(|i| (i, big(i))));
        }
        for (bytes_max, expected) in [(usize::MAX, 5), (2000, 2), (1020, 1), (1, 1)] {
            let mut reader = store.clone().with_append_bytes_max(bytes_max);
            let sent = reader.limited_get_log_entries(1, 6).await.expect("read");
            assert_eq!(sent, (1..=expected).map(big).collect::<Vec<_>>(), "bound {bytes_max}");
        }
    }

    /// A data dir from before the segment files: its entries and committed hint in `raft.redb`.
    fn legacy_log(dir: &Path, entries: &[Entry<TypeConfig>], committed: LogId<NodeId>) {
        let db = Database::create(dir.join("raft.redb")).expect("create");
        let tx = db.begin_write().expect("begin");
        {
            let mut log = tx.open_table(LOG).expect("log table");
            for e in entries {
                log.insert(e.log_id.index, encode(e).expect("encode").as_slice()).expect("insert");
            }
            let mut meta = tx.open_table(META).expect("meta table");
            meta.insert(COMMITTED, encode(&Some(committed)).expect("encode").as_slice()).expect("insert");
        }
        tx.commit().expect("commit");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_log_kept_in_redb_by_an_earlier_version_moves_to_the_segments_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let entries: Vec<_> = (1..=4).map(entry).collect();
        legacy_log(dir.path(), &entries, entries[2].log_id);
        for _ in 0..2 {
            let mut store = LogStore::open_disk(dir.path()).expect("open");
            assert_eq!(store.get_log_state().await.expect("state").last_log_id, Some(entries[3].log_id));
            assert_eq!(store.try_get_log_entries(0..10).await.expect("read"), entries);
            assert_eq!(store.read_committed().await.expect("committed"), Some(entries[2].log_id));
            let Backing::Disk { meta, .. } = &*store.inner else { panic!("a disk log") };
            let tx = meta.begin_read().expect("read");
            assert!(tx.open_table(LOG).expect("log table").is_empty().expect("len"), "the redb table is emptied");
        }
    }
}
