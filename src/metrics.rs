//! Prometheus metrics (`GET /metrics`). Plain atomics on the hot path; rendered as text
//! on demand. Every name is prefixed `revgate_`; README.md lists them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::RevocationStore;

/// Outcome of one request on the proxy listener (label `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded upstream with a verified token.
    Allowed,
    /// Forwarded on a public route or as a CORS preflight.
    Public,
    /// 401 without credentials / another scheme.
    Unauthenticated,
    /// 400 malformed credentials.
    BadRequest,
    /// 401 invalid token (any failed check but revocation).
    InvalidToken,
    /// 401 revoked.
    Revoked,
    /// 403 insufficient scope.
    Forbidden,
    /// 404 no route.
    NoRoute,
    /// 413/431.
    TooLarge,
    /// 502/504 upstream trouble.
    UpstreamError,
    /// 503 store trouble.
    StoreError,
}

impl Outcome {
    const ALL: [Outcome; 11] = [
        Outcome::Allowed,
        Outcome::Public,
        Outcome::Unauthenticated,
        Outcome::BadRequest,
        Outcome::InvalidToken,
        Outcome::Revoked,
        Outcome::Forbidden,
        Outcome::NoRoute,
        Outcome::TooLarge,
        Outcome::UpstreamError,
        Outcome::StoreError,
    ];
    fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Public => "public",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::BadRequest => "bad_request",
            Outcome::InvalidToken => "invalid_token",
            Outcome::Revoked => "revoked",
            Outcome::Forbidden => "forbidden",
            Outcome::NoRoute => "no_route",
            Outcome::TooLarge => "too_large",
            Outcome::UpstreamError => "upstream_error",
            Outcome::StoreError => "store_error",
        }
    }
}

/// Counters shared by every part of the gateway.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [AtomicU64; 11],
    revocation_hits: [AtomicU64; 3],
    revocations_by_source: [AtomicU64; 3],
    /// Back-channel logouts accepted.
    pub backchannel_accepted: AtomicU64,
    /// Back-channel logouts rejected, by [`BACKCHANNEL_REASONS`].
    backchannel_rejected: [AtomicU64; 10],
    /// JWKS fetches that succeeded.
    pub jwks_fetch_ok: AtomicU64,
    /// JWKS fetches that failed.
    pub jwks_fetch_error: AtomicU64,
}

/// Reasons a back-channel logout is rejected (label `reason`).
pub const BACKCHANNEL_REASONS: [&str; 10] = [
    "request",
    "malformed",
    "issuer",
    "algorithm",
    "signature",
    "audience",
    "time",
    "claims",
    "replay",
    "store",
];

/// Sorts a back-channel rejection description into one of [`BACKCHANNEL_REASONS`].
pub fn backchannel_reason(description: &str) -> &'static str {
    let d = description.to_ascii_lowercase();
    let has = |w: &str| d.contains(w);
    if has("could not be stored") {
        "store"
    } else if has("already used") {
        "replay"
    } else if has("content-type") || has("parameter") || has("body") || has("given more than once")
    {
        "request"
    } else if has("issuer") {
        "issuer"
    } else if has("algorithm") {
        "algorithm"
    } else if has("signature") || has("kid") || has("no key") {
        "signature"
    } else if has("audience") {
        "audience"
    } else if has("expired") || has("iat") || has("exp") || has("max_age") {
        "time"
    } else if has("json") || has("base64") || has("compact") || has("too large") || has("duplicate")
    {
        "malformed"
    } else {
        "claims"
    }
}

impl Metrics {
    /// Counts a rejected back-channel logout under its reason (see [`backchannel_reason`]).
    pub fn backchannel_rejected(&self, description: &str) {
        let reason = backchannel_reason(description);
        let i = BACKCHANNEL_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.backchannel_rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one proxy-listener request.
    pub fn request(&self, outcome: Outcome) {
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused because a revocation of `kind` matched.
    pub fn revocation_hit(&self, kind: crate::store::Kind) {
        self.revocation_hits[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a recorded revocation by source.
    pub fn revocation_recorded(&self, source: crate::store::Source) {
        let i = match source {
            crate::store::Source::Admin => 0,
            crate::store::Source::Backchannel => 1,
            crate::store::Source::RevokeEndpoint => 2,
        };
        self.revocations_by_source[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests seen with this outcome so far.
    pub fn requests_with(&self, outcome: Outcome) -> u64 {
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.requests[i].load(Ordering::Relaxed)
    }

    /// Prometheus text exposition of every metric, store gauges included.
    pub fn render(&self, store: &RevocationStore) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP revgate_requests_total Requests on the proxy listener by outcome."
        );
        let _ = writeln!(out, "# TYPE revgate_requests_total counter");
        for (i, o) in Outcome::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "revgate_requests_total{{outcome=\"{}\"}} {}",
                o.label(),
                self.requests[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP revgate_revocation_hits_total Requests refused because a revocation matched, by kind.");
        let _ = writeln!(out, "# TYPE revgate_revocation_hits_total counter");
        for k in crate::store::Kind::ALL {
            let _ = writeln!(
                out,
                "revgate_revocation_hits_total{{kind=\"{}\"}} {}",
                k.as_str(),
                self.revocation_hits[k as usize].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP revgate_revocations_total Revocations recorded, by source."
        );
        let _ = writeln!(out, "# TYPE revgate_revocations_total counter");
        for (i, s) in ["admin", "backchannel", "revoke_endpoint"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                out,
                "revgate_revocations_total{{source=\"{s}\"}} {}",
                self.revocations_by_source[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP revgate_backchannel_logouts_total Back-channel logout requests by result."
        );
        let _ = writeln!(out, "# TYPE revgate_backchannel_logouts_total counter");
        let _ = writeln!(
            out,
            "revgate_backchannel_logouts_total{{result=\"accepted\"}} {}",
            self.backchannel_accepted.load(Ordering::Relaxed)
        );
        for (i, r) in BACKCHANNEL_REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "revgate_backchannel_logouts_total{{result=\"rejected\",reason=\"{r}\"}} {}",
                self.backchannel_rejected[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP revgate_jwks_fetches_total JWKS fetches by result."
        );
        let _ = writeln!(out, "# TYPE revgate_jwks_fetches_total counter");
        let _ = writeln!(
            out,
            "revgate_jwks_fetches_total{{result=\"ok\"}} {}",
            self.jwks_fetch_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "revgate_jwks_fetches_total{{result=\"error\"}} {}",
            self.jwks_fetch_error.load(Ordering::Relaxed)
        );
        let counts = store.counts();
        let _ = writeln!(
            out,
            "# HELP revgate_store_entries Revocation records in the store, by kind."
        );
        let _ = writeln!(out, "# TYPE revgate_store_entries gauge");
        let _ = writeln!(out, "revgate_store_entries{{kind=\"jti\"}} {}", counts.jti);
        let _ = writeln!(out, "revgate_store_entries{{kind=\"sid\"}} {}", counts.sid);
        let _ = writeln!(out, "revgate_store_entries{{kind=\"sub\"}} {}", counts.sub);
        let (runs, purged) = store.sweep_totals();
        let _ = writeln!(out, "# HELP revgate_sweeps_total Sweeper runs since start.");
        let _ = writeln!(out, "# TYPE revgate_sweeps_total counter");
        let _ = writeln!(out, "revgate_sweeps_total {runs}");
        let _ = writeln!(
            out,
            "# HELP revgate_swept_entries_total Entries purged by the sweeper since start."
        );
        let _ = writeln!(out, "# TYPE revgate_swept_entries_total counter");
        let _ = writeln!(out, "revgate_swept_entries_total {purged}");
        let _ = writeln!(
            out,
            "# HELP revgate_store_flushes_total Durable flushes (fsyncs) of the store since start."
        );
        let _ = writeln!(out, "# TYPE revgate_store_flushes_total counter");
        let _ = writeln!(out, "revgate_store_flushes_total {}", store.flush_count());
        let _ = writeln!(out, "# HELP revgate_store_size_bytes Store size on disk.");
        let _ = writeln!(out, "# TYPE revgate_store_size_bytes gauge");
        let _ = writeln!(out, "revgate_store_size_bytes {}", store.size_on_disk());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backchannel_reasons_are_classified() {
        assert_eq!(
            backchannel_reason("invalid logout token: unknown issuer"),
            "issuer"
        );
        assert_eq!(
            backchannel_reason("invalid logout token: algorithm none is refused"),
            "algorithm"
        );
        assert_eq!(
            backchannel_reason("invalid logout token: invalid signature"),
            "signature"
        );
        assert_eq!(
            backchannel_reason("invalid logout token: audience not accepted"),
            "audience"
        );
        assert_eq!(
            backchannel_reason("invalid logout token: iat is in the future"),
            "time"
        );
        assert_eq!(
            backchannel_reason("invalid logout token: nonce is not allowed in a logout token"),
            "claims"
        );
        assert_eq!(
            backchannel_reason("missing logout_token parameter"),
            "request"
        );
        assert_eq!(
            backchannel_reason("logout token jti was already used by another logout token"),
            "replay"
        );
        assert_eq!(
            backchannel_reason("revocation could not be stored"),
            "store"
        );
        assert_eq!(
            backchannel_reason("invalid logout token: duplicate member name in claims"),
            "malformed"
        );
    }
}
