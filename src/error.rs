//! The one error model of the gateway (pingora's): every refusal or failure that any
//! listener answers with is a [`GatewayError`]. Each knows where it came from
//! ([`Origin`]: the client → 4xx, the upstream → 502/504, the gateway itself → 503), its
//! status, its stable `error` code and its `error_description`; [`GatewayError::response`]
//! is the only place that turns one into an HTTP answer, for every listener ([`Surface`]).
//! No other module builds a 4xx or 5xx answer.
//!
//! Bodies are `{"error": code, "error_description": text}` (RFC 6750 §3 for the proxy),
//! with `Cache-Control: no-store`. On the proxy listener the token refusals also carry the
//! RFC 6750 `WWW-Authenticate` challenge.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::store::{Kind, StoreError};

/// Body type of every answer on the proxy listener: either a small buffered JSON body or
/// the upstream's streamed body.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Boxed error for streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where an error came from; decides its class of status (pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client sent something refused: 4xx.
    Client,
    /// The upstream failed: 502 / 504.
    Upstream,
    /// The gateway itself cannot serve (its store): 503.
    Gateway,
}

/// Which listener answers: decides the headers around the same body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// A proxied route: token refusals carry the RFC 6750 `WWW-Authenticate` challenge.
    Proxy,
    /// The public endpoints of the proxy listener (back-channel logout, `/revoke`).
    Endpoint,
    /// The admin API.
    Admin,
}

/// A refusal or failure, on any listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// No `Authorization` header, or a scheme other than Bearer (RFC 6750 §3.1: no error code).
    NoCredentials,
    /// The admin API's `admin_token` is set and the request lacks it.
    AdminTokenRequired,
    /// Malformed credentials or request (`invalid_request`); the text names the problem
    /// (the field, for admin bodies).
    InvalidRequest(String),
    /// A token that failed a check (`invalid_token`); the text is the `error_description`.
    InvalidToken(String),
    /// A valid token that a revocation of this kind matches (`invalid_token`, "revoked").
    Revoked(Kind),
    /// Token lacks a required scope.
    InsufficientScope(String),
    /// The admin API refuses requests from web pages (they carry `Origin`).
    CrossOrigin,
    /// Nothing here: no route for the path, no such admin route, no such record.
    NotFound(String),
    /// A method the path does not serve; the answer's `Allow` lists the ones it does.
    MethodNotAllowed(String),
    /// A public endpoint's body did not arrive within
    /// [`crate::endpoints::PUBLIC_BODY_TIMEOUT`] of the headers (the connection is closed).
    BodyTimeout,
    /// A body without the length the route needs.
    LengthRequired,
    /// Request header block over `server.max_header_bytes`.
    HeadersTooLarge,
    /// Request body over the limit named (`server.max_body_bytes`, the admin API's).
    BodyTooLarge(&'static str),
    /// The body's `Content-Type` is not the one named.
    UnsupportedMediaType(&'static str),
    /// The admin API's `Host` is not one it answers to (DNS rebinding).
    Misdirected,
    /// Upstream refused / reset / unreachable.
    UpstreamUnreachable,
    /// Upstream did not answer within the route's timeout.
    UpstreamTimeout,
    /// The revocation store cannot be read or written: fail closed.
    StoreUnavailable,
}

/// The limit [`GatewayError::BodyTooLarge`] names on the proxy listener.
pub const MAX_BODY_LIMIT: &str = "server.max_body_bytes";

impl GatewayError {
    /// Where it came from.
    pub fn origin(&self) -> Origin {
        match self {
            GatewayError::UpstreamUnreachable | GatewayError::UpstreamTimeout => Origin::Upstream,
            GatewayError::StoreUnavailable => Origin::Gateway,
            _ => Origin::Client,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoCredentials
            | GatewayError::AdminTokenRequired
            | GatewayError::InvalidToken(_)
            | GatewayError::Revoked(_) => StatusCode::UNAUTHORIZED,
            GatewayError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::InsufficientScope(_) | GatewayError::CrossOrigin => StatusCode::FORBIDDEN,
            GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            GatewayError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable error code and short description for the JSON body.
    pub fn code_and_description(&self) -> (&'static str, String) {
        match self {
            GatewayError::NoCredentials => ("unauthorized", "missing bearer token".to_string()),
            GatewayError::AdminTokenRequired => {
                ("unauthorized", "admin token required".to_string())
            }
            GatewayError::InvalidRequest(d) => ("invalid_request", d.clone()),
            GatewayError::InvalidToken(d) => ("invalid_token", d.clone()),
            GatewayError::Revoked(kind) => ("invalid_token", format!("token revoked ({kind})")),
            GatewayError::InsufficientScope(d) => ("insufficient_scope", d.clone()),
            GatewayError::CrossOrigin => (
                "forbidden",
                "requests with an Origin header (from web pages) are refused".to_string(),
            ),
            GatewayError::NotFound(d) => ("not_found", d.clone()),
            GatewayError::MethodNotAllowed(_) => (
                "method_not_allowed",
                "method not allowed on this route".to_string(),
            ),
            GatewayError::BodyTimeout => (
                "request_timeout",
                format!(
                    "request body not received within {} s of the headers",
                    crate::endpoints::PUBLIC_BODY_TIMEOUT.as_secs()
                ),
            ),
            GatewayError::LengthRequired => {
                ("invalid_request", "Content-Length required".to_string())
            }
            GatewayError::HeadersTooLarge => (
                "request_header_fields_too_large",
                "request header block exceeds server.max_header_bytes".to_string(),
            ),
            GatewayError::BodyTooLarge(limit) => {
                ("payload_too_large", format!("request body exceeds {limit}"))
            }
            GatewayError::UnsupportedMediaType(required) => (
                "unsupported_media_type",
                format!("Content-Type must be {required}"),
            ),
            GatewayError::Misdirected => (
                "misdirected_request",
                "Host is not a loopback address, localhost, server.admin_listen or one of \
                 server.admin_hosts"
                    .to_string(),
            ),
            GatewayError::UpstreamUnreachable => {
                ("bad_gateway", "upstream unreachable".to_string())
            }
            GatewayError::UpstreamTimeout => ("gateway_timeout", "upstream timed out".to_string()),
            GatewayError::StoreUnavailable => (
                "temporarily_unavailable",
                "revocation store unavailable".to_string(),
            ),
        }
    }

    /// `400 invalid_request` with a description naming the problem (the field).
    pub fn invalid(description: impl Into<String>) -> GatewayError {
        GatewayError::InvalidRequest(description.into())
    }

    /// `404 not_found` with a description of what is not there.
    pub fn not_found(description: impl Into<String>) -> GatewayError {
        GatewayError::NotFound(description.into())
    }

    /// A store failure as answered: a caller error the store detected (a cursor that does
    /// not decode) is the client's `400`; anything else is logged and fails closed (`503`).
    pub fn from_store(e: StoreError) -> GatewayError {
        match e {
            StoreError::Invalid(d) => GatewayError::InvalidRequest(d),
            other => {
                tracing::error!(error = %other, "store operation failed");
                GatewayError::StoreUnavailable
            }
        }
    }

    /// The RFC 6750 `WWW-Authenticate` challenge of a proxied route's answer, if any.
    fn challenge(&self, description: &str) -> Option<String> {
        let error = match self {
            GatewayError::NoCredentials => return Some("Bearer realm=\"revgate\"".to_string()),
            GatewayError::InvalidRequest(_) => "invalid_request",
            GatewayError::InvalidToken(_) | GatewayError::Revoked(_) => "invalid_token",
            GatewayError::InsufficientScope(_) => "insufficient_scope",
            _ => return None,
        };
        Some(format!(
            "Bearer realm=\"revgate\", error=\"{error}\", error_description=\"{}\"",
            quoted_string_safe(description)
        ))
    }

    /// The whole answer on `surface`: status, JSON body, and the headers this kind needs
    /// there (`WWW-Authenticate` on proxied routes, `Allow` with a 405, `Connection: close`
    /// after a body timeout).
    pub fn response<B: From<Bytes>>(&self, surface: Surface) -> Response<B> {
        let (code, description) = self.code_and_description();
        let mut resp = json_response(
            self.status(),
            &serde_json::json!({"error": code, "error_description": description}),
        );
        let headers = resp.headers_mut();
        if surface == Surface::Proxy {
            if let Some(v) = self
                .challenge(&description)
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                headers.insert(WWW_AUTHENTICATE, v);
            }
        }
        match self {
            GatewayError::MethodNotAllowed(allow) if !allow.is_empty() => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    headers.insert(ALLOW, v);
                }
            }
            // The client is too slow to keep: drop the connection with the answer.
            GatewayError::BodyTimeout => {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }

    /// [`response`](Self::response) with a [`ProxyBody`] (the proxy listener).
    pub fn into_response(self, surface: Surface) -> Response<ProxyBody> {
        self.response::<Bytes>(surface).map(full_body)
    }
}

/// Admin routes reject with the error itself; the one `recover` answers it.
impl warp::reject::Reject for GatewayError {}

/// A buffered JSON answer with `Cache-Control: no-store`.
pub fn json_response<B: From<Bytes>>(status: StatusCode, body: &serde_json::Value) -> Response<B> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut resp = Response::new(B::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A successful answer without a body (the public endpoints' `200`).
pub fn empty_response(status: StatusCode) -> Response<ProxyBody> {
    debug_assert!(
        status.is_success(),
        "errors are built by GatewayError::response"
    );
    let mut r = Response::new(full_body(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// A buffered body as a [`ProxyBody`].
pub fn full_body(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Keeps a text safe inside an RFC 7230 quoted-string and a header value (RFC 6750 §3
/// limits error_description to %x20-21 / %x23-5B / %x5D-7E): other characters become `?`.
pub fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_proxy(e: GatewayError) -> Response<Bytes> {
        e.response(Surface::Proxy)
    }

    #[test]
    fn invalid_token_has_challenge_and_json() {
        let resp = on_proxy(GatewayError::InvalidToken("token expired".into()));
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"revgate\", error=\"invalid_token\", error_description=\"token expired\""
        );
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn revoked_is_an_invalid_token_naming_the_kind() {
        let err = GatewayError::Revoked(crate::store::Kind::Sid);
        assert_eq!(err.status(), 401);
        let resp = on_proxy(err);
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"revgate\", error=\"invalid_token\", error_description=\"token revoked (sid)\""
        );
    }

    #[test]
    fn no_credentials_has_bare_challenge() {
        let resp = on_proxy(GatewayError::NoCredentials);
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer realm=\"revgate\"");
    }

    #[test]
    fn only_the_proxy_surface_carries_challenges() {
        for surface in [Surface::Endpoint, Surface::Admin] {
            let resp: Response<Bytes> =
                GatewayError::InvalidRequest("missing token parameter".into()).response(surface);
            assert_eq!(resp.status(), 400);
            assert!(!resp.headers().contains_key(WWW_AUTHENTICATE));
        }
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let resp: Response<Bytes> =
            GatewayError::MethodNotAllowed("GET, DELETE".into()).response(Surface::Admin);
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[ALLOW], "GET, DELETE");
    }

    #[test]
    fn every_kind_has_the_status_class_of_its_origin() {
        let all = [
            GatewayError::NoCredentials,
            GatewayError::AdminTokenRequired,
            GatewayError::InvalidRequest(String::new()),
            GatewayError::InvalidToken(String::new()),
            GatewayError::Revoked(Kind::Jti),
            GatewayError::InsufficientScope(String::new()),
            GatewayError::CrossOrigin,
            GatewayError::NotFound(String::new()),
            GatewayError::MethodNotAllowed(String::new()),
            GatewayError::BodyTimeout,
            GatewayError::LengthRequired,
            GatewayError::HeadersTooLarge,
            GatewayError::BodyTooLarge(MAX_BODY_LIMIT),
            GatewayError::UnsupportedMediaType("application/json"),
            GatewayError::Misdirected,
            GatewayError::UpstreamUnreachable,
            GatewayError::UpstreamTimeout,
            GatewayError::StoreUnavailable,
        ];
        for e in all {
            let status = e.status().as_u16();
            match e.origin() {
                Origin::Client => assert!((400..500).contains(&status), "{e:?}"),
                Origin::Upstream => assert!(status == 502 || status == 504, "{e:?}"),
                Origin::Gateway => assert_eq!(status, 503, "{e:?}"),
            }
        }
    }

    #[test]
    fn descriptions_are_sanitised() {
        assert_eq!(quoted_string_safe("a\"b\\c\u{e9}\n"), "a'b'c??");
    }
}
