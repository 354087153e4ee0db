//! The snapshot files of one node (`snapshots/`): the current one and its meta, fresh ids,
//! publishing a finished file durably, and removing what it supersedes.

use super::Meta;
use crate::raft::{NodeId, decode, encode, lock};
use openraft::LogId;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The snapshot files of one node and the latest one's meta.
pub(super) struct SnapshotFiles {
    dir: PathBuf,
    pub(super) chunk_bytes: usize,
    pub(super) current: Mutex<Option<Meta>>,
    pub(super) sequence: AtomicU64,
    /// Serialises publishing (rename, meta, `current`, cleanup): a build and an install may finish
    /// at the same time, and neither may delete the other's current files.
    pub(super) publishing: Mutex<()>,
}

/// Whether a snapshot id (which arrives from the leader) is safe to use in a file name.
pub(super) fn valid_snapshot_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SnapshotFiles {
    pub(super) fn open(dir: &Path, chunk_bytes: usize) -> std::io::Result<Self> {
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

    pub(super) fn data_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.snap"))
    }

    pub(super) fn fresh_id(&self, last: Option<LogId<NodeId>>) -> String {
        let (term, index) = last.map(|l| (l.leader_id.term, l.index)).unwrap_or((0, 0));
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{term}-{index}-{}-{sequence}", std::process::id())
    }

    pub(super) fn temp_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.tmp"))
    }

    /// Makes `data` (a finished file) the current snapshot with `meta`: durable meta file written
    /// after the data, then older snapshots removed.
    pub(super) fn publish(&self, temp: &Path, meta: &Meta) -> std::io::Result<()> {
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
