//! Listeners, background tasks, shutdown.

/// The bound listeners.
pub struct Listeners;

/// Runs the gateway.
pub async fn run() {}
