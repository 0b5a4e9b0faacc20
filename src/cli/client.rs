//! How the CLI reaches the admin API: where it is and which token to send (SPEC §2:
//! `--admin`, else `$REVGATE_ADMIN_URL`, else `server.admin_listen` of the config, else
//! [`DEFAULT_ADMIN_URL`]; the token from `--admin-token`, else `$REVGATE_ADMIN_TOKEN`, else
//! the config's `server.admin_token`), and [`AdminClient`], which sends one request and
//! turns the answer or the transport failure into a [`CliError`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::config_file::{locate, ConfigFile};
use super::output::{api_error_line, CliError};
use super::{AdminConnection, TargetArgs};
use crate::config::{Config, ConfigError};

/// Where the admin API is when neither `--admin`, `$REVGATE_ADMIN_URL` nor a config file says.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9090";
/// Environment variable holding the admin token (also `serve`'s, see
/// [`crate::config::ADMIN_TOKEN_ENV`]).
pub use crate::config::ADMIN_TOKEN_ENV;
/// Environment variable holding the admin API's URL when `--admin` is not given.
pub const ADMIN_URL_ENV: &str = "REVGATE_ADMIN_URL";

/// Whole-request bound (connect, send, read the answer): the CLI never hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on establishing the TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A value that must travel as one URL path segment: not empty, and not `.` / `..`, which
/// URL normalisation would swallow.
pub(super) fn check_path_value(value: &str) -> Result<(), CliError> {
    if value.is_empty() {
        return Err(CliError::Usage("VALUE must not be empty".to_string()));
    }
    if value == "." || value == ".." {
        return Err(CliError::Usage(format!(
            "VALUE {value:?} cannot be addressed in an admin API path; use `list` to find it"
        )));
    }
    Ok(())
}

/// Percent-encodes one URL path segment: everything but the RFC 3986 unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`, so `/`, `?`, `#`, `%`, `+` and
/// non-ASCII values survive intact.
pub(super) fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Loads the config the connection settings may come from: one named by `--config` or
/// `$REVGATE_CONFIG` always (missing or invalid: usage error); else the first of `search`
/// that exists, when something is still unresolved (an invalid one is a usage error too).
pub(super) fn load_config(
    conn: &AdminConnection,
    search: &[&Path],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Config>, CliError> {
    let load = |path: &Path| {
        Config::load_with(path, env).map(Some).map_err(|e| {
            CliError::Usage(match e {
                ConfigError::Read { .. } => e.to_string(),
                _ => format!("invalid config {}: {e}", path.display()),
            })
        })
    };
    match locate(conn.config.as_deref(), search, env) {
        ConfigFile::Named(path, _) => load(&path),
        ConfigFile::Found(path) => {
            let unresolved =
                explicit_url(conn, env).is_none() || explicit_token(conn, env).is_none();
            if unresolved {
                load(&path)
            } else {
                Ok(None)
            }
        }
        ConfigFile::Missing => Ok(None),
    }
}

/// Where and how to reach the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// Base URL; API paths are appended to its path.
    pub(super) base: Url,
    /// Admin token, sent as `Authorization: Bearer`.
    pub(super) token: Option<String>,
}

/// The token from `--admin-token`, else from `$REVGATE_ADMIN_TOKEN` (empty counts as unset).
fn explicit_token(conn: &AdminConnection, env: &impl Fn(&str) -> Option<String>) -> Option<String> {
    conn.admin_token
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| env(ADMIN_TOKEN_ENV).filter(|t| !t.is_empty()))
}

/// The URL from `--admin`, else from `$REVGATE_ADMIN_URL` (empty counts as unset), with
/// where it came from.
fn explicit_url(
    conn: &AdminConnection,
    env: &impl Fn(&str) -> Option<String>,
) -> Option<(String, &'static str)> {
    conn.admin.clone().map(|u| (u, "--admin")).or_else(|| {
        env(ADMIN_URL_ENV)
            .filter(|u| !u.is_empty())
            .map(|u| (u, ADMIN_URL_ENV))
    })
}

/// Resolves the URL (`--admin` > `$REVGATE_ADMIN_URL` > config `server.admin_listen` >
/// [`DEFAULT_ADMIN_URL`]) and the token (`--admin-token` > `$REVGATE_ADMIN_TOKEN` > config
/// `server.admin_token`).
pub(super) fn resolve_target(
    conn: &AdminConnection,
    config: Option<&Config>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Target, CliError> {
    let base = match (explicit_url(conn, env), config) {
        (Some((admin, from)), _) => parse_admin_url(&admin, from).map_err(CliError::Usage)?,
        (None, Some(config)) => url_of_listen_address(config.server.admin_listen)?,
        (None, None) => Url::parse(DEFAULT_ADMIN_URL).expect("valid default URL"),
    };
    let token = explicit_token(conn, env).or_else(|| {
        config
            .map(|c| c.server.admin_token.clone())
            .filter(|t| !t.is_empty())
    });
    Ok(Target { base, token })
}

/// `--admin` (or `$REVGATE_ADMIN_URL`, as `from` says) as a URL; `host:port` alone means
/// `http://host:port`.
fn parse_admin_url(text: &str, from: &str) -> Result<Url, String> {
    let text = text.trim();
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("{from} {text:?}: not a URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "{from} {text:?}: must be an http:// or https:// URL"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{from} {text:?}: has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{from} {text:?}: must not have a query or fragment"
        ));
    }
    Ok(url)
}

/// `http://ADDR` for a configured `server.admin_listen`; a wildcard address is reached
/// through loopback.
fn url_of_listen_address(addr: SocketAddr) -> Result<Url, CliError> {
    if addr.port() == 0 {
        return Err(CliError::Usage(format!(
            "server.admin_listen {addr} has port 0 (chosen at start-up): pass --admin URL"
        )));
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, addr.port());
    Url::parse(&format!("http://{addr}"))
        .map_err(|e| CliError::Usage(format!("server.admin_listen {addr}: {e}")))
}

/// An HTTP client bound to one admin API.
pub(super) struct AdminClient {
    http: reqwest::Client,
    base: Url,
    authorization: Option<HeaderValue>,
}

impl AdminClient {
    pub(super) fn new(target: Target) -> Result<AdminClient, CliError> {
        let authorization = match &target.token {
            Some(token) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        CliError::Usage(
                            "the admin token contains characters an HTTP header cannot carry"
                                .to_string(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(AdminClient {
            http: http_client(Some(REQUEST_TIMEOUT))?,
            base: target.base,
            authorization,
        })
    }

    /// The base URL's path followed by `segments` (each percent-encoded) and `query`.
    pub(super) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        build_url(&self.base, segments, query)
    }

    /// `/v1/revocations/{kind}/{value}?issuer=`
    pub(super) fn revocation_url(&self, args: &TargetArgs) -> Url {
        let query: Vec<(&str, &str)> = args
            .issuer
            .as_deref()
            .map(|iss| ("issuer", iss))
            .into_iter()
            .collect();
        self.url(
            &["v1", "revocations", args.kind.kind().as_str(), &args.value],
            &query,
        )
    }

    /// Sends one request. A `2xx` answer yields its JSON body (`None` when empty); any other
    /// status is [`CliError::Failed`] with the status and the API's error description;
    /// a transport failure is [`CliError::Unavailable`] naming the URL.
    pub(super) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<Option<Value>, CliError> {
        let mut request = self.authorized(&self.http, method, url);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        if !status.is_success() {
            let mut line = api_error_line(status, &bytes);
            if status == StatusCode::UNAUTHORIZED {
                line.push_str(if self.authorization.is_some() {
                    " (the admin token was refused)"
                } else {
                    " (pass --admin-token or set REVGATE_ADMIN_TOKEN)"
                });
            }
            return Err(CliError::Failed(line));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CliError::Failed(format!(
                "the admin API at {} answered {status} with a body that is not JSON: {e}",
                self.base
            ))
        })
    }

    /// A request for a bulk transfer (`export`, `import`): it runs as long as it needs,
    /// only connecting is bounded. Carries the admin token like [`AdminClient::call`].
    pub(super) fn transfer(
        &self,
        method: Method,
        url: Url,
    ) -> Result<reqwest::RequestBuilder, CliError> {
        Ok(self.authorized(&http_client(None)?, method, url))
    }

    /// `method url` on `http`, with the admin token when there is one.
    fn authorized(
        &self,
        http: &reqwest::Client,
        method: Method,
        url: Url,
    ) -> reqwest::RequestBuilder {
        let request = http.request(method, url);
        match &self.authorization {
            Some(auth) => request.header(AUTHORIZATION, auth.clone()),
            None => request,
        }
    }

    /// A transport failure as [`CliError::Unavailable`], naming the admin API.
    pub(super) fn transport_error(&self, err: &reqwest::Error) -> CliError {
        let cause = root_cause(err);
        if err.is_timeout() {
            CliError::Unavailable(format!(
                "the admin API at {} did not answer within {}s",
                self.base,
                REQUEST_TIMEOUT.as_secs()
            ))
        } else {
            CliError::Unavailable(format!(
                "cannot reach the admin API at {}: {cause}",
                self.base
            ))
        }
    }
}

/// The HTTP client of the CLI: no redirects, no proxy, connecting bounded by
/// [`CONNECT_TIMEOUT`], the whole request by `timeout` when given.
fn http_client(timeout: Option<Duration>) -> Result<reqwest::Client, CliError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder
        .build()
        .map_err(|e| CliError::Unavailable(format!("cannot set up the HTTP client: {e}")))
}

/// The innermost error of a chain (for reqwest: the I/O error, without the URL echo).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// `base`'s path, then each of `segments` percent-encoded, then `query` form-encoded.
pub(super) fn build_url(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Url {
    let mut url = base.clone();
    let mut path = url.path().trim_end_matches('/').to_string();
    for segment in segments {
        path.push('/');
        path.push_str(&encode_path_segment(segment));
    }
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}
