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
//! - `GET    /healthz`                         200 when the store is usable, every issuer has keys and no shutdown has begun ([`crate::health`])
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

mod body;
mod guard;
mod handlers;

pub use body::parse_revocation;
pub use guard::check_request;

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::Value;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::error::{GatewayError, Surface};
use crate::App;
use handlers::*;

/// Largest admin request body accepted (bigger: 413). Holds a value of the store's
/// [`MAX_VALUE_BYTES`] (the one bound on revoked values, shared with tokens and imports).
pub const MAX_ADMIN_BODY_BYTES: u64 = 64 * 1024;
/// The limit a `413` of the admin API names.
const ADMIN_BODY_LIMIT: &str = "the admin API's 64 KiB";
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

/// The OpenAPI 3 description of the admin API, served at `GET /v1/openapi.json` when
/// `server.admin_token` is set (every operation but `GET /healthz` requires it).
pub const OPENAPI: &str = include_str!("../../data/openapi.json");

/// The document `GET /v1/openapi.json` serves for `config`: [`OPENAPI`], made exact for
/// this gateway so that a client generated from it, or a tool testing against it, sends
/// what the API accepts:
///
/// - without `server.admin_token` the top-level `security` is empty (nothing requires a
///   token); with it, the bearer scheme is required as written;
/// - every `issuer` a request may name (the `?issuer=` of one record, the `issuer` of a
///   revocation body) is an `enum` of the configured issuers, and a required one when
///   several are configured (with one, it may be left out).
///
/// A reload changes what the next request gets.
pub fn openapi_document(config: &crate::config::Config) -> String {
    static BASE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let mut doc = BASE
        .get_or_init(|| serde_json::from_str(OPENAPI).expect("data/openapi.json is JSON"))
        .clone();
    if config.server.admin_token.is_empty() {
        doc["security"] = Value::Array(Vec::new());
    }
    let issuers: Vec<Value> = config
        .issuers
        .iter()
        .map(|i| Value::String(i.issuer.clone()))
        .collect();
    let several = issuers.len() > 1;
    if let Some(params) = doc
        .pointer_mut("/paths/~1v1~1revocations~1{kind}~1{value}/parameters")
        .and_then(Value::as_array_mut)
    {
        for p in params.iter_mut().filter(|p| p["name"] == "issuer") {
            p["schema"]["enum"] = Value::Array(issuers.clone());
            p["required"] = Value::Bool(several);
        }
    }
    if let Some(body) = doc.pointer_mut("/components/schemas/RevocationRequest") {
        body["properties"]["issuer"]["enum"] = Value::Array(issuers);
        if several {
            if let Some(required) = body["required"].as_array_mut() {
                required.push(Value::String("issuer".into()));
            }
        }
    }
    serde_json::to_string_pretty(&doc).expect("a JSON value serialises")
}

pub(super) fn json_reply(status: StatusCode, v: &Value) -> Response {
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
        .or(openapi(app.clone()))
        .unify();
    guard::checked(app)
        .and(api)
        .recover(handle_rejection)
        .unify()
        .boxed()
}

pub(super) fn with_app(
    app: Arc<App>,
) -> impl Filter<Extract = (Arc<App>,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// The one `recover` of the admin routes: a [`GatewayError`] rejection, or one of warp's
/// own, answered through [`GatewayError::response`] (JSON error bodies, never Debug text).
pub async fn handle_rejection(err: Rejection) -> Result<Response, Infallible> {
    Ok(rejection_error(&err).response(Surface::Admin))
}

/// The error a rejection stands for.
fn rejection_error(err: &Rejection) -> GatewayError {
    if let Some(e) = err.find::<GatewayError>() {
        return e.clone();
    }
    if err.is_not_found() {
        return GatewayError::not_found("no such admin route");
    }
    if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        return GatewayError::BodyTooLarge(ADMIN_BODY_LIMIT);
    }
    if err.find::<warp::reject::LengthRequired>().is_some() {
        return GatewayError::LengthRequired;
    }
    if err.find::<warp::reject::InvalidQuery>().is_some() {
        return GatewayError::invalid("malformed query string");
    }
    // Last among the known rejections: a route whose path and method matched (and then
    // refused the body or query) must win over sibling routes that only differ by method.
    // (A method a known path does not serve was already answered by the guard, with its
    // `Allow`; this one is for a path no route serves with any method.)
    if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        return GatewayError::MethodNotAllowed(String::new());
    }
    tracing::warn!(?err, "unhandled admin rejection");
    GatewayError::invalid("bad request")
}

/// Property tests on hostile input.
#[cfg(test)]
mod proptests;
