//! IdP faults (SPEC §6 "keys that cannot be fetched keep the last good set"): the JWKS
//! endpoint down, slow, answering garbage or an empty key set, during operation and at
//! start. Tokens keep verifying with the last good keys (from memory, or from the store
//! after a restart); a rotated key (new `kid`) is picked up within one refetch without a
//! restart; a flood of unknown-`kid` tokens cannot hammer the IdP.
//!
//! The IdP is a small JWKS server on 127.0.0.1:0 whose behaviour the test switches and
//! which counts the requests it gets.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

/// Bound of one JWKS fetch (`revgate::auth::keys::JWKS_FETCH_TIMEOUT`).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the fake IdP does with a JWKS request.
#[derive(Debug, Clone)]
enum Mode {
    /// 200 with this document.
    Ok(String),
    /// Accepts the connection and closes it at once (the request fails).
    Down,
    /// Accepts and never answers.
    Slow,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with `{"keys":[]}`.
    Empty,
}

struct Idp {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    hits: tokio::sync::watch::Receiver<u64>,
}

impl Idp {
    async fn start(mode: Mode) -> Idp {
        let mode = Arc::new(Mutex::new(mode));
        let (hits_tx, hits) = tokio::sync::watch::channel(0u64);
        let hits_tx = Arc::new(hits_tx);
        let m = mode.clone();
        let addr = start_raw(move |mut stream| {
            let m = m.clone();
            let hits_tx = hits_tx.clone();
            async move {
                hits_tx.send_modify(|n| *n += 1);
                let mode = m.lock().unwrap().clone();
                let body = match mode {
                    Mode::Down => return, // dropped: connection closed, no answer
                    Mode::Slow => {
                        // Hold the connection until the client gives up.
                        let _ = stream.read(&mut [0u8; 2048]).await;
                        return;
                    }
                    Mode::Ok(doc) => doc,
                    Mode::Garbage => "<html>502 upstream trouble</html>".to_string(),
                    Mode::Empty => "{\"keys\":[]}".to_string(),
                };
                write_raw_200(&mut stream, "application/json", body.as_bytes()).await;
            }
        })
        .await;
        Idp { addr, mode, hits }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn hits(&self) -> u64 {
        *self.hits.borrow()
    }

    /// Waits (bounded) until the IdP has had `n` requests in all.
    async fn wait_hits(&mut self, n: u64) {
        tokio::time::timeout(WAIT + FETCH_TIMEOUT, self.hits.wait_for(|h| *h >= n))
            .await
            .unwrap_or_else(|_| panic!("the IdP did not get {n} requests in time"))
            .expect("IdP alive");
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }
}

/// The test JWKS (`rsa-1` and friends).
fn jwks() -> String {
    keys::JWKS.to_string()
}

/// The test JWKS plus the rotated key `rsa-2`.
fn rotated_jwks() -> String {
    let mut set: Value = serde_json::from_str(keys::JWKS).unwrap();
    let other: Value = serde_json::from_str(keys::RSA_OTHER_JWK).unwrap();
    set["keys"].as_array_mut().unwrap().push(other);
    set.to_string()
}

/// Gateway config whose issuer fetches its keys from `jwks_url`, refreshed every second.
fn config(upstream: SocketAddr, store: &std::path::Path, jwks_url: &str) -> String {
    config_text(upstream, store, "")
        .replace(
            &format!("jwks_file = \"{}\"", key_path("jwks.json")),
            &format!("jwks_url = \"{jwks_url}\""),
        )
        .replacen(
            "max_token_lifetime = \"1h\"",
            "max_token_lifetime = \"1h\"\njwks_refresh = \"1s\"",
            1,
        )
}

/// A valid token signed by `rsa-1`.
fn good_token() -> String {
    token("u", "s", &unique_id("jti"))
}

/// A valid token signed by the second RSA key under `kid`.
fn other_key_token(kid: &str) -> String {
    sign_other_key(kid, &claims("u", "s", &unique_id("jti")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_during_operation_keep_the_last_good_keys() {
    let (_dir, store) = temp_store();
    let echo = start_echo().await;
    let mut idp = Idp::start(Mode::Ok(jwks())).await;
    let gw = Gateway::start(&config(echo, &store, &idp.url())).await;
    let token = good_token();
    assert_eq!(proxy_get(&gw, &token).await.0, 200);

    // Each fault lasts at least two refetches of the 1 s refresher.
    for (name, mode) in [
        ("down", Mode::Down),
        ("garbage", Mode::Garbage),
        ("empty", Mode::Empty),
    ] {
        idp.set(mode);
        let seen = idp.hits();
        idp.wait_hits(seen + 2).await;
        assert_eq!(proxy_get(&gw, &token).await.0, 200, "IdP {name}");
        assert_eq!(proxy_get(&gw, &good_token()).await.0, 200, "IdP {name}");
        assert_eq!(healthz(&gw).await, 200, "IdP {name}: keys kept");
    }

    // Slow: the refresher's fetch hangs; known keys verify at once meanwhile, and an
    // unknown kid (which waits for the refetch in flight, then makes its own) is answered
    // within the fetch timeout bounds.
    idp.set(Mode::Slow);
    let seen = idp.hits();
    idp.wait_hits(seen + 1).await;
    let started = Instant::now();
    assert_eq!(proxy_get(&gw, &good_token()).await.0, 200, "IdP slow");
    assert!(
        started.elapsed() < FETCH_TIMEOUT,
        "a known kid waited for the IdP"
    );
    let started = Instant::now();
    let unknown = get_with(&gw.url("/api/x"), &other_key_token("rsa-2")).await;
    let took = started.elapsed();
    assert_invalid_token(unknown, "signature", "unknown kid while the IdP is slow").await;
    assert!(
        took < 2 * FETCH_TIMEOUT + Duration::from_secs(2),
        "unknown kid with a slow IdP took {took:?}"
    );
    println!("idp slow: unknown-kid answer after {took:?}");
    assert_eq!(healthz(&gw).await, 200);

    // Rotation: the new kid verifies after one refetch, no restart.
    idp.set(Mode::Ok(rotated_jwks()));
    let before = idp.hits();
    let rotated = other_key_token("rsa-2");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if proxy_get(&gw, &rotated).await.0 == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation not picked up"
        );
        // The periodic refresher picks it up when the unknown-kid refetch is rate-limited.
        let seen = idp.hits();
        idp.wait_hits(seen + 1).await;
    }
    let refetches = idp.hits() - before;
    println!("idp rotation: picked up after {refetches} refetch(es)");
    assert!(refetches >= 1);
    assert_eq!(
        proxy_get(&gw, &token).await.0,
        200,
        "old key kept in the new set"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_does_not_hammer_the_idp() {
    let (_dir, store) = temp_store();
    let echo = start_echo().await;
    let idp = Idp::start(Mode::Ok(jwks())).await;
    // Refresh period long enough to stay out of the count.
    let text =
        config(echo, &store, &idp.url()).replace("jwks_refresh = \"1s\"", "jwks_refresh = \"1h\"");
    let gw = Gateway::start(&text).await;
    let before = idp.hits();
    let started = Instant::now();
    let tokens: Vec<String> = (0..200)
        .map(|i| other_key_token(&format!("made-up-{i}")))
        .collect();
    // 50 in flight at a time, over one client.
    let http = client();
    let url = gw.url("/api/x");
    let answers: Vec<(u16, Value)> = {
        use futures_util::StreamExt as _;
        futures_util::stream::iter(&tokens)
            .map(|t| {
                let req = http.get(&url).bearer_auth(t).send();
                async move { status_json(req.await.expect("flood request")).await }
            })
            .buffer_unordered(50)
            .collect()
            .await
    };
    for (s, body) in &answers {
        assert_eq!(*s, 401, "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("signature")),
            "{body}"
        );
    }
    let fetched = idp.hits() - before;
    println!(
        "unknown-kid flood: 200 tokens in {:?}, {fetched} JWKS request(s)",
        started.elapsed()
    );
    // At most one refetch per 10 s rate-limit interval.
    let allowed = 1 + started.elapsed().as_secs() / 10;
    assert!(
        fetched <= allowed,
        "{fetched} JWKS requests for the flood (allowed {allowed})"
    );
    assert_eq!(proxy_get(&gw, &good_token()).await.0, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_at_start_use_the_keys_saved_in_the_store() {
    let (_dir, store) = temp_store();
    let echo = start_echo().await;

    // No saved keys and the IdP down: nothing verifies, health says so (fail closed).
    let gw = Gateway::start(&config(
        echo,
        &store,
        &format!("http://{}/jwks.json", dead_addr()),
    ))
    .await;
    let (s, body) = proxy_get(&gw, &good_token()).await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(healthz(&gw).await, 503);
    gw.stop().await;

    // A first run with the IdP up saves its JWKS in the store.
    let idp = Idp::start(Mode::Ok(jwks())).await;
    let gw = Gateway::start(&config(echo, &store, &idp.url())).await;
    assert_eq!(proxy_get(&gw, &good_token()).await.0, 200);
    gw.stop().await;

    // Restarts while the IdP is refused, answers garbage, an empty set, or hangs.
    let down = format!("http://{}/jwks.json", dead_addr());
    for (name, mode) in [
        ("refused", None),
        ("garbage", Some(Mode::Garbage)),
        ("empty", Some(Mode::Empty)),
        ("slow", Some(Mode::Slow)),
    ] {
        let url = match mode {
            None => down.clone(),
            Some(mode) => {
                idp.set(mode);
                idp.url()
            }
        };
        let started = Instant::now();
        let gw = Gateway::start(&config(echo, &store, &url)).await;
        let took = started.elapsed();
        assert!(
            took < FETCH_TIMEOUT + Duration::from_secs(3),
            "start with the IdP {name} took {took:?}"
        );
        assert_eq!(
            proxy_get(&gw, &good_token()).await.0,
            200,
            "start with IdP {name}"
        );
        assert_eq!(healthz(&gw).await, 200, "start with IdP {name}");
        // A forged token still fails: the saved keys are the real ones.
        let forged = get_with(&gw.url("/api/x"), &sign_forged(&claims("u", "s", "f"))).await;
        assert_invalid_token(forged, "signature", name).await;
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_fetches_are_counted_by_issuer_and_result() {
    let (_dir, store) = temp_store();
    let echo = start_echo().await;
    let mut idp = Idp::start(Mode::Ok(jwks())).await;
    let gw = Gateway::start(&config(echo, &store, &idp.url())).await;
    let ok = format!("revgate_jwks_fetches_total{{issuer=\"{ISS}\",result=\"ok\"}}");
    let error = format!("revgate_jwks_fetches_total{{issuer=\"{ISS}\",result=\"error\"}}");
    assert!(metric(&gw, &ok).await >= 1, "the start-up fetch");
    assert_eq!(metric(&gw, &error).await, 0);
    idp.set(Mode::Down);
    let seen = idp.hits();
    idp.wait_hits(seen + 1).await;
    eventually("a failed fetch counted under its issuer", || async {
        metric(&gw, &error).await >= 1
    })
    .await;
    idp.set(Mode::Ok(jwks()));
    let before = metric(&gw, &ok).await;
    eventually("a good fetch counted again", || async {
        metric(&gw, &ok).await > before
    })
    .await;
    // A file-based issuer is never fetched: no series for it.
    assert!(!metrics_text(&gw).await.contains("issuer=\"https://other"));
    gw.stop().await;
}
