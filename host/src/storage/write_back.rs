//! A write-back layer over the redb store: commits land in an in-memory layer first and reach
//! redb in groups, one write transaction per group.
//!
//! Why: a redb write transaction has a fixed cost (the copy-on-write of the paths it touches,
//! page checksums, free-page bookkeeping, the root updates) that does not shrink with the
//! transaction. A node applies each committed Raft entry (a dozen client writes at `-c 50`) in
//! one transaction, and that fixed cost was the largest share of a node's CPU in a profile.
//! Grouping many entries into one transaction pays it once per group, and a key written again
//! within the group is written to redb once.
//!
//! The writes to redb happen on a thread of their own (the flusher), so the applier only merges
//! each commit into an in-memory layer: a full layer is frozen and written in the background
//! while the next one fills.
//!
//! What it keeps: the guarantees of the non-durable redb store it wraps (the node opens the
//! state store without per-commit fsync, because the Raft log replays whatever a crash loses).
//! A commit's data and meta (the last-applied log id above all) become visible together, to
//! every read view taken after it returns; a read view never sees a later commit; a flush writes
//! whole commits, in order, in one transaction, so after a crash redb holds the state as of some
//! flush, consistent with the last-applied id it records, and openraft re-applies the rest.
//!
//! Only the node's applier commits (one writer); read views are taken by the node's reader and
//! the snapshot builder at any time.

use super::map_key::MapKey;
use super::redb::RedbStore;
use super::snapshot::SnapshotInfo;
use super::{ReadView, StorageError, Store, Visit, WriteBatch, merge_scan};
use imbl::OrdMap;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

type Bytes = Arc<[u8]>;

/// When the layer is written to redb.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    /// Flush once the layer holds this many bytes of keys and values. This bounds the memory it
    /// takes, and the work (and so the pause of that one commit) of one flush.
    pub bytes: usize,
    /// Flush once the layer holds this many commits.
    pub commits: usize,
}

impl Default for FlushPolicy {
    /// 16 MiB or 1024 commits: at `-c 50` a flush groups about 12k writes. Groups of 64 commits
    /// (about 800 writes) left a quarter of the nodes' CPU in the flusher; 1024 took the nodes'
    /// CPU per SET down by about 15 % with random keys out of 1M (docs/BENCHMARKS.md).
    fn default() -> Self {
        FlushPolicy { bytes: 16 << 20, commits: 1024 }
    }
}

/// Commits not yet written to redb. Persistent maps: a read view clones it in O(1).
#[derive(Clone, Default)]
struct Layer {
    /// `None` is a delete.
    data: OrdMap<MapKey, Option<Bytes>>,
    meta: Arc<BTreeMap<String, Vec<u8>>>,
    bytes: usize,
    commits: usize,
}

/// The active layer takes commits; the frozen one is being written to redb by the flusher.
#[derive(Default)]
struct Layers {
    active: Layer,
    frozen: Option<Layer>,
    /// A flush failed: the store refuses commits from then on (the node stops, and its restart
    /// replays the log).
    failed: Option<String>,
    closed: bool,
}

struct Shared {
    inner: RedbStore,
    layers: Mutex<Layers>,
    /// Signalled when a layer is frozen, when a flush ends, and on close.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Layers> {
        self.layers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Layers>) -> MutexGuard<'a, Layers> {
        self.changed.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no layer is being flushed; then, if the active one holds anything, freezes
    /// it for the flusher.
    fn freeze<'a>(&self, mut layers: MutexGuard<'a, Layers>) -> Result<MutexGuard<'a, Layers>, StorageError> {
        while layers.frozen.is_some() && layers.failed.is_none() {
            layers = self.wait(layers);
        }
        if let Some(why) = &layers.failed {
            return Err(flush_failed(why));
        }
        if layers.active.commits > 0 {
            layers.frozen = Some(std::mem::take(&mut layers.active));
            self.changed.notify_all();
        }
        Ok(layers)
    }

    /// [`Shared::freeze`], then waits until that layer is in redb.
    fn flush_all(&self) -> Result<(), StorageError> {
        let mut layers = self.freeze(self.lock())?;
        while layers.frozen.is_some() && layers.failed.is_none() {
            layers = self.wait(layers);
        }
        layers.failed.as_deref().map_or(Ok(()), |why| Err(flush_failed(why)))
    }
}

fn flush_failed(why: &str) -> StorageError {
    StorageError::Io(std::io::Error::other(format!("writing applied state to redb failed: {why}")))
}

/// The flusher thread: writes each frozen layer in one redb transaction, then drops it (a reader
/// in between sees the layer over a redb that already holds it: the same state).
fn flusher(shared: &Shared) {
    loop {
        let layer = {
            let mut layers = shared.lock();
            loop {
                if let Some(layer) = &layers.frozen {
                    break layer.clone();
                }
                if layers.closed {
                    return;
                }
                layers = shared.wait(layers);
            }
        };
        let written = shared.inner.write(
            false,
            layer.data.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
            layer.meta.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        );
        let mut layers = shared.lock();
        match written {
            Ok(()) => layers.frozen = None,
            Err(e) => {
                tracing::error!("writing applied state to redb failed: {e}");
                layers.failed = Some(e.to_string());
            }
        }
        shared.changed.notify_all();
        if layers.failed.is_some() {
            return;
        }
    }
}

/// The write-back store. See the module docs.
pub struct WriteBackStore {
    shared: Arc<Shared>,
    /// Held by commit, sync and restore: one writer at a time.
    writer: Mutex<()>,
    policy: FlushPolicy,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl WriteBackStore {
    /// Wraps `inner`, flushing by `policy` on a thread of its own.
    pub fn new(inner: RedbStore, policy: FlushPolicy) -> Result<Self, StorageError> {
        let shared = Arc::new(Shared { inner, layers: Mutex::default(), changed: Condvar::new() });
        let for_thread = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("state-flusher".into())
            .spawn(move || flusher(&for_thread))
            .map_err(StorageError::Io)?;
        Ok(WriteBackStore { shared, writer: Mutex::default(), policy, flusher: Some(flusher) })
    }
}

impl Drop for WriteBackStore {
    /// Stops the flusher once it has written what was frozen; the active layer is dropped (the
    /// node syncs before it stops, and otherwise the log replays it).
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

/// A redb read view with the layers as of the same moment on top (the active one over the
/// frozen one).
struct LayeredView {
    active: Layer,
    frozen: Option<Layer>,
    inner: Box<dyn ReadView>,
}

impl LayeredView {
    /// The layers' entries in `[start, end)` as one ordered walk (descending when `reverse`), the
    /// active layer's winning: merged lazily, so a scan that stops after a few keys (the expiry
    /// tick's, once per applied entry) costs a few steps, not a copy of a layer.
    fn layers_range<'a>(
        &'a self,
        start: Bound<&'a [u8]>,
        end: Bound<&'a [u8]>,
        reverse: bool,
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let walk = move |layer: &'a Layer| -> Walk<'a> {
            let range = layer.data.range::<_, [u8]>((start, end)).map(|(k, v)| (k.as_slice(), v.as_deref()));
            if reverse { Box::new(range.rev()) } else { Box::new(range) }
        };
        let frozen: Walk<'a> = match &self.frozen {
            Some(frozen) => walk(frozen),
            None => Box::new(std::iter::empty()),
        };
        MergeLayers { upper: walk(&self.active).peekable(), lower: frozen.peekable(), reverse }
    }
}

/// One layer's entries in walk order (`None` is a delete).
type Walk<'a> = Box<dyn Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a>;

/// Two ordered walks in the same direction as one; on equal keys `upper`'s entry wins and
/// `lower`'s is skipped.
struct MergeLayers<'a> {
    upper: std::iter::Peekable<Walk<'a>>,
    lower: std::iter::Peekable<Walk<'a>>,
    reverse: bool,
}

impl<'a> Iterator for MergeLayers<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        use std::cmp::Ordering;
        let order = match (self.upper.peek(), self.lower.peek()) {
            (Some(u), Some(l)) if self.reverse => l.0.cmp(u.0),
            (Some(u), Some(l)) => u.0.cmp(l.0),
            (Some(_), None) => Ordering::Less,
            (None, _) => return self.lower.next(),
        };
        if order == Ordering::Equal {
            self.lower.next();
        }
        if order == Ordering::Greater { self.lower.next() } else { self.upper.next() }
    }
}

impl ReadView for LayeredView {
    fn get(&self, key: &[u8], found: &mut dyn FnMut(&[u8])) -> Result<bool, StorageError> {
        let upper = self.active.data.get(key).or_else(|| self.frozen.as_ref().and_then(|f| f.data.get(key)));
        match upper {
            Some(Some(value)) => {
                found(value);
                Ok(true)
            }
            Some(None) => Ok(false),
            None => self.inner.get(key, found),
        }
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, visit: Visit<'_>) -> Result<(), StorageError> {
        merge_scan(|lower| self.inner.scan(start, end, lower), self.layers_range(start, end, false), false, visit)
    }

    fn scan_rev(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, visit: Visit<'_>) -> Result<(), StorageError> {
        merge_scan(|lower| self.inner.scan_rev(start, end, lower), self.layers_range(start, end, true), true, visit)
    }

    fn meta(&self) -> Result<BTreeMap<String, Vec<u8>>, StorageError> {
        let mut meta = self.inner.meta()?;
        for layer in self.frozen.iter().chain([&self.active]) {
            for (name, value) in layer.meta.iter() {
                meta.insert(name.clone(), value.clone());
            }
        }
        Ok(meta)
    }
}

impl Store for WriteBackStore {
    fn read(&self) -> Result<Box<dyn ReadView>, StorageError> {
        // The layers and the redb view under one lock: the flusher drops a layer only after redb
        // holds it, so the three always make one state.
        let layers = self.shared.lock();
        let inner = self.shared.inner.read()?;
        Ok(Box::new(LayeredView { active: layers.active.clone(), frozen: layers.frozen.clone(), inner }))
    }

    fn commit(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if batch.clear_data {
            // Rare (a `FLUSHDB`): everything before it goes to redb first, then the batch is one
            // redb transaction of its own, so no layer holds entries from before the clear.
            self.shared.flush_all()?;
            return self.shared.inner.commit(batch);
        }
        let mut layers = self.shared.lock();
        if let Some(why) = &layers.failed {
            return Err(flush_failed(why));
        }
        let layer = &mut layers.active;
        for (key, value) in &batch.data {
            layer.bytes += key.len() + value.as_ref().map_or(0, Vec::len);
            layer.data.insert(MapKey::new(key), value.as_deref().map(Bytes::from));
        }
        if !batch.meta.is_empty() {
            let meta = Arc::make_mut(&mut layer.meta);
            for (name, value) in &batch.meta {
                layer.bytes += name.len() + value.len();
                meta.insert(name.clone(), value.clone());
            }
        }
        layer.commits += 1;
        let full = layer.bytes >= self.policy.bytes || layer.commits >= self.policy.commits;
        // Frozen for the flusher when full and it is idle; while it is busy the active layer
        // keeps growing, up to four times the policy, where commits wait for it (backpressure).
        let overfull = layer.bytes >= self.policy.bytes.saturating_mul(4);
        if full && (layers.frozen.is_none() || overfull) {
            drop(self.shared.freeze(layers)?);
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.flush_all()?;
        self.shared.inner.sync()
    }

    fn restore(
        &self,
        source: &mut dyn std::io::Read,
        required: &[(&str, &[u8])],
    ) -> Result<SnapshotInfo, StorageError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // Flushed first, so that a refused snapshot leaves the state as it was.
        self.shared.flush_all()?;
        self.shared.inner.restore(source, required)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&str>)]) -> Layer {
        let mut layer = Layer::default();
        for (k, v) in entries {
            layer.data.insert(MapKey::new(k.as_bytes()), v.map(|v| Bytes::from(v.as_bytes())));
        }
        layer
    }

    fn walk(view: &LayeredView, start: Bound<&[u8]>, reverse: bool) -> Vec<String> {
        view.layers_range(start, Bound::Unbounded, reverse)
            .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), v.map_or("-".into(), String::from_utf8_lossy)))
            .collect()
    }

    /// The lazy merge of the two layers is the active layer over the frozen one, in either
    /// direction: a key in both comes once, with the active value (or its delete).
    #[test]
    fn layers_merge_with_the_active_one_winning() {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = RedbStore::open(&dir.path().join("s.redb"), false).expect("open").read().expect("view");
        let view = LayeredView {
            active: layer(&[("b", Some("new")), ("d", None), ("e", Some("5"))]),
            frozen: Some(layer(&[("a", Some("1")), ("b", Some("old")), ("c", Some("3")), ("d", Some("4"))])),
            inner,
        };
        assert_eq!(walk(&view, Bound::Unbounded, false), ["a=1", "b=new", "c=3", "d=-", "e=5"]);
        assert_eq!(walk(&view, Bound::Unbounded, true), ["e=5", "d=-", "c=3", "b=new", "a=1"]);
        assert_eq!(walk(&view, Bound::Included(b"b"), false), ["b=new", "c=3", "d=-", "e=5"]);
        let no_frozen = LayeredView { frozen: None, ..view };
        assert_eq!(walk(&no_frozen, Bound::Unbounded, true), ["e=5", "d=-", "b=new"]);
    }
}
