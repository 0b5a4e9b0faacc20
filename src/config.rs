//! Typed configuration (SPEC §3): serde defaults, `REVGATE_<SECTION>_<KEY>` environment
//! overrides, and an explicit [`Config::validate`]. Unknown keys are errors that name the key.
//!
//! | section | key | default |
//! |---|---|---|
//! | server | listen | `127.0.0.1:8080` |
//! | server | admin_listen | `127.0.0.1:9090` |
//! | server | admin_token | `""` (no token) |
//! | server | max_header_bytes | 16384 |
//! | server | max_body_bytes | 10485760 |
//! | server | log_format | `text` (`json`) |
//! | server | trusted_proxies | `[]` (IPs / CIDR blocks whose forwarding headers are kept) |
//! | server | admin_hosts | `[]` (extra `Host` names the admin API answers to) |
//! | issuer | issuer, audiences, jwks_url / jwks_file, algorithms (`["RS256"]`), hmac_secret_file, session_claim (`sid`), require_typ (`""`), logout_audiences (`[]`), logout_algorithms (`["RS256"]`), logout_require_exp (`true`) | |
//! | auth | leeway (`60s`), max_token_lifetime (`24h`), jwks_refresh (`10m`), forward_cors_preflight (`true`), identity_headers (`true`), verified_token_cache (`10000`, 0 = off) | |
//! | route | prefix (`/`), upstream, strip_prefix (`false`), timeout (`30s`), public (`false`), scopes (`[]`) | |
//! | backchannel | path (`/backchannel-logout`), max_age (`5m`), strict_typ (`false`) | |
//! | revoke_endpoint | path (`/revoke`) | |
//! | store | path (`data/revgate.db`), sweep_interval (`30s`), cache_bytes (67108864) | |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

mod ipnet;
pub use ipnet::IpNet;

/// Default number of verified tokens kept by the verified-token cache.
pub const DEFAULT_VERIFIED_TOKEN_CACHE: usize = 10_000;
/// Largest accepted `auth.verified_token_cache`.
pub const MAX_VERIFIED_TOKEN_CACHE: usize = 10_000_000;

/// Why a configuration was refused. The message names the key and the problem;
/// `main` turns any of these into exit status 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, or a value of the wrong type.
    #[error("{0}")]
    Parse(String),
    /// A value that parsed but is not acceptable; names the key.
    #[error("{key}: {problem}")]
    Invalid {
        /// Dotted key, e.g. `issuer[0].algorithms` or `server.admin_listen`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`
    #[serde(default)]
    pub server: ServerConfig,
    /// `[[issuer]]`, one or more.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// `[auth]`
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[[route]]`, one or more.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// `[backchannel]`
    #[serde(default)]
    pub backchannel: BackchannelConfig,
    /// `[revoke_endpoint]`
    #[serde(default)]
    pub revoke_endpoint: RevokeEndpointConfig,
    /// `[store]`
    #[serde(default)]
    pub store: StoreConfig,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[server]`: listeners and request limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Proxy and public endpoints.
    pub listen: SocketAddr,
    /// Admin API; a non-loopback address requires `admin_token`.
    pub admin_listen: SocketAddr,
    /// When non-empty the admin API requires `Authorization: Bearer <admin_token>`.
    pub admin_token: String,
    /// Largest accepted request header block (431 above it).
    pub max_header_bytes: usize,
    /// Largest accepted request body (413 above it).
    pub max_body_bytes: u64,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Peers (e.g. the load balancer) whose `X-Forwarded-For/-Proto/-Host`, `Forwarded`
    /// and `X-Real-IP` are kept (SPEC §4); every other peer's are removed and replaced.
    /// Each entry is checked when the file is read (a bad one names this key).
    pub trusted_proxies: Vec<IpNet>,
    /// Host names (or IP literals), without port, that the admin API answers to besides
    /// loopback IP literals, `localhost` and the `admin_listen` address (SPEC §5): any
    /// other `Host` gets `421`, so a DNS-rebinding page cannot reach the API. Compared
    /// case-insensitively; the `Host` port is not compared.
    pub admin_hosts: Vec<String>,
}

/// `[[issuer]]`: one trusted token issuer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact `iss` value.
    pub issuer: String,
    /// Access token `aud` must contain one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// JWKS fetched over HTTP(S); exactly one of `jwks_url` / `jwks_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// JWKS read from a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// Allow-list of access-token algorithms (case-sensitive names).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Shared secret for HS256/384/512 (only those use it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret_file: Option<PathBuf>,
    /// Claim carrying the session id.
    #[serde(default = "default_session_claim")]
    pub session_claim: String,
    /// When non-empty, access tokens must carry this `typ`.
    #[serde(default)]
    pub require_typ: String,
    /// client_ids a logout token's `aud` may name; empty refuses this issuer's logout tokens.
    #[serde(default)]
    pub logout_audiences: Vec<String>,
    /// Allow-list of logout-token algorithms.
    #[serde(default = "default_algorithms")]
    pub logout_algorithms: Vec<String>,
    /// Whether logout tokens must carry `exp` (errata set 1).
    #[serde(default = "default_true")]
    pub logout_require_exp: bool,
}

/// `[auth]`: token-check timing and header behaviour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Clock skew tolerated on every time check.
    #[serde(with = "humantime_serde_compat")]
    pub leeway: Duration,
    /// Longest accepted `exp - iat`; also how long sid/sub revocations are kept.
    #[serde(with = "humantime_serde_compat")]
    pub max_token_lifetime: Duration,
    /// Periodic JWKS refetch.
    #[serde(with = "humantime_serde_compat")]
    pub jwks_refresh: Duration,
    /// A CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
    /// passes without a token, forwarded with no body, method override or credentials.
    pub forward_cors_preflight: bool,
    /// Add `X-Auth-Iss/Sub/Sid/Jti` upstream.
    pub identity_headers: bool,
    /// Verified tokens kept so a repeat skips the signature check (0: off). The
    /// revocation lookup is never cached.
    pub verified_token_cache: usize,
}

/// `[[route]]`: a path prefix and where it goes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Whole-segment path prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// `http://host:port[/path]`.
    pub upstream: String,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Upstream timeout (504 after it).
    #[serde(default = "default_route_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Forwarded without a token.
    #[serde(default)]
    pub public: bool,
    /// All required in the token's `scope` / `scp`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[backchannel]`: the OpenID Connect Back-Channel Logout receiver.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackchannelConfig {
    /// Endpoint path on the proxy listener; `""` disables.
    pub path: String,
    /// Logout tokens with an `iat` older than this are refused.
    #[serde(with = "humantime_serde_compat")]
    pub max_age: Duration,
    /// Only `typ: logout+jwt` accepted.
    pub strict_typ: bool,
}

/// `[revoke_endpoint]`: the RFC 7009-style endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevokeEndpointConfig {
    /// Endpoint path on the proxy listener; `""` disables.
    pub path: String,
}

/// `[store]`: the sled revocation store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the sled database.
    pub path: PathBuf,
    /// How often the sweeper runs.
    #[serde(with = "humantime_serde_compat")]
    pub sweep_interval: Duration,
    /// sled page cache size.
    pub cache_bytes: u64,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_string()]
}
fn default_session_claim() -> String {
    "sid".to_string()
}
fn default_true() -> bool {
    true
}
fn default_prefix() -> String {
    "/".to_string()
}
fn default_route_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".parse().expect("valid default"),
            admin_listen: "127.0.0.1:9090".parse().expect("valid default"),
            admin_token: String::new(),
            max_header_bytes: 16384,
            max_body_bytes: 10_485_760,
            log_format: LogFormat::Text,
            trusted_proxies: Vec::new(),
            admin_hosts: Vec::new(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            leeway: Duration::from_secs(60),
            max_token_lifetime: Duration::from_secs(24 * 3600),
            jwks_refresh: Duration::from_secs(600),
            forward_cors_preflight: true,
            identity_headers: true,
            verified_token_cache: DEFAULT_VERIFIED_TOKEN_CACHE,
        }
    }
}

impl Default for BackchannelConfig {
    fn default() -> Self {
        BackchannelConfig {
            path: "/backchannel-logout".to_string(),
            max_age: Duration::from_secs(300),
            strict_typ: false,
        }
    }
}

impl Default for RevokeEndpointConfig {
    fn default() -> Self {
        RevokeEndpointConfig {
            path: "/revoke".to_string(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("data/revgate.db"),
            sweep_interval: Duration::from_secs(30),
            cache_bytes: 67_108_864,
        }
    }
}

/// serde adapter: durations written in humantime syntax (`90s`, `15m`, `24h`).
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim())
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

/// Smallest accepted `server.max_header_bytes`: below 1 KiB ordinary requests with a
/// bearer token no longer fit.
pub const MIN_HEADER_BYTES: usize = 1024;
/// Largest accepted `server.max_header_bytes` (1 MiB): bigger header blocks only help
/// memory-exhaustion attacks.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// Smallest accepted `server.max_body_bytes`.
pub const MIN_BODY_BYTES: u64 = 1;
/// Largest accepted `auth.leeway`: more clock skew than this means a broken clock, and the
/// leeway also extends how long every revocation is kept.
pub const MAX_LEEWAY: Duration = Duration::from_secs(3600);
/// Shortest accepted `auth.jwks_refresh`, so the gateway never hammers an IdP.
pub const MIN_JWKS_REFRESH: Duration = Duration::from_secs(1);
/// Shortest accepted `store.sweep_interval`.
pub const MIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Smallest accepted `store.cache_bytes` (1 MiB).
pub const MIN_CACHE_BYTES: u64 = 1 << 20;

/// How an environment override's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScalarType {
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
/// `[server]`, `[auth]`, `[backchannel]`, `[revoke_endpoint]` and `[store]`. Arrays and the
/// `[[issuer]]` / `[[route]]` tables are not overridable. Only these variables are ever
/// looked up, so any other `REVGATE_*` variable is ignored.
const ENV_OVERRIDES: &[(&str, &str, ScalarType)] = &[
    ("server", "listen", ScalarType::String),
    ("server", "admin_listen", ScalarType::String),
    ("server", "admin_token", ScalarType::String),
    ("server", "max_header_bytes", ScalarType::Integer),
    ("server", "max_body_bytes", ScalarType::Integer),
    ("server", "log_format", ScalarType::String),
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
];

/// The environment variable overriding `section.key`.
fn env_var_name(section: &str, key: &str) -> String {
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
fn apply_env_overrides(
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
    Ok(applied)
}

/// Turns a toml error into one line naming the key and, when `text` holds the span, the
/// line and column: `server.bogus: unknown field `bogus`, expected ... (line 3, column 1)`.
fn describe_toml_error(err: &toml::de::Error, text: Option<&str>) -> String {
    // Without input, toml's Display ends with "in `a.b.c`" naming the key path.
    let mut bare = err.clone();
    bare.set_input(None);
    let rendered = bare.to_string();
    let key = rendered
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `").and_then(|k| k.strip_suffix('`')))
        .map(str::to_string);
    let message = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let position = match (text, err.span()) {
        (Some(text), Some(span)) => Some(line_column(text, span.start)),
        _ => None,
    };
    let mut out = String::new();
    if let Some(key) = &key {
        out.push_str(key);
        out.push_str(": ");
    }
    out.push_str(&message);
    if let Some((line, column)) = position {
        out.push_str(&format!(" (line {line}, column {column})"));
    }
    out
}

/// 1-based line and column (in characters) of byte offset `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// Longest `server.admin_hosts` entry (the longest DNS name).
pub const MAX_ADMIN_HOST_BYTES: usize = 253;

/// Checks one `server.admin_hosts` entry: an IP literal (IPv6 with or without brackets) or
/// a DNS name of letters, digits, `-` and `.`; no port, no wildcard.
fn check_admin_host(host: &str) -> Result<(), String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if host.is_empty() || host.len() > MAX_ADMIN_HOST_BYTES {
        return Err(format!(
            "{host:?}: must be a host name of 1 to {MAX_ADMIN_HOST_BYTES} bytes"
        ));
    }
    let name_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !name_ok {
        return Err(format!(
            "{host:?}: must be an IP address or a host name (letters, digits, '-' and '.'), without port"
        ));
    }
    Ok(())
}

/// Checks an `http://` or `https://` URL with a host; `key` names it in the error.
fn check_http_url(key: &str, text: &str, allow_query: bool) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| invalid(key, format!("{text:?} is not a valid URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(
            key,
            format!("{text:?} must be an http:// or https:// URL"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(key, format!("{text:?} has no host")));
    }
    if !allow_query && (url.query().is_some() || url.fragment().is_some()) {
        return Err(invalid(
            key,
            format!("{text:?} must not have a query or fragment"),
        ));
    }
    Ok(url)
}

/// Checks an algorithm allow-list; returns whether it names an HMAC algorithm.
fn check_algorithms(key: &str, names: &[String]) -> Result<bool, ConfigError> {
    if names.is_empty() {
        return Err(invalid(key, "must list at least one algorithm"));
    }
    let mut hmac = false;
    for name in names {
        if name.trim().eq_ignore_ascii_case("none") {
            return Err(invalid(
                key,
                format!("{name:?}: the \"none\" algorithm is never allowed"),
            ));
        }
        let alg: Algorithm = name.parse().map_err(|_| {
            invalid(
                key,
                format!(
                    "unknown algorithm {name:?} (names are case-sensitive: RS256 RS384 RS512 \
                     PS256 PS384 PS512 ES256 ES384 EdDSA HS256 HS384 HS512)"
                ),
            )
        })?;
        hmac |= matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    }
    Ok(hmac)
}

/// Checks a `path` of the proxy listener: `""` (disabled) or starting with `/`.
fn check_endpoint_path(key: &str, path: &str) -> Result<(), ConfigError> {
    if !path.is_empty() && !path.starts_with('/') {
        return Err(invalid(
            key,
            format!("{path:?} must start with \"/\" (or be \"\" to disable)"),
        ));
    }
    if path.contains(['?', '#']) {
        return Err(invalid(
            key,
            format!("{path:?} must not contain '?' or '#'"),
        ));
    }
    Ok(())
}

impl Config {
    /// Reads `path`, applies `REVGATE_*` overrides from the process environment, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, |name| std::env::var(name).ok())
    }

    /// Parses TOML text, applies overrides looked up through `env`, validates.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError::Parse(describe_toml_error(&e, Some(text)))
        })?;
        let applied = apply_env_overrides(&mut table, &env)?;
        let config = match Config::deserialize(toml::Value::Table(table)) {
            Ok(config) => config,
            Err(err) => return Err(ConfigError::Parse(Self::explain(text, &err, &applied))),
        };
        config.validate()?;
        Ok(config)
    }

    /// The best one-line description of a deserialization error of the overridden table:
    /// with the line of `text` when the file itself has the same problem, else naming the
    /// environment variable that set the key.
    fn explain(text: &str, err: &toml::de::Error, applied: &[(String, String)]) -> String {
        if let Err(from_text) = toml::from_str::<Config>(text) {
            if from_text.message() == err.message() {
                return describe_toml_error(&from_text, Some(text));
            }
        }
        let line = describe_toml_error(err, None);
        match applied
            .iter()
            .find(|(_, key)| line.starts_with(&format!("{key}: ")))
        {
            Some((var, _)) => format!("{line} (set by environment variable {var})"),
            None => line,
        }
    }

    /// Checks every rule that serde cannot express; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server()?;
        self.validate_issuers()?;
        self.validate_auth()?;
        self.validate_routes()?;
        self.validate_endpoints()?;
        self.validate_store()
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if !s.admin_listen.ip().is_loopback() && s.admin_token.is_empty() {
            return Err(invalid(
                "server.admin_listen",
                format!(
                    "{} is not a loopback address: set server.admin_token to protect the admin API",
                    s.admin_listen
                ),
            ));
        }
        let same_port = s.listen.port() == s.admin_listen.port() && s.listen.port() != 0;
        let overlapping_ip = s.listen.ip() == s.admin_listen.ip()
            || s.listen.ip().is_unspecified()
            || s.admin_listen.ip().is_unspecified();
        if same_port && overlapping_ip {
            return Err(invalid(
                "server.admin_listen",
                format!(
                    "{} collides with server.listen {}: the admin API needs its own listener",
                    s.admin_listen, s.listen
                ),
            ));
        }
        for (i, host) in s.admin_hosts.iter().enumerate() {
            check_admin_host(host)
                .map_err(|problem| invalid(format!("server.admin_hosts[{i}]"), problem))?;
        }
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&s.max_header_bytes) {
            return Err(invalid(
                "server.max_header_bytes",
                format!(
                    "{} is outside {MIN_HEADER_BYTES}..={MAX_HEADER_BYTES}",
                    s.max_header_bytes
                ),
            ));
        }
        if s.max_body_bytes < MIN_BODY_BYTES {
            return Err(invalid(
                "server.max_body_bytes",
                format!("must be at least {MIN_BODY_BYTES}"),
            ));
        }
        Ok(())
    }

    fn validate_issuers(&self) -> Result<(), ConfigError> {
        if self.issuers.is_empty() {
            return Err(invalid("issuer", "at least one [[issuer]] is required"));
        }
        for (i, iss) in self.issuers.iter().enumerate() {
            let key = |field: &str| format!("issuer[{i}].{field}");
            if iss.issuer.is_empty() {
                return Err(invalid(key("issuer"), "must not be empty"));
            }
            if let Some(j) = self.issuers[..i]
                .iter()
                .position(|o| o.issuer == iss.issuer)
            {
                return Err(invalid(
                    key("issuer"),
                    format!("{:?} is already configured as issuer[{j}]", iss.issuer),
                ));
            }
            if iss.audiences.is_empty() {
                return Err(invalid(key("audiences"), "must list at least one audience"));
            }
            if iss.audiences.iter().any(String::is_empty) {
                return Err(invalid(key("audiences"), "entries must not be empty"));
            }
            if iss.logout_audiences.iter().any(String::is_empty) {
                return Err(invalid(
                    key("logout_audiences"),
                    "entries must not be empty",
                ));
            }
            match (&iss.jwks_url, &iss.jwks_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        key("jwks_url"),
                        "set exactly one of jwks_url and jwks_file, not both",
                    ))
                }
                (None, None) => {
                    return Err(invalid(
                        key("jwks_url"),
                        "one of jwks_url and jwks_file is required",
                    ))
                }
                (Some(url), None) => {
                    check_http_url(&key("jwks_url"), url, true)?;
                }
                (None, Some(file)) => {
                    if file.as_os_str().is_empty() {
                        return Err(invalid(key("jwks_file"), "must not be empty"));
                    }
                }
            }
            let hmac_access = check_algorithms(&key("algorithms"), &iss.algorithms)?;
            let hmac_logout = check_algorithms(&key("logout_algorithms"), &iss.logout_algorithms)?;
            match &iss.hmac_secret_file {
                None if hmac_access || hmac_logout => {
                    let field = if hmac_access {
                        "algorithms"
                    } else {
                        "logout_algorithms"
                    };
                    return Err(invalid(
                        key(field),
                        "HS256/HS384/HS512 require hmac_secret_file",
                    ));
                }
                Some(_) if !(hmac_access || hmac_logout) => {
                    return Err(invalid(
                        key("hmac_secret_file"),
                        "is only used by HS256/HS384/HS512, and neither algorithms nor \
                         logout_algorithms lists one",
                    ));
                }
                Some(file) if file.as_os_str().is_empty() => {
                    return Err(invalid(key("hmac_secret_file"), "must not be empty"));
                }
                _ => {}
            }
            if iss.session_claim.is_empty() {
                return Err(invalid(key("session_claim"), "must not be empty"));
            }
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        if a.leeway > MAX_LEEWAY {
            return Err(invalid(
                "auth.leeway",
                format!(
                    "{} exceeds the maximum of {}",
                    humantime::format_duration(a.leeway),
                    humantime::format_duration(MAX_LEEWAY)
                ),
            ));
        }
        if a.verified_token_cache > MAX_VERIFIED_TOKEN_CACHE {
            return Err(invalid(
                "auth.verified_token_cache",
                format!("must be at most {MAX_VERIFIED_TOKEN_CACHE} (0 turns the cache off)"),
            ));
        }
        if a.max_token_lifetime.is_zero() {
            return Err(invalid("auth.max_token_lifetime", "must be greater than 0"));
        }
        if a.jwks_refresh < MIN_JWKS_REFRESH {
            return Err(invalid(
                "auth.jwks_refresh",
                format!(
                    "must be at least {}",
                    humantime::format_duration(MIN_JWKS_REFRESH)
                ),
            ));
        }
        Ok(())
    }

    fn validate_routes(&self) -> Result<(), ConfigError> {
        if self.routes.is_empty() {
            return Err(invalid("route", "at least one [[route]] is required"));
        }
        for (i, route) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("route[{i}].{field}");
            let p = &route.prefix;
            let problem = if !p.starts_with('/') {
                Some("must start with \"/\"")
            } else if p.len() > 1 && p.ends_with('/') {
                Some("must not end with \"/\" (unless it is exactly \"/\")")
            } else if p.contains("//") {
                Some("must not contain \"//\"")
            } else if p.contains(['?', '#']) {
                Some("must not contain '?' or '#'")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(invalid(key("prefix"), format!("{p:?} {problem}")));
            }
            if let Some(j) = self.routes[..i].iter().position(|o| o.prefix == *p) {
                return Err(invalid(
                    key("prefix"),
                    format!("{p:?} is already used by route[{j}]"),
                ));
            }
            check_http_url(&key("upstream"), &route.upstream, false)?;
            if route.timeout.is_zero() {
                return Err(invalid(key("timeout"), "must be greater than 0"));
            }
            for scope in &route.scopes {
                if scope.is_empty() || scope.chars().any(char::is_whitespace) {
                    return Err(invalid(
                        key("scopes"),
                        format!("{scope:?} is not a scope (empty or contains spaces)"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_endpoints(&self) -> Result<(), ConfigError> {
        check_endpoint_path("backchannel.path", &self.backchannel.path)?;
        check_endpoint_path("revoke_endpoint.path", &self.revoke_endpoint.path)?;
        if !self.backchannel.path.is_empty() && self.backchannel.path == self.revoke_endpoint.path {
            return Err(invalid(
                "revoke_endpoint.path",
                format!(
                    "{:?} is also backchannel.path: the two endpoints need different paths",
                    self.revoke_endpoint.path
                ),
            ));
        }
        if self.backchannel.max_age.is_zero() {
            return Err(invalid("backchannel.max_age", "must be greater than 0"));
        }
        Ok(())
    }

    fn validate_store(&self) -> Result<(), ConfigError> {
        let s = &self.store;
        if s.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty"));
        }
        if s.sweep_interval < MIN_SWEEP_INTERVAL {
            return Err(invalid(
                "store.sweep_interval",
                format!(
                    "must be at least {}",
                    humantime::format_duration(MIN_SWEEP_INTERVAL)
                ),
            ));
        }
        if s.cache_bytes < MIN_CACHE_BYTES {
            return Err(invalid(
                "store.cache_bytes",
                format!("must be at least {MIN_CACHE_BYTES} (1 MiB)"),
            ));
        }
        Ok(())
    }

    /// The issuer whose `issuer` equals `iss` exactly.
    pub fn issuer(&self, iss: &str) -> Option<&IssuerConfig> {
        self.issuers.iter().find(|i| i.issuer == iss)
    }

    /// The effective settings as TOML, with `admin_token` shown as `"<set>"` when set.
    pub fn effective_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.server.admin_token.is_empty() {
            shown.server.admin_token = REDACTED.to_string();
        }
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# cannot render the effective settings: {e}\n"))
    }
}

/// What [`Config::effective_toml`] shows in place of a secret.
pub const REDACTED: &str = "<set>";

impl IssuerConfig {
    /// `algorithms` as typed values (valid after [`Config::validate`]).
    pub fn access_algorithms(&self) -> Vec<Algorithm> {
        parse_algorithms(&self.algorithms)
    }
    /// `logout_algorithms` as typed values (valid after [`Config::validate`]).
    pub fn logout_algorithm_list(&self) -> Vec<Algorithm> {
        parse_algorithms(&self.logout_algorithms)
    }
}

fn parse_algorithms(names: &[String]) -> Vec<Algorithm> {
    names.iter().filter_map(|n| n.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SPEC §3 example, with `jwks_url` and without the commented keys.
    const SPEC_EXAMPLE: &str = r#"
[server]
listen        = "127.0.0.1:8080"   # proxy + public endpoints
admin_listen  = "127.0.0.1:9090"   # admin API; a non-loopback address requires admin_token
admin_token   = ""                 # if set, the admin API requires "Authorization: Bearer <admin_token>"
max_header_bytes = 16384
max_body_bytes   = 10485760
log_format       = "text"          # or "json"

[[issuer]]                         # one or more
issuer     = "https://idp.example.com/"          # exact match on iss
audiences  = ["https://api.example.com"]         # access token aud must contain one
jwks_url   = "https://idp.example.com/.well-known/jwks.json"   # exactly one of jwks_url / jwks_file
algorithms = ["RS256"]            # default; allow-list, case-sensitive; "none" is refused by check-config
session_claim = "sid"             # claim carrying the session id (e.g. a namespaced claim for Auth0)
require_typ   = ""                # e.g. "at+jwt": then typ must be present and equal (RFC 9068)
logout_audiences  = ["my-client-id"]   # client_ids a logout token's aud may name
logout_algorithms = ["RS256"]     # default; allow-list for logout tokens
logout_require_exp = true         # false only for IdPs that predate errata set 1

[auth]
leeway             = "60s"
max_token_lifetime = "24h"
jwks_refresh       = "10m"        # periodic refetch; an unknown kid triggers a rate-limited refetch
forward_cors_preflight = true     # OPTIONS with Access-Control-Request-Method passes without a token
identity_headers   = true         # add X-Auth-Iss/Sub/Sid/Jti upstream; client-sent copies are always removed

[[route]]                         # one or more; longest prefix wins, matched by whole path
prefix   = "/"                    # segments ("/api" matches /api and /api/x, not /apix); no match: 404
upstream = "http://127.0.0.1:8081"   # its own path, if any, is put before the request path
strip_prefix = false              # true: the route prefix is removed before forwarding
timeout  = "30s"
public   = false                  # true: forwarded without a token
scopes   = []                     # all required in the token's scope / scp claim, else 403

[backchannel]
path    = "/backchannel-logout"   # "" disables the endpoint
max_age = "5m"                    # logout token iat older than this is rejected
strict_typ = false                # true: typ must be present and be logout+jwt

[revoke_endpoint]
path = "/revoke"                  # "" disables

[store]
path           = "data/revgate.db"
sweep_interval = "30s"
cache_bytes    = 67108864
"#;

    const MINIMAL: &str = r#"
[[issuer]]
issuer = "https://idp.example.com/"
audiences = ["api"]
jwks_url = "https://idp.example.com/jwks.json"

[[route]]
upstream = "http://127.0.0.1:8081"
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, no_env)
    }

    /// Parses `text`, expecting a failure; returns the message.
    fn err(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    /// `MINIMAL` with `extra` lines appended to the first issuer.
    fn with_issuer(extra: &str) -> String {
        MINIMAL.replace(
            "jwks_url = \"https://idp.example.com/jwks.json\"\n",
            &format!("jwks_url = \"https://idp.example.com/jwks.json\"\n{extra}\n"),
        )
    }

    /// `MINIMAL` with `extra` lines appended to the first route.
    fn with_route(extra: &str) -> String {
        format!("{MINIMAL}{extra}\n")
    }

    /// `MINIMAL` with a `[section]` table holding `body`.
    fn with_section(section: &str, body: &str) -> String {
        format!("[{section}]\n{body}\n{MINIMAL}")
    }

    fn assert_err(text: &str, needles: &[&str]) {
        let msg = err(text);
        for n in needles {
            assert!(msg.contains(n), "error {msg:?} should contain {n:?}");
        }
    }

    #[test]
    fn spec_example_parses() {
        let c = parse(SPEC_EXAMPLE).expect("SPEC example is valid");
        assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.issuers.len(), 1);
        assert_eq!(c.issuers[0].logout_audiences, vec!["my-client-id"]);
        assert_eq!(c.issuers[0].access_algorithms(), vec![Algorithm::RS256]);
        assert_eq!(c.auth.max_token_lifetime, Duration::from_secs(86400));
        assert_eq!(c.routes[0].timeout, Duration::from_secs(30));
        assert_eq!(c.backchannel.max_age, Duration::from_secs(300));
        assert_eq!(c.store.cache_bytes, 67_108_864);
    }

    #[test]
    fn defaults_fill_in_for_minimal_file() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.server.admin_listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.server.admin_token, "");
        assert_eq!(c.server.max_header_bytes, 16384);
        assert_eq!(c.server.max_body_bytes, 10_485_760);
        assert_eq!(c.server.log_format, LogFormat::Text);
        let i = &c.issuers[0];
        assert_eq!(i.algorithms, vec!["RS256"]);
        assert_eq!(i.logout_algorithms, vec!["RS256"]);
        assert_eq!(i.session_claim, "sid");
        assert_eq!(i.require_typ, "");
        assert!(i.logout_audiences.is_empty());
        assert!(i.logout_require_exp);
        assert!(i.hmac_secret_file.is_none() && i.jwks_file.is_none());
        assert_eq!(c.auth.leeway, Duration::from_secs(60));
        assert_eq!(c.auth.max_token_lifetime, Duration::from_secs(86400));
        assert_eq!(c.auth.jwks_refresh, Duration::from_secs(600));
        assert!(c.auth.forward_cors_preflight && c.auth.identity_headers);
        let r = &c.routes[0];
        assert_eq!(r.prefix, "/");
        assert!(!r.strip_prefix && !r.public && r.scopes.is_empty());
        assert_eq!(r.timeout, Duration::from_secs(30));
        assert_eq!(c.backchannel.path, "/backchannel-logout");
        assert_eq!(c.backchannel.max_age, Duration::from_secs(300));
        assert!(!c.backchannel.strict_typ);
        assert_eq!(c.revoke_endpoint.path, "/revoke");
        assert_eq!(c.store.path, PathBuf::from("data/revgate.db"));
        assert_eq!(c.store.sweep_interval, Duration::from_secs(30));
        assert_eq!(c.store.cache_bytes, 67_108_864);
    }

    #[test]
    fn syntax_error_names_the_line() {
        let msg = err("[server]\nlisten = \n");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg:?}");
    }

    #[test]
    fn unknown_key_in_each_section_is_named() {
        for section in ["server", "auth", "backchannel", "revoke_endpoint", "store"] {
            let msg = err(&with_section(section, "bogus_key = 1"));
            assert!(msg.contains("bogus_key"), "{section}: {msg}");
            assert!(msg.contains("line 2"), "{section}: {msg}");
            assert!(!msg.contains('\n'), "one line: {msg:?}");
        }
        let msg = err(&with_issuer("bogus_key = 1"));
        assert!(msg.contains("bogus_key") && msg.contains("line 6"), "{msg}");
        let msg = err(&with_route("bogus_key = 1"));
        assert!(msg.contains("bogus_key") && msg.contains("line 9"), "{msg}");
        let msg = err(&format!("bogus_top = 1\n{MINIMAL}"));
        assert!(msg.contains("bogus_top") && msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn wrong_types_are_named() {
        assert_err(
            &with_section("server", "listen = \"nowhere\""),
            &["listen", "line 2"],
        );
        assert_err(
            &with_section("auth", "leeway = \"soon\""),
            &["leeway", "invalid duration"],
        );
        assert_err(
            &with_section("server", "log_format = \"xml\""),
            &["log_format"],
        );
        assert_err(
            &format!("{MINIMAL}[[route]]\nprefix = \"/x\"\n"),
            &["upstream"],
        );
    }

    #[test]
    fn needs_an_issuer_and_a_route() {
        assert_err(
            "[[route]]\nupstream = \"http://127.0.0.1:1\"\n",
            &["issuer: at least one"],
        );
        let no_route = MINIMAL.split("[[route]]").next().unwrap();
        assert_err(no_route, &["route: at least one"]);
    }

    #[test]
    fn issuer_rules() {
        assert_err(
            &MINIMAL.replace("issuer = \"https://idp.example.com/\"", "issuer = \"\""),
            &["issuer[0].issuer", "empty"],
        );
        let dup = MINIMAL.replace(
            "[[route]]",
            &format!("{}\n[[route]]", MINIMAL.split("[[route]]").next().unwrap()),
        );
        assert_err(&dup, &["issuer[1].issuer", "issuer[0]"]);
        assert_err(
            &MINIMAL.replace("audiences = [\"api\"]", "audiences = []"),
            &["issuer[0].audiences"],
        );
        assert_err(
            &MINIMAL.replace("audiences = [\"api\"]", "audiences = [\"\"]"),
            &["issuer[0].audiences"],
        );
        // exactly one of jwks_url / jwks_file
        assert_err(
            &with_issuer("jwks_file = \"k.json\""),
            &["issuer[0].jwks_url", "not both"],
        );
        assert_err(
            &MINIMAL.replace("jwks_url = \"https://idp.example.com/jwks.json\"", ""),
            &["issuer[0].jwks_url", "required"],
        );
        let file_only = MINIMAL.replace(
            "jwks_url = \"https://idp.example.com/jwks.json\"",
            "jwks_file = \"data/demo/jwks.json\"",
        );
        assert!(parse(&file_only).is_ok());
        assert_err(
            &MINIMAL.replace("https://idp.example.com/jwks.json", "ftp://idp/jwks"),
            &["issuer[0].jwks_url", "http"],
        );
        assert_err(
            &MINIMAL.replace("https://idp.example.com/jwks.json", "not a url"),
            &["issuer[0].jwks_url"],
        );
        assert_err(
            &MINIMAL.replace("https://idp.example.com/jwks.json", "https://:443/jwks"),
            &["issuer[0].jwks_url"],
        );
        // algorithms
        assert_err(&with_issuer("algorithms = []"), &["issuer[0].algorithms"]);
        assert_err(
            &with_issuer("logout_algorithms = []"),
            &["issuer[0].logout_algorithms"],
        );
        assert_err(
            &with_issuer("algorithms = [\"rs256\"]"),
            &["issuer[0].algorithms", "rs256"],
        );
        assert_err(
            &with_issuer("algorithms = [\"ES512\"]"),
            &["issuer[0].algorithms", "ES512"],
        );
        for none in ["none", "None", "NONE"] {
            assert_err(
                &with_issuer(&format!("algorithms = [\"RS256\", \"{none}\"]")),
                &[
                    "issuer[0].algorithms",
                    "\"none\" algorithm is never allowed",
                ],
            );
            assert_err(
                &with_issuer(&format!("logout_algorithms = [\"{none}\"]")),
                &["issuer[0].logout_algorithms", "never allowed"],
            );
        }
        let all = "algorithms = [\"RS256\",\"RS384\",\"RS512\",\"PS256\",\"PS384\",\"PS512\",\
                   \"ES256\",\"ES384\",\"EdDSA\"]";
        assert_eq!(
            parse(&with_issuer(all)).unwrap().issuers[0]
                .access_algorithms()
                .len(),
            9
        );
        // HMAC needs its secret and vice versa
        assert_err(
            &with_issuer("algorithms = [\"HS256\"]"),
            &["issuer[0].algorithms", "hmac_secret_file"],
        );
        assert_err(
            &with_issuer("logout_algorithms = [\"HS512\"]"),
            &["issuer[0].logout_algorithms", "hmac_secret_file"],
        );
        assert_err(
            &with_issuer("hmac_secret_file = \"/etc/revgate/idp.secret\""),
            &["issuer[0].hmac_secret_file"],
        );
        let hs = with_issuer(
            "algorithms = [\"RS256\", \"HS384\"]\nhmac_secret_file = \"/etc/revgate/idp.secret\"",
        );
        assert!(parse(&hs).is_ok());
        let hs_logout = with_issuer(
            "logout_algorithms = [\"HS256\"]\nhmac_secret_file = \"/etc/revgate/idp.secret\"",
        );
        assert!(parse(&hs_logout).is_ok());
        assert_err(
            &with_issuer("session_claim = \"\""),
            &["issuer[0].session_claim"],
        );
    }

    #[test]
    fn route_rules() {
        let route = |body: &str| {
            format!("{MINIMAL}[[route]]\nupstream = \"http://127.0.0.1:8082\"\n{body}\n")
        };
        for bad in ["api", "/api/", "/a//b", "/a?b", "/a#b", "//"] {
            assert_err(&route(&format!("prefix = \"{bad}\"")), &["route[1].prefix"]);
        }
        assert!(parse(&route("prefix = \"/api/v1\"")).is_ok());
        assert_err(&route("prefix = \"/\""), &["route[1].prefix", "route[0]"]);
        for bad in [
            "ftp://127.0.0.1:1",
            "127.0.0.1:8081",
            "http://",
            "http://h/?q=1",
            "http://h/#f",
        ] {
            assert_err(
                &format!("{MINIMAL}[[route]]\nprefix = \"/x\"\nupstream = \"{bad}\"\n"),
                &["route[1].upstream"],
            );
        }
        assert!(parse(&format!(
            "{MINIMAL}[[route]]\nprefix = \"/x\"\nupstream = \"https://h:8443/base\"\n"
        ))
        .is_ok());
        assert_err(&with_route("timeout = \"0s\""), &["route[0].timeout"]);
        assert_err(&with_route("scopes = [\"\"]"), &["route[0].scopes"]);
        assert_err(
            &with_route("scopes = [\"read write\"]"),
            &["route[0].scopes"],
        );
        assert!(parse(&with_route("scopes = [\"read\", \"write:all\"]")).is_ok());
    }

    #[test]
    fn endpoint_path_rules() {
        assert_err(
            &with_section("backchannel", "path = \"logout\""),
            &["backchannel.path"],
        );
        assert_err(
            &with_section("revoke_endpoint", "path = \"revoke\""),
            &["revoke_endpoint.path"],
        );
        assert_err(
            &with_section("revoke_endpoint", "path = \"/backchannel-logout\""),
            &["revoke_endpoint.path", "backchannel.path"],
        );
        let both_disabled =
            format!("[backchannel]\npath = \"\"\n[revoke_endpoint]\npath = \"\"\n{MINIMAL}");
        assert!(parse(&both_disabled).is_ok());
        assert_err(
            &with_section("backchannel", "max_age = \"0s\""),
            &["backchannel.max_age"],
        );
    }

    #[test]
    fn admin_hosts_are_host_names_or_ip_literals_without_port() {
        let c = parse(&with_section(
            "server",
            "admin_hosts = [\"gateway-1.internal\", \"10.0.0.5\", \"[fd00::5]\", \"fd00::6\"]",
        ))
        .unwrap();
        assert_eq!(c.server.admin_hosts.len(), 4);
        assert!(ServerConfig::default().admin_hosts.is_empty());
        for bad in ["", "gw:9090", "*.internal", "a..b", "gw/x", "gw x", "[gw]"] {
            assert_err(
                &with_section("server", &format!("admin_hosts = [\"ok\", {bad:?}]")),
                &["server.admin_hosts[1]"],
            );
        }
        assert_err(
            &with_section("server", &format!("admin_hosts = [{:?}]", "a".repeat(254))),
            &["server.admin_hosts[0]", "253"],
        );
    }

    #[test]
    fn server_rules() {
        assert_err(
            &with_section("server", "admin_listen = \"0.0.0.0:9090\""),
            &["server.admin_listen", "admin_token"],
        );
        assert_err(
            &with_section(
                "server",
                "admin_listen = \"10.1.2.3:9090\"\nadmin_token = \"\"",
            ),
            &["server.admin_listen"],
        );
        assert!(parse(&with_section(
            "server",
            "admin_listen = \"0.0.0.0:9090\"\nadmin_token = \"s3cret\""
        ))
        .is_ok());
        assert!(parse(&with_section("server", "admin_listen = \"127.9.9.9:9090\"")).is_ok());
        assert!(parse(&with_section("server", "admin_listen = \"[::1]:9090\"")).is_ok());
        assert_err(
            &with_section("server", "admin_listen = \"[::]:9090\""),
            &["server.admin_listen"],
        );
        assert_err(
            &with_section("server", "listen = \"127.0.0.1:9090\""),
            &["server.admin_listen", "server.listen"],
        );
        assert!(parse(&with_section(
            "server",
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\""
        ))
        .is_ok());
        assert_err(
            &with_section("server", "max_header_bytes = 1023"),
            &["server.max_header_bytes"],
        );
        assert_err(
            &with_section("server", "max_header_bytes = 1048577"),
            &["server.max_header_bytes"],
        );
        assert!(parse(&with_section("server", "max_header_bytes = 1024")).is_ok());
        assert!(parse(&with_section("server", "max_header_bytes = 1048576")).is_ok());
        assert_err(
            &with_section("server", "max_body_bytes = 0"),
            &["server.max_body_bytes"],
        );
        assert!(parse(&with_section("server", "log_format = \"json\"")).is_ok());
    }

    #[test]
    fn auth_and_store_rules() {
        assert_err(&with_section("auth", "leeway = \"61m\""), &["auth.leeway"]);
        assert!(parse(&with_section("auth", "leeway = \"1h\"")).is_ok());
        assert!(parse(&with_section("auth", "leeway = \"0s\"")).is_ok());
        assert_err(
            &with_section("auth", "max_token_lifetime = \"0s\""),
            &["auth.max_token_lifetime"],
        );
        assert_err(
            &with_section("auth", "jwks_refresh = \"500ms\""),
            &["auth.jwks_refresh"],
        );
        assert_err(
            &with_section("store", "sweep_interval = \"999ms\""),
            &["store.sweep_interval"],
        );
        assert_err(
            &with_section("store", "cache_bytes = 1048575"),
            &["store.cache_bytes"],
        );
        assert!(parse(&with_section("store", "cache_bytes = 1048576")).is_ok());
        assert_err(&with_section("store", "path = \"\""), &["store.path"]);
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn env_overrides_apply() {
        let c = Config::parse(
            MINIMAL,
            env_of(&[
                ("REVGATE_SERVER_LISTEN", "127.0.0.1:18080"),
                ("REVGATE_SERVER_ADMIN_TOKEN", "tok"),
                ("REVGATE_SERVER_MAX_HEADER_BYTES", "4096"),
                ("REVGATE_AUTH_LEEWAY", "5s"),
                ("REVGATE_AUTH_IDENTITY_HEADERS", "false"),
                ("REVGATE_BACKCHANNEL_STRICT_TYP", "TRUE"),
                ("REVGATE_REVOKE_ENDPOINT_PATH", ""),
                ("REVGATE_STORE_PATH", "/var/lib/revgate/db"),
                ("REVGATE_STORE_CACHE_BYTES", "2097152"),
                // not overridable / unknown: ignored
                ("REVGATE_ROUTE_PREFIX", "/nope"),
                ("REVGATE_ISSUER_ISSUER", "nope"),
                ("REVGATE_SERVER_BOGUS", "1"),
                ("REVGATE_NOSECTION_KEY", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:18080".parse().unwrap());
        assert_eq!(c.server.admin_token, "tok");
        assert_eq!(c.server.max_header_bytes, 4096);
        assert_eq!(c.auth.leeway, Duration::from_secs(5));
        assert!(!c.auth.identity_headers);
        assert!(c.backchannel.strict_typ);
        assert_eq!(c.revoke_endpoint.path, "");
        assert_eq!(c.store.path, PathBuf::from("/var/lib/revgate/db"));
        assert_eq!(c.store.cache_bytes, 2_097_152);
        assert_eq!(c.routes[0].prefix, "/");
        assert_eq!(c.issuers[0].issuer, "https://idp.example.com/");
    }

    #[test]
    fn env_overrides_beat_the_file_and_create_sections() {
        let text = with_section("auth", "leeway = \"30s\"");
        let c = Config::parse(&text, env_of(&[("REVGATE_AUTH_LEEWAY", "2m")])).unwrap();
        assert_eq!(c.auth.leeway, Duration::from_secs(120));
        // an override may also repair a bad file value
        let text = with_section("auth", "leeway = \"2h\"");
        assert!(Config::parse(&text, env_of(&[("REVGATE_AUTH_LEEWAY", "1m")])).is_ok());
        // [store] absent from MINIMAL: created
        let c = Config::parse(MINIMAL, env_of(&[("REVGATE_STORE_SWEEP_INTERVAL", "5s")])).unwrap();
        assert_eq!(c.store.sweep_interval, Duration::from_secs(5));
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let e = Config::parse(MINIMAL, env_of(&[("REVGATE_AUTH_IDENTITY_HEADERS", "yes")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("REVGATE_AUTH_IDENTITY_HEADERS"), "{e}");
        let e = Config::parse(
            MINIMAL,
            env_of(&[("REVGATE_SERVER_MAX_BODY_BYTES", "10MB")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("REVGATE_SERVER_MAX_BODY_BYTES"), "{e}");
        let e = Config::parse(MINIMAL, env_of(&[("REVGATE_SERVER_MAX_BODY_BYTES", "-1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("REVGATE_SERVER_MAX_BODY_BYTES"), "{e}");
        let e = Config::parse(
            MINIMAL,
            env_of(&[("REVGATE_STORE_SWEEP_INTERVAL", "often")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("REVGATE_STORE_SWEEP_INTERVAL"), "{e}");
        let e = Config::parse(MINIMAL, env_of(&[("REVGATE_SERVER_LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("server.listen") && e.contains("REVGATE_SERVER_LISTEN"),
            "{e}"
        );
        // an overridden value still goes through validate()
        let e = Config::parse(
            MINIMAL,
            env_of(&[("REVGATE_SERVER_ADMIN_LISTEN", "0.0.0.0:9090")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("server.admin_listen"), "{e}");
    }

    #[test]
    fn effective_toml_redacts_and_round_trips() {
        let text = format!(
            "[server]\nadmin_listen = \"0.0.0.0:9090\"\nadmin_token = \"super-secret-token\"\n\
             [auth]\nleeway = \"90s\"\nmax_token_lifetime = \"36h\"\n{}",
            with_issuer(
                "algorithms = [\"RS256\", \"HS256\"]\nhmac_secret_file = \"/s\"\nlogout_audiences = [\"c\"]"
            )
        );
        let c = parse(&text).unwrap();
        let shown = c.effective_toml();
        assert!(!shown.contains("super-secret-token"), "{shown}");
        assert!(shown.contains("admin_token = \"<set>\""), "{shown}");
        let back = parse(&shown).unwrap_or_else(|e| panic!("{e}\n{shown}"));
        assert_eq!(back.server.admin_token, REDACTED);
        assert_eq!(back.auth.leeway, c.auth.leeway);
        assert_eq!(back.auth.max_token_lifetime, c.auth.max_token_lifetime);
        assert_eq!(back.server.admin_listen, c.server.admin_listen);
        assert_eq!(back.issuers[0].algorithms, c.issuers[0].algorithms);
        assert_eq!(
            back.issuers[0].hmac_secret_file,
            c.issuers[0].hmac_secret_file
        );
        assert_eq!(
            back.issuers[0].logout_audiences,
            c.issuers[0].logout_audiences
        );
        // rendering again is stable (apart from the token, which is already redacted)
        assert_eq!(back.effective_toml(), shown);

        let plain = parse(SPEC_EXAMPLE).unwrap().effective_toml();
        assert!(plain.contains("admin_token = \"\""), "{plain}");
        assert!(
            plain.contains("[[issuer]]") && plain.contains("[[route]]"),
            "{plain}"
        );
        let again = parse(&plain).unwrap();
        assert_eq!(again.effective_toml(), plain);
    }

    #[test]
    fn trusted_proxies_are_parsed_and_bad_entries_name_the_key() {
        assert!(parse(MINIMAL).unwrap().server.trusted_proxies.is_empty());
        let c = parse(&with_section(
            "server",
            "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\", \"::1\"]",
        ))
        .unwrap();
        let nets = &c.server.trusted_proxies;
        assert_eq!(nets.len(), 4);
        assert!(nets[0].contains("10.9.8.7".parse().unwrap()));
        assert!(nets[3].contains("::1".parse().unwrap()));
        let shown = c.effective_toml();
        for entry in [
            "\"10.0.0.0/8\",",
            "\"192.0.2.7\",",
            "\"2001:db8::/32\",",
            "\"::1\",",
        ] {
            assert!(shown.contains(entry), "{entry} in {shown}");
        }
        assert_eq!(
            parse(&shown).unwrap().server.trusted_proxies,
            c.server.trusted_proxies
        );
        for (bad, why) in [
            ("\"10.0.0.0/40\"", "0..=32"),
            ("\"proxy.internal\"", "not an IP address"),
            ("\"10.1.2.3/8\"", "10.0.0.0/8"),
            ("\"::1/200\"", "0..=128"),
            ("\"\"", "not an IP address"),
        ] {
            assert_err(
                &with_section(
                    "server",
                    &format!("trusted_proxies = [\"127.0.0.1\", {bad}]"),
                ),
                &["server.trusted_proxies", why, "line 2"],
            );
        }
        assert_err(
            &with_section("server", "trusted_proxies = \"10.0.0.0/8\""),
            &["server.trusted_proxies"],
        );
        assert_err(
            &with_section("server", "trusted_proxies = [8]"),
            &["server.trusted_proxies"],
        );
    }
}

/// Property tests on hostile input.
#[cfg(test)]
mod proptests;
