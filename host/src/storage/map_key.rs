//! The key type of the in-memory ordered maps (the memory store, the write-back layer).

use std::sync::Arc;

/// Keys up to this many bytes are stored inside the map's nodes.
pub(crate) const INLINE_KEY_BYTES: usize = 30;

/// A key of the map. Most keys are short (fsm-kv's: a prefix byte and the user's key) and are held
/// inline, so the comparisons of a lookup read the B-tree node they are in instead of one
/// allocation per key: those cache misses, inside `memcmp`, were the largest user-space cost of
/// an apply (12 % of all samples at `-c 50`, with `get` itself 6 %). 32 bytes either way.
#[derive(Clone)]
pub(crate) enum MapKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY_BYTES] },
    Shared(Arc<[u8]>),
}

const _: () = assert!(std::mem::size_of::<MapKey>() == 32);

impl MapKey {
    /// The key, inline when it fits.
    pub(crate) fn new(key: &[u8]) -> Self {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE_KEY_BYTES => {
                let mut bytes = [0; INLINE_KEY_BYTES];
                bytes[..key.len()].copy_from_slice(key);
                MapKey::Inline { len, bytes }
            }
            _ => MapKey::Shared(Arc::from(key)),
        }
    }

    /// The key's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            MapKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            MapKey::Shared(bytes) => bytes,
        }
    }
}

impl std::borrow::Borrow<[u8]> for MapKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for MapKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for MapKey {}

impl PartialOrd for MapKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MapKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}
