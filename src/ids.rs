//! Random identifiers that need no cryptographic strength: the proxy's `X-Request-Id`
//! seed, the demo's session and token ids, a store's id and a cluster epoch. Nothing here
//! may be used for a secret.

use std::hash::{BuildHasher, Hasher};

/// A value that differs between calls and between processes: the current time and the
/// process id hashed under a fresh [`std::collections::hash_map::RandomState`] (randomly
/// keyed per process, and a new key for every call). Not unpredictable enough for secrets.
pub(crate) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successive_values_differ() {
        let values: std::collections::HashSet<u64> = (0..64).map(|_| random_u64()).collect();
        assert_eq!(values.len(), 64);
    }
}
