//! The background sweeper: purges due entries every `store.sweep_interval`.
//!
//! Every tick purges everything whose `expires_at` has passed, so an entry leaves the
//! store at most one interval (plus the sweep's own duration) after it expired — within
//! the two intervals SPEC §6 promises.

use std::time::Duration;

use super::RevocationStore;
use crate::config::MIN_SWEEP_INTERVAL;

/// Index entries handled per sweep transaction. Bounds the size of one sled transaction
/// (and so the time writers may wait on it); a sweep repeats batches until nothing is due.
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
