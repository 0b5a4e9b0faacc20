//! Sending an accepted request to its route's upstream and streaming the answer back:
//! the pooled upstream clients ([`Upstreams`]), the upstream URL, the header rules of
//! [`super::headers`] by how the request was admitted, timeouts (504), unreachable
//! upstreams (502) and bodies over `server.max_body_bytes` (413).

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::access::Trace;
use super::headers::*;
use super::upgrade::ClientUpgrade;
use crate::auth::VerifiedToken;
use crate::config::{Config, RouteConfig};
use crate::error::{GatewayError, ProxyBody};

/// Bound for connecting to an upstream (the route's `timeout` bounds the whole answer).
pub const UPSTREAM_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long an idle pooled upstream connection is kept.
const UPSTREAM_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// The pooled upstream clients, owned by the proxy: hyper's HTTP/1.1 client for `http://`
/// upstreams (the hot path: no URL crate parsing, no header re-copying) and reqwest
/// (rustls, the platform's roots) for `https://` ones.
#[derive(Clone)]
pub struct Upstreams {
    plain: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        ProxyBody,
    >,
    tls: reqwest::Client,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    /// Both clients, with the static settings above.
    pub fn new() -> Upstreams {
        let tls = reqwest::Client::builder()
            .pool_idle_timeout(UPSTREAM_IDLE_TIMEOUT)
            .connect_timeout(UPSTREAM_CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .http1_only()
            .build()
            .expect("HTTP client with static settings");
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
        let plain =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(UPSTREAM_IDLE_TIMEOUT)
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(connector);
        Upstreams { plain, tls }
    }
}

/// The upstream URL for `path_and_query` on `route`.
fn upstream_url(route: &RouteConfig, uri: &http::Uri) -> String {
    let mut path = uri.path();
    if route.strip_prefix && route.prefix != "/" {
        path = &path[route.prefix.len().min(path.len())..];
    }
    let base = route.upstream.trim_end_matches('/');
    let mut url = String::with_capacity(base.len() + path.len() + 64);
    url.push_str(base);
    if !path.starts_with('/') {
        url.push('/');
    }
    url.push_str(path);
    if let Some(q) = uri.query() {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Why a request is forwarded: decides what the gateway adds and removes.
#[derive(Clone, Copy)]
pub(super) enum Admission<'a> {
    /// A `public = true` route: no token, no identity headers.
    Public,
    /// A CORS preflight let through without a token (`auth.forward_cors_preflight`): it
    /// carries nothing an upstream could act on — no body, no `Content-Length`, no
    /// method-override headers, no credentials (a browser's preflight has none of them).
    Preflight,
    /// A verified token: identity headers from it (`auth.identity_headers`).
    Token(&'a VerifiedToken),
}

/// The connection-level facts of one request on the proxy listener.
pub(super) struct Exchange<'a> {
    /// The peer of the connection.
    pub remote: SocketAddr,
    /// The peer's `X-Forwarded-For` entry (written once per connection).
    pub forwarded_for: &'a HeaderValue,
    /// `X-Request-Id` (the client's or a new one).
    pub request_id: &'a HeaderValue,
    /// Whether the listener speaks TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
}

/// Sends the request upstream and streams the answer back; a WebSocket request that the
/// upstream accepts is joined to it ([`ClientUpgrade`]). The upstream's time to answer
/// goes into `trace`.
pub(super) async fn forward(
    upstreams: &Upstreams,
    config: &Config,
    route: &RouteConfig,
    mut req: Request<Incoming>,
    exchange: &Exchange<'_>,
    admission: Admission<'_>,
    trace: &mut Trace,
) -> Result<Response<ProxyBody>, GatewayError> {
    let remote = exchange.remote;
    let websocket = match admission {
        Admission::Preflight => None,
        Admission::Public | Admission::Token(_) => ClientUpgrade::take(&mut req),
    };
    let (parts, body) = req.into_parts();
    let url = upstream_url(route, &parts.uri);
    let mut headers = parts.headers;
    let host = request_host(&parts.uri, &headers);
    let preflight = matches!(admission, Admission::Preflight);
    strip_hop_by_hop(&mut headers);
    remove_present(
        &mut headers,
        &[header::HOST, X_AUTH_ISS, X_AUTH_SUB, X_AUTH_SID, X_AUTH_JTI],
    );
    remove_underscore_spellings(&mut headers, preflight);
    if preflight {
        remove_present(&mut headers, &METHOD_OVERRIDE);
        remove_present(&mut headers, &PREFLIGHT_NEVER);
    }
    let trusted = config
        .server
        .trusted_proxies
        .iter()
        .any(|net| net.contains(remote.ip()));
    let scheme = listener_scheme(exchange.tls);
    set_forwarding_headers(&mut headers, trusted, exchange.forwarded_for, scheme, host);
    if websocket.is_some() {
        ClientUpgrade::request_headers(&mut headers);
    }
    headers.insert(X_REQUEST_ID, exchange.request_id.clone());
    if let (Admission::Token(t), true) = (admission, config.auth.identity_headers) {
        let id = &t.identity;
        set_identity(&mut headers, &X_AUTH_ISS, id.iss.as_ref());
        set_identity(&mut headers, &X_AUTH_SUB, id.sub.as_ref());
        set_identity(&mut headers, &X_AUTH_SID, id.sid.as_ref());
        set_identity(&mut headers, &X_AUTH_JTI, id.jti.as_ref());
    }

    let body = if preflight {
        // The client's body is dropped unread (hyper then closes or drains the connection).
        drop(body);
        crate::error::full_body(Bytes::new())
    } else {
        http_body_util::Limited::new(body, config.server.max_body_bytes as usize).boxed()
    };
    let sent = std::time::Instant::now();
    let answer = upstreams
        .send(route, parts.method, url, headers, body)
        .await;
    trace.upstream = Some(sent.elapsed());
    let mut answer = answer?;
    strip_hop_by_hop(answer.headers_mut());
    if let Some(websocket) = websocket {
        websocket.finish(&mut answer);
    }
    Ok(answer)
}

impl Upstreams {
    /// Sends the request to `url`: `http://` through hyper's pooled client, `https://`
    /// through reqwest.
    async fn send(
        &self,
        route: &RouteConfig,
        method: http::Method,
        url: String,
        headers: HeaderMap,
        body: ProxyBody,
    ) -> Result<Response<ProxyBody>, GatewayError> {
        if url.starts_with("http://") {
            // From the `String` itself: no copy.
            let uri = http::Uri::try_from(url).map_err(|_| {
                tracing::warn!(upstream = %route.upstream, "upstream URL does not parse");
                GatewayError::UpstreamUnreachable
            })?;
            let mut request = Request::new(body);
            *request.method_mut() = method;
            *request.uri_mut() = uri;
            *request.headers_mut() = headers;
            return answered(route, self.plain.request(request), |_| false).await;
        }
        let request = self
            .tls
            .request(method, url)
            .headers(headers)
            .body(reqwest::Body::wrap(body))
            .build()
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot build upstream request");
                GatewayError::UpstreamUnreachable
            })?;
        let sent = async { self.tls.execute(request).await.map(Response::from) };
        answered(route, sent, reqwest::Error::is_timeout).await
    }
}

/// The upstream's answer within the route's `timeout`, its body boxed; otherwise what went
/// wrong: 504 on the timeout (or an error `timed_out` says is one), 413 when the request body
/// went over the limit while it was sent, else 502 (logged with the upstream).
async fn answered<B, E>(
    route: &RouteConfig,
    sent: impl std::future::Future<Output = Result<Response<B>, E>>,
    timed_out: impl Fn(&E) -> bool,
) -> Result<Response<ProxyBody>, GatewayError>
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
    E: std::error::Error + 'static,
{
    match tokio::time::timeout(route.timeout, sent).await {
        Err(_) => Err(GatewayError::UpstreamTimeout),
        Ok(Err(e)) if is_length_limit(&e) => {
            Err(GatewayError::BodyTooLarge(crate::error::MAX_BODY_LIMIT))
        }
        Ok(Err(e)) if timed_out(&e) => Err(GatewayError::UpstreamTimeout),
        Ok(Err(e)) => {
            tracing::warn!(upstream = %route.upstream, error = %e, "upstream request failed");
            Err(GatewayError::UpstreamUnreachable)
        }
        Ok(Ok(answer)) => {
            Ok(answer.map(|b| b.map_err(|e| Box::new(e) as crate::error::BoxError).boxed()))
        }
    }
}

/// Whether an upstream failure was caused by the request body exceeding the limit.
fn is_length_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::route::tests::route;
    use super::*;

    #[test]
    fn upstream_url_joins_paths() {
        let uri: http::Uri = "/api/x?q=1".parse().unwrap();
        assert_eq!(
            upstream_url(&route("/api", "http://u:1", false), &uri),
            "http://u:1/api/x?q=1"
        );
        assert_eq!(
            upstream_url(&route("/api", "http://u:1/base", false), &uri),
            "http://u:1/base/api/x?q=1"
        );
        assert_eq!(
            upstream_url(&route("/api", "http://u:1/base/", true), &uri),
            "http://u:1/base/x?q=1"
        );
        let exact: http::Uri = "/api".parse().unwrap();
        assert_eq!(
            upstream_url(&route("/api", "http://u:1", true), &exact),
            "http://u:1/"
        );
    }
}
