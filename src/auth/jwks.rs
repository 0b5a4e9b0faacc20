//! JWKS per issuer: loaded from a file or URL, refreshed periodically and on an unknown
//! `kid` (rate-limited), the last good set kept in the store for restarts.

use crate::clock::SharedClock;
use crate::store::RevocationStore;

/// Signing keys of every configured issuer. Cheap to share (inside `App`).
pub struct Keyring {
    _store: RevocationStore,
    _clock: SharedClock,
}

impl Keyring {
    /// An empty keyring backed by `store` (for the last good JWKS).
    pub fn new(store: RevocationStore, clock: SharedClock) -> Self {
        Keyring { _store: store, _clock: clock }
    }
}

impl Keyring {
    /// Loads every issuer's keys.
    pub async fn load_all(&self, _c: &crate::config::Config, _m: &crate::metrics::Metrics) -> Result<(), String> {
        todo!()
    }
    /// Every issuer has keys.
    pub fn ready(&self, _c: &crate::config::Config) -> bool {
        todo!()
    }
}

/// Refreshes keys until shutdown.
pub async fn run_refresher(_app: std::sync::Arc<crate::App>, _s: tokio::sync::watch::Receiver<bool>) {}
