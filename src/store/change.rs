//! What a change of the revocation state is: the one input of the write path
//! ([`RevocationStore::apply`](super::RevocationStore::apply)) and what applying it
//! reports.
//!
//! Every source builds a [`Change`]: the admin API and CLI ([`Change::Revoke`],
//! [`Change::Unrevoke`]), revoke-by-token and the revocation endpoint ([`Change::Revoke`]
//! from [`Policy::token_revocation`](super::Policy::token_revocation)), the back-channel
//! logout endpoint ([`Change::Logout`]), import, restore and seeding ([`Change::Import`]).
//! A change carries its expiry, computed by the accepting side with
//! [`Policy`](super::Policy), so applying it again — elsewhere, later — stores the same
//! record; only a [`Change::Revoke`]'s `revoked_at` is taken from the applying store's
//! clock. Changes are plain data with serde derives, so they can be written down as they
//! are (a log entry, an outbox entry).

use serde::{Deserialize, Serialize};

use super::{Kind, Record, Source};

/// A revocation to record (merged with any existing record of the same key, SPEC §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRevocation {
    /// jti, sid or sub.
    pub kind: Kind,
    /// The issuer it is scoped to.
    pub issuer: String,
    /// The jti / sid / sub value (`sha256:...` for jti-less tokens).
    pub value: String,
    /// For sid/sub: tokens with `iat <= issued_before` are dead (`None`: now). Ignored for
    /// jti.
    pub issued_before: Option<u64>,
    /// When the record may be purged (seconds since the epoch).
    pub expires_at: u64,
    /// Free text from the operator.
    pub reason: Option<String>,
    /// Who revoked.
    pub source: Source,
}

/// A back-channel logout (SPEC §4): the revocation of its session or subject and its
/// logout token's `jti`, recorded together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logout {
    /// The revocation (`sid`, or `sub` when the token names no session).
    pub revocation: NewRevocation,
    /// The logout token's `jti`, scoped to the revocation's issuer.
    pub jti: String,
    /// SHA-256 of the whole logout token: the same token again is a
    /// [`SeenLogout::Repeat`], another token with this `jti` a [`SeenLogout::Conflict`].
    pub fingerprint: [u8; 32],
    /// Until when the `jti` is remembered
    /// ([`Policy::seen_jti_expires_at`](super::Policy::seen_jti_expires_at)).
    pub jti_expires_at: u64,
}

/// One change of the revocation state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Record a revocation, merged into the stored record of its key; `revoked_at` is now.
    Revoke(NewRevocation),
    /// Record a whole record (backup restore, seeding): merged as a revocation would be,
    /// but keeping its own `revoked_at`, and its `reason` and `source` unless the stored
    /// record is newer.
    Import(Record),
    /// Record a back-channel logout. A logout token whose `jti` another token already
    /// used records nothing ([`SeenLogout::Conflict`]), even when both arrive at once; the
    /// same token again changes nothing ([`SeenLogout::Repeat`]).
    Logout(Logout),
    /// Remove the revocation of that key (record and index entry).
    Unrevoke {
        /// jti, sid or sub.
        kind: Kind,
        /// The issuer it is scoped to.
        issuer: String,
        /// The revoked value.
        value: String,
    },
}

/// What applying a [`Change`] did, variant for variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// [`Change::Revoke`]: the record as stored after the merge.
    Revoked(Record),
    /// [`Change::Import`]: whether its key was new (`false`: merged into a stored record).
    Imported {
        /// The key was new.
        new: bool,
    },
    /// [`Change::Logout`]: whether its token was new, a repeat or a conflict.
    Logout(SeenLogout),
    /// [`Change::Unrevoke`]: whether there was a revocation to remove.
    Unrevoked {
        /// A record was removed.
        removed: bool,
    },
}

/// What the store knew of a logout token's `jti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenLogout {
    /// First time: recorded.
    New,
    /// The same token (same fingerprint) was seen before.
    Repeat,
    /// Another token with the same `jti` was seen before.
    Conflict,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revocation(kind: Kind) -> NewRevocation {
        NewRevocation {
            kind,
            issuer: "https://idp/".into(),
            value: "v".into(),
            issued_before: Some(10),
            expires_at: 100,
            reason: Some("why".into()),
            source: Source::Backchannel,
        }
    }

    #[test]
    fn every_change_round_trips_through_serde() {
        let changes = [
            Change::Revoke(revocation(Kind::Jti)),
            Change::Import(Record {
                kind: Kind::Sub,
                issuer: "https://idp/".into(),
                value: "u".into(),
                revoked_at: 5,
                issued_before: Some(4),
                expires_at: 50,
                reason: None,
                source: Source::RevokeEndpoint,
            }),
            Change::Logout(Logout {
                revocation: revocation(Kind::Sid),
                jti: "lj".into(),
                fingerprint: [7; 32],
                jti_expires_at: 60,
            }),
            Change::Unrevoke {
                kind: Kind::Sid,
                issuer: "https://idp/".into(),
                value: "s".into(),
            },
        ];
        for change in changes {
            let json = serde_json::to_string(&change).unwrap();
            assert_eq!(
                serde_json::from_str::<Change>(&json).unwrap(),
                change,
                "{json}"
            );
            let bytes =
                bincode::serde::encode_to_vec(&change, bincode::config::standard()).unwrap();
            let (back, _): (Change, usize) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            assert_eq!(back, change);
        }
    }
}
