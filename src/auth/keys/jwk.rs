//! Key material: JWK Set documents and HMAC secret files turned into [`VerifyingKey`]s,
//! each bound to one algorithm family (and curve, and JWK `alg` when it names one).

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use std::sync::Arc;

/// One signature-verification key of an issuer.
pub struct VerifyingKey {
    kid: Option<String>,
    family: AlgorithmFamily,
    /// Curve of EC / OKP keys.
    curve: Option<EllipticCurve>,
    /// The JWK's `alg`, when it names one (an unknown name never matches).
    alg: Option<KeyAlgorithm>,
    pub(super) key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never key material.
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("curve", &self.curve)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The JWK `kid`, if any (`None` for the HMAC secret).
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key, for `jsonwebtoken::crypto::verify`.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// Whether this key may verify `alg`: same family (RSA for RS*/PS*, EC P-256 for
    /// ES256, EC P-384 for ES384, OKP Ed25519 for EdDSA, the HMAC secret for HS*), and the
    /// JWK `alg`, when given, equal to `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        if alg.family() != self.family || self.key.family() != self.family {
            return false;
        }
        let curve_ok = match alg {
            Algorithm::ES256 => self.curve == Some(EllipticCurve::P256),
            Algorithm::ES384 => self.curve == Some(EllipticCurve::P384),
            Algorithm::EdDSA => self.curve == Some(EllipticCurve::Ed25519),
            _ => true,
        };
        curve_ok && self.alg.is_none_or(|a| a == KeyAlgorithm::from(alg))
    }
}

pub(super) fn same_key(a: Option<&VerifyingKey>, b: Option<&VerifyingKey>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.key.try_get_as_bytes().ok() == b.key.try_get_as_bytes().ok(),
        _ => false,
    }
}

/// Reads an HMAC secret file; a trailing newline (`\n` or `\r\n`) is not part of the secret.
pub(super) fn read_hmac_secret(path: &Path) -> Result<VerifyingKey, String> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err("empty secret".into());
    }
    let key = DecodingKey::from_secret(&bytes).map_err(|e| format!("unusable secret: {e}"))?;
    Ok(VerifyingKey {
        kid: None,
        family: AlgorithmFamily::Hmac,
        curve: None,
        alg: None,
        key,
    })
}

/// Parses a JWK Set document into its usable signing keys (possibly none). Only a document
/// that is not a JSON object with a `keys` array is an error.
pub(super) fn parse_jwks(doc: &[u8], issuer: &str) -> Result<Vec<Arc<VerifyingKey>>, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet = serde_json::from_slice(doc).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for value in set.keys {
        let kid = value
            .get("kid")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_string();
        match value.get("kty").and_then(|k| k.as_str()) {
            // A JWKS never supplies HMAC keys (algorithm-confusion defence).
            Some("oct") => {
                tracing::warn!(issuer, kid = ?kid, "ignoring symmetric (kty oct) key in JWKS");
                continue;
            }
            Some("RSA" | "EC" | "OKP") => {}
            _ => {
                tracing::debug!(issuer, kid = ?kid, "ignoring JWKS key of unsupported kty");
                continue;
            }
        }
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(_) => {
                tracing::warn!(issuer, kid = ?kid, "ignoring JWKS key that does not parse");
                continue;
            }
        };
        match verifying_key(jwk) {
            Ok(Some(key)) => keys.push(Arc::new(key)),
            Ok(None) => {
                tracing::debug!(issuer, kid = ?kid, "ignoring JWKS key not meant for signatures")
            }
            Err(why) => tracing::warn!(issuer, kid = ?kid, "ignoring unusable JWKS key: {why}"),
        }
    }
    Ok(keys)
}

/// The verifying key of a parsed JWK; `None` when it is not meant for signatures.
fn verifying_key(jwk: Jwk) -> Result<Option<VerifyingKey>, &'static str> {
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Ok(None),
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.iter().any(|op| matches!(op, KeyOperations::Verify)) {
            return Ok(None);
        }
    }
    let b64_len = |s: &str| URL_SAFE_NO_PAD.decode(s).map(|v| v.len()).unwrap_or(0);
    let (family, curve) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            // At least 2048-bit moduli (RFC 7518 §3.3), a sane exponent.
            let n = URL_SAFE_NO_PAD.decode(&p.n).map_err(|_| "bad RSA n")?;
            let bits = match n.first() {
                Some(first) => n.len() * 8 - first.leading_zeros() as usize,
                None => 0,
            };
            if bits < 2048 {
                return Err("RSA key shorter than 2048 bits");
            }
            if !(1..=8).contains(&b64_len(&p.e)) {
                return Err("bad RSA e");
            }
            (AlgorithmFamily::Rsa, None)
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let size = match p.curve {
                EllipticCurve::P256 => 32,
                EllipticCurve::P384 => 48,
                _ => return Err("unsupported EC curve"),
            };
            if b64_len(&p.x) != size || b64_len(&p.y) != size {
                return Err("bad EC point");
            }
            (AlgorithmFamily::Ec, Some(p.curve.clone()))
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err("unsupported OKP curve");
            }
            if b64_len(&p.x) != 32 {
                return Err("bad Ed25519 key");
            }
            (AlgorithmFamily::Ed, Some(EllipticCurve::Ed25519))
        }
        _ => return Err("unsupported key type"),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "does not parse")?;
    if key.family() != family {
        return Err("key family mismatch");
    }
    Ok(Some(VerifyingKey {
        kid: jwk.common.key_id,
        family,
        curve,
        alg: jwk.common.key_algorithm,
        key,
    }))
}
