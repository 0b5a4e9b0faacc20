//! Revocation records: kinds, sources, the JSON view and the stored (bincode) form.

use serde::{Deserialize, Serialize};

/// What a revocation matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Token id (or `sha256:` digest of a jti-less token).
    Jti,
    /// Session id (the issuer's `session_claim`).
    Sid,
    /// Subject.
    Sub,
}

impl Kind {
    /// All kinds, in key order.
    pub const ALL: [Kind; 3] = [Kind::Jti, Kind::Sid, Kind::Sub];
    /// `"jti"`, `"sid"` or `"sub"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::Sid => "sid",
            Kind::Sub => "sub",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jti" => Ok(Kind::Jti),
            "sid" => Ok(Kind::Sid),
            "sub" => Ok(Kind::Sub),
            other => Err(format!("unknown kind {other:?} (expected jti, sid or sub)")),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who recorded a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Admin API or CLI.
    Admin,
    /// OpenID Connect Back-Channel Logout.
    Backchannel,
    /// The RFC 7009-style revocation endpoint.
    RevokeEndpoint,
}

impl Source {
    /// `"admin"`, `"backchannel"` or `"revoke_endpoint"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Admin => "admin",
            Source::Backchannel => "backchannel",
            Source::RevokeEndpoint => "revoke_endpoint",
        }
    }
}

/// A stored revocation, as the admin API shows it. Instants are seconds since the epoch
/// here and RFC 3339 in the API's JSON (see [`Record::to_json`]); the serde derives (plain
/// seconds) are for a [`Change::Import`](super::Change::Import) written down as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// jti, sid or sub.
    pub kind: Kind,
    /// The issuer it is scoped to.
    pub issuer: String,
    /// The revoked value.
    pub value: String,
    /// When it was (last) revoked.
    pub revoked_at: u64,
    /// sid/sub cutoff; `None` for jti.
    pub issued_before: Option<u64>,
    /// When it may be purged.
    pub expires_at: u64,
    /// Operator's reason, if any.
    pub reason: Option<String>,
    /// Who revoked.
    pub source: Source,
}

impl Record {
    /// The record JSON of SPEC §5:
    /// `{"kind","issuer","value","revoked_at","issued_before","expires_at","reason","source"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind.as_str(),
            "issuer": self.issuer,
            "value": self.value,
            "revoked_at": crate::clock::rfc3339(self.revoked_at),
            "issued_before": self.issued_before.map(crate::clock::rfc3339),
            "expires_at": crate::clock::rfc3339(self.expires_at),
            "reason": self.reason,
            "source": self.source.as_str(),
        })
    }
}

/// Version byte in front of every stored record value. Bump it (and add a decoder for
/// the old layout) whenever [`StoredRecordV1`] changes shape.
pub(super) const RECORD_VERSION_V1: u8 = 1;

/// The on-disk form of a record (after the version byte). Kind, issuer and value live in
/// the key, so they are not repeated here. Field order matters: [`StoredHeadV1`] decodes
/// a prefix of it on the hot path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredRecordV1 {
    /// When it was (last) revoked.
    pub revoked_at: u64,
    /// sid/sub cutoff; `None` for jti.
    pub issued_before: Option<u64>,
    /// When it may be purged.
    pub expires_at: u64,
    /// Operator's reason, if any.
    pub reason: Option<String>,
    /// [`Source`] as a byte (see [`source_byte`]).
    pub source: u8,
}

/// The leading fields of [`StoredRecordV1`]: all the proxy and the sweeper need. Decoding
/// only these avoids allocating the `reason` string on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(super) struct StoredHeadV1 {
    /// When it was (last) revoked (decoded only to reach the fields after it).
    #[allow(dead_code)]
    pub revoked_at: u64,
    /// sid/sub cutoff.
    pub issued_before: Option<u64>,
    /// When it may be purged.
    pub expires_at: u64,
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Stable byte of a [`Source`] in the stored form (never reorder).
pub(super) fn source_byte(source: Source) -> u8 {
    match source {
        Source::Admin => 0,
        Source::Backchannel => 1,
        Source::RevokeEndpoint => 2,
    }
}

/// Inverse of [`source_byte`]; `None` for an unknown byte.
pub(super) fn source_from_byte(byte: u8) -> Option<Source> {
    match byte {
        0 => Some(Source::Admin),
        1 => Some(Source::Backchannel),
        2 => Some(Source::RevokeEndpoint),
        _ => None,
    }
}

/// Stored value of a record: version byte ‖ bincode.
pub(super) fn encode_stored(rec: &StoredRecordV1) -> Result<Vec<u8>, super::StoreError> {
    let mut out = Vec::with_capacity(32 + rec.reason.as_ref().map_or(0, String::len));
    out.push(RECORD_VERSION_V1);
    let body = bincode::serde::encode_to_vec(rec, bincode_config())
        .map_err(|e| super::StoreError::Corrupt(format!("cannot encode record: {e}")))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Splits off and checks the version byte.
fn versioned_body(bytes: &[u8]) -> Result<&[u8], super::StoreError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION_V1, body)) => Ok(body),
        Some((v, _)) => Err(super::StoreError::Corrupt(format!(
            "unknown record version {v}"
        ))),
        None => Err(super::StoreError::Corrupt("empty record".to_string())),
    }
}

/// Decodes a whole stored record value.
pub(super) fn decode_stored(bytes: &[u8]) -> Result<StoredRecordV1, super::StoreError> {
    let body = versioned_body(bytes)?;
    let (rec, _): (StoredRecordV1, usize) =
        bincode::serde::decode_from_slice(body, bincode_config())
            .map_err(|e| super::StoreError::Corrupt(format!("cannot decode record: {e}")))?;
    Ok(rec)
}

/// Decodes only the cutoff and expiry of a stored record value (no allocation).
pub(super) fn decode_head(bytes: &[u8]) -> Result<StoredHeadV1, super::StoreError> {
    let body = versioned_body(bytes)?;
    let (head, _): (StoredHeadV1, usize) =
        bincode::serde::decode_from_slice(body, bincode_config())
            .map_err(|e| super::StoreError::Corrupt(format!("cannot decode record: {e}")))?;
    Ok(head)
}

impl StoredRecordV1 {
    /// The public view, given the kind, issuer and value taken from the key.
    pub(super) fn into_record(
        self,
        kind: Kind,
        issuer: &str,
        value: &str,
    ) -> Result<Record, super::StoreError> {
        let source = source_from_byte(self.source).ok_or_else(|| {
            super::StoreError::Corrupt(format!("unknown source byte {}", self.source))
        })?;
        Ok(Record {
            kind,
            issuer: issuer.to_string(),
            value: value.to_string(),
            revoked_at: self.revoked_at,
            issued_before: self.issued_before,
            expires_at: self.expires_at,
            reason: self.reason,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredRecordV1 {
        StoredRecordV1 {
            revoked_at: 1_700_000_000,
            issued_before: Some(1_699_999_999),
            expires_at: 1_700_086_460,
            reason: Some("stolen laptop".to_string()),
            source: source_byte(Source::Backchannel),
        }
    }

    #[test]
    fn round_trip() {
        let rec = sample();
        let bytes = encode_stored(&rec).unwrap();
        assert_eq!(bytes[0], RECORD_VERSION_V1);
        assert_eq!(decode_stored(&bytes).unwrap(), rec);
        let head = decode_head(&bytes).unwrap();
        assert_eq!(head.expires_at, rec.expires_at);
        assert_eq!(head.issued_before, rec.issued_before);

        let bare = StoredRecordV1 {
            issued_before: None,
            reason: None,
            ..sample()
        };
        let bytes = encode_stored(&bare).unwrap();
        assert_eq!(decode_stored(&bytes).unwrap(), bare);
        let full = decode_stored(&bytes)
            .unwrap()
            .into_record(Kind::Jti, "iss", "v")
            .unwrap();
        assert_eq!(full.source, Source::Backchannel);
        assert_eq!(full.issuer, "iss");
    }

    #[test]
    fn bad_version_is_corrupt() {
        let mut bytes = encode_stored(&sample()).unwrap();
        bytes[0] = 2;
        assert!(matches!(
            decode_stored(&bytes),
            Err(super::super::StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_head(&bytes),
            Err(super::super::StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_stored(&[]),
            Err(super::super::StoreError::Corrupt(_))
        ));
        // Truncated body.
        let bytes = encode_stored(&sample()).unwrap();
        assert!(decode_stored(&bytes[..3]).is_err());
    }

    #[test]
    fn unknown_source_is_corrupt() {
        let rec = StoredRecordV1 {
            source: 9,
            ..sample()
        };
        assert!(rec.into_record(Kind::Sid, "i", "v").is_err());
        for s in [Source::Admin, Source::Backchannel, Source::RevokeEndpoint] {
            assert_eq!(source_from_byte(source_byte(s)), Some(s));
        }
    }
}
