//! Logout-token validation: OpenID Connect Back-Channel Logout 1.0 (errata set 1) §2.6,
//! as SPEC §4 ("Back-Channel Logout endpoint") fixes it. Every failure is one
//! [`LogoutError`] whose text becomes the `400 invalid_request` description.
//!
//! Order: never trust claims before the signature checks out, except `iss` (to pick the
//! issuer and its keys) and the header (to pick the algorithm and key).

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::auth::jws::{self, AlgorithmProblem, Compact, JwsError};
use crate::auth::verify::media_subtype;
use crate::auth::Keyring;
use crate::config::{Config, IssuerConfig};
use crate::metrics::Metrics;

/// The `events` member that marks a logout token (BCL §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why a back-channel logout was refused, by class: the `reason` label of
/// `revgate_backchannel_logouts_total` (one per variant, see [`LogoutReason::label`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutReason {
    /// The request around the token: method, `Content-Type`, form, `logout_token` parameter.
    Request,
    /// Not a compact JWS with JSON header and claims; a header member of the wrong type.
    Malformed,
    /// `iss` missing, unknown, or an issuer that takes no logout tokens.
    Issuer,
    /// `alg` `none`, not in `logout_algorithms`, or unsupported.
    Algorithm,
    /// No usable key, or the signature does not verify.
    Signature,
    /// `aud` names none of `logout_audiences`.
    Audience,
    /// `iat` / `exp` missing, in the future, too old or passed.
    Time,
    /// Another BCL §2.6 claim rule (`jti`, `events`, `nonce`, `sid`/`sub`, `typ`).
    Claims,
    /// Another logout token already used this `jti`.
    Replay,
    /// The revocation could not be made durable.
    Store,
}

impl LogoutReason {
    /// Every reason, in label order.
    pub const ALL: [LogoutReason; 10] = [
        LogoutReason::Request,
        LogoutReason::Malformed,
        LogoutReason::Issuer,
        LogoutReason::Algorithm,
        LogoutReason::Signature,
        LogoutReason::Audience,
        LogoutReason::Time,
        LogoutReason::Claims,
        LogoutReason::Replay,
        LogoutReason::Store,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            LogoutReason::Request => "request",
            LogoutReason::Malformed => "malformed",
            LogoutReason::Issuer => "issuer",
            LogoutReason::Algorithm => "algorithm",
            LogoutReason::Signature => "signature",
            LogoutReason::Audience => "audience",
            LogoutReason::Time => "time",
            LogoutReason::Claims => "claims",
            LogoutReason::Replay => "replay",
            LogoutReason::Store => "store",
        }
    }
}

/// Why a logout token was refused: the class (for metrics) and the description the
/// `400 invalid_request` answer carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid logout token: {detail}")]
pub struct LogoutError {
    /// The class of the refusal.
    pub reason: LogoutReason,
    /// The configured issuer the token named, once its `iss` matched one (`None` when the
    /// token was refused before: malformed, no or an unknown `iss`). Only configured
    /// issuers appear here, so counting by it stays bounded.
    pub issuer: Option<String>,
    detail: String,
}

impl LogoutError {
    /// A refusal of class `reason`, described by `detail`.
    pub fn new(reason: LogoutReason, detail: impl Into<String>) -> LogoutError {
        LogoutError {
            reason,
            issuer: None,
            detail: detail.into(),
        }
    }

    /// The same refusal, attributed to the configured issuer `issuer`.
    pub fn of_issuer(mut self, issuer: &str) -> LogoutError {
        self.issuer = Some(issuer.to_string());
        self
    }
}

fn refuse(reason: LogoutReason, why: impl Into<String>) -> LogoutError {
    LogoutError::new(reason, why)
}

/// The logout endpoint's words for a failed JWS step.
fn refuse_jws(e: JwsError) -> LogoutError {
    use LogoutReason::{Algorithm, Malformed, Signature};
    match e {
        JwsError::Malformed(d) => refuse(Malformed, format!("malformed token: {d}")),
        JwsError::Algorithm(AlgorithmProblem::Unsigned) => {
            refuse(Algorithm, "algorithm none is refused")
        }
        JwsError::Algorithm(AlgorithmProblem::NotAllowed) => refuse(
            Algorithm,
            "algorithm not allowed for logout tokens of this issuer",
        ),
        JwsError::Algorithm(AlgorithmProblem::Unsupported) => {
            refuse(Algorithm, "unsupported algorithm")
        }
        JwsError::Signature(d) => refuse(Signature, format!("invalid signature: {d}")),
    }
}

/// A logout token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// `iss` (a configured issuer that accepts logout tokens).
    pub issuer: String,
    /// `sid`, when present.
    pub sid: Option<String>,
    /// `sub`, when present.
    pub sub: Option<String>,
    /// `jti` (replay defence).
    pub jti: String,
    /// `iat`: becomes the revocation's `issued_before`.
    pub iat: u64,
    /// `exp`, when present.
    pub exp: Option<u64>,
    /// SHA-256 of the whole compact token: tells an exact repeat from a reused `jti`.
    pub fingerprint: [u8; 32],
}

/// Validates a logout token at `now` (seconds since the epoch).
pub async fn validate_logout_token(
    config: &Config,
    keys: &Keyring,
    metrics: &Metrics,
    now: u64,
    token: &str,
) -> Result<LogoutToken, LogoutError> {
    let jws = Compact::decode(token).map_err(refuse_jws)?;
    let header = parse_object(&jws.header_json, "header")?;
    let claims = parse_object(&jws.payload_json, "claims")?;

    // Header.
    if header.contains_key("crit") {
        return Err(refuse(LogoutReason::Malformed, "unsupported crit header"));
    }
    let alg_name = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(refuse(LogoutReason::Malformed, "missing or non-string alg")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(refuse(LogoutReason::Malformed, "kid must be a string")),
    };
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) => {
            let t = media_subtype(typ);
            let ok = t.eq_ignore_ascii_case("logout+jwt")
                || (!config.backchannel.strict_typ && t.eq_ignore_ascii_case("jwt"));
            if !ok {
                return Err(refuse(
                    LogoutReason::Claims,
                    format!(
                        "typ {:?} is not accepted for logout tokens",
                        crate::error::quoted_string_safe(typ)
                    ),
                ));
            }
        }
        Some(_) => return Err(refuse(LogoutReason::Malformed, "typ must be a string")),
    }
    if config.backchannel.strict_typ && header.get("typ").is_none() {
        return Err(refuse(
            LogoutReason::Claims,
            "typ logout+jwt is required (strict_typ)",
        ));
    }

    // Issuer: configured, and accepting logout tokens.
    let issuer = match claims.get("iss") {
        Some(Value::String(iss)) => config
            .issuer(iss)
            .ok_or_else(|| refuse(LogoutReason::Issuer, "unknown issuer"))?,
        _ => return Err(refuse(LogoutReason::Issuer, "missing issuer (iss)")),
    };
    validate_for_issuer(
        config, issuer, keys, metrics, now, token, &jws, &claims, alg_name, kid,
    )
    .await
    .map_err(|e| e.of_issuer(&issuer.issuer))
}

/// The checks of [`validate_logout_token`] once the token's `iss` named a configured
/// issuer: every refusal from here on is attributed to it.
#[allow(clippy::too_many_arguments)]
async fn validate_for_issuer(
    config: &Config,
    issuer: &IssuerConfig,
    keys: &Keyring,
    metrics: &Metrics,
    now: u64,
    token: &str,
    jws: &Compact<'_>,
    claims: &Map<String, Value>,
    alg_name: &str,
    kid: Option<&str>,
) -> Result<LogoutToken, LogoutError> {
    if issuer.logout_audiences.is_empty() {
        return Err(refuse(
            LogoutReason::Issuer,
            "issuer does not accept logout tokens (no logout_audiences)",
        ));
    }

    // Algorithm: pinned per issuer, never none (BCL §2.6 step 3); signature with the
    // issuer's keys.
    jws::verify_signature(
        keys,
        metrics,
        &issuer.issuer,
        &issuer.logout_algorithms,
        alg_name,
        kid,
        jws,
    )
    .await
    .map_err(refuse_jws)?;

    // Audience.
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => issuer.logout_audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| issuer.logout_audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(refuse(LogoutReason::Audience, "audience not accepted"));
    }

    // Times.
    let leeway = config.auth.leeway.as_secs();
    let iat =
        numeric_date(claims, "iat")?.ok_or_else(|| refuse(LogoutReason::Time, "missing iat"))?;
    if iat > now.saturating_add(leeway) {
        return Err(refuse(LogoutReason::Time, "iat is in the future"));
    }
    if iat
        .saturating_add(config.backchannel.max_age.as_secs())
        .saturating_add(leeway)
        < now
    {
        return Err(refuse(
            LogoutReason::Time,
            "iat is older than backchannel.max_age",
        ));
    }
    let exp = numeric_date(claims, "exp")?;
    match exp {
        None if issuer.logout_require_exp => return Err(refuse(LogoutReason::Time, "missing exp")),
        Some(exp) if now >= exp.saturating_add(leeway) => {
            return Err(refuse(LogoutReason::Time, "token expired"))
        }
        _ => {}
    }

    // jti, events, sid/sub, nonce.
    let jti = match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() => j.clone(),
        Some(_) => {
            return Err(refuse(
                LogoutReason::Claims,
                "jti must be a non-empty string",
            ))
        }
        None => return Err(refuse(LogoutReason::Claims, "missing jti")),
    };
    match claims.get("events") {
        Some(Value::Object(events)) => match events.get(BACKCHANNEL_LOGOUT_EVENT) {
            Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(refuse(
                    LogoutReason::Claims,
                    "events member for back-channel logout must be a JSON object",
                ))
            }
            None => {
                return Err(refuse(
                    LogoutReason::Claims,
                    "events claim lacks the back-channel logout member",
                ))
            }
        },
        Some(_) => {
            return Err(refuse(
                LogoutReason::Claims,
                "events claim must be a JSON object",
            ))
        }
        None => return Err(refuse(LogoutReason::Claims, "missing events claim")),
    }
    if claims.contains_key("nonce") {
        return Err(refuse(
            LogoutReason::Claims,
            "nonce is not allowed in a logout token",
        ));
    }
    let sid = optional_string(claims, "sid")?;
    let sub = optional_string(claims, "sub")?;
    if sid.is_none() && sub.is_none() {
        return Err(refuse(LogoutReason::Claims, "neither sid nor sub present"));
    }

    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(&Sha256::digest(token.as_bytes()));
    Ok(LogoutToken {
        issuer: issuer.issuer.clone(),
        sid,
        sub,
        jti,
        iat,
        exp,
        fingerprint,
    })
}

fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, LogoutError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(refuse(
            LogoutReason::Claims,
            format!("{name} must be a non-empty string"),
        )),
    }
}

/// A NumericDate: non-negative integer or float, floored.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, LogoutError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f.floor() as u64)),
                    _ => Err(refuse(
                        LogoutReason::Time,
                        format!("{name} must be a non-negative NumericDate"),
                    )),
                }
            }
        }
        Some(_) => Err(refuse(
            LogoutReason::Time,
            format!("{name} must be a NumericDate"),
        )),
    }
}

/// Parses a JSON object, refusing duplicate member names at the top level.
fn parse_object(json: &[u8], what: &str) -> Result<Map<String, Value>, LogoutError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let map = de
        .deserialize_map(UniqueMap)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| {
            if e.to_string().starts_with("duplicate member") {
                refuse(
                    LogoutReason::Malformed,
                    format!("duplicate member name in {what}"),
                )
            } else {
                refuse(
                    LogoutReason::Malformed,
                    format!("{what} is not a JSON object"),
                )
            }
        })?;
    Ok(map)
}

struct UniqueMap;

impl<'de> Visitor<'de> for UniqueMap {
    type Value = Map<String, Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if map.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("duplicate member name {key:?}")));
            }
        }
        Ok(map)
    }
}

/// Property tests on hostile input.
#[cfg(test)]
mod proptests;
