//! Opening the store: the sled database and its trees, the schema check, the one key scan
//! (counters, presence filter) and the check against the acknowledgement mark; the modes
//! a caller opens it in; the offline restore of a damaged store.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::commit::{io_error, FlushState, StoreFiles, DB_FILE};
use super::{
    keys, mark, presence, Counts, Damage, Handles, Inner, Kind, RevocationStore, StoreError, Trees,
    META_COMMIT_SEQ, META_SCHEMA, META_STORE_ID,
};
use crate::clock::SharedClock;

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

/// Schema version of the whole database layout, kept in `meta` under `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;
/// Records per batch when [`RevocationStore::open_for_restore`] salvages a damaged store
/// (one transaction and one commit per batch).
pub const SALVAGE_BATCH: usize = 1024;

/// Text sled 0.34 puts in the `Io` error when another process holds the database's file
/// lock (`Config::try_lock` in sled's `config.rs`).
const SLED_LOCK_MESSAGE: &str = "could not acquire lock";

/// Opens the sled database at `path` and its trees; creates the schema version or checks it.
pub(super) fn open_handles(path: &Path, cache_bytes: u64) -> Result<Handles, StoreError> {
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
        outbox: db.open_tree("outbox")?,
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
pub(super) fn scan_records(
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
pub(super) fn read_commit_meta(meta: &sled::Tree) -> Result<(u64, Option<u64>), StoreError> {
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

fn describe_counts(c: &[u64; 3]) -> String {
    format!("jti {}, sid {}, sub {}", c[0], c[1], c[2])
}

/// What the opened store lacks compared with its mark, in operator words; `None` when it
/// holds at least what the mark acknowledged.
pub(super) fn shortfall(
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

/// The number of outbox entries and the last outbox sequence taken: what is in the
/// outbox at open is durable (it was read back from disk).
pub(super) fn outbox_state(trees: &Trees) -> Result<(u64, u64), StoreError> {
    let len = trees
        .outbox
        .iter()
        .keys()
        .try_fold(0u64, |n, k| k.map(|_| n + 1))?;
    let seq = trees
        .meta
        .get(super::log::META_OUTBOX_SEQ)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes);
    Ok((len, seq))
}

/// A fresh store id: random per process and instant (std's hasher keys), never 0.
fn new_store_id() -> u64 {
    crate::ids::random_u64().max(1)
}

/// sled reporting corruption while opening or reading: the store cannot be trusted.
pub(super) fn unreadable(path: &Path, e: StoreError) -> StoreError {
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
        // Sized for what the mark last counted (the store holds at least that).
        let expected = acknowledged.map_or(0, |m| m.counts.iter().sum());
        let presence = Arc::new(presence::Presence::for_records(expected));
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
        let (outbox_len, outbox_seq) = outbox_state(&h.trees)?;
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
                log: std::sync::OnceLock::new(),
                outbox_len: AtomicU64::new(outbox_len),
                outbox_committed: AtomicU64::new(outbox_seq),
                outbox_durable: AtomicU64::new(outbox_seq),
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
                            restored.salvaged += batch.len() as u64;
                            store.import_records(std::mem::take(&mut batch)).await?;
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
}
