//! A counting presence filter in front of the record trees, so the proxy's lookups of
//! values that were never revoked (nearly all of them) skip sled.
//!
//! Each record key sets [`PRESENCE_HASHES`] 8-bit counters chosen by a keyed hash. `may_contain` answers
//! `false` only when a counter is zero, which can only happen if no stored key hashes
//! there: the filter has false positives (then sled is asked) but never false negatives.
//! The invariant "every stored key has both its counters ≥ 1" holds because:
//! - a key's counters are raised *before* the transaction that stores it commits, so no
//!   reader can see the record without the filter saying "maybe";
//! - counters are lowered only after a key was removed (unrevoke, sweep) or a raise turned
//!   out to be for an existing key or a failed write, and only once the start-up scan
//!   finished (before that, raises from the scan and from writers may double-count, which
//!   is only ever an over-count);
//! - a counter that reaches 255 sticks there (never lowered), so it cannot wrap.
//!
//! The store fills the filter in the one scan it makes at open (which also counts the
//! records); until `mark_ready`, `may_contain` answers `true` (sled decides).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Fewest counters in the filter (a power of two): 4 MiB.
pub const PRESENCE_COUNTERS: usize = 1 << 22;
/// Most counters in the filter (a power of two): 256 MiB, reached only above 8M records.
pub const PRESENCE_MAX_COUNTERS: usize = 1 << 28;
/// Counters per record the store sizes the filter for when it opens (rounded up to a power
/// of two, so 16–32; one byte each): with [`PRESENCE_HASHES`] = 4, at most 0.24 % of
/// misses still ask sled while the store holds no more records than at open (at 1M records:
/// 16 Mi counters; one block per key makes that ~0.3 %). Records added while running raise that share slowly (twice the records:
/// 2.4 %) until the next open sizes the filter again.
pub const PRESENCE_COUNTERS_PER_RECORD: usize = 16;
/// Counters each key sets.
pub const PRESENCE_HASHES: usize = 4;
/// Counters per block (a cache line of one-byte counters): a key's counters are all in
/// one block. 64 = 2^6: each counter takes 6 bits of the low half of the hash.
pub const PRESENCE_BLOCK: usize = 64;

/// The filter. See the module documentation for its invariant.
pub struct Presence {
    counters: Vec<AtomicU8>,
    hasher: std::collections::hash_map::RandomState,
    ready: AtomicBool,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Presence {
    fn default() -> Self {
        Presence::new(PRESENCE_COUNTERS)
    }
}

impl Presence {
    /// An empty, not yet ready filter sized for `records` records (see
    /// [`PRESENCE_COUNTERS_PER_RECORD`]), within [`PRESENCE_COUNTERS`] and
    /// [`PRESENCE_MAX_COUNTERS`].
    pub fn for_records(records: u64) -> Presence {
        let wanted = usize::try_from(records)
            .unwrap_or(usize::MAX)
            .saturating_mul(PRESENCE_COUNTERS_PER_RECORD);
        Presence::new(wanted.clamp(PRESENCE_COUNTERS, PRESENCE_MAX_COUNTERS))
    }

    /// An empty, not yet ready filter of `counters` counters (rounded up to a power of two).
    pub fn new(counters: usize) -> Presence {
        let n = counters.next_power_of_two().max(PRESENCE_BLOCK);
        Presence {
            counters: (0..n).map(|_| AtomicU8::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            ready: AtomicBool::new(false),
        }
    }

    /// The counters of a key: all in one block of [`PRESENCE_BLOCK`] counters (one cache
    /// line, so a lookup costs one memory access, not [`PRESENCE_HASHES`]), the block and
    /// the counters in it chosen by disjoint bits of one 64-bit keyed hash. Two of them
    /// may coincide (that key then sets fewer counters, always the same ones).
    fn slots(&self, kind: u8, key: &[u8]) -> [usize; PRESENCE_HASHES] {
        let h = self.hasher.hash_one((kind, key));
        let blocks = self.counters.len() / PRESENCE_BLOCK;
        let block = ((h >> 32) as usize & (blocks - 1)) * PRESENCE_BLOCK;
        std::array::from_fn(|i| block + ((h >> (6 * i)) as usize & (PRESENCE_BLOCK - 1)))
    }

    /// Raises the counters of a key about to be stored.
    pub fn insert(&self, kind: u8, key: &[u8]) {
        for i in self.slots(kind, key) {
            let _ = self.counters[i].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                (c < u8::MAX).then(|| c + 1)
            });
        }
    }

    /// Lowers the counters of a key that is gone (or was raised without being added).
    /// Ignored until the start-up scan is done; saturated counters stay.
    pub fn remove(&self, kind: u8, key: &[u8]) {
        if !self.ready.load(Ordering::SeqCst) {
            return;
        }
        for i in self.slots(kind, key) {
            let _ = self.counters[i].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                (c > 0 && c < u8::MAX).then(|| c - 1)
            });
        }
    }

    /// `false` only if the key is certainly not stored.
    pub fn may_contain(&self, kind: u8, key: &[u8]) -> bool {
        if !self.ready.load(Ordering::Acquire) {
            return true;
        }
        self.slots(kind, key)
            .iter()
            .all(|&i| self.counters[i].load(Ordering::Acquire) > 0)
    }

    /// Marks the start-up scan complete: from now on misses are answered here.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_removal_works() {
        let p = Presence::new(1 << 10);
        assert!(p.may_contain(0, b"x"), "not ready: always maybe");
        p.mark_ready();
        assert!(!p.may_contain(0, b"x"));
        for i in 0..500u32 {
            p.insert(0, &i.to_be_bytes());
        }
        for i in 0..500u32 {
            assert!(p.may_contain(0, &i.to_be_bytes()));
        }
        for i in 0..250u32 {
            p.remove(0, &i.to_be_bytes());
        }
        for i in 250..500u32 {
            assert!(
                p.may_contain(0, &i.to_be_bytes()),
                "still stored keys stay present"
            );
        }
    }

    #[test]
    fn sized_for_the_records_few_misses_get_through() {
        assert_eq!(Presence::for_records(0).counters.len(), PRESENCE_COUNTERS);
        assert_eq!(Presence::for_records(1_000_000).counters.len(), 1 << 24);
        assert_eq!(
            Presence::for_records(u64::MAX).counters.len(),
            PRESENCE_MAX_COUNTERS
        );
        // 2^18 records: 2^22 counters, 16 per record, the least the sizing gives.
        let n = 262_144u32;
        let p = Presence::for_records(u64::from(n));
        p.mark_ready();
        for i in 0..n {
            p.insert(0, &i.to_be_bytes());
        }
        let misses = (n..n + 100_000)
            .filter(|i| p.may_contain(0, &i.to_be_bytes()))
            .count();
        // Expected 0.24 % at 16 counters per key, 4 hashes; 2 hashes at 4 would give 15 %.
        assert!(misses < 1_000, "{misses} of 100000 misses got through");
        assert!((0..n).all(|i| p.may_contain(0, &i.to_be_bytes())));
    }

    #[test]
    fn removals_before_ready_are_ignored_and_saturation_sticks() {
        let p = Presence::new(64);
        p.insert(1, b"k");
        p.remove(1, b"k");
        p.mark_ready();
        assert!(
            p.may_contain(1, b"k"),
            "a removal before ready must not lower counters"
        );
        for _ in 0..300 {
            p.insert(2, b"s");
        }
        for _ in 0..300 {
            p.remove(2, b"s");
        }
        assert!(p.may_contain(2, b"s"), "saturated counters never go down");
    }
}
