//! The bearer token of a request (RFC 6750 §2.1) and, for the log line of a refused token,
//! its unverified `kid` and `jti` (never the token itself).

use http::header::{self, HeaderMap};

use crate::error::GatewayError;

/// The bearer token of the request, or the RFC 6750 refusal.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, GatewayError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(GatewayError::NoCredentials)?;
    if values.next().is_some() {
        return Err(GatewayError::InvalidRequest(
            "more than one Authorization header".to_string(),
        ));
    }
    // The usual form, `Bearer <b64token>` with one space and nothing around the token,
    // checked in one pass over the bytes; anything else takes the general path below,
    // which gives the same answer for this form.
    let bytes = value.as_bytes();
    if bytes.len() > BEARER_PREFIX.len()
        && bytes[..BEARER_PREFIX.len()].eq_ignore_ascii_case(BEARER_PREFIX)
    {
        let token = &bytes[BEARER_PREFIX.len()..];
        if is_b64token(token) {
            if let Ok(token) = std::str::from_utf8(token) {
                return Ok(token);
            }
        }
    }
    let value = value.to_str().map_err(|_| {
        GatewayError::InvalidRequest("Authorization header is not ASCII".to_string())
    })?;
    let (scheme, rest) = match value.split_once(' ') {
        Some((s, r)) => (s, r),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(GatewayError::NoCredentials);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err(GatewayError::InvalidRequest(
            "empty bearer token".to_string(),
        ));
    }
    if !is_b64token(token.as_bytes()) {
        return Err(GatewayError::InvalidRequest(
            "bearer token has characters outside b64token".to_string(),
        ));
    }
    Ok(token)
}

/// `Bearer ` as the fast path of [`bearer_token`] expects it (compared ignoring case).
const BEARER_PREFIX: &[u8] = b"bearer ";

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..body_len];
    // Branch-free over 16-byte chunks (a token is hundreds of bytes): AND of table entries.
    let mut chunks = body.chunks_exact(16);
    let mut ok = true;
    for chunk in &mut chunks {
        ok &= chunk
            .iter()
            .fold(true, |acc, &b| acc & B64TOKEN[b as usize]);
    }
    ok &= chunks.remainder().iter().all(|&b| B64TOKEN[b as usize]);
    !body.is_empty() && ok
}

/// The characters of a `b64token` before its `=` padding, by byte value.
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// Longest `kid` / `jti` copied from a refused token into its log line.
const MAX_LOGGED_ID_LEN: usize = 128;

/// `kid` (header) and `jti` (claims) of a token that failed verification, for its log line
/// only: unverified, so cut to [`MAX_LOGGED_ID_LEN`] printable ASCII characters (no log
/// injection); `None` when absent or unreadable. Runs on the refusal path only.
pub fn unverified_ids(token: &str) -> (Option<String>, Option<String>) {
    let mut parts = token.split('.');
    let header = parts.next();
    let claims = parts.next();
    (
        unverified_member(header, "kid"),
        unverified_member(claims, "jti"),
    )
}

/// The string member `name` of the base64url JSON object `part`, sanitised for a log line.
fn unverified_member(part: Option<&str>, name: &str) -> Option<String> {
    use base64::Engine as _;
    let part = part.filter(|p| p.len() <= crate::auth::MAX_TOKEN_BYTES)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let id: String = value
        .get(name)?
        .as_str()?
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_LOGGED_ID_LEN)
        .collect();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing_follows_rfc6750() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), Err(GatewayError::NoCredentials));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Err(GatewayError::NoCredentials));
        h.insert(header::AUTHORIZATION, "bEaReR abc.def.ghi".parse().unwrap());
        assert_eq!(bearer_token(&h), Ok("abc.def.ghi"));
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(matches!(
            bearer_token(&h),
            Err(GatewayError::InvalidRequest(_))
        ));
        h.insert(header::AUTHORIZATION, "Bearer a,b".parse().unwrap());
        assert!(matches!(
            bearer_token(&h),
            Err(GatewayError::InvalidRequest(_))
        ));
        for (value, token) in [
            ("Bearer a-b.c_d~e+f/g==", Some("a-b.c_d~e+f/g==")),
            ("BEARER  spaced ", Some("spaced")),
            ("bearer x", Some("x")),
            ("Bearer ==", None),
            ("Bearer a=b", None),
            ("Bearer a b", None),
            ("Bearer a\tb", None),
        ] {
            h.insert(header::AUTHORIZATION, value.parse().unwrap());
            match token {
                Some(t) => assert_eq!(bearer_token(&h), Ok(t), "{value:?}"),
                None => assert!(
                    matches!(bearer_token(&h), Err(GatewayError::InvalidRequest(_))),
                    "{value:?}"
                ),
            }
        }
        h.insert(
            header::AUTHORIZATION,
            http::HeaderValue::from_bytes(b"Bearer abc\xff").unwrap(),
        );
        assert_eq!(
            bearer_token(&h),
            Err(GatewayError::InvalidRequest(
                "Authorization header is not ASCII".to_string()
            ))
        );
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        h.append(header::AUTHORIZATION, "Bearer def".parse().unwrap());
        assert!(matches!(
            bearer_token(&h),
            Err(GatewayError::InvalidRequest(_))
        ));
    }

    #[test]
    fn refused_tokens_log_their_kid_and_jti_only() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256","kid":"k-1\nforged line"}"#),
            b64(r#"{"jti":"j-1","sub":"x"}"#)
        );
        assert_eq!(
            unverified_ids(&token),
            (Some("k-1forgedline".into()), Some("j-1".into()))
        );
        assert_eq!(unverified_ids("garbage"), (None, None));
        assert_eq!(
            unverified_ids(&format!("{}.%%%.x", b64(r#"{"alg":"none"}"#))),
            (None, None)
        );
    }
}
