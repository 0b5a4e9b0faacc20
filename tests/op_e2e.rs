//! End to end against a real, certified OpenID Provider (panva's `oidc-provider`, the
//! peer in `tests/peers/op`): log in, call an API through revgate (200), log out at
//! the provider — which POSTs a real logout token to revgate's back-channel endpoint —
//! and see the same access token refused as `revoked`; then restart revgate (with the
//! provider gone, so keys come from the stored last good JWKS) and see it still refused.
//!
//! Needs `node`. The peer's packages come from `REVGATE_OP_PEER` (set by `.ci/run`), else
//! `target/op-peer` (when installed from the same lock file), else they are installed here
//! from the lock file (`npm ci`) on a copy under `target/`. The test skips, saying so, only
//! when `node` is absent — and fails then too when `REVGATE_REQUIRE_OP=1` (CI).
//!
//! The gateway's `[[issuer]]` block is the one `revgate discover` writes for the provider.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Bound for npm ci of the peer when it is not installed yet.
const NPM_CI_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound for the provider to print its ready line, and for each login / logout run.
const NODE_STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn node_available() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A directory with `op.mjs` and its installed `node_modules`.
async fn peer_dir() -> PathBuf {
    let installed =
        |p: &Path| p.join("op.mjs").exists() && p.join("node_modules/oidc-provider").exists();
    if let Ok(p) = std::env::var("REVGATE_OP_PEER") {
        let p = PathBuf::from(p);
        assert!(
            installed(&p),
            "REVGATE_OP_PEER={} has no installed peer",
            p.display()
        );
        return p;
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let source = manifest.join("tests/peers/op");
    assert!(
        source.join("op.mjs").exists(),
        "OP peer not found at {}",
        source.display()
    );
    let local = manifest.join("target/op-peer");
    let same_lock = |a: &Path, b: &Path| {
        std::fs::read(a.join("package-lock.json")).ok()
            == std::fs::read(b.join("package-lock.json")).ok()
    };
    if installed(&local) && same_lock(&local, &source) {
        return local;
    }
    let _ = std::fs::remove_dir_all(&local);
    std::fs::create_dir_all(&local).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), local.join(entry.file_name())).unwrap();
        }
    }
    let status = tokio::time::timeout(
        NPM_CI_TIMEOUT,
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&local)
            .kill_on_drop(true)
            .status(),
    )
    .await
    .expect("npm ci within the bound")
    .expect("run npm");
    assert!(status.success(), "npm ci of the OP peer failed");
    local
}

/// Bound for one start attempt of the provider. The provider normally prints its ready
/// line within a second; now and then a start stalls before it (seen on this machine under
/// load, before the provider printed its start-up warnings), so a stalled start is killed
/// and retried on a fresh port.
const PROVIDER_START_ATTEMPT: Duration = Duration::from_secs(15);
/// Start attempts before the test gives up.
const PROVIDER_START_ATTEMPTS: usize = 4;

/// Starts `node op.mjs serve` on a free port and waits for its ready line; returns the
/// child and its port.
async fn start_provider(peer: &Path, logout_uri: &str) -> (Child, u16) {
    for attempt in 1..=PROVIDER_START_ATTEMPTS {
        // A free port: bound and released again, for the provider to bind.
        let port = dead_addr().port();
        let mut child = Command::new("node")
            .args([
                "op.mjs",
                "serve",
                "--port",
                &port.to_string(),
                "--host",
                "127.0.0.1",
            ])
            .current_dir(peer)
            .env("GATEWAY_LOGOUT_URI", logout_uri)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the provider");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(PROVIDER_START_ATTEMPT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("\"ready\":true") {
                    return true;
                }
            }
            false
        })
        .await;
        if ready == Ok(true) {
            // Keep draining stdout so the provider never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, port);
        }
        eprintln!("provider start attempt {attempt} on port {port} did not become ready; retrying");
        let _ = child.kill().await;
    }
    panic!("the provider did not become ready in {PROVIDER_START_ATTEMPTS} attempts");
}

/// Runs `node op.mjs ARGS` and parses its JSON output.
async fn op(peer: &Path, logout_uri: &str, args: &[&str]) -> (i32, Value) {
    let out = tokio::time::timeout(
        NODE_STEP_TIMEOUT,
        Command::new("node")
            .arg("op.mjs")
            .args(args)
            .current_dir(peer)
            .env("GATEWAY_LOGOUT_URI", logout_uri)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("op.mjs within the bound")
    .expect("run op.mjs");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "op.mjs {args:?} printed no JSON; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// The `[[issuer]]` block `revgate discover` writes for the running provider (the real
/// binary, as an operator runs it).
async fn discovered_issuer(issuer: &str) -> String {
    let out = run_revgate(
        &[
            "discover",
            issuer,
            "--client-id",
            "gateway",
            "--audience",
            "https://api.example.test",
        ],
        &[],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "revgate discover failed: {stderr}");
    assert!(stderr.contains("panva oidc-provider"), "{stderr}");
    assert!(
        !stderr.contains("warning:"),
        "no warnings expected: {stderr}"
    );
    String::from_utf8(out.stdout).expect("UTF-8 TOML")
}

fn gateway_config(block: &str, upstream: std::net::SocketAddr, store: &Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

{block}
[[route]]
prefix = "/"
upstream = "http://{upstream}"

[store]
path = "{store}"
"#,
        store = store.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_provider_logout_revokes_the_session_across_restarts() {
    if !node_available() {
        assert!(
            std::env::var("REVGATE_REQUIRE_OP").as_deref() != Ok("1"),
            "REVGATE_REQUIRE_OP=1 but node is not installed"
        );
        eprintln!("SKIPPED: node is not installed, so the real OpenID Provider cannot run");
        return;
    }
    let peer = peer_dir().await;
    let upstream = start_echo().await;
    let (_dir, store) = temp_store();

    let listeners = revgate::Listeners::bind(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let proxy = listeners.proxy_addr();
    let logout_uri = format!("http://{proxy}/backchannel-logout");
    let (mut provider, op_port) = start_provider(&peer, &logout_uri).await;
    let issuer = format!("http://127.0.0.1:{op_port}");

    let block = discovered_issuer(&issuer).await;
    assert!(block.contains("require_typ = \"at+jwt\""), "{block}");
    let config_text = gateway_config(&block, upstream, &store);
    let gw = Gateway::start_on(&config_text, listeners).await;

    // Log in at the provider: a JWT access token carrying the session's sid.
    let (code, login) = op(&peer, &logout_uri, &["login", "--issuer", &issuer]).await;
    assert_eq!(code, 0, "login: {login}");
    let access_token = login["access_token"].as_str().unwrap().to_string();
    let sid = login["sid"].as_str().unwrap().to_string();
    assert_eq!(
        login["access_token_claims"]["sid"].as_str(),
        Some(sid.as_str())
    );

    let (status, body) = proxy_get(proxy, &access_token).await;
    assert_eq!(status, 200, "valid provider token passes: {body}");
    assert_eq!(body["headers"]["x-auth-sid"].as_str(), Some(sid.as_str()));

    // Log out at the provider: it POSTs a real logout token to revgate.
    let (code, logout) = op(
        &peer,
        &logout_uri,
        &[
            "logout",
            "--issuer",
            &issuer,
            "--id-token",
            login["id_token"].as_str().unwrap(),
            "--cookie-jar",
            login["cookie_jar"].as_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        code, 0,
        "logout with a successful back-channel call: {logout}"
    );
    assert_eq!(
        logout["backchannel_logout"][0]["result"].as_str(),
        Some("success"),
        "{logout}"
    );

    let (status, body) = proxy_get(proxy, &access_token).await;
    assert_eq!(status, 401, "logged-out token refused: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    let record = gw
        .app
        .store
        .get(revgate::store::Kind::Sid, &issuer, &sid)
        .unwrap()
        .expect("sid record");
    assert_eq!(record.source, revgate::store::Source::Backchannel);

    // A new login is a new session and is not locked out.
    let (code, again) = op(&peer, &logout_uri, &["login", "--issuer", &issuer]).await;
    assert_eq!(code, 0);
    let (status, _) = proxy_get(proxy, again["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "a new session passes");

    // Restart revgate with the provider gone: keys come from the stored last good JWKS,
    // and the revocation from the store.
    gw.stop().await;
    provider.kill().await.unwrap();
    let listeners = revgate::Listeners::bind(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let proxy = listeners.proxy_addr();
    let gw = Gateway::start_on(&config_text, listeners).await;
    let (status, body) = proxy_get(proxy, &access_token).await;
    assert_eq!(status, 401, "still refused after a restart: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    let (status, body) = proxy_get(proxy, again["access_token"].as_str().unwrap()).await;
    assert_eq!(
        status, 200,
        "the new session still passes with the stored JWKS: {body}"
    );
    gw.stop().await;
}
