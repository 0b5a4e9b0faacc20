//! `POST revoke_endpoint.path` (SPEC §4, RFC 7009 §2): the app revokes the access token it
//! is discarding. `200` whether or not the token was valid (RFC 7009 §2.2), but only a
//! token that passes every access-token check but the revocation one is revoked (its `jti`
//! until its `exp` + leeway); `503` when the store cannot record it (never a false `200`).

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use super::answer;
use super::form::{read_form, single_param};
use crate::error::{GatewayError, ProxyBody};
use crate::store::{LogAck, Policy, Source};
use crate::{App, Snapshot};

/// Answers a revocation request under `snapshot`, the configuration the proxy took for
/// this request (a reload in between cannot split it).
pub async fn revoke(
    app: &Arc<App>,
    snapshot: &Snapshot,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    answer(revoke_token(app, snapshot, req).await)
}

async fn revoke_token(
    app: &Arc<App>,
    snapshot: &Snapshot,
    req: Request<Incoming>,
) -> Result<LogAck, GatewayError> {
    let form = read_form(&snapshot.config, req).await?;
    let token = single_param(&form, "token")?;
    // RFC 7009 §2.2: invalid tokens get 200 too, but only a verified token is revoked.
    let verified = match app.verify(snapshot, token).await {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(reason = %e, "revoke endpoint: token not verified, nothing revoked");
            return Ok(LogAck::Local);
        }
    };
    let rev = Policy::of(&snapshot.config).token_revocation(
        &verified.issuer,
        &verified.jti,
        verified.exp,
        Some("revoked by the application".to_string()),
        Source::RevokeEndpoint,
    );
    match app.store.revoke_acked(rev).await {
        Ok((_, ack)) => {
            app.metrics.revocation_recorded(Source::RevokeEndpoint);
            tracing::info!(issuer = %verified.issuer, jti = %verified.jti, "token revoked at the revoke endpoint");
            Ok(ack)
        }
        Err(e) => {
            // RFC 7009 §2.2.1: 503 when the server cannot revoke right now.
            tracing::error!(error = %e, "revoke endpoint: store write failed");
            Err(GatewayError::StoreUnavailable)
        }
    }
}
