//! A bounded cache of verified access tokens, so a token seen again skips the signature
//! check (the dearest step of the decision). It never weakens a check:
//! - the key is the whole compact token, compared in full (a forged token cannot hit);
//! - an entry is used only while the token is unexpired (`now < exp + leeway`), and only
//!   if neither the configuration nor any issuer's key set changed since it was verified
//!   (generation numbers);
//! - the revocation lookup is not cached: the proxy consults the store on every request.
//!
//! Sharded so workers rarely contend; each shard evicts an arbitrary entry when full.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use crate::auth::VerifiedToken;

/// Shards of the cache (a power of two).
const SHARDS: usize = 16;

struct Entry {
    token: Arc<VerifiedToken>,
    generation: (u64, u64),
}

/// Verified tokens by compact form. `capacity` 0 turns the cache off.
pub struct TokenCache {
    shards: Vec<Mutex<HashMap<Box<str>, Entry>>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
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
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Whether the cache is on.
    pub fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    fn shard(&self, token: &str) -> &Mutex<HashMap<Box<str>, Entry>> {
        &self.shards[(self.hasher.hash_one(token) as usize) & (SHARDS - 1)]
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
        let mut shard = self.shard(token).lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.get(token)?;
        if entry.generation == generation && now < entry.token.exp.saturating_add(leeway) {
            return Some(entry.token.clone());
        }
        shard.remove(token);
        None
    }

    /// Remembers a token that passed every check under `generation`.
    pub fn insert(&self, token: &str, verified: Arc<VerifiedToken>, generation: (u64, u64)) {
        if !self.enabled() {
            return;
        }
        let mut shard = self.shard(token).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(token) {
            if let Some(victim) = shard.keys().next().cloned() {
                shard.remove(&victim);
            }
        }
        shard.insert(
            token.into(),
            Entry {
                token: verified,
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
