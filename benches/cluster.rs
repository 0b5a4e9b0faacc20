//! The cluster's two timing targets (SPEC §8), on real `revgate serve` children (the
//! release binary) and a real `redis-server` on loopback:
//!
//! - **propagation**: N revocations (default 1,000), one after the other, at node A; for
//!   each, from the moment A's `201` arrived until node B's proxy first refuses a token
//!   with that `jti` (B is polled back to back). Prints p50, p99 and max.
//! - **catch-up**: node B is stopped, A accepts M changes (default 100,000: single
//!   revocations through the admin API, 64 writers; each its own log entry), then B starts
//!   again; the time from its start to its first `/healthz` 200, and whether it then holds
//!   everything A holds.
//!
//! ```sh
//! cargo build --release && cargo bench --bench cluster
//! REVGATE_BENCH_REVOCATIONS=1000 REVGATE_BENCH_MISSED=100000 cargo bench --bench cluster
//! ```

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{client, env_or, start_gateway, start_redis, wait_healthy, write_config};

/// Writers that load node A while B is stopped.
const WRITERS: usize = 64;

/// An RS256 access token for the benchmark issuer with `jti`.
fn token(jti: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/rsa_private.pem"
    ))
    .expect("test key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-1".to_string());
    let claims = serde_json::json!({
        "iss": support::BENCH_ISS, "aud": support::BENCH_AUD, "sub": "bench", "jti": jti,
        "iat": now, "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&key).expect("RSA key"),
    )
    .expect("sign")
}

async fn revoke(client: &reqwest::Client, admin: std::net::SocketAddr, jti: &str) {
    let resp = client
        .post(format!("http://{admin}/v1/revocations"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"kind":"jti","value":"{jti}"}}"#))
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(
        resp.headers()
            .get("revgate-cluster")
            .map(|v| v.to_str().unwrap()),
        Some("appended")
    );
}

async fn counts(client: &reqwest::Client, admin: std::net::SocketAddr) -> u64 {
    let stats: serde_json::Value = client
        .get(format!("http://{admin}/v1/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON");
    ["jti", "sid", "sub"]
        .iter()
        .map(|k| stats[*k].as_u64().unwrap())
        .sum()
}

async fn bench(revocations: usize, missed: usize) {
    let bin = support::revgate_bin();
    let redis = start_redis().await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // No upstream: a valid token gets 502 from B, a revoked one 401.
    let upstream = "http://127.0.0.1:9";
    let a = start_gateway(
        &bin,
        &write_config(da.path(), upstream, &support::cluster_table(&redis, "a")),
    )
    .await;
    let config_b = write_config(db.path(), upstream, &support::cluster_table(&redis, "b"));
    let mut b = start_gateway(&bin, &config_b).await;
    let c = client();
    wait_healthy(&c, a.admin).await;
    wait_healthy(&c, b.admin).await;

    // Propagation.
    let tokens: Vec<(String, String)> = (0..revocations)
        .map(|i| {
            let jti = format!("prop-{i}");
            let t = token(&jti);
            (jti, t)
        })
        .collect();
    let proxy_b = format!("http://{}/api", b.proxy);
    let mut delays = Vec::with_capacity(revocations);
    for (jti, t) in &tokens {
        let before = c
            .get(&proxy_b)
            .bearer_auth(t)
            .send()
            .await
            .expect("B")
            .status();
        assert_ne!(before.as_u16(), 401, "token refused before its revocation");
        revoke(&c, a.admin, jti).await;
        let acked = Instant::now();
        loop {
            let status = c
                .get(&proxy_b)
                .bearer_auth(t)
                .send()
                .await
                .expect("B")
                .status();
            if status.as_u16() == 401 {
                delays.push(acked.elapsed());
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(10),
                "{jti} never enforced at B"
            );
        }
    }
    delays.sort();
    println!(
        "propagation, {revocations} revocations (A's 201 → B refuses): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        support::percentile_ms(&delays, 50),
        support::percentile_ms(&delays, 99),
        delays.last().unwrap().as_secs_f64() * 1e3
    );

    // Catch-up.
    let _ = b.child.kill().await;
    let _ = b.child.wait().await;
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (c, next, admin) = (client(), next.clone(), a.admin);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= missed {
                        return;
                    }
                    revoke(&c, admin, &format!("missed-{i}")).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let written = started.elapsed();
    let expected = counts(&c, a.admin).await;
    let restarted = Instant::now();
    b = start_gateway(&bin, &config_b).await;
    wait_healthy(&c, b.admin).await;
    let healthy = restarted.elapsed();
    let held = counts(&c, b.admin).await;
    println!(
        "catch-up: {missed} changes missed (written at A in {:.1} s, {:.0}/s); B healthy {:.2} s after its start, holding {held} of {expected} records{}",
        written.as_secs_f64(),
        missed as f64 / written.as_secs_f64(),
        healthy.as_secs_f64(),
        if held == expected { "" } else { " — INCOMPLETE" }
    );
    let _ = b.child.kill().await;
    drop(a);
    drop(redis);
}

fn main() {
    let revocations = env_or("REVGATE_BENCH_REVOCATIONS", 1000usize);
    let missed = env_or("REVGATE_BENCH_MISSED", 100_000usize);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench(revocations, missed));
}
