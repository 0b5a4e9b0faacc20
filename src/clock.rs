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

/// The last instant RFC 3339 can write, 9999-12-31T23:59:59Z (seconds since the epoch).
/// Instants a client supplies beyond it are refused; formatting clamps to it.
pub const MAX_RFC3339_SECS: u64 = 253_402_300_799;

/// Formats seconds since the epoch as RFC 3339 (UTC, whole seconds). Instants after
/// [`MAX_RFC3339_SECS`] are shown as it (formatting them would panic).
pub fn rfc3339(secs: u64) -> String {
    let secs = secs.min(MAX_RFC3339_SECS);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// Parses an RFC 3339 instant into seconds since the epoch (fractions truncated).
/// Accepts `Z` and numeric offsets (`+01:00`, `-05:30`).
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (base, offset_secs) = split_offset(text);
    let t =
        humantime::parse_rfc3339_weak(base).map_err(|e| format!("not an RFC 3339 instant: {e}"))?;
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| "instant before 1970".to_string())?;
    u64::try_from(secs - offset_secs).map_err(|_| "instant before 1970".to_string())
}

/// Parses an RFC 3339 instant written exactly as RFC 3339 §5.6 (and the admin API
/// document's `format: date-time`) has it: `YYYY-MM-DDTHH:MM:SS`, an optional fraction,
/// and `Z` or `±HH:MM` (`T` and `Z` in either case). [`parse_rfc3339`] also takes a space
/// for the `T` and a missing offset (read as UTC), which the CLI's `--until` allows for
/// people; the admin API's JSON takes only this.
pub fn parse_rfc3339_strict(text: &str) -> Result<u64, String> {
    if !is_rfc3339(text.as_bytes()) {
        return Err(
            "not an RFC 3339 instant (YYYY-MM-DDTHH:MM:SS, optional fraction, then Z or ±HH:MM)"
                .to_string(),
        );
    }
    // Only digits, separators and the letters T and Z are left: the parser wants capitals.
    parse_rfc3339(&text.to_ascii_uppercase())
}

/// Whether `t` has the shape of an RFC 3339 `date-time` (the values are checked by the
/// parser).
fn is_rfc3339(t: &[u8]) -> bool {
    let digits =
        |r: std::ops::Range<usize>| t.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let at = |i: usize, b: u8| t.get(i) == Some(&b);
    let date_time = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && matches!(t.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19);
    if !date_time {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        let start = i + 1;
        i = start;
        while t.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &t[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

/// Splits a trailing `Z` or `±HH:MM` offset off an RFC 3339 text.
fn split_offset(text: &str) -> (&str, i64) {
    if let Some(base) = text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        return (base, 0);
    }
    // `get`, not indexing: the last six bytes may start inside a multi-byte character.
    if let Some(tail) = text.get(text.len().max(6) - 6..).filter(|_| text.len() > 6) {
        let tb = tail.as_bytes();
        if (tb[0] == b'+' || tb[0] == b'-') && tb[3] == b':' && text.contains('T') {
            if let (Ok(h), Ok(m)) = (tail[1..3].parse::<i64>(), tail[4..6].parse::<i64>()) {
                let sign = if tb[0] == b'+' { 1 } else { -1 };
                return (&text[..text.len() - 6], sign * (h * 3600 + m * 60));
            }
        }
    }
    (text, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_and_offsets() {
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Ok(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T17:13:20-05:00"),
            Ok(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.75Z"), Ok(1_700_000_000));
        assert!(parse_rfc3339("yesterday").is_err());
        // The strict form: exactly RFC 3339's date-time.
        for ok in [
            "2023-11-14T22:13:20Z",
            "2023-11-14t22:13:20z",
            "2023-11-14T22:13:20.75Z",
            "2023-11-14T23:13:20+01:00",
        ] {
            assert_eq!(parse_rfc3339_strict(ok), Ok(1_700_000_000), "{ok}");
        }
        for bad in [
            "2023-11-14T22:13:20Z*",
            "2023-11-14T22:13:20Zx",
            "2023-11-14T22:13:20",
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "2023-13-14T22:13:20Z",
            "",
        ] {
            assert!(parse_rfc3339_strict(bad).is_err(), "{bad}");
        }
        // The lenient one keeps reading what people type (the CLI's --until).
        assert_eq!(parse_rfc3339("2023-11-14 22:13:20"), Ok(1_700_000_000));
        assert_eq!(rfc3339(MAX_RFC3339_SECS), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
