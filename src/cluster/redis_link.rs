//! Talking to Redis: connections, the keys a cluster keeps beside its stream, the epoch,
//! and the Lua scripts that make an append and a carry-forward atomic.
//!
//! Keys (all start with `cluster.stream`, so one Redis can hold several clusters):
//!
//! | key | type | what |
//! |---|---|---|
//! | `<stream>` | stream | the shared log ([`super::entry`]) |
//! | `<stream>:epoch` | string | random id of this incarnation of the stream; gone when Redis lost its data |
//! | `<stream>:nodes` | hash | node id → `store id:outbox sequence` of its last append (exactly-once appends) |
//! | `<stream>:trimmed` | string | id of the last entry trimming removed |
//! | `<stream>:trim` | string (PX) | held by the node that is trimming |
//!
//! Every script runs atomically in Redis, so no append can interleave with its checks.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};

use crate::store::StreamId;

/// Longest wait for a TCP (and TLS) connection to Redis.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the answer to a command (not a blocking read).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis keys of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The stream.
    pub stream: String,
    /// Its epoch.
    pub epoch: String,
    /// The last append of each node.
    pub nodes: String,
    /// The last entry trimming removed.
    pub trimmed: String,
    /// The trimming lock.
    pub trim_lock: String,
}

impl Keys {
    /// The keys of the cluster whose stream is `stream`.
    pub fn of(stream: &str) -> Keys {
        Keys {
            stream: stream.to_string(),
            epoch: format!("{stream}:epoch"),
            nodes: format!("{stream}:nodes"),
            trimmed: format!("{stream}:trimmed"),
            trim_lock: format!("{stream}:trim"),
        }
    }
}

/// Why a session with Redis ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Redis did not answer, or refused (the connection is dropped and made again).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The stream's epoch is not the one this session started with: Redis lost its data
    /// (or another node found it lost its tail); start again from the new epoch.
    #[error("the shared log was reset (new epoch)")]
    EpochChanged,
    /// The local store failed (it is degraded; the recovery task reopens it).
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    /// An entry of the stream cannot be read by this gateway.
    #[error("{0}")]
    Unreadable(String),
}

/// Connects with the command timeout `response` (a blocking read needs more than its
/// block time).
pub async fn connect(
    client: &Client,
    response: Duration,
) -> Result<MultiplexedConnection, SessionError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response));
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// Appends one entry, exactly once per (node, store, sequence) and only in the epoch the
/// caller knows. KEYS: stream, epoch, nodes. ARGV: epoch, node, store id (hex), outbox
/// sequence (0: not from the outbox, never deduplicated), then the entry's field/value
/// pairs. Returns the new entry id, `SKIP` (already appended) or `EPOCH` (the stream is
/// not the caller's any more).
const APPEND: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'EPOCH' end
local seq = tonumber(ARGV[4])
if seq > 0 then
  local reg = redis.call('HGET', KEYS[3], ARGV[2])
  if reg then
    local store, last = string.match(reg, '^(%x+):(%d+)$')
    if store == ARGV[3] and tonumber(last) >= seq then return 'SKIP' end
  end
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 5))
if seq > 0 then redis.call('HSET', KEYS[3], ARGV[2], ARGV[3] .. ':' .. ARGV[4]) end
return id
"#;

/// Carries records forward (trimming): appends one entry unless an entry after ARGV[2]
/// (the position the carried records were read at) unrevokes one of their keys — then the
/// carried record would bring back what was removed. KEYS: stream, epoch. ARGV: epoch,
/// position, number of key digests n, the n digests, then the entry's field/value pairs.
/// Returns the new id, `CONFLICT` or `EPOCH`.
const CARRY: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'EPOCH' end
local n = tonumber(ARGV[3])
local carried = {}
for i = 1, n do carried[ARGV[3 + i]] = true end
local after = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+')
for _, e in ipairs(after) do
  local f = e[2]
  for j = 1, #f, 2 do
    if f[j] == 'u' then
      for d in string.gmatch(f[j + 1], '%S+') do
        if carried[d] then return 'CONFLICT' end
      end
    end
  end
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4 + n))
"#;

/// The stream's last generated id (`0-0` when it does not exist) and the last id trimming
/// removed (`''` when none). KEYS: stream, trimmed.
const INFO: &str = r#"
local last = '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
end
return {last, redis.call('GET', KEYS[2]) or ''}
"#;

/// Replaces the epoch ARGV[1] by ARGV[2] (a node found that Redis lost the tail of the
/// stream); returns the epoch in force. KEYS: epoch.
const ROTATE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return redis.call('GET', KEYS[1])
"#;

/// The scripts, loaded once per connection.
pub struct Scripts {
    /// [`APPEND`].
    pub append: Script,
    /// [`CARRY`].
    pub carry: Script,
    info: Script,
    rotate: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            append: Script::new(APPEND),
            carry: Script::new(CARRY),
            info: Script::new(INFO),
            rotate: Script::new(ROTATE),
        }
    }
}

/// What [`stream_info`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// The id of the last entry ever appended (`0-0`: none).
    pub last: StreamId,
    /// The id of the last entry trimming removed, if any.
    pub trimmed: Option<StreamId>,
}

/// Where the stream ends and what was trimmed.
pub async fn stream_info(
    conn: &mut MultiplexedConnection,
    scripts: &Scripts,
    keys: &Keys,
) -> Result<StreamInfo, SessionError> {
    let (last, trimmed): (String, String) = scripts
        .info
        .key(&keys.stream)
        .key(&keys.trimmed)
        .invoke_async(conn)
        .await?;
    let last = last.parse().map_err(SessionError::Unreadable)?;
    let trimmed = match trimmed.as_str() {
        "" => None,
        t => Some(t.parse().map_err(SessionError::Unreadable)?),
    };
    Ok(StreamInfo { last, trimmed })
}

/// A fresh random epoch id (16 hex digits).
pub fn new_epoch() -> String {
    format!("{:016x}", crate::ids::random_u64())
}

/// The stream's epoch; the first node to find none writes one (an empty Redis: a new
/// stream, or one that lost its data).
pub async fn establish_epoch(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
) -> Result<String, SessionError> {
    let (epoch,): (Option<String>,) = redis::pipe()
        .cmd("SET")
        .arg(&keys.epoch)
        .arg(new_epoch())
        .arg("NX")
        .ignore()
        .cmd("GET")
        .arg(&keys.epoch)
        .query_async(conn)
        .await?;
    epoch.ok_or_else(|| SessionError::Unreadable("the epoch key vanished".to_string()))
}

/// Starts a new epoch in place of `old` (see [`ROTATE`]); returns the epoch in force.
pub async fn rotate_epoch(
    conn: &mut MultiplexedConnection,
    scripts: &Scripts,
    keys: &Keys,
    old: &str,
) -> Result<String, SessionError> {
    Ok(scripts
        .rotate
        .key(&keys.epoch)
        .arg(old)
        .arg(new_epoch())
        .invoke_async(conn)
        .await?)
}
