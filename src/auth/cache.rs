//! A bounded cache of verified access tokens, so a token seen again skips the signature
//! check (the dearest step of the decision). It never weakens a check:
//! - the key is the whole compact token, compared in full (a forged token cannot hit);
//! - an entry is used only while the token is unexpired (`now < exp + leeway`), and only
//!   if neither the configuration nor any issuer's key set changed since it was verified
//!   (generation numbers);
//! - the revocation lookup is not cached: the proxy consults the store on every request.
//!
//! Sharded so workers rarely contend; each shard evicts an arbitrary entry when full. The
//! token is hashed once per lookup (keyed SipHash, [`RandomState`]): that one hash picks the
//! shard and is the shard's map key, and the entry holds the token itself, compared in full.
//! Two tokens with the same hash (never in practice; not steerable without the random key)
//! share a slot: the later insert replaces the earlier, a lookup of the other misses.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use crate::auth::VerifiedToken;

/// Shards of the cache (a power of two).
const SHARDS: usize = 16;
/// Which bits of the token's hash pick the shard: above those the maps use for buckets
/// (the low bits) and for their control bytes (the top 7), so entries spread within a shard.
const SHARD_SHIFT: u32 = 32;

struct Entry {
    token: Box<str>,
    verified: Arc<VerifiedToken>,
    generation: (u64, u64),
}

/// The hasher of a shard's map, whose keys are already keyed hashes: passes them through.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here (`write_u64`); fold anything else all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<u64, Entry, BuildHasherDefault<Prehashed>>;

/// Verified tokens by compact form. `capacity` 0 turns the cache off.
pub struct TokenCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

impl TokenCache {
    /// A cache of about `capacity` entries (0: off).
    pub fn new(capacity: usize) -> TokenCache {
        let per_shard = capacity.div_ceil(SHARDS);
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            hasher: RandomState::new(),
        }
    }

    /// Whether the cache is on.
    pub fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    /// The token's hash and its shard.
    fn slot(&self, token: &str) -> (u64, &Mutex<Shard>) {
        let hash = self.hasher.hash_one(token);
        let shard = &self.shards[((hash >> SHARD_SHIFT) as usize) & (SHARDS - 1)];
        (hash, shard)
    }

    /// The verified claims of `token` if it was verified under `generation` and is still
    /// unexpired at `now` (with `leeway`).
    pub fn get(
        &self,
        token: &str,
        generation: (u64, u64),
        now: u64,
        leeway: u64,
    ) -> Option<Arc<VerifiedToken>> {
        if !self.enabled() {
            return None;
        }
        let (hash, shard) = self.slot(token);
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.get(&hash)?;
        if *entry.token != *token {
            return None; // another token in this slot
        }
        if entry.generation == generation && now < entry.verified.exp.saturating_add(leeway) {
            return Some(entry.verified.clone());
        }
        shard.remove(&hash);
        None
    }

    /// Remembers a token that passed every check under `generation`.
    pub fn insert(&self, token: &str, verified: Arc<VerifiedToken>, generation: (u64, u64)) {
        if !self.enabled() {
            return;
        }
        let (hash, shard) = self.slot(token);
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&hash) {
            if let Some(victim) = shard.keys().next().copied() {
                shard.remove(&victim);
            }
        }
        shard.insert(
            hash,
            Entry {
                token: token.into(),
                verified,
                generation,
            },
        );
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(exp: u64) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            issuer: "iss".into(),
            sub: None,
            sid: None,
            jti: "j".into(),
            legacy_jti: None,
            iat: 0,
            exp,
            scopes: vec![],
            kid: None,
            identity: Default::default(),
        })
    }

    #[test]
    fn hits_only_the_same_token_same_generation_unexpired() {
        let c = TokenCache::new(100);
        c.insert("a.b.c", verified(1000), (1, 1));
        assert!(c.get("a.b.c", (1, 1), 999, 0).is_some());
        assert!(c.get("a.b.d", (1, 1), 999, 0).is_none(), "other token");
        assert!(c.get("a.b.c", (1, 1), 1000, 0).is_none(), "expired");
        c.insert("a.b.c", verified(1000), (1, 1));
        assert!(c.get("a.b.c", (2, 1), 10, 0).is_none(), "keys changed");
        assert!(c.is_empty(), "stale entries are dropped");
    }

    #[test]
    fn a_token_sharing_a_slot_never_answers_for_another() {
        let c = TokenCache::new(100);
        let (hash, shard) = c.slot("a.b.c");
        shard.lock().unwrap().insert(
            hash,
            Entry {
                token: "x.y.z".into(),
                verified: verified(1000),
                generation: (1, 1),
            },
        );
        assert!(c.get("a.b.c", (1, 1), 999, 0).is_none(), "compared in full");
        assert_eq!(c.len(), 1, "the other token's entry stays");
        c.insert("a.b.c", verified(1000), (1, 1));
        assert!(c.get("a.b.c", (1, 1), 999, 0).is_some());
        assert_eq!(c.len(), 1, "one slot");
    }

    #[test]
    fn bounded_and_off() {
        let c = TokenCache::new(32);
        for i in 0..1000 {
            c.insert(&format!("t{i}"), verified(10), (0, 0));
        }
        assert!(c.len() <= 32);
        let off = TokenCache::new(0);
        off.insert("x", verified(10), (0, 0));
        assert!(off.get("x", (0, 0), 1, 0).is_none());
    }
}
