//! The memory backend: the state in a persistent (structurally shared) ordered map.
//!
//! A read view is a clone of the map, which costs O(1) and shares every node; a commit after that
//! copies only the paths it touches. So snapshots are consistent and cheap while writes go on,
//! just as with redb's read transactions. Nothing survives the process.

use super::map_key::MapKey;
use super::snapshot::{self, SnapshotInfo};
use super::{ReadView, StorageError, Store, Visit, WriteBatch};
use imbl::OrdMap;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

type Bytes = Arc<[u8]>;

#[derive(Clone, Default)]
struct State {
    data: OrdMap<MapKey, Bytes>,
    meta: Arc<BTreeMap<String, Vec<u8>>>,
}

/// The in-memory store. See the module docs.
#[derive(Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn current(&self) -> State {
        // A poisoned lock means a panic during a commit; no code in a commit panics on valid
        // input (map inserts and removes), so take the state as it stands.
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, state: State) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
    }
}

/// Drops `value` on a short-lived thread of its own (in place, if no thread can be started).
fn drop_elsewhere<T: Send + 'static>(value: T) {
    if let Err(e) = std::thread::Builder::new().name("state-dropper".into()).spawn(move || drop(value)) {
        tracing::debug!("dropped cleared state in place: {e}");
    }
}

struct MemoryView(State);

impl ReadView for MemoryView {
    fn get(&self, key: &[u8], found: &mut dyn FnMut(&[u8])) -> Result<bool, StorageError> {
        Ok(self.0.data.get(key).map(|v| found(v)).is_some())
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, visit: Visit<'_>) -> Result<(), StorageError> {
        for (k, v) in self.0.data.range::<_, [u8]>((start, end)) {
            if visit(k.as_slice(), v).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn scan_rev(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, visit: Visit<'_>) -> Result<(), StorageError> {
        for (k, v) in self.0.data.range::<_, [u8]>((start, end)).rev() {
            if visit(k.as_slice(), v).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn meta(&self) -> Result<BTreeMap<String, Vec<u8>>, StorageError> {
        Ok((*self.0.meta).clone())
    }
}

impl Store for MemoryStore {
    fn read(&self) -> Result<Box<dyn ReadView>, StorageError> {
        Ok(Box::new(MemoryView(self.current())))
    }

    fn commit(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        if batch.clear_data {
            let old = std::mem::take(&mut state.data);
            // Freeing every node of a large map takes a while: not on the applier's time. (A read
            // view may share the nodes; they are freed when the last holder lets go.)
            drop_elsewhere(old);
        }
        for (key, value) in &batch.data {
            match value {
                Some(v) => {
                    state.data.insert(MapKey::new(key), Bytes::from(v.as_slice()));
                }
                None => {
                    state.data.remove(key.as_slice());
                }
            }
        }
        if !batch.meta.is_empty() {
            let meta = Arc::make_mut(&mut state.meta);
            for (name, value) in &batch.meta {
                meta.insert(name.clone(), value.clone());
            }
        }
        Ok(())
    }

    fn restore(
        &self,
        source: &mut dyn std::io::Read,
        required: &[(&str, &[u8])],
    ) -> Result<SnapshotInfo, StorageError> {
        let mut next = State::default();
        let info = snapshot::read(source, required, &mut |entry| {
            match entry {
                snapshot::Entry::Meta(name, value) => {
                    Arc::make_mut(&mut next.meta).insert(name, value);
                }
                snapshot::Entry::Data(key, value) => {
                    next.data.insert(MapKey::new(&key), Bytes::from(value));
                }
            }
            Ok(())
        })?;
        // Only a complete, verified stream replaces the state.
        self.replace(next);
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::map_key::INLINE_KEY_BYTES;

    /// Keys held inline and keys held apart sort together by their bytes, whatever their length.
    #[test]
    fn short_and_long_keys_sort_and_scan_by_their_bytes() {
        let store = MemoryStore::new();
        let long = |fill: u8, len: usize| vec![fill; len];
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            b"a".to_vec(),
            long(b'a', INLINE_KEY_BYTES),
            long(b'a', INLINE_KEY_BYTES + 1),
            long(b'a', 300),
            long(b'b', INLINE_KEY_BYTES - 1),
            long(b'b', INLINE_KEY_BYTES + 5),
            b"c".to_vec(),
        ];
        let mut batch = WriteBatch::default();
        for (i, key) in keys.iter().enumerate().rev() {
            batch.data.insert(key.clone(), Some(vec![i as u8]));
        }
        store.commit(&batch).expect("commit");
        let view = store.read().expect("view");
        let mut forward = Vec::new();
        view.scan(Bound::Unbounded, Bound::Unbounded, &mut |k, v| {
            forward.push((k.to_vec(), v.to_vec()));
            std::ops::ControlFlow::Continue(())
        })
        .expect("scan");
        let expected: Vec<(Vec<u8>, Vec<u8>)> =
            keys.iter().enumerate().map(|(i, k)| (k.clone(), vec![i as u8])).collect();
        assert_eq!(forward, expected);
        let mut backward = Vec::new();
        let (from, to) = (long(b'a', INLINE_KEY_BYTES), long(b'b', INLINE_KEY_BYTES + 5));
        view.scan_rev(Bound::Included(&from), Bound::Excluded(&to), &mut |k, _| {
            backward.push(k.to_vec());
            std::ops::ControlFlow::Continue(())
        })
        .expect("scan");
        assert_eq!(backward, vec![keys[5].clone(), keys[4].clone(), keys[3].clone(), keys[2].clone()]);
        for (i, key) in keys.iter().enumerate() {
            let mut got = None;
            assert!(view.get(key, &mut |v| got = Some(v.to_vec())).expect("get"), "key of {} bytes", key.len());
            assert_eq!(got, Some(vec![i as u8]));
        }
        assert!(!view.get(&long(b'a', INLINE_KEY_BYTES - 1), &mut |_| {}).expect("get"));
    }
}
