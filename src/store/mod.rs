//! The revocation store (SPEC §1, §6): sled trees of revocation records, an expiry index,
//! group-committed durable writes, an acknowledgement mark that makes damage visible, and
//! the sweeper.
//!
//! Layout (one sled database at `store.path`, plus the mark file beside it):
//! - trees `jti`, `sid`, `sub`: key = `u16 BE issuer length ‖ issuer ‖ value`,
//!   value = version byte ‖ bincode([`StoredRecordV1`](record)).
//! - tree `expiry`: key = `u64 BE expires_at ‖ kind byte ‖ record key`, value empty.
//!   Scanned with `range(..now)` by the sweeper: an entry goes once `expires_at < now`.
//! - tree `logout_jti`: logout-token `jti`s already seen (back-channel replay defence);
//!   indexed in `expiry` like records, never listed or counted as revocations.
//! - tree `jwks`: last good JWKS document per issuer.
//! - tree `meta`: schema version, last sweep report, commit sequence, store id.
//! - file `<store.path>.hwm` ([`MARK_SUFFIX`]): the acknowledgement mark (see below).
//!
//! Record and index change together in one sled transaction.
//!
//! # Durable acknowledgement (group commit)
//!
//! A write is acknowledged only after a *commit* covered it; concurrent writers share one
//! commit ([`RevocationStore::flush`]). A commit: (1) takes a new commit sequence number
//! and writes it into `meta` (after every write it covers, so in sled's log order too);
//! (2) has sled write its buffers (`Db::flush`, which on Linux ends in `sync_file_range`
//! only: that neither persists a grown file's size nor flushes the drive's cache);
//! (3) `fdatasync`s the `db` file itself, and `fsync`s any new file under `blobs/` (sled
//! writes large values there without any sync) and that directory; (4) writes the mark
//! (below) and `fdatasync`s it. Only then do the writers get their answer. A commit is one
//! thread hop to the blocking pool; `revgate_store_flushes_total` counts commits.
//!
//! # Damage is never silent (the acknowledgement mark)
//!
//! sled's recovery reads its log up to the first message that fails its checksum and
//! drops (and zeroes) everything after it, as it would a torn tail; a truncated file ends
//! the log early. Either way sled opens "fine" with part of the data. So the store keeps
//! its own account outside sled's log: the mark file `<store.path>.hwm` beside the store
//! directory (it survives the directory's removal) holds, for the last commit, its
//! sequence, the store id and the number of jti/sid/sub records as of that commit. It
//! is written after the commit's data is durable, so it never claims more than the disk
//! holds. Two alternating slots with checksums make a torn mark write fall back to the
//! previous commit (`mark.rs`).
//!
//! At open (and at every reopen by [`RevocationStore::recover`]) the store compares what
//! sled gave it with the mark, reusing the one key scan the open does anyway (counters and
//! presence filter):
//! - the mark is there but the store directory or its `db` file is not: refused, before
//!   sled could create an empty store;
//! - the sequence in `meta` is lower than the mark's: sled lost acknowledged commits;
//! - equal sequence but fewer records of some kind than the mark counted: lost records.
//!   Exact because a commit takes its sequence and its counts under the write side of a
//!   gate whose read side every transaction that changes a count holds (with its counter
//!   update), and because every transaction that *removes* records (unrevoke, sweep)
//!   also raises the sequence in `meta` in the same transaction: a log prefix showing the
//!   mark's sequence can hold later additions, never later removals;
//! - a store id in `meta` other than the mark's: another store was put in its place;
//! - an unreadable mark, or sled itself reporting corruption while opening or scanning.
//!
//! A higher sequence than the mark's is fine (a crash between a commit's data and its
//! mark). Any shortfall is [`StoreError::Damaged`]: `serve` exits 1 with one line naming
//! the store, what is missing and how to recover; `check-store` says the same and exits 1.
//! A store without a mark (new, or from a release before marks) is adopted: the mark is
//! created at open. [`OpenMode::Salvage`] lets `export --offline` read what a damaged
//! store still holds; `import --offline`, the documented recovery, goes through
//! [`RevocationStore::open_for_restore`]: the damaged directory is moved aside, a new
//! store under the same (re-based) mark gets every record sled can still read from it,
//! then the export.
//!
//! While running, [`RevocationStore::watch_files`] (every [`RECOVERY_INTERVAL`], from
//! [`run_recovery`]) checks that `db` and the mark are still the files the store has open
//! and still open for writing; otherwise the store is degraded: the proxy fails closed
//! (503), `/healthz` answers 503, writes are refused. The recovery reopens the database
//! only when its `db` file is still there and passes the same check against the mark, so
//! it never reopens into an emptier store.

mod keys;
mod mark;
mod presence;
mod record;
mod sweeper;

pub use keys::{MAX_ISSUER_BYTES, MAX_VALUE_BYTES};
pub use mark::MARK_SUFFIX;
pub use record::{Kind, Record, Source};
pub use sweeper::{
    run_recovery, run_sweeper, run_sweeper_following, RECOVERY_INTERVAL, SWEEP_BATCH,
};

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError, Transactional,
};

use record::StoredRecordV1;

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
    /// The store cannot serve right now (it is degraded or being reopened).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store holds less than it had acknowledged, or cannot be checked (SPEC §6
    /// "Damage is never silent"). Its text is the one line an operator needs.
    #[error("{0}")]
    Damaged(Damage),
}

/// A store that holds less than it had acknowledged: which store and what is missing;
/// displays as one line that also says how to recover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// `store.path`.
    pub store: std::path::PathBuf,
    /// What is missing or wrong, in operator words.
    pub problem: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "store {} is damaged: {}; to recover, restore your latest export with \
             `revgate import EXPORT.ndjson --offline --config FILE` (it moves the damaged \
             store aside, keeps what sled can still read of it and adds the export; with no \
             export, import an empty file)",
            self.store.display(),
            self.problem
        )
    }
}

/// What [`RevocationStore::open_for_restore`] did with a damaged store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// What was wrong with it.
    pub damage: Damage,
    /// Where the damaged store directory was moved (`None` when it was gone).
    pub moved_to: Option<std::path::PathBuf>,
    /// Unexpired records read back from it into the new store.
    pub salvaged: u64,
    /// Why salvaging stopped early, if it did (sled could not read further).
    pub salvage_error: Option<String>,
}

/// What the acknowledgement mark said when the store was opened (for `check-store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkReport {
    /// The mark file (`<store.path>.hwm`).
    pub path: std::path::PathBuf,
    /// The last acknowledged commit and its record counts; `None` without a (readable) mark.
    pub acknowledged: Option<(u64, Counts)>,
    /// The commit sequence the opened store itself holds.
    pub store_commit: u64,
}

/// How a caller opens the store: what happens when it holds less than it acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The gateway: damage is refused ([`StoreError::Damaged`]); a store without a mark
    /// is adopted (the mark is created).
    Serve,
    /// `check-store`: damage is refused; nothing is written at open (a missing mark is
    /// reported, not created; `--repair` commits as usual).
    Check,
    /// `export --offline`, `import --dry-run`: a readable damaged store opens, read only,
    /// so what it still holds can be saved ([`RevocationStore::damage`] says what is wrong).
    Salvage,
    /// Used by [`RevocationStore::open_for_restore`] once a damaged store was moved
    /// aside: a store that holds less than its mark (here: a missing one) is accepted as
    /// it is and the mark re-based at once.
    Restore,
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
    inner: Arc<Inner>,
}

/// Every sled tree the store uses, opened once.
struct Trees {
    jti: sled::Tree,
    sid: sled::Tree,
    sub: sled::Tree,
    logout: sled::Tree,
    expiry: sled::Tree,
    jwks: sled::Tree,
    meta: sled::Tree,
}

/// Group-commit state, guarded by an async mutex held across the fsync.
struct FlushState {
    /// Highest `write_seq` known to be on disk.
    flushed_seq: u64,
}

/// One open sled database and its trees. Replaced as a whole when the store is reopened
/// after an I/O failure (sled keeps its first I/O error forever: only a reopen clears it).
struct Handles {
    db: sled::Db,
    trees: Trees,
    files: StoreFiles,
}

/// sled's data file inside the store directory.
const DB_FILE: &str = "db";
/// sled's directory of values too large for a log message (one file each).
const BLOBS_DIR: &str = "blobs";

/// The files a commit makes durable itself, opened beside sled's own handles.
struct StoreFiles {
    /// The store directory.
    dir: std::path::PathBuf,
    /// sled's `db` file (the same inode sled writes; `fdatasync` is per inode).
    db: std::fs::File,
    /// `(device, inode)` of `db`, to notice it being removed or replaced.
    db_identity: (u64, u64),
    /// Blob files already synced (sled never rewrites one; it deletes them when unused).
    synced_blobs: std::sync::Mutex<std::collections::HashSet<std::ffi::OsString>>,
}

impl StoreFiles {
    fn open(dir: &Path) -> std::io::Result<StoreFiles> {
        let db = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(DB_FILE))?;
        let db_identity = mark::file_identity(&db)?;
        Ok(StoreFiles {
            dir: dir.to_path_buf(),
            db,
            db_identity,
            synced_blobs: Default::default(),
        })
    }

    /// `fdatasync` of `db`, then `fsync` of every blob file not synced yet and, when
    /// there was one, of the blob directory (its new entries).
    fn sync(&self) -> std::io::Result<()> {
        self.db.sync_data()?;
        let blobs = self.dir.join(BLOBS_DIR);
        let entries = match std::fs::read_dir(&blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut synced = self
            .synced_blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut present = std::collections::HashSet::with_capacity(synced.len());
        let mut new = false;
        for entry in entries {
            let name = entry?.file_name();
            if !synced.contains(&name) {
                match std::fs::File::open(blobs.join(&name)) {
                    Ok(f) => f.sync_all()?,
                    // sled removed it meanwhile (no longer referenced).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            std::fs::File::open(&blobs)?.sync_all()?;
        }
        *synced = present;
        Ok(())
    }

    /// `Err` naming the problem when `db` was removed or replaced (its directory deleted,
    /// say) or cannot be opened for writing any more (a read-only remount...).
    fn check_in_place(&self) -> Result<(), String> {
        mark::check_file_in_place(&self.dir.join(DB_FILE), self.db_identity, "store file")
    }
}

/// An I/O failure as a store error (marks the store degraded where `failed` sees it).
fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Sled(sled::Error::Io(e))
}

struct Inner {
    /// Where the database lives and its cache size (to reopen it).
    path: std::path::PathBuf,
    cache_bytes: u64,
    /// The open database; `None` only while [`RevocationStore::recover`] reopens it.
    /// Readers clone the `Arc` and never hold the lock across an `.await`.
    handles: std::sync::RwLock<Option<Arc<Handles>>>,
    /// Set when a write or flush failed with an I/O error: the store cannot make writes
    /// durable. Read on every proxied request (one atomic load); cleared by a successful
    /// [`RevocationStore::recover`] or flush.
    degraded: AtomicBool,
    clock: SharedClock,
    /// Records per kind (index = kind byte); initialised by one scan at open.
    counts: [AtomicU64; 3],
    /// Bumped after every committed write; `flush` compares it with `flushed_seq`.
    write_seq: AtomicU64,
    flush_state: tokio::sync::Mutex<FlushState>,
    /// Flushes (fsyncs) performed since open.
    flushes: AtomicU64,
    /// Message of the last flush when it failed; cleared by the next good flush.
    flush_failure: std::sync::Mutex<Option<String>>,
    /// Sweeps run since open.
    sweep_runs: AtomicU64,
    /// Entries (records and seen logout jtis) purged since open.
    swept: AtomicU64,
    /// Presence filter in front of the record trees (misses skip sled).
    presence: Arc<presence::Presence>,
    /// Where the acknowledgement mark lives (`<path>.hwm`).
    mark_path: std::path::PathBuf,
    /// The open mark; `None` until the first commit creates it (or when opened read only).
    /// Locked by commits only, which the flush lock already serialises.
    mark: std::sync::Mutex<Option<mark::Mark>>,
    /// Highest commit sequence taken (by a commit or a removing transaction).
    commit_seq: AtomicU64,
    /// Identity of this store (in `meta` and in the mark).
    store_id: u64,
    /// Read side: held by every transaction that changes a record count, together with
    /// its counter update. Write side: held by a commit while it takes its sequence and
    /// its counts, so the mark's counts are exactly those of the state at that sequence.
    /// Never held across an `.await`.
    gate: std::sync::RwLock<()>,
    /// What was wrong with the store when it was opened in a mode that tolerates damage.
    damage: Option<Damage>,
    /// What the mark said at open.
    mark_report: MarkReport,
}

impl std::fmt::Debug for RevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationStore").finish_non_exhaustive()
    }
}

/// Schema version of the whole database layout, kept in `meta` under [`META_SCHEMA`].
pub const SCHEMA_VERSION: u32 = 1;
/// Records per batch when [`RevocationStore::open_for_restore`] salvages a damaged store
/// (one transaction per kind and one commit per batch).
pub const SALVAGE_BATCH: usize = 1024;
/// Most records one [`RevocationStore::list`] page returns, whatever the caller asks.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// `meta` key of the schema version (`u32 BE`).
const META_SCHEMA: &[u8] = b"schema_version";
/// `meta` key of the last [`SweepReport`] (version byte ‖ bincode).
const META_LAST_SWEEP: &[u8] = b"last_sweep";
/// `meta` key of the commit sequence (`u64 BE`), compared with the mark at open.
const META_COMMIT_SEQ: &[u8] = b"commit_seq";
/// `meta` key of the store id (`u64 BE`), also in the mark.
const META_STORE_ID: &[u8] = b"store_id";
/// Version byte of the stored sweep report.
const SWEEP_REPORT_VERSION: u8 = 1;
/// Text sled 0.34 puts in the `Io` error when another process holds the database's file
/// lock (`Config::try_lock` in sled's `config.rs`).
const SLED_LOCK_MESSAGE: &str = "could not acquire lock";

type TxResult<T> = ConflictableTransactionResult<T, StoreError>;

/// Aborts a transaction with a store error.
fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

/// Flattens a transaction error into a store error.
fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

/// `expires_at` of a stored value of the tree with kind byte `kind`.
fn stored_expiry(kind: u8, bytes: &[u8]) -> Result<u64, StoreError> {
    if kind == keys::KIND_LOGOUT {
        Ok(keys::decode_logout(bytes)?.1)
    } else {
        Ok(record::decode_head(bytes)?.expires_at)
    }
}

/// Merges a new revocation into the existing stored record (SPEC §1): the later
/// `issued_before` and the later `expires_at` win, `revoked_at` is now, reason and source
/// come from the newest call (the old reason is kept when the new call gives none).
fn merge(
    old: Option<StoredRecordV1>,
    rev: &NewRevocation,
    now: u64,
    revoked_at: Option<u64>,
) -> StoredRecordV1 {
    // jti records carry no cutoff; sid/sub always carry one ("now" unless given).
    let issued_before = match rev.kind {
        Kind::Jti => None,
        Kind::Sid | Kind::Sub => Some(rev.issued_before.unwrap_or(now)),
    };
    let new = StoredRecordV1 {
        revoked_at: revoked_at.unwrap_or(now),
        issued_before,
        expires_at: rev.expires_at,
        reason: rev.reason.clone(),
        source: record::source_byte(rev.source),
    };
    match old {
        None => new,
        // An imported record older than the stored one keeps the stored reason/source.
        Some(old) if revoked_at.is_some_and(|r| r < old.revoked_at) => StoredRecordV1 {
            issued_before: match (old.issued_before, new.issued_before) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            expires_at: old.expires_at.max(new.expires_at),
            ..old
        },
        Some(old) => StoredRecordV1 {
            issued_before: match (old.issued_before, new.issued_before) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => b.or(a),
            },
            expires_at: old.expires_at.max(new.expires_at),
            reason: new.reason.or(old.reason),
            ..new
        },
    }
}

/// Inside a transaction over a kind tree and the expiry index: merges `rev` into the
/// record at `key` and moves its index entry. Returns the merged record and whether it is
/// new. Shared by plain revocations and back-channel logouts.
fn merge_in_tx(
    records: &sled::transaction::TransactionalTree,
    expiry: &sled::transaction::TransactionalTree,
    key: &[u8],
    rev: &NewRevocation,
    now: u64,
    revoked_at: Option<u64>,
) -> TxResult<(StoredRecordV1, bool)> {
    let kind = keys::kind_byte(rev.kind);
    let old = match records.get(key)? {
        Some(bytes) => match record::decode_stored(&bytes) {
            Ok(old) => Some(old),
            Err(e) => return abort(e),
        },
        None => None,
    };
    let old_expiry = old.as_ref().map(|o| o.expires_at);
    let was_new = old.is_none();
    let merged = merge(old, rev, now, revoked_at);
    let value = match record::encode_stored(&merged) {
        Ok(v) => v,
        Err(e) => return abort(e),
    };
    if let Some(old_expiry) = old_expiry.filter(|&e| e != merged.expires_at) {
        expiry.remove(keys::index_key(old_expiry, kind, key))?;
    }
    // Always (re)written: also heals a missing index entry.
    expiry.insert(
        keys::index_key(merged.expires_at, kind, key),
        sled::IVec::default(),
    )?;
    records.insert(key, value)?;
    Ok((merged, was_new))
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

/// How long [`RevocationStore::recover`] waits for the old database to be released.
pub const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Poll period while waiting for the old database to be released.
const REOPEN_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Opens the sled database at `path` and its trees; creates the schema version or checks it.
fn open_handles(path: &Path, cache_bytes: u64) -> Result<Handles, StoreError> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(|e| match e {
            sled::Error::Io(ref io) if io.to_string().contains(SLED_LOCK_MESSAGE) => {
                StoreError::Locked(path.display().to_string())
            }
            other => StoreError::Sled(other),
        })?;
    let trees = Trees {
        jti: db.open_tree("jti")?,
        sid: db.open_tree("sid")?,
        sub: db.open_tree("sub")?,
        logout: db.open_tree("logout_jti")?,
        expiry: db.open_tree("expiry")?,
        jwks: db.open_tree("jwks")?,
        meta: db.open_tree("meta")?,
    };
    match trees.meta.get(META_SCHEMA)? {
        None => {
            trees
                .meta
                .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()[..])?;
            db.flush()?;
            tracing::info!(path = %path.display(), schema = SCHEMA_VERSION, "created revocation store");
        }
        Some(v) => {
            let version = <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("malformed schema version".to_string()))?;
            if version != SCHEMA_VERSION {
                return Err(StoreError::Corrupt(format!(
                    "store schema version {version} is not supported (expected {SCHEMA_VERSION})"
                )));
            }
        }
    }
    let files = StoreFiles::open(path).map_err(io_error)?;
    Ok(Handles { db, trees, files })
}

/// Counts the records of each kind (one key scan), filling `presence` when given.
fn scan_records(
    trees: &Trees,
    presence: Option<&presence::Presence>,
) -> Result<[u64; 3], StoreError> {
    let mut scanned = [0u64; 3];
    for kind in Kind::ALL {
        let kb = keys::kind_byte(kind);
        for key in trees.tree(kind).iter().keys() {
            let key = key?;
            if let Some(p) = presence {
                p.insert(kb, &key);
            }
            scanned[kb as usize] += 1;
        }
    }
    Ok(scanned)
}

/// The commit sequence (0 when none was ever written) and the store id kept in `meta`.
fn read_commit_meta(meta: &sled::Tree) -> Result<(u64, Option<u64>), StoreError> {
    let word = |key: &[u8]| -> Result<Option<u64>, StoreError> {
        match meta.get(key)? {
            None => Ok(None),
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(|b| Some(u64::from_be_bytes(b)))
                .map_err(|_| {
                    StoreError::Corrupt(format!("malformed {}", String::from_utf8_lossy(key)))
                }),
        }
    };
    Ok((word(META_COMMIT_SEQ)?.unwrap_or(0), word(META_STORE_ID)?))
}

/// Inside a transaction that removes records: raises the commit sequence in `meta` to
/// `seq` (never lowers it), so that a log prefix holding the removal shows a sequence
/// above any mark that counted the removed records.
fn raise_commit_seq(meta: &sled::transaction::TransactionalTree, seq: u64) -> TxResult<()> {
    let current = meta
        .get(META_COMMIT_SEQ)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes);
    if seq > current {
        meta.insert(META_COMMIT_SEQ, &seq.to_be_bytes()[..])?;
    }
    Ok(())
}

fn describe_counts(c: &[u64; 3]) -> String {
    format!("jti {}, sid {}, sub {}", c[0], c[1], c[2])
}

/// What the opened store lacks compared with its mark, in operator words; `None` when it
/// holds at least what the mark acknowledged.
fn shortfall(
    mark_path: &Path,
    acked: &mark::MarkState,
    seq: u64,
    id: Option<u64>,
    counts: &[u64; 3],
) -> Option<String> {
    if let Some(id) = id.filter(|&id| id != acked.store_id) {
        return Some(format!(
            "it is not the store its acknowledgement mark {} belongs to (store id {id:016x}, \
             the mark's {:016x})",
            mark_path.display(),
            acked.store_id
        ));
    }
    if seq < acked.seq {
        return Some(format!(
            "it holds records {} up to commit {seq}, but {} acknowledged commit {} with \
             records {} (sled dropped what followed a damaged or missing part)",
            describe_counts(counts),
            mark_path.display(),
            acked.seq,
            describe_counts(&acked.counts)
        ));
    }
    if seq == acked.seq && counts.iter().zip(&acked.counts).any(|(n, a)| n < a) {
        return Some(format!(
            "it holds records {} at commit {seq}, fewer than the {} that {} acknowledged",
            describe_counts(counts),
            describe_counts(&acked.counts),
            mark_path.display()
        ));
    }
    None
}

/// A fresh store id: random per process and instant (std's hasher keys), never 0.
fn new_store_id() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// sled reporting corruption while opening or reading: the store cannot be trusted.
fn unreadable(path: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Sled(ref inner @ sled::Error::Corruption { .. }) => {
            StoreError::Damaged(Damage {
                store: path.to_path_buf(),
                problem: format!("sled cannot read it ({inner})"),
            })
        }
        other => other,
    }
}

impl RevocationStore {
    /// Opens (or creates) the database at `path` with a page cache of `cache_bytes`, as the
    /// gateway does ([`OpenMode::Serve`]). Fails with [`StoreError::Locked`] when another
    /// process has it open, with [`StoreError::Damaged`] when it holds less than its
    /// acknowledgement mark says it acknowledged.
    pub fn open(path: &Path, cache_bytes: u64, clock: SharedClock) -> Result<Self, StoreError> {
        Self::open_with(path, cache_bytes, clock, OpenMode::Serve)
    }

    /// [`open`](Self::open) in the given [`OpenMode`]. The check against the mark reuses
    /// the one key scan the open needs anyway (counters and presence filter).
    pub fn open_with(
        path: &Path,
        cache_bytes: u64,
        clock: SharedClock,
        mode: OpenMode,
    ) -> Result<Self, StoreError> {
        let mark_path = mark::path_for(path).ok_or_else(|| {
            StoreError::Invalid(format!(
                "store path {} must name a directory (its acknowledgement mark is kept beside it)",
                path.display()
            ))
        })?;
        let tolerate = matches!(mode, OpenMode::Salvage | OpenMode::Restore);
        let damaged = |problem: String| Damage {
            store: path.to_path_buf(),
            problem,
        };
        let mut damage = None;
        let acknowledged = match mark::read(&mark_path) {
            mark::Found::Missing => None,
            mark::Found::Valid(m) => Some(m),
            mark::Found::Unreadable(why) => {
                let d = damaged(format!(
                    "its acknowledgement mark {} is unreadable ({why}), so what it holds \
                         cannot be checked",
                    mark_path.display()
                ));
                if !tolerate {
                    return Err(StoreError::Damaged(d));
                }
                damage = Some(d);
                None
            }
        };
        // Checked before sled runs: sled would silently create an empty store.
        let existed = path.join(DB_FILE).is_file();
        if let (Some(m), false) = (&acknowledged, existed) {
            let what = if path.exists() {
                format!("its {DB_FILE} file is missing")
            } else {
                "the store directory is missing".to_string()
            };
            let d = damaged(format!(
                "{what}, but {} says commit {} was acknowledged with records {}",
                mark_path.display(),
                m.seq,
                describe_counts(&m.counts)
            ));
            if mode != OpenMode::Restore {
                return Err(StoreError::Damaged(d));
            }
            damage = Some(d);
        }
        let h = open_handles(path, cache_bytes).map_err(|e| unreadable(path, e))?;
        // One scan of the record trees at open: the per-kind counters (Tree::len would be
        // a scan too), the check against the mark, and the presence filter, which is then
        // ready before any request.
        let presence = Arc::new(presence::Presence::default());
        let scanned = scan_records(&h.trees, Some(&presence)).map_err(|e| unreadable(path, e))?;
        presence.mark_ready();
        let (db_seq, db_id) = read_commit_meta(&h.trees.meta)?;
        if let Some(m) = &acknowledged {
            if let Some(problem) = shortfall(&mark_path, m, db_seq, db_id, &scanned) {
                let d = damaged(problem);
                if !tolerate {
                    return Err(StoreError::Damaged(d));
                }
                damage = Some(d);
            }
        }
        let store_id = db_id
            .or(acknowledged.map(|m| m.store_id))
            .unwrap_or_else(new_store_id);
        let writes = matches!(mode, OpenMode::Serve | OpenMode::Restore);
        let mut commit_now = false;
        if writes && db_id.is_none() {
            h.trees
                .meta
                .insert(META_STORE_ID, &store_id.to_be_bytes()[..])?;
            commit_now = true;
        }
        // Adopt a store without a mark; re-base the mark of an accepted damaged store.
        if writes && (acknowledged.is_none() || (mode == OpenMode::Restore && damage.is_some())) {
            commit_now = true;
        }
        let open_mark = match (&acknowledged, writes && damage.is_none()) {
            (Some(_), true) => Some(mark::Mark::open(&mark_path).map_err(io_error)?),
            // Created (or replaced) by the first commit.
            _ => None,
        };
        let counts = scanned.map(AtomicU64::new);
        let mark_report = MarkReport {
            path: mark_path.clone(),
            acknowledged: acknowledged.map(|m| {
                (
                    m.seq,
                    Counts {
                        jti: m.counts[0],
                        sid: m.counts[1],
                        sub: m.counts[2],
                    },
                )
            }),
            store_commit: db_seq,
        };
        let store = RevocationStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                cache_bytes,
                handles: std::sync::RwLock::new(Some(Arc::new(h))),
                degraded: AtomicBool::new(false),
                clock,
                counts,
                write_seq: AtomicU64::new(0),
                flush_state: tokio::sync::Mutex::new(FlushState { flushed_seq: 0 }),
                flushes: AtomicU64::new(0),
                flush_failure: std::sync::Mutex::new(None),
                sweep_runs: AtomicU64::new(0),
                swept: AtomicU64::new(0),
                presence,
                mark_path,
                mark: std::sync::Mutex::new(open_mark),
                commit_seq: AtomicU64::new(db_seq.max(acknowledged.map_or(0, |m| m.seq))),
                store_id,
                gate: std::sync::RwLock::new(()),
                damage: damage.clone(),
                mark_report,
            }),
        };
        if writes && !existed {
            // A new store: its directory entries must be durable like its data.
            mark::sync_parent(&path.join(DB_FILE))
                .and_then(|()| mark::sync_parent(path))
                .map_err(io_error)?;
        }
        if commit_now {
            let h = store.handles()?;
            store.commit_blocking(&h)?;
            if let Some(d) = &damage {
                tracing::warn!(store = %path.display(), problem = %d.problem, "damaged store accepted as it is; its acknowledgement mark is re-based");
            } else if acknowledged.is_none() {
                tracing::info!(mark = %store.inner.mark_path.display(), "acknowledgement mark created");
            }
        }
        let c = store.counts();
        tracing::info!(
            path = %path.display(),
            jti = c.jti,
            sid = c.sid,
            sub = c.sub,
            commit = store.inner.commit_seq.load(Ordering::SeqCst),
            recovered = store.handles()?.db.was_recovered(),
            "revocation store open"
        );
        Ok(store)
    }

    /// What was wrong with the store at open, when its [`OpenMode`] tolerates damage.
    pub fn damage(&self) -> Option<&Damage> {
        self.inner.damage.as_ref()
    }

    /// What the acknowledgement mark said at open.
    pub fn mark_report(&self) -> &MarkReport {
        &self.inner.mark_report
    }

    /// Opens the store for an offline import, the recovery a damage refusal names (SPEC
    /// §6). A healthy store opens as with [`open`](Self::open). A damaged one is moved
    /// aside (`<path>.damaged-<unix seconds>`, kept for analysis), a new store is created
    /// in its place under the same mark (re-based), and every unexpired record sled can
    /// still read from the old one is imported into it, in batches of [`SALVAGE_BATCH`];
    /// the caller then imports its export. A fresh log, because an import into the
    /// damaged log itself can vanish again at the next open (sled keeps skipping a
    /// segment whose header is damaged).
    pub async fn open_for_restore(
        path: &Path,
        cache_bytes: u64,
        clock: SharedClock,
    ) -> Result<(Self, Option<Restored>), StoreError> {
        let damage = match Self::open(path, cache_bytes, clock.clone()) {
            Ok(store) => return Ok((store, None)),
            Err(StoreError::Damaged(d)) => d,
            Err(e) => return Err(e),
        };
        let moved_to = if path.exists() {
            let mut name = path.as_os_str().to_os_string();
            name.push(format!(".damaged-{}", clock.now()));
            let aside = std::path::PathBuf::from(name);
            std::fs::rename(path, &aside).map_err(io_error)?;
            mark::sync_parent(path).map_err(io_error)?;
            Some(aside)
        } else {
            None
        };
        let store = Self::open_with(path, cache_bytes, clock.clone(), OpenMode::Restore)?;
        let mut restored = Restored {
            damage,
            moved_to,
            salvaged: 0,
            salvage_error: None,
        };
        if let Some(aside) = restored.moved_to.clone() {
            // Under its new name the old store has no mark: it opens as sled reads it.
            match Self::open_with(&aside, cache_bytes, clock, OpenMode::Salvage) {
                Ok(old) => {
                    let now = store.now();
                    let mut batch = Vec::with_capacity(SALVAGE_BATCH);
                    let mut records = old.iter_records(None);
                    loop {
                        let done = match records.next() {
                            Some(Ok(r)) => {
                                if r.expires_at > now {
                                    batch.push(r);
                                }
                                false
                            }
                            Some(Err(e)) => {
                                restored.salvage_error = Some(e.to_string());
                                true
                            }
                            None => true,
                        };
                        if batch.len() >= SALVAGE_BATCH || (done && !batch.is_empty()) {
                            store.import_records(&batch).await?;
                            restored.salvaged += batch.len() as u64;
                            batch.clear();
                        }
                        if done {
                            break;
                        }
                    }
                }
                Err(e) => restored.salvage_error = Some(e.to_string()),
            }
        }
        Ok((store, Some(restored)))
    }

    /// The read side of the commit gate, for a transaction that changes a record count
    /// (held with its counter update; never across an `.await`).
    fn gate(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.inner
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A commit sequence number for a transaction that removes records (see
    /// [`raise_commit_seq`]). Taken under the gate's read side.
    fn reserve_commit_seq(&self) -> u64 {
        self.inner.commit_seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Per-kind counts as an array (kind byte order).
    fn count_array(&self) -> [u64; 3] {
        let c = self.counts();
        [c.jti, c.sid, c.sub]
    }

    /// One commit (blocking; callers serialise commits): sequence into `meta`, sled's
    /// buffers written, `db` (and new blobs) `fdatasync`ed, then the mark written and
    /// synced. See the module doc.
    fn commit_blocking(&self, h: &Handles) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner.flushes.fetch_add(1, Ordering::Relaxed);
        let state = {
            let _gate = inner
                .gate
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let seq = inner.commit_seq.fetch_add(1, Ordering::SeqCst) + 1;
            h.trees
                .meta
                .insert(META_COMMIT_SEQ, &seq.to_be_bytes()[..])?;
            mark::MarkState {
                seq,
                store_id: inner.store_id,
                counts: self.count_array(),
            }
        };
        h.db.flush()?;
        h.files.sync().map_err(io_error)?;
        let mut open_mark = inner
            .mark
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match open_mark.as_ref() {
            Some(m) => m.write(&state).map_err(io_error)?,
            None => {
                *open_mark = Some(mark::Mark::create(&inner.mark_path, &state).map_err(io_error)?)
            }
        }
        Ok(())
    }

    /// The open database, or [`StoreError::Unavailable`] while it is being reopened.
    fn handles(&self) -> Result<Arc<Handles>, StoreError> {
        self.inner
            .handles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store is being reopened".to_string()))
    }

    /// Passes `e` through, marking the store degraded when it is an I/O failure (a full or
    /// read-only disk...): from then on the proxy fails closed until [`recover`](Self::recover)
    /// succeeds.
    fn failed(&self, e: StoreError) -> StoreError {
        if matches!(e, StoreError::Sled(sled::Error::Io(_))) {
            self.mark_degraded(&e.to_string());
        }
        e
    }

    fn mark_degraded(&self, msg: &str) {
        if !self.inner.degraded.swap(true, Ordering::SeqCst) {
            tracing::error!(error = %msg, "revocation store cannot persist writes: failing closed until it recovers");
        }
        self.set_flush_failure(Some(msg.to_string()));
    }

    /// Cheap check for the hot path (one atomic load): `Err` while the store cannot make
    /// writes durable (a write or flush failed with an I/O error and no recovery
    /// succeeded since). The proxy answers 503 then instead of trusting the store.
    pub fn check_durable(&self) -> Result<(), StoreError> {
        if self.inner.degraded.load(Ordering::Relaxed) {
            Err(StoreError::Unavailable(
                "the last write to disk failed".to_string(),
            ))
        } else {
            Ok(())
        }
    }

    /// Whether the store is degraded (see [`check_durable`](Self::check_durable)).
    pub fn is_degraded(&self) -> bool {
        self.inner.degraded.load(Ordering::Relaxed)
    }

    /// Tries to leave the degraded state: sled keeps its first I/O error for the life of
    /// the database, so the database is closed and reopened (replaying its log: every
    /// acknowledged write is there, unacknowledged ones may not be), checked against the
    /// acknowledgement mark like at open, then a commit must succeed. Never reopens into
    /// an emptier store: not when its `db` file is gone (sled would create an empty one),
    /// not when it holds less than the mark or is another store. Waits at most
    /// [`REOPEN_WAIT`] for other users (an export stream...) to let go of the old
    /// database; on any failure the store stays degraded and the caller retries later.
    /// `Ok(true)` when the store is healthy again.
    pub async fn recover(&self) -> Result<bool, StoreError> {
        if !self.is_degraded() {
            return Ok(true);
        }
        let db_file = self.inner.path.join(DB_FILE);
        if !db_file.is_file() {
            // The directory (or its file) was deleted: nothing to reopen. The old handles
            // stay, for reads; writes and the proxy stay refused until a restart.
            let msg = format!(
                "store file {} is gone: the store cannot be reopened (restart the gateway \
                 to get the recovery advice)",
                db_file.display()
            );
            self.set_flush_failure(Some(msg.clone()));
            return Err(StoreError::Unavailable(msg));
        }
        // No flush may run while the database is swapped.
        let mut state = self.inner.flush_state.lock().await;
        let old = self
            .inner
            .handles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(old) = old {
            let weak = Arc::downgrade(&old);
            drop(old);
            let deadline = tokio::time::Instant::now() + REOPEN_WAIT;
            while weak.strong_count() > 0 {
                if tokio::time::Instant::now() >= deadline {
                    // Still in use: put it back, try again later.
                    if let Some(old) = weak.upgrade() {
                        *self
                            .inner
                            .handles
                            .write()
                            .unwrap_or_else(|e| e.into_inner()) = Some(old);
                    }
                    return Ok(false);
                }
                tokio::time::sleep(REOPEN_POLL).await;
            }
        }
        let store = self.clone();
        let opened = tokio::task::spawn_blocking(move || store.reopen_checked())
            .await
            .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("reopen task failed: {e}"))));
        let h = match opened {
            Ok(h) => h,
            Err(e) => {
                if matches!(e, StoreError::Damaged(_)) {
                    tracing::error!(error = %e, "the reopened store holds less than it acknowledged; it stays closed");
                } else {
                    tracing::warn!(error = %e, "revocation store still unusable; retrying later");
                }
                self.set_flush_failure(Some(e.to_string()));
                return Err(e);
            }
        };
        *self
            .inner
            .handles
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(h));
        state.flushed_seq = self.inner.write_seq.load(Ordering::SeqCst);
        drop(state);
        self.set_flush_failure(None);
        self.inner.degraded.store(false, Ordering::SeqCst);
        tracing::info!(path = %self.inner.path.display(), "revocation store reopened and writable again");
        Ok(true)
    }

    /// Blocking part of [`recover`](Self::recover): reopen, recount, check against the
    /// mark and this store's id, then commit (the reopened log must accept a write before
    /// anyone trusts it; the commit also rewrites the mark).
    fn reopen_checked(&self) -> Result<Handles, StoreError> {
        let inner = &self.inner;
        let path = &inner.path;
        let h = open_handles(path, inner.cache_bytes).map_err(|e| unreadable(path, e))?;
        // Writes that never reached the disk are gone: recount.
        let scanned = scan_records(&h.trees, None).map_err(|e| unreadable(path, e))?;
        let (db_seq, db_id) = read_commit_meta(&h.trees.meta)?;
        let damaged = |problem: String| {
            StoreError::Damaged(Damage {
                store: path.clone(),
                problem,
            })
        };
        if db_id != Some(inner.store_id) {
            return Err(damaged(format!(
                "the store reopened after a failure is not the one opened at start (store id \
                 {:016x}, expected {:016x})",
                db_id.unwrap_or(0),
                inner.store_id
            )));
        }
        let open_mark = match mark::read(&inner.mark_path) {
            mark::Found::Valid(m) => {
                if let Some(problem) = shortfall(&inner.mark_path, &m, db_seq, db_id, &scanned) {
                    return Err(damaged(problem));
                }
                Some(mark::Mark::open(&inner.mark_path).map_err(io_error)?)
            }
            // Removed while running: the store is the one we had; the commit recreates it.
            mark::Found::Missing => None,
            mark::Found::Unreadable(why) => {
                return Err(damaged(format!(
                    "its acknowledgement mark {} became unreadable ({why})",
                    inner.mark_path.display()
                )))
            }
        };
        *inner
            .mark
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = open_mark;
        inner.commit_seq.fetch_max(db_seq, Ordering::SeqCst);
        for (counter, n) in inner.counts.iter().zip(scanned) {
            counter.store(n, Ordering::Relaxed);
        }
        self.commit_blocking(&h)?;
        Ok(h)
    }

    /// Checks (cheaply: a `stat` and an open for writing of each file) that the store's
    /// `db` file and its mark are still the files it has open, and still writable. If not
    /// — the directory was deleted, a file replaced, the file system remounted read only —
    /// the store is marked degraded: the proxy fails closed, `/healthz` answers 503 and
    /// writes are refused, until [`recover`](Self::recover) succeeds. Called every
    /// [`RECOVERY_INTERVAL`] by [`run_recovery`]; does nothing while degraded.
    pub fn watch_files(&self) {
        if self.is_degraded() {
            return;
        }
        let Ok(h) = self.handles() else { return };
        // A commit holding the mark (writing and syncing it) is not waited for: the mark
        // is checked at the next tick.
        let problem = h
            .files
            .check_in_place()
            .err()
            .or_else(|| match self.inner.mark.try_lock() {
                Ok(m) => m.as_ref().and_then(|m| m.check_in_place().err()),
                Err(std::sync::TryLockError::Poisoned(m)) => m
                    .into_inner()
                    .as_ref()
                    .and_then(|m| m.check_in_place().err()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            });
        if let Some(problem) = problem {
            self.mark_degraded(&problem);
        }
    }

    /// Records a revocation, merging with an existing record of the same key (the later
    /// `issued_before` and the later `expires_at` win; `revoked_at` is now; reason/source
    /// of the newest call). Returns the stored record once it is durable.
    pub async fn revoke(&self, rev: NewRevocation) -> Result<Record, StoreError> {
        let record = self.apply_revocation(&rev)?;
        self.flush().await?;
        Ok(record)
    }

    /// Several revocations, one durable flush for all (bulk paths).
    pub async fn revoke_many(&self, revs: Vec<NewRevocation>) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(revs.len());
        for rev in &revs {
            match self.apply_revocation(rev) {
                Ok(record) => out.push(record),
                Err(e) => {
                    // Do not leave the ones already applied waiting for the background
                    // flush; the caller still gets the error for the batch.
                    if !out.is_empty() {
                        if let Err(fe) = self.flush().await {
                            tracing::warn!(error = %fe, "flush after a failed bulk revocation failed");
                        }
                    }
                    return Err(e);
                }
            }
        }
        self.flush().await?;
        Ok(out)
    }

    /// Merges one revocation into the store in one transaction over its kind tree and the
    /// expiry index (not yet durable). Updates the counter and the write sequence.
    fn apply_revocation(&self, rev: &NewRevocation) -> Result<Record, StoreError> {
        self.apply_merge(rev, None).map(|(record, _)| record)
    }

    /// [`apply_revocation`](Self::apply_revocation) with an optional preserved
    /// `revoked_at` (imports); also says whether the key was new.
    fn apply_merge(
        &self,
        rev: &NewRevocation,
        revoked_at: Option<u64>,
    ) -> Result<(Record, bool), StoreError> {
        let h = self.handles()?;
        let key = keys::record_key(&rev.issuer, &rev.value)?;
        let now = self.inner.clock.now();
        let tree = h.trees.tree(rev.kind);
        let kb = keys::kind_byte(rev.kind);
        // Raised before the commit: no reader may see the record while the filter says no.
        self.inner.presence.insert(kb, &key);
        let _gate = self.gate();
        let result = (tree, &h.trees.expiry)
            .transaction(|(records, expiry)| {
                merge_in_tx(records, expiry, &key, rev, now, revoked_at)
            })
            .map_err(|e| self.failed(tx_error(e)));
        let (merged, was_new) = match result {
            Ok(v) => v,
            Err(e) => {
                self.inner.presence.remove(kb, &key);
                return Err(e);
            }
        };
        if !was_new {
            self.inner.presence.remove(kb, &key);
        }
        self.recorded(rev, was_new);
        Ok((
            merged.into_record(rev.kind, &rev.issuer, &rev.value)?,
            was_new,
        ))
    }

    /// Bookkeeping after a committed revocation: the per-kind counter and the write
    /// sequence of the group commit.
    fn recorded(&self, rev: &NewRevocation, was_new: bool) {
        if was_new {
            self.inner.counts[keys::kind_byte(rev.kind) as usize].fetch_add(1, Ordering::Relaxed);
        }
        self.wrote();
        tracing::debug!(kind = %rev.kind, merged = !was_new, "revocation recorded");
    }

    /// Imports whole records (backup restore, seeding): each merges as a revocation would
    /// (later `issued_before` and later `expires_at` win) but keeps its own `revoked_at`,
    /// `reason` and `source`. One durable flush for the batch. Returns, per record,
    /// whether its key was new (`true`) or merged into an existing record (`false`).
    pub async fn import_records(&self, records: &[Record]) -> Result<Vec<bool>, StoreError> {
        let h = self.handles()?;
        let now = self.inner.clock.now();
        let mut out = vec![false; records.len()];
        let mut failure = None;
        // One transaction per kind for the whole batch (record and index still change
        // together): per-record transactions made imports ten times slower.
        for kind in Kind::ALL {
            let items: Vec<(usize, Vec<u8>, NewRevocation)> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.kind == kind)
                .map(|(i, r)| {
                    let key = keys::record_key(&r.issuer, &r.value)?;
                    let rev = NewRevocation {
                        kind: r.kind,
                        issuer: r.issuer.clone(),
                        value: r.value.clone(),
                        issued_before: r.issued_before,
                        expires_at: r.expires_at,
                        reason: r.reason.clone(),
                        source: r.source,
                    };
                    Ok((i, key, rev))
                })
                .collect::<Result<_, StoreError>>()?;
            if items.is_empty() {
                continue;
            }
            let kb = keys::kind_byte(kind);
            for (_, key, _) in &items {
                self.inner.presence.insert(kb, key);
            }
            let gate = self.gate();
            let result = (h.trees.tree(kind), &h.trees.expiry)
                .transaction(|(tree, expiry)| {
                    let mut new = Vec::with_capacity(items.len());
                    for (i, key, rev) in &items {
                        let revoked_at = Some(records[*i].revoked_at);
                        let (_, was_new) = merge_in_tx(tree, expiry, key, rev, now, revoked_at)?;
                        new.push(was_new);
                    }
                    Ok(new)
                })
                .map_err(|e| self.failed(tx_error(e)));
            match result {
                Ok(new) => {
                    let mut added = 0;
                    for ((i, key, _), was_new) in items.iter().zip(new) {
                        out[*i] = was_new;
                        if was_new {
                            added += 1;
                        } else {
                            self.inner.presence.remove(kb, key);
                        }
                    }
                    self.inner.counts[kb as usize].fetch_add(added, Ordering::Relaxed);
                    drop(gate);
                    self.wrote();
                }
                Err(e) => {
                    drop(gate);
                    for (_, key, _) in &items {
                        self.inner.presence.remove(kb, key);
                    }
                    failure = Some(e);
                    break;
                }
            }
        }
        self.flush().await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Every record (of one kind, or all in key order), read lazily from the trees: an
    /// export never holds the store in memory.
    pub fn iter_records(
        &self,
        kind: Option<Kind>,
    ) -> impl Iterator<Item = Result<Record, StoreError>> + Send + 'static {
        let kinds: Vec<Kind> = match kind {
            Some(k) => vec![k],
            None => Kind::ALL.to_vec(),
        };
        // The stream keeps this database open until it ends (a reopen waits for it).
        let (h, failure) = match self.handles() {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(Err(e))),
        };
        failure.into_iter().chain(h.into_iter().flat_map(move |h| {
            kinds.clone().into_iter().flat_map(move |k| {
                h.trees.tree(k).iter().map(move |entry| {
                    let (key, value) = entry?;
                    let (issuer, val) = keys::split_stored_key(&key)?;
                    record::decode_stored(&value)?.into_record(k, issuer, val)
                })
            })
        }))
    }

    /// Records a back-channel logout: the revocation `rev` and its logout token's `jti`
    /// (kept until `jti_expires_at`) in ONE transaction. A token whose `jti` another
    /// token already used records nothing (`Conflict`), even when both arrive at once;
    /// the same token again changes nothing (`Repeat`). Durable before it returns,
    /// except for a conflict, which wrote nothing.
    pub async fn record_logout(
        &self,
        rev: &NewRevocation,
        jti: &str,
        fingerprint: [u8; 32],
        jti_expires_at: u64,
    ) -> Result<SeenLogout, StoreError> {
        let h = self.handles()?;
        let rkey = keys::record_key(&rev.issuer, &rev.value)?;
        let jkey = keys::record_key(&rev.issuer, jti)?;
        let seen_value = keys::encode_logout(&fingerprint, jti_expires_at);
        let now = self.inner.clock.now();
        let t = &h.trees;
        let kb = keys::kind_byte(rev.kind);
        self.inner.presence.insert(kb, &rkey);
        let gate = self.gate();
        let outcome = (h.trees.tree(rev.kind), &t.logout, &t.expiry)
            .transaction(|(records, seen, expiry)| {
                if let Some(old) = seen.get(&jkey)? {
                    let (old_fp, old_exp) = match keys::decode_logout(&old) {
                        Ok(v) => v,
                        Err(e) => return abort(e),
                    };
                    if old_exp >= now {
                        return Ok(if old_fp == fingerprint {
                            (SeenLogout::Repeat, false)
                        } else {
                            (SeenLogout::Conflict, false)
                        });
                    }
                    expiry.remove(keys::index_key(old_exp, keys::KIND_LOGOUT, &jkey))?;
                }
                let (_, was_new) = merge_in_tx(records, expiry, &rkey, rev, now, None)?;
                seen.insert(jkey.as_slice(), seen_value.as_slice())?;
                expiry.insert(
                    keys::index_key(jti_expires_at, keys::KIND_LOGOUT, &jkey),
                    sled::IVec::default(),
                )?;
                Ok((SeenLogout::New, was_new))
            })
            .map_err(|e| self.failed(tx_error(e)));
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                self.inner.presence.remove(kb, &rkey);
                return Err(e);
            }
        };
        if !matches!(outcome, (SeenLogout::New, true)) {
            self.inner.presence.remove(kb, &rkey);
        }
        match outcome {
            (SeenLogout::Conflict, _) => return Ok(SeenLogout::Conflict),
            (SeenLogout::New, was_new) => self.recorded(rev, was_new),
            (SeenLogout::Repeat, _) => {}
        }
        drop(gate);
        // Also for a repeat: the first delivery may still be waiting for its flush, and
        // this 200 must not overtake it. Cheap when already covered.
        self.flush().await?;
        Ok(outcome.0)
    }

    /// Removes a revocation (record and index together). `Ok(false)` if there was none.
    /// Durable before it returns.
    pub async fn unrevoke(
        &self,
        kind: Kind,
        issuer: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let h = self.handles()?;
        let key = match keys::record_key(issuer, value) {
            Ok(key) => key,
            // Such a key cannot have been stored.
            Err(StoreError::Invalid(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let kb = keys::kind_byte(kind);
        let gate = self.gate();
        let seq = self.reserve_commit_seq();
        let removed = (h.trees.tree(kind), &h.trees.expiry, &h.trees.meta)
            .transaction(|(records, expiry, meta)| {
                let Some(bytes) = records.remove(key.as_slice())? else {
                    return Ok(false);
                };
                raise_commit_seq(meta, seq)?;
                // An undecodable record is still removed (the operator's way out); its
                // index entry, if any, is then dropped by the sweeper when due.
                if let Ok(head) = record::decode_head(&bytes) {
                    expiry.remove(keys::index_key(head.expires_at, kb, &key))?;
                }
                Ok(true)
            })
            .map_err(|e| self.failed(tx_error(e)));
        if let Ok(true) = removed {
            self.inner.counts[kb as usize].fetch_sub(1, Ordering::Relaxed);
        }
        drop(gate);
        let removed = removed?;
        if removed {
            self.inner.presence.remove(kb, &key);
            self.wrote();
            self.flush().await?;
            tracing::debug!(%kind, "revocation removed");
        }
        Ok(removed)
    }

    /// The record of that key, if any (expired-but-unswept records included).
    pub fn get(&self, kind: Kind, issuer: &str, value: &str) -> Result<Option<Record>, StoreError> {
        let h = self.handles()?;
        let key = match keys::record_key(issuer, value) {
            Ok(key) => key,
            Err(StoreError::Invalid(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        match h.trees.tree(kind).get(&key)? {
            None => Ok(None),
            Some(bytes) => record::decode_stored(&bytes)?
                .into_record(kind, issuer, value)
                .map(Some),
        }
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
        let h = self.handles()?;
        if issuer.len() > keys::MAX_ISSUER_BYTES {
            return Ok(None); // cannot have been stored
        }
        let now = self.inner.clock.now();
        let longest = jti
            .len()
            .max(sid.map_or(0, str::len))
            .max(sub.map_or(0, str::len))
            .min(keys::MAX_VALUE_BYTES);
        // One buffer for the three keys: issuer prefix once, value swapped in.
        let mut key = Vec::with_capacity(2 + issuer.len() + longest);
        keys::push_issuer(&mut key, issuer);
        let prefix = key.len();
        for (kind, value) in [(Kind::Jti, Some(jti)), (Kind::Sid, sid), (Kind::Sub, sub)] {
            let Some(value) = value else { continue };
            if value.is_empty() || value.len() > keys::MAX_VALUE_BYTES {
                continue; // never stored
            }
            key.truncate(prefix);
            key.extend_from_slice(value.as_bytes());
            if !self.inner.presence.may_contain(keys::kind_byte(kind), &key) {
                continue;
            }
            let Some(bytes) = h.trees.tree(kind).get(&key)? else {
                continue;
            };
            let head = record::decode_head(&bytes)?;
            if head.expires_at <= now {
                continue;
            }
            let matched = match kind {
                Kind::Jti => true,
                // A sid/sub record always has a cutoff; without one, fail closed.
                Kind::Sid | Kind::Sub => head.issued_before.is_none_or(|cutoff| iat <= cutoff),
            };
            if matched {
                return Ok(Some(kind));
            }
        }
        Ok(None)
    }

    /// Records in key order (kind, issuer, value), optionally of one kind, starting after
    /// the opaque `after` cursor; returns at most `limit` and the cursor of the next page.
    /// `limit` is clamped to `1..=`[`MAX_LIST_LIMIT`]; `next` is `None` on the last page.
    pub fn list(
        &self,
        kind: Option<Kind>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<String>), StoreError> {
        let h = self.handles()?;
        let limit = limit.clamp(1, MAX_LIST_LIMIT);
        let start = after.map(keys::decode_cursor).transpose()?;
        let one;
        let kinds: &[Kind] = match kind {
            Some(k) => {
                one = [k];
                &one
            }
            None => &Kind::ALL,
        };
        let mut items = Vec::with_capacity(limit.min(256));
        let mut last: Option<(u8, sled::IVec)> = None;
        let mut more = false;
        'kinds: for &k in kinds {
            let iter = match &start {
                Some((ck, _)) if *ck > keys::kind_byte(k) => continue,
                Some((ck, ckey)) if *ck == keys::kind_byte(k) => h
                    .trees
                    .tree(k)
                    .range::<&[u8], _>((Bound::Excluded(ckey.as_slice()), Bound::Unbounded)),
                _ => h.trees.tree(k).iter(),
            };
            for entry in iter {
                let (key, value) = entry?;
                if items.len() == limit {
                    more = true;
                    break 'kinds;
                }
                let (issuer, val) = keys::split_stored_key(&key)?;
                items.push(record::decode_stored(&value)?.into_record(k, issuer, val)?);
                last = Some((keys::kind_byte(k), key));
            }
        }
        let next = match (more, last) {
            (true, Some((kb, key))) => Some(keys::encode_cursor(kb, &key)),
            _ => None,
        };
        Ok((items, next))
    }

    /// Entries by kind.
    pub fn counts(&self) -> Counts {
        let c = &self.inner.counts;
        Counts {
            jti: c[keys::KIND_JTI as usize].load(Ordering::Relaxed),
            sid: c[keys::KIND_SID as usize].load(Ordering::Relaxed),
            sub: c[keys::KIND_SUB as usize].load(Ordering::Relaxed),
        }
    }

    /// Purges every record and seen logout jti whose `expires_at < now`, in batches of
    /// `batch`; each entry is removed with its index entry in one transaction that
    /// re-checks the expiry. Durable before it returns.
    pub async fn sweep_due(&self, now: u64, batch: usize) -> Result<SweepReport, StoreError> {
        let h = self.handles()?;
        let started = std::time::Instant::now();
        let batch = batch.max(1);
        let t = &h.trees;
        // Keys sort by big-endian expiry first: everything before `now_be` has
        // `expires_at < now` (an entry expiring exactly at `now` sorts after it).
        let now_be = now.to_be_bytes();
        // Purged per kind byte (jti, sid, sub, logout).
        let mut purged = [0u64; 4];
        self.inner.sweep_runs.fetch_add(1, Ordering::Relaxed);
        loop {
            // Transactions cannot range-scan: scan first, then re-check inside.
            let due = t
                .expiry
                .range(..&now_be[..])
                .keys()
                .take(batch)
                .collect::<Result<Vec<_>, _>>()?;
            if due.is_empty() {
                break;
            }
            let gate = self.gate();
            let seq = self.reserve_commit_seq();
            let removed = (&t.jti, &t.sid, &t.sub, &t.logout, &t.expiry, &t.meta)
                .transaction(|(jti, sid, sub, logout, expiry, meta)| {
                    let mut removed = [0u64; 4];
                    let mut gone: Vec<(u8, Vec<u8>)> = Vec::new();
                    for ikey in &due {
                        let Some((exp, kind, rkey)) = keys::split_index_key(ikey) else {
                            // Not an index key at all: drop it.
                            expiry.remove(ikey)?;
                            continue;
                        };
                        let records = match kind {
                            keys::KIND_JTI => jti,
                            keys::KIND_SID => sid,
                            keys::KIND_SUB => sub,
                            keys::KIND_LOGOUT => logout,
                            _ => {
                                expiry.remove(ikey)?;
                                continue;
                            }
                        };
                        if let Some(bytes) = records.get(rkey)? {
                            let current = match stored_expiry(kind, &bytes) {
                                Ok(e) => e,
                                Err(e) => return abort(e),
                            };
                            // A concurrent re-revoke may have moved the expiry: then this
                            // index key is stale and the record stays (it has its own key).
                            if current == exp {
                                records.remove(rkey)?;
                                removed[kind as usize] += 1;
                                if kind != keys::KIND_LOGOUT {
                                    gone.push((kind, rkey.to_vec()));
                                }
                            }
                        }
                        expiry.remove(ikey)?;
                    }
                    if !gone.is_empty() {
                        raise_commit_seq(meta, seq)?;
                    }
                    Ok((removed, gone))
                })
                .map_err(|e| self.failed(tx_error(e)));
            if let Ok((removed, _)) = &removed {
                for (counter, n) in self.inner.counts.iter().zip(removed) {
                    counter.fetch_sub(*n, Ordering::Relaxed);
                }
            }
            drop(gate);
            let (removed, gone) = removed?;
            for (kind, rkey) in &gone {
                self.inner.presence.remove(*kind, rkey);
            }
            self.wrote();
            for (kind, n) in removed.iter().enumerate() {
                purged[kind] += n;
            }
            self.inner
                .swept
                .fetch_add(removed.iter().sum::<u64>(), Ordering::Relaxed);
            if due.len() < batch {
                break;
            }
            tokio::task::yield_now().await;
        }
        let report = SweepReport {
            at: now,
            purged: purged[..3].iter().sum(),
            purged_logout_jtis: purged[keys::KIND_LOGOUT as usize],
            duration_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
        };
        let mut stored = vec![SWEEP_REPORT_VERSION];
        stored.extend(
            bincode::serde::encode_to_vec(report, bincode::config::standard())
                .map_err(|e| StoreError::Corrupt(format!("cannot encode sweep report: {e}")))?,
        );
        t.meta
            .insert(META_LAST_SWEEP, stored)
            .map_err(|e| self.failed(e.into()))?;
        self.wrote();
        self.flush().await?;
        if report.purged + report.purged_logout_jtis > 0 {
            tracing::info!(
                purged = report.purged,
                purged_logout_jtis = report.purged_logout_jtis,
                duration_ms = report.duration_ms,
                "sweep purged expired entries"
            );
        } else {
            tracing::debug!(duration_ms = report.duration_ms, "sweep found nothing due");
        }
        Ok(report)
    }

    /// The last sweep's report (persisted in `meta`).
    pub fn last_sweep(&self) -> Option<SweepReport> {
        let h = self.handles().ok()?;
        let bytes = match h.trees.meta.get(META_LAST_SWEEP) {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the last sweep report");
                return None;
            }
        };
        match bytes.split_first() {
            Some((&SWEEP_REPORT_VERSION, body)) => {
                match bincode::serde::decode_from_slice(body, bincode::config::standard()) {
                    Ok((report, _)) => Some(report),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot decode the last sweep report");
                        None
                    }
                }
            }
            _ => {
                tracing::warn!("unknown last sweep report version");
                None
            }
        }
    }

    /// Offline consistency check of records against the expiry index: every record
    /// (jti/sid/sub/seen logout jti) must have exactly its index entry and every index
    /// entry must point at a record with that expiry. With `repair`, orphan index entries
    /// are removed and missing ones re-created (never losing a revocation), then flushed.
    pub fn check_consistency(&self, repair: bool) -> Result<ConsistencyReport, StoreError> {
        let h = self.handles()?;
        let t = &h.trees;
        let mut report = ConsistencyReport::default();
        let mut missing: Vec<(u8, sled::IVec)> = Vec::new();
        for (kind, tree) in h.trees.record_trees() {
            for entry in tree.iter() {
                let (key, value) = entry?;
                report.records += 1;
                let ikey = keys::index_key(stored_expiry(kind, &value)?, kind, &key);
                if !t.expiry.contains_key(&ikey)? {
                    report.records_without_index += 1;
                    missing.push((kind, key));
                }
            }
        }
        let mut orphans: Vec<sled::IVec> = Vec::new();
        for entry in t.expiry.iter().keys() {
            let ikey = entry?;
            report.index_entries += 1;
            if !self.index_entry_valid(&ikey)? {
                report.index_without_record += 1;
                orphans.push(ikey);
            }
        }
        if repair && (!missing.is_empty() || !orphans.is_empty()) {
            let mut fixed = 0u64;
            for (kind, key) in &missing {
                let Some(tree) = h.trees.record_tree(*kind) else {
                    continue;
                };
                // Re-check in a transaction: the record may have changed meanwhile.
                let created = (tree, &t.expiry)
                    .transaction(|(records, expiry)| {
                        let Some(value) = records.get(key)? else {
                            return Ok(false);
                        };
                        let exp = match stored_expiry(*kind, &value) {
                            Ok(e) => e,
                            Err(e) => return abort(e),
                        };
                        let ikey = keys::index_key(exp, *kind, key);
                        if expiry.get(&ikey)?.is_some() {
                            return Ok(false);
                        }
                        expiry.insert(ikey, sled::IVec::default())?;
                        Ok(true)
                    })
                    .map_err(|e| self.failed(tx_error(e)))?;
                fixed += u64::from(created);
            }
            for ikey in &orphans {
                let target = keys::split_index_key(ikey).and_then(|(exp, kind, rkey)| {
                    Some((exp, kind, rkey, h.trees.record_tree(kind)?))
                });
                let removed = match target {
                    // Not a well-formed index key of a known tree: nothing can refer to it.
                    None => t.expiry.remove(ikey)?.is_some(),
                    Some((exp, kind, rkey, tree)) => (tree, &t.expiry)
                        .transaction(|(records, expiry)| {
                            let valid = match records.get(rkey)? {
                                None => false,
                                Some(v) => matches!(stored_expiry(kind, &v), Ok(e) if e == exp),
                            };
                            Ok(!valid && expiry.remove(ikey)?.is_some())
                        })
                        .map_err(|e| self.failed(tx_error(e)))?,
                };
                fixed += u64::from(removed);
            }
            if fixed > 0 {
                self.wrote();
                self.flush_blocking()?;
                report.repaired = true;
                tracing::info!(
                    index_created = report.records_without_index,
                    index_removed = report.index_without_record,
                    "store repaired"
                );
            }
        }
        Ok(report)
    }

    /// Whether an expiry-index key points at a record with that expiry.
    fn index_entry_valid(&self, ikey: &[u8]) -> Result<bool, StoreError> {
        let h = self.handles()?;
        let Some((exp, kind, rkey)) = keys::split_index_key(ikey) else {
            return Ok(false);
        };
        let Some(tree) = h.trees.record_tree(kind) else {
            return Ok(false);
        };
        match tree.get(rkey)? {
            None => Ok(false),
            Some(value) => Ok(stored_expiry(kind, &value)? == exp),
        }
    }

    /// Keeps the last good JWKS document of `issuer` (durably).
    pub async fn save_jwks(&self, issuer: &str, jwks: &[u8]) -> Result<(), StoreError> {
        let h = self.handles()?;
        h.trees
            .jwks
            .insert(issuer.as_bytes(), jwks)
            .map_err(|e| self.failed(e.into()))?;
        self.wrote();
        self.flush().await
    }

    /// The last good JWKS document of `issuer`, if one was saved.
    pub fn load_jwks(&self, issuer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let h = self.handles()?;
        Ok(h.trees.jwks.get(issuer.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Read-only replay check for a logout token: `None` when its `jti` was not seen (or
    /// the entry expired), else whether this is the same token (`Repeat`) or another
    /// one reusing the `jti` (`Conflict`). Lets the endpoint refuse before recording.
    pub fn logout_jti_status(
        &self,
        issuer: &str,
        jti: &str,
        fingerprint: [u8; 32],
    ) -> Result<Option<SeenLogout>, StoreError> {
        let h = self.handles()?;
        let key = keys::record_key(issuer, jti)?;
        let now = self.inner.clock.now();
        match h.trees.logout.get(&key)? {
            None => Ok(None),
            Some(old) => {
                let (old_fp, old_exp) = keys::decode_logout(&old)?;
                if old_exp < now {
                    Ok(None)
                } else if old_fp == fingerprint {
                    Ok(Some(SeenLogout::Repeat))
                } else {
                    Ok(Some(SeenLogout::Conflict))
                }
            }
        }
    }

    /// Remembers a back-channel logout token's `jti` until `expires_at`. `fingerprint` is
    /// the SHA-256 of the whole logout token, to tell a repeat from a conflict. Durable.
    /// An entry whose own `expires_at` has passed (not yet swept) counts as absent.
    pub async fn remember_logout_jti(
        &self,
        issuer: &str,
        jti: &str,
        fingerprint: [u8; 32],
        expires_at: u64,
    ) -> Result<SeenLogout, StoreError> {
        let h = self.handles()?;
        let key = keys::record_key(issuer, jti)?;
        let now = self.inner.clock.now();
        let value = keys::encode_logout(&fingerprint, expires_at);
        let t = &h.trees;
        let outcome = (&t.logout, &t.expiry)
            .transaction(|(seen, expiry)| {
                if let Some(old) = seen.get(&key)? {
                    let (old_fp, old_exp) = match keys::decode_logout(&old) {
                        Ok(v) => v,
                        Err(e) => return abort(e),
                    };
                    if old_exp >= now {
                        return Ok(if old_fp == fingerprint {
                            SeenLogout::Repeat
                        } else {
                            SeenLogout::Conflict
                        });
                    }
                    expiry.remove(keys::index_key(old_exp, keys::KIND_LOGOUT, &key))?;
                }
                seen.insert(key.as_slice(), value.as_slice())?;
                expiry.insert(
                    keys::index_key(expires_at, keys::KIND_LOGOUT, &key),
                    sled::IVec::default(),
                )?;
                Ok(SeenLogout::New)
            })
            .map_err(|e| self.failed(tx_error(e)))?;
        if outcome == SeenLogout::New {
            self.wrote();
        }
        // Also for a repeat: the first delivery may still be waiting for its flush, and
        // the caller's 200 must not overtake it. Cheap when already covered.
        if outcome != SeenLogout::Conflict {
            self.flush().await?;
        }
        Ok(outcome)
    }

    /// Waits until everything written so far is on disk (shared with concurrent callers):
    /// one commit (module doc) — sequence into `meta`, sled's flush, `fdatasync` of `db`,
    /// the mark written and synced — on the blocking pool.
    ///
    /// Group commit: a caller whose writes were covered by a flush that started after
    /// them returns without its own fsync. A failed flush is an error for every caller
    /// that needed it, and [`probe`](Self::probe) reports it until a flush succeeds.
    ///
    /// While the store is degraded every flush fails at once: nothing is acknowledged
    /// until [`recover`](Self::recover) has reopened the database.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mine = inner.write_seq.load(Ordering::SeqCst);
        self.check_durable()?;
        let mut state = inner.flush_state.lock().await;
        // Checked again under the lock: a flush that failed meanwhile covers us too.
        self.check_durable()?;
        if state.flushed_seq >= mine {
            return Ok(());
        }
        let target = inner.write_seq.load(Ordering::SeqCst);
        let h = self.handles()?;
        let store = self.clone();
        let result = tokio::task::spawn_blocking(move || store.commit_blocking(&h))
            .await
            .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("commit task failed: {e}"))));
        match result {
            Ok(()) => {
                state.flushed_seq = target;
                drop(state);
                Ok(())
            }
            Err(e) => {
                // Marked before the lock is released, so a waiting writer cannot pass.
                tracing::warn!(error = %e, "store commit failed; writes are not durable");
                self.mark_degraded(&e.to_string());
                drop(state);
                Err(e)
            }
        }
    }

    /// Synchronous commit for the offline paths (`check-store --repair`).
    fn flush_blocking(&self) -> Result<(), StoreError> {
        let h = self.handles()?;
        match self.commit_blocking(&h) {
            Ok(()) => {
                self.set_flush_failure(None);
                Ok(())
            }
            Err(e) => {
                self.set_flush_failure(Some(e.to_string()));
                Err(e)
            }
        }
    }

    fn set_flush_failure(&self, failure: Option<String>) {
        *self
            .inner
            .flush_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = failure;
    }

    /// A cheap read that fails when the store is unusable (for `/healthz`).
    /// Also fails while the last flush failed (writes could not be made durable).
    pub fn probe(&self) -> Result<(), StoreError> {
        let h = self.handles()?;
        if h.trees.meta.get(META_SCHEMA)?.is_none() {
            return Err(StoreError::Corrupt("schema version missing".to_string()));
        }
        let failure = self
            .inner
            .flush_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match failure {
            None => Ok(()),
            Some(msg) => Err(StoreError::Sled(sled::Error::Io(std::io::Error::other(
                format!("last flush to disk failed: {msg}"),
            )))),
        }
    }

    /// Bytes used on disk (0 when sled cannot tell).
    pub fn size_on_disk(&self) -> u64 {
        self.handles()
            .ok()
            .and_then(|h| h.db.size_on_disk().ok())
            .unwrap_or(0)
    }

    /// Number of commits (each one `fdatasync` of `db`, one of the mark) attempted since
    /// open, failed ones included; for metrics and benchmarks.
    pub fn flush_count(&self) -> u64 {
        self.inner.flushes.load(Ordering::Relaxed)
    }

    /// Now, by the store's clock (the one expiry is judged by).
    pub(crate) fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    /// Marks that a write was committed (for the group commit).
    fn wrote(&self) {
        self.inner.write_seq.fetch_add(1, Ordering::SeqCst);
    }

    /// Raw access to a tree, to damage the store on purpose in tests.
    #[cfg(test)]
    fn raw_tree(&self, name: &str) -> sled::Tree {
        self.handles()
            .expect("store open")
            .db
            .open_tree(name)
            .expect("tree")
    }
}

impl Trees {
    fn tree(&self, kind: Kind) -> &sled::Tree {
        match kind {
            Kind::Jti => &self.jti,
            Kind::Sid => &self.sid,
            Kind::Sub => &self.sub,
        }
    }

    /// The tree holding entries of kind byte `kind` (revocations and seen logout jtis).
    fn record_tree(&self, kind: u8) -> Option<&sled::Tree> {
        match kind {
            keys::KIND_LOGOUT => Some(&self.logout),
            k => keys::kind_from_byte(k).map(|k| self.tree(k)),
        }
    }

    fn record_trees(&self) -> [(u8, &sled::Tree); 4] {
        [
            (keys::KIND_JTI, &self.jti),
            (keys::KIND_SID, &self.sid),
            (keys::KIND_SUB, &self.sub),
            (keys::KIND_LOGOUT, &self.logout),
        ]
    }
}

impl RevocationStore {
    /// `(sweeper runs, entries purged)` since open; for metrics. Purged entries include
    /// seen logout jtis.
    pub fn sweep_totals(&self) -> (u64, u64) {
        (
            self.inner.sweep_runs.load(Ordering::Relaxed),
            self.inner.swept.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests;
