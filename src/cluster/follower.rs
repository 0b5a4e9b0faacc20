//! Stream → store: where to start ([`prepare`]: the epoch, a lost tail, a trimmed
//! position, a snapshot to publish), then every entry in stream order, applied in store
//! transactions with the position ([`Follower`]), the catch-up state, and the end of a
//! resync.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;

use super::entry;
use super::redis_link::{self, Scripts, SessionError};
use super::{now_ms, Cluster};
use crate::store::{LogEntry, LogPosition, StreamId};

/// Most entries one read returns.
pub const FOLLOW_COUNT: usize = 512;
/// How long one read waits for new entries (then it reads again: the epoch is checked
/// with every read).
pub const FOLLOW_BLOCK: Duration = Duration::from_secs(1);
/// Most ops applied in one store transaction (whole entries: at least one).
pub const APPLY_BATCH_OPS: usize = 4096;
/// Longest time applied entries wait for a commit of their own while entries keep
/// coming (the commits of local writers cover them meanwhile); once a read finds nothing
/// new the follower commits at once, so an idle node's position is durable within
/// [`FOLLOW_BLOCK`]. Applied entries are enforced before they are durable: a crash before
/// their commit only rewinds the position with them, and they are read again.
pub const FOLLOW_COMMIT_EVERY: Duration = Duration::from_millis(200);

/// Where a session starts following.
#[derive(Debug)]
pub(super) struct Start {
    /// The position to read after (in the session's epoch).
    pub position: LogPosition,
    /// This store's records must be published into this epoch first.
    pub reseed: bool,
}

/// Decides where to start in `epoch` (module doc of [`super`]): the stored position when it
/// is this epoch's and still in the stream; the start of the stream for a new epoch (and a
/// snapshot of this store's records); the start with a resync when the position was trimmed
/// away; a new epoch when this node applied more than the stream holds.
pub(super) async fn prepare(
    c: &Cluster,
    conn: &mut MultiplexedConnection,
    scripts: &Scripts,
    epoch: &str,
) -> Result<Start, SessionError> {
    let info = redis_link::stream_info(conn, scripts, &c.keys).await?;
    let stored = c.store.log_position()?;
    let reseeded = c.store.log_reseeded()?;
    let mut published = reseeded.as_deref() == Some(epoch);
    let position = match stored {
        Some(p) if p.epoch == epoch => {
            if p.id > info.last {
                tracing::warn!(position = %p.id, end = %info.last, "cluster: this node applied entries the shared log no longer holds (Redis lost its latest writes: see appendfsync); starting a new epoch");
                redis_link::rotate_epoch(conn, scripts, &c.keys, epoch).await?;
                return Err(SessionError::EpochChanged);
            }
            let trimmed_away = p.id != StreamId::ZERO && info.trimmed.is_some_and(|t| p.id < t);
            if trimmed_away || p.resync {
                tracing::warn!(position = %p.id, trimmed = ?info.trimmed.map(|t| t.to_string()), "cluster: entries after this node's position were trimmed; re-reading the whole stream (resync)");
                let r = LogPosition {
                    epoch: epoch.to_string(),
                    id: StreamId::ZERO,
                    resync: true,
                };
                c.store.set_log_position(&r).await?;
                r
            } else {
                p
            }
        }
        other => {
            // A store that joined empty has everything in the stream, until the stream
            // itself is lost.
            published |= other.is_none() && reseeded.as_deref() == Some(super::ALL_IN_OUTBOX);
            if let Some(old) = &other {
                tracing::warn!(old_epoch = %old.epoch, epoch = %epoch, "cluster: the shared log is a new one (Redis lost its data, or another Redis); reading it from its start and publishing this node's records into it");
            }
            let p = LogPosition {
                epoch: epoch.to_string(),
                id: StreamId::ZERO,
                resync: false,
            };
            c.store.set_log_position(&p).await?;
            p
        }
    };
    let counts = c.store.counts();
    let has_records = counts.jti + counts.sid + counts.sub > 0;
    if (published || !has_records) && reseeded.as_deref() != Some(epoch) {
        c.store.set_log_reseeded(Some(epoch)).await?;
    }
    Ok(Start {
        position,
        reseed: !published && has_records,
    })
}

/// The follower of one session.
pub(super) struct Follower<'a> {
    c: &'a Cluster,
    conn: MultiplexedConnection,
    epoch: String,
    position: LogPosition,
    /// The stream's end at connect: caught up once the position reaches it.
    target: StreamId,
    catch_up: Option<std::time::Instant>,
    /// Keys applied since a resync began (`None`: no resync).
    seen: Option<HashSet<(u8, Vec<u8>)>>,
}

impl<'a> Follower<'a> {
    /// Starts following after `start.position`, catching up to `target`.
    pub(super) fn begin(
        c: &'a Cluster,
        conn: MultiplexedConnection,
        epoch: String,
        start: Start,
        target: StreamId,
    ) -> Result<Follower<'a>, SessionError> {
        let position = start.position;
        let seen = position.resync.then(HashSet::new);
        let mut f = Follower {
            c,
            conn,
            epoch,
            target,
            catch_up: None,
            seen,
            position,
        };
        if f.position.id < target {
            c.status.catching_up.store(true, Ordering::SeqCst);
            c.status.at_end.store(false, Ordering::SeqCst);
            tracing::info!(from = %f.position.id, to = %target, resync = f.seen.is_some(), "cluster catching up");
            f.catch_up = Some(std::time::Instant::now());
        } else {
            f.caught_up(0);
        }
        Ok(f)
    }

    /// The position reached the target: healthy from now on (a resync first removes
    /// what the stream no longer holds).
    fn caught_up(&mut self, applied: u64) {
        let s = &self.c.status;
        s.at_end.store(true, Ordering::SeqCst);
        s.at_end_since_ms.store(now_ms(), Ordering::Relaxed);
        s.catching_up.store(false, Ordering::SeqCst);
        s.caught_up_once.store(true, Ordering::SeqCst);
        if let Some(started) = self.catch_up.take() {
            tracing::info!(
                position = %self.position.id,
                entries = applied,
                duration_ms = started.elapsed().as_millis() as u64,
                "cluster caught up"
            );
        }
    }

    /// Reads and applies entries until the session fails.
    pub(super) async fn run(&mut self) -> Result<Infallible, SessionError> {
        let c = self.c;
        let mut applied_in_catch_up = 0u64;
        let mut uncommitted = false;
        let mut idle = false;
        let mut committed_at = std::time::Instant::now();
        loop {
            let mut pipe = redis::pipe();
            pipe.cmd("GET")
                .arg(&c.keys.epoch)
                .cmd("XREAD")
                .arg("COUNT")
                .arg(FOLLOW_COUNT)
                .arg("BLOCK")
                .arg(FOLLOW_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&c.keys.stream)
                .arg(self.position.id.to_string());
            let read =
                pipe.query_async::<(Option<String>, Option<StreamReadReply>)>(&mut self.conn);
            // The commit of what was applied runs while the next read waits: once a read
            // found nothing new, or after FOLLOW_COMMIT_EVERY.
            let commit = uncommitted && (idle || committed_at.elapsed() >= FOLLOW_COMMIT_EVERY);
            let flush = async {
                if commit {
                    c.store.flush().await
                } else {
                    Ok(())
                }
            };
            let (flushed, reply) = tokio::join!(flush, read);
            flushed?;
            if commit {
                uncommitted = false;
                committed_at = std::time::Instant::now();
            }
            let (epoch, reply) = reply?;
            if epoch.as_deref() != Some(self.epoch.as_str()) {
                return Err(SessionError::EpochChanged);
            }
            let mut entries = Vec::new();
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                for e in key.ids {
                    let decoded = entry::decode(&e.id, &e.map).map_err(|why| {
                        SessionError::Unreadable(format!(
                            "entry {} of the shared log cannot be read ({why}); this node stops following there",
                            e.id
                        ))
                    })?;
                    entries.push(decoded);
                }
            }
            let n = entries.len();
            idle = n == 0;
            if n > 0 {
                self.apply(entries).await?;
                uncommitted = true;
                let s = &c.status;
                s.applied.fetch_add(n as u64, Ordering::Relaxed);
                s.last_applied_ms
                    .store(self.position.id.ms, Ordering::Relaxed);
                applied_in_catch_up += n as u64;
            }
            let at_end = n < FOLLOW_COUNT;
            c.status.at_end.store(at_end, Ordering::SeqCst);
            if at_end {
                c.status.at_end_since_ms.store(now_ms(), Ordering::Relaxed);
            }
            if self.position.id >= self.target {
                if let Some(seen) = self.seen.take() {
                    self.finish_resync(&seen).await?;
                }
                if self.catch_up.is_some() || c.status.catching_up.load(Ordering::SeqCst) {
                    self.caught_up(applied_in_catch_up);
                }
            }
        }
    }

    /// Applies `entries` in transactions of at most [`APPLY_BATCH_OPS`] ops (on the
    /// blocking pool: a big transaction must not hold up the request path), each with
    /// its position.
    async fn apply(&mut self, entries: Vec<LogEntry>) -> Result<(), SessionError> {
        let mut rest = entries;
        while !rest.is_empty() {
            let mut ops = 0;
            let take = rest
                .iter()
                .position(|e| {
                    ops += e.ops.len();
                    ops > APPLY_BATCH_OPS
                })
                .unwrap_or(rest.len())
                .max(1);
            let tail = rest.split_off(take);
            let chunk = std::mem::replace(&mut rest, tail);
            let position = LogPosition {
                id: chunk.last().expect("non-empty chunk").id,
                ..self.position.clone()
            };
            let store = self.c.store.clone();
            let mut seen = self.seen.take();
            let (result, back) = tokio::task::spawn_blocking(move || {
                let result = store.apply_log(&chunk, &position, seen.as_mut());
                (result.map(|_| position), seen)
            })
            .await
            .map_err(|e| SessionError::Unreadable(format!("apply task failed: {e}")))?;
            self.seen = back;
            self.position = result?;
        }
        Ok(())
    }

    /// The end of a resync: removes what the stream no longer holds, then clears the flag.
    async fn finish_resync(&mut self, seen: &HashSet<(u8, Vec<u8>)>) -> Result<(), SessionError> {
        let removed = self.c.store.prune_unseen(seen).await?;
        self.position.resync = false;
        self.c.store.set_log_position(&self.position).await?;
        tracing::info!(removed, position = %self.position.id, "cluster resync done: records the shared log no longer holds were removed");
        Ok(())
    }
}
