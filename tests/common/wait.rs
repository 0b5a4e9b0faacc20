//! Bounded polling: wait for an observable condition, never for a fixed time.

use std::future::Future;
use std::time::Duration;

use super::WAIT;

/// Pause between two polls of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `cond` every [`POLL_INTERVAL`] until it holds; fails the test naming `what` when
/// it still does not after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(WAIT, what, cond).await;
}

/// [`eventually`] with the bound `bound` instead of [`WAIT`].
pub async fn eventually_within<F, Fut>(bound: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
