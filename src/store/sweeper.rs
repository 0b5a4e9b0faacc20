//! The background sweeper: purges due entries every `store.sweep_interval`.

use std::time::Duration;

use super::RevocationStore;

/// Runs until `shutdown` flips to `true`: every `interval`, purges everything due.
pub async fn run_sweeper(
    store: RevocationStore,
    interval: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    todo!("{store:?} {interval:?} {}", *shutdown.borrow())
}
