//! The write overlay of one apply batch: every write of the batch's commands, on top of a read
//! view of the committed state, with an undo log for the command running now.
//!
//! This is what makes an apply transactional. A command's writes land in the overlay at once (so
//! its own later reads see them) and are recorded in the undo log; when the command ends well the
//! undo log is dropped, and when it ends in an error, a trap or out-of-fuel the undo log restores
//! the overlay exactly. At the end of the batch the overlay is the [`WriteBatch`] committed in one
//! store transaction.

use crate::storage::{ReadView, StorageError, Visit, WriteBatch};
use std::collections::btree_map;
use std::iter::Peekable;
use std::ops::{Bound, ControlFlow};

/// Pending writes of a batch plus the undo log of the current command.
#[derive(Default)]
pub(crate) struct Overlay {
    /// `Some(value)` for a put, `None` for a delete (a tombstone hiding the committed value).
    pub(crate) batch: WriteBatch,
    /// The current command's writes, in order.
    undo: Vec<Undo>,
    /// The keys of `undo`, end to end: one growing buffer instead of an allocation per write.
    undo_keys: Vec<u8>,
}

/// How to take back one write: where its key sits in `undo_keys`, and the key's overlay entry
/// before the write (`None` when the key was not in the overlay).
type Undo = (std::ops::Range<usize>, Option<Option<Vec<u8>>>);

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
            None => Lookup::Unknown,
        }
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
                let existed = view.get(key, &mut |_| {})?;
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
        self.undo.push((start..self.undo_keys.len(), before));
        Ok(existed)
    }

    /// The current command succeeded: keep its writes.
    pub(crate) fn keep_command(&mut self) {
        self.undo.clear();
        self.undo_keys.clear();
    }

    /// The current command failed: restore the overlay to what it was before the command.
    pub(crate) fn undo_command(&mut self) {
        while let Some((range, before)) = self.undo.pop() {
            let key = &self.undo_keys[range];
            match before {
                Some(value) => {
                    if let Some(slot) = self.batch.data.get_mut(key) {
                        *slot = value;
                    }
                }
                None => {
                    self.batch.data.remove(key);
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

    /// Visits the merged view (overlay over `view`) of keys in `[start, end)` in order, skipping
    /// deleted keys, until `visit` breaks.
    pub(crate) fn scan(
        &self,
        view: &dyn ReadView,
        start: &[u8],
        end: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StorageError> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut pending = self.batch.data.range::<[u8], _>((Bound::Included(start), upper)).peekable();
        let mut stopped = false;
        view.scan(Bound::Included(start), upper, &mut |k, v| {
            if drain_before(&mut pending, Some(k), visit).is_break() {
                stopped = true;
                return ControlFlow::Break(());
            }
            let flow = match pending.peek() {
                // The overlay has this key: its version wins (or hides it, if deleted).
                Some((pk, pv)) if pk.as_slice() == k => {
                    let flow = match pv {
                        Some(pv) => visit(k, pv),
                        None => ControlFlow::Continue(()),
                    };
                    pending.next();
                    flow
                }
                _ => visit(k, v),
            };
            if flow.is_break() {
                stopped = true;
            }
            flow
        })?;
        if !stopped {
            let _ = drain_before(&mut pending, None, visit);
        }
        Ok(())
    }
}

type Pending<'a> = Peekable<btree_map::Range<'a, Vec<u8>, Option<Vec<u8>>>>;

/// Emits the overlay entries ordered before `key` (all of them when `key` is `None`), skipping
/// tombstones; breaks as soon as the visitor does.
fn drain_before(pending: &mut Pending<'_>, key: Option<&[u8]>, visit: Visit<'_>) -> ControlFlow<()> {
    while let Some((k, v)) = pending.peek() {
        if key.is_some_and(|key| k.as_slice() >= key) {
            break;
        }
        if let Some(v) = v {
            visit(k, v)?;
        }
        pending.next();
    }
    ControlFlow::Continue(())
}

/// Shorthand used by tests: the merged entries as owned pairs.
#[cfg(test)]
fn collect(overlay: &Overlay, view: &dyn ReadView, start: &[u8], end: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    overlay
        .scan(view, start, end, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        })
        .expect("memory scan");
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
        o.scan(&*view, b"", None, &mut |k, _| {
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
}
