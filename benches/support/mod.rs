//! What the benchmarks that run real processes share: the release binary, `revgate serve`
//! children on fresh stores, a `redis-server` child, metrics and knobs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;

/// Bound for a gateway to log its listening line (and Redis to answer).
pub const START_WAIT: Duration = Duration::from_secs(20);
/// The issuer of the benchmark configs (keys: `tests/keys/jwks.json`).
pub const BENCH_ISS: &str = "https://issuer.bench.local/";
/// The audience of the benchmark configs.
pub const BENCH_AUD: &str = "bench";

/// `name` parsed from the environment, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The binary under test: `REVGATE_BIN`, else `target/release/revgate`.
pub fn revgate_bin() -> PathBuf {
    let bin = std::env::var_os("REVGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/revgate"));
    assert!(
        bin.is_file(),
        "{} not found: cargo build --release first (or set REVGATE_BIN)",
        bin.display()
    );
    bin
}

/// The address after `name=` in the `revgate listening` line.
fn listening(line: &str, name: &str) -> Option<SocketAddr> {
    if !line.contains("revgate listening") {
        return None;
    }
    let pat = format!("{name}=");
    let rest = &line[line.find(&pat)? + pat.len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A `revgate serve` child.
pub struct Gateway {
    /// The child (killed when dropped).
    pub child: tokio::process::Child,
    /// Proxy listener.
    pub proxy: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Its config file.
    pub config: PathBuf,
}

/// The config of a benchmark gateway with its store in `dir`, routes to `upstream`, and
/// `extra` TOML appended (a `[cluster]` table).
pub fn write_config(dir: &Path, upstream: &str, extra: &str) -> PathBuf {
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
issuer = "{BENCH_ISS}"
audiences = ["{BENCH_AUD}"]
jwks_file = "{}"
algorithms = ["RS256"]
[[route]]
prefix = "/"
upstream = "{upstream}"
[store]
path = "{}"
sweep_interval = "1h"
{extra}
"#,
            jwks.display(),
            dir.join("store").display()
        ),
    )
    .expect("write config");
    config
}

/// Starts `bin serve --config config` and waits for its listening line.
pub async fn start_gateway(bin: &Path, config: &Path) -> Gateway {
    let mut child = tokio::process::Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn revgate serve");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (proxy, admin) = tokio::time::timeout(START_WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let (Some(p), Some(a)) = (listening(&line, "proxy"), listening(&line, "admin")) {
                return Some((p, a));
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
    Gateway {
        child,
        proxy,
        admin,
        config: config.to_path_buf(),
    }
}

/// A client without proxies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The value of the metric sample `name` (no labels) on `admin`'s `/metrics`.
pub async fn metric(client: &reqwest::Client, admin: SocketAddr, name: &str) -> f64 {
    let text = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name}"))
}

/// Waits (bounded) until `admin`'s `/healthz` answers 200.
pub async fn wait_healthy(client: &reqwest::Client, admin: SocketAddr) {
    tokio::time::timeout(START_WAIT, async {
        loop {
            if let Ok(r) = client.get(format!("http://{admin}/healthz")).send().await {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("gateway healthy");
}

/// A `redis-server` child on a free port, data in its own directory, AOF with
/// `appendfsync always` (the README's production settings).
pub struct Redis {
    /// The child (killed when dropped).
    pub child: tokio::process::Child,
    /// `redis://127.0.0.1:port`.
    pub url: String,
    _dir: tempfile::TempDir,
}

/// Starts a `redis-server`.
pub async fn start_redis() -> Redis {
    let dir = tempfile::tempdir().expect("redis dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
        .arg(dir.path())
        .args(["--loglevel", "warning"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn redis-server (apt-get install redis-server)");
    tokio::time::timeout(START_WAIT, async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("redis-server answers");
    Redis {
        child,
        url: format!("redis://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// The `[cluster]` table of node `node` on `redis`.
pub fn cluster_table(redis: &Redis, node: &str) -> String {
    format!(
        "[cluster]\nredis_url = \"{}\"\nnode_id = \"{node}\"\n",
        redis.url
    )
}

/// The `p`th percentile of sorted `values`, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)].as_secs_f64() * 1e3
}
