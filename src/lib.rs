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
pub mod reload;
pub mod server;
pub mod store;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::auth::{Keyring, TokenError, VerifiedToken};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::{Metrics, RouteMetrics};
use crate::store::RevocationStore;

pub use server::{run, Listeners};

/// The configuration in force and the per-route counters built for its routes; swapped
/// together on reload so a route position always indexes the right counters.
struct Live {
    config: Arc<Config>,
    routes: Arc<RouteMetrics>,
}

/// Everything a request handler needs, shared as `Arc<App>` by both listeners and the
/// background tasks. The configuration sits behind a lock so it can be swapped on reload;
/// readers clone the inner `Arc` and never hold the lock across an `.await`.
pub struct App {
    live: RwLock<Live>,
    /// `store.sweep_interval` in force; the sweeper follows it (reload).
    sweep_interval: tokio::sync::watch::Sender<Duration>,
    /// Serialises reloads (`SIGHUP`, `POST /v1/reload`).
    pub(crate) reload_lock: tokio::sync::Mutex<()>,
    /// Where the config came from (for reload); `None` for configs built in memory.
    pub config_path: Option<PathBuf>,
    /// The revocation store.
    pub store: RevocationStore,
    /// Signing keys of every configured issuer (shared with the JWKS refresher).
    pub keys: Arc<Keyring>,
    /// Counters for `/metrics` (shared with the JWKS refresher).
    pub metrics: Arc<Metrics>,
    /// Time source (injectable for tests).
    pub clock: SharedClock,
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
        let keys = Arc::new(Keyring::new(store.clone(), clock.clone()));
        let token_cache = auth::cache::TokenCache::new(config.auth.verified_token_cache);
        let (sweep_interval, _) = tokio::sync::watch::channel(config.store.sweep_interval);
        let routes = Arc::new(RouteMetrics::for_routes(&config.routes, None));
        Arc::new(App {
            live: RwLock::new(Live {
                config: Arc::new(config),
                routes,
            }),
            sweep_interval,
            reload_lock: tokio::sync::Mutex::new(()),
            config_path,
            store,
            keys,
            metrics: Arc::new(Metrics::default()),
            clock,
            token_cache,
            config_generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The configuration in force (a cheap `Arc` clone).
    pub fn config(&self) -> Arc<Config> {
        self.live
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .config
            .clone()
    }

    /// The configuration in force and the per-route counters of its routes, read together
    /// (one lock acquisition; the proxy's per-request snapshot).
    pub fn snapshot(&self) -> (Arc<Config>, Arc<RouteMetrics>) {
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        (live.config.clone(), live.routes.clone())
    }

    /// The per-route request counters of the configuration in force.
    pub fn route_metrics(&self) -> Arc<RouteMetrics> {
        self.snapshot().1
    }

    /// Replaces the configuration in force (reload; see [`reload::reload`], which checks it
    /// first). Per-route counters are rebuilt for the new routes (counts of kept prefixes
    /// carry over) and the sweeper picks up a new `store.sweep_interval`.
    pub fn set_config(&self, config: Config) {
        let interval = config.store.sweep_interval;
        {
            let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
            let routes = Arc::new(RouteMetrics::for_routes(&config.routes, Some(&live.routes)));
            *live = Live {
                config: Arc::new(config),
                routes,
            };
        }
        self.config_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.sweep_interval.send_if_modified(|current| {
            let changed = *current != interval;
            *current = interval;
            changed
        });
    }

    /// Follows `store.sweep_interval` across reloads (for the sweeper).
    pub fn sweep_interval(&self) -> tokio::sync::watch::Receiver<Duration> {
        self.sweep_interval.subscribe()
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

    /// Which revocation (if any) matches a verified token (SPEC §1). A token without `jti`
    /// is looked up by its signing-input digest and then by the whole-token digest older
    /// releases stored, so their records keep matching the same token until they expire.
    pub fn find_revocation(
        &self,
        token: &VerifiedToken,
    ) -> Result<Option<store::Kind>, store::StoreError> {
        let found = self.store.find_match(
            &token.issuer,
            &token.jti,
            token.sid.as_deref(),
            token.sub.as_deref(),
            token.iat,
        )?;
        match (&found, &token.legacy_jti) {
            (None, Some(legacy)) => {
                self.store
                    .find_match(&token.issuer, legacy, None, None, token.iat)
            }
            _ => Ok(found),
        }
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
