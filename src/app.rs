//! The shared state of a running gateway ([`App`]): the configuration in force (swapped
//! whole on reload, read as one [`Snapshot`] per request), the store, the keys, the token
//! decision ([`Authorizer`]), metrics and the clock. Handed to both listeners and the
//! background tasks as `Arc<App>`; it holds no listener-specific parts (the proxy owns its
//! upstream clients).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::auth::authorize::{Authorizer, Under};
use crate::auth::{Keyring, TokenError, VerifiedToken};
use crate::clock::SharedClock;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::{Metrics, RouteMetrics};
use crate::store::RevocationStore;

/// The configuration in force, the per-route counters built for its routes and its
/// generation; swapped together on reload, so a route position always indexes the right
/// counters and a cached verification is tied to the configuration it was made under.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration.
    pub config: Arc<Config>,
    /// Request counters of its routes (same positions as `config.routes`).
    pub routes: Arc<RouteMetrics>,
    /// Bumped by every reload.
    pub generation: u64,
}

impl Snapshot {
    /// The decision context of this snapshot.
    pub fn under(&self) -> Under<'_> {
        Under {
            config: &self.config,
            generation: self.generation,
        }
    }
}

/// Everything a request handler needs, shared as `Arc<App>` by both listeners and the
/// background tasks. The configuration sits behind a lock so it can be swapped on reload;
/// readers clone the inner `Arc` and never hold the lock across an `.await`.
pub struct App {
    live: RwLock<Arc<Snapshot>>,
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
    /// The token decision: verification (with the verified-token cache), revocation
    /// lookup, scopes.
    pub auth: Authorizer,
    /// The link to the shared log, when `[cluster]` is on (SPEC §8).
    pub cluster: Option<Arc<Cluster>>,
    /// The TLS certificate and key of `server.listen` in force (empty when TLS is off);
    /// a reload replaces them.
    pub tls: Arc<crate::tls::Certificates>,
    /// Set once shutdown has begun: health answers 503 from then on.
    draining: AtomicBool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// Builds the shared state of a single node. Keys are not loaded yet: call
    /// [`Keyring::load_all`].
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        store: RevocationStore,
        clock: SharedClock,
    ) -> Arc<App> {
        App::with_cluster(config, config_path, store, clock, None)
    }

    /// Like [`new`](App::new), for a node of a cluster when `cluster` is given (its store
    /// already joined the shared log: [`Cluster::for_config`]).
    pub fn with_cluster(
        config: Config,
        config_path: Option<PathBuf>,
        store: RevocationStore,
        clock: SharedClock,
        cluster: Option<Arc<Cluster>>,
    ) -> Arc<App> {
        let keys = Arc::new(Keyring::new(store.clone(), clock.clone()));
        let metrics = Arc::new(Metrics::default());
        let auth = Authorizer::new(
            keys.clone(),
            store.clone(),
            metrics.clone(),
            clock.clone(),
            config.auth.verified_token_cache,
        );
        let (sweep_interval, _) = tokio::sync::watch::channel(config.store.sweep_interval);
        let routes = Arc::new(RouteMetrics::for_routes(&config.routes, None));
        Arc::new(App {
            live: RwLock::new(Arc::new(Snapshot {
                config: Arc::new(config),
                routes,
                generation: 0,
            })),
            sweep_interval,
            reload_lock: tokio::sync::Mutex::new(()),
            config_path,
            store,
            keys,
            metrics,
            clock,
            auth,
            cluster,
            tls: Arc::default(),
            draining: AtomicBool::new(false),
        })
    }

    /// Marks the gateway as shutting down ([`crate::health`] answers 503 from now on).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The configuration in force (a cheap `Arc` clone).
    pub fn config(&self) -> Arc<Config> {
        self.snapshot().config.clone()
    }

    /// The configuration in force with its route counters and generation (one lock
    /// acquisition; the proxy's per-request snapshot).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the configuration in force (reload; see [`crate::reload::reload`], which
    /// checks it first). Per-route counters are rebuilt for the new routes (counts of kept
    /// prefixes carry over) and the sweeper picks up a new `store.sweep_interval`.
    pub fn set_config(&self, config: Config) {
        let interval = config.store.sweep_interval;
        {
            let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
            let routes = Arc::new(RouteMetrics::for_routes(&config.routes, Some(&live.routes)));
            *live = Arc::new(Snapshot {
                config: Arc::new(config),
                routes,
                generation: live.generation + 1,
            });
        }
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

    /// [`Authorizer::verify`] under `snapshot`, the one the request took (the endpoints
    /// that verify a token outside the proxy's decision: `/revoke`, revoke-by-token).
    pub async fn verify(
        &self,
        snapshot: &Snapshot,
        token: &str,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        self.auth.verify(snapshot.under(), token).await
    }
}
