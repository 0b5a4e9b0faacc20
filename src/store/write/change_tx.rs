//! What one change does inside the state transaction of `RevocationStore::write`
//! (`super`): a [`Change`] or a shared-log op, its keys encoded ([`Prepared`]), merged or
//! removed in the record and expiry-index trees, and what it did ([`Done`]).

use super::Mode;
use crate::store::change::{Change, Outcome, SeenLogout};
use crate::store::log::LogOp;
use crate::store::policy::{self, Incoming};
use crate::store::record::{self, StoredRecordV1};
use crate::store::{abort, keys, Kind, Record, StateTx, StoreError, TxResult};

/// A change with its keys encoded, ready for the transaction.
pub(super) enum Prepared<'a> {
    /// A revocation or an imported record: merged into the record at `key`.
    Merge {
        kind: Kind,
        key: Vec<u8>,
        issuer: &'a str,
        value: &'a str,
        incoming: Incoming<'a>,
    },
    /// A back-channel logout: the revocation at `key` and the seen jti at `jti_key`.
    Logout {
        kind: Kind,
        key: Vec<u8>,
        issuer: &'a str,
        value: &'a str,
        incoming: Incoming<'a>,
        jti_key: Vec<u8>,
        jti: &'a str,
        fingerprint: &'a [u8; 32],
        jti_expires_at: u64,
    },
    /// An unrevoke; `key` is `None` when no such key can have been stored.
    Unrevoke {
        kind: Kind,
        key: Option<Vec<u8>>,
        issuer: &'a str,
        value: &'a str,
    },
    /// A local removal (the end of a resync): the record at `key`, if it still is `was`.
    Prune {
        kind: Kind,
        key: Vec<u8>,
        was: Vec<u8>,
    },
}

impl<'a> Prepared<'a> {
    pub(super) fn new(change: &'a Change) -> Result<Self, StoreError> {
        Ok(match change {
            Change::Revoke(rev) => Prepared::Merge {
                kind: rev.kind,
                key: keys::record_key(&rev.issuer, &rev.value)?,
                issuer: &rev.issuer,
                value: &rev.value,
                incoming: Incoming::revocation(rev),
            },
            Change::Import(r) => Prepared::merge_record(r)?,
            Change::Logout(logout) => Prepared::logout(
                &logout.revocation.issuer,
                &logout.revocation.value,
                Incoming::revocation(&logout.revocation),
                &logout.jti,
                &logout.fingerprint,
                logout.jti_expires_at,
            )?,
            Change::Unrevoke {
                kind,
                issuer,
                value,
            } => Prepared::unrevoke(*kind, issuer, value)?,
        })
    }

    /// An op read from the shared log.
    pub(super) fn from_op(op: &'a LogOp) -> Result<Self, StoreError> {
        match op {
            LogOp::Record(r) => Prepared::merge_record(r),
            LogOp::Logout {
                record,
                jti,
                fingerprint,
                jti_expires_at,
            } => Prepared::logout(
                &record.issuer,
                &record.value,
                Incoming::import(record),
                jti,
                fingerprint,
                *jti_expires_at,
            ),
            LogOp::Unrevoke {
                kind,
                issuer,
                value,
            } => Prepared::unrevoke(*kind, issuer, value),
        }
    }

    pub(super) fn merge_record(r: &'a Record) -> Result<Self, StoreError> {
        Ok(Prepared::Merge {
            kind: r.kind,
            key: keys::record_key(&r.issuer, &r.value)?,
            issuer: &r.issuer,
            value: &r.value,
            incoming: Incoming::import(r),
        })
    }

    pub(super) fn logout(
        issuer: &'a str,
        value: &'a str,
        incoming: Incoming<'a>,
        jti: &'a str,
        fingerprint: &'a [u8; 32],
        jti_expires_at: u64,
    ) -> Result<Self, StoreError> {
        Ok(Prepared::Logout {
            kind: incoming.kind,
            key: keys::record_key(issuer, value)?,
            issuer,
            value,
            incoming,
            jti_key: keys::record_key(issuer, jti)?,
            jti,
            fingerprint,
            jti_expires_at,
        })
    }

    pub(super) fn unrevoke(
        kind: Kind,
        issuer: &'a str,
        value: &'a str,
    ) -> Result<Self, StoreError> {
        Ok(Prepared::Unrevoke {
            kind,
            key: match keys::record_key(issuer, value) {
                Ok(key) => Some(key),
                // Such a key cannot have been stored.
                Err(StoreError::Invalid(_)) => None,
                Err(e) => return Err(e),
            },
            issuer,
            value,
        })
    }

    pub(super) fn kind(&self) -> Kind {
        match self {
            Prepared::Merge { kind, .. }
            | Prepared::Logout { kind, .. }
            | Prepared::Unrevoke { kind, .. }
            | Prepared::Prune { kind, .. } => *kind,
        }
    }

    /// The record this change may add: its kind byte and key.
    pub(super) fn adds(&self) -> Option<(u8, &[u8])> {
        match self {
            Prepared::Merge { kind, key, .. } | Prepared::Logout { kind, key, .. } => {
                Some((keys::kind_byte(*kind), key))
            }
            Prepared::Unrevoke { .. } | Prepared::Prune { .. } => None,
        }
    }

    /// The record this change may remove: its kind byte and key.
    pub(super) fn removes(&self) -> Option<(u8, &[u8])> {
        match self {
            Prepared::Unrevoke {
                kind,
                key: Some(key),
                ..
            }
            | Prepared::Prune { kind, key, .. } => Some((keys::kind_byte(*kind), key)),
            _ => None,
        }
    }

    /// Applies the change inside the transaction; in [`Mode::Logged`], also the op its
    /// log entry carries.
    pub(super) fn write(
        &self,
        tx: &StateTx<'_>,
        now: u64,
        mode: Mode,
    ) -> TxResult<(Done, Option<LogOp>)> {
        match self {
            Prepared::Merge {
                kind,
                key,
                issuer,
                value,
                incoming,
            } => {
                let (merged, new, entry) = merge_in_tx(tx, *kind, key, incoming, now, mode)?;
                let op = match entry {
                    Some(e) => Some(LogOp::Record(logged_record(e, *kind, issuer, value)?)),
                    None => None,
                };
                Ok((Done::Merged { merged, new }, op))
            }
            Prepared::Logout {
                kind,
                key,
                issuer,
                value,
                incoming,
                jti_key,
                jti,
                fingerprint,
                jti_expires_at,
            } => {
                let old = match tx.logout.get(jti_key)? {
                    Some(old) => match keys::decode_logout(&old) {
                        Ok(v) => Some(v),
                        Err(e) => return abort(e),
                    },
                    None => None,
                };
                // An entry whose own expiry has passed (not yet swept) counts as absent.
                let live = old.filter(|&(_, exp)| exp >= now);
                let (fp, exp) = match (live, mode) {
                    (Some((old_fp, _)), Mode::Single | Mode::Logged) => {
                        let seen = if old_fp == **fingerprint {
                            SeenLogout::Repeat
                        } else {
                            SeenLogout::Conflict
                        };
                        return Ok((Done::Logout { seen, new: false }, None));
                    }
                    // From the log: the accepting node checked it; a jti already seen
                    // here keeps its token and the later expiry.
                    (Some((old_fp, old_exp)), Mode::FromLog) => {
                        (old_fp, old_exp.max(*jti_expires_at))
                    }
                    (None, _) => (**fingerprint, *jti_expires_at),
                };
                if let Some((_, old_exp)) = old.filter(|&(_, e)| e != exp) {
                    tx.expiry
                        .remove(keys::index_key(old_exp, keys::KIND_LOGOUT, jti_key))?;
                }
                let (_, new, entry) = merge_in_tx(tx, *kind, key, incoming, now, mode)?;
                tx.logout
                    .insert(jti_key.as_slice(), keys::encode_logout(&fp, exp))?;
                tx.expiry.insert(
                    keys::index_key(exp, keys::KIND_LOGOUT, jti_key),
                    sled::IVec::default(),
                )?;
                let op = match entry {
                    Some(e) => Some(LogOp::Logout {
                        record: logged_record(e, *kind, issuer, value)?,
                        jti: jti.to_string(),
                        fingerprint: **fingerprint,
                        jti_expires_at: *jti_expires_at,
                    }),
                    None => None,
                };
                Ok((
                    Done::Logout {
                        seen: SeenLogout::New,
                        new,
                    },
                    op,
                ))
            }
            Prepared::Unrevoke {
                kind,
                key,
                issuer,
                value,
            } => {
                let Some(key) = key else {
                    return Ok((Done::Unrevoked { removed: false }, None));
                };
                // Logged even when this node holds no such record: a revocation another
                // node accepted a moment ago, not here yet, is removed too.
                let op = (mode == Mode::Logged).then(|| LogOp::Unrevoke {
                    kind: *kind,
                    issuer: issuer.to_string(),
                    value: value.to_string(),
                });
                let removed = remove_in_tx(tx, *kind, key, None)?;
                Ok((Done::Unrevoked { removed }, op))
            }
            Prepared::Prune { kind, key, was } => {
                let removed = remove_in_tx(tx, *kind, key, Some(was))?;
                Ok((Done::Unrevoked { removed }, None))
            }
        }
    }
}

/// The record a log op carries, from the resolved entry.
pub(super) fn logged_record(
    entry: StoredRecordV1,
    kind: Kind,
    issuer: &str,
    value: &str,
) -> TxResult<Record> {
    match entry.into_record(kind, issuer, value) {
        Ok(r) => Ok(r),
        Err(e) => abort(e),
    }
}

/// Inside a transaction: removes the record of `kind` at `key` (only if its stored value
/// is still `was`, when given) with its index entry. Whether one was removed.
pub(super) fn remove_in_tx(
    tx: &StateTx<'_>,
    kind: Kind,
    key: &[u8],
    was: Option<&[u8]>,
) -> TxResult<bool> {
    let records = tx.records(kind);
    if let Some(was) = was {
        if records.get(key)?.as_deref() != Some(was) {
            return Ok(false);
        }
    }
    let Some(bytes) = records.remove(key)? else {
        return Ok(false);
    };
    // An undecodable record is still removed (the operator's way out); its index entry,
    // if any, is then dropped by the sweeper when due.
    if let Ok(head) = record::decode_head(&bytes) {
        tx.expiry
            .remove(keys::index_key(head.expires_at, keys::kind_byte(kind), key))?;
    }
    Ok(true)
}

/// What one change did inside the transaction.
pub(super) enum Done {
    Merged { merged: StoredRecordV1, new: bool },
    Logout { seen: SeenLogout, new: bool },
    Unrevoked { removed: bool },
}

impl Done {
    /// A record was added (its key was new).
    pub(super) fn added(&self) -> bool {
        matches!(
            self,
            Done::Merged { new: true, .. } | Done::Logout { new: true, .. }
        )
    }

    pub(super) fn removed(&self) -> bool {
        matches!(self, Done::Unrevoked { removed: true })
    }

    /// Something was written.
    pub(super) fn wrote(&self) -> bool {
        match self {
            Done::Merged { .. } => true,
            Done::Logout { seen, .. } => *seen == SeenLogout::New,
            Done::Unrevoked { removed } => *removed,
        }
    }

    /// The answer to this change waits for a commit. Also for a repeated logout token:
    /// its first delivery may still be waiting for its commit, and the repeat's `200`
    /// must not overtake it (cheap when already covered).
    pub(super) fn needs_commit(&self) -> bool {
        match self {
            Done::Logout { seen, .. } => *seen != SeenLogout::Conflict,
            other => other.wrote(),
        }
    }

    /// The debug line of a recorded or removed revocation (imports are not logged one by
    /// one).
    pub(super) fn log(&self, kind: Kind, change: &Change) {
        match self {
            Done::Merged { new, .. } if matches!(change, Change::Revoke(_)) => {
                tracing::debug!(%kind, merged = !new, "revocation recorded");
            }
            Done::Logout {
                seen: SeenLogout::New,
                new,
            } => tracing::debug!(%kind, merged = !new, "revocation recorded"),
            Done::Unrevoked { removed: true } => tracing::debug!(%kind, "revocation removed"),
            _ => {}
        }
    }

    pub(super) fn outcome(self, change: &Change) -> Result<Outcome, StoreError> {
        Ok(match (self, change) {
            (Done::Merged { merged, .. }, Change::Revoke(rev)) => {
                Outcome::Revoked(merged.into_record(rev.kind, &rev.issuer, &rev.value)?)
            }
            (Done::Merged { new, .. }, _) => Outcome::Imported { new },
            (Done::Logout { seen, .. }, _) => Outcome::Logout(seen),
            (Done::Unrevoked { removed }, _) => Outcome::Unrevoked { removed },
        })
    }
}

/// Inside a transaction: merges `incoming` into the record of `kind` at `key` as `mode`
/// merges (module [`Mode`]) and moves its index entry. Returns the merged record, whether
/// it is new and, in [`Mode::Logged`], the resolved entry the log carries.
pub(super) fn merge_in_tx(
    tx: &StateTx<'_>,
    kind: Kind,
    key: &[u8],
    incoming: &Incoming<'_>,
    now: u64,
    mode: Mode,
) -> TxResult<(StoredRecordV1, bool, Option<StoredRecordV1>)> {
    let records = tx.records(kind);
    let kb = keys::kind_byte(kind);
    let old = match records.get(key)? {
        Some(bytes) => match record::decode_stored(&bytes) {
            Ok(old) => Some(old),
            Err(e) => return abort(e),
        },
        None => None,
    };
    let old_expiry = old.as_ref().map(|o| o.expires_at);
    let was_new = old.is_none();
    let (merged, entry) = match mode {
        Mode::Single => (policy::merge(old, incoming, now), None),
        Mode::Logged => {
            let entry = policy::resolve(old.as_ref(), incoming, now);
            (policy::join(old, &entry), Some(entry))
        }
        Mode::FromLog => (
            policy::join(old, &policy::resolve(None, incoming, now)),
            None,
        ),
    };
    let value = match record::encode_stored(&merged) {
        Ok(v) => v,
        Err(e) => return abort(e),
    };
    if let Some(old_expiry) = old_expiry.filter(|&e| e != merged.expires_at) {
        tx.expiry.remove(keys::index_key(old_expiry, kb, key))?;
    }
    // Always (re)written: also heals a missing index entry.
    tx.expiry.insert(
        keys::index_key(merged.expires_at, kb, key),
        sled::IVec::default(),
    )?;
    records.insert(key, value)?;
    Ok((merged, was_new, entry))
}
