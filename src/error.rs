//! Where an error came from decides its status (pingora's model): the client (4xx), the
//! upstream (502/504) or the gateway itself (503/500). This is the one place that turns
//! an error into an HTTP answer on the proxy listener; the admin API maps its own errors
//! in `admin.rs` with the same JSON shape.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// Body type of every answer on the proxy listener: either a small buffered JSON body or
/// the upstream's streamed body.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Boxed error for streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A refusal or failure on the proxy listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// No `Authorization` header, or a scheme other than Bearer (RFC 6750 §3.1: no error code).
    NoCredentials,
    /// Malformed credentials or request (`invalid_request`).
    InvalidRequest(String),
    /// A token that failed a check (`invalid_token`); the text is the `error_description`.
    InvalidToken(String),
    /// A valid token that a revocation of this kind matches (`invalid_token`, "revoked").
    Revoked(crate::store::Kind),
    /// Token lacks a required scope.
    InsufficientScope(String),
    /// No route matches the path.
    NoRoute,
    /// Request header block over `server.max_header_bytes`.
    HeadersTooLarge,
    /// Request body over `server.max_body_bytes`.
    BodyTooLarge,
    /// A public endpoint's body did not arrive within
    /// [`crate::public::PUBLIC_BODY_TIMEOUT`] of the headers (the connection is closed).
    BodyTimeout,
    /// Method not allowed on a gateway endpoint.
    MethodNotAllowed,
    /// Upstream refused / reset / unreachable.
    UpstreamUnreachable,
    /// Upstream did not answer within the route's timeout.
    UpstreamTimeout,
    /// The revocation store cannot be read or written: fail closed.
    StoreUnavailable,
}

impl GatewayError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoCredentials
            | GatewayError::InvalidToken(_)
            | GatewayError::Revoked(_) => StatusCode::UNAUTHORIZED,
            GatewayError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable error code and short description for the JSON body.
    pub fn code_and_description(&self) -> (&'static str, String) {
        match self {
            GatewayError::NoCredentials => ("unauthorized", "missing bearer token".to_string()),
            GatewayError::InvalidRequest(d) => ("invalid_request", d.clone()),
            GatewayError::InvalidToken(d) => ("invalid_token", d.clone()),
            GatewayError::Revoked(kind) => ("invalid_token", format!("token revoked ({kind})")),
            GatewayError::InsufficientScope(d) => ("insufficient_scope", d.clone()),
            GatewayError::NoRoute => ("not_found", "no route for this path".to_string()),
            GatewayError::HeadersTooLarge => (
                "request_header_fields_too_large",
                "request header block exceeds server.max_header_bytes".to_string(),
            ),
            GatewayError::BodyTooLarge => (
                "payload_too_large",
                "request body exceeds server.max_body_bytes".to_string(),
            ),
            GatewayError::BodyTimeout => (
                "request_timeout",
                format!(
                    "request body not received within {} s of the headers",
                    crate::public::PUBLIC_BODY_TIMEOUT.as_secs()
                ),
            ),
            GatewayError::MethodNotAllowed => {
                ("method_not_allowed", "method not allowed".to_string())
            }
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

    /// The full answer: status, `WWW-Authenticate` where RFC 6750 asks for it, JSON body.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let (code, description) = self.code_and_description();
        let challenge = match &self {
            GatewayError::NoCredentials => Some("Bearer realm=\"revgate\"".to_string()),
            GatewayError::InvalidRequest(d) => Some(format!(
                "Bearer realm=\"revgate\", error=\"invalid_request\", error_description=\"{}\"",
                quoted_string_safe(d)
            )),
            GatewayError::InvalidToken(_) | GatewayError::Revoked(_) => Some(format!(
                "Bearer realm=\"revgate\", error=\"invalid_token\", error_description=\"{}\"",
                quoted_string_safe(&description)
            )),
            GatewayError::InsufficientScope(d) => Some(format!(
                "Bearer realm=\"revgate\", error=\"insufficient_scope\", error_description=\"{}\"",
                quoted_string_safe(d)
            )),
            _ => None,
        };
        let mut resp = json_response(
            status,
            &serde_json::json!({"error": code, "error_description": description}),
        );
        if let Some(c) = challenge {
            if let Ok(v) = HeaderValue::from_str(&c) {
                resp.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
        }
        if self == GatewayError::BodyTimeout {
            // The rest of the body may still trickle in: do not wait for it.
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// A buffered JSON answer.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut resp = Response::new(full_body(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
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

    #[test]
    fn invalid_token_has_challenge_and_json() {
        let resp = GatewayError::InvalidToken("token expired".into()).into_response();
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"revgate\", error=\"invalid_token\", error_description=\"token expired\""
        );
    }

    #[test]
    fn revoked_is_an_invalid_token_naming_the_kind() {
        let err = GatewayError::Revoked(crate::store::Kind::Sid);
        assert_eq!(err.status(), 401);
        let resp = err.into_response();
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"revgate\", error=\"invalid_token\", error_description=\"token revoked (sid)\""
        );
    }

    #[test]
    fn no_credentials_has_bare_challenge() {
        let resp = GatewayError::NoCredentials.into_response();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer realm=\"revgate\"");
    }

    #[test]
    fn descriptions_are_sanitised() {
        assert_eq!(quoted_string_safe("a\"b\\c\u{e9}\n"), "a'b'c??");
    }
}
