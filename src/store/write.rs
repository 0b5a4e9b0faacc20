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

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::change::{Change, Logout, NewRevocation, Outcome, SeenLogout};
use super::commit::raise_commit_seq;
use super::log::{
    encode_outbox, LogAck, LogEntry, LogOp, LogPosition, MAX_OPS_PER_ENTRY, META_LOG_POSITION,
    META_OUTBOX_SEQ,
};
use super::{abort, Kind, Record, RevocationStore, StateTx, StoreError, TxResult};

mod change_tx;
use change_tx::{Done, Prepared};

/// How a batch of changes is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No shared log (or a local clean-up): the merge of `policy.rs`, nothing logged.
    Single,
    /// Accepted by this node of a cluster: each change is resolved into the [`LogOp`] its
    /// log entry carries ([`policy::resolve`]), merged in with [`policy::join`] as every
    /// node will merge it, and the ops are written to the outbox in the same transaction.
    Logged,
    /// Read from the shared log: each op is merged with [`policy::join`] as it is (no
    /// replay check: the accepting node made it), together with the log position.
    FromLog,
}

/// What [`RevocationStore::write`] did.
struct Written {
    done: Vec<Done>,
    /// First and last outbox sequence written ([`Mode::Logged`] with something to log).
    outbox: Option<(u64, u64)>,
}

/// The part of a [`Mode::FromLog`] transaction beside the ops: the new position and the
/// own entries that came back (their outbox entries go).
struct FromLog<'a> {
    position: &'a LogPosition,
    own: Vec<u64>,
}

/// Inside a transaction: writes `ops` to the outbox, in entries of at most
/// [`MAX_OPS_PER_ENTRY`]; the first and last sequence taken.
fn outbox_in_tx(tx: &StateTx<'_>, ops: &[LogOp]) -> TxResult<(u64, u64)> {
    let mut seq = tx
        .meta
        .get(META_OUTBOX_SEQ)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes);
    let first = seq + 1;
    for chunk in ops.chunks(MAX_OPS_PER_ENTRY) {
        seq += 1;
        let value = match encode_outbox(chunk) {
            Ok(v) => v,
            Err(e) => return abort(e),
        };
        tx.outbox.insert(&seq.to_be_bytes()[..], value)?;
    }
    tx.meta.insert(META_OUTBOX_SEQ, &seq.to_be_bytes()[..])?;
    Ok((first, seq))
}

impl RevocationStore {
    /// Applies one change durably (see [`apply_all`](Self::apply_all)).
    pub async fn apply(&self, change: &Change) -> Result<Outcome, StoreError> {
        Ok(self.apply_acked(change).await?.0)
    }

    /// [`apply`](Self::apply), also saying what the shared log has of it.
    pub async fn apply_acked(&self, change: &Change) -> Result<(Outcome, LogAck), StoreError> {
        let (mut outcomes, ack) = self.apply_all_acked(std::slice::from_ref(change)).await?;
        Ok((outcomes.pop().expect("one outcome per change"), ack))
    }

    /// Applies `changes` in order in ONE transaction — all of them or, on an error, none
    /// — and returns once a commit covered them (durable, SPEC §6), one [`Outcome`] per
    /// change. Concurrent callers share commits (group commit). In a cluster
    /// ([`join_log`](Self::join_log)) the changes are also written to the outbox in that
    /// transaction, and the answer waits (bounded) for their append to the shared log.
    pub async fn apply_all(&self, changes: &[Change]) -> Result<Vec<Outcome>, StoreError> {
        Ok(self.apply_all_acked(changes).await?.0)
    }

    /// [`apply_all`](Self::apply_all), also saying what the shared log has of them.
    pub async fn apply_all_acked(
        &self,
        changes: &[Change],
    ) -> Result<(Vec<Outcome>, LogAck), StoreError> {
        if changes.is_empty() {
            return Ok((Vec::new(), LogAck::Local));
        }
        let mode = if self.inner.log.get().is_some() {
            Mode::Logged
        } else {
            Mode::Single
        };
        let prepared = changes
            .iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>, _>>()?;
        let written = self.write(&prepared, mode, None)?;
        let needs_commit = written.outbox.is_some() || written.done.iter().any(Done::needs_commit);
        let mut outcomes = Vec::with_capacity(written.done.len());
        for ((d, p), change) in written.done.into_iter().zip(&prepared).zip(changes) {
            d.log(p.kind(), change);
            outcomes.push(d.outcome(change)?);
        }
        if needs_commit {
            self.flush().await?;
        }
        let ack = match written.outbox {
            Some((_, last)) => self.logged(last).await,
            None => LogAck::Local,
        };
        Ok((outcomes, ack))
    }

    /// Applies entries read from the shared log, in order, in ONE transaction together
    /// with `position` (the id of the last of them), and drops this node's own entries
    /// from the outbox. An op that cannot be stored (a key beyond the store's bounds:
    /// no node of this version writes one) is skipped with a warning. Not yet durable: the
    /// next commit covers it (the follower commits before it reads on). With `seen`, the
    /// keys of the records applied are added to it (a resync). Returns the ops applied.
    pub fn apply_log(
        &self,
        entries: &[LogEntry],
        position: &LogPosition,
        seen: Option<&mut HashSet<(u8, Vec<u8>)>>,
    ) -> Result<usize, StoreError> {
        let mut prepared = Vec::new();
        for entry in entries {
            for op in &entry.ops {
                match Prepared::from_op(op) {
                    Ok(p) => prepared.push(p),
                    Err(e) => {
                        let (kind, _, _) = op.key();
                        tracing::warn!(entry = %entry.id, node = %entry.node, %kind, error = %e, "log op skipped: it cannot be stored");
                    }
                }
            }
        }
        let node = self.inner.log.get().map(|l| l.node_id().to_string());
        let own = entries
            .iter()
            .filter(|e| {
                e.seq > 0 && e.store == self.inner.store_id && Some(&e.node) == node.as_ref()
            })
            .map(|e| e.seq)
            .collect();
        self.write(&prepared, Mode::FromLog, Some(FromLog { position, own }))?;
        if let Some(seen) = seen {
            seen.extend(
                prepared
                    .iter()
                    .filter_map(Prepared::adds)
                    .map(|(kb, k)| (kb, k.to_vec())),
            );
        }
        Ok(prepared.len())
    }

    /// Removes each record `(kind, key, stored value)` still holding that value, locally
    /// (nothing logged), durably. Returns how many were removed.
    pub(super) async fn remove_unchanged(
        &self,
        batch: Vec<(Kind, Vec<u8>, Vec<u8>)>,
    ) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let prepared: Vec<Prepared<'_>> = batch
            .into_iter()
            .map(|(kind, key, was)| Prepared::Prune { kind, key, was })
            .collect();
        let written = self.write(&prepared, Mode::Single, None)?;
        self.flush().await?;
        Ok(written.done.iter().filter(|d| d.removed()).count() as u64)
    }

    /// Steps 1–3 of the module doc (not yet durable), in `mode`; `from_log` for
    /// [`Mode::FromLog`].
    fn write(
        &self,
        prepared: &[Prepared<'_>],
        mode: Mode,
        from_log: Option<FromLog<'_>>,
    ) -> Result<Written, StoreError> {
        let h = self.handles()?;
        let now = self.inner.clock.now();
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
            let mut ops = Vec::new();
            for p in prepared {
                let (d, op) = p.write(tx, now, mode)?;
                done.push(d);
                ops.extend(op);
            }
            if let Some(seq) = seq.filter(|_| done.iter().any(Done::removed)) {
                raise_commit_seq(tx.meta, seq)?;
            }
            let outbox = if ops.is_empty() {
                None
            } else {
                Some(outbox_in_tx(tx, &ops)?)
            };
            let mut came_back = 0u64;
            if let Some(f) = &from_log {
                tx.meta.insert(META_LOG_POSITION, f.position.encode())?;
                for s in &f.own {
                    if tx.outbox.remove(&s.to_be_bytes()[..])?.is_some() {
                        came_back += 1;
                    }
                }
            }
            Ok((done, outbox, came_back))
        });
        let (done, outbox, came_back) = match result {
            Ok(r) => r,
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
        if done.iter().any(Done::wrote) || outbox.is_some() || from_log.is_some() {
            self.wrote();
        }
        let inner = &self.inner;
        if let Some((first, last)) = outbox {
            // After `wrote`: a commit that starts once this is visible covers the entry.
            inner
                .outbox_len
                .fetch_add(last - first + 1, Ordering::Relaxed);
            inner.outbox_committed.fetch_max(last, Ordering::SeqCst);
        }
        if came_back > 0 {
            inner.outbox_len.fetch_sub(came_back, Ordering::Relaxed);
        }
        Ok(Written { done, outbox })
    }

    /// Records a revocation ([`Change::Revoke`]): merged with an existing record of the
    /// same key (the later `issued_before` and the later `expires_at` win; `revoked_at` is
    /// now; reason/source of the newest call). Returns the stored record once durable.
    pub async fn revoke(&self, rev: NewRevocation) -> Result<Record, StoreError> {
        Ok(self.revoke_acked(rev).await?.0)
    }

    /// [`revoke`](Self::revoke), with what the shared log has of it (an answer's
    /// `Revgate-Cluster`).
    pub async fn revoke_acked(&self, rev: NewRevocation) -> Result<(Record, LogAck), StoreError> {
        match self.apply_acked(&Change::Revoke(rev)).await? {
            (Outcome::Revoked(record), ack) => Ok((record, ack)),
            (other, _) => unreachable!("a revocation applied as {other:?}"),
        }
    }

    /// Imports whole records ([`Change::Import`] each; backup restore, seeding) in one
    /// transaction and one commit. Returns, per record, whether its key was new (`true`)
    /// or merged into an existing record (`false`).
    pub async fn import_records(&self, records: Vec<Record>) -> Result<Vec<bool>, StoreError> {
        Ok(self.import_records_acked(records).await?.0)
    }

    /// [`import_records`](Self::import_records), also saying what the shared log has of them.
    pub async fn import_records_acked(
        &self,
        records: Vec<Record>,
    ) -> Result<(Vec<bool>, LogAck), StoreError> {
        let changes: Vec<Change> = records.into_iter().map(Change::Import).collect();
        let (outcomes, ack) = self.apply_all_acked(&changes).await?;
        let new = outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Imported { new } => new,
                other => unreachable!("an import applied as {other:?}"),
            })
            .collect();
        Ok((new, ack))
    }

    /// Records a back-channel logout ([`Change::Logout`]): the revocation and the logout
    /// token's `jti` in one transaction. Durable before it returns, except for a
    /// conflict, which wrote nothing.
    pub async fn record_logout(&self, logout: Logout) -> Result<SeenLogout, StoreError> {
        Ok(self.record_logout_acked(logout).await?.0)
    }

    /// [`record_logout`](Self::record_logout), with what the shared log has of it.
    pub async fn record_logout_acked(
        &self,
        logout: Logout,
    ) -> Result<(SeenLogout, LogAck), StoreError> {
        match self.apply_acked(&Change::Logout(logout)).await? {
            (Outcome::Logout(seen), ack) => Ok((seen, ack)),
            (other, _) => unreachable!("a logout applied as {other:?}"),
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
