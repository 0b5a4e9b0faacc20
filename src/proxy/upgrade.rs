//! WebSocket through the gateway (SPEC §4): an accepted HTTP/1.1 `GET` with
//! `Connection: upgrade` and `Upgrade: websocket` goes upstream with those two headers
//! (every other hop-by-hop header is removed as usual); when the upstream answers `101`,
//! the client gets that `101` and then the bytes flow both ways until either side closes.
//!
//! The upgrade is decided in `forward`, which only runs after the token decision: a
//! refused request is answered like any other and its connection never upgrades. Over
//! HTTP/2 there is no upgrade: `Connection` and `Upgrade` are malformed there (RFC 9113
//! §8.2.2) and the gateway does not offer RFC 8441's extended CONNECT, so clients open
//! WebSockets on an HTTP/1.1 connection (browsers do so by themselves).

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The `Upgrade` value sent upstream and returned to the client.
const WEBSOCKET: HeaderValue = HeaderValue::from_static("websocket");
/// The `Connection` value of both legs of an upgrade.
const UPGRADE: HeaderValue = HeaderValue::from_static("upgrade");

/// The client side of a WebSocket request, taken before the request is forwarded.
pub(super) struct ClientUpgrade(OnUpgrade);

impl ClientUpgrade {
    /// `Some` when `req` is an HTTP/1.1 `GET` asking for a WebSocket.
    pub(super) fn take<B>(req: &mut Request<B>) -> Option<ClientUpgrade> {
        let wants = req.method() == http::Method::GET
            && req.version() == http::Version::HTTP_11
            && super::headers::asks_for_websocket(req.headers());
        wants.then(|| ClientUpgrade(hyper::upgrade::on(req)))
    }

    /// Puts back the two headers of the upgrade after the hop-by-hop headers were removed.
    pub(super) fn request_headers(headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, UPGRADE);
        headers.insert(header::UPGRADE, WEBSOCKET);
    }

    /// With the upstream's answer (its hop-by-hop headers already removed): on `101`, the
    /// answer gets its upgrade headers back and a task joins the two connections once
    /// both have switched; any other answer is passed on as is and nothing is joined.
    pub(super) fn finish<B>(self, upstream: &mut Response<B>) {
        if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        let upstream_side = hyper::upgrade::on(&mut *upstream);
        let headers = upstream.headers_mut();
        headers.insert(header::CONNECTION, UPGRADE);
        headers.insert(header::UPGRADE, WEBSOCKET);
        let client_side = self.0;
        tokio::spawn(async move {
            let (client, upstream) = match tokio::join!(client_side, upstream_side) {
                (Ok(c), Ok(u)) => (c, u),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %e, "websocket upgrade did not complete");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((up, down)) => {
                    tracing::debug!(to_upstream = up, to_client = down, "websocket closed")
                }
                Err(e) => tracing::debug!(error = %e, "websocket ended with an error"),
            }
        });
    }
}
