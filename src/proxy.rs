//! The proxy listener (`server.listen`, SPEC §4): limits, routing, the token decision
//! (verify → revocation lookup → scopes) and forwarding with streamed bodies.
//!
//! The decision runs on every request and is the hot path: no locks across `.await`,
//! no logging above `debug` for accepted requests, one store lookup per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::auth::VerifiedToken;
use crate::config::{Config, RouteConfig};
use crate::error::{GatewayError, ProxyBody};
use crate::metrics::Outcome;
use crate::App;

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1), besides any
/// named in `Connection`.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Identity headers the gateway sets upstream; copies sent by clients are always removed.
const X_AUTH_ISS: HeaderName = HeaderName::from_static("x-auth-iss");
const X_AUTH_SUB: HeaderName = HeaderName::from_static("x-auth-sub");
const X_AUTH_SID: HeaderName = HeaderName::from_static("x-auth-sid");
const X_AUTH_JTI: HeaderName = HeaderName::from_static("x-auth-jti");
/// Request id passed upstream and echoed to the client (SPEC §7).
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Longest client-sent `X-Request-Id` kept as is; longer or unsafe ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Answers one request on the proxy listener.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Response<ProxyBody> {
    let (config, route_metrics) = app.snapshot();
    let request_id = request_id(req.headers());
    let mut matched = None;
    let mut resp = match serve(&app, &config, req, remote, &request_id, &mut matched).await {
        Ok((resp, outcome)) => {
            app.metrics.request(outcome);
            route_metrics.count(matched, outcome);
            resp
        }
        Err((err, log)) => {
            app.metrics.request(outcome_of(&err));
            route_metrics.count(matched, outcome_of(&err));
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
            err.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    resp
}

/// What is logged about a refused token: never the token itself.
struct RejectLog {
    reason: String,
    kid: Option<String>,
    jti: Option<String>,
}

type Refusal = (GatewayError, Option<RejectLog>);

fn refuse(err: GatewayError) -> Refusal {
    (err, None)
}

fn outcome_of(err: &GatewayError) -> Outcome {
    match err {
        GatewayError::NoCredentials => Outcome::Unauthenticated,
        GatewayError::InvalidRequest(_)
        | GatewayError::MethodNotAllowed
        | GatewayError::BodyTimeout => Outcome::BadRequest,
        GatewayError::Revoked(_) => Outcome::Revoked,
        GatewayError::InvalidToken(_) => Outcome::InvalidToken,
        GatewayError::InsufficientScope(_) => Outcome::Forbidden,
        GatewayError::NoRoute => Outcome::NoRoute,
        GatewayError::HeadersTooLarge | GatewayError::BodyTooLarge => Outcome::TooLarge,
        GatewayError::UpstreamUnreachable | GatewayError::UpstreamTimeout => Outcome::UpstreamError,
        GatewayError::StoreUnavailable => Outcome::StoreError,
    }
}

async fn serve(
    app: &Arc<App>,
    config: &Config,
    req: Request<Incoming>,
    remote: SocketAddr,
    request_id: &str,
    matched: &mut Option<usize>,
) -> Result<(Response<ProxyBody>, Outcome), Refusal> {
    check_limits(config, &req).map_err(refuse)?;

    let mut req = req;
    if let Some(uri) = decode_unreserved(req.uri()) {
        *req.uri_mut() = uri;
    }
    let path = req.uri().path();
    if !config.backchannel.path.is_empty() && path == config.backchannel.path {
        return Ok((crate::public::backchannel(app, req).await, Outcome::Public));
    }
    if !config.revoke_endpoint.path.is_empty() && path == config.revoke_endpoint.path {
        return Ok((crate::public::revoke(app, req).await, Outcome::Public));
    }
    if has_dot_segment(path) {
        return Err(refuse(GatewayError::InvalidRequest(
            "path contains dot segments".to_string(),
        )));
    }
    let index =
        match_route_index(&config.routes, path).ok_or_else(|| refuse(GatewayError::NoRoute))?;
    *matched = Some(index);
    let route = &config.routes[index];

    let preflight = config.auth.forward_cors_preflight
        && req.method() == http::Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if route.public || preflight {
        let resp = forward(app, config, route, req, remote, request_id, None)
            .await
            .map_err(refuse)?;
        return Ok((resp, Outcome::Public));
    }

    // Parse → verify → revocation lookup → scopes, timed as one decision.
    let decision = app.metrics.decision_timer();
    let token = bearer_token(req.headers()).map_err(refuse)?;
    let verified = match app.verify(token).await {
        Ok(v) => v,
        Err(e) => {
            let (kid, jti) = unverified_ids(token);
            let log = RejectLog {
                reason: e.to_string(),
                kid,
                jti,
            };
            return Err((GatewayError::InvalidToken(e.to_string()), Some(log)));
        }
    };
    // A store that cannot persist writes is not trusted (a revocation may be missing):
    // fail closed. One atomic load.
    if app.store.check_durable().is_err() {
        return Err(refuse(GatewayError::StoreUnavailable));
    }
    match app.store.find_match(
        &verified.issuer,
        &verified.jti,
        verified.sid.as_deref(),
        verified.sub.as_deref(),
        verified.iat,
    ) {
        Ok(None) => {}
        Ok(Some(kind)) => {
            app.metrics.revocation_hit(kind);
            let err = GatewayError::Revoked(kind);
            let log = RejectLog {
                reason: err.code_and_description().1,
                kid: verified.kid.clone(),
                jti: Some(verified.jti.clone()),
            };
            return Err((err, Some(log)));
        }
        Err(e) => {
            tracing::error!(error = %e, "revocation store unreadable: refusing request");
            return Err(refuse(GatewayError::StoreUnavailable));
        }
    }
    if let Some(missing) = route
        .scopes
        .iter()
        .find(|s| !verified.scopes.iter().any(|g| g == *s))
    {
        let reason = format!("insufficient scope: {missing} required");
        let log = RejectLog {
            reason: reason.clone(),
            kid: verified.kid.clone(),
            jti: Some(verified.jti.clone()),
        };
        return Err((GatewayError::InsufficientScope(reason), Some(log)));
    }
    drop(decision);
    let resp = forward(app, config, route, req, remote, request_id, Some(&verified))
        .await
        .map_err(refuse)?;
    Ok((resp, Outcome::Allowed))
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
            return Err(GatewayError::BodyTooLarge);
        }
    }
    Ok(())
}

/// The URI with percent-encoded unreserved characters in its path decoded (RFC 3986
/// §6.2.2.2: `/admin%2Darea` and `/admin-area` are the same resource), so routes are
/// matched, and the path forwarded, in the form the upstream will see; `None` when there is
/// nothing to decode. Other escapes (`%2F`, `%20`, …) are kept as they are.
fn decode_unreserved(uri: &http::Uri) -> Option<http::Uri> {
    let path = uri.path();
    if !path.contains('%') {
        return None;
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + uri.query().map_or(0, |q| q.len() + 1));
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                out.push(c as char);
                changed = true;
                i += 3;
            }
            _ => {
                out.push(bytes[i] as char);
                i += 1;
            }
        }
    }
    if !changed {
        return None;
    }
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(out.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// `.` / `..` segments (also percent-encoded) could make a path match one route here and
/// another after the upstream normalises it: refused.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let lower = seg.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        decoded == "." || decoded == ".."
    }) || path.to_ascii_lowercase().contains("%2f")
}

/// The route whose prefix matches `path` by whole segments; the longest wins.
pub fn match_route<'a>(routes: &'a [RouteConfig], path: &str) -> Option<&'a RouteConfig> {
    match_route_index(routes, path).map(|i| &routes[i])
}

/// Position in `routes` of the route [`match_route`] picks.
pub fn match_route_index(routes: &[RouteConfig], path: &str) -> Option<usize> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| prefix_matches(&r.prefix, path))
        .max_by_key(|(_, r)| r.prefix.len())
        .map(|(i, _)| i)
}

/// Longest `kid` / `jti` copied from a refused token into its log line.
const MAX_LOGGED_ID_LEN: usize = 128;

/// `kid` (header) and `jti` (claims) of a token that failed verification, for its log line
/// only: unverified, so cut to [`MAX_LOGGED_ID_LEN`] printable ASCII characters (no log
/// injection); `None` when absent or unreadable. Runs on the refusal path only.
fn unverified_ids(token: &str) -> (Option<String>, Option<String>) {
    let mut parts = token.split('.');
    let header = parts.next();
    let claims = parts.next();
    (
        unverified_member(header, "kid"),
        unverified_member(claims, "jti"),
    )
}

/// The string member `name` of the base64url JSON object `part`, sanitised for a log line.
fn unverified_member(part: Option<&str>, name: &str) -> Option<String> {
    use base64::Engine as _;
    let part = part.filter(|p| p.len() <= crate::auth::MAX_TOKEN_BYTES)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let id: String = value
        .get(name)?
        .as_str()?
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_LOGGED_ID_LEN)
        .collect();
    (!id.is_empty()).then_some(id)
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.len() > prefix.len()
            && path.starts_with(prefix)
            && path.as_bytes()[prefix.len()] == b'/')
}

/// The bearer token of the request, or the RFC 6750 refusal.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, GatewayError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(GatewayError::NoCredentials)?;
    if values.next().is_some() {
        return Err(GatewayError::InvalidRequest(
            "more than one Authorization header".to_string(),
        ));
    }
    let value = value.to_str().map_err(|_| {
        GatewayError::InvalidRequest("Authorization header is not ASCII".to_string())
    })?;
    let (scheme, rest) = match value.split_once(' ') {
        Some((s, r)) => (s, r),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(GatewayError::NoCredentials);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err(GatewayError::InvalidRequest(
            "empty bearer token".to_string(),
        ));
    }
    if !is_b64token(token) {
        return Err(GatewayError::InvalidRequest(
            "bearer token has characters outside b64token".to_string(),
        ));
    }
    Ok(token)
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The client's `X-Request-Id` when it is short and printable, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    if let Some(v) = headers.get(X_REQUEST_ID).and_then(|v| v.to_str().ok()) {
        if !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic())
        {
            return v.to_string();
        }
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{seed:016x}-{n:08x}")
}

/// The upstream URL for `path_and_query` on `route`.
fn upstream_url(route: &RouteConfig, uri: &http::Uri) -> String {
    let mut path = uri.path();
    if route.strip_prefix && route.prefix != "/" {
        path = &path[route.prefix.len().min(path.len())..];
    }
    let base = route.upstream.trim_end_matches('/');
    let mut url = String::with_capacity(base.len() + path.len() + 64);
    url.push_str(base);
    if !path.starts_with('/') {
        url.push('/');
    }
    url.push_str(path);
    if let Some(q) = uri.query() {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Sends the request upstream and streams the answer back.
async fn forward(
    app: &Arc<App>,
    config: &Config,
    route: &RouteConfig,
    req: Request<Incoming>,
    remote: SocketAddr,
    request_id: &str,
    identity: Option<&VerifiedToken>,
) -> Result<Response<ProxyBody>, GatewayError> {
    let (parts, body) = req.into_parts();
    let url = upstream_url(route, &parts.uri);
    let mut headers = parts.headers;
    let original_host = headers.get(header::HOST).cloned();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    for h in [&X_AUTH_ISS, &X_AUTH_SUB, &X_AUTH_SID, &X_AUTH_JTI] {
        headers.remove(h);
    }
    // Several X-Forwarded-For headers are one list (RFC 9110 §5.3): keep every entry.
    let mut forwarded_for = String::new();
    for prev in headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        forwarded_for.push_str(prev);
        forwarded_for.push_str(", ");
    }
    forwarded_for.push_str(&remote.ip().to_string());
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Some(host) = original_host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    if let (Some(t), true) = (identity, config.auth.identity_headers) {
        set_identity(&mut headers, &X_AUTH_ISS, Some(&t.issuer));
        set_identity(&mut headers, &X_AUTH_SUB, t.sub.as_deref());
        set_identity(&mut headers, &X_AUTH_SID, t.sid.as_deref());
        set_identity(&mut headers, &X_AUTH_JTI, Some(&t.jti));
    }

    let limited = http_body_util::Limited::new(body, config.server.max_body_bytes as usize);
    let answer = if url.starts_with("http://") {
        send_plain(app, route, parts.method, &url, headers, limited).await?
    } else {
        send_tls(app, route, parts.method, &url, headers, limited).await?
    };
    let (mut parts, body) = answer.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, body))
}

/// Plain-HTTP upstreams (the common case: an API on the same VM or network) go through
/// hyper's pooled client directly: no URL crate parsing, no header re-copying.
async fn send_plain(
    app: &Arc<App>,
    route: &RouteConfig,
    method: http::Method,
    url: &str,
    headers: HeaderMap,
    body: http_body_util::Limited<Incoming>,
) -> Result<Response<ProxyBody>, GatewayError> {
    let uri: http::Uri = url.parse().map_err(|_| {
        tracing::warn!(upstream = %route.upstream, "upstream URL does not parse");
        GatewayError::UpstreamUnreachable
    })?;
    let mut request = Request::new(body.boxed());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    match tokio::time::timeout(route.timeout, app.upstream_http.request(request)).await {
        Err(_) => Err(GatewayError::UpstreamTimeout),
        Ok(Err(e)) => {
            if is_length_limit(&e) {
                return Err(GatewayError::BodyTooLarge);
            }
            tracing::warn!(upstream = %route.upstream, error = %e, "upstream request failed");
            Err(GatewayError::UpstreamUnreachable)
        }
        Ok(Ok(answer)) => {
            Ok(answer.map(|b| b.map_err(|e| Box::new(e) as crate::error::BoxError).boxed()))
        }
    }
}

/// HTTPS upstreams go through reqwest (rustls).
async fn send_tls(
    app: &Arc<App>,
    route: &RouteConfig,
    method: http::Method,
    url: &str,
    headers: HeaderMap,
    body: http_body_util::Limited<Incoming>,
) -> Result<Response<ProxyBody>, GatewayError> {
    let request = app
        .upstream
        .request(method, url)
        .headers(headers)
        .body(reqwest::Body::wrap(body))
        .build()
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot build upstream request");
            GatewayError::UpstreamUnreachable
        })?;
    let answer = match tokio::time::timeout(route.timeout, app.upstream.execute(request)).await {
        Err(_) => return Err(GatewayError::UpstreamTimeout),
        Ok(Err(e)) => {
            if is_length_limit(&e) {
                return Err(GatewayError::BodyTooLarge);
            }
            if e.is_timeout() {
                return Err(GatewayError::UpstreamTimeout);
            }
            tracing::warn!(upstream = %route.upstream, error = %e, "upstream request failed");
            return Err(GatewayError::UpstreamUnreachable);
        }
        Ok(Ok(r)) => r,
    };
    let answer: Response<reqwest::Body> = answer.into();
    Ok(answer.map(|b| b.map_err(|e| Box::new(e) as crate::error::BoxError).boxed()))
}

fn set_identity(headers: &mut HeaderMap, name: &HeaderName, value: Option<&str>) {
    if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(name.clone(), v);
    }
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in HOP_BY_HOP.iter() {
        headers.remove(h);
    }
}

/// Whether an upstream failure was caused by the request body exceeding the limit.
fn is_length_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Answer used by the public endpoints for a method they do not serve.
pub fn status_only(status: StatusCode) -> Response<ProxyBody> {
    let mut r = Response::new(crate::error::full_body(Bytes::new()));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, upstream: &str, strip: bool) -> RouteConfig {
        RouteConfig {
            prefix: prefix.into(),
            upstream: upstream.into(),
            strip_prefix: strip,
            timeout: std::time::Duration::from_secs(1),
            public: false,
            scopes: vec![],
        }
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let routes = vec![
            route("/", "http://a", false),
            route("/api", "http://b", false),
            route("/api/v2", "http://c", false),
        ];
        assert_eq!(match_route(&routes, "/api").unwrap().upstream, "http://b");
        assert_eq!(match_route(&routes, "/api/x").unwrap().upstream, "http://b");
        assert_eq!(match_route(&routes, "/apix").unwrap().upstream, "http://a");
        assert_eq!(
            match_route(&routes, "/api/v2/y").unwrap().upstream,
            "http://c"
        );
        let only_api = vec![route("/api", "http://b", false)];
        assert!(match_route(&only_api, "/apix").is_none());
        assert!(match_route(&only_api, "/").is_none());
    }

    #[test]
    fn refused_tokens_log_their_kid_and_jti_only() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256","kid":"k-1\nforged line"}"#),
            b64(r#"{"jti":"j-1","sub":"x"}"#)
        );
        assert_eq!(
            unverified_ids(&token),
            (Some("k-1forgedline".into()), Some("j-1".into()))
        );
        assert_eq!(unverified_ids("garbage"), (None, None));
        assert_eq!(
            unverified_ids(&format!("{}.%%%.x", b64(r#"{"alg":"none"}"#))),
            (None, None)
        );
    }

    #[test]
    fn upstream_url_joins_paths() {
        let uri: http::Uri = "/api/x?q=1".parse().unwrap();
        assert_eq!(
            upstream_url(&route("/api", "http://u:1", false), &uri),
            "http://u:1/api/x?q=1"
        );
        assert_eq!(
            upstream_url(&route("/api", "http://u:1/base", false), &uri),
            "http://u:1/base/api/x?q=1"
        );
        assert_eq!(
            upstream_url(&route("/api", "http://u:1/base/", true), &uri),
            "http://u:1/base/x?q=1"
        );
        let exact: http::Uri = "/api".parse().unwrap();
        assert_eq!(
            upstream_url(&route("/api", "http://u:1", true), &exact),
            "http://u:1/"
        );
    }

    #[test]
    fn bearer_parsing_follows_rfc6750() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), Err(GatewayError::NoCredentials));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Err(GatewayError::NoCredentials));
        h.insert(header::AUTHORIZATION, "bEaReR abc.def.ghi".parse().unwrap());
        assert_eq!(bearer_token(&h), Ok("abc.def.ghi"));
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(matches!(
            bearer_token(&h),
            Err(GatewayError::InvalidRequest(_))
        ));
        h.insert(header::AUTHORIZATION, "Bearer a,b".parse().unwrap());
        assert!(matches!(
            bearer_token(&h),
            Err(GatewayError::InvalidRequest(_))
        ));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        h.append(header::AUTHORIZATION, "Bearer def".parse().unwrap());
        assert!(matches!(
            bearer_token(&h),
            Err(GatewayError::InvalidRequest(_))
        ));
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        let decode = |s: &str| decode_unreserved(&s.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(
            decode("/admin%2Darea/x?q=%2D").as_deref(),
            Some("/admin-area/x?q=%2D")
        );
        assert_eq!(decode("/%61%7e%5F%2e").as_deref(), Some("/a~_."));
        assert_eq!(decode("/a%20b%2Fc%25"), None);
        assert_eq!(decode("/plain"), None);
        assert_eq!(decode("/trailing%2").as_deref(), None);
        assert_eq!(decode("/x%2D%2").as_deref(), Some("/x-%2"));
    }

    #[test]
    fn dot_segments_are_detected() {
        assert!(has_dot_segment("/public/../private"));
        assert!(has_dot_segment("/public/%2E%2e/private"));
        assert!(has_dot_segment("/a/./b"));
        assert!(!has_dot_segment("/a/b.c/..d"));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "5".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
