//! The two public endpoints of the proxy listener (SPEC §4), served without a token:
//! - [`backchannel`] (`POST backchannel.path`): the OpenID Connect Back-Channel Logout 1.0
//!   receiver. Exactly `200` on success (after the revocation is durable), `400
//!   invalid_request` on any failure.
//! - [`revoke`] (`POST revoke_endpoint.path`): RFC 7009-style revocation of the app's own
//!   token. `200` whether or not the token was valid, but only a verified token is revoked.
//!
//! Both read their form body ([`form`]) within [`PUBLIC_BODY_TIMEOUT`] of the headers, else
//! `408` and the connection is closed; every answer carries `Cache-Control: no-store`.

mod backchannel;
mod form;
mod revoke;

pub use backchannel::backchannel;
pub use form::{MAX_FORM_BYTES, PUBLIC_BODY_TIMEOUT};
pub use revoke::revoke;

use http::header::{HeaderValue, CACHE_CONTROL};
use http::{Response, StatusCode};

use crate::error::{empty_response, GatewayError, ProxyBody, Surface};
use crate::store::LogAck;

/// The answer of a public endpoint: an empty `200` (with `Revgate-Cluster` in a cluster), or
/// the error's; `no-store` either way.
fn answer(result: Result<LogAck, GatewayError>) -> Response<ProxyBody> {
    let mut resp = match result {
        Ok(ack) => {
            let mut resp = empty_response(StatusCode::OK);
            ack.mark(resp.headers_mut());
            resp
        }
        Err(e) => e.into_response(Surface::Endpoint),
    };
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
