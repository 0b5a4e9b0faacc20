//! The degraded state and its way out: an I/O failure or a store file that vanished makes
//! the store refuse writes and the proxy fail closed; [`run_recovery`] watches the files
//! and reopens the database once it can be trusted again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::commit::{io_error, DB_FILE};
use super::open::{open_handles, read_commit_meta, scan_records, shortfall, unreadable};
use super::{mark, Damage, Handles, RevocationStore, StoreError, META_SCHEMA};

/// How long [`RevocationStore::recover`] waits for the old database to be released.
pub const REOPEN_WAIT: Duration = Duration::from_secs(2);
/// Poll period while waiting for the old database to be released.
const REOPEN_POLL: Duration = Duration::from_millis(10);

impl RevocationStore {
    /// Passes `e` through, marking the store degraded when it is an I/O failure (a full or
    /// read-only disk...): from then on the proxy fails closed until [`recover`](Self::recover)
    /// succeeds.
    pub(super) fn failed(&self, e: StoreError) -> StoreError {
        if matches!(e, StoreError::Sled(sled::Error::Io(_))) {
            self.mark_degraded(&e.to_string());
        }
        e
    }

    pub(super) fn mark_degraded(&self, msg: &str) {
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
        // Outbox entries that never reached the disk are gone too; what is left is durable
        // now, and a sequence that was lost was never published, so it may be taken again.
        let (outbox_len, outbox_seq) = super::open::outbox_state(&h.trees)?;
        inner.outbox_len.store(outbox_len, Ordering::Relaxed);
        inner.outbox_committed.store(outbox_seq, Ordering::SeqCst);
        inner.outbox_durable.store(outbox_seq, Ordering::SeqCst);
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
}

/// How often a healthy store checks that its files are still in place and writable
/// ([`RevocationStore::watch_files`]), and a degraded one (a write to disk failed, its
/// files vanished) tries to recover by reopening its database. A store directory deleted
/// or made read only is noticed within this interval.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until `shutdown` flips to `true` (or its sender is dropped): every
/// [`RECOVERY_INTERVAL`], a healthy store watches its files (two `stat`s and two opens
/// for writing), a degraded one tries [`RevocationStore::recover`].
pub async fn run_recovery(
    store: RevocationStore,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(RECOVERY_INTERVAL) => {
                store.watch_files();
                if store.is_degraded() {
                    match store.recover().await {
                        Ok(true) => {}
                        Ok(false) => tracing::debug!("store still in use; reopen retried at the next tick"),
                        Err(e) => tracing::debug!(error = %e, "store recovery failed; retrying"),
                    }
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
}
