//! Admin request bodies and path parameters: a revocation (`POST /v1/revocations`), the
//! `{kind}/{value}?issuer=` of one record. Every problem is a `400 invalid_request` naming
//! the field (SPEC §5), and nothing is stored.

use std::collections::HashMap;

use serde_json::Value;

use super::MAX_REASON_BYTES;
use crate::error::GatewayError;
use crate::store::{
    Kind, NewRevocation, Policy, Requested, Source, MAX_ISSUER_BYTES, MAX_VALUE_BYTES,
};
use crate::App;

pub(super) fn key_of(
    app: &App,
    kind: &str,
    value: &str,
    q: &HashMap<String, String>,
) -> Result<(Kind, String, String), GatewayError> {
    let kind: Kind = kind
        .parse()
        .map_err(|e| GatewayError::invalid(format!("kind: {e}")))?;
    let value = percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map_err(|_| GatewayError::invalid("value: not valid UTF-8"))?
        .into_owned();
    if value.is_empty() {
        return Err(GatewayError::invalid("value: must not be empty"));
    }
    for k in q.keys() {
        if k != "issuer" {
            return Err(GatewayError::invalid(format!(
                "{k}: unknown query parameter"
            )));
        }
    }
    // Given, it must name a configured issuer (an empty `issuer=` names none).
    let issuer = app
        .config()
        .resolve_issuer(q.get("issuer").map(String::as_str))
        .map(|i| i.issuer.clone())
        .map_err(|e| GatewayError::invalid(format!("issuer: {e}")))?;
    Ok((kind, issuer, value))
}

pub(super) fn reject_unknown_fields(
    obj: &serde_json::Map<String, Value>,
    allowed: &[&str],
) -> Result<(), GatewayError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(GatewayError::invalid(format!("{k}: unknown field"))),
        None => Ok(()),
    }
}

pub(super) fn optional_string(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<String>, GatewayError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(GatewayError::invalid(format!(
            "{field}: longer than {max} bytes"
        ))),
        Some(_) => Err(GatewayError::invalid(format!("{field}: must be a string"))),
    }
}

/// Like [`optional_string`], for a member that is either absent or a string: an explicit
/// `null` is refused rather than read as absent (the document types it as a string, and
/// `ttl: null` beside an `expires_at` would otherwise pass for one of the two).
fn string_if_present(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<String>, GatewayError> {
    match obj.get(field) {
        Some(Value::Null) => Err(GatewayError::invalid(format!(
            "{field}: must be a string (leave it out instead of null)"
        ))),
        _ => optional_string(obj, field, max),
    }
}

/// Validates a `POST /v1/revocations` body into a revocation (nothing stored yet).
pub fn parse_revocation(app: &App, body: &Value) -> Result<NewRevocation, GatewayError> {
    let obj = body
        .as_object()
        .ok_or_else(|| GatewayError::invalid("malformed JSON: body must be an object"))?;
    reject_unknown_fields(
        obj,
        &[
            "kind",
            "value",
            "issuer",
            "ttl",
            "expires_at",
            "issued_before",
            "reason",
        ],
    )?;
    let kind: Kind = match obj.get("kind") {
        Some(Value::String(k)) => k
            .parse()
            .map_err(|e| GatewayError::invalid(format!("kind: {e}")))?,
        None | Some(Value::Null) => {
            return Err(GatewayError::invalid("kind: required (jti, sid or sub)"))
        }
        Some(_) => {
            return Err(GatewayError::invalid(
                "kind: must be a string (jti, sid or sub)",
            ))
        }
    };
    let value = match obj.get("value") {
        Some(Value::String(v)) if v.is_empty() => {
            return Err(GatewayError::invalid("value: must not be empty"))
        }
        Some(Value::String(v)) if v.len() > MAX_VALUE_BYTES => {
            return Err(GatewayError::invalid(format!(
                "value: longer than {MAX_VALUE_BYTES} bytes"
            )))
        }
        Some(Value::String(v)) => v.clone(),
        None | Some(Value::Null) => return Err(GatewayError::invalid("value: required")),
        Some(_) => return Err(GatewayError::invalid("value: must be a string")),
    };
    let issuer_given = string_if_present(obj, "issuer", MAX_ISSUER_BYTES)?;
    let issuer = app
        .config()
        .resolve_issuer(issuer_given.as_deref())
        .map(|i| i.issuer.clone())
        .map_err(|e| GatewayError::invalid(format!("issuer: {e}")))?;
    let ttl = string_if_present(obj, "ttl", 64)?;
    let expires_at = string_if_present(obj, "expires_at", 64)?;
    let issued_before = string_if_present(obj, "issued_before", 64)?;
    let reason = optional_string(obj, "reason", MAX_REASON_BYTES)?;
    if ttl.is_some() && expires_at.is_some() {
        return Err(GatewayError::invalid(
            "ttl, expires_at: give at most one of them",
        ));
    }
    let now = app.clock.now();
    let config = app.config();
    let issued_before = match issued_before {
        Some(_) if kind == Kind::Jti => {
            return Err(GatewayError::invalid(
                "issued_before: not allowed for kind jti",
            ))
        }
        Some(text) => Some(
            crate::clock::parse_rfc3339_strict(&text)
                .map_err(|e| GatewayError::invalid(format!("issued_before: {e}")))?,
        ),
        None => None,
    };
    let issued_before = Policy::issued_before(kind, issued_before, now);
    // The field that decides the expiry, named when it lies beyond what RFC 3339 can write.
    let expiry_field = match (&ttl, &expires_at) {
        (Some(_), _) => "ttl",
        (None, None) if kind != Kind::Jti => "issued_before",
        _ => "expires_at",
    };
    let requested = if let Some(ttl) = ttl {
        let d = humantime::parse_duration(ttl.trim())
            .map_err(|e| GatewayError::invalid(format!("ttl: invalid duration {ttl:?}: {e}")))?;
        if d.as_secs() == 0 {
            return Err(GatewayError::invalid("ttl: must be at least 1s"));
        }
        Some(Requested::Ttl(d.as_secs()))
    } else if let Some(text) = expires_at {
        let at = crate::clock::parse_rfc3339_strict(&text)
            .map_err(|e| GatewayError::invalid(format!("expires_at: {e}")))?;
        if at <= now {
            return Err(GatewayError::invalid("expires_at: is in the past"));
        }
        Some(Requested::At(at))
    } else {
        None
    };
    let expires_at = Policy::of(&config).expires_at(kind, now, issued_before, requested);
    if expires_at > crate::clock::MAX_RFC3339_SECS {
        return Err(GatewayError::invalid(format!(
            "{expiry_field}: the expiry would be after {}",
            crate::clock::rfc3339(crate::clock::MAX_RFC3339_SECS)
        )));
    }
    Ok(NewRevocation {
        kind,
        issuer,
        value,
        issued_before,
        expires_at,
        reason,
        source: Source::Admin,
    })
}
