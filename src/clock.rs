//! Time source. Everything that compares instants (token checks, expiry, the sweeper)
//! reads the clock through [`SharedClock`], so tests can move time instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now" in whole seconds since the Unix epoch (the unit of JWT `iat`/`exp`).
pub trait Clock: Send + Sync + 'static {
    /// Current time, seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// Cheap, cloneable handle to the clock in use.
pub type SharedClock = Arc<dyn Clock>;

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock standing at `now` (seconds since the epoch).
    pub fn new(now: u64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicU64::new(now)))
    }
    /// Sets the time.
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
    /// Moves the time forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The system clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Formats seconds since the epoch as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// Parses an RFC 3339 instant into seconds since the epoch (fractions truncated).
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let t = humantime::parse_rfc3339_weak(text.trim())
        .or_else(|_| humantime::parse_rfc3339(text.trim()))
        .map_err(|e| format!("not an RFC 3339 instant: {e}"))?;
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| "instant before 1970".to_string())
}
