//! The Raft log on disk: append-only segment files, one positioned write and one `fdatasync`
//! per append.
//!
//! Why not a B-tree (the log lived in redb before): a redb commit copies the touched leaf, its
//! branches, the root and the allocator's pages, and writes them all (eight 4 KiB pages per
//! append, measured with strace) before its fsync; a node spent more CPU on its log than on
//! anything else, and three nodes on one disk waited on those fsyncs. A Raft log is appended at
//! one end, cut at the other (purge) and rarely rewound (truncate): a sequence of files does
//! exactly that, as etcd's WAL and most Raft logs do.
//!
//! **Layout.** `raft-log/<first index, 20 digits>.wal`, each a sequence of records:
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of (kind, payload) | u8 kind | payload
//! ```
//!
//! `kind` 1 is an entry (its payload the postcard-encoded [`Entry`], whose leading log id is read
//! on its own at open); `kind` 2 is the committed-index hint openraft saves (a postcard
//! [`LogId`]), written in front of the next append's entries instead of costing a write of its
//! own. A new segment starts once the current one passes [`SEGMENT_BYTES`].
//!
//! **Zeros ahead of the end.** An append that would pass the segment file's end (and is no
//! larger than [`ZERO_AHEAD_APPEND_MAX`]) also writes [`ZERO_AHEAD_BYTES`] of zeros after its
//! records, so the next appends overwrite blocks the file already has: their `fdatasync` then
//! writes data only, with no change of file size for the file system's journal to commit (on
//! this machine's ext4, 4 KiB overwrites with `O_DSYNC` ran at 7.7k/s against 4.0k/s for appends
//! that grow the file). The records end at the first header of nine zero bytes (never a record:
//! a record's kind is 1 or 2), and everything after it is zeros.
//!
//! **Crash recovery.** At open every segment is read and checked. A record cut short or failing
//! its CRC at the end of the *last* segment, or anything but zeros after its records, is a write
//! that a crash interrupted: it was never acknowledged (the append's fsync had not returned), so
//! the file is cut back to the last whole record (bytes of such a write left past a zero header
//! must go too, or a later, shorter append would leave them readable after its own records).
//! Anywhere else it is corruption, and the node refuses to start rather than serve a log with a
//! hole.
//!
//! **Reads** are served from a tail cache of the newest entries (replication and apply read
//! entries just appended; see [`TAIL_CACHE_BYTES`]), otherwise read back from their segment.
//!
//! What this file does not do: the vote, the purge point and the cluster id (they live in the
//! log store's small meta database, rarely written), or anything async.

use super::{NodeId, TypeConfig, decode};
use openraft::{Entry, LogId};
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A segment past this size gets no more appends: the next one starts a new file. Purges
/// delete whole segments, so this is also the granularity of the disk space a purge frees.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// The newest entries kept decoded in memory, by encoded size. Replication and apply read
/// entries within moments of their append; a follower far behind reads older ones from disk.
pub const TAIL_CACHE_BYTES: usize = 64 << 20;
/// How far past an append's records the segment file is extended with zeros when the append
/// passes the file's end (see the module docs): one size change per this many bytes of log.
pub const ZERO_AHEAD_BYTES: usize = 1 << 20;
/// Only appends up to this size write zeros ahead. A larger one grows the file instead: its
/// sync's size change is spread over many bytes, while flushing a mebibyte of zeros with it
/// measured slower (`-P 16` entries of a few hundred KiB: 5-10 % fewer SET/s).
pub const ZERO_AHEAD_APPEND_MAX: usize = 64 << 10;
/// No record is larger (a bound on what a damaged length field can make us allocate).
const RECORD_BYTES_MAX: usize = 1 << 30;
const HEADER_BYTES: usize = 9;
const KIND_ENTRY: u8 = 1;
const KIND_COMMITTED: u8 = 2;
const SUFFIX: &str = ".wal";

/// Why the log could not be read or written. The log store turns each into openraft's
/// `StorageError`, which stops the node.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The files hold something a correct log never does (the message says what and where).
    #[error("corrupt raft log: {0}")]
    Corrupt(String),
    /// An entry could not be encoded (or is larger than a record may be).
    #[error("cannot encode a log entry: {0}")]
    Encode(String),
    /// An append that does not continue the log (openraft never sends one).
    #[error("append of index {got} does not follow the last index {last}")]
    Gap {
        /// The log's last index.
        last: u64,
        /// The first appended index.
        got: u64,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_owned(), source }
}

struct Segment {
    file: Arc<File>,
    path: PathBuf,
    /// Bytes of whole records: the next append goes here.
    len: u64,
    /// The file's size: zeros from `len` to here.
    file_len: u64,
}

/// Where one entry's payload lies.
#[derive(Clone, Copy)]
struct Location {
    log_id: LogId<NodeId>,
    /// The segment's key (its first index).
    segment: u64,
    offset: u64,
    len: u32,
}

/// The log's files and what is known about them. Not thread-safe by itself: the log store holds
/// it behind a mutex, and syncs outside it (see [`Wal::append`]).
pub struct Wal {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    /// One per entry held, contiguous by index.
    locations: VecDeque<Location>,
    /// The newest entries, contiguous, ending at the last one, with their encoded sizes.
    cache: VecDeque<(Entry<TypeConfig>, usize)>,
    cache_bytes: usize,
    /// The latest committed-index hint written or found.
    committed: Option<LogId<NodeId>>,
}

/// The file an append wrote to: sync it (outside the log's lock) before telling openraft.
pub struct Unsynced {
    file: Arc<File>,
    path: PathBuf,
    bytes: u64,
}

impl Unsynced {
    /// `fdatasync`: the appended records are on disk when this returns. Returns the bytes the
    /// append wrote.
    pub fn sync(self) -> Result<u64, WalError> {
        self.file.sync_data().map_err(io_at(&self.path))?;
        Ok(self.bytes)
    }
}

fn segment_name(first: u64) -> String {
    format!("{first:020}{SUFFIX}")
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))
}

/// Appends one record to `buf`.
fn put_record(
    buf: &mut Vec<u8>,
    kind: u8,
    payload: impl FnOnce(&mut Vec<u8>) -> Result<(), WalError>,
) -> Result<usize, WalError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_BYTES]);
    payload(buf)?;
    let len = buf.len() - start - HEADER_BYTES;
    if len > RECORD_BYTES_MAX {
        buf.truncate(start);
        return Err(WalError::Encode(format!("{len} bytes is more than a log record may hold ({RECORD_BYTES_MAX})")));
    }
    buf[start + 8] = kind;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
    Ok(len)
}

/// One record parsed from a segment's bytes.
enum Parsed<'a> {
    Record {
        kind: u8,
        payload: &'a [u8],
        next: usize,
    },
    /// Cut short, failing its CRC, or followed by more than zeros after a zero header: where the
    /// damage starts.
    Damaged,
    End,
}

fn parse_record(bytes: &[u8], at: usize) -> Parsed<'_> {
    let rest = &bytes[at..];
    if rest.iter().take(HEADER_BYTES).all(|&b| b == 0) {
        // The end of the file, or of the records before the zeros written ahead. Anything but
        // zeros after it is left from a write that never finished.
        return if rest.iter().all(|&b| b == 0) { Parsed::End } else { Parsed::Damaged };
    }
    if rest.len() < HEADER_BYTES {
        return Parsed::Damaged;
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len > RECORD_BYTES_MAX || rest.len() < HEADER_BYTES + len {
        return Parsed::Damaged;
    }
    let body = &rest[8..HEADER_BYTES + len];
    if crc32fast::hash(body) != crc {
        return Parsed::Damaged;
    }
    Parsed::Record { kind: body[0], payload: &body[1..], next: at + HEADER_BYTES + len }
}

impl Wal {
    /// Opens (or creates) the log in `dir`, recovering from an interrupted append (see the module
    /// docs). Entries at or below `purged` are dropped, and segments holding nothing else deleted:
    /// a purge recorded before its files were deleted finishes here.
    pub fn open(dir: &Path, purged: Option<u64>) -> Result<Wal, WalError> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let mut names = BTreeMap::new();
        for item in std::fs::read_dir(dir).map_err(io_at(dir))? {
            let item = item.map_err(io_at(dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let Some(first) = name.strip_suffix(SUFFIX).and_then(|n| n.parse::<u64>().ok()) else { continue };
            names.insert(first, item.path());
        }
        let mut wal = Wal {
            dir: dir.to_owned(),
            segments: BTreeMap::new(),
            locations: VecDeque::new(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            committed: None,
        };
        let last_key = names.keys().next_back().copied();
        for (key, path) in names {
            let bytes = std::fs::read(&path).map_err(io_at(&path))?;
            let mut file_len = bytes.len() as u64;
            let mut at = 0;
            let mut entries = 0;
            loop {
                match parse_record(&bytes, at) {
                    Parsed::End => break,
                    Parsed::Damaged if Some(key) == last_key => {
                        tracing::warn!(
                            "{}: the last append was cut short at byte {at} (a crash during a write that was never \
                             acknowledged); dropping its {} bytes",
                            path.display(),
                            bytes.len() - at
                        );
                        let file = OpenOptions::new().write(true).open(&path).map_err(io_at(&path))?;
                        file.set_len(at as u64).and_then(|()| file.sync_all()).map_err(io_at(&path))?;
                        file_len = at as u64;
                        break;
                    }
                    Parsed::Damaged => {
                        return Err(WalError::Corrupt(format!(
                            "{} is damaged at byte {at}, and later segments follow it",
                            path.display()
                        )));
                    }
                    Parsed::Record { kind, payload, next } => {
                        let log_id = || -> Result<LogId<NodeId>, WalError> {
                            postcard::take_from_bytes::<LogId<NodeId>>(payload)
                                .map(|(id, _)| id)
                                .map_err(|e| WalError::Corrupt(format!("{} at byte {at}: {e}", path.display())))
                        };
                        match kind {
                            KIND_ENTRY => {
                                let log_id = log_id()?;
                                if purged.is_none_or(|p| log_id.index > p) {
                                    if let Some(prev) = wal.locations.back()
                                        && prev.log_id.index + 1 != log_id.index
                                    {
                                        return Err(WalError::Corrupt(format!(
                                            "{} at byte {at}: index {} follows index {}",
                                            path.display(),
                                            log_id.index,
                                            prev.log_id.index
                                        )));
                                    }
                                    wal.locations.push_back(Location {
                                        log_id,
                                        segment: key,
                                        offset: (at + HEADER_BYTES) as u64,
                                        len: (payload.len()) as u32,
                                    });
                                    entries += 1;
                                }
                            }
                            KIND_COMMITTED => wal.committed = wal.committed.max(Some(log_id()?)),
                            other => {
                                return Err(WalError::Corrupt(format!(
                                    "{} at byte {at}: unknown record kind {other}",
                                    path.display()
                                )));
                            }
                        }
                        at = next;
                    }
                }
            }
            if entries == 0 {
                std::fs::remove_file(&path).map_err(io_at(&path))?;
                continue;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_at(&path))?;
            wal.segments.insert(key, Segment { file: Arc::new(file), path, len: at as u64, file_len });
        }
        sync_dir(dir)?;
        Ok(wal)
    }

    /// The last entry's log id, if any entry is held.
    pub fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.locations.back().map(|l| l.log_id)
    }

    /// The latest committed-index hint written or found at open.
    pub fn committed(&self) -> Option<LogId<NodeId>> {
        self.committed
    }

    fn first_index(&self) -> Option<u64> {
        self.locations.front().map(|l| l.log_id.index)
    }

    /// Writes `entries` (and `committed`, a hint, in front of them) at the end of the log, without
    /// syncing: the caller syncs the returned file, outside any lock readers need, and only then
    /// counts the entries as durable. Nothing is written for an empty `entries`.
    pub fn append(
        &mut self,
        entries: Vec<Entry<TypeConfig>>,
        committed: Option<LogId<NodeId>>,
    ) -> Result<Option<Unsynced>, WalError> {
        let Some(first) = entries.first() else { return Ok(None) };
        if let Some(last) = self.last_log_id()
            && first.log_id.index != last.index + 1
        {
            return Err(WalError::Gap { last: last.index, got: first.log_id.index });
        }
        let mut buf = Vec::new();
        if let Some(committed) = committed {
            put_record(&mut buf, KIND_COMMITTED, |b| {
                postcard::to_io(&committed, b).map(drop).map_err(|e| WalError::Encode(e.to_string()))
            })?;
        }
        let mut spans = Vec::with_capacity(entries.len());
        for entry in &entries {
            let start = buf.len();
            let len = put_record(&mut buf, KIND_ENTRY, |b| {
                postcard::to_io(entry, b).map(drop).map_err(|e| WalError::Encode(e.to_string()))
            })?;
            spans.push((start + HEADER_BYTES, len));
        }
        let key = self.segment_for(first.log_id.index)?;
        let Some(segment) = self.segments.get_mut(&key) else {
            return Err(WalError::Corrupt(format!("segment {key} vanished")));
        };
        let base = segment.len;
        let records = buf.len() as u64;
        if base + records > segment.file_len && buf.len() <= ZERO_AHEAD_APPEND_MAX {
            // Past the file's end: zeros ahead too, in the same write and sync (module docs).
            buf.resize(buf.len() + ZERO_AHEAD_BYTES, 0);
        }
        if let Err(e) = segment.file.write_all_at(&buf, base) {
            // Leave no partial record behind a later append (it would read as damage mid-log).
            let _ = segment.file.set_len(base);
            segment.file_len = base;
            return Err(WalError::Io { path: segment.path.clone(), source: e });
        }
        segment.len += records;
        segment.file_len = segment.file_len.max(base + buf.len() as u64);
        let unsynced = Unsynced { file: segment.file.clone(), path: segment.path.clone(), bytes: records };
        for (entry, (offset, len)) in entries.into_iter().zip(spans) {
            self.locations.push_back(Location {
                log_id: entry.log_id,
                segment: key,
                offset: base + offset as u64,
                len: len as u32,
            });
            self.cache_push(entry, len);
        }
        if committed.is_some() {
            self.committed = committed;
        }
        Ok(Some(unsynced))
    }

    /// The segment the next append (starting at `index`) goes to: the last one, or a new one
    /// when there is none or the last is full.
    fn segment_for(&mut self, index: u64) -> Result<u64, WalError> {
        if let Some((&key, segment)) = self.segments.iter().next_back()
            && segment.len < SEGMENT_BYTES
        {
            return Ok(key);
        }
        let path = self.dir.join(segment_name(index));
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).map_err(io_at(&path))?;
        // The new file's name must survive a crash along with what is written into it.
        sync_dir(&self.dir)?;
        self.segments.insert(index, Segment { file: Arc::new(file), path, len: 0, file_len: 0 });
        Ok(index)
    }

    fn cache_push(&mut self, entry: Entry<TypeConfig>, bytes: usize) {
        self.cache.push_back((entry, bytes));
        self.cache_bytes += bytes;
        while self.cache_bytes > TAIL_CACHE_BYTES && self.cache.len() > 1 {
            if let Some((_, b)) = self.cache.pop_front() {
                self.cache_bytes -= b;
            }
        }
    }

    /// The entries held within `range`, in order.
    pub fn read(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry<TypeConfig>>, WalError> {
        self.read_until(range, &mut |_| false)
    }

    /// [`Wal::read`], ending early after the first entry `stop_after` says is the last wanted
    /// (nothing past it is read or decoded).
    pub fn read_until(
        &self,
        range: (Bound<u64>, Bound<u64>),
        stop_after: &mut dyn FnMut(&Entry<TypeConfig>) -> bool,
    ) -> Result<Vec<Entry<TypeConfig>>, WalError> {
        let (Some(first), Some(last)) = (self.first_index(), self.last_log_id()) else { return Ok(Vec::new()) };
        let start = match range.0 {
            Bound::Included(i) => i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => first,
        }
        .max(first);
        let end = match range.1 {
            Bound::Included(i) => i,
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(i) => i - 1,
            Bound::Unbounded => last.index,
        }
        .min(last.index);
        if start > end {
            return Ok(Vec::new());
        }
        let cache_first = self.cache.front().map_or(u64::MAX, |(e, _)| e.log_id.index);
        let mut out = Vec::with_capacity((end - start + 1).min(4096) as usize);
        for index in start..=end {
            let entry = if index >= cache_first {
                self.cache[(index - cache_first) as usize].0.clone()
            } else {
                self.read_at(&self.locations[(index - first) as usize])?
            };
            let last = stop_after(&entry);
            out.push(entry);
            if last {
                break;
            }
        }
        Ok(out)
    }

    /// [`Wal::read_until`] when every entry of `range` is in the tail cache (no file access), else
    /// `None`.
    pub fn read_cached(
        &self,
        range: (Bound<u64>, Bound<u64>),
        stop_after: &mut dyn FnMut(&Entry<TypeConfig>) -> bool,
    ) -> Option<Vec<Entry<TypeConfig>>> {
        let cache_first = self.cache.front()?.0.log_id.index;
        let starts_cached = match range.0 {
            Bound::Included(i) => i >= cache_first,
            Bound::Excluded(i) => i >= cache_first.saturating_sub(1),
            Bound::Unbounded => self.first_index() == Some(cache_first),
        };
        if !starts_cached {
            return None;
        }
        self.read_until(range, stop_after).ok()
    }

    fn read_at(&self, location: &Location) -> Result<Entry<TypeConfig>, WalError> {
        let Some(segment) = self.segments.get(&location.segment) else {
            return Err(WalError::Corrupt(format!(
                "no segment {} for index {}",
                location.segment, location.log_id.index
            )));
        };
        let mut payload = vec![0; location.len as usize];
        segment.file.read_exact_at(&mut payload, location.offset).map_err(io_at(&segment.path))?;
        decode(&payload)
            .map_err(|e| WalError::Corrupt(format!("{} at byte {}: {e}", segment.path.display(), location.offset)))
    }

    /// Removes every entry from `index` on (a conflicting suffix openraft replaces), durably.
    /// Later segments are deleted newest first, so a crash part-way leaves a log that ends
    /// early, never one with a hole.
    pub fn truncate(&mut self, index: u64) -> Result<(), WalError> {
        let Some(first) = self.first_index() else { return Ok(()) };
        let keep = index.saturating_sub(first) as usize;
        if keep >= self.locations.len() {
            return Ok(());
        }
        let cut = self.locations[keep];
        while let Some((&key, _)) = self.segments.iter().next_back() {
            if key <= cut.segment {
                break;
            }
            if let Some(segment) = self.segments.remove(&key) {
                std::fs::remove_file(&segment.path).map_err(io_at(&segment.path))?;
                sync_dir(&self.dir)?;
            }
        }
        // The record starts a header (the kind byte included) before its payload.
        let record_start = cut.offset - HEADER_BYTES as u64;
        if keep == 0 || self.locations[keep - 1].segment != cut.segment {
            // Nothing of this segment stays.
            if let Some(segment) = self.segments.remove(&cut.segment) {
                std::fs::remove_file(&segment.path).map_err(io_at(&segment.path))?;
                sync_dir(&self.dir)?;
            }
        } else if let Some(segment) = self.segments.get_mut(&cut.segment) {
            segment.file.set_len(record_start).and_then(|()| segment.file.sync_all()).map_err(io_at(&segment.path))?;
            segment.len = record_start;
            segment.file_len = record_start;
        }
        self.locations.truncate(keep);
        while self.cache.back().is_some_and(|(e, _)| e.log_id.index >= index) {
            if let Some((_, b)) = self.cache.pop_back() {
                self.cache_bytes -= b;
            }
        }
        if self.committed.is_some_and(|c| c.index >= index) {
            // Committed entries are never truncated; a hint above the cut came from nowhere.
            self.committed = None;
        }
        Ok(())
    }

    /// Forgets every entry up to and including `index`, deleting the segments that hold nothing
    /// newer. The caller has recorded the purge point durably first (see [`Wal::open`]).
    pub fn purge(&mut self, index: u64) -> Result<(), WalError> {
        while self.locations.front().is_some_and(|l| l.log_id.index <= index) {
            self.locations.pop_front();
        }
        while self.cache.front().is_some_and(|(e, _)| e.log_id.index <= index) {
            if let Some((_, b)) = self.cache.pop_front() {
                self.cache_bytes -= b;
            }
        }
        let still_needed = self.locations.front().map(|l| l.segment);
        let doomed: Vec<u64> = self.segments.keys().copied().filter(|&k| still_needed.is_none_or(|s| k < s)).collect();
        for key in doomed {
            if let Some(segment) = self.segments.remove(&key) {
                std::fs::remove_file(&segment.path).map_err(io_at(&segment.path))?;
            }
        }
        sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Request;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        let command = format!("set k{index} v{index}").into_bytes();
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Request::Commands(Arc::new(vec![command]))),
        }
    }

    fn append(wal: &mut Wal, entries: Vec<Entry<TypeConfig>>) {
        if let Some(unsynced) = wal.append(entries, None).expect("append") {
            unsynced.sync().expect("sync");
        }
    }

    /// Entries 1..=`count` of term 1, two to a segment (each segment marked full after two).
    fn two_entries_per_segment(dir: &Path, count: u64) -> Wal {
        let mut wal = Wal::open(dir, None).expect("open");
        for i in 1..=count {
            append(&mut wal, vec![entry(1, i)]);
            if i % 2 == 0 {
                wal.segments.values_mut().for_each(|s| s.len = s.len.max(SEGMENT_BYTES));
            }
        }
        wal
    }

    fn indexes(wal: &Wal) -> Vec<u64> {
        wal.read((Bound::Unbounded, Bound::Unbounded)).expect("read").iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn entries_survive_a_reopen_with_their_payloads_and_the_commit_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None).expect("open");
        append(&mut wal, (1..=5).map(|i| entry(1, i)).collect());
        let hint = LogId::new(CommittedLeaderId::new(1, 1), 4);
        wal.append(vec![entry(2, 6)], Some(hint)).expect("append").expect("written").sync().expect("sync");
        drop(wal);
        let wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(indexes(&wal), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(wal.read((Bound::Included(6), Bound::Included(6))).expect("read"), vec![entry(2, 6)]);
        assert_eq!(wal.committed(), Some(hint));
        assert_eq!(wal.last_log_id(), Some(entry(2, 6).log_id));
    }

    #[test]
    fn reads_past_the_tail_cache_come_from_disk_and_ranges_clamp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None).expect("open");
        append(&mut wal, (1..=10).map(|i| entry(1, i)).collect());
        wal.cache.clear();
        wal.cache_bytes = 0;
        let got = wal.read((Bound::Included(3), Bound::Excluded(6))).expect("read");
        assert_eq!(got, (3..6).map(|i| entry(1, i)).collect::<Vec<_>>());
        assert!(wal.read((Bound::Included(11), Bound::Unbounded)).expect("read").is_empty());
        assert_eq!(wal.read((Bound::Included(0), Bound::Included(2))).expect("read").len(), 2);
        // A bounded read stops after the entry it is told is the last, from disk and from cache.
        let mut seen = 0;
        let got = wal.read_until((Bound::Included(3), Bound::Unbounded), &mut |_| {
            seen += 1;
            seen == 2
        });
        assert_eq!(got.expect("read"), vec![entry(1, 3), entry(1, 4)]);
        append(&mut wal, (11..=12).map(|i| entry(1, i)).collect());
        let cached = wal.read_cached((Bound::Included(11), Bound::Unbounded), &mut |_| true);
        assert_eq!(cached, Some(vec![entry(1, 11)]));
    }

    #[test]
    fn an_append_that_does_not_follow_the_log_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None).expect("open");
        append(&mut wal, vec![entry(1, 1)]);
        assert!(matches!(wal.append(vec![entry(1, 3)], None), Err(WalError::Gap { last: 1, got: 3 })));
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_the_log_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None).expect("open");
        append(&mut wal, (1..=3).map(|i| entry(1, i)).collect());
        let path = dir.path().join(segment_name(1));
        let full = wal.segments[&1].len;
        drop(wal);
        // A crash in the middle of the third record's write.
        OpenOptions::new().write(true).open(&path).expect("open").set_len(full - 3).expect("cut");
        let mut wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(indexes(&wal), vec![1, 2]);
        append(&mut wal, vec![entry(2, 3)]);
        drop(wal);
        let wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(
            wal.read((Bound::Unbounded, Bound::Unbounded)).expect("read"),
            vec![entry(1, 1), entry(1, 2), entry(2, 3)]
        );
    }

    #[test]
    fn appends_overwrite_zeros_written_ahead_and_a_reopen_finds_the_end_of_the_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None).expect("open");
        append(&mut wal, vec![entry(1, 1)]);
        let path = dir.path().join(segment_name(1));
        let records = wal.segments[&1].len;
        let file_len = std::fs::metadata(&path).expect("metadata").len();
        assert_eq!(file_len, records + ZERO_AHEAD_BYTES as u64, "zeros ahead of the first append");
        append(&mut wal, vec![entry(1, 2), entry(1, 3)]);
        assert_eq!(std::fs::metadata(&path).expect("metadata").len(), file_len, "later appends overwrite them");
        drop(wal);
        let mut wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(indexes(&wal), vec![1, 2, 3]);
        append(&mut wal, vec![entry(2, 4)]);
        drop(wal);
        let wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(
            wal.read((Bound::Unbounded, Bound::Unbounded)).expect("read"),
            vec![entry(1, 1), entry(1, 2), entry(1, 3), entry(2, 4)]
        );
    }

    #[test]
    fn bytes_of_an_unfinished_write_past_a_zero_header_are_cut_off_for_good() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None).expect("open");
        append(&mut wal, vec![entry(1, 1), entry(1, 2)]);
        let path = dir.path().join(segment_name(1));
        let end = wal.segments[&1].len;
        // A crash while writing entries 3 and 4: the disk kept entry 4's record but not the
        // header of entry 3's.
        let mut torn = Vec::new();
        put_record(&mut torn, KIND_ENTRY, |b| {
            postcard::to_io(&entry(1, 3), b).map(drop).map_err(|e| WalError::Encode(e.to_string()))
        })
        .expect("record");
        let header_zeroed = torn.len();
        put_record(&mut torn, KIND_ENTRY, |b| {
            postcard::to_io(&entry(1, 4), b).map(drop).map_err(|e| WalError::Encode(e.to_string()))
        })
        .expect("record");
        torn[..HEADER_BYTES].fill(0);
        drop(wal);
        OpenOptions::new().write(true).open(&path).expect("open").write_all_at(&torn, end).expect("write");
        assert!(header_zeroed < torn.len());
        let mut wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(indexes(&wal), vec![1, 2]);
        // A shorter append in their place must not make entry 4's old record readable after it.
        append(&mut wal, vec![entry(2, 3)]);
        drop(wal);
        let wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(indexes(&wal), vec![1, 2, 3]);
        assert_eq!(wal.read((Bound::Included(3), Bound::Unbounded)).expect("read"), vec![entry(2, 3)]);
    }

    #[test]
    fn bytes_after_the_records_of_an_earlier_segment_refuse_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None).expect("open");
        append(&mut wal, vec![entry(1, 1), entry(1, 2)]);
        let end = wal.segments[&1].len;
        // Force a second segment.
        wal.segments.values_mut().for_each(|s| s.len = s.len.max(SEGMENT_BYTES));
        append(&mut wal, vec![entry(1, 3)]);
        drop(wal);
        let first = dir.path().join(segment_name(1));
        OpenOptions::new().write(true).open(&first).expect("open").write_all_at(&[7], end + 100).expect("write");
        let error = Wal::open(dir.path(), None).err().expect("refused");
        assert!(error.to_string().contains(&format!("damaged at byte {end}")), "{error}");
    }

    #[test]
    fn damage_before_the_last_segment_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None).expect("open");
        append(&mut wal, vec![entry(1, 1), entry(1, 2)]);
        // Force a second segment.
        wal.segments.values_mut().for_each(|s| s.len = s.len.max(SEGMENT_BYTES));
        append(&mut wal, vec![entry(1, 3)]);
        drop(wal);
        let first = dir.path().join(segment_name(1));
        let mut bytes = std::fs::read(&first).expect("read");
        bytes[HEADER_BYTES + 2] ^= 0xff;
        std::fs::write(&first, bytes).expect("write");
        let error = Wal::open(dir.path(), None).err().expect("refused");
        assert!(error.to_string().contains("damaged at byte 0"), "{error}");
    }

    #[test]
    fn truncate_removes_the_suffix_across_segments_durably() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = two_entries_per_segment(dir.path(), 6);
        assert_eq!(wal.segments.len(), 3);
        wal.truncate(4).expect("truncate");
        assert_eq!(indexes(&wal), vec![1, 2, 3]);
        append(&mut wal, vec![entry(2, 4)]);
        drop(wal);
        let wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(indexes(&wal), vec![1, 2, 3, 4]);
        assert_eq!(wal.last_log_id(), Some(entry(2, 4).log_id));
        // Truncating at a segment's first entry removes that segment too.
        let mut wal = wal;
        wal.truncate(3).expect("truncate");
        assert_eq!(indexes(&wal), vec![1, 2]);
        assert!(!dir.path().join(segment_name(3)).exists());
    }

    #[test]
    fn purge_deletes_whole_segments_and_a_reopen_honours_the_purge_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = two_entries_per_segment(dir.path(), 6);
        wal.purge(3).expect("purge");
        assert_eq!(indexes(&wal), vec![4, 5, 6]);
        assert!(!dir.path().join(segment_name(1)).exists());
        assert!(dir.path().join(segment_name(3)).exists());
        drop(wal);
        let wal = Wal::open(dir.path(), Some(3)).expect("reopen");
        assert_eq!(indexes(&wal), vec![4, 5, 6]);
        // A purge past the end (a snapshot install) empties the log; appends start after it.
        let mut wal = wal;
        wal.purge(10).expect("purge");
        assert_eq!(wal.last_log_id(), None);
        append(&mut wal, vec![entry(3, 11)]);
        drop(wal);
        assert_eq!(indexes(&Wal::open(dir.path(), Some(10)).expect("reopen")), vec![11]);
    }
}
