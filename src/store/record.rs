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
/// here and RFC 3339 in JSON (see [`Record::to_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
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
