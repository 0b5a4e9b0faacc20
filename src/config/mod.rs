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
//! | server | tls_cert, tls_key | `""` (both set: `listen` serves HTTPS, HTTP/2 and HTTP/1.1 by ALPN) |
//! | server | access_log | `true` (one `revgate::access` line per proxy-listener request) |
//! | server | drain_grace | `10s` (SIGTERM: how long in-flight requests may finish) |
//! | server | health_path | `""` (e.g. `/-/health`: health for a load balancer on the proxy listener) |
//! | issuer | issuer, audiences, jwks_url / jwks_file, algorithms (`["RS256"]`), hmac_secret_file, session_claim (`sid`), require_typ (`""`), logout_audiences (`[]`), logout_algorithms (`["RS256"]`), logout_require_exp (`true`) | |
//! | auth | leeway (`60s`), max_token_lifetime (`24h`), jwks_refresh (`10m`), forward_cors_preflight (`true`), identity_headers (`true`), verified_token_cache (`10000`, 0 = off) | |
//! | route | prefix (`/`), upstream, strip_prefix (`false`), timeout (`30s`), public (`false`), scopes (`[]`) | |
//! | backchannel | path (`/backchannel-logout`), max_age (`5m`), strict_typ (`false`) | |
//! | revoke_endpoint | path (`/revoke`) | |
//! | store | path (`data/revgate.db`), sweep_interval (`30s`), cache_bytes (67108864) | |
//! | cluster | redis_url (`""`: one node), stream (`revgate:revocations`), node_id (`""`: host name + listen port) | |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

mod ipnet;
pub use ipnet::IpNet;

mod cluster;
mod env;
mod validate;

pub use cluster::{
    redact_url, ClusterConfig, DEFAULT_STREAM, MAX_NODE_ID_BYTES, MAX_STREAM_KEY_BYTES,
};

use env::apply_env_overrides;
pub use env::{env_var_name, override_variables, ADMIN_TOKEN_ENV};
pub use validate::*;

/// Default number of verified tokens kept by the verified-token cache.
pub const DEFAULT_VERIFIED_TOKEN_CACHE: usize = 10_000;
/// Largest accepted `auth.verified_token_cache`.
pub const MAX_VERIFIED_TOKEN_CACHE: usize = 10_000_000;
/// Default `server.drain_grace`.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Why a configuration was refused. The message names the key and the problem;
/// the CLI turns any of these into exit status 64 ([`crate::cli::EXIT_USAGE`]).
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

/// Why [`Config::resolve_issuer`] found no issuer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerChoiceError {
    /// No configured issuer has this exact `issuer`.
    #[error("unknown issuer {0:?}")]
    Unknown(String),
    /// No issuer was named and more than one is configured.
    #[error("issuer is required when several issuers are configured")]
    Required,
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
    /// `[cluster]` (absent: a single node).
    #[serde(default)]
    pub cluster: ClusterConfig,
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
    /// PEM certificate chain (end-entity first) for `listen`; with `tls_key` the listener
    /// accepts only TLS 1.2/1.3, offering `h2` and `http/1.1` by ALPN. Re-read on reload.
    /// Empty: plain HTTP/1.1.
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert` (PKCS#8; PKCS#1 RSA and SEC1 EC keys too, as ACME
    /// clients such as lego write them). Re-read on reload.
    pub tls_key: PathBuf,
    /// One `info` line per request on the proxy listener, target `revgate::access`.
    pub access_log: bool,
    /// SIGTERM: how long in-flight requests may finish once the listeners close; with a
    /// `health_path`, also how long the proxy listener keeps serving (its health answering
    /// 503) before it closes, so a load balancer drains the node first.
    #[serde(with = "humantime_serde_compat")]
    pub drain_grace: Duration,
    /// When non-empty, `GET`/`HEAD` of this path on the proxy listener answers the
    /// gateway's health (`200`/`503`, `{"status": ...}` only) without a token.
    pub health_path: String,
}

impl ServerConfig {
    /// Whether `listen` serves TLS (both `tls_cert` and `tls_key` set).
    pub fn tls_enabled(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty() && !self.tls_key.as_os_str().is_empty()
    }
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
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            access_log: true,
            drain_grace: DEFAULT_DRAIN_GRACE,
            health_path: String::new(),
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

/// What [`Config::effective_toml`] shows in place of a secret.
pub const REDACTED: &str = "<set>";

impl Config {
    /// Reads `path`, applies `REVGATE_*` overrides from the process environment, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &|name: &str| std::env::var(name).ok())
    }

    /// Reads `path`, applies the overrides looked up through `env`, validates.
    pub fn load_with(
        path: &Path,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, env)
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

    /// The issuer whose `issuer` equals `iss` exactly.
    pub fn issuer(&self, iss: &str) -> Option<&IssuerConfig> {
        self.issuers.iter().find(|i| i.issuer == iss)
    }

    /// The issuer named by `given` (exactly), or the only configured one when `given` is
    /// `None` (the rule of every admin request and CLI command that takes `--issuer`).
    pub fn resolve_issuer(&self, given: Option<&str>) -> Result<&IssuerConfig, IssuerChoiceError> {
        match given {
            Some(iss) => self
                .issuer(iss)
                .ok_or_else(|| IssuerChoiceError::Unknown(iss.to_string())),
            None => match self.issuers.as_slice() {
                [only] => Ok(only),
                _ => Err(IssuerChoiceError::Required),
            },
        }
    }

    /// The effective settings as TOML, with `admin_token` shown as `"<set>"` when set,
    /// the password of `cluster.redis_url` hidden the same way, and a derived
    /// `cluster.node_id` filled in.
    pub fn effective_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.server.admin_token.is_empty() {
            shown.server.admin_token = REDACTED.to_string();
        }
        if shown.cluster.enabled() {
            shown.cluster.redis_url = redact_url(&shown.cluster.redis_url);
            if let Ok(id) = shown.cluster.effective_node_id(shown.server.listen.port()) {
                shown.cluster.node_id = id;
            }
        }
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# cannot render the effective settings: {e}\n"))
    }
}

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
mod tests;

/// Property tests on hostile input.
#[cfg(test)]
mod proptests;
