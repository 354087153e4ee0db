//! A Bloom filter of the keys in redb, so that a lookup of a key redb does not hold skips redb.
//!
//! Why: every write a module makes asks whether the key existed, and fsm-kv looks up keys that
//! are usually absent on every command (the expiry of a key without one, the header of a key
//! that is not a collection, the index entry of a new key). In redb each such miss is a full
//! B-tree descent through its page cache: with random keys out of 1M, skipping the misses took
//! about a sixth off the three nodes' CPU per `SET` (docs/BENCHMARKS.md).
//!
//! The layout is a split-block Bloom filter (as in Parquet): a key's eight bits all fall in one
//! 32-byte block, so a query costs one hash and one cache line. Bits are atomics, so one filter
//! takes inserts from the applier and the builder thread while readers query it, without a
//! lock. A filter never forgets a key: deleted keys stay as false positives until the next
//! rebuild, which only costs the redb lookup the filter exists to save.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Filter bits per key of capacity: about 0.5 % false positives at capacity.
const BITS_PER_KEY: u64 = 12;
/// The salts of Parquet's split-block Bloom filter: one per 32-bit word of a block.
const SALTS: [u32; 8] =
    [0x47b6_137b, 0x4497_4d91, 0x8824_ad5b, 0xa2b7_289d, 0x7054_95c7, 0x2df1_424b, 0x9efc_4947, 0x5c6b_fb31];

/// One 256-bit block: a key sets one bit in each of its eight words.
#[repr(align(32))]
#[derive(Default)]
struct Block([AtomicU32; 8]);

/// A key's hash, computed once for every filter a lookup asks.
#[derive(Clone, Copy)]
pub(crate) struct KeyHash(u64);

impl KeyHash {
    pub(crate) fn of(key: &[u8]) -> Self {
        KeyHash(hash(key))
    }
}

/// A set of byte keys with no false negatives. See the module docs.
pub(crate) struct KeyFilter {
    blocks: Box<[Block]>,
    /// The number of keys it was sized for.
    capacity: u64,
    /// Inserts of keys the filter did not already (seem to) hold: once past `capacity`, the
    /// false-positive rate climbs and the filter is due for a rebuild.
    added: AtomicU64,
}

impl KeyFilter {
    /// An empty filter sized for `capacity` keys.
    pub(crate) fn with_capacity(capacity: u64) -> Self {
        let capacity = capacity.max(1);
        let blocks = (capacity * BITS_PER_KEY).div_ceil(256).clamp(1, u64::from(u32::MAX));
        KeyFilter { blocks: (0..blocks).map(|_| Block::default()).collect(), capacity, added: AtomicU64::new(0) }
    }

    /// Adds the key of `hash`.
    pub(crate) fn insert(&self, hash: KeyHash) {
        let (block, masks) = self.locate(hash);
        let mut new = false;
        for (word, mask) in block.0.iter().zip(masks) {
            new |= word.fetch_or(mask, Ordering::Relaxed) & mask == 0;
        }
        if new {
            self.added.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// False only if the key of `hash` was never inserted.
    pub(crate) fn may_contain(&self, hash: KeyHash) -> bool {
        let (block, masks) = self.locate(hash);
        block.0.iter().zip(masks).all(|(word, mask)| word.load(Ordering::Relaxed) & mask != 0)
    }

    /// Whether more distinct keys went in than it was sized for.
    pub(crate) fn overfull(&self) -> bool {
        self.added.load(Ordering::Relaxed) > self.capacity
    }

    /// The bytes the filter takes.
    pub(crate) fn memory(&self) -> usize {
        std::mem::size_of_val(&*self.blocks)
    }

    /// The key's block, and the bit it sets in each of the block's words.
    fn locate(&self, KeyHash(hash): KeyHash) -> (&Block, [u32; 8]) {
        // The high half picks the block (a multiply-shift, not a modulo), the low half the bits.
        let index = ((hash >> 32) * self.blocks.len() as u64) >> 32;
        let low = hash as u32;
        let masks = SALTS.map(|salt| 1u32 << (low.wrapping_mul(salt) >> 27));
        (&self.blocks[index as usize], masks)
    }
}

/// A 64-bit hash of `key`: a multiply-rotate over its 8-byte words, then MurmurHash3's finaliser
/// so every input bit reaches the bits that pick the block and the word bits. Cheaper than std's
/// SipHash, which showed in a profile; the filter lives in memory only, so the hash need not be
/// stable across builds, and keys crafted to collide can only cost lookups, never hide a key.
fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut mix = |word: [u8; 8]| h = (h ^ u64::from_le_bytes(word)).wrapping_mul(K).rotate_left(29);
    let mut words = key.chunks_exact(8);
    for word in &mut words {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        mix(w);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0; 8];
        w[..rest.len()].copy_from_slice(rest);
        mix(w);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::{KeyFilter, KeyHash};

    fn h(key: impl AsRef<[u8]>) -> KeyHash {
        KeyHash::of(key.as_ref())
    }

    #[test]
    fn holds_every_key_inserted_and_few_others() {
        let filter = KeyFilter::with_capacity(100_000);
        for i in 0..100_000u32 {
            filter.insert(h(format!("key:{i}")));
        }
        assert!((0..100_000u32).all(|i| filter.may_contain(h(format!("key:{i}")))));
        let false_positives = (0..100_000u32).filter(|i| filter.may_contain(h(format!("other:{i}")))).count();
        assert!(false_positives < 2_000, "{false_positives} false positives in 100k at capacity");
        assert!(!filter.overfull());
        filter.insert(h("one more than it was sized for"));
        for i in 0..2_000u32 {
            filter.insert(h(format!("more:{i}")));
        }
        assert!(filter.overfull());
    }

    #[test]
    fn inserting_a_key_again_does_not_count_it_again() {
        let filter = KeyFilter::with_capacity(10);
        for _ in 0..100 {
            filter.insert(h("same"));
        }
        assert!(!filter.overfull());
        assert!(filter.may_contain(h("same")));
        assert!(!filter.may_contain(h("absent")));
    }
}
