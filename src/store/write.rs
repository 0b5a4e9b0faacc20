//! Writes: revocations, imports, back-channel logouts, unrevokes.

use std::sync::atomic::Ordering;

use sled::transaction::Transactional;

use super::commit::raise_commit_seq;
use super::record::StoredRecordV1;
use super::{
    abort, keys, policy, record, tx_error, Kind, Record, RevocationStore, Source, StoreError,
    TxResult,
};

/// A revocation to record (merged with any existing record of the same key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRevocation {
    /// jti, sid or sub.
    pub kind: Kind,
    /// The issuer it is scoped to.
    pub issuer: String,
    /// The jti / sid / sub value (`sha256:...` for jti-less tokens).
    pub value: String,
    /// For sid/sub: tokens with `iat <= issued_before` are dead. `None` for jti.
    pub issued_before: Option<u64>,
    /// When the record may be purged (seconds since the epoch).
    pub expires_at: u64,
    /// Free text from the operator.
    pub reason: Option<String>,
    /// Who revoked.
    pub source: Source,
}

/// Outcome of remembering a logout token's `jti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenLogout {
    /// First time: recorded.
    New,
    /// The same token (same fingerprint) was seen before.
    Repeat,
    /// Another token with the same `jti` was seen before.
    Conflict,
}

/// Inside a transaction over a kind tree and the expiry index: merges `rev` into the
/// record at `key` and moves its index entry. Returns the merged record and whether it is
/// new. Shared by plain revocations and back-channel logouts.
fn merge_in_tx(
    records: &sled::transaction::TransactionalTree,
    expiry: &sled::transaction::TransactionalTree,
    key: &[u8],
    rev: &NewRevocation,
    now: u64,
    revoked_at: Option<u64>,
) -> TxResult<(StoredRecordV1, bool)> {
    let kind = keys::kind_byte(rev.kind);
    let old = match records.get(key)? {
        Some(bytes) => match record::decode_stored(&bytes) {
            Ok(old) => Some(old),
            Err(e) => return abort(e),
        },
        None => None,
    };
    let old_expiry = old.as_ref().map(|o| o.expires_at);
    let was_new = old.is_none();
    let merged = policy::merge(old, rev, now, revoked_at);
    let value = match record::encode_stored(&merged) {
        Ok(v) => v,
        Err(e) => return abort(e),
    };
    if let Some(old_expiry) = old_expiry.filter(|&e| e != merged.expires_at) {
        expiry.remove(keys::index_key(old_expiry, kind, key))?;
    }
    // Always (re)written: also heals a missing index entry.
    expiry.insert(
        keys::index_key(merged.expires_at, kind, key),
        sled::IVec::default(),
    )?;
    records.insert(key, value)?;
    Ok((merged, was_new))
}

impl RevocationStore {
    /// Records a revocation, merging with an existing record of the same key (the later
    /// `issued_before` and the later `expires_at` win; `revoked_at` is now; reason/source
    /// of the newest call). Returns the stored record once it is durable.
    pub async fn revoke(&self, rev: NewRevocation) -> Result<Record, StoreError> {
        let record = self.apply_revocation(&rev)?;
        self.flush().await?;
        Ok(record)
    }

    /// Several revocations, one durable flush for all (bulk paths).
    pub async fn revoke_many(&self, revs: Vec<NewRevocation>) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(revs.len());
        for rev in &revs {
            match self.apply_revocation(rev) {
                Ok(record) => out.push(record),
                Err(e) => {
                    // Do not leave the ones already applied waiting for the background
                    // flush; the caller still gets the error for the batch.
                    if !out.is_empty() {
                        if let Err(fe) = self.flush().await {
                            tracing::warn!(error = %fe, "flush after a failed bulk revocation failed");
                        }
                    }
                    return Err(e);
                }
            }
        }
        self.flush().await?;
        Ok(out)
    }

    /// Merges one revocation into the store in one transaction over its kind tree and the
    /// expiry index (not yet durable). Updates the counter and the write sequence.
    fn apply_revocation(&self, rev: &NewRevocation) -> Result<Record, StoreError> {
        self.apply_merge(rev, None).map(|(record, _)| record)
    }

    /// [`apply_revocation`](Self::apply_revocation) with an optional preserved
    /// `revoked_at` (imports); also says whether the key was new.
    fn apply_merge(
        &self,
        rev: &NewRevocation,
        revoked_at: Option<u64>,
    ) -> Result<(Record, bool), StoreError> {
        let h = self.handles()?;
        let key = keys::record_key(&rev.issuer, &rev.value)?;
        let now = self.inner.clock.now();
        let tree = h.trees.tree(rev.kind);
        let kb = keys::kind_byte(rev.kind);
        // Raised before the commit: no reader may see the record while the filter says no.
        self.inner.presence.insert(kb, &key);
        let _gate = self.gate();
        let result = (tree, &h.trees.expiry)
            .transaction(|(records, expiry)| {
                merge_in_tx(records, expiry, &key, rev, now, revoked_at)
            })
            .map_err(|e| self.failed(tx_error(e)));
        let (merged, was_new) = match result {
            Ok(v) => v,
            Err(e) => {
                self.inner.presence.remove(kb, &key);
                return Err(e);
            }
        };
        if !was_new {
            self.inner.presence.remove(kb, &key);
        }
        self.recorded(rev, was_new);
        Ok((
            merged.into_record(rev.kind, &rev.issuer, &rev.value)?,
            was_new,
        ))
    }

    /// Bookkeeping after a committed revocation: the per-kind counter and the write
    /// sequence of the group commit.
    fn recorded(&self, rev: &NewRevocation, was_new: bool) {
        if was_new {
            self.inner.counts[keys::kind_byte(rev.kind) as usize].fetch_add(1, Ordering::Relaxed);
        }
        self.wrote();
        tracing::debug!(kind = %rev.kind, merged = !was_new, "revocation recorded");
    }

    /// Imports whole records (backup restore, seeding): each merges as a revocation would
    /// (later `issued_before` and later `expires_at` win) but keeps its own `revoked_at`,
    /// `reason` and `source`. One durable flush for the batch. Returns, per record,
    /// whether its key was new (`true`) or merged into an existing record (`false`).
    pub async fn import_records(&self, records: &[Record]) -> Result<Vec<bool>, StoreError> {
        let h = self.handles()?;
        let now = self.inner.clock.now();
        let mut out = vec![false; records.len()];
        let mut failure = None;
        // One transaction per kind for the whole batch (record and index still change
        // together): per-record transactions made imports ten times slower.
        for kind in Kind::ALL {
            let items: Vec<(usize, Vec<u8>, NewRevocation)> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.kind == kind)
                .map(|(i, r)| {
                    let key = keys::record_key(&r.issuer, &r.value)?;
                    let rev = NewRevocation {
                        kind: r.kind,
                        issuer: r.issuer.clone(),
                        value: r.value.clone(),
                        issued_before: r.issued_before,
                        expires_at: r.expires_at,
                        reason: r.reason.clone(),
                        source: r.source,
                    };
                    Ok((i, key, rev))
                })
                .collect::<Result<_, StoreError>>()?;
            if items.is_empty() {
                continue;
            }
            let kb = keys::kind_byte(kind);
            for (_, key, _) in &items {
                self.inner.presence.insert(kb, key);
            }
            let gate = self.gate();
            let result = (h.trees.tree(kind), &h.trees.expiry)
                .transaction(|(tree, expiry)| {
                    let mut new = Vec::with_capacity(items.len());
                    for (i, key, rev) in &items {
                        let revoked_at = Some(records[*i].revoked_at);
                        let (_, was_new) = merge_in_tx(tree, expiry, key, rev, now, revoked_at)?;
                        new.push(was_new);
                    }
                    Ok(new)
                })
                .map_err(|e| self.failed(tx_error(e)));
            match result {
                Ok(new) => {
                    let mut added = 0;
                    for ((i, key, _), was_new) in items.iter().zip(new) {
                        out[*i] = was_new;
                        if was_new {
                            added += 1;
                        } else {
                            self.inner.presence.remove(kb, key);
                        }
                    }
                    self.inner.counts[kb as usize].fetch_add(added, Ordering::Relaxed);
                    drop(gate);
                    self.wrote();
                }
                Err(e) => {
                    drop(gate);
                    for (_, key, _) in &items {
                        self.inner.presence.remove(kb, key);
                    }
                    failure = Some(e);
                    break;
                }
            }
        }
        self.flush().await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Records a back-channel logout: the revocation `rev` and its logout token's `jti`
    /// (kept until `jti_expires_at`) in ONE transaction. A token whose `jti` another
    /// token already used records nothing (`Conflict`), even when both arrive at once;
    /// the same token again changes nothing (`Repeat`). Durable before it returns,
    /// except for a conflict, which wrote nothing.
    pub async fn record_logout(
        &self,
        rev: &NewRevocation,
        jti: &str,
        fingerprint: [u8; 32],
        jti_expires_at: u64,
    ) -> Result<SeenLogout, StoreError> {
        let h = self.handles()?;
        let rkey = keys::record_key(&rev.issuer, &rev.value)?;
        let jkey = keys::record_key(&rev.issuer, jti)?;
        let seen_value = keys::encode_logout(&fingerprint, jti_expires_at);
        let now = self.inner.clock.now();
        let t = &h.trees;
        let kb = keys::kind_byte(rev.kind);
        self.inner.presence.insert(kb, &rkey);
        let gate = self.gate();
        let outcome = (h.trees.tree(rev.kind), &t.logout, &t.expiry)
            .transaction(|(records, seen, expiry)| {
                if let Some(old) = seen.get(&jkey)? {
                    let (old_fp, old_exp) = match keys::decode_logout(&old) {
                        Ok(v) => v,
                        Err(e) => return abort(e),
                    };
                    if old_exp >= now {
                        return Ok(if old_fp == fingerprint {
                            (SeenLogout::Repeat, false)
                        } else {
                            (SeenLogout::Conflict, false)
                        });
                    }
                    expiry.remove(keys::index_key(old_exp, keys::KIND_LOGOUT, &jkey))?;
                }
                let (_, was_new) = merge_in_tx(records, expiry, &rkey, rev, now, None)?;
                seen.insert(jkey.as_slice(), seen_value.as_slice())?;
                expiry.insert(
                    keys::index_key(jti_expires_at, keys::KIND_LOGOUT, &jkey),
                    sled::IVec::default(),
                )?;
                Ok((SeenLogout::New, was_new))
            })
            .map_err(|e| self.failed(tx_error(e)));
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                self.inner.presence.remove(kb, &rkey);
                return Err(e);
            }
        };
        if !matches!(outcome, (SeenLogout::New, true)) {
            self.inner.presence.remove(kb, &rkey);
        }
        match outcome {
            (SeenLogout::Conflict, _) => return Ok(SeenLogout::Conflict),
            (SeenLogout::New, was_new) => self.recorded(rev, was_new),
            (SeenLogout::Repeat, _) => {}
        }
        drop(gate);
        // Also for a repeat: the first delivery may still be waiting for its flush, and
        // this 200 must not overtake it. Cheap when already covered.
        self.flush().await?;
        Ok(outcome.0)
    }

    /// Removes a revocation (record and index together). `Ok(false)` if there was none.
    /// Durable before it returns.
    pub async fn unrevoke(
        &self,
        kind: Kind,
        issuer: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let h = self.handles()?;
        let key = match keys::record_key(issuer, value) {
            Ok(key) => key,
            // Such a key cannot have been stored.
            Err(StoreError::Invalid(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let kb = keys::kind_byte(kind);
        let gate = self.gate();
        let seq = self.reserve_commit_seq();
        let removed = (h.trees.tree(kind), &h.trees.expiry, &h.trees.meta)
            .transaction(|(records, expiry, meta)| {
                let Some(bytes) = records.remove(key.as_slice())? else {
                    return Ok(false);
                };
                raise_commit_seq(meta, seq)?;
                // An undecodable record is still removed (the operator's way out); its
                // index entry, if any, is then dropped by the sweeper when due.
                if let Ok(head) = record::decode_head(&bytes) {
                    expiry.remove(keys::index_key(head.expires_at, kb, &key))?;
                }
                Ok(true)
            })
            .map_err(|e| self.failed(tx_error(e)));
        if let Ok(true) = removed {
            self.inner.counts[kb as usize].fetch_sub(1, Ordering::Relaxed);
        }
        drop(gate);
        let removed = removed?;
        if removed {
            self.inner.presence.remove(kb, &key);
            self.wrote();
            self.flush().await?;
            tracing::debug!(%kind, "revocation removed");
        }
        Ok(removed)
    }

    /// Read-only replay check for a logout token: `None` when its `jti` was not seen (or
    /// the entry expired), else whether this is the same token (`Repeat`) or another
    /// one reusing the `jti` (`Conflict`). Lets the endpoint refuse before recording.
    pub fn logout_jti_status(
        &self,
        issuer: &str,
        jti: &str,
        fingerprint: [u8; 32],
    ) -> Result<Option<SeenLogout>, StoreError> {
        let h = self.handles()?;
        let key = keys::record_key(issuer, jti)?;
        let now = self.inner.clock.now();
        match h.trees.logout.get(&key)? {
            None => Ok(None),
            Some(old) => {
                let (old_fp, old_exp) = keys::decode_logout(&old)?;
                if old_exp < now {
                    Ok(None)
                } else if old_fp == fingerprint {
                    Ok(Some(SeenLogout::Repeat))
                } else {
                    Ok(Some(SeenLogout::Conflict))
                }
            }
        }
    }

    /// Remembers a back-channel logout token's `jti` until `expires_at`. `fingerprint` is
    /// the SHA-256 of the whole logout token, to tell a repeat from a conflict. Durable.
    /// An entry whose own `expires_at` has passed (not yet swept) counts as absent.
    pub async fn remember_logout_jti(
        &self,
        issuer: &str,
        jti: &str,
        fingerprint: [u8; 32],
        expires_at: u64,
    ) -> Result<SeenLogout, StoreError> {
        let h = self.handles()?;
        let key = keys::record_key(issuer, jti)?;
        let now = self.inner.clock.now();
        let value = keys::encode_logout(&fingerprint, expires_at);
        let t = &h.trees;
        let outcome = (&t.logout, &t.expiry)
            .transaction(|(seen, expiry)| {
                if let Some(old) = seen.get(&key)? {
                    let (old_fp, old_exp) = match keys::decode_logout(&old) {
                        Ok(v) => v,
                        Err(e) => return abort(e),
                    };
                    if old_exp >= now {
                        return Ok(if old_fp == fingerprint {
                            SeenLogout::Repeat
                        } else {
                            SeenLogout::Conflict
                        });
                    }
                    expiry.remove(keys::index_key(old_exp, keys::KIND_LOGOUT, &key))?;
                }
                seen.insert(key.as_slice(), value.as_slice())?;
                expiry.insert(
                    keys::index_key(expires_at, keys::KIND_LOGOUT, &key),
                    sled::IVec::default(),
                )?;
                Ok(SeenLogout::New)
            })
            .map_err(|e| self.failed(tx_error(e)))?;
        if outcome == SeenLogout::New {
            self.wrote();
        }
        // Also for a repeat: the first delivery may still be waiting for its flush, and
        // the caller's 200 must not overtake it. Cheap when already covered.
        if outcome != SeenLogout::Conflict {
            self.flush().await?;
        }
        Ok(outcome)
    }
}
