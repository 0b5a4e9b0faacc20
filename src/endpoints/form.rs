//! The form body of a public endpoint: `POST` only, `application/x-www-form-urlencoded`,
//! at most [`MAX_FORM_BYTES`] (and `server.max_body_bytes`), arriving within
//! [`PUBLIC_BODY_TIMEOUT`] of the headers.

use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::config::Config;
use crate::error::{GatewayError, MAX_BODY_LIMIT};

/// Largest form body a logout or revocation request may have; a logout token is a few
/// KiB at most. Bodies above `server.max_body_bytes` still get 413; bodies between the two
/// limits are refused as the endpoint's own `invalid_request`.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// How long after its headers the whole body of a back-channel logout or revocation
/// request may take to arrive (SPEC §4); then `408`. Both bodies are a few KiB, sent at
/// once by an IdP or an app; only a slow-loris client needs longer.
pub const PUBLIC_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads an `application/x-www-form-urlencoded` POST body into pairs. `405` (with
/// `Allow: POST`), `408`, `413` or `400` naming the problem otherwise.
pub(super) async fn read_form(
    config: &Config,
    req: Request<Incoming>,
) -> Result<Vec<(String, String)>, GatewayError> {
    if req.method() != Method::POST {
        return Err(GatewayError::MethodNotAllowed("POST".to_string()));
    }
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(GatewayError::InvalidRequest(
            "Content-Type must be application/x-www-form-urlencoded".to_string(),
        ));
    }
    let global = config.server.max_body_bytes as usize;
    let limit = MAX_FORM_BYTES.min(global);
    let body = http_body_util::Limited::new(req.into_body(), limit).collect();
    let Ok(collected) = tokio::time::timeout(PUBLIC_BODY_TIMEOUT, body).await else {
        tracing::info!(timeout = ?PUBLIC_BODY_TIMEOUT, "request body too slow: 408");
        return Err(GatewayError::BodyTimeout);
    };
    let bytes: Bytes = match collected {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            if limit == global {
                return Err(GatewayError::BodyTooLarge(MAX_BODY_LIMIT));
            }
            return Err(GatewayError::InvalidRequest(format!(
                "request body larger than {limit} bytes"
            )));
        }
        Err(_) => {
            return Err(GatewayError::InvalidRequest(
                "request body could not be read".to_string(),
            ))
        }
    };
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .map_err(|_| GatewayError::InvalidRequest("malformed form body".to_string()))
}

/// The one value of `name`; missing, empty or repeated is an error.
pub(super) fn single_param<'a>(
    form: &'a [(String, String)],
    name: &str,
) -> Result<&'a str, GatewayError> {
    let mut values = form
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    match (values.next(), values.next()) {
        (Some(v), None) if !v.is_empty() => Ok(v),
        (Some(_), Some(_)) => Err(GatewayError::InvalidRequest(format!(
            "{name} given more than once"
        ))),
        _ => Err(GatewayError::InvalidRequest(format!(
            "missing {name} parameter"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_non_empty_value_per_parameter() {
        let form = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(single_param(&form(&[("t", "x")]), "t"), Ok("x"));
        for bad in [
            form(&[]),
            form(&[("t", "")]),
            form(&[("t", "a"), ("t", "b")]),
        ] {
            assert!(matches!(
                single_param(&bad, "t"),
                Err(GatewayError::InvalidRequest(_))
            ));
        }
    }
}
