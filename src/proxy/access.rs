//! The access log (SPEC §7, `server.access_log`): one `info` line with target
//! `revgate::access` per request on the proxy listener, accepted or refused, written when
//! the answer's body has been sent (or the client went away), so it carries the bytes sent
//! and the total time.
//!
//! Fields: `request_id`, `peer` (the connection's address), `client` (only from a trusted
//! peer: the nearest untrusted `X-Forwarded-For` address), `method`, `path` (never the
//! query), `route` (the matched prefix), `status`, `outcome`, `upstream_ms` (until the
//! upstream's answer headers; absent when nothing was sent upstream), `total_ms`, `bytes`
//! (answer body bytes sent). Nothing else of the request is read: no token, no
//! `Authorization`, no query string ever reaches this line.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request};
use hyper::body::{Body, Frame, SizeHint};

use crate::error::{BoxError, ProxyBody};
use crate::Snapshot;

/// Target of the access-log lines (filter with `RUST_LOG=revgate::access=off`).
pub const ACCESS_TARGET: &str = "revgate::access";

/// Whether the log filter in force keeps access lines (`RUST_LOG=warn` drops them): when
/// it does not, the proxy gathers nothing for them. One cached callsite check.
pub(super) fn enabled() -> bool {
    tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO)
}

/// What the access line of one request knows before the body is sent.
pub(super) struct AccessLine {
    started: Instant,
    request_id: Option<HeaderValue>,
    peer: IpAddr,
    client: Option<IpAddr>,
    method: http::Method,
    /// The request target as received (a reference-counted clone; only its path is
    /// written).
    uri: http::Uri,
    route: Option<(Arc<Snapshot>, usize)>,
    status: u16,
    outcome: &'static str,
    upstream: Option<Duration>,
}

/// What the request's handling reports for its access line.
#[derive(Default)]
pub(super) struct Trace {
    /// Position of the matched route in the snapshot's routes.
    pub matched: Option<usize>,
    /// How long the upstream took to answer with headers.
    pub upstream: Option<Duration>,
}

impl AccessLine {
    /// Starts the line of `req` from `remote` (read before the request is consumed).
    pub(super) fn begin<B>(
        req: &Request<B>,
        remote: SocketAddr,
        snapshot: &Snapshot,
        started: Instant,
    ) -> AccessLine {
        let trusted = &snapshot.config.server.trusted_proxies;
        let peer = remote.ip().to_canonical();
        let client = if trusted.iter().any(|net| net.contains(peer)) {
            super::headers::forwarded_client(req.headers(), trusted)
        } else {
            None
        };
        AccessLine {
            started,
            request_id: None,
            peer,
            client,
            method: req.method().clone(),
            uri: req.uri().clone(),
            route: None,
            status: 0,
            outcome: "",
            upstream: None,
        }
    }

    /// Completes the line with the answer; it is written when the body is done.
    pub(super) fn answered(
        mut self,
        request_id: HeaderValue,
        status: http::StatusCode,
        outcome: &'static str,
        trace: &Trace,
        snapshot: &Arc<Snapshot>,
    ) -> AccessLine {
        self.request_id = Some(request_id);
        self.status = status.as_u16();
        self.outcome = outcome;
        self.upstream = trace.upstream;
        self.route = trace.matched.map(|i| (snapshot.clone(), i));
        self
    }

    fn write(&self, bytes: u64) {
        let route = self
            .route
            .as_ref()
            .and_then(|(s, i)| s.config.routes.get(*i))
            .map(|r| r.prefix.as_str());
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = %self.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
            peer = %self.peer,
            client = self.client.map(tracing::field::display),
            method = %self.method,
            path = %self.uri.path(),
            route = route,
            status = self.status,
            outcome = self.outcome,
            upstream_ms = self.upstream.map(millis),
            total_ms = millis(self.started.elapsed()),
            bytes = bytes,
            "request"
        );
    }
}

/// A duration in milliseconds with microsecond resolution.
fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// The body of every answer on the proxy listener: the answer's own body, counted, and the
/// request's access line, written once when the body is dropped — after its last frame
/// was sent, or when the connection went away first.
pub struct AccessBody {
    inner: ProxyBody,
    line: Option<AccessLine>,
    bytes: u64,
}

impl AccessBody {
    /// `inner` with `line` to write when done (`None`: access log off).
    pub(super) fn new(inner: ProxyBody, line: Option<AccessLine>) -> AccessBody {
        AccessBody {
            inner,
            line,
            bytes: 0,
        }
    }
}

impl Body for AccessBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AccessBody {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            line.write(self.bytes);
        }
    }
}

/// The line for a request the HTTP/1.1 parser refused before the gateway saw it (hyper
/// answered it itself: `431` for a header block beyond its buffer, `400` for a malformed
/// request): no request id, method or path exist yet.
pub fn parser_refusal(remote: SocketAddr, status: u16, outcome: &'static str) {
    tracing::info!(
        target: ACCESS_TARGET,
        request_id = "-",
        peer = %remote.ip().to_canonical(),
        method = "-",
        path = "-",
        status = status,
        outcome = outcome,
        bytes = 0u64,
        "request"
    );
}
