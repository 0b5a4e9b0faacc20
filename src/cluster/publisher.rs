//! Outbox → stream: appends the durable outbox entries of this node in sequence order,
//! each exactly once ([`APPEND`](super::redis_link) script), and confirms them to the
//! writers waiting on [`LogLink`](crate::store::LogLink). Also publishes a snapshot of
//! every unexpired record when the stream is new to this store ([`reseed`]).

use std::convert::Infallible;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::entry;
use super::redis_link::{Scripts, SessionError};
use super::Cluster;
use crate::store::{LogOp, MAX_OPS_PER_ENTRY};

/// Most outbox entries appended in one round trip (one pipeline of scripts).
pub const PUBLISH_BATCH: usize = 256;
/// How often the publisher looks at the outbox without being woken: entries whose writer
/// never got to its own commit (a dropped request) are committed and appended then.
pub const OUTBOX_POLL: Duration = Duration::from_millis(100);
/// Snapshot entries appended per round trip while republishing.
pub const RESEED_PIPELINE: usize = 32;

/// One `EVALSHA` of the append script for an entry with `fields`.
fn append_call(
    pipe: &mut redis::Pipeline,
    sha: &str,
    c: &Cluster,
    epoch: &str,
    seq: u64,
    fields: &[(&'static str, String)],
) {
    let k = &c.keys;
    let cmd = pipe
        .cmd("EVALSHA")
        .arg(sha)
        .arg(3)
        .arg(&k.stream)
        .arg(&k.epoch)
        .arg(&k.nodes)
        .arg(epoch)
        .arg(&c.node_id)
        .arg(format!("{:016x}", c.store.store_id()))
        .arg(seq);
    for (f, v) in fields {
        cmd.arg(*f).arg(v);
    }
}

/// Sends `pipe` (append calls); `Ok(n)` when all `n` went in (or were there already).
async fn send(
    conn: &mut MultiplexedConnection,
    pipe: &redis::Pipeline,
) -> Result<Vec<String>, SessionError> {
    let results: Vec<String> = pipe.query_async(conn).await?;
    if results.iter().any(|r| r == "EPOCH") {
        return Err(SessionError::EpochChanged);
    }
    Ok(results)
}

/// Appends the outbox, in order, for as long as the session lasts.
pub(super) async fn run(
    c: &Cluster,
    conn: &mut MultiplexedConnection,
    scripts: &Scripts,
    epoch: &str,
) -> Result<Infallible, SessionError> {
    let sha = scripts.append.prepare_invoke().load_async(conn).await?;
    c.link.set_online(true);
    // Every entry still in the outbox is offered again at each connect: the script skips
    // those already appended in this epoch, and appends those a new epoch lacks.
    let mut after = 0u64;
    let mut force = true;
    loop {
        let batch = c.store.durable_outbox(after, PUBLISH_BATCH, force).await?;
        force = false;
        if batch.is_empty() {
            tokio::select! {
                () = c.link.woken() => {}
                () = tokio::time::sleep(OUTBOX_POLL) => force = true,
            }
            continue;
        }
        let mut pipe = redis::pipe();
        for e in &batch {
            let fields = entry::outbox_fields(&c.node_id, c.store.store_id(), e);
            append_call(&mut pipe, &sha, c, epoch, e.seq, &fields);
        }
        send(conn, &pipe).await?;
        after = batch.last().map_or(after, |e| e.seq);
        c.link.confirm(after);
    }
}

/// Publishes every unexpired record of this store into the stream of `epoch` (entries
/// of [`MAX_OPS_PER_ENTRY`] records, not from the outbox), then records that it did:
/// when Redis lost its data, or when a store with records joins the cluster.
pub(super) async fn reseed(
    c: &Cluster,
    conn: &mut MultiplexedConnection,
    scripts: &Scripts,
    epoch: &str,
) -> Result<(), SessionError> {
    let sha = scripts.append.prepare_invoke().load_async(conn).await?;
    let started = std::time::Instant::now();
    let now = c.clock.now();
    let (mut records, mut entries) = (0u64, 0u64);
    let mut ops = Vec::with_capacity(MAX_OPS_PER_ENTRY);
    let mut pipe = redis::pipe();
    let mut queued = 0;
    let mut all = c.store.iter_records(None);
    loop {
        let next = all.next().transpose()?;
        let done = next.is_none();
        if let Some(r) = next.filter(|r| r.expires_at > now) {
            ops.push(LogOp::Record(r));
            records += 1;
        }
        if ops.len() == MAX_OPS_PER_ENTRY || (done && !ops.is_empty()) {
            let fields = entry::snapshot_fields(&c.node_id, c.store.store_id(), &ops);
            append_call(&mut pipe, &sha, c, epoch, 0, &fields);
            ops.clear();
            queued += 1;
            entries += 1;
        }
        if queued == RESEED_PIPELINE || (done && queued > 0) {
            send(conn, &pipe).await?;
            pipe = redis::pipe();
            queued = 0;
        }
        if done {
            break;
        }
    }
    c.store.set_log_reseeded(Some(epoch)).await?;
    tracing::info!(
        records,
        entries,
        duration_ms = started.elapsed().as_millis() as u64,
        epoch = %epoch,
        "cluster published this node's records into the shared log"
    );
    Ok(())
}
