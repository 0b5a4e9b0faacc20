//! Prometheus metrics (`GET /metrics`). Plain atomics on the hot path; rendered as text
//! on demand. Every name is prefixed `revgate_`; README.md lists them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::logout::LogoutReason;
use crate::config::RouteConfig;
use crate::store::RevocationStore;

mod histogram;
mod logouts;
pub mod process;
pub use histogram::{Buckets, Histogram};
pub use logouts::{IssuerLogouts, LastRefusal, LogoutLedger, MAX_REFUSAL_DESCRIPTION_CHARS};

/// Number of [`Outcome`] values (one counter each per route).
pub const OUTCOMES: usize = 11;

/// Upper bounds, in seconds, of the `revgate_decision_seconds` histogram buckets (the
/// `+Inf` bucket is implicit). A decision without a JWKS refetch takes tens of µs.
pub const DECISION_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];
/// [`DECISION_BUCKETS`] with their nanoseconds, for the hot path (no float arithmetic there).
static DECISION: Buckets<12> = Buckets {
    seconds: DECISION_BUCKETS,
    nanos: [
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
    ],
};

/// Upper bounds, in seconds, of the `revgate_upstream_seconds` buckets (time from sending
/// a request upstream to its answer's headers; `+Inf` implicit). Up to the default route
/// timeout of 30 s.
pub const UPSTREAM_BUCKETS: [f64; 14] = [
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// [`UPSTREAM_BUCKETS`] with their nanoseconds.
static UPSTREAM: Buckets<14> = Buckets {
    seconds: UPSTREAM_BUCKETS,
    nanos: [
        1_000_000,
        2_500_000,
        5_000_000,
        10_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
        250_000_000,
        500_000_000,
        1_000_000_000,
        2_500_000_000,
        5_000_000_000,
        10_000_000_000,
        30_000_000_000,
    ],
};

/// `revgate_decision_seconds` (a [`Histogram`] over [`DECISION_BUCKETS`]).
#[derive(Debug)]
struct DecisionHistogram(Histogram<12>);

impl Default for DecisionHistogram {
    fn default() -> Self {
        DecisionHistogram(Histogram::new(&DECISION))
    }
}

/// JWKS fetches of one issuer, by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JwksFetches {
    /// Fetches that yielded a usable key set.
    pub ok: u64,
    /// Fetches that failed (unreachable, bad status, no usable key).
    pub error: u64,
}

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
    /// `revgate_decision_seconds`.
    decision: DecisionHistogram,
    revocation_hits: [AtomicU64; 3],
    revocations_by_source: [AtomicU64; 3],
    /// Back-channel logouts accepted.
    pub backchannel_accepted: AtomicU64,
    /// Back-channel logouts rejected, by [`LogoutReason`] (index = its position in
    /// [`LogoutReason::ALL`]).
    backchannel_rejected: [AtomicU64; LogoutReason::ALL.len()],
    /// Back-channel logouts per issuer, with the last refusal (`GET /v1/stats`).
    pub logouts: LogoutLedger,
    /// JWKS fetches from `jwks_url`s by issuer (only configured issuers are fetched, so
    /// the table is as small as the configuration). Fetches are rare: a mutex is fine.
    jwks_fetches: Mutex<BTreeMap<String, JwksFetches>>,
    /// Configuration reloads applied (`SIGHUP`, `POST /v1/reload`).
    reloads_ok: AtomicU64,
    /// Configuration reloads refused (the running configuration stayed).
    reloads_refused: AtomicU64,
}

impl Metrics {
    /// Counts one JWKS fetch of `issuer` from its `jwks_url`.
    pub fn jwks_fetched(&self, issuer: &str, ok: bool) {
        let mut table = self.jwks_fetches.lock().unwrap_or_else(|e| e.into_inner());
        let entry = table.entry(issuer.to_string()).or_default();
        if ok {
            entry.ok += 1;
        } else {
            entry.error += 1;
        }
    }

    /// The JWKS fetches counted for `issuer`.
    pub fn jwks_fetches(&self, issuer: &str) -> JwksFetches {
        let table = self.jwks_fetches.lock().unwrap_or_else(|e| e.into_inner());
        table.get(issuer).copied().unwrap_or_default()
    }

    /// Counts one configuration reload, applied (`ok`) or refused.
    pub fn reload_result(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `revgate_jwks_fetches_total{issuer,result}` and `revgate_reloads_total{result}`.
    fn render_keys_and_reloads(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP revgate_jwks_fetches_total JWKS fetches from jwks_url by issuer and result."
        );
        let _ = writeln!(out, "# TYPE revgate_jwks_fetches_total counter");
        let table = self.jwks_fetches.lock().unwrap_or_else(|e| e.into_inner());
        for (issuer, n) in table.iter() {
            let issuer = escape_label(issuer);
            for (result, count) in [("ok", n.ok), ("error", n.error)] {
                let _ = writeln!(
                    out,
                    "revgate_jwks_fetches_total{{issuer=\"{issuer}\",result=\"{result}\"}} {count}"
                );
            }
        }
        drop(table);
        let _ = writeln!(
            out,
            "# HELP revgate_reloads_total Configuration reloads by result (ok: applied; refused: the running configuration stayed)."
        );
        let _ = writeln!(out, "# TYPE revgate_reloads_total counter");
        for (result, counter) in [("ok", &self.reloads_ok), ("refused", &self.reloads_refused)] {
            let _ = writeln!(
                out,
                "revgate_reloads_total{{result=\"{result}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
    }

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
        self.render_keys_and_reloads(&mut out);
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
        process::render(&mut out);
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
        self.decision.0.observe(elapsed);
    }

    /// Token decisions observed so far.
    pub fn decisions(&self) -> u64 {
        self.decision.0.count()
    }

    fn render_decision(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP revgate_decision_seconds Time of the token decision on the proxy listener \
             (parse, verify, revocation lookup, scopes)."
        );
        let _ = writeln!(out, "# TYPE revgate_decision_seconds histogram");
        self.decision.0.render(out, "revgate_decision_seconds", "");
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
    counts: Vec<Arc<RouteRow>>,
}

/// The counters of one route: requests by outcome, and the upstream latency.
#[derive(Debug)]
struct RouteRow {
    outcomes: [AtomicU64; OUTCOMES],
    /// `revgate_upstream_seconds` of this route.
    upstream: Histogram<14>,
}

impl Default for RouteRow {
    fn default() -> Self {
        RouteRow {
            outcomes: Default::default(),
            upstream: Histogram::new(&UPSTREAM),
        }
    }
}

impl RouteMetrics {
    /// Counters for `routes`; prefixes already in `previous` keep their counters.
    pub fn for_routes(routes: &[RouteConfig], previous: Option<&RouteMetrics>) -> RouteMetrics {
        let prefixes: Vec<String> = routes.iter().map(|r| r.prefix.clone()).collect();
        let row_of = |row: Option<usize>| -> Arc<RouteRow> {
            match (previous, row) {
                (Some(prev), Some(row)) => prev.counts[row].clone(),
                _ => Arc::new(Default::default()),
            }
        };
        let mut counts: Vec<Arc<RouteRow>> = prefixes
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
        self.counts[row].outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long the upstream of the route at position `route` took to answer
    /// (from sending the request to the answer's headers, or to the failure).
    pub fn observe_upstream(&self, route: usize, elapsed: Duration) {
        if let Some(row) = self
            .counts
            .get(route)
            .filter(|_| route < self.prefixes.len())
        {
            row.upstream.observe(elapsed);
        }
    }

    /// Upstream answers timed for the route with `prefix`.
    pub fn upstream_count(&self, prefix: &str) -> u64 {
        self.prefixes
            .iter()
            .position(|q| q == prefix)
            .map_or(0, |i| self.counts[i].upstream.count())
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
        self.counts[row].outcomes[outcome as usize].load(Ordering::Relaxed)
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
                    self.counts[row].outcomes[o as usize].load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP revgate_upstream_seconds Time from sending a request to the route's upstream \
             to its answer's headers (or to the failure), by route."
        );
        let _ = writeln!(out, "# TYPE revgate_upstream_seconds histogram");
        for (row, prefix) in self.prefixes.iter().enumerate() {
            let labels = format!("route=\"{}\",", escape_label(prefix));
            self.counts[row]
                .upstream
                .render(out, "revgate_upstream_seconds", &labels);
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
mod tests;
