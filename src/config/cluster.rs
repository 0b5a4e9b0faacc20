//! `[cluster]` (SPEC §3, §8): the Redis stream several gateways share as their log of
//! revocation changes. Absent, or `redis_url = ""`: a single node, exactly as before.
//!
//! The URL may carry a password (`redis://user:password@host:6379/0`); it is never
//! logged, and [`redact_url`] is the one way it is shown (check-config, log lines).

use serde::{Deserialize, Serialize};

use super::{ConfigError, REDACTED};

/// Default `cluster.stream`: the Redis stream key every node of one cluster shares.
pub const DEFAULT_STREAM: &str = "revgate:revocations";
/// Longest `cluster.stream` (and so the longest prefix of the keys derived from it).
pub const MAX_STREAM_KEY_BYTES: usize = 256;
/// Longest `cluster.node_id`: it is written into every log entry this node appends.
pub const MAX_NODE_ID_BYTES: usize = 128;

/// Where the host name for a derived node id is read, first found wins.
const HOSTNAME_FILES: [&str; 2] = ["/proc/sys/kernel/hostname", "/etc/hostname"];

/// `[cluster]`: the shared log of several gateways.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS; `""`: a
    /// single node (no cluster).
    pub redis_url: String,
    /// The Redis stream key shared by every node of one cluster. The keys the nodes keep
    /// beside it start with it too (`<stream>:epoch`, `<stream>:nodes`, `<stream>:trim`).
    pub stream: String,
    /// This node's name in log entries, logs and metrics; `""`: host name + `:` + the
    /// port of `server.listen`. Every node needs its own (and its own store).
    pub node_id: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            stream: DEFAULT_STREAM.to_string(),
            node_id: String::new(),
        }
    }
}

impl ClusterConfig {
    /// Whether this node is part of a cluster (`redis_url` set).
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }

    /// The node id in force: `node_id`, else derived from the host name and `listen_port`.
    pub fn effective_node_id(&self, listen_port: u16) -> Result<String, String> {
        if !self.node_id.is_empty() {
            return Ok(self.node_id.clone());
        }
        let host = HOSTNAME_FILES
            .iter()
            .find_map(|f| {
                let name = std::fs::read_to_string(f).ok()?;
                let name = name.trim();
                (!name.is_empty()).then(|| name.to_string())
            })
            .ok_or_else(|| {
                format!(
                    "is empty and no host name could be read from {}: set it",
                    HOSTNAME_FILES.join(" or ")
                )
            })?;
        Ok(format!("{host}:{listen_port}"))
    }

    /// Checks the section (only when [`enabled`](Self::enabled)); the error names the key.
    pub(super) fn validate(&self, listen_port: u16) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        check_redis_url(&self.redis_url).map_err(|p| invalid("cluster.redis_url", p))?;
        if self.stream.is_empty() || self.stream.len() > MAX_STREAM_KEY_BYTES {
            return Err(invalid(
                "cluster.stream",
                format!("must be 1 to {MAX_STREAM_KEY_BYTES} bytes"),
            ));
        }
        if self
            .stream
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(invalid(
                "cluster.stream",
                format!(
                    "{:?} must not contain spaces or control characters",
                    self.stream
                ),
            ));
        }
        let node = self
            .effective_node_id(listen_port)
            .map_err(|p| invalid("cluster.node_id", p))?;
        check_node_id(&node).map_err(|p| {
            let key = if self.node_id.is_empty() {
                "cluster.node_id (derived from the host name)"
            } else {
                "cluster.node_id"
            };
            invalid(key, p)
        })
    }
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// A node id: 1 to [`MAX_NODE_ID_BYTES`] bytes of letters, digits and `.`, `-`, `_`, `:`,
/// `@` (a host name, a port, a zone).
fn check_node_id(id: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '@');
    if id.is_empty() || id.len() > MAX_NODE_ID_BYTES || !id.chars().all(ok_char) {
        return Err(format!(
            "{id:?} must be 1 to {MAX_NODE_ID_BYTES} letters, digits or . - _ : @"
        ));
    }
    Ok(())
}

/// Checks a Redis URL without ever repeating it (it may hold a password): `redis://` or
/// `rediss://`, a host, a database number, no `#insecure` (TLS certificates are always
/// verified).
fn check_redis_url(url: &str) -> Result<(), String> {
    const FORM: &str = "redis://[user:password@]host[:port][/db] or rediss://… for TLS";
    let scheme = url.split("://").next().unwrap_or_default();
    if !url.contains("://") || !matches!(scheme, "redis" | "rediss") {
        return Err(format!("must be a Redis URL: {FORM}"));
    }
    if url.contains('#') {
        return Err(
            "must not have a fragment (#insecure would turn TLS certificate checks off)"
                .to_string(),
        );
    }
    redis::IntoConnectionInfo::into_connection_info(url)
        .map(drop)
        .map_err(|e| {
            format!(
                "is not a valid Redis URL ({}): {FORM}",
                e.detail().unwrap_or(e.category())
            )
        })
}

/// `url` with its user information hidden: the password (`redis://user:<set>@host`), or
/// the whole of it when there is no `:` in it. What logs and check-config show.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let (userinfo, host) = (&authority[..at], &authority[at + 1..]);
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_string(),
    };
    format!("{scheme}://{shown}@{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        assert_eq!(
            redact_url("redis://revgate:s3cr3t@redis.internal:6379/0"),
            "redis://revgate:<set>@redis.internal:6379/0"
        );
        assert_eq!(
            redact_url("rediss://:s3cr3t@10.0.0.5/2"),
            "rediss://:<set>@10.0.0.5/2"
        );
        assert_eq!(redact_url("redis://s3cr3t@host"), "redis://<set>@host");
        // An `@` in the password does not leak a part of it.
        assert_eq!(
            redact_url("redis://u:p@ss@host:1"),
            "redis://u:<set>@host:1"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn urls_are_checked_without_repeating_them() {
        for good in [
            "redis://127.0.0.1:6379",
            "redis://user:pw@host:6380/3",
            "rediss://:pw@redis.example.com",
        ] {
            check_redis_url(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "http://host",
            "host:6379",
            "redis://",
            "redis://host/notanumber",
            "rediss://host#insecure",
            "redis://user:hunter2@host/x",
        ] {
            let e = check_redis_url(bad).expect_err(bad);
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn node_ids_are_names() {
        check_node_id("gw-1.eu-west:8080").unwrap();
        check_node_id("").unwrap_err();
        check_node_id("a b").unwrap_err();
        check_node_id(&"x".repeat(MAX_NODE_ID_BYTES + 1)).unwrap_err();
        let derived = ClusterConfig::default().effective_node_id(8080).unwrap();
        assert!(derived.ends_with(":8080"), "{derived}");
    }
}
