//! The proxy listener (`server.listen`, SPEC §4): limits, the path rules (checked before
//! routing, on every path), routing, the token decision (verify → revocation lookup →
//! scopes), the CORS preflight exception, and forwarding with streamed bodies: identity,
//! forwarding (`server.trusted_proxies`) and hop-by-hop header rules.
//!
//! The decision runs on every request and is the hot path: no locks across `.await`,
//! no logging above `debug` for accepted requests, one store lookup per request.

mod forward;
mod headers;
mod route;

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

use forward::{forward, Admission};
use headers::{is_cors_preflight, request_id, X_REQUEST_ID};
use route::decode_unreserved;

/// The proxy listener's service: the shared state and the upstream clients it owns. A
/// cheap `Clone` handle, one per connection.
#[derive(Clone)]
pub struct Proxy {
    app: Arc<App>,
    upstreams: Upstreams,
}

impl Proxy {
    /// The proxy over `app`, with new upstream connection pools.
    pub fn new(app: Arc<App>) -> Proxy {
        Proxy {
            app,
            upstreams: Upstreams::new(),
        }
    }

    /// Answers one request on the proxy listener (see [`handle`]).
    pub async fn handle(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<ProxyBody> {
        handle(self, req, remote).await
    }
}

/// Answers one request on the proxy listener.
async fn handle(proxy: &Proxy, req: Request<Incoming>, remote: SocketAddr) -> Response<ProxyBody> {
    let app = &proxy.app;
    let snapshot = app.snapshot();
    let route_metrics = &snapshot.routes;
    let request_id = request_id(req.headers());
    let mut matched = None;
    let mut resp = match serve(proxy, &snapshot, req, remote, &request_id, &mut matched).await {
        Ok((resp, outcome)) => {
            app.metrics.request(outcome);
            route_metrics.count(matched, outcome);
            resp
        }
        Err(Refusal { error: err, log }) => {
            app.metrics.request(Outcome::of(&err));
            route_metrics.count(matched, Outcome::of(&err));
            if let Some(log) = log {
                tracing::info!(
                    request_id = %request_id,
                    status = err.status().as_u16(),
                    reason = %log.reason,
                    kid = log.kid.as_deref().unwrap_or("-"),
                    jti = log.jti.as_deref().unwrap_or("-"),
                    "request rejected"
                );
            }
            err.into_response(Surface::Proxy)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    resp
}

fn refuse(err: GatewayError) -> Refusal {
    err.into()
}

async fn serve(
    proxy: &Proxy,
    snapshot: &Snapshot,
    req: Request<Incoming>,
    remote: SocketAddr,
    request_id: &str,
    matched: &mut Option<usize>,
) -> Result<(Response<ProxyBody>, Outcome), Refusal> {
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
    if !config.backchannel.path.is_empty() && path == config.backchannel.path {
        return Ok((
            crate::endpoints::backchannel(app, req).await,
            Outcome::Public,
        ));
    }
    if !config.revoke_endpoint.path.is_empty() && path == config.revoke_endpoint.path {
        return Ok((crate::endpoints::revoke(app, req).await, Outcome::Public));
    }
    let index = route::match_route_index(&config.routes, path)
        .ok_or_else(|| refuse(GatewayError::NotFound("no route for this path".to_string())))?;
    *matched = Some(index);
    let route = &config.routes[index];

    // A real CORS preflight passes without a token, forwarded with nothing that could make
    // the upstream act on it (see `Admission::Preflight`); anything else needs a token.
    let preflight = config.auth.forward_cors_preflight && is_cors_preflight(&req);
    if route.public || preflight {
        let admission = if preflight {
            Admission::Preflight
        } else {
            Admission::Public
        };
        let upstream = std::time::Instant::now();
        let resp = forward(
            &proxy.upstreams,
            config,
            route,
            req,
            remote,
            request_id,
            admission,
        )
        .await;
        snapshot.routes.observe_upstream(index, upstream.elapsed());
        return Ok((resp.map_err(refuse)?, Outcome::Public));
    }

    // Parse → verify → revocation lookup → scopes, timed as one decision.
    let decision = app.metrics.decision_timer();
    let verified = app
        .auth
        .authorize(snapshot.under(), req.headers(), route)
        .await?;
    drop(decision);
    let admission = Admission::Token(&verified);
    let upstream = std::time::Instant::now();
    let resp = forward(
        &proxy.upstreams,
        config,
        route,
        req,
        remote,
        request_id,
        admission,
    )
    .await;
    snapshot.routes.observe_upstream(index, upstream.elapsed());
    Ok((resp.map_err(refuse)?, Outcome::Allowed))
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
