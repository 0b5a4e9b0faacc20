//! Listeners, background tasks and shutdown: [`run`] serves the proxy and admin listeners
//! until the shutdown future completes, then drains in-flight requests within
//! `server.drain_grace`, stops the sweeper, the store recovery task, the JWKS refresher
//! and the cluster link, and flushes the store.
//! While it runs, `SIGHUP` reloads the configuration ([`crate::reload::reload`]).
//!
//! The proxy listener speaks HTTP/1.1, or with `server.tls_cert` TLS only ([`crate::tls`]):
//! HTTP/2 when the client's ALPN picks `h2`, else HTTP/1.1. Every HTTP/2 connection is
//! bounded per connection and per stream ([`H2_MAX_CONCURRENT_STREAMS`], the header list
//! size from `server.max_header_bytes`, keep-alive pings); upstreams stay HTTP/1.1.
//!
//! Shutdown (SIGTERM): health answers `503` at once ([`crate::health`]). With a
//! `server.health_path`, the listeners keep serving for `drain_grace` so a load balancer
//! sees the 503 and moves traffic away; then (at once without a health path) they stop
//! accepting and in-flight requests get `drain_grace` to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::App;

/// Bound for each background task (sweeper, refresher, recovery, SIGHUP) to stop once
/// told to.
pub const TASK_STOP_BOUND: Duration = Duration::from_secs(10);
/// Most streams one HTTP/2 client may have open at once (the per-connection bound; more
/// connections meet the operating system's limits like HTTP/1.1 ones do).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// HTTP/2 keep-alive: a connection is pinged after this long without frames…
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// …and closed when the ping is not answered within this time.
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Slack of the HTTP/2 header list limit over `server.max_header_bytes`: HTTP/2 counts 32
/// extra bytes per header (RFC 9113 §6.5.2) where the gateway's own 431 check counts 4, so
/// the protocol limit must lie above the gateway's for the same header block to get the
/// gateway's 431 on either protocol (h2 answers 431 itself beyond its limit).
const H2_HEADER_LIST_SLACK: u32 = 8192;
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
    let tls = app
        .config()
        .server
        .tls_enabled()
        .then(|| tokio_rustls::TlsAcceptor::from(crate::tls::server_config(app.tls.clone())));
    let proxy = match tls {
        Some(_) => crate::proxy::Proxy::new(app.clone()).over_tls(),
        None => crate::proxy::Proxy::new(app.clone()),
    };
    let graceful = GracefulShutdown::new();
    // Proxy connections follow this signal themselves (`until_closing!`: graceful shutdown
    // of the HTTP connection) and hold a watcher, so `graceful.shutdown()` waits for their
    // requests in flight. A connection that upgraded (WebSocket) has ended as HTTP: its
    // tunnel is not waited for and is cut when the process exits.
    let (close_tx, close_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    // With a health path, SIGTERM opens this window: health answers 503, the listeners
    // keep serving until it closes.
    let mut drain_window: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;

    loop {
        tokio::select! {
            _ = &mut shutdown, if drain_window.is_none() => {
                app.start_draining();
                let server = &app.config().server;
                if server.health_path.is_empty() {
                    break;
                }
                tracing::info!(
                    grace = %humantime::format_duration(server.drain_grace),
                    health_path = %server.health_path,
                    "draining: health answers 503; still serving until the grace period ends"
                );
                drain_window = Some(Box::pin(tokio::time::sleep(server.drain_grace)));
            }
            _ = until_closed(&mut drain_window) => break,
            accepted = listeners.proxy.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let limits = Limits::of(&app);
                    tokio::spawn(serve_proxy_connection(
                        stream,
                        remote,
                        proxy.clone(),
                        tls.clone(),
                        limits,
                        Closing { _counted: graceful.watcher(), signal: close_rx.clone() },
                    ));
                }
                Err(e) => accept_failed(e).await,
            },
            accepted = listeners.admin.accept() => match accepted {
                Ok((stream, _remote)) => {
                    let _ = stream.set_nodelay(true);
                    let svc = hyper_util::service::TowerToHyperService::new(warp::service(admin_filter.clone()));
                    let conn = Limits::of(&app).http1().serve_connection(TokioIo::new(stream), svc);
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

    app.start_draining();
    let grace = app.config().server.drain_grace;
    tracing::info!(grace = %humantime::format_duration(grace), "shutting down: no new connections, draining in-flight requests");
    drop(listeners);
    let _ = close_tx.send(true);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = %humantime::format_duration(grace), "in-flight requests still running after the grace period; closing");
    }
    if let Some(c) = &app.cluster {
        c.drain_outbox().await;
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(TASK_STOP_BOUND, sweeper).await;
    let _ = tokio::time::timeout(TASK_STOP_BOUND, refresher).await;
    let _ = tokio::time::timeout(TASK_STOP_BOUND, recovery).await;
    if let Some(cluster) = cluster {
        let _ = tokio::time::timeout(TASK_STOP_BOUND, cluster).await;
    }
    if let Some(hangup) = hangup {
        let _ = tokio::time::timeout(TASK_STOP_BOUND, hangup).await;
    }
    if let Err(e) = app.store.flush().await {
        tracing::error!(error = %e, "final store flush failed");
    }
    // With `LogWriter`, this line also writes out the buffered access lines before it.
    tracing::info!("stopped");
}

/// Resolves when the drain window (if open) closes; never while it is not open.
async fn until_closed(window: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match window {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The per-connection settings, read from the configuration in force at accept time.
struct Limits {
    max_header_bytes: usize,
    access_log: bool,
}

impl Limits {
    fn of(app: &App) -> Limits {
        let config = app.config();
        Limits {
            max_header_bytes: config.server.max_header_bytes,
            access_log: config.server.access_log,
        }
    }

    /// HTTP/1.1: the header read timeout, and a read buffer just above the header limit.
    fn http1(&self) -> http1::Builder {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true)
            .max_buf_size((self.max_header_bytes + 4096).max(MIN_BUF_SIZE));
        b
    }

    /// HTTP/2: bounded streams per connection, bounded header lists, keep-alive pings.
    fn http2(&self) -> http2::Builder<TokioExecutor> {
        let list = u32::try_from(self.max_header_bytes)
            .unwrap_or(u32::MAX)
            .saturating_mul(2)
            .saturating_add(H2_HEADER_LIST_SLACK);
        let mut b = http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_header_list_size(list)
            .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
        b
    }
}

/// A proxy connection's part in shutdown: the watcher that `graceful.shutdown()` waits
/// for, and the signal to finish the request in flight and close.
struct Closing {
    _counted: Watcher,
    signal: watch::Receiver<bool>,
}

/// Drives connection `$conn` until it ends; once `$closing` signals, asks it to finish
/// what is in flight and close (hyper's `graceful_shutdown`), and drives it to the end.
macro_rules! until_closing {
    ($conn:expr, $closing:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        let mut closing = $closing;
        tokio::select! {
            ended = conn.as_mut() => ended,
            _ = async { closing.signal.wait_for(|closed| *closed).await.map(|_| ()) } => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    }};
}

/// Serves one accepted proxy connection: the TLS handshake first when the listener has
/// TLS (bounded by [`crate::tls::TLS_HANDSHAKE_TIMEOUT`]), then HTTP/2 or HTTP/1.1 by the
/// negotiated ALPN (plain listeners: HTTP/1.1). HTTP/1.1 connections may upgrade
/// (WebSocket, after the token decision).
async fn serve_proxy_connection(
    stream: TcpStream,
    remote: SocketAddr,
    proxy: crate::proxy::Proxy,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    closing: Closing,
) {
    let connection = proxy.connection(remote);
    let svc = service_fn(move |req| {
        let connection = connection.clone();
        async move { Ok::<_, Infallible>(connection.handle(req).await) }
    });
    let Some(acceptor) = tls else {
        let conn = limits
            .http1()
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        return connection_ended(remote, &limits, until_closing!(conn, closing));
    };
    let stream = match tokio::time::timeout(
        crate::tls::TLS_HANDSHAKE_TIMEOUT,
        acceptor.accept(stream),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(peer = %remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %remote, "TLS handshake not completed in time");
            return;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_H2) {
        let conn = limits.http2().serve_connection(TokioIo::new(stream), svc);
        connection_ended(remote, &limits, until_closing!(conn, closing));
    } else {
        let conn = limits
            .http1()
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        connection_ended(remote, &limits, until_closing!(conn, closing));
    }
}

/// Logs how a proxy connection ended; a request the HTTP/1.1 parser answered itself (431,
/// 400) gets its access line here, since the gateway never saw it.
fn connection_ended(remote: SocketAddr, limits: &Limits, ended: Result<(), hyper::Error>) {
    let Err(e) = ended else { return };
    if limits.access_log && e.is_parse_too_large() {
        crate::proxy::parser_refusal(remote, 431, "too_large");
    } else if limits.access_log && e.is_parse() {
        crate::proxy::parser_refusal(remote, 400, "bad_request");
    }
    tracing::debug!(error = %e, "proxy connection ended with an error");
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
