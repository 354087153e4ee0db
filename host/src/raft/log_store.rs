//! The Raft log and vote: openraft's [`RaftLogStorage`], in redb or in memory.
//!
//! redb: one database file (`raft.redb`) with the entries by index and a meta table (vote,
//! committed id, purged id, cluster id). Every append is one write transaction committed with
//! `Durability::Immediate`, so an entry is on disk before openraft is told it is flushed, and so
//! before any write it carries is acknowledged. Appends arrive batched (the node packs many client
//! writes into one entry, and followers receive many entries per AppendEntries), so one fsync
//! serves many writes.
//!
//! Memory: the same structure in a map; lost with the process (see `docs/DESIGN.md` on why a
//! restarted memory node must not rejoin under its old id).
//!
//! redb calls block: they run under `block_in_place`, which keeps the async workers free.

use super::{NodeId, TypeConfig, decode, encode, lock};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
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
    /// next entry when the previous one is on disk (see `node::write_loop`).
    flushed: Arc<tokio::sync::watch::Sender<u64>>,
    /// The committed-index hint openraft last saved, encoded, not yet written: it goes into the
    /// next append's transaction rather than a write transaction of its own per commit advance.
    committed: Arc<Mutex<Option<Vec<u8>>>>,
}

enum Backing {
    Redb(Database),
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
    /// Opens (or creates) the redb log at `path`.
    pub fn open_redb(path: &Path) -> Result<Self, StorageError<NodeId>> {
        let db = Database::create(path).map_err(|e| io_error(StorageIOError::read_logs, e))?;
        let tx = db.begin_write().map_err(|e| io_error(StorageIOError::write_logs, e))?;
        tx.open_table(LOG).map_err(|e| io_error(StorageIOError::write_logs, e))?;
        tx.open_table(META).map_err(|e| io_error(StorageIOError::write_logs, e))?;
        tx.commit().map_err(|e| io_error(StorageIOError::write_logs, e))?;
        Ok(LogStore {
            inner: Arc::new(Backing::Redb(db)),
            recoverable: Arc::default(),
            flushed: Arc::default(),
            committed: Arc::default(),
        })
    }

    /// A fresh in-memory log.
    pub fn memory() -> Self {
        LogStore {
            inner: Arc::new(Backing::Memory(Mutex::new(MemoryLog::default()))),
            recoverable: Arc::default(),
            flushed: Arc::default(),
            committed: Arc::default(),
        }
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
        let Backing::Redb(db) = &*self.inner else {
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
        let entry_bytes = encode(&entry).map_err(|e| e.to_string())?;
        let vote_bytes = encode(&Vote::new(term, id)).map_err(|e| e.to_string())?;
        redb_write(db, Durability::Immediate, StorageIOError::write_logs, |tx| {
            let mut log = tx.open_table(LOG).map_err(|e| e.to_string())?;
            log.insert(log_id.index, entry_bytes.as_slice()).map_err(|e| e.to_string())?;
            let mut meta = tx.open_table(META).map_err(|e| e.to_string())?;
            meta.insert(VOTE, vote_bytes.as_slice()).map_err(|e| e.to_string())?;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok(log_id.index)
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError<NodeId>> {
        match &*self.inner {
            Backing::Redb(db) => tokio::task::block_in_place(|| {
                let tx = db.begin_read().map_err(|e| io_error(StorageIOError::read, e))?;
                let table = tx.open_table(META).map_err(|e| io_error(StorageIOError::read, e))?;
                let value = table.get(name).map_err(|e| io_error(StorageIOError::read, e))?;
                Ok(value.map(|v| v.value().to_vec()))
            }),
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
            Backing::Redb(db) => redb_write(db, durability, StorageIOError::write, |tx| {
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
            Backing::Redb(db) => tokio::task::block_in_place(|| -> Result<_, StorageError<NodeId>> {
                let r = |e: &dyn std::fmt::Display| io_error(StorageIOError::read_logs, e);
                let tx = db.begin_read().map_err(|e| r(&e))?;
                let table = tx.open_table(LOG).map_err(|e| r(&e))?;
                match table.last().map_err(|e| r(&e))? {
                    None => Ok(None),
                    Some((_, value)) => {
                        let entry: Entry<TypeConfig> = decode(value.value()).map_err(|e| r(&e))?;
                        Ok(Some(entry.log_id))
                    }
                }
            })?,
            Backing::Memory(log) => lock(log).entries.values().next_back().map(|e| e.log_id),
        };
        // A purge recorded before its delete finished can leave only entries below it.
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.max(purged) })
    }

    fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        match &*self.inner {
            Backing::Redb(db) => tokio::task::block_in_place(|| {
                let r = |e: &dyn std::fmt::Display| io_error(StorageIOError::read_logs, e);
                let tx = db.begin_read().map_err(|e| r(&e))?;
                let table = tx.open_table(LOG).map_err(|e| r(&e))?;
                let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
                let mut out = Vec::new();
                for item in table.range::<u64>(bounds).map_err(|e| r(&e))? {
                    let (_, value) = item.map_err(|e| r(&e))?;
                    out.push(decode(value.value()).map_err(|e| r(&e))?);
                }
                Ok(out)
            }),
            Backing::Memory(log) => Ok(lock(log).entries.range(range).map(|(_, e)| e.clone()).collect()),
        }
    }

    fn remove_range(&self, from: Bound<u64>, to: Bound<u64>) -> Result<(), StorageError<NodeId>> {
        match &*self.inner {
            Backing::Redb(db) => redb_write(db, Durability::Immediate, StorageIOError::write_logs, |tx| {
                let mut table = tx.open_table(LOG).map_err(|e| e.to_string())?;
                table.retain_in::<u64, _>((from, to), |_, _| false).map_err(|e| e.to_string())
            }),
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

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.entries(range)
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
        // Only a hint for replay at start (losing it is safe), so no transaction of its own: the
        // next append writes it (every node appends again soon: a leader's next batch, a
        // follower's next AppendEntries, or a heartbeat's commit advance riding on one).
        let bytes = encode(&committed).map_err(|e| io_error(StorageIOError::write, e))?;
        match &*self.inner {
            Backing::Redb(_) => {
                *lock(&self.committed) = Some(bytes);
                Ok(())
            }
            Backing::Memory(_) => self.meta_put_with(&[(COMMITTED, bytes)], Durability::None),
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        if let Some(bytes) = lock(&self.committed).as_deref() {
            return decode::<Option<LogId<NodeId>>>(bytes).map_err(|e| io_error(StorageIOError::read, e));
        }
        Ok(self.meta_decode::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut last = None;
        match &*self.inner {
            Backing::Redb(db) => redb_write(db, Durability::Immediate, StorageIOError::write_logs, |tx| {
                if let Some(committed) = lock(&self.committed).take() {
                    let mut meta = tx.open_table(META).map_err(|e| e.to_string())?;
                    meta.insert(COMMITTED, committed.as_slice()).map_err(|e| e.to_string())?;
                }
                let mut table = tx.open_table(LOG).map_err(|e| e.to_string())?;
                for entry in entries {
                    let bytes = encode(&entry).map_err(|e| e.to_string())?;
                    table.insert(entry.log_id.index, bytes.as_slice()).map_err(|e| e.to_string())?;
                    last = Some(entry.log_id.index);
                }
                Ok(())
            })?,
            Backing::Memory(log) => {
                let mut log = lock(log);
                for entry in entries {
                    last = Some(entry.log_id.index);
                    log.entries.insert(entry.log_id.index, entry);
                }
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
