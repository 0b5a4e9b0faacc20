//! Shared integration-test harness: a real gateway on 127.0.0.1:0 with a temporary sled
//! store, real upstreams, and tokens signed by the real keys in `tests/keys/`. Every wait
//! is bounded; nothing sleeps to synchronise.
//!
//! - [`gateway`]: the in-process [`Gateway`] (started through `revgate::Gateway::start_on`)
//!   and the config texts it runs.
//! - [`child`]: the `revgate` binary as a child process ([`ServeChild`], [`run_revgate`]).
//! - [`keys`] (`tests/keys/mod.rs`, shared with the library's unit tests) and [`tokens`]:
//!   the test keys, signing, access-token and logout-token claims.
//! - [`upstreams`]: echo, mirror, body echo, byte pattern, silent and dead upstreams, and
//!   raw hand-written ones.
//! - [`http`]: the HTTP client, raw HTTP, status/JSON helpers.
//! - [`proxy`] and [`admin`]: requests to the proxy and the admin listener of a running
//!   gateway (in-process, child or bare address alike) and the checks on their answers.
//! - [`wait`]: bounded polling. [`faults`]: a small tmpfs to fill (disk full).
//! - [`redis_server`]: a real `redis-server` for the cluster tests.
//!
//! Each test binary compiles this module (`mod common;`) and uses a part of it, so an
//! unused-item warning here says nothing about the harness as a whole: allowed below.
#![allow(dead_code)]

pub mod admin;
pub mod child;
pub mod faults;
pub mod gateway;
pub mod http;
#[path = "../keys/mod.rs"]
pub mod keys;
pub mod proxy;
pub mod redis_server;
pub mod tokens;
pub mod upstreams;
pub mod wait;

// One flat namespace for the tests (`use common::*;`); a binary that uses nothing of a
// topic would warn about its re-export, hence the allow.
#[allow(unused_imports)]
pub use self::{
    admin::*,
    child::*,
    faults::*,
    gateway::*,
    http::*,
    keys::{key_path, ISS},
    proxy::*,
    redis_server::*,
    tokens::*,
    upstreams::*,
    wait::*,
};

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// Upper bound for any single wait in the tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A process-wide unique id with `prefix` (jti, sid, sub values that never collide).
pub fn unique_id(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A temporary directory for a store; keep it alive for the test's duration.
pub fn temp_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revgate.db");
    (dir, path)
}

/// Parses an RFC 3339 field of a record JSON into seconds since the epoch.
#[track_caller]
pub fn instant(v: &Value) -> u64 {
    revgate::clock::parse_rfc3339(v.as_str().expect("an RFC 3339 string")).expect("RFC 3339")
}

/// A random `u64` from the standard library's per-process random hash keys and the clock.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A random duration in `[low, high)` (millisecond resolution).
pub fn random_between(low: Duration, high: Duration) -> Duration {
    let span = (high.as_millis() - low.as_millis()).max(1) as u64;
    low + Duration::from_millis(random_u64() % span)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
