//! Start-up, written once for `revgate serve`, `revgate demo` and the tests: open the store,
//! bind the two listeners (or take listeners bound by the caller), build the shared state
//! and load every issuer's keys — in that order, so that a store that cannot be opened
//! (locked, damaged) stops start-up before any port is taken. [`Gateway::run`] then serves
//! until the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::SharedClock;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::server::Listeners;
use crate::store::{RevocationStore, StoreError};
use crate::App;

/// Why a gateway could not start. Each is one line for the operator (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened (locked by another process, damaged, unreadable).
    /// A damaged store's line names the store, what is missing and how to recover.
    #[error("{}", store_line(path, source))]
    Store {
        /// `store.path`.
        path: String,
        /// What the store said.
        source: StoreError,
    },
    /// `server.listen` or `server.admin_listen` could not be bound.
    #[error("{0}")]
    Bind(std::io::Error),
    /// A `jwks_file` / `hmac_secret_file` did not load (a `jwks_url` that cannot be
    /// fetched is not an error: the last good keys of the store are used).
    #[error("{0}")]
    Keys(crate::auth::keys::KeyError),
    /// `[cluster]` cannot be set up (the line names the key; never the Redis password).
    #[error("{0}")]
    Cluster(String),
    /// `server.tls_cert` / `server.tls_key` did not load (the line names the file).
    #[error("{0}")]
    Tls(String),
}

/// A gateway whose store is open, whose listeners are bound and whose keys are loaded:
/// ready to [`run`](Gateway::run).
#[derive(Debug)]
pub struct Gateway {
    app: Arc<App>,
    listeners: Listeners,
}

impl Gateway {
    /// Opens the store, binds `server.listen` and `server.admin_listen`, loads the keys.
    /// `config_path` is the file a reload re-reads (`None` for a configuration built in
    /// memory, which cannot be reloaded).
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
        clock: SharedClock,
    ) -> Result<Gateway, StartError> {
        let store = open_store(&config, &clock)?;
        let listeners = Listeners::bind(config.server.listen, config.server.admin_listen)
            .await
            .map_err(StartError::Bind)?;
        Gateway::assemble(config, config_path, clock, store, listeners).await
    }

    /// Like [`start`](Gateway::start) on listeners the caller bound already (when a peer
    /// must know the gateway's addresses before its configuration can be written).
    pub async fn start_on(
        config: Config,
        config_path: Option<PathBuf>,
        clock: SharedClock,
        listeners: Listeners,
    ) -> Result<Gateway, StartError> {
        let store = open_store(&config, &clock)?;
        Gateway::assemble(config, config_path, clock, store, listeners).await
    }

    async fn assemble(
        config: Config,
        config_path: Option<PathBuf>,
        clock: SharedClock,
        store: RevocationStore,
        listeners: Listeners,
    ) -> Result<Gateway, StartError> {
        let tls = crate::tls::load(&config.server).map_err(StartError::Tls)?;
        let cluster =
            Cluster::for_config(&config, &store, clock.clone()).map_err(StartError::Cluster)?;
        let store_error = |source| StartError::Store {
            path: config.store.path.display().to_string(),
            source,
        };
        match &cluster {
            Some(c) => c.prepare_store().await.map_err(store_error)?,
            // Changes made while out of the cluster are not in its log: should this store
            // join again, it publishes its records then.
            None if store.log_reseeded().ok().flatten().is_some() => {
                store.set_log_reseeded(None).await.map_err(store_error)?
            }
            None => {}
        }
        let app = App::with_cluster(config, config_path, store, clock, cluster);
        if let Some(pair) = tls {
            app.tls.set(pair);
        }
        app.keys
            .load_all(&app.config(), &app.metrics)
            .await
            .map_err(StartError::Keys)?;
        Ok(Gateway { app, listeners })
    }

    /// The shared state (store, keys, metrics, configuration).
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Address of the proxy listener.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.listeners.proxy_addr()
    }

    /// Address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.listeners.admin_addr()
    }

    /// Serves both listeners until `shutdown` completes, then drains and flushes
    /// ([`crate::server::run`]).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        crate::server::run(self.app, self.listeners, shutdown).await;
    }
}

/// The one line for a store that cannot be opened.
pub(crate) fn store_line(path: &str, e: &StoreError) -> String {
    match e {
        StoreError::Damaged(_) => e.to_string(),
        other => format!("cannot open store {path}: {other}"),
    }
}

fn open_store(config: &Config, clock: &SharedClock) -> Result<RevocationStore, StartError> {
    RevocationStore::open(&config.store.path, config.store.cache_bytes, clock.clone()).map_err(
        |source| StartError::Store {
            path: config.store.path.display().to_string(),
            source,
        },
    )
}
