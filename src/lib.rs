//! revgate: an API gateway that verifies JWT bearer tokens and refuses any whose `jti`,
//! session (`sid`) or subject (`sub`) has been revoked. Revocations come from OpenID
//! Connect Back-Channel Logout, an RFC 7009-style revoke endpoint and a local admin API,
//! and live in an embedded sled store that survives restarts and crashes.
//!
//! The binary (`main.rs`) parses the command line and calls into this library; tests drive
//! [`run`] directly with listeners bound to `127.0.0.1:0` and a temporary store.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod proxy;
pub mod public;
pub mod server;
pub mod store;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::auth::{Keyring, TokenError, VerifiedToken};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::RevocationStore;

pub use server::{run, Listeners};

/// Bound for connecting to an upstream (the route's `timeout` bounds the whole answer).
pub const UPSTREAM_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Everything a request handler needs, shared as `Arc<App>` by both listeners and the
/// background tasks. The configuration sits behind a lock so it can be swapped on reload;
/// readers clone the inner `Arc` and never hold the lock across an `.await`.
pub struct App {
    config: RwLock<Arc<Config>>,
    /// Where the config came from (for reload); `None` for configs built in memory.
    pub config_path: Option<PathBuf>,
    /// The revocation store.
    pub store: RevocationStore,
    /// Signing keys of every configured issuer.
    pub keys: Keyring,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Time source (injectable for tests).
    pub clock: SharedClock,
    /// Pooled HTTPS client for `https://` upstreams.
    pub upstream: reqwest::Client,
    /// Pooled HTTP/1.1 client for `http://` upstreams (the hot path).
    pub upstream_http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        error::ProxyBody,
    >,
    /// Verified-token cache (`auth.verified_token_cache`); never caches revocations.
    pub token_cache: auth::cache::TokenCache,
    /// Bumped on every configuration change, so cached verifications of an older
    /// configuration are not reused.
    config_generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// Builds the shared state. Keys are not loaded yet: call [`Keyring::load_all`].
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        store: RevocationStore,
        clock: SharedClock,
    ) -> Arc<App> {
        let upstream = reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("HTTP client with static settings");
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
        let upstream_http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(std::time::Duration::from_secs(90))
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(connector);
        let keys = Keyring::new(store.clone(), clock.clone());
        let token_cache = auth::cache::TokenCache::new(config.auth.verified_token_cache);
        Arc::new(App {
            config: RwLock::new(Arc::new(config)),
            config_path,
            store,
            keys,
            metrics: Metrics::default(),
            clock,
            upstream,
            upstream_http,
            token_cache,
            config_generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The configuration in force (a cheap `Arc` clone).
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the configuration in force (reload).
    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        self.config_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Verifies an access token against every rule of SPEC §4 except the revocation check.
    /// A token verified before under the same configuration and keys, and still unexpired,
    /// is answered from the verified-token cache (compared in full, never by a digest).
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, TokenError> {
        let config = self.config();
        let now = self.clock.now();
        let generation = (
            self.config_generation
                .load(std::sync::atomic::Ordering::SeqCst),
            self.keys.generation(),
        );
        let leeway = config.auth.leeway.as_secs();
        if let Some(hit) = self.token_cache.get(token, generation, now, leeway) {
            return Ok(hit);
        }
        let verified = Arc::new(
            auth::verify::verify_access_token(&config, &self.keys, &self.metrics, now, token)
                .await?,
        );
        self.token_cache.insert(token, verified.clone(), generation);
        Ok(verified)
    }

    /// The issuer named by `given`, or the only configured one when `given` is `None`.
    pub fn resolve_issuer(&self, given: Option<&str>) -> Result<String, String> {
        let config = self.config();
        match given {
            Some(iss) => config
                .issuer(iss)
                .map(|i| i.issuer.clone())
                .ok_or_else(|| format!("unknown issuer {iss:?}")),
            None if config.issuers.len() == 1 => Ok(config.issuers[0].issuer.clone()),
            None => Err("issuer is required when several issuers are configured".to_string()),
        }
    }
}
