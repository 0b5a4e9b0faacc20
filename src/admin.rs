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
//! [`ROUTES`] lists the same routes for the OpenAPI conformance test (`tests/openapi.rs`),
//! which checks them against `data/openapi.json` in both directions.
//!
//! Every route tree ends in the one [`handle_rejection`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::store::{default_expires_at, Kind, NewRevocation, Source, StoreError};
use crate::App;

/// Largest admin request body accepted (bigger: 413).
pub const MAX_ADMIN_BODY_BYTES: u64 = 64 * 1024;
/// Longest revoked value (jti / sid / sub) accepted.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Longest `reason` accepted.
pub const MAX_REASON_BYTES: usize = 1024;
/// Default and largest page size of `GET /v1/revocations`.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page size of `GET /v1/revocations`.
pub const MAX_PAGE: usize = 1000;

/// Every route this module serves, as (method, OpenAPI path template). Kept in step with
/// [`routes`] and with `data/openapi.json` (checked by `tests/openapi.rs`).
pub const ROUTES: [(&str, &str); 13] = [
    ("POST", "/v1/revocations"),
    ("GET", "/v1/revocations"),
    ("POST", "/v1/revocations/token"),
    ("GET", "/v1/revocations/{kind}/{value}"),
    ("DELETE", "/v1/revocations/{kind}/{value}"),
    ("GET", "/v1/stats"),
    ("POST", "/v1/sweep"),
    ("GET", "/v1/export"),
    ("POST", "/v1/import"),
    ("POST", "/v1/reload"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
];

/// The OpenAPI 3 description of the admin API, served at `GET /v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../data/openapi.json");

/// An admin API error: status, stable code and a description naming the field.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    /// 400 `invalid_request` with a description that names the field.
    pub fn invalid(description: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            description: description.into(),
        }
    }
    fn not_found(description: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            description: description.into(),
        }
    }
    fn store(e: StoreError) -> Self {
        if let StoreError::Invalid(d) = e {
            return ApiError::invalid(d);
        }
        tracing::error!(error = %e, "store operation failed");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "temporarily_unavailable",
            description: "revocation store unavailable".to_string(),
        }
    }
    fn unauthorized() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            description: "admin token required".to_string(),
        }
    }
    fn into_response(self) -> Response {
        error_response(self.status, self.code, &self.description)
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

/// All admin routes, ending in the one recover.
pub fn routes(app: Arc<App>) -> warp::filters::BoxedFilter<(Response,)> {
    let api = authorized(app.clone()).and(
        create(app.clone())
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
            .unify(),
    );
    healthz(app)
        .or(api)
        .unify()
        .recover(handle_rejection)
        .unify()
        .boxed()
}

fn with_app(app: Arc<App>) -> impl Filter<Extract = (Arc<App>,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// Checks `Authorization: Bearer <admin_token>` when a token is configured.
fn authorized(app: Arc<App>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(with_app(app))
        .and_then(|auth: Option<String>, app: Arc<App>| async move {
            let config = app.config();
            let expected = &config.server.admin_token;
            if expected.is_empty() {
                return Ok(());
            }
            let given = auth
                .as_deref()
                .and_then(|a| a.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim());
            match given {
                Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
                _ => Err(warp::reject::custom(ApiError::unauthorized())),
            }
        })
        .untuple_one()
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
    let issuer_given = optional_string(obj, "issuer", MAX_VALUE_BYTES)?;
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
        return Ok(ApiError {
            status: e.status,
            code: e.code,
            description: e.description.clone(),
        }
        .into_response());
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
