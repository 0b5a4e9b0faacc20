//! The JWS steps that access tokens ([`super::verify`]) and logout tokens
//! ([`super::logout`]) share (RFC 7515 compact serialization, RFC 8725 §3.1):
//!
//! 1. [`Compact::decode`]: at most [`MAX_TOKEN_BYTES`], three base64url parts without
//!    padding, header and payload decoded (each caller then parses them as strict JSON with
//!    its own claim rules);
//! 2. [`verify_signature`]: `alg` is not `none` and is in the caller's allow-list (compared
//!    case-sensitively), the key is the issuer's key for (`kid`, `alg`) from the
//!    [`Keyring`] (never one named by the token: `jku`, `x5u`, `jwk` are ignored), and the
//!    signature over the signing input verifies.
//!
//! Errors say which step failed ([`JwsError`]); each caller words them for its endpoint.

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;

use crate::auth::Keyring;
use crate::metrics::Metrics;

/// Longest accepted compact token, in bytes. Real access tokens are 1–2 KiB; the cap bounds
/// the work an unauthenticated request can cause (decoding, parsing, hashing).
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Why a JWS was refused before any claim was looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JwsError {
    /// Not a compact JWS (size, parts, characters, base64url); the text says which.
    Malformed(&'static str),
    /// The `alg` is refused.
    Algorithm(AlgorithmProblem),
    /// No usable key, or the signature does not verify; the text says which.
    Signature(String),
}

/// What is wrong with a token's `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AlgorithmProblem {
    /// `none` (in any case): unsigned tokens are never accepted.
    Unsigned,
    /// Not in the allow-list the caller gave.
    NotAllowed,
    /// Allowed by name but not an algorithm this gateway implements.
    Unsupported,
}

/// A compact JWS split into its parts, header and payload base64url-decoded; nothing in it
/// is verified yet.
#[derive(Debug)]
pub(crate) struct Compact<'t> {
    /// The decoded JOSE header (JSON text, unparsed).
    pub header_json: Vec<u8>,
    /// The decoded payload (JSON text, unparsed).
    pub payload_json: Vec<u8>,
    /// `header.payload` as sent: what the signature covers.
    signing_input: &'t [u8],
    /// The signature part, still base64url.
    signature_b64: &'t str,
}

impl<'t> Compact<'t> {
    /// Step 1: size, three base64url parts, header and payload decoded.
    pub fn decode(token: &'t str) -> Result<Compact<'t>, JwsError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwsError::Malformed("token too large"));
        }
        let (header_b64, payload_b64, signature_b64) = split(token)?;
        Ok(Compact {
            header_json: decode_part(header_b64, "header is not valid base64url")?,
            payload_json: decode_part(payload_b64, "claims is not valid base64url")?,
            signing_input: &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()],
            signature_b64,
        })
    }

    /// `header.payload` as sent, the JWS signing input (RFC 7515 §5.2).
    pub fn signing_input(&self) -> &'t [u8] {
        self.signing_input
    }
}

/// The three parts of a compact JWS; each may only hold base64url characters.
fn split(token: &str) -> Result<(&str, &str, &str), JwsError> {
    if let Some(bad) = token.bytes().find(|b| !is_base64url_or_dot(*b)) {
        return Err(JwsError::Malformed(if bad == b'=' {
            "base64 padding is not allowed"
        } else {
            "not a compact JWS (characters outside base64url)"
        }));
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(JwsError::Malformed(
            "not a compact JWS (need exactly three parts)",
        )),
    }
}

fn is_base64url_or_dot(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

fn decode_part(part: &str, error: &'static str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwsError::Malformed(error))
}

/// Step 2: `alg_name` allowed by `allowed` (never `none`), the key of `issuer` for (`kid`,
/// `alg`), and the signature of `jws` checked with it. `metrics` counts the JWKS fetch an
/// unknown `kid` may trigger.
pub(crate) async fn verify_signature(
    keys: &Keyring,
    metrics: &Metrics,
    issuer: &str,
    allowed: &[String],
    alg_name: &str,
    kid: Option<&str>,
    jws: &Compact<'_>,
) -> Result<(), JwsError> {
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(JwsError::Algorithm(AlgorithmProblem::Unsigned));
    }
    if !allowed.iter().any(|a| a == alg_name) {
        return Err(JwsError::Algorithm(AlgorithmProblem::NotAllowed));
    }
    let alg = Algorithm::from_str(alg_name)
        .map_err(|_| JwsError::Algorithm(AlgorithmProblem::Unsupported))?;
    // HS* get only the issuer's HMAC secret, all else only JWKS keys.
    let key = keys
        .key_for(issuer, kid, alg, metrics)
        .await
        .map_err(|e| JwsError::Signature(e.detail()))?;
    if key.decoding_key().family() != alg.family() {
        return Err(JwsError::Signature(
            "key does not match the algorithm".into(),
        ));
    }
    match jsonwebtoken::crypto::verify(
        jws.signature_b64,
        jws.signing_input,
        key.decoding_key(),
        alg,
    ) {
        Ok(true) => Ok(()),
        _ => Err(JwsError::Signature("verification failed".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_parts_are_checked_before_decoding() {
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            Compact::decode(&big).unwrap_err(),
            JwsError::Malformed("token too large")
        );
        assert_eq!(
            Compact::decode("e30.e30.x=").unwrap_err(),
            JwsError::Malformed("base64 padding is not allowed")
        );
        assert_eq!(
            Compact::decode("e30.e30").unwrap_err(),
            JwsError::Malformed("not a compact JWS (need exactly three parts)")
        );
        assert_eq!(
            Compact::decode("e30.e30.a.b").unwrap_err(),
            JwsError::Malformed("not a compact JWS (need exactly three parts)")
        );
        assert_eq!(
            Compact::decode("e3 0.e30.x").unwrap_err(),
            JwsError::Malformed("not a compact JWS (characters outside base64url)")
        );
        // "e" alone is not a whole base64url quantum.
        assert_eq!(
            Compact::decode("e.e30.x").unwrap_err(),
            JwsError::Malformed("header is not valid base64url")
        );
        let jws = Compact::decode("e30.eyJhIjoxfQ.c2ln").unwrap();
        assert_eq!(jws.header_json, b"{}");
        assert_eq!(jws.payload_json, br#"{"a":1}"#);
        assert_eq!(jws.signing_input(), b"e30.eyJhIjoxfQ");
    }
}
