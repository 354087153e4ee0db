//! Snapshots of the state machine: building one from a read view, receiving one into a file,
//! verifying and restoring it, and restoring the newest file at start.

use super::snapshot_files::SnapshotFiles;
use super::{Meta, SharedState, StateMachine, io_error, read_applied_meta, write_snapshot_none};
use crate::raft::{NodeId, TypeConfig, WriteCounters, encode, lock};
use crate::runtime::{Contract, FsmModule};
use crate::storage::snapshot::SnapshotChunks;
use crate::storage::{SharedStore, meta};
use openraft::{LogId, RaftSnapshotBuilder, Snapshot, StorageError};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// A snapshot file being received.
pub(super) struct Incoming {
    pub(super) path: PathBuf,
    pub(super) sequence: u64,
}

/// Incoming snapshot files remembered at most (older abandoned ones are removed at start).
pub(super) const RECEIVING_MAX: usize = 8;

pub(super) fn file_key(file: &std::fs::File) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

impl StateMachine {
    /// Restores the newest snapshot file into the store: at every start of a node whose state is in
    /// memory (`empty`), or after an interrupted install.
    pub(super) fn recover_from_snapshot(
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
    pub(super) fn verify_snapshot(
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
    pub(super) fn restore_snapshot(
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
}

/// Builds a snapshot from a read view, off the apply path (openraft runs it in its own task).
pub struct SnapshotBuilder {
    pub(super) store: SharedStore,
    pub(super) files: Arc<SnapshotFiles>,
    pub(super) shared: Arc<SharedState>,
    pub(super) counters: Arc<WriteCounters>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let store = self.store.clone();
        let files = self.files.clone();
        let started = std::time::Instant::now();
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
        let bytes = data.metadata().map(|m| m.len()).unwrap_or(0);
        tracing::info!(snapshot = %meta.snapshot_id, last = ?meta.last_log_id, bytes, "built snapshot");
        WriteCounters::add(&self.counters.snapshots_built, 1);
        self.counters.snapshot_build_latency.observe(started.elapsed());
        self.counters.snapshot_bytes.store(bytes, std::sync::atomic::Ordering::Relaxed);
        self.shared.raise_recoverable(meta.last_log_id.map(|l| l.index).unwrap_or(0));
        Ok(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(data)) })
    }
}
