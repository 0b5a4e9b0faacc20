//! Group commit: what makes a write durable before it is acknowledged (module doc of
//! [`super`], "Durable acknowledgement"): the commit sequence, sled's flush, `fdatasync` of
//! `db` and of new blob files, then the acknowledgement mark.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::{mark, Handles, RevocationStore, StoreError, TxResult, META_COMMIT_SEQ};

/// Group-commit state, guarded by an async mutex held across the fsync.
pub(super) struct FlushState {
    /// Highest `write_seq` known to be on disk.
    pub(super) flushed_seq: u64,
}

/// sled's data file inside the store directory.
pub(super) const DB_FILE: &str = "db";
/// sled's directory of values too large for a log message (one file each).
const BLOBS_DIR: &str = "blobs";

/// The files a commit makes durable itself, opened beside sled's own handles.
pub(super) struct StoreFiles {
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
    pub(super) fn open(dir: &Path) -> std::io::Result<StoreFiles> {
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
    pub(super) fn check_in_place(&self) -> Result<(), String> {
        mark::check_file_in_place(&self.dir.join(DB_FILE), self.db_identity, "store file")
    }
}

/// An I/O failure as a store error (marks the store degraded where `failed` sees it).
pub(super) fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Sled(sled::Error::Io(e))
}

/// Inside a transaction that removes records: raises the commit sequence in `meta` to
/// `seq` (never lowers it), so that a log prefix holding the removal shows a sequence
/// above any mark that counted the removed records.
pub(super) fn raise_commit_seq(
    meta: &sled::transaction::TransactionalTree,
    seq: u64,
) -> TxResult<()> {
    let current = meta
        .get(META_COMMIT_SEQ)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes);
    if seq > current {
        meta.insert(META_COMMIT_SEQ, &seq.to_be_bytes()[..])?;
    }
    Ok(())
}

impl RevocationStore {
    /// The read side of the commit gate, for a transaction that changes a record count
    /// (held with its counter update; never across an `.await`).
    pub(super) fn gate(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.inner
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A commit sequence number for a transaction that removes records (see
    /// [`raise_commit_seq`]). Taken under the gate's read side.
    pub(super) fn reserve_commit_seq(&self) -> u64 {
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
    pub(super) fn commit_blocking(&self, h: &Handles) -> Result<(), StoreError> {
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

    /// Like [`flush`](Self::flush), but never skipped: everything committed before the
    /// call is durable when it returns, whether or not its writer counted it yet.
    pub(super) async fn flush_forced(&self) -> Result<(), StoreError> {
        self.wrote();
        self.flush().await
    }

    /// Synchronous commit for the offline paths (`check-store --repair`).
    pub(super) fn flush_blocking(&self) -> Result<(), StoreError> {
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

    pub(super) fn set_flush_failure(&self, failure: Option<String>) {
        *self
            .inner
            .flush_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = failure;
    }

    /// Number of commits (each one `fdatasync` of `db`, one of the mark) attempted since
    /// open, failed ones included; for metrics and benchmarks.
    pub fn flush_count(&self) -> u64 {
        self.inner.flushes.load(Ordering::Relaxed)
    }

    /// Marks that a write was committed (for the group commit).
    pub(super) fn wrote(&self) {
        self.inner.write_seq.fetch_add(1, Ordering::SeqCst);
    }
}
