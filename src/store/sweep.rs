//! Expiry: the sweep that purges what is due, and the background sweeper that runs it
//! every `store.sweep_interval`.
//!
//! Every tick purges everything whose `expires_at` has passed, so an entry leaves the
//! store at most one interval (plus the sweep's own duration) after it expired — within
//! the two intervals SPEC §6 promises.

use std::sync::atomic::Ordering;
use std::time::Duration;

use std::ops::Bound;

use super::commit::raise_commit_seq;
use super::{abort, keys, stored_expiry, Handles, RevocationStore, StoreError, Trees};
use crate::config::MIN_SWEEP_INTERVAL;

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

/// `meta` key of the last [`SweepReport`] (version byte ‖ bincode).
const META_LAST_SWEEP: &[u8] = b"last_sweep";

/// Version byte of the stored sweep report.
const SWEEP_REPORT_VERSION: u8 = 1;

impl RevocationStore {
    /// Purges every record and seen logout jti whose `expires_at < now`, in batches of
    /// `batch` index entries read in index order, purged on the blocking pool by
    /// [`SWEEP_WORKERS`] threads in transactions of [`SWEEP_TX_ENTRIES`] entries (a
    /// record and its index entry go together; each transaction re-checks the expiry).
    /// Durable before it returns.
    ///
    /// Small transactions because sled 0.34 takes a process-wide lock for writing in every
    /// transaction, which every `Tree::get` (the proxy's lookups that get past the
    /// presence filter) waits behind: 1024 entries per transaction made those wait tens of
    /// milliseconds.
    pub async fn sweep_due(&self, now: u64, batch: usize) -> Result<SweepReport, StoreError> {
        let h = self.handles()?;
        let started = std::time::Instant::now();
        let batch = batch.max(1);
        self.inner.sweep_runs.fetch_add(1, Ordering::Relaxed);
        let store = self.clone();
        let h2 = h.clone();
        // Purged per kind byte (jti, sid, sub, logout).
        let purged = tokio::task::spawn_blocking(move || store.purge_due(&h2, now, batch))
            .await
            .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("sweep task failed: {e}"))))?;
        let t = &h.trees;
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
}

impl RevocationStore {
    /// Blocking part of [`sweep_due`](Self::sweep_due): every due index entry, in batches
    /// read in index order by this thread and purged by [`SWEEP_WORKERS`] threads
    /// (entries are independent of each other). Returns the entries purged per kind byte.
    fn purge_due(&self, h: &Handles, now: u64, batch: usize) -> Result<[u64; 4], StoreError> {
        let t = &h.trees;
        // Keys sort by big-endian expiry first: everything before `now_be` has
        // `expires_at < now` (an entry expiring exactly at `now` sorts after it).
        let now_be = now.to_be_bytes();
        let workers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(SWEEP_WORKERS);
        // At most one batch waiting per worker: memory stays bounded.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<sled::IVec>>(workers);
        let rx = std::sync::Mutex::new(rx);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let purging: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| -> Result<[u64; 4], StoreError> {
                        let mut purged = [0u64; 4];
                        let mut failure = None;
                        loop {
                            let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            let Ok(due) = next else { break };
                            // After a failure, batches are only drained (the reader stops).
                            if failure.is_some() {
                                continue;
                            }
                            match self.purge_batch(t, &due) {
                                Ok(removed) => {
                                    for (total, n) in purged.iter_mut().zip(removed) {
                                        *total += n;
                                    }
                                }
                                Err(e) => {
                                    stop.store(true, Ordering::SeqCst);
                                    failure = Some(e);
                                }
                            }
                        }
                        failure.map_or(Ok(purged), Err)
                    })
                })
                .collect();
            // Each batch resumes after the last key of the one before, so an entry left
            // in place (a stale index key whose record moved on) is never read twice.
            let mut after: Option<sled::IVec> = None;
            let scanned = loop {
                let from = after
                    .as_ref()
                    .map_or(Bound::Unbounded, |k| Bound::Excluded(k.as_ref()));
                let due = match t
                    .expiry
                    .range::<&[u8], _>((from, Bound::Excluded(&now_be[..])))
                    .keys()
                    .take(batch)
                    .collect::<Result<Vec<_>, _>>()
                {
                    Ok(due) => due,
                    Err(e) => break Err(StoreError::from(e)),
                };
                let full = due.len() == batch;
                after = due.last().cloned();
                // A worker failed: stop reading (its error is reported below).
                if due.is_empty() || stop.load(Ordering::SeqCst) || tx.send(due).is_err() || !full {
                    break Ok(());
                }
            };
            drop(tx);
            let mut purged = [0u64; 4];
            let mut failure = scanned.err();
            for worker in purging {
                match worker.join() {
                    Ok(Ok(removed)) => {
                        for (total, n) in purged.iter_mut().zip(removed) {
                            *total += n;
                        }
                    }
                    Ok(Err(e)) => failure = failure.or(Some(e)),
                    Err(_) => {
                        failure = failure.or(Some(StoreError::Unavailable(
                            "a sweep thread panicked".to_string(),
                        )))
                    }
                }
            }
            failure.map_or(Ok(purged), |e| Err(self.failed(e)))
        })
    }

    /// Purges one batch of due index entries, [`SWEEP_TX_ENTRIES`] per sled transaction:
    /// each entry's record and index key go together (a crash never leaves one without
    /// the other), and each transaction re-checks the expiry (a concurrent re-revoke
    /// wins: the index key is stale then and the record stays, with its own key). A
    /// transaction that removes records raises the commit sequence in `meta` with them.
    /// Under the read side of the commit gate, with the counter updates.
    fn purge_batch(&self, t: &Trees, due: &[sled::IVec]) -> Result<[u64; 4], StoreError> {
        let mut purged = [0u64; 4];
        for chunk in due.chunks(SWEEP_TX_ENTRIES) {
            let gate = self.gate();
            let seq = self.reserve_commit_seq();
            let removed = t.transact(|tx| {
                let mut removed = [0u64; 4];
                let mut gone: Vec<(u8, Vec<u8>)> = Vec::new();
                for ikey in chunk {
                    let Some((exp, kind, rkey)) = keys::split_index_key(ikey) else {
                        // Not an index key at all: drop it.
                        tx.expiry.remove(ikey)?;
                        continue;
                    };
                    let Some(records) = tx.entries(kind) else {
                        tx.expiry.remove(ikey)?;
                        continue;
                    };
                    if let Some(bytes) = records.get(rkey)? {
                        let current = match stored_expiry(kind, &bytes) {
                            Ok(e) => e,
                            Err(e) => return abort(e),
                        };
                        if current == exp {
                            records.remove(rkey)?;
                            removed[kind as usize] += 1;
                            if kind != keys::KIND_LOGOUT {
                                gone.push((kind, rkey.to_vec()));
                            }
                        }
                    }
                    tx.expiry.remove(ikey)?;
                }
                if !gone.is_empty() {
                    raise_commit_seq(tx.meta, seq)?;
                }
                Ok((removed, gone))
            });
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
            self.inner
                .swept
                .fetch_add(removed.iter().sum::<u64>(), Ordering::Relaxed);
            for (total, n) in purged.iter_mut().zip(removed) {
                *total += n;
            }
        }
        Ok(purged)
    }
}

/// Due entries per sweep transaction. sled 0.34 holds its process-wide write lock while a
/// transaction commits, and every `Tree::get` waits behind it: small transactions keep
/// that wait short (the proxy asks sled only for hits and the presence filter's few false
/// positives).
pub const SWEEP_TX_ENTRIES: usize = 64;

/// Threads that purge due batches in parallel (at most the available cores).
pub const SWEEP_WORKERS: usize = 2;

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

/// Index entries read per sweep batch (one purging thread takes a batch, in transactions
/// of [`SWEEP_TX_ENTRIES`]); a sweep repeats batches until nothing is due.
pub const SWEEP_BATCH: usize = 1024;

/// Runs until `shutdown` flips to `true` (or its sender is dropped): every `interval`
/// (at least [`MIN_SWEEP_INTERVAL`]), purges everything due. A failed sweep is logged and
/// retried at the next tick; it never stops the loop. For an interval that can change
/// while running (config reload), see [`run_sweeper_following`].
pub async fn run_sweeper(
    store: RevocationStore,
    interval: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (_fixed, interval) = tokio::sync::watch::channel(interval);
    run_sweeper_following(store, interval, shutdown).await;
}

/// Like [`run_sweeper`], with the interval read from `interval`: when it changes (a
/// reloaded `store.sweep_interval`), the pending wait is restarted with the new period, so
/// a shorter interval applies at once. A dropped `interval` sender keeps the last value.
pub async fn run_sweeper_following(
    store: RevocationStore,
    mut interval: tokio::sync::watch::Receiver<Duration>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut follow = true;
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        let period = (*interval.borrow_and_update()).max(MIN_SWEEP_INTERVAL);
        tracing::debug!(interval_ms = period.as_millis() as u64, "sweeper waiting");
        tokio::select! {
            () = tokio::time::sleep(period) => {
                if let Err(e) = store.sweep_due(store.now(), SWEEP_BATCH).await {
                    tracing::warn!(error = %e, "sweep failed; retrying at the next tick");
                }
            }
            changed = interval.changed(), if follow => {
                match changed {
                    Ok(()) => tracing::info!(
                        interval = %humantime::format_duration(*interval.borrow()),
                        "sweep interval changed"
                    ),
                    // Nobody can change it any more: keep the last one.
                    Err(_) => follow = false,
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() {
                    // The sender is gone: nobody can stop us any more, so stop now.
                    break;
                }
            }
        }
    }
    tracing::debug!("sweeper stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::{Kind, NewRevocation, Source};

    #[tokio::test]
    async fn sweeps_on_tick_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000);
        let store =
            RevocationStore::open(&dir.path().join("store"), 1 << 20, clock.clone()).unwrap();
        store
            .revoke(NewRevocation {
                kind: Kind::Jti,
                issuer: "iss".into(),
                value: "a".into(),
                issued_before: None,
                expires_at: 1_010,
                reason: None,
                source: Source::Admin,
            })
            .await
            .unwrap();
        clock.set(1_011);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run_sweeper(store.clone(), Duration::ZERO, rx));
        // A zero interval is raised to MIN_SWEEP_INTERVAL: the first tick comes after ~1 s.
        let mut waited = 0;
        while store.counts().jti != 0 && waited < 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert_eq!(store.counts().jti, 0);
        assert!(store.sweep_totals().0 >= 1);
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("sweeper stops")
            .unwrap();
    }

    #[tokio::test]
    async fn a_shorter_interval_applies_without_waiting_for_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000);
        let store =
            RevocationStore::open(&dir.path().join("store"), 1 << 20, clock.clone()).unwrap();
        let (interval_tx, interval_rx) = tokio::sync::watch::channel(Duration::from_secs(3600));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run_sweeper_following(store.clone(), interval_rx, rx));
        interval_tx.send(Duration::from_secs(1)).unwrap();
        // With the old hour-long wait nothing would run within the bound.
        let mut waited = 0;
        while store.sweep_totals().0 == 0 && waited < 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert!(
            store.sweep_totals().0 >= 1,
            "no sweep after the interval changed"
        );
        // A dropped interval sender keeps the last interval and does not spin or stop.
        drop(interval_tx);
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("sweeper stops")
            .unwrap();
    }
}
