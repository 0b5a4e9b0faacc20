//! The revocation store (SPEC §1, §6): sled trees of revocation records, an expiry index,
//! one write path with group-committed durable writes, an acknowledgement mark that makes
//! damage visible, and the sweeper.
//!
//! # Files
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the handle ([`RevocationStore`]), its shared state, the trees and the one transaction shape over them (`StateTx`), errors; this design |
//! | `open.rs` | open and schema check, the start-up scan, the check against the mark, [`OpenMode`], the offline restore of a damaged store |
//! | `change.rs` | what a change is: [`Change`], [`NewRevocation`], [`Logout`], [`Outcome`] |
//! | `policy.rs` | the rules, as pure functions: "kept until" of every kind and source, the merge ([`Policy`]) |
//! | `write.rs` | the one write path: [`RevocationStore::apply`] / [`apply_all`](RevocationStore::apply_all) and its typed shorthands |
//! | `log.rs` | the shared log of a cluster, store side: [`LogOp`], the outbox, the log position, [`LogLink`] |
//! | `commit.rs` | group commit: commit sequence, sled flush, `fdatasync` of `db` and new blobs, the mark update |
//! | `mark.rs` | the acknowledgement mark file (two checksummed slots) |
//! | `health.rs` | the degraded state, [`RevocationStore::recover`], the file watch, [`run_recovery`] |
//! | `read.rs` | lookups: [`find_match`](RevocationStore::find_match) (the hot path), `get`, `list`, the export walk |
//! | `sweep.rs` | [`sweep_due`](RevocationStore::sweep_due) and the background [`run_sweeper`] |
//! | `fsck.rs` | `check-store`: records against the index, and the repair |
//! | `jwks.rs` | the last good JWKS document per issuer |
//! | `keys.rs`, `record.rs` | byte layouts of keys, seen-jti values, cursors; records and their stored form |
//! | `presence.rs` | the presence filter in front of the record trees |
//!
//! # Layout on disk
//!
//! One sled database at `store.path`, plus the mark file beside it:
//! - trees `jti`, `sid`, `sub`: key = `u16 BE issuer length ‖ issuer ‖ value`,
//!   value = version byte ‖ bincode(`StoredRecordV1`, `record.rs`).
//! - tree `expiry`: key = `u64 BE expires_at ‖ kind byte ‖ record key`, value empty.
//!   Scanned with `range(..now)` by the sweeper: an entry goes once `expires_at < now`.
//! - tree `logout_jti`: logout-token `jti`s already seen (back-channel replay defence);
//!   indexed in `expiry` like records, never listed or counted as revocations.
//! - tree `jwks`: last good JWKS document per issuer.
//! - tree `outbox`: in a cluster, changes accepted here and not yet seen back in the
//!   shared log (`log.rs`).
//! - tree `meta`: schema version, last sweep report, commit sequence, store id; in a
//!   cluster also the outbox sequence and the log position (`log.rs`).
//! - file `<store.path>.hwm` ([`MARK_SUFFIX`]): the acknowledgement mark (see below).
//!
//! # One write path
//!
//! Every change of the revocation state — admin create and delete, revoke-by-token,
//! `/revoke`, back-channel logout, import and restore — is a [`Change`] applied by
//! [`RevocationStore::apply_all`]: a batch of changes is ONE sled transaction over the
//! state trees (records, seen jtis, expiry index, `meta`; `StateTx`), so record and index
//! change together, and the answer waits for a group commit that covered it. Expiries are
//! computed before, by the source, with [`Policy`]; the merge of a revocation into a
//! stored record is `policy.rs`'s too. In a cluster the outbox entry of a change accepted
//! here, and the log position of entries read from the shared log, are written in that
//! same transaction (`write.rs`, `log.rs`). The sweep removes what is due through the same
//! transaction shape, in small transactions (sled 0.34 blocks every read while one
//! commits) on two threads (`sweep.rs`); expiry is local to each gateway, never in the
//! shared log.
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

mod change;
mod commit;
mod fsck;
mod health;
mod jwks;
mod keys;
mod log;
mod mark;
mod open;
mod policy;
mod presence;
mod read;
mod record;
mod sweep;
mod write;

pub use change::{Change, Logout, NewRevocation, Outcome, SeenLogout};
pub use fsck::ConsistencyReport;
pub use health::{run_recovery, RECOVERY_INTERVAL, REOPEN_WAIT};
pub use keys::{MAX_ISSUER_BYTES, MAX_VALUE_BYTES};
pub use log::{
    decode_ops, key_digest, unrevoked_digests, LogAck, LogEntry, LogLink, LogOp, LogPosition,
    OutboxEntry, StreamId, MAX_OPS_PER_ENTRY,
};
pub use mark::MARK_SUFFIX;
pub use open::{MarkReport, OpenMode, Restored, SALVAGE_BATCH, SCHEMA_VERSION};
pub use policy::{Policy, Requested};
pub use read::MAX_LIST_LIMIT;
pub use record::{Kind, Record, Source};
pub use sweep::{run_sweeper, run_sweeper_following, SweepReport, SWEEP_BATCH};

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError, Transactional,
    TransactionalTree,
};

use crate::clock::SharedClock;
use commit::{FlushState, StoreFiles};

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
    outbox: sled::Tree,
}

/// One open sled database and its trees. Replaced as a whole when the store is reopened
/// after an I/O failure (sled keeps its first I/O error forever: only a reopen clears it).
struct Handles {
    db: sled::Db,
    trees: Trees,
    files: StoreFiles,
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
    /// The shared log this store writes to, once it joined a cluster.
    log: std::sync::OnceLock<Arc<LogLink>>,
    /// Entries in the outbox (counted at open).
    outbox_len: AtomicU64,
    /// Highest outbox sequence committed (visible; maybe not durable yet).
    outbox_committed: AtomicU64,
    /// Highest outbox sequence known durable: every entry up to it may be published.
    outbox_durable: AtomicU64,
}

impl std::fmt::Debug for RevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationStore").finish_non_exhaustive()
    }
}

/// `meta` key of the schema version (`u32 BE`).
const META_SCHEMA: &[u8] = b"schema_version";
/// `meta` key of the commit sequence (`u64 BE`), compared with the mark at open.
const META_COMMIT_SEQ: &[u8] = b"commit_seq";
/// `meta` key of the store id (`u64 BE`), also in the mark.
const META_STORE_ID: &[u8] = b"store_id";

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

impl RevocationStore {
    /// The open database, or [`StoreError::Unavailable`] while it is being reopened.
    fn handles(&self) -> Result<Arc<Handles>, StoreError> {
        self.inner
            .handles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store is being reopened".to_string()))
    }

    /// Bytes used on disk (0 when sled cannot tell).
    pub fn size_on_disk(&self) -> u64 {
        self.handles()
            .ok()
            .and_then(|h| h.db.size_on_disk().ok())
            .unwrap_or(0)
    }

    /// Now, by the store's clock (the one expiry is judged by).
    pub(crate) fn now(&self) -> u64 {
        self.inner.clock.now()
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

/// The state trees as one sled transaction sees them: everything a [`Change`], a log
/// entry or a sweep touches — records, seen logout jtis, the expiry index, `meta` and the
/// outbox — changes together or not at all.
struct StateTx<'a> {
    jti: &'a TransactionalTree,
    sid: &'a TransactionalTree,
    sub: &'a TransactionalTree,
    logout: &'a TransactionalTree,
    expiry: &'a TransactionalTree,
    meta: &'a TransactionalTree,
    outbox: &'a TransactionalTree,
}

impl StateTx<'_> {
    /// The record tree of `kind`.
    fn records(&self, kind: Kind) -> &TransactionalTree {
        match kind {
            Kind::Jti => self.jti,
            Kind::Sid => self.sid,
            Kind::Sub => self.sub,
        }
    }

    /// The tree holding entries of kind byte `kind` (revocations and seen logout jtis).
    fn entries(&self, kind: u8) -> Option<&TransactionalTree> {
        match kind {
            keys::KIND_LOGOUT => Some(self.logout),
            k => keys::kind_from_byte(k).map(|k| self.records(k)),
        }
    }
}

impl Trees {
    /// Runs `f` in one sled transaction over the state trees ([`StateTx`]). sled re-runs
    /// `f` on a conflict, so it must have no side effect outside the transaction.
    fn transact<A>(&self, f: impl Fn(&StateTx<'_>) -> TxResult<A>) -> Result<A, StoreError> {
        (
            &self.jti,
            &self.sid,
            &self.sub,
            &self.logout,
            &self.expiry,
            &self.meta,
            &self.outbox,
        )
            .transaction(|(jti, sid, sub, logout, expiry, meta, outbox)| {
                f(&StateTx {
                    jti,
                    sid,
                    sub,
                    logout,
                    expiry,
                    meta,
                    outbox,
                })
            })
            .map_err(tx_error)
    }
}

#[cfg(test)]
mod tests;
