//! Several gateways, one blacklist (SPEC §8): the nodes share their changes of the
//! revocation state through a Redis stream, the shared log. Each node keeps its own sled
//! store and reads only it on the request path; this module is the background link
//! between that store and the stream. The store's side (outbox, log position, the merge)
//! is `store/log.rs`.
//!
//! # Design
//!
//! - **Accepting a change.** Every change accepted here — from the admin API, the CLI,
//!   `/revoke`, revoke-by-token, back-channel logout, import — is applied by the store's
//!   one write path, which in a cluster also resolves it into the ops its log entry
//!   carries (the accepting node's `revoked_at` and cutoff) and writes them to the
//!   durable outbox *in the same transaction*. After the group commit the writer wakes
//!   the [publisher](publisher) and waits (at most [`APPEND_WAIT`]) for the append; the
//!   answer says `Revgate-Cluster: appended` or `queued` (Redis unreachable: the entry
//!   stays in the outbox and is appended, in order, once Redis answers).
//! - **Appending exactly once.** An append is one Lua script: it checks the stream's
//!   epoch, skips an outbox sequence the node already appended (`<stream>:nodes` holds
//!   the last one per node and store), `XADD`s the entry and records the sequence — so a
//!   crash between the append and its confirmation never puts a change in twice.
//! - **Applying every entry.** The [follower](follower) reads the stream in order
//!   (`XREAD BLOCK`) and applies each batch of entries, its own included, in ONE store
//!   transaction together with the stream id of the last one (the position), so a restart
//!   resumes exactly there. Its own entries leave the outbox in that transaction. Records
//!   merge with a join (later cutoff, later expiry, the `revoked_at`/reason/source of the
//!   later revocation — ties by a fixed order), so the order in which a node saw them does
//!   not matter; an unrevoke applies in stream order. All nodes converge.
//! - **Catching up.** At every (re)connect the follower takes the stream's last id as its
//!   target; until it has applied that far (once since start, and again after each
//!   reconnect) `/healthz` and `server.health_path` answer 503 with `"cluster":"catching_up"`
//!   (or `"unreachable"` while Redis cannot be reached before the first catch-up). A node
//!   that loses Redis after it caught up keeps answering 200 from its own store (Redis
//!   down for all must not empty the load balancer), says `"unreachable"`, and catches up
//!   when Redis is back.
//! - **Redis losing its data.** The first node to find no `<stream>:epoch` writes a new
//!   random one; a node whose position is in another epoch (or beyond the end of the
//!   stream: Redis lost its tail) starts the new epoch at its beginning and publishes a
//!   snapshot of every unexpired record it holds (also done when a node with records
//!   joins for the first time); its outbox is appended again. Revocations are thus never
//!   lost while the node that accepted them lives; an unrevoke that some node had not
//!   seen before the loss is undone by that node's snapshot (revoked again: fails safe).
//! - **Retention** ([`trim`]). Trimming removes, from the start of the stream, entries
//!   whose records all expired; an old entry still in force has its records carried
//!   forward (re-appended as they stand now) so it can go too, unless an entry after the
//!   trimming node's position unrevokes one of them. A node whose position was trimmed
//!   away re-reads the whole stream and then removes what the stream no longer holds
//!   (a resync).
//! - **Expiry** is local: every node sweeps its own store.

mod entry;
mod follower;
mod publisher;
mod redis_link;
mod trim;

pub use entry::ENTRY_VERSION;
pub use redis_link::Keys;
pub use trim::{Retention, TrimReport};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::SharedClock;
use crate::config::{redact_url, Config};
use crate::store::{LogLink, RevocationStore};
use redis_link::SessionError;

/// Longest wait of a writer for the append of its change before it answers with
/// `Revgate-Cluster: queued` (the change is durable here and waits in the outbox).
pub const APPEND_WAIT: Duration = Duration::from_secs(2);
/// First pause before reconnecting to Redis; doubled up to [`RECONNECT_MAX`].
pub const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Longest pause between two attempts to reach Redis.
pub const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// The "published into" marker of a store that joined a cluster empty: every record it
/// will hold came through its outbox or the stream, so no snapshot is needed until the
/// stream loses its data (another epoch).
pub(crate) const ALL_IN_OUTBOX: &str = "-";
/// On shutdown, how long a node connected to Redis waits for its outbox to empty (what is
/// left stays durable and is appended at the next start).
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);
/// While Redis stays unreachable, how often the warning is repeated.
const UNREACHABLE_WARN_EVERY: Duration = Duration::from_secs(30);

/// The cluster state `/healthz` and `/v1/stats` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Connected and caught up.
    Ok,
    /// Applying what the stream holds beyond this node's position (since start, or since
    /// a reconnect): not healthy until done.
    CatchingUp,
    /// Redis cannot be reached (healthy only when this node caught up before).
    Unreachable,
}

impl ClusterState {
    /// `ok`, `catching_up` or `unreachable`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Ok => "ok",
            ClusterState::CatchingUp => "catching_up",
            ClusterState::Unreachable => "unreachable",
        }
    }
}

/// What the link knows about itself, shared with health, stats and metrics.
#[derive(Debug, Default)]
struct Status {
    redis_up: AtomicBool,
    /// Caught up at least once since start.
    caught_up_once: AtomicBool,
    /// Behind the target taken at the last (re)connect.
    catching_up: AtomicBool,
    /// The last read found nothing more to read.
    at_end: AtomicBool,
    /// Entries applied since start.
    applied: AtomicU64,
    /// Redis time (ms) of the last entry applied.
    last_applied_ms: AtomicU64,
    /// Local time (ms) when this node last knew it was at the end of the stream.
    at_end_since_ms: AtomicU64,
}

/// The cluster link of one node: a cheap handle (`Arc`), shared by the admin API
/// (health, stats, metrics) and the background task ([`Cluster::run`]).
pub struct Cluster {
    store: RevocationStore,
    link: Arc<LogLink>,
    client: redis::Client,
    /// `redis_url` with its password hidden: what logs show.
    shown_url: String,
    keys: Keys,
    node_id: String,
    clock: SharedClock,
    started_ms: u64,
    status: Status,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("redis", &self.shown_url)
            .field("stream", &self.keys.stream)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the epoch, by the wall clock (stream ids are Redis's milliseconds).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Cluster {
    /// The link for `config`'s `[cluster]` (`None` when it is off). Links `store` to the
    /// shared log at once ([`RevocationStore::join_log`]): call before any write.
    pub fn for_config(
        config: &Config,
        store: &RevocationStore,
        clock: SharedClock,
    ) -> Result<Option<Arc<Cluster>>, String> {
        let c = &config.cluster;
        if !c.enabled() {
            return Ok(None);
        }
        let node_id = c
            .effective_node_id(config.server.listen.port())
            .map_err(|e| format!("cluster.node_id {e}"))?;
        let shown_url = redact_url(&c.redis_url);
        let client = redis::Client::open(c.redis_url.as_str())
            .map_err(|e| format!("cluster.redis_url {shown_url}: {e}"))?;
        let link = LogLink::new(node_id.clone(), APPEND_WAIT);
        store.join_log(link.clone());
        Ok(Some(Arc::new(Cluster {
            store: store.clone(),
            link,
            client,
            shown_url,
            keys: Keys::of(&c.stream),
            node_id,
            clock,
            started_ms: now_ms(),
            status: Status::default(),
        })))
    }

    /// Called at start-up, before any write: a store that joins a cluster empty and has
    /// never followed a log needs no snapshot of its records ([`ALL_IN_OUTBOX`]).
    pub async fn prepare_store(&self) -> Result<(), crate::store::StoreError> {
        let c = self.store.counts();
        if c.jti + c.sid + c.sub == 0
            && self.store.log_position()?.is_none()
            && self.store.log_reseeded()?.is_none()
        {
            self.store.set_log_reseeded(Some(ALL_IN_OUTBOX)).await?;
        }
        Ok(())
    }

    /// This node's id in the log.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The Redis keys of this cluster.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The state health and stats report.
    pub fn state(&self) -> ClusterState {
        let s = &self.status;
        let up = s.redis_up.load(Ordering::SeqCst);
        let behind =
            !s.caught_up_once.load(Ordering::SeqCst) || s.catching_up.load(Ordering::SeqCst);
        match (up, behind) {
            (true, true) => ClusterState::CatchingUp,
            (true, false) => ClusterState::Ok,
            (false, _) => ClusterState::Unreachable,
        }
    }

    /// Whether the cluster lets this node be healthy: caught up once since start and not
    /// catching up after a reconnect (SPEC §8).
    pub fn is_healthy(&self) -> bool {
        let s = &self.status;
        s.caught_up_once.load(Ordering::SeqCst) && !s.catching_up.load(Ordering::SeqCst)
    }

    /// Whether Redis answered the last time it was asked.
    pub fn redis_up(&self) -> bool {
        self.status.redis_up.load(Ordering::SeqCst)
    }

    /// Entries of the shared log applied since start.
    pub fn applied(&self) -> u64 {
        self.status.applied.load(Ordering::Relaxed)
    }

    /// How far behind the shared log this node is, in seconds: 0 while it is at the end;
    /// while it applies a backlog, the age of the last entry applied; while Redis is
    /// unreachable, the time since it last was at the end (or since start).
    pub fn lag_seconds(&self) -> f64 {
        let s = &self.status;
        let now = now_ms();
        let ms = if !s.redis_up.load(Ordering::SeqCst) {
            let since = s.at_end_since_ms.load(Ordering::Relaxed);
            now.saturating_sub(if since == 0 { self.started_ms } else { since })
        } else if s.at_end.load(Ordering::SeqCst) {
            0
        } else {
            match s.last_applied_ms.load(Ordering::Relaxed) {
                0 => now.saturating_sub(self.started_ms),
                last => now.saturating_sub(last),
            }
        };
        ms as f64 / 1000.0
    }

    /// The `cluster` object of `GET /v1/stats`.
    pub fn stats(&self) -> Value {
        let position = self.store.log_position().ok().flatten();
        json!({
            "node_id": self.node_id,
            "applied": self.applied(),
            "outbox": self.store.outbox_len(),
            "lag_seconds": self.lag_seconds(),
            "state": self.state().as_str(),
            "redis_up": self.redis_up(),
            "stream": self.keys.stream,
            "position": position.as_ref().map(|p| p.id.to_string()),
            "epoch": position.map(|p| p.epoch),
        })
    }

    /// The `revgate_cluster_*` metrics.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "# HELP revgate_cluster_applied_total Shared-log entries applied to this node's store since start (its own included).");
        let _ = writeln!(out, "# TYPE revgate_cluster_applied_total counter");
        let _ = writeln!(out, "revgate_cluster_applied_total {}", self.applied());
        let _ = writeln!(out, "# HELP revgate_cluster_outbox Entries of changes accepted here not yet seen back in the shared log.");
        let _ = writeln!(out, "# TYPE revgate_cluster_outbox gauge");
        let _ = writeln!(out, "revgate_cluster_outbox {}", self.store.outbox_len());
        let _ = writeln!(out, "# HELP revgate_cluster_lag_seconds How far behind the shared log this node is (0: at its end).");
        let _ = writeln!(out, "# TYPE revgate_cluster_lag_seconds gauge");
        let _ = writeln!(out, "revgate_cluster_lag_seconds {}", self.lag_seconds());
        let _ = writeln!(
            out,
            "# HELP revgate_cluster_redis_up Whether Redis answered (1) or not (0)."
        );
        let _ = writeln!(out, "# TYPE revgate_cluster_redis_up gauge");
        let _ = writeln!(
            out,
            "revgate_cluster_redis_up {}",
            u8::from(self.redis_up())
        );
    }

    /// Marks Redis reachable or not (with the writers' link); the previous value.
    fn set_redis_up(&self, up: bool) -> bool {
        if !up {
            self.link.set_online(false);
        }
        self.status.redis_up.swap(up, Ordering::SeqCst)
    }

    /// Runs the link until `shutdown` flips: connects, catches up, appends the outbox and
    /// follows the stream; on any failure reconnects with a growing pause.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut pause = RECONNECT_MIN;
        let mut warned_at: Option<std::time::Instant> = None;
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let result = tokio::select! {
                r = self.session() => r,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            };
            let was_up = self.set_redis_up(false);
            let Err(e) = result;
            match &e {
                SessionError::EpochChanged => {
                    tracing::warn!(stream = %self.keys.stream, "cluster: the shared log was reset (Redis lost its data?); starting again from its new epoch");
                    pause = RECONNECT_MIN;
                    continue;
                }
                _ if was_up => {
                    tracing::warn!(redis = %self.shown_url, error = %e, outbox = self.store.outbox_len(), "cluster disconnected from Redis; changes accepted here wait in the outbox");
                    pause = RECONNECT_MIN;
                    warned_at = Some(std::time::Instant::now());
                }
                _ => {
                    if warned_at.is_none_or(|t| t.elapsed() >= UNREACHABLE_WARN_EVERY) {
                        tracing::warn!(redis = %self.shown_url, error = %e, outbox = self.store.outbox_len(), "cluster cannot reach Redis; retrying");
                        warned_at = Some(std::time::Instant::now());
                    } else {
                        tracing::debug!(error = %e, "cluster: Redis still unreachable");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
            pause = (pause * 2).min(RECONNECT_MAX);
        }
        self.set_redis_up(false);
        tracing::debug!("cluster link stopped");
    }

    /// One connection to Redis, from connect to the first failure (it never ends well).
    async fn session(&self) -> Result<std::convert::Infallible, SessionError> {
        let mut cmd = redis_link::connect(&self.client, redis_link::COMMAND_TIMEOUT).await?;
        let read = redis_link::connect(
            &self.client,
            follower::FOLLOW_BLOCK + redis_link::COMMAND_TIMEOUT,
        )
        .await?;
        let scripts = redis_link::Scripts::default();
        let epoch = redis_link::establish_epoch(&mut cmd, &self.keys).await?;
        self.status.redis_up.store(true, Ordering::SeqCst);
        tracing::info!(redis = %self.shown_url, stream = %self.keys.stream, node = %self.node_id, epoch = %epoch, "cluster connected to Redis");
        let start = follower::prepare(self, &mut cmd, &scripts, &epoch).await?;
        if start.reseed {
            publisher::reseed(self, &mut cmd, &scripts, &epoch).await?;
        }
        let info = redis_link::stream_info(&mut cmd, &scripts, &self.keys).await?;
        let mut follow = follower::Follower::begin(self, read, epoch.clone(), start, info.last)?;
        let mut trim_conn = cmd.clone();
        tokio::select! {
            r = publisher::run(self, &mut cmd, &scripts, &epoch) => r,
            r = follow.run() => r,
            r = trim::run(self, &mut trim_conn, &epoch) => r,
        }
    }

    /// Shutdown: while Redis answers, waits (at most [`SHUTDOWN_DRAIN`]) until every
    /// change accepted here has come back from the shared log, so a node being removed
    /// leaves nothing behind in its outbox.
    pub async fn drain_outbox(&self) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DRAIN;
        while self.redis_up()
            && self.store.outbox_len() > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.store.outbox_len();
        if left > 0 {
            tracing::warn!(outbox = left, "cluster: changes accepted here are not in the shared log yet; they are appended when this node runs again");
        }
    }

    /// Runs one trimming pass now with `retention` (the background pass runs every
    /// [`Retention::interval`] on one node at a time). For operators' tools and tests.
    pub async fn trim_now(&self, retention: &Retention) -> Result<TrimReport, String> {
        let mut conn = redis_link::connect(&self.client, redis_link::COMMAND_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let epoch = redis_link::establish_epoch(&mut conn, &self.keys)
            .await
            .map_err(|e| e.to_string())?;
        trim::pass(self, &mut conn, &epoch, retention)
            .await
            .map_err(|e| e.to_string())
    }
}
