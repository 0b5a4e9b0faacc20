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
use crate::config::Config;
use crate::error::{GatewayError, ProxyBody};
use crate::store::{Kind, LogAck, Logout, NewRevocation, Policy, SeenLogout, Source};
use crate::{App, Snapshot};

/// Answers a back-channel logout request. A refused logout token is logged at `warn`
/// with the issuer and the reason, and counted per issuer ([`crate::metrics::LogoutLedger`]):
/// the identity provider only logs a warning, while the user stays logged in at the API.
pub async fn backchannel(
    app: &Arc<App>,
    snapshot: &Snapshot,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let result = match logout(app, &snapshot.config, req).await {
        Ok((issuer, ack)) => {
            app.metrics
                .backchannel_accepted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            app.metrics.logouts.accepted(&issuer);
            Ok(ack)
        }
        Err(Refused::Request(e)) => Err(e),
        Err(Refused::Logout {
            reason,
            issuer,
            description,
        }) => {
            app.metrics.backchannel_rejected(reason);
            app.metrics
                .logouts
                .refused(issuer.as_deref(), reason, &description, app.clock.now());
            tracing::warn!(
                issuer = %issuer.as_deref().unwrap_or("-"),
                reason = %reason.label(),
                error = %description,
                "back-channel logout refused"
            );
            Err(GatewayError::InvalidRequest(description))
        }
    };
    answer(result)
}

/// Why a back-channel logout was refused.
enum Refused {
    /// The request itself could not be read as one (405, 408, 413): not counted.
    Request(GatewayError),
    /// A logout refused for `reason`, answered `400` with `description`; `issuer` is the
    /// configured issuer the token named, when it got that far.
    Logout {
        /// The class of the refusal.
        reason: LogoutReason,
        /// The configured issuer, if known.
        issuer: Option<String>,
        /// The answer's `error_description`.
        description: String,
    },
}

impl Refused {
    /// A refusal of the logout of configured issuer `issuer`.
    fn of(reason: LogoutReason, issuer: &str, description: &str) -> Refused {
        Refused::Logout {
            reason,
            issuer: Some(issuer.to_string()),
            description: description.to_string(),
        }
    }
}

impl From<LogoutError> for Refused {
    fn from(e: LogoutError) -> Self {
        Refused::Logout {
            reason: e.reason,
            description: e.to_string(),
            issuer: e.issuer,
        }
    }
}

/// A form problem is the request's (`400`, counted as [`LogoutReason::Request`]) unless
/// it has its own status.
fn form_problem(e: GatewayError) -> Refused {
    match e {
        GatewayError::InvalidRequest(description) => Refused::Logout {
            reason: LogoutReason::Request,
            issuer: None,
            description,
        },
        other => Refused::Request(other),
    }
}

/// Validates and records one logout; `Ok` names the issuer whose logout it was and
/// what the shared log has of it.
async fn logout(
    app: &Arc<App>,
    config: &Config,
    req: Request<Incoming>,
) -> Result<(String, LogAck), Refused> {
    let form = read_form(config, req).await.map_err(form_problem)?;
    let token = single_param(&form, "logout_token").map_err(form_problem)?;
    let now = app.clock.now();
    let logout = validate_logout_token(config, &app.keys, &app.metrics, now, token).await?;

    let (kind, value) = match (&logout.sid, &logout.sub) {
        (Some(sid), _) => (Kind::Sid, sid.clone()),
        (None, Some(sub)) => (Kind::Sub, sub.clone()),
        (None, None) => {
            return Err(Refused::of(
                LogoutReason::Claims,
                &logout.issuer,
                "logout token has neither sid nor sub",
            ))
        }
    };
    let policy = Policy::of(config);
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
    let (seen, ack) = app.store.record_logout_acked(change).await.map_err(|e| {
        tracing::error!(error = %e, "store write failed during back-channel logout");
        Refused::of(
            LogoutReason::Store,
            &logout.issuer,
            "revocation could not be stored",
        )
    })?;
    match seen {
        SeenLogout::Conflict => Err(Refused::of(
            LogoutReason::Replay,
            &logout.issuer,
            "logout token jti was already used by another logout token",
        )),
        SeenLogout::Repeat => Ok((logout.issuer, ack)),
        SeenLogout::New => {
            app.metrics.revocation_recorded(Source::Backchannel);
            tracing::info!(issuer = %logout.issuer, kind = %kind, jti = %logout.jti, "back-channel logout accepted");
            Ok((logout.issuer, ack))
        }
    }
}
