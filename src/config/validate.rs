//! [`Config::validate`]: every rule of SPEC §3 a parsed configuration must meet, each
//! failure naming the key (`route[1].timeout: must be greater than 0`).

use std::time::Duration;

use super::*;

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
/// Shortest accepted `store.sweep_interval`; the sweeper also never waits less (a zero
/// interval would spin).
pub const MIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Largest accepted `server.drain_grace`: a supervisor's stop timeout (systemd's
/// `TimeoutStopSec`) must exceed twice it.
pub const MAX_DRAIN_GRACE: Duration = Duration::from_secs(300);
/// Smallest accepted `store.cache_bytes` (1 MiB).
pub const MIN_CACHE_BYTES: u64 = 1 << 20;

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

/// The warning for an issuer whose access-token `audiences` and `logout_audiences` share
/// a value while `require_typ` is empty: the client's ID tokens carry its client_id as
/// `aud`, so such an ID token would pass as an access token. `None` when they do not.
pub fn audience_overlap_warning(
    audiences: &[String],
    logout_audiences: &[String],
    require_typ: &str,
) -> Option<String> {
    if !require_typ.is_empty() {
        return None;
    }
    let shared: Vec<&String> = audiences
        .iter()
        .filter(|a| logout_audiences.contains(a))
        .collect();
    let first = shared.first()?;
    Some(format!(
        "`audiences` and `logout_audiences` overlap ({first:?}) and `require_typ` is empty: an ID \
         token addressed to that client would pass as an access token; set require_typ \
         (\"at+jwt\" when the provider issues RFC 9068 access tokens) or use a distinct API audience"
    ))
}

impl Config {
    /// What is valid but probably wrong, one line each naming the key: `check-config`
    /// prints them (and still exits 0), start-up and reload log them at `warn`.
    pub fn warnings(&self) -> Vec<String> {
        self.issuers
            .iter()
            .enumerate()
            .filter_map(|(i, iss)| {
                audience_overlap_warning(&iss.audiences, &iss.logout_audiences, &iss.require_typ)
                    .map(|w| format!("issuer[{i}].audiences: {w}"))
            })
            .collect()
    }

    /// Checks every rule that serde cannot express; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server()?;
        self.validate_issuers()?;
        self.validate_auth()?;
        self.validate_routes()?;
        self.validate_endpoints()?;
        self.validate_store()?;
        self.cluster.validate(self.server.listen.port())
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
        match (
            s.tls_cert.as_os_str().is_empty(),
            s.tls_key.as_os_str().is_empty(),
        ) {
            (false, true) => {
                return Err(invalid(
                    "server.tls_key",
                    "is required with server.tls_cert (both set: HTTPS; neither: plain HTTP)",
                ))
            }
            (true, false) => {
                return Err(invalid(
                    "server.tls_cert",
                    "is required with server.tls_key (both set: HTTPS; neither: plain HTTP)",
                ))
            }
            _ => {}
        }
        if s.drain_grace > MAX_DRAIN_GRACE {
            return Err(invalid(
                "server.drain_grace",
                format!(
                    "{} exceeds the maximum of {}",
                    humantime::format_duration(s.drain_grace),
                    humantime::format_duration(MAX_DRAIN_GRACE)
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
        let health = &self.server.health_path;
        check_endpoint_path("server.health_path", health)?;
        if !health.is_empty()
            && (*health == self.backchannel.path || *health == self.revoke_endpoint.path)
        {
            return Err(invalid(
                "server.health_path",
                format!("{health:?} is also the path of a public endpoint: it needs its own"),
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
}
