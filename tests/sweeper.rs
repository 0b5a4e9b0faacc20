//! Expiry and the sweeper (SPEC §1, §6) with an injected clock: an entry is purged once
//! its `expires_at` has passed and never before, by `POST /v1/sweep` and by the
//! background sweeper on its own.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use revgate::clock::ManualClock;
use serde_json::{json, Value};

/// Leeway + max token lifetime of the test config.
const KEEP: u64 = 60 + 3600;

/// Bound of the waits for the background sweeper.
const SWEEPER_WAIT: Duration = Duration::from_secs(10);

async fn start(interval: &str) -> (tempfile::TempDir, Gateway, Arc<ManualClock>, u64) {
    let (dir, store) = temp_store();
    let echo = start_echo().await;
    let t0 = now();
    let clock = ManualClock::new(t0);
    let text = with_sweep_interval(&config_text(echo, &store, ""), interval);
    let gw = Gateway::start_with_clock(&text, clock.clone()).await;
    (dir, gw, clock, t0)
}

async fn sweep(gw: &Gateway) -> u64 {
    let (status, body) = admin_post(gw, "/v1/sweep", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    body["purged"].as_u64().expect("purged")
}

async fn present(gw: &Gateway, kind: &str, value: &str) -> bool {
    match admin_get(gw, &format!("/v1/revocations/{kind}/{value}")).await {
        (200, _) => true,
        (404, _) => false,
        other => panic!("lookup {kind}/{value}: {other:?}"),
    }
}

#[tokio::test]
async fn manual_sweep_purges_only_after_expires_at() {
    let (_dir, gw, clock, t0) = start("1h").await;
    let t = token("quinn", "s-q", "sw-jti");
    let (status, record) = admin_post(
        &gw,
        "/v1/revocations",
        &json!({"kind": "jti", "value": "sw-jti", "ttl": "60s"}),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(instant(&record["expires_at"]), t0 + 60);
    assert_revoked(&proxy_get(&gw, &t).await);
    let m0 = metrics_text(&gw).await;

    clock.set(t0 + 59);
    assert_eq!(sweep(&gw).await, 0);
    assert!(present(&gw, "jti", "sw-jti").await);
    assert_revoked(&proxy_get(&gw, &t).await);

    // Exactly at expires_at: still kept.
    clock.set(t0 + 60);
    assert_eq!(sweep(&gw).await, 0);
    assert!(present(&gw, "jti", "sw-jti").await);
    assert_eq!(admin_stats(&gw).await["jti"], 1);

    clock.set(t0 + 61);
    assert_eq!(sweep(&gw).await, 1);
    assert!(!present(&gw, "jti", "sw-jti").await);
    let stats = admin_stats(&gw).await;
    assert_eq!(stats["jti"], 0, "{stats}");
    let last = &stats["last_sweep"];
    assert_eq!(instant(&last["at"]), t0 + 61, "{stats}");
    assert_eq!(last["purged"], 1, "{stats}");
    // The token (still within its own exp) passes again.
    assert_passes(&proxy_get(&gw, &t).await);

    let m1 = metrics_text(&gw).await;
    let delta = |name: &str| metric_in(&m1, name).unwrap() - metric_in(&m0, name).unwrap();
    assert_eq!(delta("revgate_sweeps_total"), 3.0, "{m1}");
    assert_eq!(delta("revgate_swept_entries_total"), 1.0, "{m1}");
    assert_eq!(delta("revgate_store_entries{kind=\"jti\"}"), -1.0, "{m1}");
    assert_eq!(sweep(&gw).await, 0);
    gw.stop().await;
}

#[tokio::test]
async fn entries_never_leave_before_their_expiry() {
    let (_dir, gw, clock, t0) = start("1h").await;
    // (kind, value, body extras, expires_at)
    let entries: Vec<(&str, &str, Value, u64)> = vec![
        ("jti", "e-10s", json!({"ttl": "10s"}), t0 + 10),
        ("sid", "e-90s", json!({"ttl": "90s"}), t0 + 90),
        (
            "sub",
            "e-at",
            json!({"expires_at": revgate::clock::rfc3339(t0 + 200)}),
            t0 + 200,
        ),
        ("jti", "e-default", json!({}), t0 + KEEP),
        ("sid", "e-default", json!({}), t0 + KEEP),
        (
            "sub",
            "e-old",
            json!({"issued_before": revgate::clock::rfc3339(t0 - 3000)}),
            t0 - 3000 + KEEP,
        ),
    ];
    for (kind, value, extra, exp) in &entries {
        let mut body = json!({"kind": kind, "value": value});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, record) = admin_post(&gw, "/v1/revocations", &body).await;
        assert_eq!(status, 201, "{body}: {record}");
        assert_eq!(instant(&record["expires_at"]), *exp, "{body}");
    }
    let mut checkpoints: Vec<u64> = entries
        .iter()
        .flat_map(|e| [e.3 - 1, e.3, e.3 + 1])
        .collect();
    checkpoints.sort_unstable();
    checkpoints.dedup();
    let mut gone = 0;
    for at in checkpoints {
        clock.set(at);
        let purged = sweep(&gw).await;
        let due = entries.iter().filter(|e| e.3 < at).count();
        gone += purged;
        assert_eq!(
            gone as usize,
            due,
            "at t0+{}: purged so far {gone}, due {due}",
            at as i64 - t0 as i64
        );
        for (kind, value, _, exp) in &entries {
            assert_eq!(
                present(&gw, kind, value).await,
                *exp >= at,
                "{kind}/{value} (expires t0+{}) at t0+{}",
                *exp as i64 - t0 as i64,
                at as i64 - t0 as i64
            );
        }
    }
    assert_eq!(total_records(gw.admin).await, 0);
    gw.stop().await;
}

async fn sweeps_total(gw: &Gateway) -> f64 {
    metric_in(&metrics_text(gw).await, "revgate_sweeps_total").expect("sweeps metric")
}

#[tokio::test]
async fn background_sweeper_purges_due_entries_unasked() {
    let (_dir, gw, clock, t0) = start("1s").await;
    for (value, ttl) in [("bg-due", "30s"), ("bg-later", "1h")] {
        let (status, r) = admin_post(
            &gw,
            "/v1/revocations",
            &json!({"kind": "jti", "value": value, "ttl": ttl}),
        )
        .await;
        assert_eq!(status, 201, "{r}");
    }
    // Not due yet: background sweeps run (observed through the metric) and keep it.
    clock.set(t0 + 30);
    let before = sweeps_total(&gw).await;
    eventually_within(SWEEPER_WAIT, "two background sweeps", || {
        let gw = &gw;
        async move { sweeps_total(gw).await >= before + 2.0 }
    })
    .await;
    assert!(
        present(&gw, "jti", "bg-due").await,
        "purged at its expires_at"
    );
    assert_eq!(admin_stats(&gw).await["jti"], 2);

    // Due: the background sweeper purges it without being asked.
    clock.set(t0 + 31);
    eventually_within(
        SWEEPER_WAIT,
        "the background sweeper purging bg-due",
        || {
            let gw = &gw;
            async move { admin_stats(gw).await["jti"] == 1 }
        },
    )
    .await;
    assert!(!present(&gw, "jti", "bg-due").await);
    assert!(present(&gw, "jti", "bg-later").await);
    let stats = admin_stats(&gw).await;
    assert!(stats["last_sweep"].is_object(), "{stats}");
    assert!(instant(&stats["last_sweep"]["at"]) >= t0 + 31, "{stats}");
    gw.stop().await;
}
