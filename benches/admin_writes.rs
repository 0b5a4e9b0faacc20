//! Durable revocations per second through the admin API of a real `revgate serve` (the
//! release binary), with 1, 8 and 64 concurrent writers, each on its own keep-alive
//! connection, each `POST /v1/revocations` with a new jti (every answer waits for its
//! commit: fdatasync of the store, shared by concurrent writers). Prints, per writer
//! count: revocations/s, p50/p99 latency, and syncs per revocation
//! (`revgate_store_flushes_total`). A fresh gateway and store for each count.
//!
//! ```sh
//! cargo build --release && cargo bench --bench admin_writes
//! REVGATE_BIN=/path/to/other/revgate cargo bench --bench admin_writes    # another build
//! ```
//! Knobs: `REVGATE_BIN` (default `target/release/revgate`), `REVGATE_BENCH_SECONDS`
//! (measured seconds per writer count, default 10, after 1 s of warm-up),
//! `REVGATE_BENCH_WRITERS` (default `1,8,64`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt as _;

/// Warm-up before the measured window (connections open, caches warm).
const WARM_UP: Duration = Duration::from_secs(1);
/// Bound for the gateway to log its listening line.
const START_WAIT: Duration = Duration::from_secs(20);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `proxy=` and `admin=` addresses of the `revgate listening` line.
fn listening(line: &str) -> Option<SocketAddr> {
    if !line.contains("revgate listening") {
        return None;
    }
    let rest = &line[line.find("admin=")? + "admin=".len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Starts `bin serve` on a fresh store in `dir`; returns the child and its admin address.
async fn start_gateway(bin: &Path, dir: &Path) -> (tokio::process::Child, SocketAddr) {
    let jwks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/jwks.json");
    let config = dir.join("revgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[[issuer]]
issuer = "https://issuer.bench.local/"
audiences = ["bench"]
jwks_file = "{}"
algorithms = ["RS256"]
[[route]]
prefix = "/"
upstream = "http://127.0.0.1:9"
[store]
path = "{}"
sweep_interval = "1h"
"#,
            jwks.display(),
            dir.join("store").display()
        ),
    )
    .expect("write config");
    let mut child = tokio::process::Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn revgate serve");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let admin = tokio::time::timeout(START_WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(a) = listening(&line) {
                return Some(a);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("revgate serve logs its listening line");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, admin)
}

async fn flushes(client: &reqwest::Client, admin: SocketAddr) -> u64 {
    let text = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix("revgate_store_flushes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("revgate_store_flushes_total")
}

/// One run: `writers` writers for `seconds`; prints one table row.
async fn run(bin: &Path, writers: usize, seconds: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, admin) = start_gateway(bin, dir.path()).await;
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
    let pct = |p: usize| latencies[(n * p / 100).min(n - 1)].as_secs_f64() * 1e3;
    println!(
        "| {writers:>7} | {:>13.0} | {:>6.2} | {:>6.2} | {:>15.3} |",
        n as f64 / elapsed.as_secs_f64(),
        pct(50),
        pct(99),
        (flushes_after - flushes_before) as f64 / n as f64
    );
    let _ = child.kill().await;
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let bin = std::env::var_os("REVGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/revgate"));
    assert!(
        bin.is_file(),
        "{} not found: cargo build --release first (or set REVGATE_BIN)",
        bin.display()
    );
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
    println!("| writers | revocations/s | p50 ms | p99 ms | syncs/revocation |");
    println!("|--------:|--------------:|-------:|-------:|----------------:|");
    for w in writers {
        rt.block_on(run(&bin, w, seconds));
    }
}
