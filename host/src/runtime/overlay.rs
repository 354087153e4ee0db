//! The write overlay of one apply batch: every write of the batch's commands, on top of a read
//! view of the committed state, with an undo log for the command running now.
//!
//! This is what makes an apply transactional. A command's writes land in the overlay at once (so
//! its own later reads see them) and are recorded in the undo log; when the command ends well the
//! undo log is dropped, and when it ends in an error, a trap or out-of-fuel the undo log restores
//! the overlay exactly. At the end of the batch the overlay is the [`WriteBatch`] committed in one
//! store transaction.

use crate::storage::{ReadView, StorageError, Visit, WriteBatch, merge_scan};
use std::ops::Bound;
#[cfg(test)]
use std::ops::ControlFlow;

/// Pending writes of a batch plus the undo log of the current command.
#[derive(Default)]
pub(crate) struct Overlay {
    /// `Some(value)` for a put, `None` for a delete (a tombstone hiding the committed value).
    /// With `batch.clear_data` set, the committed state is hidden altogether: only `batch.data`
    /// exists.
    pub(crate) batch: WriteBatch,
    /// The current command's changes, in order.
    undo: Vec<Undo>,
    /// The keys of `undo`, end to end: one growing buffer instead of an allocation per write.
    undo_keys: Vec<u8>,
}

/// How to take back one change.
enum Undo {
    /// A write: where its key sits in `undo_keys`, and the key's overlay entry before the write
    /// (`None` when the key was not in the overlay).
    Write(std::ops::Range<usize>, Option<Option<Vec<u8>>>),
    /// A clear: the overlay's entries and clear flag before it.
    Clear(std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>, bool),
}

/// What the overlay knows about a key.
pub(crate) enum Lookup<'a> {
    /// Written in this batch.
    Value(&'a [u8]),
    /// Deleted in this batch.
    Deleted,
    /// Not touched: ask the committed state.
    Unknown,
}

impl Overlay {
    pub(crate) fn lookup(&self, key: &[u8]) -> Lookup<'_> {
        match self.batch.data.get(key) {
            Some(Some(v)) => Lookup::Value(v),
            Some(None) => Lookup::Deleted,
            None if self.batch.clear_data => Lookup::Deleted,
            None => Lookup::Unknown,
        }
    }

    /// Removes every key: the committed state is hidden from here on, and the batch commits as
    /// "clear, then these writes". Constant work, whatever the state's size.
    pub(crate) fn clear_all(&mut self) {
        let before = std::mem::take(&mut self.batch.data);
        self.undo.push(Undo::Clear(before, self.batch.clear_data));
        self.batch.clear_data = true;
    }

    /// Sets `key` to `value` (`None` deletes), records how to undo it, and returns whether the
    /// key had a value before: in the overlay, or else in the committed state `view`.
    pub(crate) fn write(
        &mut self,
        view: &dyn ReadView,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<bool, StorageError> {
        let (existed, before) = match self.batch.data.get_mut(key) {
            Some(slot) => (slot.is_some(), Some(std::mem::replace(slot, value.map(<[u8]>::to_vec)))),
            None => {
                let existed = !self.batch.clear_data && view.get(key, &mut |_| {})?;
                if !existed && value.is_none() {
                    // Deleting what is not there changes nothing.
                    return Ok(false);
                }
                self.batch.data.insert(key.to_vec(), value.map(<[u8]>::to_vec));
                (existed, None)
            }
        };
        let start = self.undo_keys.len();
        self.undo_keys.extend_from_slice(key);
        self.undo.push(Undo::Write(start..self.undo_keys.len(), before));
        Ok(existed)
    }

    /// The current command succeeded: keep its writes.
    pub(crate) fn keep_command(&mut self) {
        self.undo.clear();
        self.undo_keys.clear();
    }

    /// The current command failed: restore the overlay to what it was before the command.
    pub(crate) fn undo_command(&mut self) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Write(range, Some(value)) => {
                    if let Some(slot) = self.batch.data.get_mut(&self.undo_keys[range]) {
                        *slot = value;
                    }
                }
                Undo::Write(range, None) => {
                    self.batch.data.remove(&self.undo_keys[range]);
                }
                Undo::Clear(data, cleared) => {
                    self.batch.data = data;
                    self.batch.clear_data = cleared;
                }
            }
        }
        self.undo_keys.clear();
    }

    /// Drops everything (the batch was abandoned after a storage failure).
    pub(crate) fn clear(&mut self) {
        self.batch.clear();
        self.keep_command();
    }

    /// Visits the merged view (overlay over `view`) of keys in `[start, end)`, in ascending key
    /// order (descending when `reverse`), skipping deleted keys, until `visit` breaks.
    pub(crate) fn scan(
        &self,
        view: &dyn ReadView,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<(), StorageError> {
        let (lower, upper) = (Bound::Included(start), end.map_or(Bound::Unbounded, Bound::Excluded));
        let pending = self.batch.data.range::<[u8], _>((lower, upper));
        let pending: Box<dyn Iterator<Item = _>> = if reverse { Box::new(pending.rev()) } else { Box::new(pending) };
        let pending = pending.map(|(k, v)| (k.as_slice(), v.as_deref()));
        let cleared = self.batch.clear_data;
        merge_scan(
            |visit| match (cleared, reverse) {
                (true, _) => Ok(()),
                (false, false) => view.scan(lower, upper, visit),
                (false, true) => view.scan_rev(lower, upper, visit),
            },
            pending,
            reverse,
            visit,
        )
    }
}

/// Shorthand used by tests: the merged entries as owned pairs, in ascending order (and checked
/// to be the same, reversed, when scanned in descending order).
#[cfg(test)]
fn collect(overlay: &Overlay, view: &dyn ReadView, start: &[u8], end: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut backwards = Vec::new();
    overlay
        .scan(view, start, end, true, &mut |k, v| {
            backwards.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        })
        .expect("memory scan");
    backwards.reverse();
    let mut out = Vec::new();
    overlay
        .scan(view, start, end, false, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        })
        .expect("memory scan");
    assert_eq!(out, backwards, "a descending scan visits the same entries in reverse");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryStore, Store};

    fn store_with(entries: &[(&str, &str)]) -> MemoryStore {
        let store = MemoryStore::new();
        let mut batch = WriteBatch::default();
        for (k, v) in entries {
            batch.put(k.as_bytes(), v.as_bytes());
        }
        store.commit(&batch).expect("commit");
        store
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        v.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn scan_merges_overlay_over_committed_state() {
        let store = store_with(&[("a", "1"), ("c", "3"), ("e", "5")]);
        let view = store.read().expect("view");
        let mut o = Overlay::default();
        assert!(!o.write(&*view, b"b", Some(b"2")).expect("write"));
        assert!(o.write(&*view, b"c", Some(b"33")).expect("write"), "c is committed");
        assert!(o.write(&*view, b"e", None).expect("write"), "e is committed");
        assert!(!o.write(&*view, b"f", Some(b"6")).expect("write"));
        assert!(!o.write(&*view, b"e", None).expect("write"), "e is deleted in the overlay");
        assert_eq!(collect(&o, &*view, b"", None), pairs(&[("a", "1"), ("b", "2"), ("c", "33"), ("f", "6")]));
        assert_eq!(collect(&o, &*view, b"b", Some(b"e")), pairs(&[("b", "2"), ("c", "33")]));
    }

    #[test]
    fn scan_stops_when_the_visitor_breaks() {
        let store = store_with(&[("a", "1"), ("c", "3")]);
        let view = store.read().expect("view");
        let mut o = Overlay::default();
        o.write(&*view, b"b", Some(b"2")).expect("write");
        let mut seen = Vec::new();
        o.scan(&*view, b"", None, false, &mut |k, _| {
            seen.push(k.to_vec());
            if seen.len() == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .expect("scan");
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn undo_restores_the_overlay_exactly() {
        let store = store_with(&[]);
        let view = store.read().expect("view");
        let mut o = Overlay::default();
        o.write(&*view, b"k", Some(b"v1")).expect("write");
        o.keep_command();
        assert!(o.write(&*view, b"k", Some(b"v2")).expect("write"));
        assert!(o.write(&*view, b"k", None).expect("write"));
        assert!(!o.write(&*view, b"new", Some(b"x")).expect("write"));
        o.undo_command();
        assert!(matches!(o.lookup(b"k"), Lookup::Value(b"v1")));
        assert!(matches!(o.lookup(b"new"), Lookup::Unknown));
    }

    #[test]
    fn clear_hides_the_committed_state_and_undo_brings_it_back() {
        let store = store_with(&[("a", "1"), ("c", "3")]);
        let view = store.read().expect("view");
        let mut o = Overlay::default();
        o.write(&*view, b"b", Some(b"2")).expect("write");
        o.keep_command();
        o.write(&*view, b"d", Some(b"4")).expect("write");
        o.clear_all();
        assert!(matches!(o.lookup(b"a"), Lookup::Deleted), "committed keys are gone");
        assert!(matches!(o.lookup(b"b"), Lookup::Deleted), "so are the batch's earlier writes");
        assert!(!o.write(&*view, b"a", Some(b"new")).expect("write"), "a is not there after the clear");
        assert_eq!(collect(&o, &*view, b"", None), pairs(&[("a", "new")]));
        o.undo_command();
        assert!(!o.batch.clear_data);
        assert_eq!(collect(&o, &*view, b"", None), pairs(&[("a", "1"), ("b", "2"), ("c", "3")]));
        o.clear_all();
        o.keep_command();
        assert!(o.batch.clear_data && o.batch.data.is_empty(), "a kept clear commits as one flag");
    }

    #[test]
    fn a_descending_scan_stops_when_the_visitor_breaks() {
        let store = store_with(&[("a", "1"), ("c", "3"), ("e", "5")]);
        let view = store.read().expect("view");
        let mut o = Overlay::default();
        o.write(&*view, b"d", Some(b"4")).expect("write");
        o.write(&*view, b"e", None).expect("write");
        let mut seen = Vec::new();
        o.scan(&*view, b"b", None, true, &mut |k, _| {
            seen.push(k.to_vec());
            if seen.len() == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .expect("scan");
        assert_eq!(seen, vec![b"d".to_vec(), b"c".to_vec()]);
    }
}
