//! The store's side of the shared log (SPEC §8; the Redis side is [`crate::cluster`]):
//! what a log entry carries ([`LogOp`]), the durable outbox of changes accepted here, the
//! position of the last entry applied, and the link a writer waits on until its change
//! is appended ([`LogLink`]).
//!
//! # Layout
//!
//! - tree `outbox`: key = `u64 BE` outbox sequence (this store's own, never reused),
//!   value = version byte ‖ bincode(`OutboxValueV1`): the ops of one log entry as JSON,
//!   their latest expiry and the digests of the keys they unrevoke. Written in the
//!   transaction of the change itself (`write.rs`, mode `Logged`), removed in the
//!   transaction that applies the entry when it comes back from the stream — so an entry
//!   leaves the outbox only once this node has seen it in the shared log.
//! - `meta` `outbox_seq` (`u64 BE`): the last outbox sequence taken.
//! - `meta` `log_position`: version ‖ epoch length ‖ epoch ‖ `u64 BE` ms ‖ `u64 BE` seq
//!   ‖ flags: the stream id of the last entry applied, in which epoch of the stream (a
//!   Redis that lost its data starts a new one), and whether a resync is under way.
//!   Written in the transaction that applies the entries (mode `FromLog`).
//! - `meta` `log_reseeded`: the epoch this store's records were last published into.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::{keys, Kind, Record, RevocationStore, StoreError};

/// Most ops one log entry carries: a batch of changes (an import) is split into entries
/// of at most this many, which bounds what a follower holds per entry.
pub const MAX_OPS_PER_ENTRY: usize = 256;

/// `meta` key of the last outbox sequence taken.
pub(super) const META_OUTBOX_SEQ: &[u8] = b"outbox_seq";
/// `meta` key of the log position.
pub(super) const META_LOG_POSITION: &[u8] = b"log_position";
/// `meta` key of the epoch the records were last published into.
const META_LOG_RESEEDED: &[u8] = b"log_reseeded";

/// Version byte of an outbox value.
const OUTBOX_VERSION_V1: u8 = 1;
/// Version byte of the log position.
const POSITION_VERSION_V1: u8 = 1;
/// Position flag: a resync (re-read of the whole stream, then removal of what it no
/// longer holds) is under way.
const FLAG_RESYNC: u8 = 1;

/// One change as a log entry carries it, resolved by the node that accepted it (its
/// `revoked_at`, its cutoff), so that applying it anywhere stores the same record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LogOp {
    /// A revocation or an imported record, merged with
    /// [`join`](super::policy::join) into the record of its key.
    Record(Record),
    /// A back-channel logout: its revocation, and its logout token's `jti` remembered
    /// (replay defence) on every node.
    Logout {
        /// The revocation (`sid` or `sub`).
        record: Record,
        /// The logout token's `jti`.
        jti: String,
        /// SHA-256 of the whole logout token, lower-case hex.
        #[serde(with = "hex32")]
        fingerprint: [u8; 32],
        /// Until when the `jti` is remembered.
        jti_expires_at: u64,
    },
    /// The removal of a revocation, applied in stream order.
    Unrevoke {
        /// jti, sid or sub.
        kind: Kind,
        /// The issuer it is scoped to.
        issuer: String,
        /// The revoked value.
        value: String,
    },
}

impl LogOp {
    /// When the record this op carries can no longer be in force (0 for an unrevoke).
    pub fn expires_at(&self) -> u64 {
        match self {
            LogOp::Record(r) => r.expires_at,
            LogOp::Logout {
                record,
                jti_expires_at,
                ..
            } => record.expires_at.max(*jti_expires_at),
            LogOp::Unrevoke { .. } => 0,
        }
    }

    /// The kind and issuer/value of the key this op is about.
    pub fn key(&self) -> (Kind, &str, &str) {
        match self {
            LogOp::Record(r) | LogOp::Logout { record: r, .. } => (r.kind, &r.issuer, &r.value),
            LogOp::Unrevoke {
                kind,
                issuer,
                value,
            } => (*kind, issuer, value),
        }
    }
}

/// A short digest naming a record key in the stream (`u` field of an entry): the first 16
/// bytes of SHA-256 over kind ‖ issuer length ‖ issuer ‖ value, lower-case hex.
pub fn key_digest(kind: Kind, issuer: &str, value: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update([keys::kind_byte(kind)]);
    h.update((issuer.len() as u64).to_be_bytes());
    h.update(issuer.as_bytes());
    h.update(value.as_bytes());
    hex(&h.finalize()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// serde of a 32-byte digest as lower-case hex.
mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bad = || serde::de::Error::custom("fingerprint: expected 64 hex digits");
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(out)
    }
}

/// A Redis stream entry id, `ms-seq`; ordered as the stream orders them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds (the Redis server's clock when the entry was appended).
    pub ms: u64,
    /// Sequence within that millisecond.
    pub seq: u64,
}

impl StreamId {
    /// `0-0`: before every entry.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for StreamId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a stream id (ms-seq)");
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(StreamId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// Where this node is in the shared log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPosition {
    /// The stream's epoch (a random id the first node writes beside an empty stream; a
    /// Redis that lost its data gets a new one).
    pub epoch: String,
    /// The last entry applied ([`StreamId::ZERO`]: none yet).
    pub id: StreamId,
    /// A resync is under way: the stream is being re-read from its start, and what it no
    /// longer holds is removed at the end ([`RevocationStore::prune_unseen`]).
    pub resync: bool,
}

impl LogPosition {
    pub(super) fn encode(&self) -> Vec<u8> {
        let epoch = &self.epoch.as_bytes()[..self.epoch.len().min(u8::MAX as usize)];
        let mut v = Vec::with_capacity(2 + epoch.len() + 17);
        v.push(POSITION_VERSION_V1);
        v.push(epoch.len() as u8);
        v.extend_from_slice(epoch);
        v.extend_from_slice(&self.id.ms.to_be_bytes());
        v.extend_from_slice(&self.id.seq.to_be_bytes());
        v.push(if self.resync { FLAG_RESYNC } else { 0 });
        v
    }

    fn decode(bytes: &[u8]) -> Result<LogPosition, StoreError> {
        let corrupt = || StoreError::Corrupt("malformed log position".to_string());
        let (&version, rest) = bytes.split_first().ok_or_else(corrupt)?;
        if version != POSITION_VERSION_V1 {
            return Err(StoreError::Corrupt(format!(
                "unknown log position version {version}"
            )));
        }
        let (&len, rest) = rest.split_first().ok_or_else(corrupt)?;
        let len = len as usize;
        if rest.len() != len + 17 {
            return Err(corrupt());
        }
        let epoch = std::str::from_utf8(&rest[..len]).map_err(|_| corrupt())?;
        let word = |at: usize| u64::from_be_bytes(rest[at..at + 8].try_into().expect("8 bytes"));
        Ok(LogPosition {
            epoch: epoch.to_string(),
            id: StreamId {
                ms: word(len),
                seq: word(len + 8),
            },
            resync: rest[len + 16] & FLAG_RESYNC != 0,
        })
    }
}

/// One entry read from the shared log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its stream id.
    pub id: StreamId,
    /// The node that appended it.
    pub node: String,
    /// That node's store id (with `node`, how a node recognises its own entries).
    pub store: u64,
    /// Its outbox sequence on that node (0: not from an outbox — a republished snapshot,
    /// a carried-forward record).
    pub seq: u64,
    /// The changes, in order.
    pub ops: Vec<LogOp>,
}

/// A change accepted here, waiting in the outbox to be appended to the shared log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its outbox sequence.
    pub seq: u64,
    /// Its ops as the JSON array the stream entry carries.
    pub ops: String,
    /// The latest expiry among its ops (0: only unrevokes).
    pub expires_at: u64,
    /// [`key_digest`]s of the keys it unrevokes, space-separated (empty: none).
    pub unrevoked: String,
}

/// The stored form of an outbox entry (after the version byte).
#[derive(Debug, Serialize, Deserialize)]
struct OutboxValueV1 {
    expires_at: u64,
    unrevoked: String,
    ops: String,
}

/// Encodes `ops` as one outbox value.
pub(super) fn encode_outbox(ops: &[LogOp]) -> Result<Vec<u8>, StoreError> {
    let value = OutboxValueV1 {
        expires_at: ops.iter().map(LogOp::expires_at).max().unwrap_or(0),
        unrevoked: unrevoked_digests(ops),
        ops: serde_json::to_string(ops)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode log ops: {e}")))?,
    };
    let mut out = vec![OUTBOX_VERSION_V1];
    out.extend(
        bincode::serde::encode_to_vec(&value, bincode::config::standard())
            .map_err(|e| StoreError::Corrupt(format!("cannot encode outbox entry: {e}")))?,
    );
    Ok(out)
}

/// The `u` field of an entry: digests of the keys its ops unrevoke, space-separated.
pub fn unrevoked_digests(ops: &[LogOp]) -> String {
    ops.iter()
        .filter(|op| matches!(op, LogOp::Unrevoke { .. }))
        .map(|op| {
            let (kind, issuer, value) = op.key();
            key_digest(kind, issuer, value)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn decode_outbox(seq: u64, bytes: &[u8]) -> Result<OutboxEntry, StoreError> {
    match bytes.split_first() {
        Some((&OUTBOX_VERSION_V1, body)) => {
            let (v, _): (OutboxValueV1, usize) =
                bincode::serde::decode_from_slice(body, bincode::config::standard())
                    .map_err(|e| StoreError::Corrupt(format!("outbox entry {seq}: {e}")))?;
            Ok(OutboxEntry {
                seq,
                ops: v.ops,
                expires_at: v.expires_at,
                unrevoked: v.unrevoked,
            })
        }
        _ => Err(StoreError::Corrupt(format!(
            "outbox entry {seq}: unknown version"
        ))),
    }
}

/// What a `2xx` can say about the shared log (answer header `Revgate-Cluster`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogAck {
    /// Not in a cluster, or nothing was logged (a refused logout token).
    #[default]
    Local,
    /// Durable here and appended to the shared log.
    Appended,
    /// Durable here, waiting in the outbox: Redis is unreachable (or slow); it is appended
    /// once Redis answers, in order.
    Queued,
}

impl LogAck {
    /// What an answer covering both says: queued if either is, else appended if either
    /// is.
    pub fn and(self, other: LogAck) -> LogAck {
        match (self, other) {
            (LogAck::Queued, _) | (_, LogAck::Queued) => LogAck::Queued,
            (LogAck::Appended, _) | (_, LogAck::Appended) => LogAck::Appended,
            _ => LogAck::Local,
        }
    }

    /// The answer header naming it.
    pub const HEADER: &'static str = "revgate-cluster";

    /// `appended` / `queued`; `None` for [`LogAck::Local`].
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            LogAck::Local => None,
            LogAck::Appended => Some("appended"),
            LogAck::Queued => Some("queued"),
        }
    }

    /// Sets [`HEADER`](Self::HEADER) on an answer's `headers` (nothing for
    /// [`LogAck::Local`]): the one place both the admin API and the public endpoints say
    /// what the shared log has of the change they answer.
    pub fn mark(self, headers: &mut http::HeaderMap) {
        if let Some(v) = self.header_value() {
            headers.insert(Self::HEADER, http::HeaderValue::from_static(v));
        }
    }
}

/// The link between the writers of a clustered store and its publisher: writers wake
/// the publisher and wait (bounded) until their entry is appended; the publisher says how
/// far it got and whether Redis answers.
#[derive(Debug)]
pub struct LogLink {
    node_id: String,
    /// Longest wait of a writer for its append before it answers "queued".
    append_wait: Duration,
    wake: tokio::sync::Notify,
    appended: tokio::sync::watch::Sender<u64>,
    online: tokio::sync::watch::Sender<bool>,
}

impl LogLink {
    /// A link for node `node_id`; writers wait at most `append_wait` for their append.
    pub fn new(node_id: impl Into<String>, append_wait: Duration) -> Arc<LogLink> {
        Arc::new(LogLink {
            node_id: node_id.into(),
            append_wait,
            wake: tokio::sync::Notify::new(),
            appended: tokio::sync::watch::channel(0).0,
            online: tokio::sync::watch::channel(false).0,
        })
    }

    /// This node's id in the log.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Publisher: every outbox entry up to `seq` is appended.
    pub fn confirm(&self, seq: u64) {
        self.appended.send_if_modified(|v| {
            let raise = seq > *v;
            if raise {
                *v = seq;
            }
            raise
        });
    }

    /// Publisher: whether Redis answers. Offline, writers answer "queued" at once.
    pub fn set_online(&self, online: bool) {
        self.online
            .send_if_modified(|v| std::mem::replace(v, online) != online);
    }

    /// Whether the publisher last found Redis answering.
    pub fn is_online(&self) -> bool {
        *self.online.borrow()
    }

    /// Publisher: waits until a writer says a durable outbox entry is waiting.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Writers: a durable outbox entry is waiting.
    fn wake(&self) {
        self.wake.notify_one();
    }

    /// Writers: waits until outbox entry `seq` is appended, Redis is found unreachable, or
    /// the wait bound passes.
    async fn wait_appended(&self, seq: u64) -> LogAck {
        let mut appended = self.appended.subscribe();
        let mut online = self.online.subscribe();
        let wait = async {
            loop {
                if *appended.borrow_and_update() >= seq {
                    return LogAck::Appended;
                }
                if !*online.borrow_and_update() {
                    return LogAck::Queued;
                }
                tokio::select! {
                    r = appended.changed() => if r.is_err() { return LogAck::Queued },
                    r = online.changed() => if r.is_err() { return LogAck::Queued },
                }
            }
        };
        tokio::time::timeout(self.append_wait, wait)
            .await
            .unwrap_or(LogAck::Queued)
    }
}

impl RevocationStore {
    /// Makes this store part of a cluster: from now on every change applied through
    /// [`apply_all`](Self::apply_all) is resolved into log ops and written to the outbox
    /// in its own transaction, and its answer waits (bounded) for the append. Called once,
    /// before any write; later calls are ignored.
    pub fn join_log(&self, link: Arc<LogLink>) {
        if self.inner.log.set(link).is_err() {
            tracing::warn!("the store is already linked to a shared log");
        }
    }

    /// The shared log this store writes to, if any.
    pub fn log_link(&self) -> Option<&Arc<LogLink>> {
        self.inner.log.get()
    }

    /// This store's id (also in the acknowledgement mark); with the node id, how a node
    /// recognises its own log entries.
    pub fn store_id(&self) -> u64 {
        self.inner.store_id
    }

    /// Outbox entries not yet seen back in the shared log.
    pub fn outbox_len(&self) -> u64 {
        self.inner.outbox_len.load(Ordering::Relaxed)
    }

    /// After the commit that made outbox entries up to `seq` durable: wakes the publisher
    /// and waits (bounded) for their append.
    pub(super) async fn logged(&self, seq: u64) -> LogAck {
        let Some(link) = self.inner.log.get() else {
            return LogAck::Local;
        };
        self.inner.outbox_durable.fetch_max(seq, Ordering::SeqCst);
        link.wake();
        link.wait_appended(seq).await
    }

    /// Up to `limit` outbox entries after `after`, all of them durable (covered by a
    /// commit): what the publisher may append (an entry that is not durable could be
    /// lost here while the others apply it, and its sequence taken again). A writer makes
    /// its entry known durable after its own commit; with `force`, entries whose writer
    /// never got that far (its request was dropped) are covered by a commit here.
    pub async fn durable_outbox(
        &self,
        after: u64,
        limit: usize,
        force: bool,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let inner = &self.inner;
        let committed = inner.outbox_committed.load(Ordering::SeqCst);
        if force && committed > inner.outbox_durable.load(Ordering::SeqCst) {
            // A writer that never got to its own commit (its request was dropped): every
            // transaction before `committed` was read was committed before this commit.
            self.flush_forced().await?;
            inner.outbox_durable.fetch_max(committed, Ordering::SeqCst);
        }
        let upto = inner.outbox_durable.load(Ordering::SeqCst);
        if upto <= after {
            return Ok(Vec::new());
        }
        let h = self.handles()?;
        let mut out = Vec::new();
        let range = (after + 1).to_be_bytes()..=upto.to_be_bytes();
        for item in h.trees.outbox.range(range).take(limit) {
            let (key, value) = item?;
            let seq = u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("malformed outbox key".to_string()))?,
            );
            out.push(decode_outbox(seq, &value)?);
        }
        Ok(out)
    }

    /// The position of the last entry applied, if this store ever followed a log.
    pub fn log_position(&self) -> Result<Option<LogPosition>, StoreError> {
        let h = self.handles()?;
        h.trees
            .meta
            .get(META_LOG_POSITION)?
            .map(|v| LogPosition::decode(&v))
            .transpose()
    }

    /// Sets the log position (a new epoch: its start; a resync: the start, flagged), durably.
    pub async fn set_log_position(&self, position: &LogPosition) -> Result<(), StoreError> {
        let h = self.handles()?;
        h.trees
            .meta
            .insert(META_LOG_POSITION, position.encode())
            .map_err(|e| self.failed(e.into()))?;
        self.wrote();
        self.flush().await
    }

    /// The epoch this store's records were last published into (a snapshot after the
    /// stream lost its data, or when a node with records first joins).
    pub fn log_reseeded(&self) -> Result<Option<String>, StoreError> {
        let h = self.handles()?;
        Ok(h.trees
            .meta
            .get(META_LOG_RESEEDED)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records (durably) that every record was published into `epoch`; `None`: forget it,
    /// so the next time this store joins a cluster its records are published again.
    pub async fn set_log_reseeded(&self, epoch: Option<&str>) -> Result<(), StoreError> {
        let h = self.handles()?;
        let done = match epoch {
            Some(e) => h
                .trees
                .meta
                .insert(META_LOG_RESEEDED, e.as_bytes())
                .map(drop),
            None => h.trees.meta.remove(META_LOG_RESEEDED).map(drop),
        };
        done.map_err(|e| self.failed(e.into()))?;
        self.wrote();
        self.flush().await
    }

    /// The keys the ops still waiting in the outbox are about (kind byte, record key).
    fn outbox_keys(&self) -> Result<HashSet<(u8, Vec<u8>)>, StoreError> {
        let h = self.handles()?;
        let mut keys_of = HashSet::new();
        for item in h.trees.outbox.iter() {
            let (key, value) = item?;
            let seq = key
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or_default();
            let entry = decode_outbox(seq, &value)?;
            let ops: Vec<LogOp> = serde_json::from_str(&entry.ops)
                .map_err(|e| StoreError::Corrupt(format!("outbox entry {seq}: {e}")))?;
            for op in &ops {
                let (kind, issuer, value) = op.key();
                if let Ok(k) = keys::record_key(issuer, value) {
                    keys_of.insert((keys::kind_byte(kind), k));
                }
            }
        }
        Ok(keys_of)
    }

    /// The end of a resync: removes every record whose key is neither in `seen` (the keys
    /// the re-read of the stream applied) nor waiting in the outbox — revocations the
    /// stream no longer holds because they were unrevoked while this node's position was
    /// trimmed away. Local removals: nothing is logged. Returns how many were removed.
    pub async fn prune_unseen(&self, seen: &HashSet<(u8, Vec<u8>)>) -> Result<u64, StoreError> {
        let pending = self.outbox_keys()?;
        let mut removed = 0;
        let mut batch = Vec::new();
        for kind in Kind::ALL {
            let kb = keys::kind_byte(kind);
            let tree = self.handles()?.trees.tree(kind).clone();
            for item in tree.iter() {
                let (key, value) = item?;
                let k = (kb, key.to_vec());
                if seen.contains(&k) || pending.contains(&k) {
                    continue;
                }
                batch.push((kind, key.to_vec(), value.to_vec()));
                if batch.len() >= super::SWEEP_BATCH {
                    removed += self.remove_unchanged(std::mem::take(&mut batch)).await?;
                }
            }
        }
        removed += self.remove_unchanged(batch).await?;
        Ok(removed)
    }
}

/// [`LogOp`]s of a stream entry, from its JSON; refuses anything that is not one.
pub fn decode_ops(json: &[u8]) -> Result<Vec<LogOp>, String> {
    serde_json::from_slice(json).map_err(|e| format!("ops: {e}"))
}

#[cfg(test)]
mod tests;
