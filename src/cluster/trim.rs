//! Retention (SPEC §8): entries stay in the stream while a record they carry may still be
//! in force; older ones are trimmed.
//!
//! A pass reads the stream from its start, up to this node's position:
//! - an entry whose `exp` (the latest expiry of its records) lies more than
//!   [`Retention::margin`] in the past is dead (unrevokes carry no record: they are dead
//!   once every revocation before them is, which is what a prefix guarantees);
//! - an entry still in force but older than [`Retention::carry_after`] has its records
//!   carried forward: each one, as this node's store holds it now, is appended again at
//!   the end of the stream (with the [`CARRY`](super::redis_link) script, which refuses
//!   when an entry after this node's position unrevokes one of them — the carried record
//!   would bring it back), so the old entry can go too;
//! - the first entry that is younger and still in force ends the pass.
//!
//! Everything before that entry is then removed (`XTRIM MINID`), and `<stream>:trimmed`
//! records the last id removed, so a node whose position lies before it knows it missed
//! entries and resyncs. One node trims at a time (`<stream>:trim`, a lock that expires).

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::StreamRangeReply;

use super::entry;
use super::redis_link::{Scripts, SessionError};
use super::{now_ms, Cluster};
use crate::store::{key_digest, Kind, LogOp, StreamId, MAX_OPS_PER_ENTRY};

/// Entries read per `XRANGE` while trimming.
pub const TRIM_PAGE: usize = 1000;

/// How the stream is trimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// An entry is dead once every record it carries expired at least this long ago
    /// (room for clocks that disagree between nodes).
    pub margin: Duration,
    /// An entry still in force this old (by its stream id) has its records carried forward.
    pub carry_after: Duration,
    /// How often each node tries to trim (the one that takes the lock does).
    pub interval: Duration,
    /// Most entries one pass reads.
    pub scan_limit: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            margin: Duration::from_secs(300),
            carry_after: Duration::from_secs(3600),
            interval: Duration::from_secs(60),
            scan_limit: 100_000,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Entries read.
    pub scanned: u64,
    /// Entries removed.
    pub removed: u64,
    /// Records carried forward.
    pub carried: u64,
    /// Why nothing was removed although something could have been, if so.
    pub skipped: Option<String>,
}

/// Trims every [`Retention::interval`] while this node is caught up and holds the lock.
pub(super) async fn run(
    c: &Cluster,
    conn: &mut MultiplexedConnection,
    epoch: &str,
) -> Result<Infallible, SessionError> {
    let retention = Retention::default();
    loop {
        tokio::time::sleep(retention.interval).await;
        if !c.is_healthy() {
            continue;
        }
        let locked: Option<String> = redis::cmd("SET")
            .arg(&c.keys.trim_lock)
            .arg(&c.node_id)
            .arg("NX")
            .arg("PX")
            .arg(retention.interval.as_millis() as u64)
            .query_async(conn)
            .await?;
        if locked.is_none() {
            continue;
        }
        let report = pass(c, conn, epoch, &retention).await?;
        if report.removed > 0 || report.skipped.is_some() {
            tracing::info!(
                removed = report.removed,
                carried = report.carried,
                scanned = report.scanned,
                skipped = report.skipped.as_deref().unwrap_or(""),
                "cluster trimmed the shared log"
            );
        }
    }
}

/// One pass (module doc).
pub(super) async fn pass(
    c: &Cluster,
    conn: &mut MultiplexedConnection,
    epoch: &str,
    retention: &Retention,
) -> Result<TrimReport, SessionError> {
    let mut report = TrimReport::default();
    // Read before the records it carries, so that those reflect at least this position.
    let Some(position) = c
        .store
        .log_position()?
        .filter(|p| p.epoch == epoch && !p.resync)
    else {
        report.skipped = Some("this node does not follow this epoch yet".to_string());
        return Ok(report);
    };
    let dead_before = c.clock.now().saturating_sub(retention.margin.as_secs());
    let carry_before_ms = now_ms().saturating_sub(retention.carry_after.as_millis() as u64);
    let mut last_removable: Option<StreamId> = None;
    let mut carried = Vec::new();
    let mut carried_keys: HashSet<(Kind, String, String)> = HashSet::new();
    let mut from = "-".to_string();
    'scan: loop {
        let page: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&c.keys.stream)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(TRIM_PAGE)
            .query_async(conn)
            .await?;
        if page.ids.is_empty() {
            break;
        }
        for e in &page.ids {
            let Ok(id) = e.id.parse::<StreamId>() else {
                break 'scan;
            };
            if id > position.id || report.scanned >= retention.scan_limit as u64 {
                break 'scan;
            }
            report.scanned += 1;
            match entry::expires_at(&e.map) {
                Some(exp) if exp < dead_before => {}
                Some(_) if id.ms < carry_before_ms => {
                    let Ok(decoded) = entry::decode(&e.id, &e.map) else {
                        break 'scan;
                    };
                    for op in decoded.ops {
                        let r = match op {
                            LogOp::Record(r) | LogOp::Logout { record: r, .. } => r,
                            LogOp::Unrevoke { .. } => continue,
                        };
                        if !carried_keys.insert((r.kind, r.issuer.clone(), r.value.clone())) {
                            continue;
                        }
                        if let Some(now) = c.store.get(r.kind, &r.issuer, &r.value)? {
                            if now.expires_at >= dead_before {
                                carried.push(LogOp::Record(now));
                            }
                        }
                    }
                }
                // Young and in force, or an `exp` that does not read: kept, and so is
                // everything after it.
                _ => break 'scan,
            }
            last_removable = Some(id);
        }
        from = format!("({}", page.ids.last().expect("non-empty page").id);
    }
    let Some(last) = last_removable else {
        return Ok(report);
    };
    let scripts = Scripts::default();
    for chunk in carried.chunks(MAX_OPS_PER_ENTRY) {
        let mut call = scripts.carry.prepare_invoke();
        call.key(&c.keys.stream)
            .key(&c.keys.epoch)
            .arg(epoch)
            .arg(position.id.to_string())
            .arg(chunk.len());
        for op in chunk {
            let (kind, issuer, value) = op.key();
            call.arg(key_digest(kind, issuer, value));
        }
        for (f, v) in entry::snapshot_fields(&c.node_id, c.store.store_id(), chunk) {
            call.arg(f).arg(v);
        }
        let result: String = call.invoke_async(conn).await?;
        match result.as_str() {
            "EPOCH" => return Err(SessionError::EpochChanged),
            "CONFLICT" => {
                report.skipped = Some(
                    "an entry after this node's position unrevokes a record to carry forward; trimming again next time"
                        .to_string(),
                );
                return Ok(report);
            }
            _ => report.carried += chunk.len() as u64,
        }
    }
    let minid = StreamId {
        ms: last.ms,
        seq: last.seq + 1,
    };
    let (_, removed): ((), u64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&c.keys.trimmed)
        .arg(last.to_string())
        .cmd("XTRIM")
        .arg(&c.keys.stream)
        .arg("MINID")
        .arg(minid.to_string())
        .query_async(conn)
        .await?;
    report.removed = removed;
    Ok(report)
}
