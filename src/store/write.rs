//! The one write path: every change of the revocation state — admin create and delete,
//! revoke-by-token, `/revoke`, back-channel logout, import, restore — goes through
//! [`RevocationStore::apply_all`] (or [`apply`](RevocationStore::apply) for one change;
//! `revoke`, `unrevoke`, `record_logout` and `import_records` are typed shorthands).
//!
//! Applying a batch of [`Change`]s:
//! 1. encode every key (a key that cannot be stored refuses a revocation, and makes an
//!    unrevoke find nothing) and raise the presence filter for every key that may be
//!    added, so no reader can see a record while the filter says "absent";
//! 2. under the read side of the commit gate, run ONE sled transaction over the state
//!    trees ([`StateTx`]) that applies the changes in order (records and expiry index
//!    together, SPEC §6), and update the per-kind counters;
//! 3. lower the filter for keys that turned out to exist already or were removed;
//! 4. wait for a group commit covering the transaction ([`RevocationStore::flush`]),
//!    unless nothing was written that an answer depends on (a conflicting logout token,
//!    an unrevoke of nothing).
//!
//! Step 2's transaction is the place where anything that must change atomically with the
//! revocation state is written too: an outbox entry for a change accepted here, the
//! position of a change read from a shared log (issue 12).

use std::sync::atomic::Ordering;

use super::change::{Change, Logout, NewRevocation, Outcome, SeenLogout};
use super::commit::raise_commit_seq;
use super::policy::{self, Incoming};
use super::record::{self, StoredRecordV1};
use super::{abort, keys, Kind, Record, RevocationStore, StateTx, StoreError, TxResult};

/// A change with its keys encoded, ready for the transaction.
enum Prepared<'a> {
    /// A revocation or an imported record: merged into the record at `key`.
    Merge {
        kind: Kind,
        key: Vec<u8>,
        incoming: Incoming<'a>,
    },
    /// A back-channel logout: the revocation at `key` and the seen jti at `jti_key`.
    Logout {
        kind: Kind,
        key: Vec<u8>,
        incoming: Incoming<'a>,
        jti_key: Vec<u8>,
        logout: &'a Logout,
    },
    /// An unrevoke; `key` is `None` when no such key can have been stored.
    Unrevoke { kind: Kind, key: Option<Vec<u8>> },
}

impl<'a> Prepared<'a> {
    fn new(change: &'a Change) -> Result<Self, StoreError> {
        Ok(match change {
            Change::Revoke(rev) => Prepared::Merge {
                kind: rev.kind,
                key: keys::record_key(&rev.issuer, &rev.value)?,
                incoming: Incoming::revocation(rev),
            },
            Change::Import(r) => Prepared::Merge {
                kind: r.kind,
                key: keys::record_key(&r.issuer, &r.value)?,
                incoming: Incoming::import(r),
            },
            Change::Logout(logout) => {
                let rev = &logout.revocation;
                Prepared::Logout {
                    kind: rev.kind,
                    key: keys::record_key(&rev.issuer, &rev.value)?,
                    incoming: Incoming::revocation(rev),
                    jti_key: keys::record_key(&rev.issuer, &logout.jti)?,
                    logout,
                }
            }
            Change::Unrevoke {
                kind,
                issuer,
                value,
            } => Prepared::Unrevoke {
                kind: *kind,
                key: match keys::record_key(issuer, value) {
                    Ok(key) => Some(key),
                    // Such a key cannot have been stored.
                    Err(StoreError::Invalid(_)) => None,
                    Err(e) => return Err(e),
                },
            },
        })
    }

    fn kind(&self) -> Kind {
        match self {
            Prepared::Merge { kind, .. }
            | Prepared::Logout { kind, .. }
            | Prepared::Unrevoke { kind, .. } => *kind,
        }
    }

    /// The record this change may add: its kind byte and key.
    fn adds(&self) -> Option<(u8, &[u8])> {
        match self {
            Prepared::Merge { kind, key, .. } | Prepared::Logout { kind, key, .. } => {
                Some((keys::kind_byte(*kind), key))
            }
            Prepared::Unrevoke { .. } => None,
        }
    }

    /// The record this change may remove: its kind byte and key.
    fn removes(&self) -> Option<(u8, &[u8])> {
        match self {
            Prepared::Unrevoke {
                kind,
                key: Some(key),
            } => Some((keys::kind_byte(*kind), key)),
            _ => None,
        }
    }

    /// Applies the change inside the transaction.
    fn write(&self, tx: &StateTx<'_>, now: u64) -> TxResult<Done> {
        match self {
            Prepared::Merge {
                kind,
                key,
                incoming,
            } => {
                let (merged, new) = merge_in_tx(tx, *kind, key, incoming, now)?;
                Ok(Done::Merged { merged, new })
            }
            Prepared::Logout {
                kind,
                key,
                incoming,
                jti_key,
                logout,
            } => {
                if let Some(old) = tx.logout.get(jti_key)? {
                    let (old_fp, old_exp) = match keys::decode_logout(&old) {
                        Ok(v) => v,
                        Err(e) => return abort(e),
                    };
                    // An entry whose own expiry has passed (not yet swept) counts as absent.
                    if old_exp >= now {
                        let seen = if old_fp == logout.fingerprint {
                            SeenLogout::Repeat
                        } else {
                            SeenLogout::Conflict
                        };
                        return Ok(Done::Logout { seen, new: false });
                    }
                    tx.expiry
                        .remove(keys::index_key(old_exp, keys::KIND_LOGOUT, jti_key))?;
                }
                let (_, new) = merge_in_tx(tx, *kind, key, incoming, now)?;
                tx.logout.insert(
                    jti_key.as_slice(),
                    keys::encode_logout(&logout.fingerprint, logout.jti_expires_at),
                )?;
                tx.expiry.insert(
                    keys::index_key(logout.jti_expires_at, keys::KIND_LOGOUT, jti_key),
                    sled::IVec::default(),
                )?;
                Ok(Done::Logout {
                    seen: SeenLogout::New,
                    new,
                })
            }
            Prepared::Unrevoke { kind, key } => {
                let Some(key) = key else {
                    return Ok(Done::Unrevoked { removed: false });
                };
                let Some(bytes) = tx.records(*kind).remove(key.as_slice())? else {
                    return Ok(Done::Unrevoked { removed: false });
                };
                // An undecodable record is still removed (the operator's way out); its
                // index entry, if any, is then dropped by the sweeper when due.
                if let Ok(head) = record::decode_head(&bytes) {
                    tx.expiry.remove(keys::index_key(
                        head.expires_at,
                        keys::kind_byte(*kind),
                        key,
                    ))?;
                }
                Ok(Done::Unrevoked { removed: true })
            }
        }
    }
}

/// What one change did inside the transaction.
enum Done {
    Merged { merged: StoredRecordV1, new: bool },
    Logout { seen: SeenLogout, new: bool },
    Unrevoked { removed: bool },
}

impl Done {
    /// A record was added (its key was new).
    fn added(&self) -> bool {
        matches!(
            self,
            Done::Merged { new: true, .. } | Done::Logout { new: true, .. }
        )
    }

    fn removed(&self) -> bool {
        matches!(self, Done::Unrevoked { removed: true })
    }

    /// Something was written.
    fn wrote(&self) -> bool {
        match self {
            Done::Merged { .. } => true,
            Done::Logout { seen, .. } => *seen == SeenLogout::New,
            Done::Unrevoked { removed } => *removed,
        }
    }

    /// The answer to this change waits for a commit. Also for a repeated logout token:
    /// its first delivery may still be waiting for its commit, and the repeat's `200`
    /// must not overtake it (cheap when already covered).
    fn needs_commit(&self) -> bool {
        match self {
            Done::Logout { seen, .. } => *seen != SeenLogout::Conflict,
            other => other.wrote(),
        }
    }

    /// The debug line of a recorded or removed revocation (imports are not logged one by
    /// one).
    fn log(&self, kind: Kind, change: &Change) {
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

    fn outcome(self, change: &Change) -> Result<Outcome, StoreError> {
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

/// Inside a transaction: merges `incoming` into the record of `kind` at `key` and moves
/// its index entry. Returns the merged record and whether it is new.
fn merge_in_tx(
    tx: &StateTx<'_>,
    kind: Kind,
    key: &[u8],
    incoming: &Incoming<'_>,
    now: u64,
) -> TxResult<(StoredRecordV1, bool)> {
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
    let merged = policy::merge(old, incoming, now);
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
    Ok((merged, was_new))
}

impl RevocationStore {
    /// Applies one change durably (see [`apply_all`](Self::apply_all)).
    pub async fn apply(&self, change: &Change) -> Result<Outcome, StoreError> {
        let mut outcomes = self.apply_all(std::slice::from_ref(change)).await?;
        Ok(outcomes.pop().expect("one outcome per change"))
    }

    /// Applies `changes` in order in ONE transaction — all of them or, on an error, none
    /// — and returns once a commit covered them (durable, SPEC §6), one [`Outcome`] per
    /// change. Concurrent callers share commits (group commit).
    pub async fn apply_all(&self, changes: &[Change]) -> Result<Vec<Outcome>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let (outcomes, needs_commit) = self.write(changes)?;
        if needs_commit {
            self.flush().await?;
        }
        Ok(outcomes)
    }

    /// Steps 1–3 of the module doc (not yet durable). Also says whether an answer must
    /// wait for a commit.
    fn write(&self, changes: &[Change]) -> Result<(Vec<Outcome>, bool), StoreError> {
        let h = self.handles()?;
        let now = self.inner.clock.now();
        let prepared = changes
            .iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>, _>>()?;
        let presence = &self.inner.presence;
        for (kb, key) in prepared.iter().filter_map(Prepared::adds) {
            presence.insert(kb, key);
        }
        let gate = self.gate();
        let seq = prepared
            .iter()
            .any(|p| p.removes().is_some())
            .then(|| self.reserve_commit_seq());
        let result = h.trees.transact(|tx| {
            let mut done = Vec::with_capacity(prepared.len());
            for p in &prepared {
                done.push(p.write(tx, now)?);
            }
            if let Some(seq) = seq.filter(|_| done.iter().any(Done::removed)) {
                raise_commit_seq(tx.meta, seq)?;
            }
            Ok(done)
        });
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                drop(gate);
                for (kb, key) in prepared.iter().filter_map(Prepared::adds) {
                    presence.remove(kb, key);
                }
                return Err(self.failed(e));
            }
        };
        let (mut added, mut removed) = ([0u64; 3], [0u64; 3]);
        for (p, d) in prepared.iter().zip(&done) {
            if let (Some((kb, _)), true) = (p.adds(), d.added()) {
                added[kb as usize] += 1;
            }
            if let (Some((kb, _)), true) = (p.removes(), d.removed()) {
                removed[kb as usize] += 1;
            }
        }
        for ((counter, a), r) in self.inner.counts.iter().zip(added).zip(removed) {
            if a > 0 {
                counter.fetch_add(a, Ordering::Relaxed);
            }
            if r > 0 {
                counter.fetch_sub(r, Ordering::Relaxed);
            }
        }
        drop(gate);
        for (p, d) in prepared.iter().zip(&done) {
            match (p.adds(), p.removes()) {
                (Some((kb, key)), _) if !d.added() => presence.remove(kb, key),
                (_, Some((kb, key))) if d.removed() => presence.remove(kb, key),
                _ => {}
            }
        }
        if done.iter().any(Done::wrote) {
            self.wrote();
        }
        let needs_commit = done.iter().any(Done::needs_commit);
        let mut outcomes = Vec::with_capacity(done.len());
        for ((d, p), change) in done.into_iter().zip(&prepared).zip(changes) {
            d.log(p.kind(), change);
            outcomes.push(d.outcome(change)?);
        }
        Ok((outcomes, needs_commit))
    }

    /// Records a revocation ([`Change::Revoke`]): merged with an existing record of the
    /// same key (the later `issued_before` and the later `expires_at` win; `revoked_at` is
    /// now; reason/source of the newest call). Returns the stored record once durable.
    pub async fn revoke(&self, rev: NewRevocation) -> Result<Record, StoreError> {
        match self.apply(&Change::Revoke(rev)).await? {
            Outcome::Revoked(record) => Ok(record),
            other => unreachable!("a revocation applied as {other:?}"),
        }
    }

    /// Imports whole records ([`Change::Import`] each; backup restore, seeding) in one
    /// transaction and one commit. Returns, per record, whether its key was new (`true`)
    /// or merged into an existing record (`false`).
    pub async fn import_records(&self, records: Vec<Record>) -> Result<Vec<bool>, StoreError> {
        let changes: Vec<Change> = records.into_iter().map(Change::Import).collect();
        let outcomes = self.apply_all(&changes).await?;
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Imported { new } => new,
                other => unreachable!("an import applied as {other:?}"),
            })
            .collect())
    }

    /// Records a back-channel logout ([`Change::Logout`]): the revocation and the logout
    /// token's `jti` in one transaction. Durable before it returns, except for a
    /// conflict, which wrote nothing.
    pub async fn record_logout(&self, logout: Logout) -> Result<SeenLogout, StoreError> {
        match self.apply(&Change::Logout(logout)).await? {
            Outcome::Logout(seen) => Ok(seen),
            other => unreachable!("a logout applied as {other:?}"),
        }
    }

    /// Removes a revocation ([`Change::Unrevoke`]: record and index together). `Ok(false)`
    /// if there was none. Durable before it returns.
    pub async fn unrevoke(
        &self,
        kind: Kind,
        issuer: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let change = Change::Unrevoke {
            kind,
            issuer: issuer.to_string(),
            value: value.to_string(),
        };
        match self.apply(&change).await? {
            Outcome::Unrevoked { removed } => Ok(removed),
            other => unreachable!("an unrevoke applied as {other:?}"),
        }
    }
}
