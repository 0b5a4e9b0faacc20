//! The revocation store (SPEC §1, §6): sled trees of revocation records, an expiry index,
//! group-committed durable writes and the sweeper.
//!
//! Layout (one sled database at `store.path`):
//! - trees `jti`, `sid`, `sub`: key = `u16 BE issuer length ‖ issuer ‖ value`,
//!   value = version byte ‖ bincode([`StoredRecordV1`](record)).
//! - tree `expiry`: key = `u64 BE expires_at ‖ kind byte ‖ record key`, value empty.
//!   Scanned with `range(..=now)` by the sweeper.
//! - tree `logout_jti`: logout-token `jti`s already seen (back-channel replay defence);
//!   indexed in `expiry` like records, never listed or counted as revocations.
//! - tree `jwks`: last good JWKS document per issuer.
//! - tree `meta`: schema version, last sweep report.
//!
//! Record and index change together in one sled transaction. A write is acknowledged only
//! after `flush_async` covered it; concurrent writers share one flush (group commit).

mod record;
mod sweeper;

pub use record::{Kind, Record, Source};
pub use sweeper::run_sweeper;

use std::path::Path;

use crate::clock::SharedClock;

/// Store failures. Every one of them fails closed: the proxy answers 503, writers an error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error (I/O, corruption, ...).
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    /// The database is locked by another process (a running gateway).
    #[error("store {0} is in use by another process (is the gateway running?)")]
    Locked(String),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A caller error detected by the store (e.g. a cursor that does not decode).
    #[error("{0}")]
    Invalid(String),
}

/// A revocation to record (merged with any existing record of the same key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRevocation {
    /// jti, sid or sub.
    pub kind: Kind,
    /// The issuer it is scoped to.
    pub issuer: String,
    /// The jti / sid / sub value (`sha256:...` for jti-less tokens).
    pub value: String,
    /// For sid/sub: tokens with `iat <= issued_before` are dead. `None` for jti.
    pub issued_before: Option<u64>,
    /// When the record may be purged (seconds since the epoch).
    pub expires_at: u64,
    /// Free text from the operator.
    pub reason: Option<String>,
    /// Who revoked.
    pub source: Source,
}

/// Entries by kind (kept as counters, not scans).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// jti records.
    pub jti: u64,
    /// sid records.
    pub sid: u64,
    /// sub records.
    pub sub: u64,
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SweepReport {
    /// When it ran (seconds since the epoch).
    pub at: u64,
    /// Revocation records purged (with their index entries).
    pub purged: u64,
    /// Seen logout-token jtis purged.
    pub purged_logout_jtis: u64,
    /// Wall time it took, in milliseconds.
    pub duration_ms: u64,
}

/// Result of `check-store`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConsistencyReport {
    /// Records in the jti/sid/sub/logout_jti trees.
    pub records: u64,
    /// Entries in the expiry index.
    pub index_entries: u64,
    /// Records whose index entry is missing.
    pub records_without_index: u64,
    /// Index entries whose record is missing or has another expiry.
    pub index_without_record: u64,
    /// Whether orphans were removed (with `repair`).
    pub repaired: bool,
}

/// Outcome of remembering a logout token's `jti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenLogout {
    /// First time: recorded.
    New,
    /// The same token (same fingerprint) was seen before.
    Repeat,
    /// Another token with the same `jti` was seen before.
    Conflict,
}

/// Cheap, cloneable handle to the open store (an `Arc` inside).
#[derive(Clone)]
pub struct RevocationStore {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    _db: sled::Db,
    _clock: SharedClock,
}

impl std::fmt::Debug for RevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationStore").finish_non_exhaustive()
    }
}

/// How long a revocation is kept when the operator gave no explicit expiry (SPEC §1):
/// `jti`: `token_exp + leeway` when known, else `now + max_lifetime + leeway`;
/// `sid`/`sub`: `issued_before + max_lifetime + leeway`.
pub fn default_expires_at(
    kind: Kind,
    now: u64,
    token_exp: Option<u64>,
    issued_before: Option<u64>,
    max_lifetime: u64,
    leeway: u64,
) -> u64 {
    match kind {
        Kind::Jti => match token_exp {
            Some(exp) => exp.saturating_add(leeway),
            None => now.saturating_add(max_lifetime).saturating_add(leeway),
        },
        Kind::Sid | Kind::Sub => issued_before
            .unwrap_or(now)
            .saturating_add(max_lifetime)
            .saturating_add(leeway),
    }
}

impl RevocationStore {
    /// Opens (or creates) the database at `path` with a page cache of `cache_bytes`.
    /// Fails with [`StoreError::Locked`] when another process has it open.
    pub fn open(path: &Path, cache_bytes: u64, clock: SharedClock) -> Result<Self, StoreError> {
        todo!("{path:?} {cache_bytes} {}", clock.now())
    }

    /// Records a revocation, merging with an existing record of the same key (the later
    /// `issued_before` and the later `expires_at` win; `revoked_at` is now; reason/source
    /// of the newest call). Returns the stored record once it is durable.
    pub async fn revoke(&self, rev: NewRevocation) -> Result<Record, StoreError> {
        todo!("{rev:?}")
    }

    /// Several revocations, one durable flush for all (bulk paths).
    pub async fn revoke_many(&self, revs: Vec<NewRevocation>) -> Result<Vec<Record>, StoreError> {
        todo!("{revs:?}")
    }

    /// Removes a revocation (record and index together). `Ok(false)` if there was none.
    /// Durable before it returns.
    pub async fn unrevoke(&self, kind: Kind, issuer: &str, value: &str) -> Result<bool, StoreError> {
        todo!("{kind:?} {issuer} {value}")
    }

    /// The record of that key, if any (expired-but-unswept records included).
    pub fn get(&self, kind: Kind, issuer: &str, value: &str) -> Result<Option<Record>, StoreError> {
        todo!("{kind:?} {issuer} {value}")
    }

    /// Hot path: which revocation (if any) matches an access token with these claims.
    /// jti matches on `(issuer, jti)`; sid/sub match when `iat <= issued_before`.
    /// Records whose `expires_at` has passed no longer match.
    pub fn find_match(
        &self,
        issuer: &str,
        jti: &str,
        sid: Option<&str>,
        sub: Option<&str>,
        iat: u64,
    ) -> Result<Option<Kind>, StoreError> {
        todo!("{issuer} {jti} {sid:?} {sub:?} {iat}")
    }

    /// Records in key order (kind, issuer, value), optionally of one kind, starting after
    /// the opaque `after` cursor; returns at most `limit` and the cursor of the next page.
    pub fn list(
        &self,
        kind: Option<Kind>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<String>), StoreError> {
        todo!("{kind:?} {after:?} {limit}")
    }

    /// Entries by kind.
    pub fn counts(&self) -> Counts {
        todo!()
    }

    /// Purges every record and seen logout jti whose `expires_at < now`, in batches of
    /// `batch`; each entry is removed with its index entry in one transaction that
    /// re-checks the expiry. Durable before it returns.
    pub async fn sweep_due(&self, now: u64, batch: usize) -> Result<SweepReport, StoreError> {
        todo!("{now} {batch}")
    }

    /// The last sweep's report (persisted in `meta`).
    pub fn last_sweep(&self) -> Option<SweepReport> {
        todo!()
    }

    /// Offline consistency check of records against the expiry index.
    pub fn check_consistency(&self, repair: bool) -> Result<ConsistencyReport, StoreError> {
        todo!("{repair}")
    }

    /// Keeps the last good JWKS document of `issuer` (durably).
    pub async fn save_jwks(&self, issuer: &str, jwks: &[u8]) -> Result<(), StoreError> {
        todo!("{issuer} {}", jwks.len())
    }

    /// The last good JWKS document of `issuer`, if one was saved.
    pub fn load_jwks(&self, issuer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        todo!("{issuer}")
    }

    /// Remembers a back-channel logout token's `jti` until `expires_at`. `fingerprint` is
    /// the SHA-256 of the whole logout token, to tell a repeat from a conflict. Durable.
    pub async fn remember_logout_jti(
        &self,
        issuer: &str,
        jti: &str,
        fingerprint: [u8; 32],
        expires_at: u64,
    ) -> Result<SeenLogout, StoreError> {
        todo!("{issuer} {jti} {fingerprint:?} {expires_at}")
    }

    /// Waits until everything written so far is on disk (shared with concurrent callers).
    pub async fn flush(&self) -> Result<(), StoreError> {
        todo!()
    }

    /// A cheap read that fails when the store is unusable (for `/healthz`).
    pub fn probe(&self) -> Result<(), StoreError> {
        todo!()
    }

    /// Bytes used on disk.
    pub fn size_on_disk(&self) -> u64 {
        todo!()
    }

    /// Number of fsyncs (flushes) performed since open; for metrics and benchmarks.
    pub fn flush_count(&self) -> u64 {
        todo!()
    }
}

impl RevocationStore {
    /// `(sweeper runs, entries purged)` since open; for metrics.
    pub fn sweep_totals(&self) -> (u64, u64) {
        todo!()
    }
}
