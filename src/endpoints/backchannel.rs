//! `POST backchannel.path` (SPEC §4, OpenID Connect Back-Channel Logout 1.0 §2.5–§2.8):
//! validates the `logout_token` ([`crate::auth::logout`]), revokes its session (`sid`, or
//! the subject when only `sub` is given) with `issued_before` = the token's `iat`, and
//! remembers the token's `jti` — both in one durable write — before answering `200`.
//! A refusal is `400 invalid_request` and is counted by [`LogoutReason`].

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use super::answer;
use super::form::{read_form, single_param};
use crate::auth::logout::{validate_logout_token, LogoutError, LogoutReason};
use crate::error::{GatewayError, ProxyBody};
use crate::store::{
    Change, Kind, LogAck, Logout, NewRevocation, Outcome, Policy, SeenLogout, Source,
};
use crate::App;

/// Answers a back-channel logout request.
pub async fn backchannel(app: &Arc<App>, req: Request<Incoming>) -> Response<ProxyBody> {
    let result = match logout(app, req).await {
        Ok(ack) => {
            app.metrics
                .backchannel_accepted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(ack)
        }
        Err(Refused::Request(e)) => Err(e),
        Err(Refused::Logout(reason, description)) => {
            app.metrics.backchannel_rejected(reason);
            tracing::info!(reason = %description, "back-channel logout rejected");
            Err(GatewayError::InvalidRequest(description))
        }
    };
    answer(result)
}

/// Why a back-channel logout was refused.
enum Refused {
    /// The request itself could not be read as one (405, 408, 413): not counted.
    Request(GatewayError),
    /// A logout refused for this reason, answered `400` with this description.
    Logout(LogoutReason, String),
}

impl From<LogoutError> for Refused {
    fn from(e: LogoutError) -> Self {
        Refused::Logout(e.reason, e.to_string())
    }
}

/// A form problem is the request's (`400`, counted as [`LogoutReason::Request`]) unless
/// it has its own status.
fn form_problem(e: GatewayError) -> Refused {
    match e {
        GatewayError::InvalidRequest(d) => Refused::Logout(LogoutReason::Request, d),
        other => Refused::Request(other),
    }
}

async fn logout(app: &Arc<App>, req: Request<Incoming>) -> Result<LogAck, Refused> {
    let config = app.config();
    let form = read_form(&config, req).await.map_err(form_problem)?;
    let token = single_param(&form, "logout_token").map_err(form_problem)?;
    let now = app.clock.now();
    let logout = validate_logout_token(&config, &app.keys, &app.metrics, now, token).await?;

    let (kind, value) = match (&logout.sid, &logout.sub) {
        (Some(sid), _) => (Kind::Sid, sid.clone()),
        (None, Some(sub)) => (Kind::Sub, sub.clone()),
        (None, None) => {
            return Err(Refused::Logout(
                LogoutReason::Claims,
                "logout token has neither sid nor sub".to_string(),
            ))
        }
    };
    let policy = Policy::of(&config);
    let change = Logout {
        revocation: NewRevocation {
            kind,
            issuer: logout.issuer.clone(),
            value,
            issued_before: Some(logout.iat),
            expires_at: policy.cutoff_expires_at(logout.iat),
            reason: Some("back-channel logout".to_string()),
            source: Source::Backchannel,
        },
        jti: logout.jti.clone(),
        fingerprint: logout.fingerprint,
        jti_expires_at: policy.seen_jti_expires_at(logout.iat, logout.exp),
    };
    // Replay defence and revocation in one transaction: a token reusing a seen jti
    // records nothing, even when it races the first one.
    let (outcome, ack) = app
        .store
        .apply_acked(&Change::Logout(change))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "store write failed during back-channel logout");
            Refused::Logout(
                LogoutReason::Store,
                "revocation could not be stored".to_string(),
            )
        })?;
    let Outcome::Logout(seen) = outcome else {
        unreachable!("a logout applied as {outcome:?}")
    };
    match seen {
        SeenLogout::Conflict => Err(Refused::Logout(
            LogoutReason::Replay,
            "logout token jti was already used by another logout token".to_string(),
        )),
        SeenLogout::Repeat => Ok(ack),
        SeenLogout::New => {
            app.metrics.revocation_recorded(Source::Backchannel);
            tracing::info!(issuer = %logout.issuer, kind = %kind, jti = %logout.jti, "back-channel logout accepted");
            Ok(ack)
        }
    }
}
