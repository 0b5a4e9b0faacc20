//! A real `redis-server` for the cluster tests (SPEC §8): started on a free loopback port
//! with its own temporary directory (`--save '' --appendonly yes --appendfsync always`),
//! stopped by its PID, restarted with or without its data. Without `redis-server` on
//! `PATH` the cluster tests are skipped, unless `REVGATE_REQUIRE_REDIS=1` (CI) makes that
//! a failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::WAIT;

/// Set to `1` to fail (not skip) the cluster tests when `redis-server` is missing.
pub const REQUIRE_REDIS: &str = "REVGATE_REQUIRE_REDIS";

/// Whether `redis-server` can be run; `false` skips a test (with a line on stderr),
/// unless [`REQUIRE_REDIS`] is set, which fails it.
pub fn redis_available(test: &str) -> bool {
    let found = std::process::Command::new("redis-server")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var(REQUIRE_REDIS).as_deref() != Ok("1"),
            "{test}: redis-server is not installed and {REQUIRE_REDIS}=1 (apt-get install redis-server)"
        );
        eprintln!("{test}: skipped, redis-server is not installed (apt-get install redis-server)");
    }
    found
}

/// How a [`RedisServer`] is started.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `--requirepass` (the default user's password).
    pub password: Option<String>,
    /// Serve TLS only, with the test certificates of `tests/keys/redis-tls/`.
    pub tls: bool,
}

/// A running `redis-server`; stopped (SIGKILL) when dropped.
pub struct RedisServer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
    options: RedisOptions,
    child: Option<std::process::Child>,
}

/// The test certificates for Redis over TLS (`tests/keys/redis-tls/`).
pub fn redis_tls_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys/redis-tls")
        .join(name)
}

impl RedisServer {
    /// Starts a plain Redis on a free port.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default()).await
    }

    /// Starts a Redis with `options` on a free port.
    pub async fn start_with(options: RedisOptions) -> RedisServer {
        let mut server = RedisServer {
            port: 0,
            dir: tempfile::tempdir().expect("redis dir"),
            options,
            child: None,
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn().await {
                return server;
            }
        }
        panic!("redis-server did not start on a free port (5 tries)");
    }

    /// Starts a plain Redis on `port` (a port chosen before the nodes' configs were
    /// written); fails the test if it cannot bind it.
    pub async fn start_on(port: u16) -> RedisServer {
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().expect("redis dir"),
            options: RedisOptions::default(),
            child: None,
        };
        assert!(
            server.spawn().await,
            "redis-server did not start on port {port}"
        );
        server
    }

    /// `redis://127.0.0.1:port` (with the password, and `rediss://` for TLS).
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        let auth = match &self.options.password {
            Some(p) => format!(":{p}@"),
            None => String::new(),
        };
        let host = if self.options.tls {
            "localhost"
        } else {
            "127.0.0.1"
        };
        format!("{scheme}://{auth}{host}:{}", self.port)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts `redis-server` on `self.port` in `self.dir`; whether it answers PING.
    async fn spawn(&mut self) -> bool {
        let mut cmd = std::process::Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir"])
            .arg(self.dir.path())
            .args([
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if self.options.tls {
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(redis_tls_file("server.crt"))
                .arg("--tls-key-file")
                .arg(redis_tls_file("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(redis_tls_file("ca.crt"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        if let Some(p) = &self.options.password {
            cmd.args(["--requirepass", p]);
        }
        let mut child = cmd.spawn().expect("spawn redis-server");
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.answers().await {
                self.child = Some(child);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Whether something accepts TCP connections on the port (a TLS Redis cannot be
    /// pinged in plain text) and, for a plain one, answers `PING`.
    async fn answers(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(self.addr()).await else {
            return false;
        };
        if self.options.tls {
            return true;
        }
        let ping = match &self.options.password {
            Some(p) => format!("AUTH {p}\r\nPING\r\n"),
            None => "PING\r\n".to_string(),
        };
        if s.write_all(ping.as_bytes()).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while !got.windows(5).any(|w| w == b"+PONG") {
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return false,
            }
        }
        true
    }

    /// Stops it with SIGTERM (Redis writes its append-only file and exits) and waits.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -TERM redis-server");
            wait_child(&mut child).await;
        }
    }

    /// Starts it again on the same port with the data it had.
    pub async fn restart(&mut self) {
        self.stop().await;
        assert!(
            self.spawn().await,
            "redis-server restarts on port {}",
            self.port
        );
    }

    /// Starts it again on the same port with an empty data directory (Redis lost its data).
    pub async fn restart_empty(&mut self) {
        self.stop().await;
        for entry in std::fs::read_dir(self.dir.path()).expect("redis dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("wipe redis data");
            } else {
                std::fs::remove_file(&path).expect("wipe redis data");
            }
        }
        assert!(
            self.spawn().await,
            "redis-server restarts on port {}",
            self.port
        );
    }

    /// A connection for the test's own look at the stream.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reaps `child` (bounded by [`WAIT`], then killed).
async fn wait_child(child: &mut std::process::Child) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port nothing listens on right now (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}
