//! splitmix64: a tiny seeded generator, the same on every machine, so a seed replays the same
//! choices (the fault suite's nemesis and clients, the seeded command logs of the oracle tests).

/// A splitmix64 generator; the field is its state (the seed to start with).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)] // an endless generator, not an iterator
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; the modulo bias is irrelevant for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// One element of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_replays_the_same_sequence_and_seeds_differ() {
        let first: Vec<u64> = (0..4).scan(Rng(7), |r, _| Some(r.next())).collect();
        let again: Vec<u64> = (0..4).scan(Rng(7), |r, _| Some(r.next())).collect();
        let other: Vec<u64> = (0..4).scan(Rng(8), |r, _| Some(r.next())).collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert!((0..1000).scan(Rng(1), |r, _| Some(r.below(6))).all(|n| n < 6));
    }
}
