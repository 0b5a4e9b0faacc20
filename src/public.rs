//! The two public endpoints of the proxy listener (SPEC §4):
//! - `POST backchannel.path`: OpenID Connect Back-Channel Logout 1.0 receiver. Exactly
//!   `200` on success (after the revocation is durable), `400 invalid_request` on any
//!   failure, `Cache-Control: no-store` always.
//! - `POST revoke_endpoint.path`: RFC 7009-style revocation of the app's own token.
//!   `200` whether or not the token was valid, but only a verified token is revoked.
//!
//! Both read their form body within [`PUBLIC_BODY_TIMEOUT`] of the headers, else `408` and
//! the connection is closed: a client trickling its body cannot hold a connection and a
//! task open indefinitely.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::error::{json_response, GatewayError, ProxyBody};
use crate::store::{Kind, NewRevocation, SeenLogout, Source};
use crate::App;

/// Largest form body a logout or revocation request may have; a logout token is a few
/// KiB at most. Bodies above `server.max_body_bytes` still get 413; bodies between the two
/// limits are refused as the endpoint's own `invalid_request`.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// How long after its headers the whole body of a back-channel logout or revocation
/// request may take to arrive (SPEC §4); then `408`. Both bodies are a few KiB, sent at
/// once by an IdP or an app; only a slow-loris client needs longer.
pub const PUBLIC_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// `POST backchannel.path` with `logout_token`.
pub async fn backchannel(app: &Arc<App>, req: Request<Incoming>) -> Response<ProxyBody> {
    let resp = match backchannel_inner(app, req).await {
        Ok(()) => {
            app.metrics
                .backchannel_accepted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            no_store(crate::proxy::status_only(StatusCode::OK))
        }
        Err(Refused::Status(resp)) => *resp,
        Err(Refused::Invalid(reason)) => {
            app.metrics.backchannel_rejected(&reason);
            tracing::info!(reason = %reason, "back-channel logout rejected");
            invalid_request(&reason)
        }
    };
    no_store(resp)
}

enum Refused {
    /// A complete answer (405, 413).
    Status(Box<Response<ProxyBody>>),
    /// 400 invalid_request with this description.
    Invalid(String),
}

async fn backchannel_inner(app: &Arc<App>, req: Request<Incoming>) -> Result<(), Refused> {
    let form = read_form(app, req).await?;
    let token = single_param(&form, "logout_token")?;
    let config = app.config();
    let now = app.clock.now();
    let logout =
        crate::auth::logout::validate_logout_token(&config, &app.keys, &app.metrics, now, token)
            .await
            .map_err(|e| Refused::Invalid(e.to_string()))?;

    let (kind, value) = match (&logout.sid, &logout.sub) {
        (Some(sid), _) => (Kind::Sid, sid.clone()),
        (None, Some(sub)) => (Kind::Sub, sub.clone()),
        (None, None) => {
            return Err(Refused::Invalid(
                "logout token has neither sid nor sub".to_string(),
            ))
        }
    };
    let leeway = config.auth.leeway.as_secs();
    let expires_at = crate::store::default_expires_at(
        kind,
        now,
        None,
        Some(logout.iat),
        config.auth.max_token_lifetime.as_secs(),
        leeway,
    );
    let jti_until = seen_jti_expires_at(
        logout.iat,
        logout.exp,
        config.backchannel.max_age.as_secs(),
        leeway,
    );
    let rev = NewRevocation {
        kind,
        issuer: logout.issuer.clone(),
        value,
        issued_before: Some(logout.iat),
        expires_at,
        reason: Some("back-channel logout".to_string()),
        source: Source::Backchannel,
    };
    // Replay defence and revocation in one transaction: a token reusing a seen jti
    // records nothing, even when it races the first one.
    match app
        .store
        .record_logout(&rev, &logout.jti, logout.fingerprint, jti_until)
        .await
        .map_err(|e| store_failed(&e))?
    {
        SeenLogout::Conflict => Err(Refused::Invalid(
            "logout token jti was already used by another logout token".to_string(),
        )),
        SeenLogout::Repeat => Ok(()),
        SeenLogout::New => {
            app.metrics.revocation_recorded(Source::Backchannel);
            tracing::info!(issuer = %logout.issuer, kind = %kind, jti = %logout.jti, "back-channel logout accepted");
            Ok(())
        }
    }
}

/// Until when a logout token's `jti` is remembered (SPEC §4): the earlier of `exp` +
/// leeway and `iat` + `max_age` + leeway. After either instant the token is refused anyway
/// (expired, or too old), so a replay needs no memory of it; without the second bound a far
/// `exp` would keep the jti for decades.
fn seen_jti_expires_at(iat: u64, exp: Option<u64>, max_age: u64, leeway: u64) -> u64 {
    let too_old = iat.saturating_add(max_age).saturating_add(leeway);
    match exp {
        Some(exp) => exp.saturating_add(leeway).min(too_old),
        None => too_old,
    }
}

fn store_failed(e: &crate::store::StoreError) -> Refused {
    tracing::error!(error = %e, "store write failed during back-channel logout");
    Refused::Invalid("revocation could not be stored".to_string())
}

/// `POST revoke_endpoint.path` with `token`.
pub async fn revoke(app: &Arc<App>, req: Request<Incoming>) -> Response<ProxyBody> {
    let form = match read_form(app, req).await {
        Ok(f) => f,
        Err(Refused::Status(r)) => return no_store(*r),
        Err(Refused::Invalid(d)) => return no_store(invalid_request(&d)),
    };
    let token = match single_param(&form, "token") {
        Ok(t) => t,
        Err(Refused::Invalid(d)) => return no_store(invalid_request(&d)),
        Err(Refused::Status(r)) => return no_store(*r),
    };
    // RFC 7009 §2.2: invalid tokens get 200 too, but only a verified token is revoked.
    let verified = match app.verify(token).await {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(reason = %e, "revoke endpoint: token not verified, nothing revoked");
            return no_store(crate::proxy::status_only(StatusCode::OK));
        }
    };
    let leeway = app.config().auth.leeway.as_secs();
    let rev = NewRevocation {
        kind: Kind::Jti,
        issuer: verified.issuer.clone(),
        value: verified.jti.clone(),
        issued_before: None,
        expires_at: verified.exp.saturating_add(leeway),
        reason: Some("revoked by the application".to_string()),
        source: Source::RevokeEndpoint,
    };
    match app.store.revoke(rev).await {
        Ok(_) => {
            app.metrics.revocation_recorded(Source::RevokeEndpoint);
            tracing::info!(issuer = %verified.issuer, jti = %verified.jti, "token revoked at the revoke endpoint");
            no_store(crate::proxy::status_only(StatusCode::OK))
        }
        Err(e) => {
            // RFC 7009 §2.2.1: 503 when the server cannot revoke right now; never a false 200.
            tracing::error!(error = %e, "revoke endpoint: store write failed");
            no_store(GatewayError::StoreUnavailable.into_response())
        }
    }
}

/// Reads an `application/x-www-form-urlencoded` POST body into pairs.
async fn read_form(
    app: &Arc<App>,
    req: Request<Incoming>,
) -> Result<Vec<(String, String)>, Refused> {
    if req.method() != Method::POST {
        let mut r = GatewayError::MethodNotAllowed.into_response();
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return Err(Refused::Status(Box::new(r)));
    }
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(Refused::Invalid(
            "Content-Type must be application/x-www-form-urlencoded".to_string(),
        ));
    }
    let global = app.config().server.max_body_bytes as usize;
    let limit = MAX_FORM_BYTES.min(global);
    let body = http_body_util::Limited::new(req.into_body(), limit).collect();
    let Ok(collected) = tokio::time::timeout(PUBLIC_BODY_TIMEOUT, body).await else {
        tracing::info!(timeout = ?PUBLIC_BODY_TIMEOUT, "request body too slow: 408");
        return Err(Refused::Status(Box::new(
            GatewayError::BodyTimeout.into_response(),
        )));
    };
    let bytes: Bytes = match collected {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            if limit == global {
                return Err(Refused::Status(Box::new(
                    GatewayError::BodyTooLarge.into_response(),
                )));
            }
            return Err(Refused::Invalid(format!(
                "request body larger than {limit} bytes"
            )));
        }
        Err(_) => {
            return Err(Refused::Invalid(
                "request body could not be read".to_string(),
            ))
        }
    };
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .map_err(|_| Refused::Invalid("malformed form body".to_string()))
}

/// The one value of `name`; missing, empty or repeated is an error.
fn single_param<'a>(form: &'a [(String, String)], name: &str) -> Result<&'a str, Refused> {
    let mut values = form
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    match (values.next(), values.next()) {
        (Some(v), None) if !v.is_empty() => Ok(v),
        (Some(_), Some(_)) => Err(Refused::Invalid(format!("{name} given more than once"))),
        _ => Err(Refused::Invalid(format!("missing {name} parameter"))),
    }
}

fn invalid_request(description: &str) -> Response<ProxyBody> {
    json_response(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({"error": "invalid_request", "error_description": description}),
    )
}

fn no_store(mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seen_jti_is_kept_until_the_earlier_of_exp_and_max_age() {
        let (iat, max_age, leeway) = (1_000, 300, 60);
        // exp before iat + max_age: exp + leeway.
        assert_eq!(
            seen_jti_expires_at(iat, Some(iat + 120), max_age, leeway),
            iat + 180
        );
        // A far exp (31 years): iat + max_age + leeway.
        let far = iat + 1_000_000_000;
        assert_eq!(
            seen_jti_expires_at(iat, Some(far), max_age, leeway),
            iat + 360
        );
        // No exp (logout_require_exp = false): iat + max_age + leeway.
        assert_eq!(seen_jti_expires_at(iat, None, max_age, leeway), iat + 360);
        // Never wraps.
        assert_eq!(
            seen_jti_expires_at(u64::MAX - 1, Some(u64::MAX), max_age, leeway),
            u64::MAX
        );
    }
}
