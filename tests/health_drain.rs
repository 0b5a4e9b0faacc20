//! Health for load balancers and the drain on SIGTERM (SPEC §3 `health_path`,
//! `drain_grace`, §7 shutdown; issue 13): the health path answers without a token with
//! `200`/`503` and `{"status": ...}` only, reflecting the keys (and the store); on SIGTERM
//! it answers 503 at once while the listener keeps serving for `drain_grace`, then the
//! listener closes, in-flight requests finish, and the process exits 0. Without a health
//! path the listener closes at once; in-flight requests are bounded by `drain_grace`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

/// An upstream that holds each request until `release` is notified, reporting each
/// arrival on the channel.
async fn start_gated() -> (SocketAddr, mpsc::UnboundedReceiver<()>, Arc<Notify>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = l.accept().await {
            let (tx, gate) = (tx.clone(), gate.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let (tx, gate) = (tx.clone(), gate.clone());
                    async move {
                        let _ = tx.send(());
                        gate.notified().await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"released")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx, release)
}

fn config(
    dir: &std::path::Path,
    upstream: SocketAddr,
    gated: SocketAddr,
    server_keys: &str,
) -> std::path::PathBuf {
    let routes = format!(
        "[[route]]\nprefix = \"/api\"\nupstream = \"http://{upstream}\"\n\
         [[route]]\nprefix = \"/pub\"\nupstream = \"http://{upstream}\"\npublic = true\n\
         [[route]]\nprefix = \"/gated\"\nupstream = \"http://{gated}\"\npublic = true\n"
    );
    let text = with_server_keys(
        &config_with_routes(&dir.join("store"), &routes),
        server_keys,
    );
    write_config_file(dir, &text)
}

async fn get(url: String) -> Result<(u16, Value), reqwest::Error> {
    let resp = client().get(url).send().await?;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Polls until connecting to `addr` is refused; panics after [`WAIT`].
async fn until_closed(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_turns_health_to_503_keeps_serving_for_the_grace_then_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (gated, mut arrived, release) = start_gated().await;
    let path = config(
        dir.path(),
        start_echo().await,
        gated,
        "health_path = \"/-/health\"\ndrain_grace = \"2s\"",
    );
    let mut gw = ServeChild::start(&path).await;
    let health = format!("http://{}/-/health", gw.proxy);

    // Healthy: 200 and the status only, no token needed.
    assert_eq!(
        get(health.clone()).await.unwrap(),
        (200, json!({"status": "ok"}))
    );
    let resp = client().head(&health).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client().post(&health).send().await.unwrap();
    assert_eq!(resp.status(), 405);

    // A request in flight at SIGTERM (held by the upstream).
    let in_flight = tokio::spawn(get(format!("http://{}/gated/x", gw.proxy)));
    tokio::time::timeout(WAIT, arrived.recv())
        .await
        .unwrap()
        .unwrap();

    // Taken before the signal: the gateway's grace starts after it, so "not before the
    // grace" holds even when this thread is descheduled right after sending it.
    let signalled = Instant::now();
    gw.sigterm();
    // At once: 503 draining, on the health path and the admin API's /healthz.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(health.clone()).await.expect("still serving");
        if status == 503 {
            assert_eq!(body, json!({"status": "draining"}));
            break;
        }
        assert!(Instant::now() < deadline, "health never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = admin_get(gw.admin, "/healthz").await;
    assert_eq!((status, body["status"].as_str()), (503, Some("draining")));
    // The listener keeps serving new connections while the balancer drains the node.
    let (status, _) = get(format!("http://{}/pub/x", gw.proxy)).await.unwrap();
    assert_eq!(status, 200);

    // Then it closes, not before the grace period.
    until_closed(gw.proxy).await;
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "closed after {:?}",
        signalled.elapsed()
    );
    // The request in flight still finishes, and the process exits 0.
    release.notify_waiters();
    let (status, _) = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    let exit = gw.wait_exit(WAIT).await.expect("exits within the bound");
    assert!(exit.success(), "{exit:?}\n{}", gw.log_text());
    assert!(
        gw.log_text().contains("draining: health answers 503"),
        "{}",
        gw.log_text()
    );
}

#[tokio::test]
async fn without_a_health_path_sigterm_closes_at_once_and_drain_grace_bounds_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (gated, mut arrived, _release) = start_gated().await;
    // A long grace: if the listener waited for it, it would still accept after WAIT.
    let path = config(
        dir.path(),
        start_echo().await,
        gated,
        "drain_grace = \"3s\"",
    );
    let mut gw = ServeChild::start(&path).await;
    let in_flight = tokio::spawn(get(format!("http://{}/gated/x", gw.proxy)));
    tokio::time::timeout(WAIT, arrived.recv())
        .await
        .unwrap()
        .unwrap();
    let signalled = Instant::now();
    gw.sigterm();
    until_closed(gw.proxy).await;
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        signalled.elapsed()
    );
    // The held request is never released: the gateway gives up on it after drain_grace
    // and exits 0; the client sees its connection end without an answer.
    let exit = gw.wait_exit(WAIT).await.expect("exits within the bound");
    assert!(exit.success(), "{exit:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "exited after {:?}",
        signalled.elapsed()
    );
    let ended = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert!(ended.is_err(), "{ended:?}");
}

#[tokio::test]
async fn health_reflects_the_keys_and_needs_no_token() {
    let (_dir, store) = temp_store();
    let upstream = start_echo().await;
    // An issuer whose JWKS cannot be fetched has no keys: not ready.
    let text = config_text_with_server(
        upstream,
        &store,
        "health_path = \"/-/health\"\ndrain_grace = \"100ms\"",
        "",
    )
    .replace(
        &format!("jwks_file = \"{}\"", key_path("jwks.json")),
        &format!("jwks_url = \"http://{}/jwks.json\"", dead_addr()),
    );
    let gw = Gateway::start(&text).await;
    let resp = client()
        .get(gw.url("/-/health"))
        .header("authorization", "Bearer not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(
        status_json(resp).await,
        (503, json!({"status": "unavailable"}))
    );
    let (status, body) = admin_get(gw.admin, "/healthz").await;
    assert_eq!((status, body["keys"].as_str()), (503, Some("missing")));
    gw.stop().await;

    // With keys: 200; a route that the path would otherwise match is not consulted.
    let (_dir, store) = temp_store();
    let gw = Gateway::start(&config_text_with_server(
        upstream,
        &store,
        "health_path = \"/-/health\"\ndrain_grace = \"100ms\"",
        "",
    ))
    .await;
    let (status, body) = status_json(client().get(gw.url("/-/health")).send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    // Without health_path the same path is an ordinary (token) route.
    gw.stop().await;
    let (_dir, store) = temp_store();
    let gw = Gateway::start(&config_text(upstream, &store, "")).await;
    assert_eq!(
        client()
            .get(gw.url("/-/health"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    gw.stop().await;
}
