//! Where an issuer's JWKS comes from: its `jwks_url` (fetched with a bounded request) or
//! its `jwks_file`; and the offline check of local key material (`check-config`, reload).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, IssuerConfig};

use super::jwk::{parse_jwks, read_hmac_secret};

/// Whole-request timeout of one JWKS fetch (connect, headers and body).
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest JWKS document accepted from a URL or file (1 MiB); larger ones are a failed fetch.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where an issuer's JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JwksSource {
    Url(String),
    File(PathBuf),
    /// Neither configured (refused by `Config::validate`; tolerated here).
    None,
}

impl JwksSource {
    pub(super) fn of(ic: &IssuerConfig) -> Self {
        match (&ic.jwks_url, &ic.jwks_file) {
            (Some(url), _) => JwksSource::Url(url.clone()),
            (None, Some(path)) => JwksSource::File(path.clone()),
            (None, None) => JwksSource::None,
        }
    }
}

/// GETs `url`, 2xx only, body at most [`MAX_JWKS_BYTES`].
pub(super) async fn fetch(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = http
        .get(url)
        .header(
            http::header::ACCEPT,
            "application/json, application/jwk-set+json",
        )
        .send()
        .await
        .map_err(|e| format!("JWKS request failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("JWKS request answered {}", resp.status()));
    }
    if resp
        .content_length()
        .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
    {
        return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("JWKS body read failed: {e}"))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(super) fn read_jwks_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read jwks_file {}: {e}", path.display()))?;
    if meta.len() > MAX_JWKS_BYTES as u64 {
        return Err(format!(
            "jwks_file {} is larger than {MAX_JWKS_BYTES} bytes",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read jwks_file {}: {e}", path.display()))
}

/// Why local key material did not load. Each displays as the one line an operator sees
/// (`check-config`, a refused reload, a refused start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// [`check_local_keys`]: a `jwks_file` or `hmac_secret_file` does not load; names the
    /// key like a config error (`issuer[0].jwks_file: ...`).
    #[error("{key}: {problem}")]
    Local {
        /// Dotted config key, e.g. `issuer[0].hmac_secret_file`.
        key: String,
        /// What is wrong (the file and the reason).
        problem: String,
    },
    /// [`super::Keyring::load_all`]: the key files of one or more issuers did not load at
    /// start-up; one entry per issuer, shown joined by `; `.
    #[error("{}", join(.0))]
    Startup(Vec<IssuerKeyError>),
}

/// One issuer's key files that did not load at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("issuer {issuer}: {problem}")]
pub struct IssuerKeyError {
    /// The issuer (`iss`).
    pub issuer: String,
    /// What did not load and why (`jwks_file PATH: ...`, `hmac_secret_file PATH: ...`).
    pub problem: String,
}

fn join(errors: &[IssuerKeyError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks, without touching any keyring, that every issuer's local key material loads:
/// each `jwks_file` reads and parses as a JWK Set with a usable signing key (or is allowed
/// to have none because the issuer uses an HMAC secret), each `hmac_secret_file` reads.
/// `jwks_url` issuers are not fetched: an unreachable IdP is not a configuration error
/// (the last good keys are kept). The error names the key, like a config error:
/// `issuer[0].jwks_file: ...`. Shared by `check-config` and reload, so both refuse the same.
pub fn check_local_keys(config: &Config) -> Result<(), KeyError> {
    for (i, ic) in config.issuers.iter().enumerate() {
        if let Some(path) = &ic.hmac_secret_file {
            read_hmac_secret(path).map_err(|e| KeyError::Local {
                key: format!("issuer[{i}].hmac_secret_file"),
                problem: format!("{}: {e}", path.display()),
            })?;
        }
        if let (None, Some(path)) = (&ic.jwks_url, &ic.jwks_file) {
            let local = |problem: String| KeyError::Local {
                key: format!("issuer[{i}].jwks_file"),
                problem,
            };
            let doc = read_jwks_file(path).map_err(local)?;
            let keys = parse_jwks(&doc, &ic.issuer)
                .map_err(|e| local(format!("{}: {e}", path.display())))?;
            if keys.is_empty() && ic.hmac_secret_file.is_none() {
                return Err(local(format!("{}: no usable signing key", path.display())));
            }
        }
    }
    Ok(())
}
