//! Admin API on `server.admin_listen` (SPEC §5). JSON in, JSON out. With
//! `server.admin_token` set, every route but `GET /healthz` needs
//! `Authorization: Bearer <admin_token>`. Never served on the proxy listener.
//!
//! Routes:
//! - `POST   /v1/revocations`                  revoke jti / sid / sub → 201 record
//! - `POST   /v1/revocations/token`            revoke a verified token's jti → 201 record
//! - `GET    /v1/revocations/{kind}/{value}`   one record → 200 / 404
//! - `DELETE /v1/revocations/{kind}/{value}`   unrevoke → 204 / 404
//! - `GET    /v1/revocations?kind=&limit=&after=`  page of records
//! - `GET    /v1/stats`                        entries by kind, last sweep
//! - `POST   /v1/sweep`                        sweep now → `{"purged":n}`
//! - `GET    /v1/export?kind=`                 every record as NDJSON, streamed
//! - `POST   /v1/import?dry_run=`              NDJSON records merged in; durable before the answer
//! - `POST   /v1/reload`                       re-read the config file → 200 report / 400, old kept
//! - `GET    /v1/openapi.json`                 the OpenAPI 3 document of this API ([`OPENAPI`])
//! - `GET    /healthz`                         200 when the store is usable and every issuer has keys
//! - `GET    /metrics`                         Prometheus text
//!
//! [`ROUTES`] lists the same routes with the body each takes; it drives the request checks
//! below and the OpenAPI conformance test (`tests/openapi.rs`), which checks it against
//! `data/openapi.json` in both directions.
//!
//! ## Web pages cannot drive it (SPEC §5)
//!
//! A page the operator visits can send requests to `http://127.0.0.1:9090` (a `text/plain`
//! POST needs no CORS preflight), and with DNS rebinding even read the answers. Before any
//! route runs, [`check_request`] applies, in this order, to every request, `/healthz` and
//! `/metrics` included, with or without `admin_token`:
//!
//! 1. **Host** — the request's authority (the `Host` header, or the URI's in absolute form;
//!    both when both are sent) must be a loopback IP literal (`127.0.0.0/8`, `[::1]`, also
//!    IPv4-mapped), `localhost`, the IP of `server.admin_listen` (unless it is a wildcard
//!    address) or one of `server.admin_hosts`, with any port; else `421`. A request
//!    without any authority (HTTP/1.0 without `Host`) gets `421` too: no exception for it.
//!    Two `Host` headers: `400`.
//! 2. **Origin** — any `Origin` header (also `null`): `403`. Browsers send it on every
//!    POST (form or script, cross-site or not) and every cross-origin script request; the
//!    CLI and scripts do not. A cross-site GET without it (an `<img>`) cannot read the
//!    answer, and GETs change nothing; a rebound page's own GETs fail the Host check.
//! 3. **Token** — with `admin_token` set, every request but `GET /healthz`: `401`.
//! 4. **Method** — a path of [`ROUTES`] asked with a method it does not serve: `405` with
//!    `Allow` listing those it does (unknown paths go on to the `404` of the router).
//! 5. **Media type** — a JSON body needs `Content-Type: application/json` (parameters such
//!    as `charset` allowed), an import `application/x-ndjson`; a route that reads no body
//!    still refuses one sent under any other type: `415`.
//!
//! Host and Origin come first so that a page learns nothing from the answer, token or not:
//! a foreign origin never sees `401` versus `404` versus `415`, and a rebound name never
//! reaches the token check. Pages cannot set `Host` or remove `Origin`.
//!
//! Every route tree ends in the one [`handle_rejection`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{json, Value};
use warp::http::header::{
    HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN,
    TRANSFER_ENCODING,
};
use warp::http::uri::Authority;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::config::ServerConfig;
use crate::store::{
    default_expires_at, Kind, NewRevocation, Source, StoreError, MAX_ISSUER_BYTES, MAX_VALUE_BYTES,
};
use crate::App;

/// Largest admin request body accepted (bigger: 413). Holds a value of the store's
/// [`MAX_VALUE_BYTES`] (the one bound on revoked values, shared with tokens and imports).
pub const MAX_ADMIN_BODY_BYTES: u64 = 64 * 1024;
/// Longest `reason` accepted.
pub const MAX_REASON_BYTES: usize = 1024;
/// Default and largest page size of `GET /v1/revocations`.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page size of `GET /v1/revocations`.
pub const MAX_PAGE: usize = 1000;

/// What a route takes as its request body: decides the `415` check of [`check_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// None is read. One sent anyway must still be `application/json`, as every body of
    /// this JSON API (so a `text/plain` form post is refused, not silently ignored).
    None,
    /// A JSON object: `Content-Type: application/json` required.
    Json,
    /// NDJSON records: `Content-Type: application/x-ndjson` required.
    Ndjson,
}

/// One admin route: what [`ROUTES`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// OpenAPI path template; `{kind}` and `{value}` stand for one non-empty segment each.
    pub path: &'static str,
    /// The body it takes.
    pub body: Body,
}

const fn route(method: &'static str, path: &'static str, body: Body) -> Route {
    Route { method, path, body }
}

/// Every route this module serves. Kept in step with [`routes`] and with
/// `data/openapi.json` (checked by `tests/openapi.rs`); [`check_request`] reads the
/// methods of a path (`405` / `Allow`) and the body of a route (`415`) from here.
pub const ROUTES: [Route; 13] = [
    route("POST", "/v1/revocations", Body::Json),
    route("GET", "/v1/revocations", Body::None),
    route("POST", "/v1/revocations/token", Body::Json),
    route("GET", "/v1/revocations/{kind}/{value}", Body::None),
    route("DELETE", "/v1/revocations/{kind}/{value}", Body::None),
    route("GET", "/v1/stats", Body::None),
    route("POST", "/v1/sweep", Body::None),
    route("GET", "/v1/export", Body::None),
    route("POST", "/v1/import", Body::Ndjson),
    route("POST", "/v1/reload", Body::None),
    route("GET", "/v1/openapi.json", Body::None),
    route("GET", HEALTHZ, Body::None),
    route("GET", "/metrics", Body::None),
];

/// The one path served without the admin token (with `GET`).
const HEALTHZ: &str = "/healthz";

/// The OpenAPI 3 description of the admin API, served at `GET /v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../data/openapi.json");

/// An admin API error: status, stable code and a description naming the field.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    description: String,
    /// The `Allow` header of a `405`.
    allow: Option<String>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    /// 400 `invalid_request` with a description that names the field.
    pub fn invalid(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            description: description.into(),
            allow: None,
        }
    }
    fn not_found(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", description)
    }
    /// 421: the `Host` is not one the admin API answers to (DNS rebinding).
    fn misdirected() -> Self {
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            "Host is not a loopback address, localhost, server.admin_listen or one of server.admin_hosts",
        )
    }
    /// 403: the request comes from a web page.
    fn cross_origin() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "requests with an Origin header (from web pages) are refused",
        )
    }
    /// 405 with `Allow: <allow>`.
    fn method_not_allowed(allow: String) -> Self {
        ApiError {
            allow: Some(allow),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        }
    }
    /// 415: the body is not of the type `required`.
    fn unsupported_media_type(required: &str) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be {required}"),
        )
    }
    fn store(e: StoreError) -> Self {
        if let StoreError::Invalid(d) = e {
            return ApiError::invalid(d);
        }
        tracing::error!(error = %e, "store operation failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "revocation store unavailable",
        )
    }
    fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin token required",
        )
    }
    fn into_response(self) -> Response {
        let mut resp = error_response(self.status, self.code, &self.description);
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            resp.headers_mut().insert(ALLOW, allow);
        }
        resp
    }
}

fn error_response(status: StatusCode, code: &str, description: &str) -> Response {
    warp::reply::with_status(
        warp::reply::json(&json!({"error": code, "error_description": description})),
        status,
    )
    .into_response()
}

fn json_reply(status: StatusCode, v: &Value) -> Response {
    warp::reply::with_status(warp::reply::json(v), status).into_response()
}

/// All admin routes behind [`check_request`], ending in the one recover.
pub fn routes(app: Arc<App>) -> warp::filters::BoxedFilter<(Response,)> {
    let api = healthz(app.clone())
        .or(create(app.clone()))
        .unify()
        .or(create_from_token(app.clone()))
        .unify()
        .or(lookup(app.clone()))
        .unify()
        .or(delete(app.clone()))
        .unify()
        .or(list(app.clone()))
        .unify()
        .or(stats(app.clone()))
        .unify()
        .or(sweep(app.clone()))
        .unify()
        .or(metrics(app.clone()))
        .unify()
        .or(export(app.clone()))
        .unify()
        .or(import(app.clone()))
        .unify()
        .or(reload(app.clone()))
        .unify()
        .or(openapi())
        .unify();
    checked(app)
        .and(api)
        .recover(handle_rejection)
        .unify()
        .boxed()
}

fn with_app(app: Arc<App>) -> impl Filter<Extract = (Arc<App>,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// The request's authority: the URI's (absolute form) or the `Host` header's, `Ok(None)`
/// when there is neither, `Err` when they differ or `Host` does not parse.
type RequestAuthority = Result<Option<Authority>, ()>;

/// Runs [`check_request`] on every request before any route.
fn checked(app: Arc<App>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let authority = warp::host::optional()
        .map(|a: Option<Authority>| -> RequestAuthority { Ok(a) })
        .or(warp::any().map(|| -> RequestAuthority { Err(()) }))
        .unify();
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(authority)
        .and(with_app(app))
        .and_then(
            |method: Method,
             path: warp::path::FullPath,
             headers: HeaderMap,
             authority: RequestAuthority,
             app: Arc<App>| async move {
                let config = app.config();
                check_request(&config.server, &method, path.as_str(), &headers, authority)
                    .map_err(|e| {
                        if matches!(e.status, StatusCode::MISDIRECTED_REQUEST | StatusCode::FORBIDDEN) {
                            tracing::info!(%method, reason = %e.description, "admin request refused");
                        }
                        warp::reject::custom(e)
                    })
            },
        )
        .untuple_one()
}

/// The checks of SPEC §5 that come before any route, in the order the module doc gives:
/// Host (`421`), Origin (`403`), admin token (`401`), method (`405`), media type (`415`).
/// `Ok` lets the request on to the router (which answers `404` for an unknown path).
pub fn check_request(
    server: &ServerConfig,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    authority: Result<Option<Authority>, ()>,
) -> Result<(), ApiError> {
    if headers.get_all(HOST).iter().nth(1).is_some() {
        return Err(ApiError::invalid("two Host headers"));
    }
    match authority {
        Ok(Some(a)) if admin_host_allowed(server, &a) => {}
        _ => return Err(ApiError::misdirected()),
    }
    if headers.contains_key(ORIGIN) {
        return Err(ApiError::cross_origin());
    }
    let served: Vec<&Route> = ROUTES
        .iter()
        .filter(|r| path_matches(r.path, path))
        .collect();
    let route = served.iter().find(|r| r.method == method.as_str());
    let token_free = route.is_some_and(|r| r.path == HEALTHZ); // GET /healthz
    if !token_free {
        authorize(server, headers)?;
    }
    if served.is_empty() {
        return Ok(());
    }
    let Some(route) = route else {
        let allow: Vec<&str> = served.iter().map(|r| r.method).collect();
        return Err(ApiError::method_not_allowed(allow.join(", ")));
    };
    check_media_type(route.body, headers)
}

/// Whether the admin API answers to `authority` (its port is not compared): a loopback IP
/// literal, `localhost`, the `admin_listen` IP (not a wildcard) or an `admin_hosts` entry.
fn admin_host_allowed(server: &ServerConfig, authority: &Authority) -> bool {
    if authority.as_str().contains('@') {
        return false; // userinfo has no place in Host
    }
    let host = unbracketed(authority.host());
    if let Ok(ip) = host.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        let listen = server.admin_listen.ip().to_canonical();
        return ip.is_loopback()
            || (ip == listen && !listen.is_unspecified())
            || server.admin_hosts.iter().any(|h| {
                unbracketed(h)
                    .parse::<IpAddr>()
                    .is_ok_and(|e| e.to_canonical() == ip)
            });
    }
    host.eq_ignore_ascii_case("localhost")
        || server
            .admin_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
}

/// `host` without the brackets of an IPv6 literal.
fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Whether request path `path` is an instance of `template`, matched as warp's `path!`
/// matches it: one leading `/`, an optional trailing `/`, no empty segment; a `{...}`
/// template segment matches any non-empty segment.
fn path_matches(template: &str, path: &str) -> bool {
    let (Some(template), Some(path)) = (template.strip_prefix('/'), path.strip_prefix('/')) else {
        return false;
    };
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut want = template.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if !g.is_empty() && (w == g || w.starts_with('{')) => {}
            _ => return false,
        }
    }
}

/// Checks `Authorization: Bearer <admin_token>` when a token is configured.
fn authorize(server: &ServerConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let expected = &server.admin_token;
    if expected.is_empty() {
        return Ok(());
    }
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

/// The `415` rule for a route taking `body`.
fn check_media_type(body: Body, headers: &HeaderMap) -> Result<(), ApiError> {
    let required = match body {
        Body::Json => "application/json",
        Body::Ndjson => "application/x-ndjson",
        Body::None if carries_body(headers) => "application/json",
        Body::None => return Ok(()),
    };
    let mut types = headers.get_all(CONTENT_TYPE).iter();
    let matches = match (types.next(), types.next()) {
        (Some(v), None) => v
            .to_str()
            .ok()
            .and_then(|t| t.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case(required)),
        _ => false, // none, or two that might disagree
    };
    if matches {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(required))
    }
}

/// Whether the request announces a body (chunked, or a non-zero `Content-Length`).
fn carries_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_body() -> impl Filter<Extract = (Value,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_ADMIN_BODY_BYTES)
        .and(warp::body::bytes())
        .and_then(|bytes: bytes::Bytes| async move {
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                warp::reject::custom(ApiError::invalid(format!("malformed JSON: {e}")))
            })?;
            if !v.is_object() {
                return Err(warp::reject::custom(ApiError::invalid(
                    "malformed JSON: body must be an object",
                )));
            }
            Ok::<_, Rejection>(v)
        })
}

/// POST /v1/revocations
fn create(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "revocations")
        .and(warp::post())
        .and(with_app(app))
        .and(json_body())
        .and_then(|app: Arc<App>, body: Value| async move {
            let rev = parse_revocation(&app, &body).map_err(warp::reject::custom)?;
            let record = app.store.revoke(rev).await.map_err(|e| warp::reject::custom(ApiError::store(e)))?;
            app.metrics.revocation_recorded(Source::Admin);
            tracing::info!(kind = %record.kind, issuer = %record.issuer, value = %record.value, "revoked by admin");
            Ok::<_, Rejection>(json_reply(StatusCode::CREATED, &record.to_json()))
        })
}

/// POST /v1/revocations/token
fn create_from_token(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "revocations" / "token")
        .and(warp::post())
        .and(with_app(app))
        .and(json_body())
        .and_then(|app: Arc<App>, body: Value| async move {
            let obj = body.as_object().expect("checked by json_body");
            reject_unknown_fields(obj, &["token", "reason"]).map_err(warp::reject::custom)?;
            let token = match obj.get("token") {
                Some(Value::String(t)) if !t.is_empty() => t.clone(),
                _ => {
                    return Err(warp::reject::custom(ApiError::invalid(
                        "token: required, a non-empty string",
                    )))
                }
            };
            let reason =
                optional_string(obj, "reason", MAX_REASON_BYTES).map_err(warp::reject::custom)?;
            let verified = app
                .verify(&token)
                .await
                .map_err(|e| warp::reject::custom(ApiError::invalid(format!("token: {e}"))))?;
            let config = app.config();
            let rev = NewRevocation {
                kind: Kind::Jti,
                issuer: verified.issuer.clone(),
                value: verified.jti.clone(),
                issued_before: None,
                expires_at: verified.exp.saturating_add(config.auth.leeway.as_secs()),
                reason,
                source: Source::Admin,
            };
            let record = app
                .store
                .revoke(rev)
                .await
                .map_err(|e| warp::reject::custom(ApiError::store(e)))?;
            app.metrics.revocation_recorded(Source::Admin);
            tracing::info!(issuer = %record.issuer, jti = %record.value, "token revoked by admin");
            Ok::<_, Rejection>(json_reply(StatusCode::CREATED, &record.to_json()))
        })
}

/// GET /v1/revocations/{kind}/{value}?issuer=
fn lookup(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "revocations" / String / String)
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app))
        .and_then(
            |kind: String, value: String, q: HashMap<String, String>, app: Arc<App>| async move {
                let (kind, issuer, value) =
                    key_of(&app, &kind, &value, &q).map_err(warp::reject::custom)?;
                match app.store.get(kind, &issuer, &value) {
                    Ok(Some(r)) => Ok::<_, Rejection>(json_reply(StatusCode::OK, &r.to_json())),
                    Ok(None) => Err(warp::reject::custom(ApiError::not_found(format!(
                        "no {kind} revocation for that value"
                    )))),
                    Err(e) => Err(warp::reject::custom(ApiError::store(e))),
                }
            },
        )
}

/// DELETE /v1/revocations/{kind}/{value}?issuer=
fn delete(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "revocations" / String / String)
        .and(warp::delete())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app))
        .and_then(|kind: String, value: String, q: HashMap<String, String>, app: Arc<App>| async move {
            let (kind, issuer, value) = key_of(&app, &kind, &value, &q).map_err(warp::reject::custom)?;
            match app.store.unrevoke(kind, &issuer, &value).await {
                Ok(true) => {
                    tracing::info!(kind = %kind, issuer = %issuer, value = %value, "unrevoked by admin");
                    Ok::<_, Rejection>(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
                }
                Ok(false) => Err(warp::reject::custom(ApiError::not_found(format!("no {kind} revocation for that value")))),
                Err(e) => Err(warp::reject::custom(ApiError::store(e))),
            }
        })
}

/// GET /v1/revocations?kind=&limit=&after=
fn list(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "revocations")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app))
        .and_then(|q: HashMap<String, String>, app: Arc<App>| async move {
            let result = (|| {
                for k in q.keys() {
                    if !matches!(k.as_str(), "kind" | "limit" | "after") {
                        return Err(ApiError::invalid(format!("{k}: unknown query parameter")));
                    }
                }
                let kind = match q.get("kind").map(String::as_str) {
                    None | Some("") => None,
                    Some(k) => Some(
                        k.parse::<Kind>()
                            .map_err(|e| ApiError::invalid(format!("kind: {e}")))?,
                    ),
                };
                let limit = match q.get("limit").map(String::as_str) {
                    None | Some("") => DEFAULT_PAGE,
                    Some(l) => match l.parse::<usize>() {
                        Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                        _ => {
                            return Err(ApiError::invalid(format!(
                                "limit: must be an integer from 1 to {MAX_PAGE}"
                            )))
                        }
                    },
                };
                let after = q.get("after").map(String::as_str).filter(|a| !a.is_empty());
                app.store.list(kind, after, limit).map_err(|e| match e {
                    StoreError::Invalid(d) => ApiError::invalid(format!("after: {d}")),
                    other => ApiError::store(other),
                })
            })();
            let (items, next) = result.map_err(warp::reject::custom)?;
            let items: Vec<Value> = items.iter().map(|r| r.to_json()).collect();
            Ok::<_, Rejection>(json_reply(
                StatusCode::OK,
                &json!({"items": items, "next": next}),
            ))
        })
}

/// GET /v1/stats
fn stats(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "stats")
        .and(warp::get())
        .and(with_app(app))
        .map(|app: Arc<App>| {
            let c = app.store.counts();
            let last = app.store.last_sweep().map(|s| {
                json!({
                    "at": crate::clock::rfc3339(s.at),
                    "purged": s.purged,
                    "purged_logout_jtis": s.purged_logout_jtis,
                    "duration_ms": s.duration_ms,
                })
            });
            json_reply(
                StatusCode::OK,
                &json!({"jti": c.jti, "sid": c.sid, "sub": c.sub, "last_sweep": last}),
            )
        })
}

/// POST /v1/sweep
fn sweep(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "sweep")
        .and(warp::post())
        .and(with_app(app))
        .and_then(|app: Arc<App>| async move {
            let now = app.clock.now();
            let report = app
                .store
                .sweep_due(now, crate::store::SWEEP_BATCH)
                .await
                .map_err(|e| warp::reject::custom(ApiError::store(e)))?;
            Ok::<_, Rejection>(json_reply(
                StatusCode::OK,
                &json!({"purged": report.purged}),
            ))
        })
}

/// GET /v1/export?kind=
fn export(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "export")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app))
        .and_then(|q: HashMap<String, String>, app: Arc<App>| async move {
            let kind = (|| {
                for k in q.keys() {
                    if k != "kind" {
                        return Err(ApiError::invalid(format!("{k}: unknown query parameter")));
                    }
                }
                match q.get("kind").map(String::as_str) {
                    None | Some("") => Ok(None),
                    Some(k) => k
                        .parse::<Kind>()
                        .map(Some)
                        .map_err(|e| ApiError::invalid(format!("kind: {e}"))),
                }
            })()
            .map_err(warp::reject::custom)?;
            let rx = crate::backup::export_stream(app.store.clone(), kind);
            let body = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            Ok::<_, Rejection>(
                warp::reply::with_header(
                    warp::reply::stream(body),
                    "content-type",
                    "application/x-ndjson",
                )
                .into_response(),
            )
        })
}

/// POST /v1/import?dry_run=
///
/// No Content-Length limit: the body is read line by line (each at most
/// [`crate::backup::MAX_LINE_BYTES`]) and written in batches, so memory stays bounded
/// whatever the size of the upload.
fn import(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "import")
        .and(warp::post())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app))
        .and(warp::body::stream())
        .and_then(import_handler)
}

async fn import_handler<S, B>(
    q: HashMap<String, String>,
    app: Arc<App>,
    body: S,
) -> Result<Response, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send,
    B: warp::Buf,
{
    use futures_util::StreamExt as _;
    let dry_run = (|| {
        for k in q.keys() {
            if k != "dry_run" {
                return Err(ApiError::invalid(format!("{k}: unknown query parameter")));
            }
        }
        match q.get("dry_run").map(String::as_str) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(_) => Err(ApiError::invalid("dry_run: must be true or false")),
        }
    })()
    .map_err(warp::reject::custom)?;
    let input = Box::pin(body).map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining())));
    let config = app.config();
    let now = app.clock.now();
    match crate::backup::import_ndjson(&app.store, &config, now, dry_run, input, |_| {}).await {
        Ok(summary) => {
            if !dry_run {
                tracing::info!(
                    imported = summary.imported,
                    merged = summary.merged,
                    expired = summary.expired,
                    rejected = summary.rejected_count,
                    "import finished"
                );
            }
            Ok(json_reply(
                StatusCode::OK,
                &serde_json::to_value(&summary).unwrap_or_default(),
            ))
        }
        Err(crate::backup::ImportError::Store { source, .. }) => {
            Err(warp::reject::custom(ApiError::store(source)))
        }
        Err(crate::backup::ImportError::Input(e)) => Err(warp::reject::custom(ApiError::invalid(
            format!("body: {e}"),
        ))),
    }
}

/// POST /v1/reload
fn reload(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "reload")
        .and(warp::post())
        .and(with_app(app))
        .and_then(|app: Arc<App>| async move {
            match crate::reload::reload(&app).await {
                Ok(report) => Ok::<_, Rejection>(json_reply(
                    StatusCode::OK,
                    &serde_json::to_value(&report).unwrap_or_default(),
                )),
                Err(e) => Err(warp::reject::custom(ApiError::invalid(e))),
            }
        })
}

/// GET /v1/openapi.json
fn openapi() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "openapi.json").and(warp::get()).map(|| {
        warp::reply::with_header(OPENAPI, "content-type", "application/json").into_response()
    })
}

/// GET /healthz
fn healthz(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("healthz")
        .and(warp::get())
        .and(with_app(app))
        .map(|app: Arc<App>| {
            let config = app.config();
            let store_ok = app.store.probe().is_ok();
            let keys_ok = app.keys.ready(&config);
            let status = if store_ok && keys_ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_reply(
                status,
                &json!({
                    "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
                    "store": if store_ok { "ok" } else { "error" },
                    "keys": if keys_ok { "ok" } else { "missing" },
                }),
            )
        })
}

/// GET /metrics
fn metrics(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_app(app))
        .map(|app: Arc<App>| {
            let mut text = app.metrics.render(&app.store);
            app.snapshot().routes.render(&mut text);
            warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4")
                .into_response()
        })
}

fn key_of(
    app: &App,
    kind: &str,
    value: &str,
    q: &HashMap<String, String>,
) -> Result<(Kind, String, String), ApiError> {
    let kind: Kind = kind
        .parse()
        .map_err(|e| ApiError::invalid(format!("kind: {e}")))?;
    let value = percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map_err(|_| ApiError::invalid("value: not valid UTF-8"))?
        .into_owned();
    if value.is_empty() {
        return Err(ApiError::invalid("value: must not be empty"));
    }
    for k in q.keys() {
        if k != "issuer" {
            return Err(ApiError::invalid(format!("{k}: unknown query parameter")));
        }
    }
    let issuer = app
        .resolve_issuer(
            q.get("issuer")
                .map(String::as_str)
                .filter(|s| !s.is_empty()),
        )
        .map_err(|e| ApiError::invalid(format!("issuer: {e}")))?;
    Ok((kind, issuer, value))
}

fn reject_unknown_fields(
    obj: &serde_json::Map<String, Value>,
    allowed: &[&str],
) -> Result<(), ApiError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid(format!("{k}: unknown field"))),
        None => Ok(()),
    }
}

fn optional_string(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ApiError::invalid(format!(
            "{field}: longer than {max} bytes"
        ))),
        Some(_) => Err(ApiError::invalid(format!("{field}: must be a string"))),
    }
}

/// Validates a `POST /v1/revocations` body into a revocation (nothing stored yet).
pub fn parse_revocation(app: &App, body: &Value) -> Result<NewRevocation, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("malformed JSON: body must be an object"))?;
    reject_unknown_fields(
        obj,
        &[
            "kind",
            "value",
            "issuer",
            "ttl",
            "expires_at",
            "issued_before",
            "reason",
        ],
    )?;
    let kind: Kind = match obj.get("kind") {
        Some(Value::String(k)) => k
            .parse()
            .map_err(|e| ApiError::invalid(format!("kind: {e}")))?,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("kind: required (jti, sid or sub)"))
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "kind: must be a string (jti, sid or sub)",
            ))
        }
    };
    let value = match obj.get("value") {
        Some(Value::String(v)) if v.is_empty() => {
            return Err(ApiError::invalid("value: must not be empty"))
        }
        Some(Value::String(v)) if v.len() > MAX_VALUE_BYTES => {
            return Err(ApiError::invalid(format!(
                "value: longer than {MAX_VALUE_BYTES} bytes"
            )))
        }
        Some(Value::String(v)) => v.clone(),
        None | Some(Value::Null) => return Err(ApiError::invalid("value: required")),
        Some(_) => return Err(ApiError::invalid("value: must be a string")),
    };
    let issuer_given = optional_string(obj, "issuer", MAX_ISSUER_BYTES)?;
    let issuer = app
        .resolve_issuer(issuer_given.as_deref())
        .map_err(|e| ApiError::invalid(format!("issuer: {e}")))?;
    let ttl = optional_string(obj, "ttl", 64)?;
    let expires_at = optional_string(obj, "expires_at", 64)?;
    let issued_before = optional_string(obj, "issued_before", 64)?;
    let reason = optional_string(obj, "reason", MAX_REASON_BYTES)?;
    if ttl.is_some() && expires_at.is_some() {
        return Err(ApiError::invalid(
            "ttl, expires_at: give at most one of them",
        ));
    }
    let now = app.clock.now();
    let config = app.config();
    let issued_before = match issued_before {
        Some(_) if kind == Kind::Jti => {
            return Err(ApiError::invalid("issued_before: not allowed for kind jti"))
        }
        Some(text) => Some(
            crate::clock::parse_rfc3339(&text)
                .map_err(|e| ApiError::invalid(format!("issued_before: {e}")))?,
        ),
        None if kind == Kind::Jti => None,
        None => Some(now),
    };
    // The field that decides the expiry, named when it lies beyond what RFC 3339 can write.
    let expiry_field = match (&ttl, &expires_at) {
        (Some(_), _) => "ttl",
        (None, None) if kind != Kind::Jti => "issued_before",
        _ => "expires_at",
    };
    let expires_at = if let Some(ttl) = ttl {
        let d = humantime::parse_duration(ttl.trim())
            .map_err(|e| ApiError::invalid(format!("ttl: invalid duration {ttl:?}: {e}")))?;
        if d.as_secs() == 0 {
            return Err(ApiError::invalid("ttl: must be at least 1s"));
        }
        now.saturating_add(d.as_secs())
    } else if let Some(text) = expires_at {
        let at = crate::clock::parse_rfc3339(&text)
            .map_err(|e| ApiError::invalid(format!("expires_at: {e}")))?;
        if at <= now {
            return Err(ApiError::invalid("expires_at: is in the past"));
        }
        at
    } else {
        default_expires_at(
            kind,
            now,
            None,
            issued_before,
            config.auth.max_token_lifetime.as_secs(),
            config.auth.leeway.as_secs(),
        )
    };
    if expires_at > crate::clock::MAX_RFC3339_SECS {
        return Err(ApiError::invalid(format!(
            "{expiry_field}: the expiry would be after {}",
            crate::clock::rfc3339(crate::clock::MAX_RFC3339_SECS)
        )));
    }
    Ok(NewRevocation {
        kind,
        issuer,
        value,
        issued_before,
        expires_at,
        reason,
        source: Source::Admin,
    })
}

/// The one place where rejections become answers (JSON error bodies, never Debug text).
pub async fn handle_rejection(err: Rejection) -> Result<Response, Infallible> {
    if let Some(e) = err.find::<ApiError>() {
        return Ok(e.clone().into_response());
    }
    if err.is_not_found() {
        return Ok(error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such admin route",
        ));
    }
    if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        return Ok(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "body too large",
        ));
    }
    if err.find::<warp::reject::LengthRequired>().is_some() {
        return Ok(error_response(
            StatusCode::LENGTH_REQUIRED,
            "invalid_request",
            "Content-Length required",
        ));
    }
    if err.find::<warp::reject::InvalidQuery>().is_some() {
        return Ok(error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "malformed query string",
        ));
    }
    // Last among the known rejections: a route whose path and method matched (and then
    // refused the body or query) must win over sibling routes that only differ by method.
    if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        return Ok(error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        ));
    }
    tracing::warn!(?err, "unhandled admin rejection");
    Ok(error_response(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "bad request",
    ))
}

/// Property tests on hostile input.
#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn server(admin_listen: &str, hosts: &[&str], token: &str) -> ServerConfig {
        ServerConfig {
            admin_listen: admin_listen.parse().unwrap(),
            admin_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            admin_token: token.to_string(),
            ..ServerConfig::default()
        }
    }

    fn allowed(s: &ServerConfig, host: &str) -> bool {
        admin_host_allowed(s, &host.parse().unwrap())
    }

    #[test]
    fn hosts_the_admin_api_answers_to() {
        let s = server("10.0.0.5:9090", &["gw-1.internal", "[fd00::7]"], "t");
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9090",
            "127.8.9.10:1",
            "[::1]",
            "[::1]:9090",
            "[::ffff:127.0.0.1]:9090",
            "localhost",
            "LocalHost:9090",
            "10.0.0.5:9090",
            "10.0.0.5",
            "gw-1.internal",
            "GW-1.Internal:9090",
            "[fd00::7]:9090",
            "[fd00:0::7]",
        ] {
            assert!(allowed(&s, ok), "{ok}");
        }
        for bad in [
            "rebind.evil.example",
            "rebind.evil.example:9090",
            "localhost.",
            "localhost.evil.example",
            "sub.localhost",
            "127.1",
            "10.0.0.6:9090",
            "gw-1.internal.evil",
            "0.0.0.0:9090",
            "[::]:9090",
            "user@127.0.0.1",
        ] {
            assert!(!allowed(&s, bad), "{bad}");
        }
        // A wildcard admin_listen is not a host anyone is addressed by.
        let wild = server("0.0.0.0:9090", &[], "t");
        assert!(!allowed(&wild, "0.0.0.0:9090"));
        assert!(allowed(&wild, "127.0.0.1:9090"));
    }

    #[test]
    fn paths_match_templates_as_warp_does() {
        assert!(path_matches("/v1/stats", "/v1/stats"));
        assert!(path_matches("/v1/stats", "/v1/stats/"));
        assert!(!path_matches("/v1/stats", "/v1/stats//"));
        assert!(!path_matches("/v1/stats", "//v1/stats"));
        assert!(!path_matches("/v1/stats", "/v1/stats/x"));
        assert!(!path_matches("/v1/stats", "/v1"));
        let t = "/v1/revocations/{kind}/{value}";
        assert!(path_matches(t, "/v1/revocations/sid/a%2Fb"));
        assert!(!path_matches(t, "/v1/revocations/sid"));
        assert!(!path_matches(t, "/v1/revocations/sid/"));
        assert!(!path_matches(t, "/v1/revocations//x"));
        assert!(!path_matches(t, "/v1/revocations/sid/a/b"));
        assert!(!path_matches("/healthz", "/"));
        assert!(!path_matches("/healthz", ""));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    fn check(
        s: &ServerConfig,
        method: &str,
        path: &str,
        h: &[(&'static str, &'static str)],
    ) -> Result<(), (u16, Option<String>)> {
        let h = headers(h);
        let authority = match h.get(HOST) {
            Some(v) => v.to_str().unwrap().parse().map(Some).map_err(|_| ()),
            None => Ok(None),
        };
        check_request(s, &method.parse().unwrap(), path, &h, authority)
            .map_err(|e| (e.status.as_u16(), e.allow))
    }

    #[test]
    fn checks_come_in_order_host_origin_token_method_media_type() {
        let s = server("127.0.0.1:9090", &[], "secret");
        let evil = ("host", "rebind.evil.example");
        let local = ("host", "127.0.0.1:9090");
        let origin = ("origin", "https://evil.example");
        let token = ("authorization", "Bearer secret");
        let text = ("content-type", "text/plain");
        let json = ("content-type", "application/json; charset=utf-8");
        let post = "/v1/revocations";
        // Host first: even with the token, an Origin and a wrong media type.
        assert_eq!(
            check(&s, "POST", post, &[evil, origin, token, text]),
            Err((421, None))
        );
        assert_eq!(check(&s, "GET", "/healthz", &[evil]), Err((421, None)));
        assert_eq!(check(&s, "GET", "/nope", &[evil]), Err((421, None)));
        assert_eq!(
            check(&s, "GET", "/healthz", &[]),
            Err((421, None)),
            "no Host at all"
        );
        assert_eq!(
            check(&s, "GET", "/healthz", &[local, local]).unwrap_err().0,
            400
        );
        // Then Origin, before the token.
        assert_eq!(
            check(&s, "POST", post, &[local, origin, text]),
            Err((403, None))
        );
        assert_eq!(
            check(&s, "GET", "/healthz", &[local, ("origin", "null")]),
            Err((403, None))
        );
        // Then the token (all but GET /healthz).
        assert_eq!(check(&s, "POST", post, &[local, text]), Err((401, None)));
        assert_eq!(check(&s, "GET", "/nope", &[local]), Err((401, None)));
        assert_eq!(check(&s, "POST", "/healthz", &[local]), Err((401, None)));
        assert_eq!(check(&s, "GET", "/healthz", &[local]), Ok(()));
        // Then the method, with Allow.
        assert_eq!(
            check(&s, "PUT", post, &[local, token, text]),
            Err((405, Some("POST, GET".to_string())))
        );
        assert_eq!(
            check(&s, "POST", "/v1/revocations/sid/x", &[local, token]),
            Err((405, Some("GET, DELETE".to_string())))
        );
        assert_eq!(
            check(&s, "HEAD", "/healthz", &[local, token]),
            Err((405, Some("GET".to_string())))
        );
        assert_eq!(
            check(&s, "GET", "/nope", &[local, token]),
            Ok(()),
            "the router's 404"
        );
        // Then the media type.
        assert_eq!(
            check(&s, "POST", post, &[local, token, text]),
            Err((415, None))
        );
        assert_eq!(check(&s, "POST", post, &[local, token]), Err((415, None)));
        assert_eq!(
            check(
                &s,
                "POST",
                post,
                &[local, token, json, ("content-type", "text/plain")]
            ),
            Err((415, None)),
            "two Content-Types"
        );
        assert_eq!(check(&s, "POST", post, &[local, token, json]), Ok(()));
        assert_eq!(
            check(
                &s,
                "POST",
                post,
                &[local, token, ("content-type", "Application/JSON")]
            ),
            Ok(())
        );
        assert_eq!(
            check(&s, "POST", "/v1/import", &[local, token, json]),
            Err((415, None))
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/import",
                &[local, token, ("content-type", "application/x-ndjson")]
            ),
            Ok(())
        );
        // A route that reads no body: none, or an empty one, needs no type; a body does.
        assert_eq!(check(&s, "POST", "/v1/sweep", &[local, token]), Ok(()));
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/sweep",
                &[local, token, ("content-length", "0"), text]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/sweep",
                &[local, token, ("content-length", "2"), text]
            ),
            Err((415, None))
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/reload",
                &[local, token, ("transfer-encoding", "chunked")]
            ),
            Err((415, None))
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/reload",
                &[local, token, ("content-length", "2"), json]
            ),
            Ok(())
        );
    }

    #[test]
    fn without_admin_token_the_page_checks_still_apply() {
        let s = server("127.0.0.1:9090", &[], "");
        let local = ("host", "localhost:9090");
        let text = ("content-type", "text/plain");
        assert_eq!(
            check(&s, "POST", "/v1/revocations", &[local, text]),
            Err((415, None))
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "/v1/revocations",
                &[local, ("origin", "https://a.example"), text]
            ),
            Err((403, None))
        );
        assert_eq!(
            check(
                &s,
                "DELETE",
                "/v1/revocations/sub/alice",
                &[("host", "rebind.evil.example:9090")]
            ),
            Err((421, None))
        );
        assert_eq!(
            check(&s, "DELETE", "/v1/revocations/sub/alice", &[local]),
            Ok(())
        );
    }
}
