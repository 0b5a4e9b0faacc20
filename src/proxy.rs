//! The proxy listener (`server.listen`, SPEC §4): limits, the path rules (checked before
//! routing, on every path), routing, the token decision (verify → revocation lookup →
//! scopes), the CORS preflight exception, and forwarding with streamed bodies: identity,
//! forwarding (`server.trusted_proxies`) and hop-by-hop header rules.
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
/// RFC 7239; like `X-Real-IP`, kept only from `server.trusted_proxies`, never set.
const FORWARDED: HeaderName = header::FORWARDED;
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `X-Forwarded-Proto` the gateway sets: the scheme of the proxy listener, plain HTTP
/// (with a TLS listener, `forward` passes `https` instead).
const LISTENER_SCHEME: HeaderValue = HeaderValue::from_static("http");

/// Headers the gateway sets, or removes from untrusted peers, whose `_` spellings
/// (`X_Auth_Sub`, `x-forwarded_for`) are always removed (SPEC §4).
const UNDERSCORE_GUARDED: [&str; 9] = [
    "x-auth-iss",
    "x-auth-sub",
    "x-auth-sid",
    "x-auth-jti",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// Method-override headers some frameworks honour (an `OPTIONS` read as `DELETE`): never
/// on a preflight let through without a token.
const METHOD_OVERRIDE: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-http-method"),
];

/// What else a preflight never carries upstream: a body length (its body is dropped) and
/// credentials (a browser sends none on a preflight; an upstream must not read unverified
/// ones on a request that passed without a token).
const PREFLIGHT_NEVER: [HeaderName; 3] = [
    header::CONTENT_LENGTH,
    header::AUTHORIZATION,
    header::COOKIE,
];

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
        GatewayError::InvalidRequest(_) | GatewayError::MethodNotAllowed => Outcome::BadRequest,
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
    // Every path, the public endpoints' included, before anything reads it (SPEC §4).
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return Err(refuse(GatewayError::InvalidRequest(
            "more than one Host header".to_string(),
        )));
    }
    check_path(req.uri().path())
        .map_err(|p| refuse(GatewayError::InvalidRequest(p.description().to_string())))?;

    let mut req = req;
    if let Some(uri) = decode_unreserved(req.uri()) {
        *req.uri_mut() = uri;
    }
    let path = req.uri().path();
    // Decoding only ever yields unreserved characters, so it cannot create what
    // `check_path` refuses (a `%2e%2e` segment was refused above, before it became `..`).
    debug_assert_eq!(check_path(path), Ok(()));
    if !config.backchannel.path.is_empty() && path == config.backchannel.path {
        return Ok((crate::public::backchannel(app, req).await, Outcome::Public));
    }
    if !config.revoke_endpoint.path.is_empty() && path == config.revoke_endpoint.path {
        return Ok((crate::public::revoke(app, req).await, Outcome::Public));
    }
    let index =
        match_route_index(&config.routes, path).ok_or_else(|| refuse(GatewayError::NoRoute))?;
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
        let resp = forward(app, config, route, req, remote, request_id, admission)
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
    match app.find_revocation(&verified) {
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
    let admission = Admission::Token(&verified);
    let resp = forward(app, config, route, req, remote, request_id, admission)
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

/// Why a request path is refused before routing (SPEC §4). Each one is a way for a path to
/// match one route here and be read as another by an upstream: Tomcat and Jetty read `..;`
/// as `..` and `;x` as a path parameter, IIS reads `\` as `/`, many servers decode `%2F`
/// or merge `//`. The same idea as Spring Security's `StrictHttpFirewall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// Not a path starting with `/` (`*`, an authority-form target).
    NotAbsolute,
    /// A `.` or `..` segment, also percent-encoded (`%2e%2e`), also followed by `;…`.
    DotSegment,
    /// `\`, raw or `%5C`.
    Backslash,
    /// `%2F`: a slash inside a segment.
    EncodedSlash,
    /// An empty segment (`//`); a trailing `/` is not one.
    EmptySegment,
    /// `;` (a path parameter), raw or `%3B`.
    Semicolon,
    /// A control character (0x00–0x1F, 0x7F), raw or percent-encoded (`%00`, `%0A`).
    ControlCharacter,
}

impl PathProblem {
    /// The `error_description` of the `400 invalid_request` answer.
    pub fn description(self) -> &'static str {
        match self {
            PathProblem::NotAbsolute => "request target is not a path starting with \"/\"",
            PathProblem::DotSegment => "path contains a dot segment (\".\" or \"..\")",
            PathProblem::Backslash => "path contains a backslash (raw or %5C)",
            PathProblem::EncodedSlash => "path contains an encoded slash (%2F)",
            PathProblem::EmptySegment => "path contains an empty segment (//)",
            PathProblem::Semicolon => "path contains a semicolon (; or %3B)",
            PathProblem::ControlCharacter => "path contains a control character",
        }
    }
}

/// Checks `path` (as sent, before any decoding) against the path rules of SPEC §4: one pass
/// over its bytes, no allocation. A segment with several problems reports the first of
/// dot segment, then the first backslash / encoded slash / control character, then `;`.
pub fn check_path(path: &str) -> Result<(), PathProblem> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathProblem::NotAbsolute);
    };
    let mut segments = rest.as_bytes().split(|b| *b == b'/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            if segments.peek().is_some() {
                return Err(PathProblem::EmptySegment);
            }
            continue;
        }
        check_segment(segment)?;
    }
    Ok(())
}

/// One non-empty segment of [`check_path`].
fn check_segment(segment: &[u8]) -> Result<(), PathProblem> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    // The segment's name is what comes before its first `;` (raw or `%3B`): a name of one
    // or two dots is a dot segment to a server that strips path parameters first.
    let mut in_name = true;
    let mut name_dots = 0usize;
    let mut name_only_dots = true;
    let mut semicolon = false;
    let mut other = None;
    let mut i = 0;
    while i < segment.len() {
        let (byte, width) = match (segment[i], segment.get(i + 1), segment.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => match hex(h).zip(hex(l)) {
                Some((h, l)) => (h << 4 | l, 3),
                None => (b'%', 1),
            },
            (b, _, _) => (b, 1),
        };
        let encoded = width == 3;
        let problem = match byte {
            b'\\' => Some(PathProblem::Backslash),
            b'/' if encoded => Some(PathProblem::EncodedSlash),
            0x00..=0x1f | 0x7f => Some(PathProblem::ControlCharacter),
            _ => None,
        };
        if other.is_none() {
            other = problem;
        }
        if byte == b';' {
            semicolon = true;
            in_name = false;
        } else if in_name {
            if byte == b'.' {
                name_dots += 1;
            } else {
                name_only_dots = false;
            }
        }
        i += width;
    }
    if name_only_dots && (name_dots == 1 || name_dots == 2) {
        return Err(PathProblem::DotSegment);
    }
    if let Some(problem) = other {
        return Err(problem);
    }
    if semicolon {
        return Err(PathProblem::Semicolon);
    }
    Ok(())
}

/// A CORS preflight (Fetch standard): `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. An `OPTIONS` lacking either is an ordinary request.
fn is_cors_preflight<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
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

/// Why a request is forwarded: decides what the gateway adds and removes.
#[derive(Clone, Copy)]
enum Admission<'a> {
    /// A `public = true` route: no token, no identity headers.
    Public,
    /// A CORS preflight let through without a token (`auth.forward_cors_preflight`): it
    /// carries nothing an upstream could act on — no body, no `Content-Length`, no
    /// method-override headers, no credentials (a browser's preflight has none of them).
    Preflight,
    /// A verified token: identity headers from it (`auth.identity_headers`).
    Token(&'a VerifiedToken),
}

/// Sends the request upstream and streams the answer back.
async fn forward(
    app: &Arc<App>,
    config: &Config,
    route: &RouteConfig,
    req: Request<Incoming>,
    remote: SocketAddr,
    request_id: &str,
    admission: Admission<'_>,
) -> Result<Response<ProxyBody>, GatewayError> {
    let (parts, body) = req.into_parts();
    let url = upstream_url(route, &parts.uri);
    let mut headers = parts.headers;
    let host = request_host(&parts.uri, &headers);
    let preflight = matches!(admission, Admission::Preflight);
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    for h in [&X_AUTH_ISS, &X_AUTH_SUB, &X_AUTH_SID, &X_AUTH_JTI] {
        headers.remove(h);
    }
    remove_underscore_spellings(&mut headers, preflight);
    if preflight {
        for h in METHOD_OVERRIDE.iter().chain(&PREFLIGHT_NEVER) {
            headers.remove(h);
        }
    }
    let trusted = config
        .server
        .trusted_proxies
        .iter()
        .any(|net| net.contains(remote.ip()));
    set_forwarding_headers(&mut headers, trusted, remote.ip(), LISTENER_SCHEME, host);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    if let (Admission::Token(t), true) = (admission, config.auth.identity_headers) {
        set_identity(&mut headers, &X_AUTH_ISS, Some(&t.issuer));
        set_identity(&mut headers, &X_AUTH_SUB, t.sub.as_deref());
        set_identity(&mut headers, &X_AUTH_SID, t.sid.as_deref());
        set_identity(&mut headers, &X_AUTH_JTI, Some(&t.jti));
    }

    let body = if preflight {
        // The client's body is dropped unread (hyper then closes or drains the connection).
        drop(body);
        crate::error::full_body(Bytes::new())
    } else {
        http_body_util::Limited::new(body, config.server.max_body_bytes as usize).boxed()
    };
    let answer = if url.starts_with("http://") {
        send_plain(app, route, parts.method, &url, headers, body).await?
    } else {
        send_tls(app, route, parts.method, &url, headers, body).await?
    };
    let (mut parts, body) = answer.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, body))
}

/// The request's host for `X-Forwarded-Host`: its `Host` header, else the authority of an
/// absolute-form target (`GET http://host/path`), else none.
fn request_host(uri: &http::Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    if let Some(host) = headers.get(header::HOST) {
        return Some(host.clone());
    }
    uri.authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

/// Removes every client header whose name, with `_` read as `-`, is one the gateway sets or
/// controls ([`UNDERSCORE_GUARDED`], plus [`METHOD_OVERRIDE`] on a preflight) but which is
/// not spelled exactly so: CGI, WSGI, PHP and Rack map `X_Auth_Sub` and `X-Auth-Sub` to the
/// same variable, so an app could read the client's copy as the gateway's. Always removed,
/// from trusted proxies too: a proxy never sends these spellings. One scan of the header
/// names; names without `_` (nearly all) cost one byte search each, and nothing is
/// allocated unless such a header is present.
fn remove_underscore_spellings(headers: &mut HeaderMap, preflight: bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let n = name.as_str();
        if !n.as_bytes().contains(&b'_') {
            continue;
        }
        let guarded = UNDERSCORE_GUARDED
            .iter()
            .any(|g| same_but_underscores(n, g))
            || (preflight
                && METHOD_OVERRIDE
                    .iter()
                    .any(|g| same_but_underscores(n, g.as_str())));
        if guarded {
            doomed.push(name.clone());
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// Whether header name `name` (lower case) is `canonical` with some `-` written as `_`.
fn same_but_underscores(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// SPEC §4 forwarding headers. From a peer in `server.trusted_proxies` (`trusted`) the
/// client's are kept, the peer is appended to `X-Forwarded-For`, and `X-Forwarded-Proto` /
/// `X-Forwarded-Host` pass as sent (set by the gateway only when absent). From any other
/// peer `Forwarded` and `X-Real-IP` are removed and the three `X-Forwarded-*` are the
/// gateway's own: the peer, `scheme` (the listener's), the request's host (`host`; none
/// without one).
fn set_forwarding_headers(
    headers: &mut HeaderMap,
    trusted: bool,
    peer: std::net::IpAddr,
    scheme: HeaderValue,
    host: Option<HeaderValue>,
) {
    let peer = peer.to_canonical();
    // The longest IP text is 45 bytes; formatted on the stack, copied once into the value.
    let mut buf = [0u8; 64];
    let len = {
        use std::io::Write as _;
        let mut cursor = &mut buf[..];
        let _ = write!(cursor, "{peer}");
        64 - cursor.len()
    };
    let peer_text = &buf[..len];
    if !trusted {
        headers.remove(&FORWARDED);
        headers.remove(&X_REAL_IP);
        if let Ok(v) = HeaderValue::from_bytes(peer_text) {
            headers.insert(X_FORWARDED_FOR, v);
        }
        headers.insert(X_FORWARDED_PROTO, scheme);
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(X_FORWARDED_HOST),
        };
        return;
    }
    // Several X-Forwarded-For headers are one list (RFC 9110 §5.3): keep every entry.
    let mut list = bytes::BytesMut::new();
    for prev in headers.get_all(&X_FORWARDED_FOR) {
        list.extend_from_slice(prev.as_bytes());
        list.extend_from_slice(b", ");
    }
    list.extend_from_slice(peer_text);
    if let Ok(v) = HeaderValue::from_maybe_shared(list.freeze()) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, scheme);
    }
    if let (false, Some(host)) = (headers.contains_key(&X_FORWARDED_HOST), host) {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// Plain-HTTP upstreams (the common case: an API on the same VM or network) go through
/// hyper's pooled client directly: no URL crate parsing, no header re-copying.
async fn send_plain(
    app: &Arc<App>,
    route: &RouteConfig,
    method: http::Method,
    url: &str,
    headers: HeaderMap,
    body: ProxyBody,
) -> Result<Response<ProxyBody>, GatewayError> {
    let uri: http::Uri = url.parse().map_err(|_| {
        tracing::warn!(upstream = %route.upstream, "upstream URL does not parse");
        GatewayError::UpstreamUnreachable
    })?;
    let mut request = Request::new(body);
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
    body: ProxyBody,
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
    fn path_rules_name_the_problem() {
        use PathProblem::*;
        for (path, problem) in [
            // dot segments, also encoded, also with a path parameter
            ("/public/../private", DotSegment),
            ("/public/%2E%2e/private", DotSegment),
            ("/a/./b", DotSegment),
            ("/a/.", DotSegment),
            ("/..", DotSegment),
            ("/pub/..;/secret", DotSegment),
            ("/pub/%2e%2e;/secret", DotSegment),
            ("/pub/.%2E%3Bx/secret", DotSegment),
            ("/pub/.;jsessionid=1", DotSegment),
            ("/pub/..%5Csecret", Backslash),
            // backslash, raw or encoded
            ("/pub/..\\secret", Backslash),
            ("/pub/a%5cb", Backslash),
            ("/pub/%5C", Backslash),
            // encoded slash
            ("/pub/a%2Fb", EncodedSlash),
            ("/pub/%2f", EncodedSlash),
            ("/pub/..%2f", EncodedSlash),
            // empty segments
            ("//admin-ish/x", EmptySegment),
            ("/pub//x", EmptySegment),
            ("//", EmptySegment),
            ("/pub///", EmptySegment),
            // semicolons anywhere
            ("/admin-ish;x", Semicolon),
            ("/admin-ish%3Bx/y", Semicolon),
            ("/admin-ish%3b", Semicolon),
            ("/;", Semicolon),
            ("/a/b;c=d/e", Semicolon),
            // control characters, raw or encoded
            ("/pub/a%00b", ControlCharacter),
            ("/pub/%0A", ControlCharacter),
            ("/pub/%0d%0aSet-Cookie:x", ControlCharacter),
            ("/pub/%7F", ControlCharacter),
            ("/pub/a\u{1}b", ControlCharacter),
            ("/pub/a\tb", ControlCharacter),
            ("/pub/a\u{7f}", ControlCharacter),
            // not a path
            ("*", NotAbsolute),
            ("", NotAbsolute),
            ("pub/x", NotAbsolute),
        ] {
            assert_eq!(check_path(path), Err(problem), "{path:?}");
        }
        for path in [
            "/",
            "/pub",
            "/pub/",
            "/a/b.c/..d",
            "/a/.../b",
            "/a/..../b",
            "/.well-known/jwks.json",
            "/a..b/.c",
            "/pub/a%20b%3Fc%25",
            "/pub/%2e%2e%2e",
            "/pub/%",
            "/pub/%2",
            "/pub/%zz",
            "/admin%2Darea",
            "/pub/x%2Ey",
        ] {
            assert_eq!(check_path(path), Ok(()), "{path:?}");
        }
    }

    #[test]
    fn every_problem_has_its_own_description() {
        use PathProblem::*;
        let all = [
            NotAbsolute,
            DotSegment,
            Backslash,
            EncodedSlash,
            EmptySegment,
            Semicolon,
            ControlCharacter,
        ];
        let texts: std::collections::HashSet<_> = all.iter().map(|p| p.description()).collect();
        assert_eq!(texts.len(), all.len());
        assert!(EncodedSlash.description().contains("encoded slash"));
        assert!(!EncodedSlash.description().contains("dot"));
    }

    #[test]
    fn decoding_unreserved_escapes_never_makes_a_refused_path() {
        // Every path check_path accepts stays accepted once its unreserved escapes are
        // decoded: the escapes that could matter (%2e segments) are refused before.
        for path in [
            "/a%2e/b",
            "/%2e%2e%2e",
            "/x%2E%2Ey/%2D%5F",
            "/p%75blic/%2e.x",
            "/a/%7e/%2e%61",
        ] {
            assert_eq!(check_path(path), Ok(()), "{path}");
            let uri: http::Uri = path.parse().unwrap();
            let decoded = decode_unreserved(&uri).unwrap_or(uri);
            assert_eq!(check_path(decoded.path()), Ok(()), "{path} -> {decoded}");
        }
    }

    #[test]
    fn underscore_spellings_of_controlled_headers_are_removed() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("x_auth_sub", "root"),
            ("x-auth_sub", "root"),
            ("x_auth-iss", "evil"),
            ("x_request_id", "evil"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x-forwarded_host", "evil"),
            ("x_real_ip", "1.2.3.4"),
            ("x_http_method_override", "DELETE"),
            ("x_custom_header", "kept"),
            ("x-auth-subject", "kept"),
            ("x_auth_sub_", "kept"),
        ] {
            h.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let mut preflight = h.clone();
        remove_underscore_spellings(&mut h, false);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "x-auth-subject",
                "x_auth_sub_",
                "x_custom_header",
                "x_http_method_override"
            ]
        );
        remove_underscore_spellings(&mut preflight, true);
        assert!(!preflight.contains_key("x_http_method_override"));
        assert!(preflight.contains_key("x_custom_header"));
    }

    #[test]
    fn forwarding_headers_follow_the_peers_trust() {
        let client_headers = || {
            let mut h = HeaderMap::new();
            h.append(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7"));
            h.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.2"));
            h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
            h.insert(X_FORWARDED_HOST, HeaderValue::from_static("evil.example"));
            h.insert(FORWARDED, HeaderValue::from_static("for=192.0.2.1"));
            h.insert(X_REAL_IP, HeaderValue::from_static("192.0.2.1"));
            h
        };
        let host = Some(HeaderValue::from_static("api.example"));
        let peer: std::net::IpAddr = "::ffff:10.1.2.3".parse().unwrap();

        let mut h = client_headers();
        set_forwarding_headers(&mut h, false, peer, LISTENER_SCHEME, host.clone());
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "api.example");
        assert!(!h.contains_key(&FORWARDED) && !h.contains_key(&X_REAL_IP));
        let mut h = client_headers();
        set_forwarding_headers(&mut h, false, peer, LISTENER_SCHEME, None);
        assert!(!h.contains_key(&X_FORWARDED_HOST));

        let mut h = client_headers();
        let v6 = "2001:db8::7".parse().unwrap();
        set_forwarding_headers(&mut h, true, v6, LISTENER_SCHEME, host.clone());
        assert_eq!(
            h[&X_FORWARDED_FOR],
            "203.0.113.7, 198.51.100.2, 2001:db8::7"
        );
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "evil.example");
        assert_eq!(h[&FORWARDED], "for=192.0.2.1");
        assert_eq!(h[&X_REAL_IP], "192.0.2.1");
        let mut h = HeaderMap::new();
        set_forwarding_headers(&mut h, true, peer, LISTENER_SCHEME, host);
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "api.example");
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
