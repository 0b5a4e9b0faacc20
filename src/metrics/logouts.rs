//! Back-channel logouts per issuer, for `GET /v1/stats` (and `revgate stats`): how many
//! were accepted and refused, and the last refusal's reason and time. A refused logout
//! leaves the user logged in at the API while the identity provider only logs a warning,
//! so the operator must be able to see it here without reading logs.
//!
//! Keyed by the configured issuer a refused token named; refusals that name none (a
//! malformed token, no or an unknown `iss`) are counted together, unattributed. Only
//! configured issuers become keys, so the table stays as small as the configuration.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::auth::logout::LogoutReason;

/// Longest refusal description kept (it is the `400` answer's text, bounded already;
/// this bounds what the stats answer repeats).
pub const MAX_REFUSAL_DESCRIPTION_CHARS: usize = 300;

/// The last refused logout of one issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRefusal {
    /// When (seconds since the epoch).
    pub at: u64,
    /// The class of the refusal (the `reason` label of `revgate_backchannel_logouts_total`).
    pub reason: LogoutReason,
    /// The description the `400` answer carried (`invalid logout token: missing exp`).
    pub description: String,
}

/// Logout counts of one issuer (or of the unattributed refusals).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerLogouts {
    /// Logouts accepted (the session or subject was revoked, or an exact repeat).
    pub accepted: u64,
    /// Logouts refused (`400`).
    pub refused: u64,
    /// The most recent refusal.
    pub last_refusal: Option<LastRefusal>,
}

/// Per-issuer logout counts since start. Logouts are rare (one per user session at most),
/// so one mutex is fine; the proxy's hot path never touches it.
#[derive(Debug, Default)]
pub struct LogoutLedger {
    /// `None`: refusals attributed to no configured issuer.
    by_issuer: Mutex<BTreeMap<Option<String>, IssuerLogouts>>,
}

impl LogoutLedger {
    /// Counts an accepted logout of `issuer`.
    pub fn accepted(&self, issuer: &str) {
        let mut table = self.by_issuer.lock().unwrap_or_else(|e| e.into_inner());
        table.entry(Some(issuer.to_string())).or_default().accepted += 1;
    }

    /// Counts a refused logout of `issuer` (`None`: it named no configured issuer) at `at`.
    pub fn refused(&self, issuer: Option<&str>, reason: LogoutReason, description: &str, at: u64) {
        let mut table = self.by_issuer.lock().unwrap_or_else(|e| e.into_inner());
        let entry = table.entry(issuer.map(str::to_string)).or_default();
        entry.refused += 1;
        entry.last_refusal = Some(LastRefusal {
            at,
            reason,
            description: description
                .chars()
                .take(MAX_REFUSAL_DESCRIPTION_CHARS)
                .collect(),
        });
    }

    /// One row per issuer of `configured` (in that order, zero counts included), then the
    /// unattributed refusals when there were any. Issuers removed by a reload are left out.
    pub fn rows<'a>(
        &self,
        configured: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(Option<String>, IssuerLogouts)> {
        let table = self.by_issuer.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<(Option<String>, IssuerLogouts)> = configured
            .into_iter()
            .map(|iss| {
                let key = Some(iss.to_string());
                let counts = table.get(&key).cloned().unwrap_or_default();
                (key, counts)
            })
            .collect();
        if let Some(unattributed) = table.get(&None) {
            rows.push((None, unattributed.clone()));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_issuer_and_keeps_the_last_refusal() {
        let ledger = LogoutLedger::default();
        ledger.accepted("https://a/");
        ledger.accepted("https://a/");
        ledger.refused(
            Some("https://a/"),
            LogoutReason::Time,
            "invalid logout token: missing exp",
            100,
        );
        ledger.refused(
            Some("https://a/"),
            LogoutReason::Audience,
            "invalid logout token: audience not accepted",
            200,
        );
        ledger.refused(None, LogoutReason::Issuer, &"x".repeat(1000), 300);
        let rows = ledger.rows(["https://a/", "https://b/"]);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0].0.as_deref(), Some("https://a/"));
        assert_eq!((rows[0].1.accepted, rows[0].1.refused), (2, 2));
        let last = rows[0].1.last_refusal.clone().unwrap();
        assert_eq!((last.at, last.reason), (200, LogoutReason::Audience));
        assert_eq!(
            last.description,
            "invalid logout token: audience not accepted"
        );
        assert_eq!(
            rows[1],
            (Some("https://b/".to_string()), IssuerLogouts::default())
        );
        assert_eq!(rows[2].0, None);
        assert_eq!(rows[2].1.refused, 1);
        assert_eq!(
            rows[2].1.last_refusal.as_ref().unwrap().description.len(),
            MAX_REFUSAL_DESCRIPTION_CHARS
        );
        // An issuer no longer configured is left out; nothing unattributed: no such row.
        let fresh = LogoutLedger::default();
        fresh.accepted("https://gone/");
        assert_eq!(fresh.rows(["https://b/"]).len(), 1);
    }
}
