//! Prometheus metrics (`GET /metrics`). Plain atomics on the hot path; rendered as text
//! on demand. Every name is prefixed `revgate_`; README.md lists them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::logout::LogoutReason;
use crate::config::RouteConfig;
use crate::store::RevocationStore;

/// Number of [`Outcome`] values (one counter each per route).
pub const OUTCOMES: usize = 11;

/// Upper bounds, in seconds, of the `revgate_decision_seconds` histogram buckets (the
/// `+Inf` bucket is implicit). A decision without a JWKS refetch takes tens of µs.
pub const DECISION_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];
/// [`DECISION_BUCKETS`] in nanoseconds, for the hot path (no float arithmetic there).
const DECISION_BUCKET_NANOS: [u64; 12] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    500_000_000,
    2_500_000_000,
];

/// Outcome of one request on the proxy listener (label `outcome`). Declared in the order
/// of `Outcome::ALL`: `outcome as usize` indexes counter arrays.
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
    /// The outcome a refusal on the proxy listener is counted under (by its kind).
    pub fn of(err: &crate::error::GatewayError) -> Outcome {
        use crate::error::GatewayError as E;
        match err {
            E::NoCredentials | E::AdminTokenRequired => Outcome::Unauthenticated,
            E::InvalidRequest(_)
            | E::MethodNotAllowed(_)
            | E::BodyTimeout
            | E::LengthRequired
            | E::UnsupportedMediaType(_)
            | E::Misdirected
            | E::CrossOrigin => Outcome::BadRequest,
            E::Revoked(_) => Outcome::Revoked,
            E::InvalidToken(_) => Outcome::InvalidToken,
            E::InsufficientScope(_) => Outcome::Forbidden,
            E::NotFound(_) => Outcome::NoRoute,
            E::HeadersTooLarge | E::BodyTooLarge(_) => Outcome::TooLarge,
            E::UpstreamUnreachable | E::UpstreamTimeout => Outcome::UpstreamError,
            E::StoreUnavailable => Outcome::StoreError,
        }
    }

    const ALL: [Outcome; OUTCOMES] = [
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
    /// The `outcome` label (also the access log's `outcome`).
    pub fn label(self) -> &'static str {
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
    requests: [AtomicU64; OUTCOMES],
    /// `revgate_decision_seconds`: per-bucket counts (not cumulative; the last one is
    /// `+Inf` only), summed at render time.
    decision_buckets: [AtomicU64; DECISION_BUCKETS.len() + 1],
    /// Sum of every observed decision, in nanoseconds.
    decision_nanos: AtomicU64,
    revocation_hits: [AtomicU64; 3],
    revocations_by_source: [AtomicU64; 3],
    /// Back-channel logouts accepted.
    pub backchannel_accepted: AtomicU64,
    /// Back-channel logouts rejected, by [`LogoutReason`] (index = its position in
    /// [`LogoutReason::ALL`]).
    backchannel_rejected: [AtomicU64; LogoutReason::ALL.len()],
    /// JWKS fetches that succeeded.
    pub jwks_fetch_ok: AtomicU64,
    /// JWKS fetches that failed.
    pub jwks_fetch_error: AtomicU64,
}

impl Metrics {
    /// Counts a rejected back-channel logout under its reason.
    pub fn backchannel_rejected(&self, reason: LogoutReason) {
        self.backchannel_rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `revgate_backchannel_logouts_total`: accepted, and rejected by reason.
    fn render_backchannel(&self, out: &mut String) {
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
        for reason in LogoutReason::ALL {
            let _ = writeln!(
                out,
                "revgate_backchannel_logouts_total{{result=\"rejected\",reason=\"{}\"}} {}",
                reason.label(),
                self.backchannel_rejected[reason as usize].load(Ordering::Relaxed)
            );
        }
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
        self.render_decision(&mut out);
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
        self.render_backchannel(&mut out);
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

impl Metrics {
    /// Starts timing one token decision (parse → verify → revocation lookup → scopes);
    /// the time is recorded in `revgate_decision_seconds` when the guard is dropped, so
    /// every early return is counted.
    pub fn decision_timer(&self) -> DecisionTimer<'_> {
        DecisionTimer {
            metrics: self,
            started: Instant::now(),
        }
    }

    /// Records one token decision that took `elapsed`. Lock-free: two atomic adds.
    pub fn observe_decision(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = DECISION_BUCKET_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(DECISION_BUCKET_NANOS.len());
        self.decision_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.decision_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Token decisions observed so far.
    pub fn decisions(&self) -> u64 {
        self.decision_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }

    fn render_decision(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP revgate_decision_seconds Time of the token decision on the proxy listener \
             (parse, verify, revocation lookup, scopes)."
        );
        let _ = writeln!(out, "# TYPE revgate_decision_seconds histogram");
        let mut cumulative = 0u64;
        for (i, le) in DECISION_BUCKETS.iter().enumerate() {
            cumulative += self.decision_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "revgate_decision_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += self.decision_buckets[DECISION_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "revgate_decision_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.decision_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "revgate_decision_seconds_sum {sum}");
        let _ = writeln!(out, "revgate_decision_seconds_count {cumulative}");
    }
}

/// Times one token decision; see [`Metrics::decision_timer`].
#[derive(Debug)]
pub struct DecisionTimer<'a> {
    metrics: &'a Metrics,
    started: Instant,
}

impl Drop for DecisionTimer<'_> {
    fn drop(&mut self) {
        self.metrics.observe_decision(self.started.elapsed());
    }
}

/// `revgate_route_requests_total{route,outcome}`: proxy-listener requests per configured
/// route (label `route` = the route's `prefix`, `none` when no route matched) and outcome.
///
/// Built from the routes whenever the configuration is (re)loaded and swapped together
/// with it, so the hot path only indexes a slice by the matched route's position: no
/// allocation, no lock of its own. A route that survives a reload (same prefix) keeps its
/// very counters (shared rows), so no count is lost while requests straddle the swap.
#[derive(Debug)]
pub struct RouteMetrics {
    /// Prefix of each configured route, in configuration order.
    prefixes: Vec<String>,
    /// One row per route, plus a last row for requests that matched no route.
    counts: Vec<Arc<[AtomicU64; OUTCOMES]>>,
}

impl RouteMetrics {
    /// Counters for `routes`; prefixes already in `previous` keep their counters.
    pub fn for_routes(routes: &[RouteConfig], previous: Option<&RouteMetrics>) -> RouteMetrics {
        let prefixes: Vec<String> = routes.iter().map(|r| r.prefix.clone()).collect();
        let row_of = |row: Option<usize>| -> Arc<[AtomicU64; OUTCOMES]> {
            match (previous, row) {
                (Some(prev), Some(row)) => prev.counts[row].clone(),
                _ => Arc::new(Default::default()),
            }
        };
        let mut counts: Vec<Arc<[AtomicU64; OUTCOMES]>> = prefixes
            .iter()
            .map(|p| row_of(previous.and_then(|prev| prev.prefixes.iter().position(|q| q == p))))
            .collect();
        counts.push(row_of(previous.map(|prev| prev.prefixes.len())));
        RouteMetrics { prefixes, counts }
    }

    /// Counts one request on the route at position `route` of the configuration this was
    /// built from (`None`: no route matched).
    pub fn count(&self, route: Option<usize>, outcome: Outcome) {
        let row = route
            .filter(|&i| i < self.prefixes.len())
            .unwrap_or(self.prefixes.len());
        self.counts[row][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests counted for the route with `prefix` (`None`: no route) and `outcome`.
    pub fn get(&self, prefix: Option<&str>, outcome: Outcome) -> u64 {
        let row = match prefix {
            Some(p) => match self.prefixes.iter().position(|q| q == p) {
                Some(i) => i,
                None => return 0,
            },
            None => self.prefixes.len(),
        };
        self.counts[row][outcome as usize].load(Ordering::Relaxed)
    }

    /// Appends the Prometheus text of these counters to `out`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP revgate_route_requests_total Requests on the proxy listener by route \
             (prefix, or none) and outcome."
        );
        let _ = writeln!(out, "# TYPE revgate_route_requests_total counter");
        let labels = self
            .prefixes
            .iter()
            .map(|p| escape_label(p))
            .chain(std::iter::once("none".to_string()));
        for (row, route) in labels.enumerate() {
            for o in Outcome::ALL {
                let _ = writeln!(
                    out,
                    "revgate_route_requests_total{{route=\"{route}\",outcome=\"{}\"}} {}",
                    o.label(),
                    self.counts[row][o as usize].load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_discriminants_index_all() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{o:?}");
        }
    }

    #[test]
    fn decision_histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe_decision(Duration::from_micros(10));
        m.observe_decision(Duration::from_micros(700));
        m.observe_decision(Duration::from_secs(10));
        let mut out = String::new();
        m.render_decision(&mut out);
        assert!(
            out.contains("revgate_decision_seconds_bucket{le=\"0.00005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("revgate_decision_seconds_bucket{le=\"0.001\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("revgate_decision_seconds_bucket{le=\"2.5\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("revgate_decision_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("revgate_decision_seconds_count 3\n"), "{out}");
        assert_eq!(m.decisions(), 3);
    }

    #[test]
    fn route_counts_survive_a_reload_of_the_same_prefix() {
        let route = |prefix: &str| RouteConfig {
            prefix: prefix.into(),
            upstream: "http://127.0.0.1:1".into(),
            strip_prefix: false,
            timeout: Duration::from_secs(1),
            public: false,
            scopes: vec![],
        };
        let first = RouteMetrics::for_routes(&[route("/"), route("/a\"b")], None);
        first.count(Some(0), Outcome::Allowed);
        first.count(Some(1), Outcome::Revoked);
        first.count(None, Outcome::NoRoute);
        first.count(Some(7), Outcome::NoRoute);
        let second = RouteMetrics::for_routes(&[route("/new"), route("/")], Some(&first));
        assert_eq!(second.get(Some("/"), Outcome::Allowed), 1);
        assert_eq!(second.get(Some("/new"), Outcome::Allowed), 0);
        assert_eq!(second.get(Some("/a\"b"), Outcome::Revoked), 0);
        assert_eq!(second.get(None, Outcome::NoRoute), 2);
        let mut out = String::new();
        first.render(&mut out);
        assert!(
            out.contains("revgate_route_requests_total{route=\"/a\\\"b\",outcome=\"revoked\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("revgate_route_requests_total{route=\"none\",outcome=\"no_route\"} 2\n"),
            "{out}"
        );
    }

    #[test]
    fn every_logout_reason_has_its_own_series() {
        let m = Metrics::default();
        for (i, reason) in LogoutReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i, "ALL is in declaration order");
            for _ in 0..=i {
                m.backchannel_rejected(reason);
            }
        }
        let mut out = String::new();
        m.render_backchannel(&mut out);
        for (i, reason) in LogoutReason::ALL.into_iter().enumerate() {
            let series = format!(
                "revgate_backchannel_logouts_total{{result=\"rejected\",reason=\"{}\"}} {}\n",
                reason.label(),
                i + 1
            );
            assert!(out.contains(&series), "{series} in {out}");
        }
    }
}
