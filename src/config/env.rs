//! `REVGATE_<SECTION>_<KEY>` environment overrides of scalar keys (SPEC §3), applied to the
//! parsed TOML before it is typed, so an override is checked exactly as the file would be.

use super::ConfigError;

/// How an environment override's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScalarType {
    /// Taken verbatim as a TOML string (addresses, paths, tokens, names).
    String,
    /// A humantime duration, checked here so a bad value names the variable; a TOML string.
    Duration,
    /// A non-negative integer.
    Integer,
    /// `true` or `false` (case-insensitive).
    Bool,
}

/// Every key that `REVGATE_<SECTION>_<KEY>` may override (SPEC §3): the scalar keys of
/// `[server]`, `[auth]`, `[backchannel]`, `[revoke_endpoint]`, `[store]` and `[cluster]`
/// (so a node's id and the Redis password can come from its environment). Arrays and the
/// `[[issuer]]` / `[[route]]` tables are not overridable. Only these variables (and
/// [`ADMIN_TOKEN_ENV`]) are looked up; the command line warns about any other `REVGATE_*`
/// variable ([`override_variables`]).
pub(super) const ENV_OVERRIDES: &[(&str, &str, ScalarType)] = &[
    ("server", "listen", ScalarType::String),
    ("server", "admin_listen", ScalarType::String),
    ("server", "admin_token", ScalarType::String),
    ("server", "max_header_bytes", ScalarType::Integer),
    ("server", "max_body_bytes", ScalarType::Integer),
    ("server", "log_format", ScalarType::String),
    ("server", "tls_cert", ScalarType::String),
    ("server", "tls_key", ScalarType::String),
    ("server", "access_log", ScalarType::Bool),
    ("server", "drain_grace", ScalarType::Duration),
    ("server", "health_path", ScalarType::String),
    ("auth", "leeway", ScalarType::Duration),
    ("auth", "max_token_lifetime", ScalarType::Duration),
    ("auth", "jwks_refresh", ScalarType::Duration),
    ("auth", "forward_cors_preflight", ScalarType::Bool),
    ("auth", "identity_headers", ScalarType::Bool),
    ("auth", "verified_token_cache", ScalarType::Integer),
    ("backchannel", "path", ScalarType::String),
    ("backchannel", "max_age", ScalarType::Duration),
    ("backchannel", "strict_typ", ScalarType::Bool),
    ("revoke_endpoint", "path", ScalarType::String),
    ("store", "path", ScalarType::String),
    ("store", "sweep_interval", ScalarType::Duration),
    ("store", "cache_bytes", ScalarType::Integer),
    ("cluster", "redis_url", ScalarType::String),
    ("cluster", "stream", ScalarType::String),
    ("cluster", "node_id", ScalarType::String),
];

/// The one admin-token variable of the CLI and the gateway: the admin commands send it,
/// and it sets `server.admin_token` unless `REVGATE_SERVER_ADMIN_TOKEN` (the generic
/// override, which wins) is set. Empty counts as unset.
pub const ADMIN_TOKEN_ENV: &str = "REVGATE_ADMIN_TOKEN";

/// Every environment variable that a configuration reads: each `REVGATE_<SECTION>_<KEY>`
/// of [`ENV_OVERRIDES`], and [`ADMIN_TOKEN_ENV`].
pub fn override_variables() -> Vec<String> {
    ENV_OVERRIDES
        .iter()
        .map(|&(section, key, _)| env_var_name(section, key))
        .chain(std::iter::once(ADMIN_TOKEN_ENV.to_string()))
        .collect()
}

/// The environment variable overriding `section.key`.
pub fn env_var_name(section: &str, key: &str) -> String {
    format!("REVGATE_{}_{}", section, key).to_ascii_uppercase()
}

/// Converts the text of environment variable `var` to the TOML value of type `ty`.
fn env_value(var: &str, text: &str, ty: ScalarType) -> Result<toml::Value, ConfigError> {
    let bad = |problem: String| ConfigError::Invalid {
        key: format!("environment variable {var}"),
        problem,
    };
    match ty {
        ScalarType::String => Ok(toml::Value::String(text.to_string())),
        ScalarType::Duration => {
            humantime::parse_duration(text.trim())
                .map_err(|e| bad(format!("invalid duration {text:?}: {e}")))?;
            Ok(toml::Value::String(text.trim().to_string()))
        }
        ScalarType::Integer => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(toml::Value::Integer)
            .ok_or_else(|| bad(format!("expected a non-negative integer, got {text:?}"))),
        ScalarType::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(toml::Value::Boolean(true)),
            "false" => Ok(toml::Value::Boolean(false)),
            _ => Err(bad(format!("expected true or false, got {text:?}"))),
        },
    }
}

/// Applies every `REVGATE_<SECTION>_<KEY>` found through `env` to `table`, creating a
/// section table when it is absent. Returns `(variable, dotted key)` of each one applied, so
/// a value that later fails to deserialize can be traced to its variable.
pub(super) fn apply_env_overrides(
    table: &mut toml::Table,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut applied = Vec::new();
    for &(section, key, ty) in ENV_OVERRIDES {
        let var = env_var_name(section, key);
        let Some(text) = env(&var) else { continue };
        let value = env_value(&var, &text, ty)?;
        let section_table = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // A section of the wrong type is left alone: deserialization reports it by name.
        if let toml::Value::Table(t) = section_table {
            t.insert(key.to_string(), value);
            applied.push((var, format!("{section}.{key}")));
        }
    }
    let overridden = applied.iter().any(|(_, key)| key == "server.admin_token");
    if let Some(token) = env(ADMIN_TOKEN_ENV).filter(|t| !t.is_empty() && !overridden) {
        let server = table
            .entry("server".to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = server {
            t.insert("admin_token".to_string(), toml::Value::String(token));
            applied.push((
                ADMIN_TOKEN_ENV.to_string(),
                "server.admin_token".to_string(),
            ));
        }
    }
    Ok(applied)
}
