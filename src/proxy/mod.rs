//! The proxy listener (`server.listen`, SPEC §4): limits, the path rules (checked before
//! routing, on every path), routing, the token decision (verify → revocation lookup →
//! scopes), the CORS preflight exception, and forwarding with streamed bodies: identity,
//! forwarding (`server.trusted_proxies`) and hop-by-hop header rules, WebSocket upgrades
//! (`upgrade.rs`), the load balancer's health path (`server.health_path`) and the access
//! log (`access.rs`).
//!
//! The decision runs on every request and is the hot path: no locks across `.await`,
//! one store lookup per request, and no logging above `debug` for accepted requests
//! except the one access line (SPEC §7; `server.access_log`), which is buffered
//! (`crate::logline::LogWriter`).

mod access;
mod forward;
mod headers;
mod route;
mod upgrade;

pub use access::{parser_refusal, AccessBody, ACCESS_TARGET};
pub use forward::{Upstreams, UPSTREAM_CONNECT_TIMEOUT};
pub use route::{check_path, match_route, match_route_index, PathProblem};

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;

use crate::auth::authorize::Refusal;
use crate::config::Config;
use crate::error::{GatewayError, ProxyBody, Surface, MAX_BODY_LIMIT};
use crate::metrics::Outcome;
use crate::{App, Snapshot};

use access::{AccessLine, Trace};
use forward::{forward, Admission, Exchange};
use headers::{is_cors_preflight, request_id, X_REQUEST_ID};
use route::decode_unreserved;

/// The proxy listener's service: the shared state and the upstream clients it owns. A
/// cheap `Clone` handle, one per connection.
#[derive(Clone)]
pub struct Proxy {
    app: Arc<App>,
    upstreams: Upstreams,
    tls: bool,
}

impl Proxy {
    /// The proxy over `app`, with new upstream connection pools, for a plain listener.
    pub fn new(app: Arc<App>) -> Proxy {
        Proxy {
            app,
            upstreams: Upstreams::new(),
            tls: false,
        }
    }

    /// The same proxy for a TLS listener (`X-Forwarded-Proto: https`).
    pub fn over_tls(mut self) -> Proxy {
        self.tls = true;
        self
    }

    /// The service of one accepted connection from `remote`: what every request on it
    /// shares (the peer's `X-Forwarded-For` entry is written once, here), behind one `Arc`
    /// so a request costs one reference count.
    pub fn connection(&self, remote: SocketAddr) -> Arc<Connection> {
        Arc::new(Connection {
            proxy: self.clone(),
            remote,
            forwarded_for: headers::peer_value(remote.ip()),
        })
    }
}

/// One accepted proxy connection ([`Proxy::connection`]).
pub struct Connection {
    proxy: Proxy,
    remote: SocketAddr,
    forwarded_for: HeaderValue,
}

impl Connection {
    /// Answers one request on this connection (see [`handle`]).
    pub async fn handle(&self, req: Request<Incoming>) -> Response<AccessBody> {
        handle(self, req).await
    }
}

/// Answers one request on the proxy listener.
async fn handle(conn: &Connection, req: Request<Incoming>) -> Response<AccessBody> {
    let proxy = &conn.proxy;
    let remote = conn.remote;
    let app = &proxy.app;
    let snapshot = app.snapshot();
    let route_metrics = &snapshot.routes;
    let request_id = request_id(req.headers());
    // Nothing is gathered for a line the log filter drops (`RUST_LOG=warn`).
    let line = (snapshot.config.server.access_log && access::enabled())
        .then(|| AccessLine::begin(&req, remote, &snapshot, std::time::Instant::now()));
    let mut trace = Trace::default();
    let exchange = Exchange {
        remote,
        forwarded_for: &conn.forwarded_for,
        request_id: &request_id,
        tls: proxy.tls,
    };
    let served = serve(proxy, &snapshot, req, &exchange, &mut trace).await;
    // Upstream latency by route: from sending to the answer's headers (or the failure),
    // for the requests that reached an upstream.
    if let (Some(index), Some(upstream)) = (trace.matched, trace.upstream) {
        route_metrics.observe_upstream(index, upstream);
    }
    let (mut resp, outcome) = match served {
        Ok(Served::Health(resp)) => (resp, "health"),
        Ok(Served::Answer(resp, outcome)) => {
            app.metrics.request(outcome);
            route_metrics.count(trace.matched, outcome);
            (resp, outcome.label())
        }
        Err(Refusal { error: err, log }) => {
            let outcome = Outcome::of(&err);
            app.metrics.request(outcome);
            route_metrics.count(trace.matched, outcome);
            if let Some(log) = log {
                tracing::info!(
                    request_id = %request_id.to_str().unwrap_or("-"),
                    status = err.status().as_u16(),
                    reason = %log.reason,
                    kid = log.kid.as_deref().unwrap_or("-"),
                    jti = log.jti.as_deref().unwrap_or("-"),
                    "request rejected"
                );
            }
            (err.into_response(Surface::Proxy), outcome.label())
        }
    };
    let status = resp.status();
    let line = line.map(|l| l.answered(request_id.clone(), status, outcome, &trace, &snapshot));
    resp.headers_mut().insert(X_REQUEST_ID, request_id);
    resp.map(|body| AccessBody::new(body, line))
}

/// What [`serve`] answered with.
enum Served {
    /// An answer counted in the request metrics under its outcome.
    Answer(Response<ProxyBody>, Outcome),
    /// The health path's answer (not a request of any route; not counted).
    Health(Response<ProxyBody>),
}

fn refuse(err: GatewayError) -> Refusal {
    err.into()
}

async fn serve(
    proxy: &Proxy,
    snapshot: &Snapshot,
    req: Request<Incoming>,
    exchange: &Exchange<'_>,
    trace: &mut Trace,
) -> Result<Served, Refusal> {
    let app = &proxy.app;
    let config = &*snapshot.config;
    check_limits(config, &req).map_err(refuse)?;
    // Every path, the public endpoints' included, before anything reads it (SPEC §4).
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return Err(refuse(GatewayError::InvalidRequest(
            "more than one Host header".to_string(),
        )));
    }
    route::check_path(req.uri().path())
        .map_err(|p| refuse(GatewayError::InvalidRequest(p.description().to_string())))?;

    let mut req = req;
    if let Some(uri) = decode_unreserved(req.uri()) {
        *req.uri_mut() = uri;
    }
    let path = req.uri().path();
    // Decoding only ever yields unreserved characters, so it cannot create what
    // `check_path` refuses (a `%2e%2e` segment was refused above, before it became `..`).
    debug_assert_eq!(route::check_path(path), Ok(()));
    if !config.server.health_path.is_empty() && path == config.server.health_path {
        return health(app, &req).map(Served::Health).map_err(refuse);
    }
    if !config.backchannel.path.is_empty() && path == config.backchannel.path {
        return Ok(Served::Answer(
            crate::endpoints::backchannel(app, snapshot, req).await,
            Outcome::Public,
        ));
    }
    if !config.revoke_endpoint.path.is_empty() && path == config.revoke_endpoint.path {
        return Ok(Served::Answer(
            crate::endpoints::revoke(app, snapshot, req).await,
            Outcome::Public,
        ));
    }
    let index = route::match_route_index(&config.routes, path)
        .ok_or_else(|| refuse(GatewayError::NotFound("no route for this path".to_string())))?;
    trace.matched = Some(index);
    let route = &config.routes[index];

    // A real CORS preflight passes without a token, forwarded with nothing that could make
    // the upstream act on it (see `Admission::Preflight`); anything else needs a token.
    let preflight = config.auth.forward_cors_preflight && is_cors_preflight(&req);
    let verified;
    let (admission, outcome) = if preflight {
        (Admission::Preflight, Outcome::Public)
    } else if route.public {
        (Admission::Public, Outcome::Public)
    } else {
        // Parse → verify → revocation lookup → scopes, timed as one decision.
        let decision = app.metrics.decision_timer();
        verified = app
            .auth
            .authorize(snapshot.under(), req.headers(), route)
            .await?;
        drop(decision);
        (Admission::Token(&verified), Outcome::Allowed)
    };
    let upstreams = &proxy.upstreams;
    let resp = forward(upstreams, config, route, req, exchange, admission, trace)
        .await
        .map_err(refuse)?;
    Ok(Served::Answer(resp, outcome))
}

/// `GET`/`HEAD` of `server.health_path`: the gateway's health ([`crate::health`]) as
/// `200`/`503` with `{"status": ...}` and nothing else, for a load balancer; no token.
fn health<B>(app: &App, req: &Request<B>) -> Result<Response<ProxyBody>, GatewayError> {
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return Err(GatewayError::MethodNotAllowed("GET, HEAD".to_string()));
    }
    let health = crate::health::Health::of(app);
    Ok(
        crate::error::json_response::<bytes::Bytes>(health.status_code(), &health.summary())
            .map(crate::error::full_body),
    )
}

/// 431 / 413 before anything else (SPEC §4: on every endpoint).
fn check_limits<B>(config: &Config, req: &Request<B>) -> Result<(), GatewayError> {
    let uri_len = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().len())
        .unwrap_or(1);
    let mut size = req.method().as_str().len() + uri_len + 12;
    for (name, value) in req.headers() {
        size += name.as_str().len() + value.len() + 4;
    }
    if size > config.server.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| GatewayError::InvalidRequest("invalid Content-Length".to_string()))?;
        if len > config.server.max_body_bytes {
            return Err(GatewayError::BodyTooLarge(MAX_BODY_LIMIT));
        }
    }
    Ok(())
}
