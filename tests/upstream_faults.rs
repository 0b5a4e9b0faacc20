//! Upstream faults (SPEC §4: unreachable 502, timeout 504): an upstream that refuses, one
//! that closes in the middle of a Content-Length body, one that never answers, and one
//! that streams a huge body. The gateway is a child `revgate serve`, so its resident
//! memory (`/proc/<pid>/status` VmRSS) and open file descriptors (`/proc/<pid>/fd`) can be
//! measured: a huge body streams through without buffering, failing requests leak no
//! connection, and the gateway stays healthy throughout.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt as _;

/// Body size of the huge answer (`REVGATE_HUGE_MIB` overrides it).
const HUGE_MIB_DEFAULT: u64 = 200;
/// Most the gateway's RSS may grow while streaming the huge body.
const RSS_GROWTH_BOUND_KIB: u64 = 48 * 1024;
/// Declared length of the answer the resetting upstream cuts short.
const RESET_DECLARED: usize = 1_000_000;
/// Bytes it sends before closing.
const RESET_SENT: usize = 64 * 1024;
/// Route timeout of the slow upstream.
const SLOW_TIMEOUT: Duration = Duration::from_secs(1);

/// An upstream that answers every request with a `Content-Length` of [`RESET_DECLARED`],
/// sends [`RESET_SENT`] bytes of it and closes the connection.
async fn start_resetting() -> SocketAddr {
    start_raw(|mut s| async move {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {RESET_DECLARED}\r\n\r\n"
        );
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(&vec![b'x'; RESET_SENT]).await;
        let _ = s.flush().await;
        // Dropped here: the connection closes mid-body.
    })
    .await
}

/// An upstream that answers every request with `len` bytes (Content-Length), generated
/// 64 KiB at a time: the test process holds no copy of the body.
async fn start_huge(len: u64) -> SocketAddr {
    start_raw(move |mut s| async move {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
        );
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if s.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            left -= n as u64;
        }
        let _ = s.shutdown().await;
    })
    .await
}

struct Setup {
    _dir: tempfile::TempDir,
    child: ServeChild,
    http: reqwest::Client,
    huge_len: u64,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let huge_mib = std::env::var("REVGATE_HUGE_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(HUGE_MIB_DEFAULT);
        let huge_len = huge_mib * 1024 * 1024;
        let routes = format!(
            r#"
[[route]]
prefix = "/ok"
upstream = "http://{echo}"
public = true

[[route]]
prefix = "/refused"
upstream = "http://{dead}"
public = true

[[route]]
prefix = "/reset"
upstream = "http://{reset}"
public = true

[[route]]
prefix = "/slow"
upstream = "http://{slow}"
public = true
timeout = "{slow_timeout}s"

[[route]]
prefix = "/huge"
upstream = "http://{huge}"
public = true

[[route]]
prefix = "/api"
upstream = "http://{dead}"
"#,
            echo = start_echo().await,
            dead = dead_addr(),
            reset = start_resetting().await,
            slow = start_silent().await,
            slow_timeout = SLOW_TIMEOUT.as_secs(),
            huge = start_huge(huge_len).await,
        );
        let config = write_config_file(
            dir.path(),
            &config_with_routes(&dir.path().join("store.db"), &routes),
        );
        let child = ServeChild::start(&config).await;
        Setup {
            _dir: dir,
            child,
            http: client(),
            huge_len,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.child.url(path))
            .send()
            .await
            .expect("request")
    }

    /// The gateway still serves: health 200 and the echo route 200.
    async fn assert_healthy(&self, after: &str) {
        let (s, body) = admin_get(&self.child, "/healthz").await;
        assert_eq!(s, 200, "healthz after {after}: {body}");
        let (s, body) = status_json(self.get("/ok/x").await).await;
        assert_eq!(s, 200, "echo after {after}: {body}");
        assert_eq!(body["echo"], true, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_answer_502_504_and_leave_the_gateway_healthy() {
    let s = Setup::start().await;
    s.assert_healthy("start").await;

    // Refused: 502 with a JSON error, with or without a token check first.
    let (status, body) = status_json(s.get("/refused/x").await).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "bad_gateway", "{body}");
    let (status, body) =
        status_json(get_with(&s.child.url("/api/x"), &token("u", "s", "j")).await).await;
    assert_eq!(status, 502, "{body}");
    s.assert_healthy("refused").await;

    // Reset mid-body: the client never gets a complete answer it could mistake for one.
    let resp = s.get("/reset/x").await;
    assert_eq!(resp.status().as_u16(), 200, "headers came before the cut");
    match resp.bytes().await {
        Err(_) => {}
        Ok(b) => assert!(
            b.len() < RESET_DECLARED,
            "a truncated upstream body arrived whole ({} bytes)",
            b.len()
        ),
    }
    s.assert_healthy("reset mid-body").await;

    // Slow: 504 once the route timeout is over, not before, not much later.
    let started = Instant::now();
    let (status, body) = status_json(s.get("/slow/x").await).await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], "gateway_timeout", "{body}");
    assert!(
        took >= SLOW_TIMEOUT && took < SLOW_TIMEOUT + Duration::from_secs(4),
        "504 after {took:?}"
    );
    s.assert_healthy("slow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_body_streams_through_in_bounded_memory() {
    let s = Setup::start().await;
    let pid = s.child.pid();
    s.assert_healthy("start").await;
    let baseline = vm_rss_kib(pid);
    let started = Instant::now();
    let mut resp = s.get("/huge/x").await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut received: u64 = 0;
    let mut peak = baseline;
    let mut next_sample = 0;
    while let Some(chunk) = resp.chunk().await.expect("huge body streams without error") {
        received += chunk.len() as u64;
        if received >= next_sample {
            peak = peak.max(vm_rss_kib(pid));
            next_sample += 8 * 1024 * 1024;
        }
    }
    peak = peak.max(vm_rss_kib(pid));
    assert_eq!(received, s.huge_len, "the whole body arrived");
    println!(
        "huge body: {} MiB in {:?}; gateway RSS baseline {} KiB, peak {} KiB (+{} KiB)",
        s.huge_len >> 20,
        started.elapsed(),
        baseline,
        peak,
        peak - baseline
    );
    assert!(
        peak - baseline < RSS_GROWTH_BOUND_KIB,
        "gateway RSS grew by {} KiB streaming {} MiB",
        peak - baseline,
        s.huge_len >> 20
    );
    s.assert_healthy("huge body").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_failing_requests_leak_no_connection_or_memory() {
    let s = Setup::start().await;
    let pid = s.child.pid();
    s.assert_healthy("start").await;
    // Warm up every path once (pools, lazily created state), then take the baseline.
    let _ = s.get("/refused/x").await;
    let _ = s.get("/reset/x").await.bytes().await;
    let fds_before = open_fds(pid);
    let rss_before = vm_rss_kib(pid);

    use futures_util::StreamExt as _;
    let paths: Vec<&str> = std::iter::repeat_n("/refused/x", 300)
        .chain(std::iter::repeat_n("/reset/x", 100))
        .chain(std::iter::repeat_n("/slow/x", 40))
        .collect();
    // No pooling: every request is its own connection to the gateway.
    let unpooled = client_keeping_idle(0);
    let statuses: Vec<u16> = futures_util::stream::iter(paths)
        .map(|p| {
            let req = unpooled.get(s.child.url(p)).send();
            async move {
                let resp = req.await.expect("request");
                let status = resp.status().as_u16();
                let _ = resp.bytes().await;
                status
            }
        })
        .buffer_unordered(40)
        .collect()
        .await;
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    assert_eq!(count(502), 300, "refused answers");
    assert_eq!(count(504), 40, "slow answers");
    assert_eq!(count(200), 100, "reset answers (cut bodies)");
    s.assert_healthy("the failing requests").await;
    drop(unpooled);

    // Closed client connections are reaped by the gateway; bounded wait for that.
    let deadline = tokio::time::Instant::now() + WAIT;
    let fds_after = loop {
        let fds = open_fds(pid);
        if fds <= fds_before + 4 || tokio::time::Instant::now() >= deadline {
            break fds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rss_after = vm_rss_kib(pid);
    println!(
        "failing requests: 440; gateway fds {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before + 4,
        "file descriptors leaked: {fds_before} before, {fds_after} after"
    );
    assert!(
        rss_after < rss_before + RSS_GROWTH_BOUND_KIB,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
