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
//!
//! **Lookups of absent keys skip redb.** A [`KeyFilter`] holds every key redb may hold: built by
//! a scan on a thread of its own when the store opens or restores a snapshot (lookups go to redb
//! until it is done, so opening does not wait for it), and fed by every commit from the moment
//! the scan's view was taken. A key the filter does not hold is not in redb, and a read view
//! trusts the filter it was taken with, which is consistent with its redb snapshot. Deleted keys
//! stay in the filter; once more keys went in than it was sized for, a new one is built.

use super::key_filter::{KeyFilter, KeyHash};
use super::map_key::MapKey;
use super::redb::RedbStore;
use super::snapshot::SnapshotInfo;
use super::{ReadView, StorageError, Store, Visit, WriteBatch, merge_scan};
use imbl::OrdMap;
use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

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
    /// 64 MiB or 4096 commits: at `-c 50` a flush groups about 50k writes. Groups of 64 commits
    /// (about 800 writes) left a quarter of the nodes' CPU in the flusher; 1024 took the nodes'
    /// CPU per SET down by about 15 % with random keys out of 1M, and 4096 with 64 MiB halved
    /// the flusher's CPU again and held pipelined SETs up by a third as the keyspace grew: the
    /// more writes a transaction holds, the more of them share each page it copies
    /// (docs/BENCHMARKS.md).
    fn default() -> Self {
        FlushPolicy { bytes: 64 << 20, commits: 4096 }
    }
}

/// Commits not yet written to redb. Persistent maps: a read view clones it in O(1).
#[derive(Clone)]
struct Layer {
    /// `None` is a delete.
    data: OrdMap<MapKey, Option<Bytes>>,
    /// Every key of `data` (and of later commits to the layer: a view's clone only sees a
    /// superset). Most lookups are of keys no layer holds, and the filter answers those without
    /// a descent of the map (its lookups were 5 % of the nodes' CPU at `-c 50`).
    keys: Arc<KeyFilter>,
    meta: Arc<BTreeMap<String, Vec<u8>>>,
    bytes: usize,
    commits: usize,
}

/// Keys a layer's filter is sized for: at `-c 50` a 4096-commit layer holds about 50k keys, a
/// 64 MiB layer of `-P 16` SETs about 200k; a layer with more only answers with more false
/// positives. 384 KiB.
const LAYER_FILTER_KEYS: u64 = 1 << 18;

impl Default for Layer {
    fn default() -> Self {
        Layer {
            data: OrdMap::new(),
            keys: Arc::new(KeyFilter::with_capacity(LAYER_FILTER_KEYS)),
            meta: Arc::default(),
            bytes: 0,
            commits: 0,
        }
    }
}

impl Layer {
    /// The layer's entry for `key`: `Some(None)` is a delete, `None` not held.
    fn get(&self, key: &[u8], hash: KeyHash) -> Option<Option<&[u8]>> {
        if !self.keys.may_contain(hash) {
            return None;
        }
        self.data.get(key).map(Option::as_deref)
    }
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
    /// The filters of redb's keys.
    filters: RedbFilters,
}

/// The filters of the keys redb may hold (see the module docs).
#[derive(Default)]
struct RedbFilters {
    /// The one read views trust; `None` until one is built.
    trusted: Option<Arc<KeyFilter>>,
    /// One being built: commits add their keys to it too. Replaced (and so abandoned) when a
    /// snapshot is restored during the build.
    building: Option<Arc<KeyFilter>>,
}

impl RedbFilters {
    /// Adds a key that may reach redb to both: before any view can see it.
    fn insert(&self, hash: KeyHash) {
        for filter in self.trusted.iter().chain(&self.building) {
            filter.insert(hash);
        }
    }

    /// Whether `filter` is the build in progress (not replaced by a newer one).
    fn is_building(&self, filter: &Arc<KeyFilter>) -> bool {
        self.building.as_ref().is_some_and(|b| Arc::ptr_eq(b, filter))
    }
}

impl Layers {
    /// A view of the state as of now: these layers over a redb read transaction, taken together
    /// under the lock so that the three make one state.
    fn view(&self, inner: &RedbStore, filter: Option<Arc<KeyFilter>>) -> Result<LayeredView, StorageError> {
        Ok(LayeredView { active: self.active.clone(), frozen: self.frozen.clone(), inner: inner.read()?, filter })
    }
}

/// The smallest filter built: 1M keys, 1.5 MiB, so a small keyspace never waits for a rebuild.
/// Each build sizes the filter for twice the keys there are, so as the keyspace grows the builds'
/// scans add up to about twice the final keys.
const FILTER_CAPACITY_MIN: u64 = 1 << 20;

struct Shared {
    inner: RedbStore,
    /// The smallest filter built ([`FILTER_CAPACITY_MIN`]; tests set less).
    filter_capacity_min: u64,
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

/// Builds a filter of every key in the state (redb and the layers) and, unless a newer build
/// replaced it meanwhile, makes read views trust it. Runs on a thread of its own; on an error the
/// views keep going to redb (slower, never wrong).
fn build_filter(shared: &Shared) {
    // The scan reads every key: after a restart it would compete with the log replay for the
    // CPU, so it runs at the lowest priority and takes what the node leaves.
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::debug!("key filter builder keeps its priority: {e}");
    }
    let started = std::time::Instant::now();
    let (filter, view) = {
        let mut layers = shared.lock();
        if layers.closed {
            return;
        }
        let held = layers.active.data.len() + layers.frozen.as_ref().map_or(0, |f| f.data.len());
        let keys = match shared.inner.data_len() {
            Ok(n) => n + held as u64,
            Err(e) => return tracing::warn!("key filter not built: {e}"),
        };
        // Twice the keys there are, so a growing keyspace can double before the next build.
        let filter = Arc::new(KeyFilter::with_capacity(keys.saturating_mul(2).max(shared.filter_capacity_min)));
        layers.filters.building = Some(filter.clone());
        match layers.view(&shared.inner, None) {
            Ok(view) => (filter, view),
            Err(e) => {
                layers.filters.building = None;
                return tracing::warn!("key filter not built: {e}");
            }
        }
    };
    // Stop early when the store closes or a newer build replaces this one (checked now and then:
    // the lock is the applier's too).
    let abandoned = || {
        let layers = shared.lock();
        layers.closed || !layers.filters.is_building(&filter)
    };
    let mut seen = 0u64;
    let mut stopped = false;
    let scanned = view.scan(Bound::Unbounded, Bound::Unbounded, &mut |key, _| {
        filter.insert(KeyHash::of(key));
        seen += 1;
        stopped = seen.is_multiple_of(1 << 14) && abandoned();
        if stopped { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    });
    drop(view);
    let mut layers = shared.lock();
    if !layers.filters.is_building(&filter) {
        return;
    }
    layers.filters.building = None;
    match scanned {
        Ok(()) if !stopped => {
            let ms = started.elapsed().as_millis();
            tracing::info!(keys = seen, bytes = filter.memory(), ms, "key filter built");
            layers.filters.trusted = Some(filter);
        }
        Ok(()) => {}
        Err(e) => tracing::warn!("key filter not built: {e}"),
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
    flusher: Option<JoinHandle<()>>,
    /// Key filter builds not known to have ended (see [`build_filter`]): a replaced build may
    /// still be winding down, and dropping the store waits for them all, so that nothing holds
    /// the redb file once it is gone.
    filter_builders: Mutex<Vec<JoinHandle<()>>>,
}

impl WriteBackStore {
    /// Wraps `inner`, flushing by `policy` on a thread of its own.
    pub fn new(inner: RedbStore, policy: FlushPolicy) -> Result<Self, StorageError> {
        Self::with_filter_capacity_min(inner, policy, FILTER_CAPACITY_MIN)
    }

    fn with_filter_capacity_min(
        inner: RedbStore,
        policy: FlushPolicy,
        filter_capacity_min: u64,
    ) -> Result<Self, StorageError> {
        let shared = Arc::new(Shared { inner, filter_capacity_min, layers: Mutex::default(), changed: Condvar::new() });
        let for_thread = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("state-flusher".into())
            .spawn(move || flusher(&for_thread))
            .map_err(StorageError::Io)?;
        let store = WriteBackStore {
            shared,
            writer: Mutex::default(),
            policy,
            flusher: Some(flusher),
            filter_builders: Mutex::default(),
        };
        store.start_filter_build()?;
        Ok(store)
    }

    /// Starts a key filter build on a thread of its own; an earlier one still running is left to
    /// notice that it was replaced.
    fn start_filter_build(&self) -> Result<(), StorageError> {
        let shared = self.shared.clone();
        let builder = std::thread::Builder::new()
            .name("key-filter".into())
            .spawn(move || build_filter(&shared))
            .map_err(StorageError::Io)?;
        let mut builders = self.filter_builders.lock().unwrap_or_else(|p| p.into_inner());
        builders.retain(|b| !b.is_finished());
        builders.push(builder);
        Ok(())
    }

    /// [`WriteBackStore::start_filter_build`] where failing to start one must not fail the caller:
    /// without a filter, lookups go to redb.
    fn start_filter_build_or_warn(&self) {
        if let Err(e) = self.start_filter_build() {
            tracing::warn!("key filter build not started: {e}");
        }
    }

    /// Waits for the key filter builds to end (tests: a filter to trust).
    #[cfg(test)]
    fn wait_filter_built(&self) {
        for builder in self.filter_builders.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = builder.join();
        }
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
        for builder in self.filter_builders.get_mut().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = builder.join();
        }
    }
}

/// A redb read view with the layers as of the same moment on top (the active one over the
/// frozen one).
struct LayeredView {
    active: Layer,
    frozen: Option<Layer>,
    inner: Box<dyn ReadView>,
    /// The keys `inner` may hold (see the module docs); `None`: ask `inner`.
    filter: Option<Arc<KeyFilter>>,
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
        let hash = KeyHash::of(key);
        let upper = self.active.get(key, hash).or_else(|| self.frozen.as_ref().and_then(|f| f.get(key, hash)));
        match upper {
            Some(Some(value)) => {
                found(value);
                Ok(true)
            }
            Some(None) => Ok(false),
            None if self.filter.as_ref().is_some_and(|f| !f.may_contain(hash)) => Ok(false),
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
        Ok(Box::new(layers.view(&self.shared.inner, layers.filters.trusted.clone())?))
    }

    fn commit(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if batch.clear_data {
            // Rare (a `FLUSHDB`): everything before it goes to redb first, then the batch is one
            // redb transaction of its own, so no layer holds entries from before the clear. Its
            // keys go into the filters first (the old keys stay, as false positives).
            self.shared.flush_all()?;
            let layers = self.shared.lock();
            for (key, _) in batch.data.iter().filter(|(_, value)| value.is_some()) {
                layers.filters.insert(KeyHash::of(key));
            }
            drop(layers);
            return self.shared.inner.commit(batch);
        }
        let mut layers = self.shared.lock();
        if let Some(why) = &layers.failed {
            return Err(flush_failed(why));
        }
        // Keys go into the filters before they are visible to any view: a view must never trust
        // a filter that lacks a key its layers or its redb snapshot hold (layer entries reach
        // redb). Deletes go into the layer's filter: a tombstone must be found.
        let held = &mut *layers;
        let layer = &mut held.active;
        for (key, value) in &batch.data {
            let hash = KeyHash::of(key);
            if value.is_some() {
                held.filters.insert(hash);
            }
            layer.keys.insert(hash);
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
        let rebuild = held.filters.building.is_none() && held.filters.trusted.as_ref().is_some_and(|f| f.overfull());
        let full = layer.bytes >= self.policy.bytes || layer.commits >= self.policy.commits;
        // Frozen for the flusher when full and it is idle; while it is busy the active layer
        // keeps growing, up to four times the policy, where commits wait for it (backpressure).
        let overfull = layer.bytes >= self.policy.bytes.saturating_mul(4);
        if full && (layers.frozen.is_none() || overfull) {
            drop(self.shared.freeze(layers)?);
        } else {
            drop(layers);
        }
        if rebuild {
            self.start_filter_build_or_warn();
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
        // redb's keys are about to change wholesale: views taken from now on go to redb for
        // every key the layers do not hold, until a filter of the restored state is built.
        {
            let mut layers = self.shared.lock();
            layers.filters = RedbFilters::default();
        }
        let restored = self.shared.inner.restore(source, required);
        self.start_filter_build_or_warn();
        restored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&str>)]) -> Layer {
        let mut layer = Layer::default();
        for (k, v) in entries {
            layer.keys.insert(KeyHash::of(k.as_bytes()));
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
            filter: None,
        };
        assert_eq!(walk(&view, Bound::Unbounded, false), ["a=1", "b=new", "c=3", "d=-", "e=5"]);
        assert_eq!(walk(&view, Bound::Unbounded, true), ["e=5", "d=-", "c=3", "b=new", "a=1"]);
        assert_eq!(walk(&view, Bound::Included(b"b"), false), ["b=new", "c=3", "d=-", "e=5"]);
        let no_frozen = LayeredView { frozen: None, ..view };
        assert_eq!(walk(&no_frozen, Bound::Unbounded, true), ["e=5", "d=-", "b=new"]);
    }

    fn put(store: &WriteBackStore, keys: std::ops::Range<u32>) {
        let mut batch = WriteBatch::default();
        for i in keys {
            batch.put(format!("key:{i}").as_bytes(), format!("value:{i}").as_bytes());
        }
        store.commit(&batch).expect("commit");
    }

    fn present(store: &WriteBackStore, keys: std::ops::Range<u32>) -> usize {
        let view = store.read().expect("view");
        keys.filter(|i| view.get(format!("key:{i}").as_bytes(), &mut |_| {}).expect("get")).count()
    }

    /// A lookup trusts the key filter only where the filter holds every key redb holds: keys from
    /// before the store opened (found by the build's scan), keys committed while it was built or
    /// after, keys written by a clear, and a restored snapshot's keys (a new build).
    #[test]
    fn the_key_filter_never_hides_a_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.redb");
        let small = FlushPolicy { bytes: 1 << 20, commits: 2 };
        {
            let store = WriteBackStore::new(RedbStore::open(&path, false).expect("open"), small).expect("store");
            put(&store, 0..5000);
            store.sync().expect("sync");
        }
        let store = WriteBackStore::new(RedbStore::open(&path, false).expect("open"), small).expect("store");
        put(&store, 5000..6000);
        store.wait_filter_built();
        assert!(store.shared.lock().filters.trusted.is_some(), "a filter was built");
        put(&store, 6000..7000);
        for _ in 0..4 {
            put(&store, 7000..7001); // flushes everything to redb
        }
        assert_eq!(present(&store, 0..7001), 7001);
        assert_eq!(present(&store, 10_000..20_000), 0);
        // Deletes wait in the active layer over values in redb: the layer's filter finds them.
        let mut deletes = WriteBatch::default();
        for i in 0..100 {
            deletes.delete(format!("key:{i}").as_bytes());
        }
        store.commit(&deletes).expect("deletes");
        assert_eq!(present(&store, 0..100), 0);
        assert_eq!(present(&store, 100..7001), 6901);
        let mut clear = WriteBatch { clear_data: true, ..WriteBatch::default() };
        clear.put(b"key:20000", b"after the clear");
        store.commit(&clear).expect("clear");
        assert_eq!(present(&store, 0..7001), 0);
        assert_eq!(present(&store, 20_000..20_001), 1);

        let other = dir.path().join("other.redb");
        let source = WriteBackStore::new(RedbStore::open(&other, false).expect("open"), small).expect("store");
        put(&source, 30_000..31_000);
        let chunks: Vec<Vec<u8>> = super::super::snapshot::SnapshotChunks::new(source.read().expect("view"), 1 << 16)
            .collect::<Result<_, _>>()
            .expect("snapshot");
        store.restore(&mut &chunks.concat()[..], &[]).expect("restore");
        assert_eq!(present(&store, 30_000..31_000), 1000, "before the new filter is built");
        store.wait_filter_built();
        assert!(store.shared.lock().filters.trusted.is_some(), "a filter of the restored state");
        assert_eq!(present(&store, 30_000..31_000), 1000);
        assert_eq!(present(&store, 20_000..20_001), 0);
    }

    /// Once more keys went in than the filter was sized for, a new one is built: lookups of
    /// absent keys stay cheap as the keyspace grows, and every key is still found.
    #[test]
    fn an_overfull_key_filter_is_built_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = RedbStore::open(&dir.path().join("s.redb"), false).expect("open");
        let store = WriteBackStore::with_filter_capacity_min(inner, FlushPolicy::default(), 1000).expect("store");
        store.wait_filter_built();
        let first = store.shared.lock().filters.trusted.clone().expect("built at open");
        let past_capacity = 1100;
        for start in (0..past_capacity).step_by(100) {
            put(&store, start..start + 100);
        }
        store.wait_filter_built();
        let second = store.shared.lock().filters.trusted.clone().expect("built again");
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(!second.overfull());
        assert_eq!(present(&store, 0..past_capacity), past_capacity as usize);
    }
}
