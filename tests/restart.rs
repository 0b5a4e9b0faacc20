//! Durability (SPEC §6, §7): revocations survive a graceful restart and `kill -9` right
//! after their acknowledgement, and are enforced from the first request served; SIGTERM
//! drains an in-flight request and exits 0.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn graceful_restart_keeps_every_revocation() {
    let (_dir, store) = temp_store();
    let echo = start_echo().await;
    let text = config_text(echo, &store, "");
    let t_jti = old_token("u-1", "s-1", "r-jti");
    let t_sid = old_token("u-2", "r-sid", "j-2");
    let t_sub = old_token("r-sub", "s-3", "j-3");
    let t_ok = old_token("u-4", "s-4", "j-4");

    let gw = Gateway::start(&text).await;
    for (kind, value) in [("jti", "r-jti"), ("sid", "r-sid"), ("sub", "r-sub")] {
        let (s, r) = admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": kind, "value": value}),
        )
        .await;
        assert_eq!(s, 201, "{r}");
    }
    gw.stop().await;

    let gw = Gateway::start(&text).await;
    // The very first requests served by the new gateway.
    assert_revoked(&proxy_get(&gw, &t_jti).await);
    assert_revoked(&proxy_get(&gw, &t_sid).await);
    assert_revoked(&proxy_get(&gw, &t_sub).await);
    assert_passes(&proxy_get(&gw, &t_ok).await);
    let stats = admin_stats(&gw).await;
    assert_eq!(
        (
            stats["jti"].as_u64(),
            stats["sid"].as_u64(),
            stats["sub"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{stats}"
    );
    gw.stop().await;
}

/// Writes the harness config for `upstream` and `store` to `dir/revgate.toml`.
fn write_config_for(dir: &Path, upstream: SocketAddr, store: &Path) -> PathBuf {
    write_config_file(dir, &config_text(upstream, store, ""))
}

/// One acknowledged revocation and the token it must refuse.
struct Acked {
    kind: &'static str,
    value: String,
    token: String,
}

async fn revoke_at(admin: SocketAddr, kind: &'static str, value: &str) {
    admin_revoke(admin, &json!({"kind": kind, "value": value})).await;
}

/// Restarts and checks every acknowledged revocation on the first requests, then by lookup.
async fn restart_and_check(config: &Path, acked: &[Acked], bystander: &str) -> ServeChild {
    let child = ServeChild::start(config).await;
    for a in acked {
        let answer = proxy_get(child.proxy, &a.token).await;
        assert_eq!(
            answer.0,
            401,
            "{} {} lost after kill -9: {answer:?}\n{}",
            a.kind,
            a.value,
            child.log_text()
        );
        assert_revoked(&answer);
    }
    assert_passes(&proxy_get(child.proxy, bystander).await);
    for a in acked {
        let path = revocation_path(a.kind, &a.value);
        let (s, r) = admin_get(child.admin, &path).await;
        assert_eq!(s, 200, "{path}: {r}");
        assert_eq!(r["value"], Value::String(a.value.clone()));
    }
    assert_eq!(total_records(child.admin).await, acked.len() as u64);
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_acknowledgement_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let echo = start_echo().await;
    let config = write_config_for(dir.path(), echo, &dir.path().join("store.db"));
    let bystander = old_token("by", "by-sid", "by-jti");
    let mut acked: Vec<Acked> = Vec::new();
    let mut child = ServeChild::start(&config).await;

    for cycle in 0..3 {
        // One revocation of each kind, each followed at once by kill -9 and a restart.
        for kind in ["jti", "sid", "sub"] {
            let value = format!("k9-{cycle}-{kind}");
            let token = match kind {
                "jti" => old_token("u", "s", &value),
                "sid" => old_token("u", &value, &format!("j-{value}")),
                _ => old_token(&value, "s", &format!("j-{value}")),
            };
            assert_passes(&proxy_get(child.proxy, &token).await);
            revoke_at(child.admin, kind, &value).await;
            acked.push(Acked { kind, value, token });
            child.kill9().await;
            child = restart_and_check(&config, &acked, &bystander).await;
        }
        // A burst of concurrent revocations (group commit), kill -9 after the last 2xx.
        let burst: Vec<(String, String)> = (0..6)
            .map(|i| {
                let v = format!("k9-{cycle}-burst-{i}");
                let t = old_token("u", "s", &v);
                (v, t)
            })
            .collect();
        let admin = child.admin;
        let tasks: Vec<_> = burst
            .iter()
            .map(|(v, _)| {
                let v = v.clone();
                tokio::spawn(async move { revoke_at(admin, "jti", &v).await })
            })
            .collect();
        for t in tasks {
            tokio::time::timeout(WAIT, t)
                .await
                .expect("bounded")
                .expect("revoke task");
        }
        for (value, token) in burst {
            acked.push(Acked {
                kind: "jti",
                value,
                token,
            });
        }
        child.kill9().await;
        child = restart_and_check(&config, &acked, &bystander).await;
    }
    child.kill9().await;
}

/// An upstream that holds each request until released: reports arrivals, answers
/// `{"slow":true}` when `release` fires.
async fn start_slow_upstream() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    tokio::sync::watch::Sender<bool>,
) {
    let (arrived_tx, arrived_rx) = tokio::sync::mpsc::unbounded_channel();
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let addr = start_raw(move |mut stream| {
        let arrived = arrived_tx.clone();
        let mut release = release_rx.clone();
        async move {
            let _ = arrived.send(());
            let _ = release.wait_for(|r| *r).await;
            write_raw_200(&mut stream, "application/json", b"{\"slow\":true}").await;
        }
    })
    .await;
    (addr, arrived_rx, release_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (slow, mut arrived, release) = start_slow_upstream().await;
    let config = write_config_for(dir.path(), slow, &dir.path().join("store.db"));
    let mut child = ServeChild::start(&config).await;

    // A revocation acknowledged before the shutdown must survive it.
    revoke_at(child.admin, "jti", "term-jti").await;

    let url = format!("http://{}/api/slow", child.proxy);
    let t = old_token("u", "s", "in-flight");
    let request = tokio::spawn(async move {
        let resp = client()
            .get(url)
            .bearer_auth(t)
            .send()
            .await
            .expect("in-flight request");
        status_json(resp).await
    });
    tokio::time::timeout(WAIT, arrived.recv())
        .await
        .expect("the request reaches the upstream within the bound")
        .expect("upstream alive");

    child.sigterm();
    assert!(
        child.wait_for_log("shutting down").await,
        "no shutdown log line after SIGTERM:\n{}",
        child.log_text()
    );
    // The gateway is draining; now let the upstream answer.
    release.send(true).unwrap();
    let (status, body) = tokio::time::timeout(WAIT, request)
        .await
        .expect("in-flight request completes within the bound")
        .expect("request task");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"slow": true}));

    let status = child
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no exit within 15s after SIGTERM:\n{}", child.log_text()));
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", child.log_text());

    // Restart: the revocation is there.
    let echo = start_echo().await;
    let config = write_config_for(dir.path(), echo, &dir.path().join("store.db"));
    let child = ServeChild::start(&config).await;
    assert_revoked(&proxy_get(child.proxy, &old_token("u", "s", "term-jti")).await);
    child.kill9().await;
}
