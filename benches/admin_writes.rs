//! Durable revocations per second through the admin API of a real `revgate serve` (the
//! release binary), with 1, 8 and 64 concurrent writers, each on its own keep-alive
//! connection, each `POST /v1/revocations` with a new jti (every answer waits for its
//! commit: fdatasync of the store, shared by concurrent writers). Prints, per writer
//! count: revocations/s, p50/p99 latency, and syncs per revocation
//! (`revgate_store_flushes_total`). A fresh gateway and store for each count.
//!
//! With `REVGATE_BENCH_CLUSTER=1`, each count runs twice: a single node, then a node of a
//! cluster (SPEC §8: a fresh `redis-server`, and `REVGATE_BENCH_FOLLOWERS` more nodes,
//! default 1, following the stream on the same machine), where each answer also waits for
//! the append to the shared log; the last column is clustered / single.
//!
//! ```sh
//! cargo build --release && cargo bench --bench admin_writes
//! REVGATE_BIN=/path/to/other/revgate cargo bench --bench admin_writes    # another build
//! REVGATE_BENCH_CLUSTER=1 REVGATE_BENCH_WRITERS=64 cargo bench --bench admin_writes
//! ```
//! Knobs: `REVGATE_BIN` (default `target/release/revgate`), `REVGATE_BENCH_SECONDS`
//! (measured seconds per writer count, default 10, after 1 s of warm-up),
//! `REVGATE_BENCH_WRITERS` (default `1,8,64`).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{env_or, start_gateway, write_config};

/// Warm-up before the measured window (connections open, caches warm).
const WARM_UP: Duration = Duration::from_secs(1);

async fn flushes(client: &reqwest::Client, admin: SocketAddr) -> u64 {
    support::metric(client, admin, "revgate_store_flushes_total").await as u64
}

/// One run: `writers` writers for `seconds` on a single node, or (`followers` given) on a
/// node of a cluster with that many other nodes; prints one table row, returns the rate.
async fn run(
    bin: &Path,
    writers: usize,
    seconds: u64,
    followers: Option<usize>,
    single: Option<f64>,
) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = match followers {
        Some(_) => Some(support::start_redis().await),
        None => None,
    };
    let table = |node: &str| match &redis {
        Some(r) => support::cluster_table(r, node),
        None => String::new(),
    };
    let mut gateway = start_gateway(
        bin,
        &write_config(dir.path(), "http://127.0.0.1:9", &table("writer")),
    )
    .await;
    let mut others = Vec::new();
    for i in 0..followers.unwrap_or(0) {
        let d = tempfile::tempdir().expect("temp dir");
        let g = start_gateway(
            bin,
            &write_config(
                d.path(),
                "http://127.0.0.1:9",
                &table(&format!("follower-{i}")),
            ),
        )
        .await;
        others.push((g, d));
    }
    let probe = support::client();
    if redis.is_some() {
        support::wait_healthy(&probe, gateway.admin).await;
        for (g, _) in &others {
            support::wait_healthy(&probe, g.admin).await;
        }
    }
    let admin = gateway.admin;
    let url = format!("http://{admin}/v1/revocations");
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (url, measuring, stop) = (url.clone(), measuring.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder().no_proxy().build().unwrap();
                let mut latencies = Vec::new();
                for i in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = format!(r#"{{"kind":"jti","value":"bench-{w}-{i}","ttl":"1h"}}"#);
                    let started = Instant::now();
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("write");
                    assert_eq!(resp.status().as_u16(), 201, "write refused");
                    if let Some(ack) = resp.headers().get("revgate-cluster") {
                        assert_eq!(ack, "appended", "a clustered write not appended");
                    }
                    resp.bytes().await.expect("answer");
                    if measuring.load(Ordering::Relaxed) {
                        latencies.push(started.elapsed());
                    }
                }
                latencies
            })
        })
        .collect();
    let metrics = reqwest::Client::builder().no_proxy().build().unwrap();
    tokio::time::sleep(WARM_UP).await;
    let flushes_before = flushes(&metrics, admin).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let flushes_after = flushes(&metrics, admin).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("writer"));
    }
    latencies.sort();
    let n = latencies.len();
    let rate = n as f64 / elapsed.as_secs_f64();
    let mode = match followers {
        Some(f) => format!("cluster ({} nodes)", f + 1),
        None => "single".to_string(),
    };
    let ratio = single.map_or(String::new(), |s| format!("{:.0}%", rate * 100.0 / s));
    println!(
        "| {writers:>7} | {mode:<17} | {rate:>13.0} | {:>6.2} | {:>6.2} | {:>15.3} | {ratio:>8} |",
        support::percentile_ms(&latencies, 50),
        support::percentile_ms(&latencies, 99),
        (flushes_after - flushes_before) as f64 / n as f64
    );
    let _ = gateway.child.kill().await;
    for (mut g, _) in others {
        let _ = g.child.kill().await;
    }
    rate
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let bin = support::revgate_bin();
    let clustered = env_or("REVGATE_BENCH_CLUSTER", 0u8) == 1;
    let followers: usize = env_or("REVGATE_BENCH_FOLLOWERS", 1);
    let seconds: u64 = env_or("REVGATE_BENCH_SECONDS", 10);
    let writers: Vec<usize> = std::env::var("REVGATE_BENCH_WRITERS")
        .unwrap_or_else(|_| "1,8,64".to_string())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("binary: {}, {seconds} s per run", bin.display());
    println!("| writers | mode              | revocations/s | p50 ms | p99 ms | syncs/revocation | vs single |");
    println!("|--------:|-------------------|--------------:|-------:|-------:|----------------:|---------:|");
    for w in writers {
        let single = rt.block_on(run(&bin, w, seconds, None, None));
        if clustered {
            rt.block_on(run(&bin, w, seconds, Some(followers), Some(single)));
        }
    }
}
