//! The replicated state machine as openraft sees it: committed entries go through the wasm
//! [`Runtime`]; snapshots are files streamed in chunks.
//!
//! **Atomicity.** Each call to `apply` commits the module's writes, the last-applied log id, the
//! membership and the retired node ids in one store transaction (`Runtime::apply_batch` with
//! meta), so a crash can never separate the data from the index it reflects (etcd #13766).
//!
//! **Modules.** The module that applies commands is part of the replicated state: a
//! [`Request::Module`] entry (the first one after bootstrap, and one per `MODULE RELOAD`) carries
//! its bytes, and every replica loads it from the entry and switches at that index, running its
//! migration hook in the same transaction ([`Runtime::switch_module`]). The store records the
//! active module's bytes and the history of module entries, so snapshots carry them. A replica
//! whose ABI, engine or limits differ from the entry's stops with a message naming both.
//!
//! **Snapshots.** Building one streams a consistent read view of the store (applies go on
//! meanwhile) to `snapshots/<id>.snap` in
//! [`SnapshotChunks`](crate::storage::snapshot::SnapshotChunks) format, off the async workers.
//! The file is what openraft sends to followers, chunk by chunk; a follower writes the chunks to
//! a file and restores from it (the contract is checked before any data is read).
//!
//! The parts: `snapshot_files` (the snapshot files of one node: naming, publishing, cleanup),
//! `snapshots` (building, receiving and restoring snapshots), `module_entries` (applying
//! module entries: loading, switching, the module history) and `key_waiters` (the clients
//! blocked on keys, woken by the applies that write them).

pub mod key_waiters;
mod module_entries;
mod snapshot_files;
mod snapshots;

use snapshot_files::{SnapshotFiles, valid_snapshot_id};
pub use snapshots::SnapshotBuilder;
use snapshots::{Incoming, RECEIVING_MAX, file_key};

use super::{Member, ModuleEvent, NodeId, Request, Response, TimedCommands, TypeConfig, decode, encode, lock};
use crate::runtime::{FsmModule, Op, Runtime};
use crate::storage::{SharedStore, meta};
use fsm_sdk::Reply;
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

/// Meta entry: the membership as of the last applied entry (postcard).
pub const MEMBERSHIP: &str = "raft_membership";

/// Meta entry: node ids removed from the cluster, never to be reused (postcard `BTreeSet<u64>`).
pub const RETIRED_NODES: &str = "retired_nodes";

/// Meta entry: every module entry's outcome, oldest first (postcard `Vec<ModuleEvent>`).
pub const MODULE_HISTORY: &str = "fsm_module_history";

/// Module events kept in the history (the oldest are dropped, identically on every replica).
const MODULE_HISTORY_MAX: usize = 256;

/// The reply every command gets while no module is active (between bootstrap and the module
/// entry that follows it).
pub(crate) const NO_MODULE: &str =
    "ERR no state-machine module is active yet (the cluster's first module entry installs it)";

/// Above this many command bytes, one `apply` call is split into several store transactions (each
/// still atomic with its last-applied id), bounding the memory a catch-up needs.
const APPLY_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Batches up to this many commands (and bytes) are applied on the async worker itself; larger
/// ones move off it (`block_in_place`). See `StateMachine::commit`.
const INLINE_APPLY_COMMANDS_MAX: usize = 64;
/// See `INLINE_APPLY_COMMANDS_MAX`.
const INLINE_APPLY_BYTES_MAX: usize = 64 * 1024;

type Meta = SnapshotMeta<NodeId, Member>;

/// What the state records about the log: the last applied id and the membership as of it.
type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, Member>);

fn io_error(make: fn(AnyError) -> StorageIOError<NodeId>, e: impl std::fmt::Display) -> StorageError<NodeId> {
    make(AnyError::error(e.to_string())).into()
}

fn read_snapshot_none(e: AnyError) -> StorageIOError<NodeId> {
    StorageIOError::read_snapshot(None, e)
}

fn write_snapshot_none(e: AnyError) -> StorageIOError<NodeId> {
    StorageIOError::write_snapshot(None, e)
}

/// What the rest of the node may read about the state machine without going through openraft.
#[derive(Debug)]
pub struct SharedState {
    /// Node ids that left the cluster: `JOIN` refuses them.
    pub retired: RwLock<BTreeSet<NodeId>>,
    /// The highest log index up to which the state can be rebuilt without the log: durable in the
    /// state store, or held by a snapshot file on disk. The log store's purge waits for it (see
    /// `LogStore::limit_purge_to`).
    pub recoverable: tokio::sync::watch::Sender<u64>,
    /// The cluster's module as of the last applied entry. Held only for moments: routing reads
    /// it for every command.
    pub module: RwLock<ActiveModule>,
    /// Held by the applier while it commits a module switch or restores a snapshot (until
    /// [`SharedState::module`] names the new module), and by the reader while it queries: no
    /// query runs one module's code against another module's state.
    pub module_change: Mutex<()>,
    /// The module this node's config names, as last read (`ModuleConfig` replaces it on `MODULE
    /// RELOAD` and SIGHUP). Its ABI, engine and limits must match every module entry's; an entry
    /// carrying its bytes reuses it instead of compiling them again.
    pub configured: super::modules::ConfiguredCell,
    /// Clients blocked on keys (`BLPOP`, ...): every apply wakes those whose keys it wrote.
    pub key_waiters: Arc<key_waiters::KeyWaiters>,
}

impl SharedState {
    /// See [`SharedState::configured`].
    pub fn configured(&self) -> Arc<FsmModule> {
        self.configured.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The cluster's module and the history of module entries, as this replica has applied them.
#[derive(Debug, Default)]
pub struct ActiveModule {
    /// `None` until the first module entry is applied.
    pub module: Option<Arc<FsmModule>>,
    /// Every module entry's outcome, oldest first.
    pub history: Vec<ModuleEvent>,
}

impl ActiveModule {
    /// The index of the entry that made the active module active (0 if none).
    pub fn since(&self) -> u64 {
        self.history.iter().rev().find(|e| e.rejected.is_none()).map_or(0, |e| e.index)
    }
}

impl SharedState {
    fn raise_recoverable(&self, index: u64) {
        self.recoverable.send_if_modified(|current| {
            let raise = index > *current;
            if raise {
                *current = index;
            }
            raise
        });
    }
}

/// The state machine handed to openraft.
pub struct StateMachine {
    runtime: Mutex<Runtime>,
    store: SharedStore,
    shared: Arc<SharedState>,
    snapshots: Arc<SnapshotFiles>,
    /// Files being received, by `(device, inode)`: openraft hands the file back at install time,
    /// and a second stream may have begun meanwhile, so the path is found from the file itself.
    receiving: std::collections::HashMap<(u64, u64), Incoming>,
    /// Orders incoming files, oldest first.
    receiving_sequence: u64,
    /// The node's write-path counters (see [`StateMachine::with_counters`]).
    counters: Arc<super::WriteCounters>,
}

impl StateMachine {
    /// Counts applies into `counters` (the node shares one set across its parts). The snapshot
    /// size gauge starts at the size of the snapshot found on disk, which spaces the next one.
    pub fn with_counters(mut self, counters: Arc<super::WriteCounters>) -> Self {
        let current = lock(&self.snapshots.current).as_ref().map(|m| self.snapshots.data_path(&m.snapshot_id));
        if let Some(bytes) = current.and_then(|path| std::fs::metadata(path).ok()).map(|m| m.len()) {
            counters.snapshot_bytes.store(bytes, std::sync::atomic::Ordering::Relaxed);
        }
        self.counters = counters;
        self
    }

    /// Wraps an opened runtime (with the store's recorded module, or `configured` when the store
    /// records none); `snapshot_dir` holds the snapshot files (created if missing).
    ///
    /// `log_purged` is the log store's purge point: a snapshot older than it (left by a crash
    /// between installing a newer one and recording it) is discarded, so openraft builds a fresh
    /// one at start instead of sending a follower a snapshot the log cannot continue.
    pub fn new(
        runtime: Runtime,
        configured: super::modules::ConfiguredCell,
        snapshot_dir: &Path,
        chunk_bytes: usize,
        log_purged: Option<LogId<NodeId>>,
    ) -> Result<(Self, Arc<SharedState>), StorageError<NodeId>> {
        let store = runtime.store().clone();
        let snapshots = SnapshotFiles::open(snapshot_dir, chunk_bytes).map_err(|e| io_error(read_snapshot_none, e))?;
        {
            let mut current = lock(&snapshots.current);
            if current.as_ref().is_some_and(|m| m.last_log_id < log_purged) {
                tracing::warn!("the newest snapshot is older than the purged log: discarding it, a new one is built");
                *current = None;
            }
        }
        let (recoverable, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(SharedState {
            retired: RwLock::default(),
            recoverable,
            module: RwLock::default(),
            module_change: Mutex::new(()),
            configured,
            key_waiters: Arc::default(),
        });
        let machine = StateMachine {
            runtime: Mutex::new(runtime),
            store,
            shared: shared.clone(),
            snapshots: Arc::new(snapshots),
            receiving: std::collections::HashMap::new(),
            receiving_sequence: 0,
            counters: Arc::default(),
        };
        // A state in memory starts empty and comes back from the newest snapshot (the log after it
        // is replayed by openraft). A crash while installing a snapshot can leave a durable state
        // behind the purged log; the snapshot was recorded before the log was purged, so restore
        // it now.
        let (applied, _) = machine.read_applied()?;
        let recorded = lock(&machine.snapshots.current).as_ref().and_then(|m| m.last_log_id);
        if applied < log_purged || applied < recorded {
            machine.recover_from_snapshot(log_purged, applied.is_none())?;
        }
        machine.reload_shared()?;
        // What is on disk at start is durable by definition, and so is the newest snapshot file.
        let (applied, _) = machine.read_applied()?;
        let snapshot = lock(&machine.snapshots.current).as_ref().and_then(|m| m.last_log_id);
        shared.raise_recoverable(applied.max(snapshot).map(|l| l.index).unwrap_or(0));
        Ok((machine, shared))
    }

    /// Commits meta entries alone (an entry that changes no data).
    fn commit_meta(&self, values: &[(&str, &[u8])]) -> Result<(), StorageError<NodeId>> {
        tokio::task::block_in_place(|| lock(&self.runtime).apply_batch::<&[u8]>(&[], values))
            .map(drop)
            .map_err(|e| io_error(StorageIOError::write_state_machine, e))
    }

    fn has_module(&self) -> bool {
        self.shared.module.read().unwrap_or_else(|p| p.into_inner()).module.is_some()
    }

    fn read_applied(&self) -> Result<AppliedState, StorageError<NodeId>> {
        let r = |e: &dyn std::fmt::Display| io_error(StorageIOError::read_state_machine, e);
        let view = self.store.read().map_err(|e| r(&e))?;
        let meta = view.meta().map_err(|e| r(&e))?;
        read_applied_meta(&meta).map_err(|e| r(&e))
    }
}

fn read_applied_meta(meta: &std::collections::BTreeMap<String, Vec<u8>>) -> Result<AppliedState, postcard::Error> {
    let applied = match meta.get(meta::LAST_APPLIED) {
        Some(bytes) => Some(decode(bytes)?),
        None => None,
    };
    let membership = match meta.get(MEMBERSHIP) {
        Some(bytes) => decode(bytes)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

/// One store transaction's worth of entries being applied.
#[derive(Default)]
struct Pending<'a> {
    /// Client commands and ticks, each with its entry's time.
    commands: Vec<Op<'a>>,
    bytes: usize,
    /// For each entry in this chunk: how many of `commands` are its.
    counts: Vec<usize>,
    last: Option<LogId<NodeId>>,
    membership: Option<StoredMembership<NodeId, Member>>,
    retired: Option<BTreeSet<NodeId>>,
}

impl StateMachine {
    fn commit(&self, pending: &mut Pending<'_>, out: &mut Vec<Response>) -> Result<(), StorageError<NodeId>> {
        let Some(last) = pending.last else { return Ok(()) };
        let w = |e: &dyn std::fmt::Display| io_error(StorageIOError::write_state_machine, e);
        let mut meta_values: Vec<(&str, Vec<u8>)> = vec![(meta::LAST_APPLIED, encode(&last).map_err(|e| w(&e))?)];
        if let Some(membership) = &pending.membership {
            meta_values.push((MEMBERSHIP, encode(membership).map_err(|e| w(&e))?));
        }
        if let Some(retired) = &pending.retired {
            meta_values.push((RETIRED_NODES, encode(retired).map_err(|e| w(&e))?));
        }
        let meta_refs: Vec<(&str, &[u8])> = meta_values.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let apply = || lock(&self.runtime).apply_ops(&pending.commands, &meta_refs);
        // A small batch runs on the async worker: the hand-off of the worker's core around it
        // (`block_in_place`) cost more than the apply itself (tens of microseconds).
        let small = pending.commands.len() <= INLINE_APPLY_COMMANDS_MAX && pending.bytes <= INLINE_APPLY_BYTES_MAX;
        let replies = if small { apply() } else { tokio::task::block_in_place(apply) }.map_err(|e| {
            tracing::error!("applying entries up to {last} failed: {e}; this node stops applying");
            io_error(StorageIOError::write_state_machine, e)
        })?;
        super::WriteCounters::add(&self.counters.applies, 1);
        super::WriteCounters::add(&self.counters.entries_applied, pending.counts.len() as u64);
        super::WriteCounters::add(&self.counters.commands_applied, pending.commands.len() as u64);
        if replies.len() != pending.commands.len() {
            // The runtime answers every command of a batch or fails the batch; a mismatch would
            // shift every later reply onto the wrong entry.
            let why = format!("{} replies for {} commands up to {last}", replies.len(), pending.commands.len());
            tracing::error!("{why}; this node stops applying");
            return Err(io_error(StorageIOError::write_state_machine, why));
        }
        if self.shared.key_waiters.any() {
            self.wake_key_waiters(&pending.commands);
        }
        let mut replies = replies.into_iter();
        for count in pending.counts.drain(..) {
            out.push(Response { replies: replies.by_ref().take(count).collect() });
        }
        if let Some(retired) = pending.retired.take() {
            *self.shared.retired.write().unwrap_or_else(|p| p.into_inner()) = retired;
        }
        pending.commands.clear();
        pending.bytes = 0;
        pending.last = None;
        pending.membership = None;
        Ok(())
    }
}

impl StateMachine {
    /// Wakes the clients blocked on keys that `ops` (just applied) wrote: the keys of every write
    /// command, by the module's key positions. A transaction wakes everyone (they look again,
    /// and block again).
    fn wake_key_waiters(&self, ops: &[Op<'_>]) {
        let module = lock(&self.runtime).module().clone();
        let waiters = &self.shared.key_waiters;
        let mut args = Vec::new();
        for op in ops {
            let Op::Command { encoded, .. } = op else { continue };
            args.clear();
            if fsm_sdk::codec::decode_args_into(encoded, &mut args).is_err() || args.is_empty() {
                continue;
            }
            let Some(info) = module.command_index(args[0]).map(|i| &module.commands()[i]) else {
                if args[0] == crate::runtime::TRANSACTION_MARKER {
                    waiters.everything_changed();
                    return;
                }
                continue;
            };
            if info.write {
                for position in info.keys.positions(args.len()) {
                    waiters.written(args[position]);
                }
            }
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<AppliedState, StorageError<NodeId>> {
        self.read_applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let mut out = Vec::with_capacity(entries.len());
        let mut pending = Pending::default();
        for entry in &entries {
            let mut count = 0;
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Request::Commands(commands) | Request::Timed(TimedCommands { commands, .. }))
                    if !self.has_module() =>
                {
                    // Deterministic on every replica: no module, no commands.
                    self.commit(&mut pending, &mut out)?;
                    out.push(Response { replies: vec![Reply::error(NO_MODULE); commands.len()] });
                    pending.last = Some(entry.log_id);
                    continue;
                }
                EntryPayload::Normal(Request::Commands(commands)) => {
                    for command in commands.iter() {
                        pending.commands.push(Op::Command { encoded: command, time_ms: None });
                        pending.bytes += command.len();
                    }
                    count = commands.len();
                }
                EntryPayload::Normal(Request::Timed(TimedCommands { time_ms, commands })) => {
                    for command in commands.iter() {
                        pending.commands.push(Op::Command { encoded: command, time_ms: Some(*time_ms) });
                        pending.bytes += command.len();
                    }
                    count = commands.len();
                }
                EntryPayload::Normal(Request::Tick(time_ms)) if self.has_module() => {
                    pending.commands.push(Op::Tick { time_ms: *time_ms });
                    count = 1;
                }
                EntryPayload::Normal(Request::Tick(_)) => {}
                EntryPayload::Normal(request @ (Request::Module(_) | Request::Contract(_))) => {
                    // Everything before this entry runs under the module active before it.
                    self.commit(&mut pending, &mut out)?;
                    let reply = match request {
                        Request::Contract(cluster) if !self.has_module() => {
                            self.apply_legacy_contract(entry.log_id, cluster)?
                        }
                        Request::Module(change) => self.apply_module_change(entry.log_id, change)?,
                        _ => {
                            // A legacy contract entry after the module is known: nothing to do.
                            let last =
                                encode(&entry.log_id).map_err(|e| io_error(StorageIOError::write_state_machine, e))?;
                            self.commit_meta(&[(meta::LAST_APPLIED, &last)])?;
                            Reply::ok()
                        }
                    };
                    out.push(Response { replies: vec![reply] });
                    self.shared.key_waiters.everything_changed();
                    continue;
                }
                EntryPayload::Normal(Request::RetireNode(id)) => {
                    let mut retired = match pending.retired.take() {
                        Some(r) => r,
                        None => self.shared.retired.read().unwrap_or_else(|p| p.into_inner()).clone(),
                    };
                    retired.insert(*id);
                    pending.retired = Some(retired);
                }
                EntryPayload::Membership(membership) => {
                    pending.membership = Some(StoredMembership::new(Some(entry.log_id), membership.clone()));
                }
            }
            pending.counts.push(count);
            pending.last = Some(entry.log_id);
            if pending.bytes >= APPLY_BATCH_BYTES_MAX {
                self.commit(&mut pending, &mut out)?;
            }
        }
        self.commit(&mut pending, &mut out)?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            files: self.snapshots.clone(),
            shared: self.shared.clone(),
            counters: self.counters.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let id = self.snapshots.fresh_id(None);
        let path = self.snapshots.temp_path(&format!("incoming-{id}"));
        // Read and write: openraft writes the chunks into it, then we restore from it.
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| io_error(write_snapshot_none, e))?;
        let std_file = file.into_std().await;
        let key = file_key(&std_file).map_err(|e| io_error(write_snapshot_none, e))?;
        if self.receiving.len() >= RECEIVING_MAX {
            // Too many abandoned streams: drop the oldest and its file.
            let oldest = self.receiving.iter().min_by_key(|(_, i)| i.sequence).map(|(k, _)| *k);
            if let Some(incoming) = oldest.and_then(|k| self.receiving.remove(&k)) {
                let _ = std::fs::remove_file(incoming.path);
            }
        }
        self.receiving_sequence += 1;
        self.receiving.insert(key, Incoming { path, sequence: self.receiving_sequence });
        Ok(Box::new(tokio::fs::File::from_std(std_file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let w = |e: &dyn std::fmt::Display| io_error(write_snapshot_none, e);
        if !valid_snapshot_id(&meta.snapshot_id) {
            return Err(w(&format!("refusing snapshot id {:?}", meta.snapshot_id)));
        }
        let mut file = snapshot.into_std().await;
        let incoming = file_key(&file).ok().and_then(|key| self.receiving.remove(&key));
        // Streams begun before this one were abandoned (openraft receives one at a time): their
        // files go. Later ones may still be arriving and stay.
        if let Some(current) = &incoming {
            let stale: Vec<(u64, u64)> =
                self.receiving.iter().filter(|(_, i)| i.sequence < current.sequence).map(|(k, _)| *k).collect();
            for key in stale {
                if let Some(old) = self.receiving.remove(&key) {
                    let _ = std::fs::remove_file(old.path);
                }
            }
        }
        let path = incoming.map(|i| i.path);
        let started = std::time::Instant::now();
        tokio::task::block_in_place(|| -> Result<(), StorageError<NodeId>> {
            use std::io::Seek;
            file.sync_all().map_err(|e| w(&e))?;
            let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            // The data must be the state at the log id openraft was told, under a contract this
            // node can run.
            let claimed = match meta.last_log_id {
                Some(id) => encode(&id).map_err(|e| w(&e))?,
                None => return Err(w(&format!("snapshot {} has no last log id", meta.snapshot_id))),
            };
            // Verified whole (checksum, contract, module, last log id) before it is recorded: only a
            // good snapshot may stand in for the log that openraft purges meanwhile.
            file.seek(std::io::SeekFrom::Start(0)).map_err(|e| w(&e))?;
            let module = self
                .verify_snapshot(&mut std::io::BufReader::with_capacity(1 << 20, &file), &claimed)
                .map_err(|e| {
                    tracing::error!("received snapshot {} is not installable: {e}", meta.snapshot_id);
                    w(&e)
                })?;
            // Recorded before the restore: openraft purges the log up to this snapshot meanwhile,
            // and after a crash the node restores from this file at start.
            match &path {
                Some(path) => {
                    self.snapshots.publish(path, meta).map_err(|e| w(&e))?;
                    self.shared.raise_recoverable(meta.last_log_id.map(|l| l.index).unwrap_or(0));
                }
                None => {
                    return Err(w(&format!(
                        "snapshot {} arrived in a file this node did not create",
                        meta.snapshot_id
                    )));
                }
            }
            file.seek(std::io::SeekFrom::Start(0)).map_err(|e| w(&e))?;
            let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
            let info = self.restore_snapshot(&mut reader, module, &claimed).map_err(|e| {
                tracing::error!("installing snapshot {} failed: {e}", meta.snapshot_id);
                w(&e)
            })?;
            tracing::info!(snapshot = %meta.snapshot_id, entries = info.entries, bytes, "installed snapshot");
            let counters = &self.counters;
            super::WriteCounters::add(&counters.snapshots_installed, 1);
            counters.snapshot_install_latency.observe(started.elapsed());
            counters.snapshot_bytes.store(bytes, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })?;
        self.shared.key_waiters.everything_changed();
        self.reload_shared()
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = lock(&self.snapshots.current).clone();
        let Some(meta) = current else { return Ok(None) };
        let file = tokio::fs::File::open(self.snapshots.data_path(&meta.snapshot_id))
            .await
            .map_err(|e| io_error(read_snapshot_none, e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}
