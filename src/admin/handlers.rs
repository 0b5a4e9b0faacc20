//! The admin routes (SPEC §5 table), one filter each, named by what they serve; their
//! bodies are parsed by [`super::body`]. Every refusal is a [`GatewayError`] rejection,
//! answered by the one [`super::handle_rejection`].

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::body::{key_of, optional_string, parse_revocation, reject_unknown_fields};
use super::{json_reply, with_app, DEFAULT_PAGE, MAX_ADMIN_BODY_BYTES, MAX_PAGE, MAX_REASON_BYTES};
use crate::error::GatewayError;
use crate::store::{Change, Kind, LogAck, Outcome, Policy, Source, StoreError};
use crate::App;

fn json_body() -> impl Filter<Extract = (Value,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_ADMIN_BODY_BYTES)
        .and(warp::body::bytes())
        .and_then(|bytes: bytes::Bytes| async move {
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                warp::reject::custom(GatewayError::invalid(format!("malformed JSON: {e}")))
            })?;
            if !v.is_object() {
                return Err(warp::reject::custom(GatewayError::invalid(
                    "malformed JSON: body must be an object",
                )));
            }
            Ok::<_, Rejection>(v)
        })
}

/// `response` with the `Revgate-Cluster` header saying what the shared log has of the
/// change it answers (none outside a cluster).
pub(crate) fn with_log_ack<R: Reply>(response: R, ack: LogAck) -> Response {
    let mut response = response.into_response();
    ack.mark(response.headers_mut());
    response
}

/// Applies a revocation for an admin request: the stored record and what the shared log
/// has of it.
async fn revoke(app: &App, rev: crate::store::NewRevocation) -> Result<Response, Rejection> {
    let (record, ack) = app
        .store
        .revoke_acked(rev)
        .await
        .map_err(|e| warp::reject::custom(GatewayError::from_store(e)))?;
    app.metrics.revocation_recorded(Source::Admin);
    tracing::info!(kind = %record.kind, issuer = %record.issuer, value = %record.value, "revoked by admin");
    Ok(with_log_ack(
        json_reply(StatusCode::CREATED, &record.to_json()),
        ack,
    ))
}

/// The `?kind=` of a list or an export: absent means every kind; present, it must name
/// one (an empty `kind=` is refused rather than read as "every kind").
fn kind_param(q: &HashMap<String, String>) -> Result<Option<Kind>, GatewayError> {
    q.get("kind")
        .map(|k| {
            k.parse::<Kind>()
                .map_err(|e| GatewayError::invalid(format!("kind: {e}")))
        })
        .transpose()
}

/// POST /v1/revocations
pub(super) fn create(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "revocations")
        .and(warp::post())
        .and(with_app(app))
        .and(json_body())
        .and_then(|app: Arc<App>, body: Value| async move {
            let rev = parse_revocation(&app, &body).map_err(warp::reject::custom)?;
            revoke(&app, rev).await
        })
}

/// POST /v1/revocations/token
pub(super) fn create_from_token(
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
                    return Err(warp::reject::custom(GatewayError::invalid(
                        "token: required, a non-empty string",
                    )))
                }
            };
            let reason =
                optional_string(obj, "reason", MAX_REASON_BYTES).map_err(warp::reject::custom)?;
            let snapshot = app.snapshot();
            let verified = app
                .verify(&snapshot, &token)
                .await
                .map_err(|e| warp::reject::custom(GatewayError::invalid(format!("token: {e}"))))?;
            let rev = Policy::of(&snapshot.config).token_revocation(
                &verified.issuer,
                &verified.jti,
                verified.exp,
                reason,
                Source::Admin,
            );
            revoke(&app, rev).await
        })
}

/// GET /v1/revocations/{kind}/{value}?issuer=
pub(super) fn lookup(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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
                    Ok(None) => Err(warp::reject::custom(GatewayError::not_found(format!(
                        "no {kind} revocation for that value"
                    )))),
                    Err(e) => Err(warp::reject::custom(GatewayError::from_store(e))),
                }
            },
        )
}

/// DELETE /v1/revocations/{kind}/{value}?issuer=
pub(super) fn delete(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "revocations" / String / String)
        .and(warp::delete())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app))
        .and_then(|kind: String, value: String, q: HashMap<String, String>, app: Arc<App>| async move {
            let (kind, issuer, value) = key_of(&app, &kind, &value, &q).map_err(warp::reject::custom)?;
            let change = Change::Unrevoke { kind, issuer: issuer.clone(), value: value.clone() };
            match app.store.apply_acked(&change).await {
                Ok((Outcome::Unrevoked { removed: true }, ack)) => {
                    tracing::info!(kind = %kind, issuer = %issuer, value = %value, "unrevoked by admin");
                    Ok::<_, Rejection>(with_log_ack(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT), ack))
                }
                Ok(_) => Err(warp::reject::custom(GatewayError::not_found(format!("no {kind} revocation for that value")))),
                Err(e) => Err(warp::reject::custom(GatewayError::from_store(e))),
            }
        })
}

/// GET /v1/revocations?kind=&limit=&after=
pub(super) fn list(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "revocations")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app))
        .and_then(|q: HashMap<String, String>, app: Arc<App>| async move {
            let result = (|| {
                for k in q.keys() {
                    if !matches!(k.as_str(), "kind" | "limit" | "after") {
                        return Err(GatewayError::invalid(format!(
                            "{k}: unknown query parameter"
                        )));
                    }
                }
                let kind = kind_param(&q)?;
                let limit = match q.get("limit").map(String::as_str) {
                    None => DEFAULT_PAGE,
                    Some(l) => match l.parse::<usize>() {
                        Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                        _ => {
                            return Err(GatewayError::invalid(format!(
                                "limit: must be an integer from 1 to {MAX_PAGE}"
                            )))
                        }
                    },
                };
                let after = q.get("after").map(String::as_str).filter(|a| !a.is_empty());
                app.store.list(kind, after, limit).map_err(|e| match e {
                    StoreError::Invalid(d) => GatewayError::invalid(format!("after: {d}")),
                    other => GatewayError::from_store(other),
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
pub(super) fn stats(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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
            let config = app.config();
            let logouts: Vec<Value> = app
                .metrics
                .logouts
                .rows(config.issuers.iter().map(|i| i.issuer.as_str()))
                .into_iter()
                .map(|(issuer, n)| {
                    let last = n.last_refusal.map(|r| {
                        json!({
                            "at": crate::clock::rfc3339(r.at),
                            "reason": r.reason.label(),
                            "error": r.description,
                        })
                    });
                    json!({
                        "issuer": issuer,
                        "accepted": n.accepted,
                        "refused": n.refused,
                        "last_refusal": last,
                    })
                })
                .collect();
            let mut stats = json!({
                "jti": c.jti,
                "sid": c.sid,
                "sub": c.sub,
                "last_sweep": last,
                "logouts": logouts,
            });
            if let Some(cluster) = &app.cluster {
                stats["cluster"] = cluster.stats();
            }
            json_reply(StatusCode::OK, &stats)
        })
}

/// POST /v1/sweep
pub(super) fn sweep(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "sweep")
        .and(warp::post())
        .and(with_app(app))
        .and_then(|app: Arc<App>| async move {
            let now = app.clock.now();
            let report = app
                .store
                .sweep_due(now, crate::store::SWEEP_BATCH)
                .await
                .map_err(|e| warp::reject::custom(GatewayError::from_store(e)))?;
            Ok::<_, Rejection>(json_reply(
                StatusCode::OK,
                &json!({"purged": report.purged}),
            ))
        })
}

/// GET /v1/export?kind=
pub(super) fn export(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "export")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app(app))
        .and_then(|q: HashMap<String, String>, app: Arc<App>| async move {
            let kind = (|| {
                for k in q.keys() {
                    if k != "kind" {
                        return Err(GatewayError::invalid(format!(
                            "{k}: unknown query parameter"
                        )));
                    }
                }
                kind_param(&q)
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
pub(super) fn import(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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
                return Err(GatewayError::invalid(format!(
                    "{k}: unknown query parameter"
                )));
            }
        }
        match q.get("dry_run").map(String::as_str) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(GatewayError::invalid("dry_run: must be true or false")),
        }
    })()
    .map_err(warp::reject::custom)?;
    let input = Box::pin(body).map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining())));
    let config = app.config();
    let now = app.clock.now();
    let mut received = 0u64;
    let imported =
        crate::backup::import_ndjson(&app.store, &config, now, dry_run, input, |n| received = n)
            .await;
    match imported {
        // A request without a body is no import (the document requires one); an empty
        // export is imported with `revgate import`, which sends nothing for an empty file.
        Ok(_) if received == 0 => Err(warp::reject::custom(GatewayError::invalid(
            "body: empty; send NDJSON records, one per line",
        ))),
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
            Ok(with_log_ack(
                json_reply(
                    StatusCode::OK,
                    &serde_json::to_value(&summary).unwrap_or_default(),
                ),
                summary.log,
            ))
        }
        Err(crate::backup::ImportError::Store { source, .. }) => {
            Err(warp::reject::custom(GatewayError::from_store(source)))
        }
        Err(crate::backup::ImportError::Input(e)) => Err(warp::reject::custom(
            GatewayError::invalid(format!("body: {e}")),
        )),
    }
}

/// POST /v1/reload
pub(super) fn reload(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "reload")
        .and(warp::post())
        .and(with_app(app))
        .and_then(|app: Arc<App>| async move {
            match crate::reload::reload(&app).await {
                Ok(report) => Ok::<_, Rejection>(json_reply(
                    StatusCode::OK,
                    &serde_json::to_value(&report).unwrap_or_default(),
                )),
                Err(e) => Err(warp::reject::custom(GatewayError::invalid(e.to_string()))),
            }
        })
}

/// GET /v1/openapi.json: [`OPENAPI`] made exact for the running configuration
/// ([`super::openapi_document`]: security as `admin_token` says, the configured issuers).
pub(super) fn openapi(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "openapi.json")
        .and(warp::get())
        .and(with_app(app))
        .map(|app: Arc<App>| {
            let document = super::openapi_document(&app.config());
            warp::reply::with_header(document, "content-type", "application/json").into_response()
        })
}

/// GET /healthz
pub(super) fn healthz(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("healthz")
        .and(warp::get())
        .and(with_app(app))
        .map(|app: Arc<App>| {
            let health = crate::health::Health::of(&app);
            let mut body = json!({
                "status": health.status_word(),
                "store": if health.store_ok { "ok" } else { "error" },
                "keys": if health.keys_ok { "ok" } else { "missing" },
            });
            if let Some(cluster) = health.cluster {
                body["cluster"] = json!(cluster.as_str());
            }
            json_reply(health.status_code(), &body)
        })
}

/// GET /metrics
pub(super) fn metrics(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_app(app))
        .map(|app: Arc<App>| {
            let mut text = app.metrics.render(&app.store);
            app.snapshot().routes.render(&mut text);
            if let Some(cluster) = &app.cluster {
                cluster.render_metrics(&mut text);
            }
            warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4")
                .into_response()
        })
}
