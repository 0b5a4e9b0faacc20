//! Configuration reload (SPEC §7): `SIGHUP` and `POST /v1/reload` re-read the config file
//! the gateway was started with, and `revgate check-config` runs the very same checks.
//!
//! A reload:
//! 1. reads and validates the file exactly as start-up does ([`check_file`]: TOML, unknown
//!    keys, `REVGATE_*` overrides, [`Config::validate`], and every `jwks_file` /
//!    `hmac_secret_file` must load — a `jwks_url` may be unreachable, as at start-up);
//! 2. keeps the running value of every key in [`RESTART_KEYS`] (they cannot change without
//!    a restart: bound sockets, the open store, the installed log subscriber), reports each
//!    one that differs as "needs restart", and validates the result again (so, say, a
//!    non-loopback `admin_listen` still requires an `admin_token`);
//!    Turning TLS on `listen` on or off is such a change ([`TLS_SWITCH_KEYS`]);
//!    with TLS on, `server.tls_cert` and `server.tls_key` are re-read and a bad or
//!    mismatched pair refuses the reload, naming the file ([`crate::tls::load`]);
//! 3. loads the keys of the new issuers into the keyring (kept last good keys of the others,
//!    issuers no longer configured dropped), then swaps the configuration in one step.
//!
//! Any failure refuses the whole reload and logs the reason; the running configuration
//! stays. Connections are never dropped and the store is never touched: requests in flight
//! finish with the configuration they started with, the next ones use the new one; TLS
//! connections already open keep their certificate, new ones get the new one.
//! Reloads are serialised.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::auth::keys::KeyError;
use crate::config::{Config, ConfigError};
use crate::App;

/// Keys that only apply at start-up. A reload keeps their running values and reports the
/// ones the file changed as needing a restart.
pub const RESTART_KEYS: [&str; 5] = [
    "server.listen",
    "server.admin_listen",
    "server.log_format",
    "store.path",
    "store.cache_bytes",
];

/// The `[cluster]` keys: the node's link to the shared log is set up at start-up, so a
/// reload keeps them and reports a change as needing a restart.
pub const CLUSTER_RESTART_KEYS: [&str; 3] =
    ["cluster.redis_url", "cluster.stream", "cluster.node_id"];
/// Reported as needing a restart when a reload would turn TLS on `listen` on or off (the
/// running setting stays); a reload that keeps TLS on re-reads both files.
pub const TLS_SWITCH_KEYS: [&str; 2] = ["server.tls_cert", "server.tls_key"];

/// What a successful reload did (the `POST /v1/reload` answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Always `true` (the answer of a refused reload is an error).
    pub reloaded: bool,
    /// The file that was read.
    pub config: PathBuf,
    /// Sections whose effective settings changed (`server`, `issuer`, `auth`, `route`,
    /// `backchannel`, `revoke_endpoint`, `store`), in that order.
    pub changed: Vec<String>,
    /// Keys of [`RESTART_KEYS`] the file changed; their running values stay until a restart.
    pub needs_restart: Vec<String>,
    /// Routes now in force.
    pub routes: usize,
    /// Issuers now in force.
    pub issuers: usize,
}

/// Why a configuration file was refused (by start-up, `check-config` or a reload). Each
/// displays as one line naming the key and the problem; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway was configured in memory: there is no file to re-read.
    #[error("no config file: this gateway was configured in memory")]
    NoConfigFile,
    /// The file is not a valid configuration (read, TOML, unknown keys, values,
    /// `REVGATE_*` overrides), also after keeping the [`RESTART_KEYS`].
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A `jwks_file` or `hmac_secret_file` does not load.
    #[error("{0}")]
    Keys(#[from] KeyError),
    /// `server.tls_cert` / `server.tls_key` do not load (the line names the key and file).
    #[error("{0}")]
    Tls(String),
}

/// Reads and checks a config file as start-up, reload and `check-config` all do: the
/// configuration, then its local key material (see [`crate::auth::keys::check_local_keys`]).
/// The error is one line naming the key and the problem.
pub fn check_file(path: &Path) -> Result<Config, ReloadError> {
    let config = Config::load(path)?;
    crate::auth::keys::check_local_keys(&config)?;
    crate::tls::load(&config.server).map_err(ReloadError::Tls)?;
    Ok(config)
}

/// Re-reads `app.config_path` and applies it (see the module documentation). The error is
/// the one line `POST /v1/reload` answers with; it is logged here too.
pub async fn reload(app: &App) -> Result<ReloadReport, ReloadError> {
    let Some(path) = app.config_path.clone() else {
        let e = ReloadError::NoConfigFile;
        app.metrics.reload_result(false);
        tracing::warn!(reason = %e, "configuration reload refused");
        return Err(e);
    };
    let _one_at_a_time = app.reload_lock.lock().await;
    match reload_from(app, &path).await {
        Ok(report) => {
            app.metrics.reload_result(true);
            for warning in app.config().warnings() {
                tracing::warn!(config = %path.display(), "{warning}");
            }
            tracing::info!(
                config = %path.display(),
                changed = %report.changed.join(","),
                routes = report.routes,
                issuers = report.issuers,
                "configuration reloaded"
            );
            if !report.needs_restart.is_empty() {
                tracing::warn!(
                    keys = %report.needs_restart.join(","),
                    "configuration reloaded, but these keys need a restart; their running values stay"
                );
            }
            Ok(report)
        }
        Err(e) => {
            app.metrics.reload_result(false);
            tracing::error!(
                config = %path.display(),
                reason = %e,
                "configuration reload refused; the running configuration stays"
            );
            Err(e)
        }
    }
}

async fn reload_from(app: &App, path: &Path) -> Result<ReloadReport, ReloadError> {
    let mut new = check_file(path)?;
    let old = app.config();
    let needs_restart = keep_restart_keys(&old, &mut new);
    new.validate()?;
    let changed = changed_sections(&old, &new);
    // Read again after the restart keys are settled (TLS on or off is one of them).
    let tls = crate::tls::load(&new.server).map_err(ReloadError::Tls)?;
    // Keys first: the new issuers have theirs before their tokens are accepted.
    app.keys.refresh_all(&new, &app.metrics).await;
    let report = ReloadReport {
        reloaded: true,
        config: path.to_path_buf(),
        changed,
        needs_restart,
        routes: new.routes.len(),
        issuers: new.issuers.len(),
    };
    if let Some(pair) = tls {
        app.tls.set(pair);
    }
    app.set_config(new);
    Ok(report)
}

/// Puts the running values of [`RESTART_KEYS`] into `new`; the keys that differed.
fn keep_restart_keys(old: &Config, new: &mut Config) -> Vec<String> {
    let mut differ = Vec::new();
    let mut keep = |key: &str, same: bool| {
        if !same {
            differ.push(key.to_string());
        }
    };
    keep(RESTART_KEYS[0], new.server.listen == old.server.listen);
    keep(
        RESTART_KEYS[1],
        new.server.admin_listen == old.server.admin_listen,
    );
    keep(
        RESTART_KEYS[2],
        new.server.log_format == old.server.log_format,
    );
    keep(RESTART_KEYS[3], new.store.path == old.store.path);
    keep(
        RESTART_KEYS[4],
        new.store.cache_bytes == old.store.cache_bytes,
    );
    new.server.listen = old.server.listen;
    new.server.admin_listen = old.server.admin_listen;
    new.server.log_format = old.server.log_format;
    new.store.path = old.store.path.clone();
    new.store.cache_bytes = old.store.cache_bytes;
    let (o, n) = (&old.cluster, &new.cluster);
    keep(CLUSTER_RESTART_KEYS[0], n.redis_url == o.redis_url);
    keep(CLUSTER_RESTART_KEYS[1], n.stream == o.stream);
    keep(CLUSTER_RESTART_KEYS[2], n.node_id == o.node_id);
    new.cluster = old.cluster.clone();
    // Whether `listen` speaks TLS is fixed at start-up (the listener's kind); the files
    // themselves are re-read by every reload.
    if new.server.tls_enabled() != old.server.tls_enabled() {
        differ.extend(TLS_SWITCH_KEYS.iter().map(|k| k.to_string()));
        new.server.tls_cert = old.server.tls_cert.clone();
        new.server.tls_key = old.server.tls_key.clone();
    }
    differ
}

/// Top-level sections whose settings differ between `old` and `new`.
fn changed_sections(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    [
        "server",
        "issuer",
        "auth",
        "route",
        "backchannel",
        "revoke_endpoint",
        "store",
    ]
    .iter()
    .filter(|s| a.get(**s) != b.get(**s))
    .map(|s| s.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra_route: &str, listen: &str) -> Config {
        let text = format!(
            r#"
[server]
listen = "{listen}"
[[issuer]]
issuer = "https://idp.example.com/"
audiences = ["api"]
jwks_url = "https://idp.example.com/jwks"
[[route]]
prefix = "/"
upstream = "http://127.0.0.1:1"
{extra_route}
"#
        );
        Config::parse(&text, |_| None).unwrap()
    }

    #[test]
    fn restart_keys_keep_their_running_values() {
        let old = config("", "127.0.0.1:8080");
        let mut new = config("", "127.0.0.1:8088");
        new.store.path = "elsewhere.db".into();
        let differ = keep_restart_keys(&old, &mut new);
        assert_eq!(differ, vec!["server.listen", "store.path"]);
        assert_eq!(new.server.listen, old.server.listen);
        assert_eq!(new.store.path, old.store.path);
        assert!(changed_sections(&old, &new).is_empty());
    }

    #[test]
    fn cluster_keys_need_a_restart_and_keep_their_running_values() {
        let old = config("", "127.0.0.1:8080");
        let mut new = config("", "127.0.0.1:8080");
        new.cluster.redis_url = "redis://127.0.0.1:6390".into();
        new.cluster.node_id = "other-node".into();
        let differ = keep_restart_keys(&old, &mut new);
        assert_eq!(differ, vec!["cluster.redis_url", "cluster.node_id"]);
        assert_eq!(new.cluster.redis_url, old.cluster.redis_url);
        assert_eq!(new.cluster.node_id, old.cluster.node_id);
        let mut new = config("", "127.0.0.1:8080");
        new.cluster.stream = "elsewhere".into();
        assert_eq!(keep_restart_keys(&old, &mut new), vec!["cluster.stream"]);
        assert_eq!(new.cluster.stream, old.cluster.stream);
        assert!(changed_sections(&old, &new).is_empty());
    }

    #[test]
    fn changed_sections_are_named() {
        let old = config("", "127.0.0.1:8080");
        let new = config(
            "[[route]]\nprefix = \"/v2\"\nupstream = \"http://127.0.0.1:2\"",
            "127.0.0.1:8080",
        );
        assert_eq!(changed_sections(&old, &new), vec!["route"]);
    }
}
