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
//! meanwhile) to `snapshots/<id>.snap` in [`SnapshotChunks`] format, off the async workers. The
//! file is what openraft sends to followers, chunk by chunk; a follower writes the chunks to a
//! file and restores from it (the contract is checked before any data is read).

use super::{
    Member, ModuleChange, ModuleEvent, NodeId, Request, Response, TimedCommands, TypeConfig, decode, encode, lock,
};
use crate::runtime::{Contract, FsmModule, Op, Runtime, SwitchOutcome};
use crate::storage::snapshot::SnapshotChunks;
use crate::storage::{SharedStore, meta};
use fsm_sdk::Reply;
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The snapshot files of one node and the latest one's meta.
struct SnapshotFiles {
    dir: PathBuf,
    chunk_bytes: usize,
    current: Mutex<Option<Meta>>,
    sequence: AtomicU64,
    /// Serialises publishing (rename, meta, `current`, cleanup): a build and an install may finish
    /// at the same time, and neither may delete the other's current files.
    publishing: Mutex<()>,
}

/// Whether a snapshot id (which arrives from the leader) is safe to use in a file name.
fn valid_snapshot_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SnapshotFiles {
    fn open(dir: &Path, chunk_bytes: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut best: Option<Meta> = None;
        for item in std::fs::read_dir(dir)? {
            let path = item?.path();
            if path.extension().is_some_and(|e| e == "meta") {
                let bytes = std::fs::read(&path)?;
                if let Ok(meta) = decode::<Meta>(&bytes)
                    && path.with_extension("snap").exists()
                    && best.as_ref().is_none_or(|b| b.last_log_id < meta.last_log_id)
                {
                    best = Some(meta);
                }
            }
        }
        let files = SnapshotFiles {
            dir: dir.to_path_buf(),
            chunk_bytes,
            current: Mutex::new(best.clone()),
            sequence: AtomicU64::new(0),
            publishing: Mutex::new(()),
        };
        files.remove_all_but(best.as_ref().map(|m| m.snapshot_id.as_str()));
        // Leftovers of builds or receives interrupted by a crash.
        for item in std::fs::read_dir(dir)?.flatten() {
            if item.path().extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(item.path());
            }
        }
        Ok(files)
    }

    fn data_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.snap"))
    }

    fn fresh_id(&self, last: Option<LogId<NodeId>>) -> String {
        let (term, index) = last.map(|l| (l.leader_id.term, l.index)).unwrap_or((0, 0));
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{term}-{index}-{}-{sequence}", std::process::id())
    }

    fn temp_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.tmp"))
    }

    /// Makes `data` (a finished file) the current snapshot with `meta`: durable meta file written
    /// after the data, then older snapshots removed.
    fn publish(&self, temp: &Path, meta: &Meta) -> std::io::Result<()> {
        if !valid_snapshot_id(&meta.snapshot_id) {
            return Err(std::io::Error::other(format!("refusing snapshot id {:?}", meta.snapshot_id)));
        }
        let _publishing = lock(&self.publishing);
        std::fs::rename(temp, self.data_path(&meta.snapshot_id))?;
        let bytes = encode(meta).map_err(std::io::Error::other)?;
        let meta_tmp = self.dir.join(format!("{}.meta.tmp", meta.snapshot_id));
        let mut file = std::fs::File::create(&meta_tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&meta_tmp, self.dir.join(format!("{}.meta", meta.snapshot_id)))?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        let mut current = lock(&self.current);
        if current.as_ref().is_none_or(|c| c.last_log_id <= meta.last_log_id) {
            *current = Some(meta.clone());
        }
        let keep = current.as_ref().map(|m| m.snapshot_id.clone());
        drop(current);
        self.remove_all_but(keep.as_deref());
        Ok(())
    }

    fn remove_all_but(&self, keep: Option<&str>) {
        let Ok(items) = std::fs::read_dir(&self.dir) else { return };
        for item in items.flatten() {
            let path = item.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let is_kept = keep.is_some_and(|k| name == format!("{k}.snap") || name == format!("{k}.meta"));
            // Files still being written by a concurrent build or receive end in `.tmp` and belong
            // to this process's sequence; they are removed when superseded below or at restart.
            if !is_kept && !name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
            }
        }
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

/// A snapshot file being received.
struct Incoming {
    path: PathBuf,
    sequence: u64,
}

/// Incoming snapshot files remembered at most (older abandoned ones are removed at start).
const RECEIVING_MAX: usize = 8;

fn file_key(file: &std::fs::File) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

impl StateMachine {
    /// Counts applies into `counters` (the node shares one set across its parts).
    pub fn with_counters(mut self, counters: Arc<super::WriteCounters>) -> Self {
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

    /// Restores the newest snapshot file into the store: at every start of a node whose state is in
    /// memory (`empty`), or after an interrupted install.
    fn recover_from_snapshot(
        &self,
        log_purged: Option<LogId<NodeId>>,
        empty: bool,
    ) -> Result<(), StorageError<NodeId>> {
        let w = |e: &dyn std::fmt::Display| io_error(write_snapshot_none, e);
        let current = lock(&self.snapshots.current).clone();
        let Some(meta) = current.filter(|m| m.last_log_id >= log_purged) else {
            return Err(w(&format!(
                "the state is behind the purged log (purged up to {log_purged:?}) and no snapshot covers the gap: \
                 this node cannot recover on its own. REMOVE it from the cluster and JOIN a node with a new id and \
                 an empty data_dir"
            )));
        };
        if empty {
            tracing::info!(snapshot = %meta.snapshot_id, "loading the state from the newest snapshot");
        } else {
            tracing::warn!(snapshot = %meta.snapshot_id, "an interrupted snapshot install is completed from its file");
        }
        let claimed = match meta.last_log_id {
            Some(id) => encode(&id).map_err(|e| w(&e))?,
            None => return Err(w(&"snapshot without a last log id")),
        };
        let path = self.snapshots.data_path(&meta.snapshot_id);
        let restore = || -> Result<(), String> {
            let open = || std::fs::File::open(&path).map(|f| std::io::BufReader::with_capacity(1 << 20, f));
            let module = self.verify_snapshot(&mut open().map_err(|e| e.to_string())?, &claimed)?;
            self.restore_snapshot(&mut open().map_err(|e| e.to_string())?, module, &claimed).map(drop)
        };
        restore().map_err(|e| {
            w(&format!(
                "restoring the recorded snapshot {} failed ({e}): this node cannot recover on its own. REMOVE it \
                 from the cluster and JOIN a node with a new id and an empty data_dir",
                meta.snapshot_id
            ))
        })
    }

    /// Reads a whole snapshot file, verifying it (checksum, last log id) and that this node can
    /// run it: its contract must match this node's ABI, engine and limits, and its module must
    /// load. Returns that module (`None` for a snapshot taken before any module entry).
    fn verify_snapshot(
        &self,
        source: &mut dyn std::io::Read,
        claimed: &[u8],
    ) -> Result<Option<Arc<FsmModule>>, String> {
        let info = crate::storage::snapshot::read(source, &[(meta::LAST_APPLIED, claimed)], &mut |_| Ok(()))
            .map_err(|e| e.to_string())?;
        let Some(bytes) = info.meta.get(meta::MODULE) else {
            // Taken before any module entry (no contract either), or by Redraft before snapshots
            // carried modules: then the contract must be exactly this node's configured module's.
            let Some(contract) = info.meta.get(meta::CONTRACT) else { return Ok(None) };
            let configured = self.shared.configured();
            return match Contract::decode(contract) {
                Ok(theirs) if theirs == configured.contract() => Ok(Some(configured)),
                Ok(theirs) => Err(format!(
                    "the snapshot was produced under another contract ({}; this node vs snapshot)",
                    configured.contract().differences(&theirs).join("; ")
                )),
                Err(e) => Err(format!("the snapshot's contract is unreadable: {e}")),
            };
        };
        let contract = info.meta.get(meta::CONTRACT).ok_or("the snapshot has a module but no contract")?;
        let contract = Contract::decode(contract).map_err(|e| format!("the snapshot's contract is unreadable: {e}"))?;
        let digest: [u8; 32] = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(bytes)).into();
        if digest != contract.module_digest {
            return Err("the snapshot's module does not match its contract's digest".into());
        }
        let differences = self.shared.configured().contract().differences_besides_module(&contract);
        if !differences.is_empty() {
            return Err(format!(
                "the snapshot was produced under another ABI, engine or limits ({}; this node vs snapshot)",
                differences.join("; ")
            ));
        }
        self.load_module(bytes).map(Some).map_err(|e| format!("the snapshot's module does not load: {e}"))
    }

    /// Replaces the state with a verified snapshot's and switches the runtime to its module.
    fn restore_snapshot(
        &self,
        source: &mut dyn std::io::Read,
        module: Option<Arc<FsmModule>>,
        claimed: &[u8],
    ) -> Result<crate::storage::snapshot::SnapshotInfo, String> {
        let required = [(meta::LAST_APPLIED, claimed)];
        // Readers wait: none may run one module against the other's state.
        let _exclusive = lock(&self.shared.module_change);
        let info = match &module {
            Some(module) => lock(&self.runtime).restore_with_module(source, module.clone(), &required),
            None => self.store.restore(source, &required),
        }
        .map_err(|e| e.to_string())?;
        self.shared.module.write().unwrap_or_else(|p| p.into_inner()).module = module;
        Ok(info)
    }

    /// Loads module bytes from the log or a snapshot, reusing the configured module when they
    /// are its bytes.
    fn load_module(&self, bytes: &[u8]) -> Result<Arc<FsmModule>, crate::runtime::LoadError> {
        let configured = self.shared.configured();
        if bytes == configured.bytes() {
            return Ok(configured);
        }
        FsmModule::load(configured.engine(), bytes).map(Arc::new)
    }

    fn reload_shared(&self) -> Result<(), StorageError<NodeId>> {
        let r = |e: &dyn std::fmt::Display| io_error(StorageIOError::read_state_machine, e);
        let view = self.store.read().map_err(|e| r(&e))?;
        let meta = view.meta().map_err(|e| r(&e))?;
        let retired = match meta.get(RETIRED_NODES) {
            Some(bytes) => decode(bytes).map_err(|e| r(&e))?,
            None => BTreeSet::new(),
        };
        *self.shared.retired.write().unwrap_or_else(|p| p.into_inner()) = retired;
        let history = match meta.get(MODULE_HISTORY) {
            Some(bytes) => decode(bytes).map_err(|e| r(&e))?,
            None => Vec::new(),
        };
        // The runtime runs the store's recorded module (opened with it, or switched to it by a
        // restore); without one, no module is active yet.
        let module = meta.contains_key(meta::MODULE).then(|| lock(&self.runtime).module().clone());
        self.note_configured(module.as_deref());
        *self.shared.module.write().unwrap_or_else(|p| p.into_inner()) = ActiveModule { module, history };
        Ok(())
    }

    /// Says so in the log when this node's configured module is not the cluster's.
    fn note_configured(&self, active: Option<&FsmModule>) {
        let configured = self.shared.configured();
        if let Some(active) = active
            && active.digest() != configured.digest()
        {
            tracing::warn!(
                active = %crate::storage::hex(&active.digest()),
                configured = %crate::storage::hex(&configured.digest()),
                "this node's configured fsm_module is not the cluster's active module: following the cluster"
            );
        }
    }

    /// Applies a [`Request::Contract`] entry (logs written before module switches): the module
    /// entry of this node's configured module, which must have exactly that contract.
    fn apply_legacy_contract(&self, log_id: LogId<NodeId>, cluster: &[u8]) -> Result<Reply, StorageError<NodeId>> {
        let configured = self.shared.configured();
        if configured.contract().encode() == cluster {
            // Installed as such a cluster's stores were: no migration, no history event (a
            // replica that applied this entry before the upgrade has none either).
            let last = encode(&log_id).map_err(|e| io_error(StorageIOError::write_state_machine, e))?;
            let meta = |_: &SwitchOutcome| Ok(vec![(meta::LAST_APPLIED, last.clone())]);
            let switched = self
                .switch_runtime(&configured, false, &meta)
                .map_err(|e| io_error(StorageIOError::write_state_machine, e))?;
            return match switched {
                SwitchOutcome::Activated => Ok(Reply::ok()),
                SwitchOutcome::Rejected(why) => Err(io_error(
                    StorageIOError::write_state_machine,
                    format!("the configured module cannot be installed: {why}"),
                )),
            };
        }
        let text = match Contract::decode(cluster) {
            Ok(theirs) => format!(
                "this node's state-machine contract differs from the cluster's ({}; cluster vs this node): refusing to \
                 apply. Configure the cluster's module (digest {}) and limits",
                theirs.differences(&configured.contract()).join("; "),
                crate::storage::hex(&theirs.module_digest),
            ),
            Err(e) => format!("the cluster's state-machine contract is unreadable ({e}): refusing to apply"),
        };
        tracing::error!("{text}");
        Err(io_error(StorageIOError::write_state_machine, text))
    }

    /// Applies a [`Request::Module`] entry (everything before it is committed): switches modules
    /// or records why not, in one store transaction with the last-applied id. Returns the reply
    /// for whoever proposed it.
    fn apply_module_change(&self, log_id: LogId<NodeId>, change: &ModuleChange) -> Result<Reply, StorageError<NodeId>> {
        use sha2::Digest as _;
        let w = |e: &dyn std::fmt::Display| io_error(StorageIOError::write_state_machine, e);
        let digest: [u8; 32] = sha2::Sha256::digest(&change.bytes).into();
        let short = &crate::storage::hex(&digest)[..12];
        let last = encode(&log_id).map_err(|e| w(&e))?;
        // Whether this replica can follow the cluster at all is not a deterministic outcome but
        // this node's configuration: it stops rather than diverge.
        let proposed = Contract::decode(&change.contract);
        if let Ok(proposed) = &proposed {
            let differences = self.shared.configured().contract().differences_besides_module(proposed);
            if !differences.is_empty() {
                let text = format!(
                    "this node's ABI, engine or limits differ from the cluster's ({}; this node vs cluster): refusing \
                     to apply. Run the same Redraft build with the same limits as the rest of the cluster",
                    differences.join("; ")
                );
                tracing::error!("{text}");
                return Err(w(&text));
            }
        }
        let (current, previous) = {
            let active = self.shared.module.read().unwrap_or_else(|p| p.into_inner());
            (active.module.clone(), active.history.clone())
        };
        if current.as_ref().is_some_and(|m| m.digest() == digest) {
            // Already active: nothing to switch, nothing to record.
            self.commit_meta(&[(meta::LAST_APPLIED, &last)])?;
            return Ok(Reply::Simple(format!("OK module {short} is already active")));
        }
        let history_with = |rejected: Option<String>| {
            let mut history = previous.clone();
            history.push(ModuleEvent { index: log_id.index, digest, rejected });
            let excess = history.len().saturating_sub(MODULE_HISTORY_MAX);
            history.drain(..excess);
            history
        };
        // A malformed entry is rejected alike everywhere. Bytes that match their digest but do
        // not load here are this node's problem (the leader validated them, and every node runs
        // the same engine): a resource failure, or a build whose checks differ. Stop rather than
        // diverge.
        let loaded = match proposed {
            Err(e) => Err(format!("the entry's contract is unreadable: {e}")),
            Ok(proposed) if proposed.module_digest != digest => {
                Err("the module's bytes do not match its digest".into())
            }
            Ok(_) => match tokio::task::block_in_place(|| self.load_module(&change.bytes)) {
                Ok(module) => Ok(module),
                Err(e) => {
                    let text = format!(
                        "the module the cluster switches to at index {} ({short}) does not load on this node: {e}. \
                         Refusing to apply: run the same Redraft build as the rest of the cluster",
                        log_id.index
                    );
                    tracing::error!("{text}");
                    return Err(w(&text));
                }
            },
        };
        // A failed migration's reason, as the history and the reply give it.
        let migrate_failed = |outcome: SwitchOutcome| match outcome {
            SwitchOutcome::Rejected(reason) => {
                let reason = reason.strip_prefix("ERR ").unwrap_or(&reason);
                let reason = reason.strip_prefix("command aborted: ").unwrap_or(reason);
                SwitchOutcome::Rejected(format!("migrate failed: {reason}"))
            }
            activated => activated,
        };
        let outcome = match loaded {
            Err(reason) => {
                let history = encode(&history_with(Some(reason.clone()))).map_err(|e| w(&e))?;
                self.commit_meta(&[(meta::LAST_APPLIED, &last), (MODULE_HISTORY, &history)])?;
                SwitchOutcome::Rejected(reason)
            }
            Ok(module) => {
                // No migration when the cluster gets its first module: there is no earlier state.
                let run_migrate = current.is_some();
                let meta_for = |outcome: &SwitchOutcome| {
                    let rejected = match migrate_failed(outcome.clone()) {
                        SwitchOutcome::Activated => None,
                        SwitchOutcome::Rejected(reason) => Some(reason),
                    };
                    let history = encode(&history_with(rejected))
                        .map_err(|e| crate::runtime::ApplyError::Engine(format!("encoding the history: {e}")))?;
                    Ok(vec![(meta::LAST_APPLIED, last.clone()), (MODULE_HISTORY, history)])
                };
                let switched = self.switch_runtime(&module, run_migrate, &meta_for).map_err(|e| {
                    tracing::error!("applying the module entry {log_id} failed: {e}; this node stops applying");
                    w(&e)
                })?;
                if switched == SwitchOutcome::Activated {
                    self.note_configured(Some(&module));
                }
                migrate_failed(switched)
            }
        };
        let hex = crate::storage::hex(&digest);
        let index = log_id.index;
        let mut active = self.shared.module.write().unwrap_or_else(|p| p.into_inner());
        Ok(match outcome {
            SwitchOutcome::Activated => {
                active.history = history_with(None);
                tracing::info!(index, module = %hex, "state-machine module switched");
                Reply::Simple(format!("OK module {short} is active from index {index}"))
            }
            SwitchOutcome::Rejected(reason) => {
                active.history = history_with(Some(reason.clone()));
                tracing::warn!(index, module = %hex, "module switch rejected: {reason}");
                Reply::Error(format!("ERR module switch to {short} rejected at index {index}: {reason}"))
            }
        })
    }

    /// Switches the applier's runtime to `module` (see `Runtime::switch_module`) and, when the
    /// module became active, the shared active module too, with readers kept out until both agree.
    fn switch_runtime(
        &self,
        module: &Arc<FsmModule>,
        run_migrate: bool,
        meta: &dyn Fn(&SwitchOutcome) -> Result<crate::runtime::MetaValues, crate::runtime::ApplyError>,
    ) -> Result<SwitchOutcome, crate::runtime::ApplyError> {
        tokio::task::block_in_place(|| {
            let _exclusive = lock(&self.shared.module_change);
            let switched = lock(&self.runtime).switch_module(module.clone(), run_migrate, meta)?;
            if switched == SwitchOutcome::Activated {
                self.shared.module.write().unwrap_or_else(|p| p.into_inner()).module = Some(module.clone());
            }
            Ok(switched)
        })
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
        let replies = tokio::task::block_in_place(|| lock(&self.runtime).apply_ops(&pending.commands, &meta_refs))
            .map_err(|e| {
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
        SnapshotBuilder { store: self.store.clone(), files: self.snapshots.clone(), shared: self.shared.clone() }
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
        tokio::task::block_in_place(|| -> Result<(), StorageError<NodeId>> {
            use std::io::Seek;
            file.sync_all().map_err(|e| w(&e))?;
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
            tracing::info!(snapshot = %meta.snapshot_id, entries = info.entries, "installed snapshot");
            Ok(())
        })?;
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

/// Builds a snapshot from a read view, off the apply path (openraft runs it in its own task).
pub struct SnapshotBuilder {
    store: SharedStore,
    files: Arc<SnapshotFiles>,
    shared: Arc<SharedState>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let store = self.store.clone();
        let files = self.files.clone();
        let (meta, data) = tokio::task::spawn_blocking(move || -> Result<(Meta, std::fs::File), String> {
            // Applies commit without fsync (the log can replay them); the snapshot lets the log be
            // purged, so everything it covers must be durable: take the view, then sync (which
            // persists at least what the view holds).
            let view = store.read().map_err(|e| e.to_string())?;
            store.sync().map_err(|e| e.to_string())?;
            let (last_log_id, last_membership) =
                read_applied_meta(&view.meta().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            let snapshot_id = files.fresh_id(last_log_id);
            let temp = files.temp_path(&snapshot_id);
            let mut file =
                std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&temp).map_err(|e| e.to_string())?);
            let mut chunks = SnapshotChunks::new(view, files.chunk_bytes);
            for chunk in &mut chunks {
                file.write_all(&chunk.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            }
            let file = file.into_inner().map_err(|e| e.to_string())?;
            file.sync_all().map_err(|e| e.to_string())?;
            let meta = Meta { last_log_id, last_membership, snapshot_id };
            // Open before publishing: a concurrent install may supersede (and delete) this one,
            // and openraft still gets a readable file.
            let data = std::fs::File::open(&temp).map_err(|e| e.to_string())?;
            files.publish(&temp, &meta).map_err(|e| e.to_string())?;
            Ok((meta, data))
        })
        .await
        .map_err(|e| io_error(write_snapshot_none, e))?
        .map_err(|e| io_error(write_snapshot_none, e))?;
        tracing::info!(snapshot = %meta.snapshot_id, last = ?meta.last_log_id, "built snapshot");
        self.shared.raise_recoverable(meta.last_log_id.map(|l| l.index).unwrap_or(0));
        Ok(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(data)) })
    }
}
