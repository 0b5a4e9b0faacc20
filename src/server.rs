//! Listeners, background tasks and shutdown: [`run`] serves the proxy and admin listeners
//! until the shutdown future completes, then drains in-flight requests within
//! [`SHUTDOWN_GRACE`], stops the sweeper, the store recovery task, the JWKS refresher and
//! the cluster link, and flushes the store.
//! While it runs, `SIGHUP` reloads the configuration ([`crate::reload::reload`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::App;

/// How long in-flight requests may run on after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A client must send its whole header block within this time (slow-loris defence).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Smallest read buffer hyper accepts; header blocks above the buffer get hyper's own 431.
const MIN_BUF_SIZE: usize = 8192;
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The two bound listeners. Binding is separate from [`run`] so callers (and tests, with
/// `127.0.0.1:0`) know the addresses before serving.
#[derive(Debug)]
pub struct Listeners {
    /// `server.listen`: proxy and public endpoints.
    pub proxy: TcpListener,
    /// `server.admin_listen`: admin API.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds both addresses.
    pub async fn bind(proxy: SocketAddr, admin: SocketAddr) -> std::io::Result<Listeners> {
        let proxy_l = TcpListener::bind(proxy).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot bind server.listen {proxy}: {e}"))
        })?;
        let admin_l = TcpListener::bind(admin).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot bind server.admin_listen {admin}: {e}"),
            )
        })?;
        Ok(Listeners {
            proxy: proxy_l,
            admin: admin_l,
        })
    }

    /// Address of the proxy listener.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }
}

/// Serves both listeners until `shutdown` completes; then drains and flushes.
/// Keys must have been loaded (`app.keys.load_all`) before.
///
/// The `SIGHUP` handler is installed before the `revgate listening` line is logged, so a
/// supervisor that waits for that line may send `SIGHUP` from then on.
pub async fn run(app: Arc<App>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let hangup = reload_on_hangup(app.clone(), stop_rx.clone());
    tracing::info!(
        proxy = %listeners.proxy_addr(),
        admin = %listeners.admin_addr(),
        store = %app.config().store.path.display(),
        "revgate listening"
    );
    let sweeper = tokio::spawn(crate::store::run_sweeper_following(
        app.store.clone(),
        app.sweep_interval(),
        stop_rx.clone(),
    ));
    let recovery = tokio::spawn(crate::store::run_recovery(
        app.store.clone(),
        stop_rx.clone(),
    ));
    let cluster = app
        .cluster
        .clone()
        .map(|c| tokio::spawn(c.run(stop_rx.clone())));
    let refresher = {
        let live = app.clone();
        tokio::spawn(crate::auth::Keyring::run_refresher(
            app.keys.clone(),
            app.metrics.clone(),
            move || live.config(),
            stop_rx.clone(),
        ))
    };
    let admin_filter = crate::admin::routes(app.clone());
    let proxy = crate::proxy::Proxy::new(app.clone());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listeners.proxy.accept() => match accepted {
                Ok((stream, remote)) => {
                    let proxy = proxy.clone();
                    let svc = service_fn(move |req| {
                        let proxy = proxy.clone();
                        async move { Ok::<_, Infallible>(proxy.handle(req, remote).await) }
                    });
                    let conn = builder(&app).serve_connection(io(stream), svc);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "proxy connection ended with an error");
                        }
                    });
                }
                Err(e) => accept_failed(e).await,
            },
            accepted = listeners.admin.accept() => match accepted {
                Ok((stream, _remote)) => {
                    let svc = hyper_util::service::TowerToHyperService::new(warp::service(admin_filter.clone()));
                    let conn = builder(&app).serve_connection(io(stream), svc);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "admin connection ended with an error");
                        }
                    });
                }
                Err(e) => accept_failed(e).await,
            },
        }
    }

    tracing::info!("shutting down: no new connections, draining in-flight requests");
    drop(listeners);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "in-flight requests still running after the grace period; closing");
    }
    if let Some(c) = &app.cluster {
        c.drain_outbox().await;
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, sweeper).await;
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, refresher).await;
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, recovery).await;
    if let Some(cluster) = cluster {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, cluster).await;
    }
    if let Some(hangup) = hangup {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, hangup).await;
    }
    if let Err(e) = app.store.flush().await {
        tracing::error!(error = %e, "final store flush failed");
    }
    tracing::info!("stopped");
}

fn io(stream: TcpStream) -> TokioIo<TcpStream> {
    let _ = stream.set_nodelay(true);
    TokioIo::new(stream)
}

fn builder(app: &App) -> http1::Builder {
    let max_header = app.config().server.max_header_bytes;
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .max_buf_size((max_header + 4096).max(MIN_BUF_SIZE));
    b
}

async fn accept_failed(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
}

/// Installs the `SIGHUP` handler now and spawns the task that reloads the configuration on
/// each `SIGHUP` until `stop` flips. `None` where there are no Unix signals (or the handler
/// cannot be installed, which is logged).
fn reload_on_hangup(
    app: Arc<App>,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot install the SIGHUP handler: reload only through POST /v1/reload");
                return None;
            }
        };
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = hangup.recv() => {
                        if received.is_none() {
                            return;
                        }
                        tracing::info!("SIGHUP received: reloading the configuration");
                        // The outcome is logged by reload itself.
                        let _ = crate::reload::reload(&app).await;
                    }
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            return;
                        }
                    }
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = (app, &mut stop);
        None
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
