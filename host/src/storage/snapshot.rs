//! The snapshot stream: the whole state as a sequence of chunks, written from a [`ReadView`]
//! (so it is consistent while writes go on) and read back by [`Store::restore`].
//!
//! Never the whole state in one buffer: [`SnapshotChunks`] yields chunks of about
//! `chunk_bytes_max` each, resuming its scan after the last key it sent; [`read`] parses any
//! `std::io::Read` incrementally.
//!
//! Format (little-endian):
//!
//! ```text
//! magic    "REDRAFT-SNAPSHOT" (16 bytes), u32 format version (1)
//! meta     'M' u32 len name  u32 len value      -- every meta entry, name order
//! data     'D' u32 len key   u32 len value      -- every data entry, strictly ascending keys
//! end      'E' u64 data entry count, [32] SHA-256 of every byte up to and including this 'E'
//! ```
//!
//! The meta entries carry the last-applied log id and the state-machine contract (module digest
//! and limits), so a snapshot says which module produced it and up to where.
//!
//! [`Store::restore`]: super::Store::restore

use super::{ReadView, StorageError};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::ops::{Bound, ControlFlow};

const MAGIC: &[u8; 16] = b"REDRAFT-SNAPSHOT";
const FORMAT_VERSION: u32 = 1;
const TAG_META: u8 = b'M';
const TAG_DATA: u8 = b'D';
const TAG_END: u8 = b'E';

/// Largest key, value or meta entry a snapshot may declare (Redis's `proto-max-bulk-len`). A
/// damaged length field beyond it is refused instead of attempted.
pub const FIELD_BYTES_MAX: u32 = 512 * 1024 * 1024;

/// Default target size of one chunk.
pub const CHUNK_BYTES_DEFAULT: usize = 1024 * 1024;

/// What a snapshot held, as reported after writing or restoring it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Every meta entry (last-applied log id, module digest, ...).
    pub meta: BTreeMap<String, Vec<u8>>,
    /// Number of data entries.
    pub entries: u64,
}

/// Streams a snapshot of `view` as chunks. See the module docs for the format.
pub struct SnapshotChunks {
    view: Box<dyn ReadView>,
    chunk_bytes_max: usize,
    phase: Phase,
    hasher: Sha256,
    entries: u64,
}

enum Phase {
    Header,
    /// Data entries; holds the last key sent (`None` before the first).
    Data(Option<Vec<u8>>),
    End,
    Done,
}

impl SnapshotChunks {
    /// Starts a snapshot of `view`; each chunk ends at the first entry boundary at or past
    /// `chunk_bytes_max` bytes (an entry is never split, so a single huge value makes one chunk).
    pub fn new(view: Box<dyn ReadView>, chunk_bytes_max: usize) -> Self {
        SnapshotChunks {
            view,
            chunk_bytes_max: chunk_bytes_max.max(1),
            phase: Phase::Header,
            hasher: Sha256::new(),
            entries: 0,
        }
    }

    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        let mut chunk = Vec::new();
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Header => {
                chunk.extend_from_slice(MAGIC);
                chunk.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
                for (name, value) in self.view.meta()? {
                    put_record(&mut chunk, TAG_META, name.as_bytes(), &value);
                }
                self.phase = Phase::Data(None);
            }
            Phase::Data(after) => {
                let start = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let mut last: Option<Vec<u8>> = None;
                let limit = self.chunk_bytes_max;
                let entries = &mut self.entries;
                let mut too_big = None;
                self.view.scan(start, Bound::Unbounded, &mut |k, v| {
                    if k.len().max(v.len()) > FIELD_BYTES_MAX as usize {
                        too_big = Some(k.to_vec());
                        return ControlFlow::Break(());
                    }
                    put_record(&mut chunk, TAG_DATA, k, v);
                    *entries += 1;
                    if chunk.len() >= limit {
                        last = Some(k.to_vec());
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })?;
                if let Some(key) = too_big {
                    return Err(StorageError::InvalidSnapshot(format!(
                        "entry {} is larger than the {FIELD_BYTES_MAX}-byte snapshot field limit",
                        super::hex(&key[..key.len().min(32)])
                    )));
                }
                // A chunk that filled up may have more behind it; one that did not is the last.
                self.phase = match last {
                    Some(k) => Phase::Data(Some(k)),
                    None => Phase::End,
                };
                if chunk.is_empty() {
                    return self.next_chunk();
                }
            }
            Phase::End => {
                self.hasher.update([TAG_END]);
                chunk.push(TAG_END);
                chunk.extend_from_slice(&self.entries.to_le_bytes());
                let digest = std::mem::take(&mut self.hasher).finalize();
                chunk.extend_from_slice(&digest);
                return Ok(Some(chunk));
            }
            Phase::Done => return Ok(None),
        }
        self.hasher.update(&chunk);
        Ok(Some(chunk))
    }
}

impl Iterator for SnapshotChunks {
    type Item = Result<Vec<u8>, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

fn put_record(out: &mut Vec<u8>, tag: u8, a: &[u8], b: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(a.len() as u32).to_le_bytes());
    out.extend_from_slice(a);
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// One record handed to [`read`]'s callback.
pub enum Entry {
    /// A meta entry: name, value.
    Meta(String, Vec<u8>),
    /// A data entry: key, value.
    Data(Vec<u8>, Vec<u8>),
}

/// A reader that hashes everything read through it.
struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: Sha256,
}

impl HashingReader<'_> {
    fn exact<const N: usize>(&mut self) -> Result<[u8; N], StorageError> {
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf).map_err(truncated)?;
        self.hasher.update(buf);
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, StorageError> {
        Ok(u32::from_le_bytes(self.exact()?))
    }

    /// A length-prefixed field. Room for up to [`FIELD_RESERVE_BYTES`] is made at once (a key
    /// or a usual value in one allocation: growing from empty took a reallocation per doubling,
    /// 7 % of a restart's samples); a longer field grows as it arrives, so a damaged length
    /// costs little before the stream proves it wrong.
    fn field(&mut self) -> Result<Vec<u8>, StorageError> {
        let len = self.u32()?;
        if len > FIELD_BYTES_MAX {
            return Err(invalid(format!("field of {len} bytes exceeds the {FIELD_BYTES_MAX}-byte limit")));
        }
        let mut out = Vec::with_capacity((len as usize).min(FIELD_RESERVE_BYTES));
        let got = (&mut self.inner).take(u64::from(len)).read_to_end(&mut out)?;
        if got != len as usize {
            return Err(invalid("stream ends inside a field".into()));
        }
        self.hasher.update(&out);
        Ok(out)
    }
}

/// The most a field's declared length allocates before its bytes are read.
const FIELD_RESERVE_BYTES: usize = 64 * 1024;

fn invalid(reason: String) -> StorageError {
    StorageError::InvalidSnapshot(reason)
}

fn truncated(e: std::io::Error) -> StorageError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        invalid("stream ends before its end record".into())
    } else {
        StorageError::Io(e)
    }
}

/// Checks that the snapshot's meta holds every `required` entry with exactly that value.
fn check_required(meta: &BTreeMap<String, Vec<u8>>, required: &[(&str, &[u8])]) -> Result<(), StorageError> {
    for (name, value) in required {
        match meta.get(*name) {
            Some(found) if found == value => {}
            found => {
                return Err(StorageError::SnapshotRefused(format!(
                    "its `{name}` is {}, this node needs {}",
                    found.map_or_else(|| "absent".to_owned(), |f| super::hex(f)),
                    super::hex(value)
                )));
            }
        }
    }
    Ok(())
}

/// Parses a snapshot stream, handing each record to `sink` in order, and verifies its end record
/// (entry count and checksum). The `required` meta entries are checked as soon as the meta
/// section ends, before any data reaches `sink`. A caller must treat everything it received as
/// void unless this returns `Ok`: that is how restores stay atomic.
pub fn read(
    source: &mut dyn Read,
    required: &[(&str, &[u8])],
    sink: &mut dyn FnMut(Entry) -> Result<(), StorageError>,
) -> Result<SnapshotInfo, StorageError> {
    let mut r = HashingReader { inner: source, hasher: Sha256::new() };
    if &r.exact::<16>()? != MAGIC {
        return Err(invalid("not a Redraft snapshot (bad magic)".into()));
    }
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(invalid(format!("snapshot format {version}, this build reads {FORMAT_VERSION}")));
    }
    let mut meta = BTreeMap::new();
    let mut entries = 0u64;
    let mut last_key: Option<Vec<u8>> = None;
    let mut meta_checked = false;
    loop {
        let [tag] = r.exact::<1>()?;
        if tag != TAG_META && !meta_checked {
            check_required(&meta, required)?;
            meta_checked = true;
        }
        match tag {
            TAG_META if entries == 0 => {
                let name = String::from_utf8(r.field()?).map_err(|_| invalid("meta name is not UTF-8".into()))?;
                let value = r.field()?;
                meta.insert(name.clone(), value.clone());
                sink(Entry::Meta(name, value))?;
            }
            TAG_DATA => {
                let key = r.field()?;
                let value = r.field()?;
                if last_key.as_ref().is_some_and(|last| *last >= key) {
                    return Err(invalid("data keys out of order".into()));
                }
                last_key = Some(key.clone());
                entries += 1;
                sink(Entry::Data(key, value))?;
            }
            TAG_END => {
                let expected = std::mem::take(&mut r.hasher).finalize();
                let mut count = [0u8; 8];
                let mut digest = [0u8; 32];
                r.inner.read_exact(&mut count).map_err(truncated)?;
                r.inner.read_exact(&mut digest).map_err(truncated)?;
                if u64::from_le_bytes(count) != entries {
                    return Err(invalid(format!(
                        "end record counts {} entries, stream had {entries}",
                        u64::from_le_bytes(count)
                    )));
                }
                if digest[..] != expected[..] {
                    return Err(invalid("checksum mismatch".into()));
                }
                let mut rest = [0u8; 1];
                if r.inner.read(&mut rest)? != 0 {
                    return Err(invalid("bytes after the end record".into()));
                }
                return Ok(SnapshotInfo { meta, entries });
            }
            other => return Err(invalid(format!("unexpected record tag {other:#04x}"))),
        }
    }
}
