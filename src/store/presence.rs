//! A counting presence filter in front of the record trees, so the proxy's lookups of
//! values that were never revoked (nearly all of them) skip sled.
//!
//! Each record key sets two 8-bit counters chosen by a keyed hash. `may_contain` answers
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

/// Counters in the filter (a power of two): 4 MiB. With 1M stored keys about 15 % of
/// misses still ask sled; with 100k, 0.2 %.
pub const PRESENCE_COUNTERS: usize = 1 << 22;

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
    /// An empty, not yet ready filter of `counters` counters (rounded up to a power of two).
    pub fn new(counters: usize) -> Presence {
        let n = counters.next_power_of_two().max(64);
        Presence {
            counters: (0..n).map(|_| AtomicU8::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            ready: AtomicBool::new(false),
        }
    }

    fn slots(&self, kind: u8, key: &[u8]) -> (usize, usize) {
        let h = self.hasher.hash_one((kind, key));
        let mask = self.counters.len() - 1;
        let a = (h as usize) & mask;
        let mut b = ((h >> 32) as usize) & mask;
        if b == a {
            b = (b + 1) & mask;
        }
        (a, b)
    }

    /// Raises the counters of a key about to be stored.
    pub fn insert(&self, kind: u8, key: &[u8]) {
        let (a, b) = self.slots(kind, key);
        for i in [a, b] {
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
        let (a, b) = self.slots(kind, key);
        for i in [a, b] {
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
        let (a, b) = self.slots(kind, key);
        self.counters[a].load(Ordering::Acquire) > 0 && self.counters[b].load(Ordering::Acquire) > 0
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
