//! The two public endpoints of the proxy listener: OpenID Connect Back-Channel Logout
//! (`backchannel.path`) and the RFC 7009-style revocation endpoint (`revoke_endpoint.path`).

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::error::ProxyBody;
use crate::App;

/// `POST backchannel.path` with `logout_token`.
pub async fn backchannel(app: &Arc<App>, req: Request<Incoming>) -> Response<ProxyBody> {
    let _ = (app, req);
    crate::proxy::status_only(StatusCode::NOT_IMPLEMENTED)
}

/// `POST revoke_endpoint.path` with `token`.
pub async fn revoke(app: &Arc<App>, req: Request<Incoming>) -> Response<ProxyBody> {
    let _ = (app, req);
    crate::proxy::status_only(StatusCode::NOT_IMPLEMENTED)
}
